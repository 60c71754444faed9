//! NDJSON reading: key mapping, per-row column lists shared between rows, value kinds, rejects.

mod common;
use common::*;
use ingest_core::*;
use std::sync::Arc;

fn target() -> Vec<TargetColumn> {
    let mut t = cols(&["id", "name", "tags", "doc", "total"]);
    t[0].required = true;
    t[2].kind = ColumnKind::Array;
    t[3].kind = ColumnKind::Json;
    t[4].insertable = false;
    t
}

#[test]
fn values_by_kind_and_columns_by_keys() {
    let d = tempfile::tempdir().unwrap();
    let text = concat!(
        r#"{"ID": 1, "name": "a\tb\\c", "tags": ["x", "y\"z", null, [1, 2]], "doc": "s"}"#,
        "\n",
        r#"{"id": 2, "doc": {"k": [1, null]}, "extra": true, "total": 5}"#,
        "\n\n  \n",
        r#"{"id": 3, "name": null, "tags": "{a,b}"}"#,
        "\n",
    );
    let p = write(d.path(), "f.ndjson", text.as_bytes());
    let rows = read(&p, "ndjson", "{}", &target());
    let v: Vec<_> = rows.iter().map(|r| r.outcome.clone().unwrap()).collect();
    assert_eq!(v[0].0, vec!["id", "name", "tags", "doc"]);
    assert_eq!(
        v[0].1,
        s(&[
            Some("1"),
            Some("a\tb\\c"),
            Some(r#"{"x","y\"z",NULL,{1,2}}"#),
            Some(r#""s""#)
        ])
    );
    assert_eq!(v[1].0, vec!["id", "doc"]);
    // A json column gets the text as written.
    assert_eq!(v[1].1, s(&[Some("2"), Some(r#"{"k": [1, null]}"#)]));
    assert_eq!(v[2].1, s(&[Some("3"), None, Some("{a,b}")]));
    assert_eq!(rows[2].line, 5);
    let opts = parse_options("ndjson", "{}").unwrap();
    let mut r = open(&p, &opts, &target()).unwrap();
    drain(&mut r).unwrap();
    assert_eq!(r.extra_columns(), &["extra".to_string()]);
}

#[test]
fn numbers_and_json_text_reach_postgresql_as_written() {
    let d = tempfile::tempdir().unwrap();
    let mut t = cols(&["id", "n", "tags", "doc"]);
    t[2].kind = ColumnKind::Array;
    t[3].kind = ColumnKind::Json;
    let text = concat!(
        r#"{"id": 123456789012345678901234567890.123456789, "n": 12.50, "tags": [1e400, 0.10, {"b": 1, "a": 2}], "doc": {"z": 1.0, "a": [1E2]}}"#,
        "\n",
        r#"{"id": -9223372036854775809, "n": true}"#,
        "\n",
    );
    let p = write(d.path(), "f.ndjson", text.as_bytes());
    let rows = read(&p, "ndjson", "{}", &t);
    let v: Vec<_> = rows.iter().map(|r| r.outcome.clone().unwrap()).collect();
    assert_eq!(
        v[0].1,
        s(&[
            Some("123456789012345678901234567890.123456789"),
            Some("12.50"),
            Some(r#"{1e400,0.10,"{\"b\": 1, \"a\": 2}"}"#),
            Some(r#"{"z": 1.0, "a": [1E2]}"#),
        ])
    );
    assert_eq!(v[1].1, s(&[Some("-9223372036854775809"), Some("true")]));
}

#[test]
fn same_key_sets_share_one_arc() {
    let d = tempfile::tempdir().unwrap();
    let text = b"{\"id\":1,\"name\":\"a\"}\n{\"name\":\"b\",\"id\":2}\n{\"id\":3}\n{\"id\":4,\"name\":\"c\"}\n";
    let p = write(d.path(), "f.jsonl", text);
    let opts = parse_options("ndjson", "{}").unwrap();
    let mut r = open(&p, &opts, &target()).unwrap();
    let mut arcs: Vec<Arc<[String]>> = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        match rec.outcome {
            RowOutcome::Valid { columns, .. } => arcs.push(columns.clone()),
            RowOutcome::Rejected { reason, .. } => panic!("{reason}"),
        }
    }
    assert!(Arc::ptr_eq(&arcs[0], &arcs[1]));
    assert!(!Arc::ptr_eq(&arcs[1], &arcs[2]));
    assert!(Arc::ptr_eq(&arcs[0], &arcs[3]));
}

#[test]
fn bad_lines_are_rejected_with_reasons() {
    let d = tempfile::tempdir().unwrap();
    let text = b"{\"id\":1,\n[1,2]\n{\"name\":\"x\"}\n{\"id\":null}\n{\"id\":1,\"Id\":2}\n{\"zzz\":1}\n{\"id\":1,\"name\":\"a\\u0000b\"}\n{\"id\":9}";
    let p = write(d.path(), "f.ndjson", text);
    let rows = read(&p, "ndjson", "{}", &target());
    let e: Vec<String> = rows
        .iter()
        .map(|r| {
            r.outcome
                .clone()
                .map(|_| String::new())
                .unwrap_or_else(|e| e)
        })
        .collect();
    assert!(
        e[0].starts_with("not valid JSON") && e[0].contains("column"),
        "{}",
        e[0]
    );
    assert!(e[1].contains("found an array"), "{}", e[1]);
    assert!(e[2].contains("required column \"id\""), "{}", e[2]);
    assert!(e[3].contains("missing or null"), "{}", e[3]);
    assert!(e[4].contains("both go to column \"id\""), "{}", e[4]);
    assert!(e[5].contains("no key"), "{}", e[5]);
    assert!(e[6].contains("NUL"), "{}", e[6]);
    assert_eq!(e[7], "");
    assert!(!rows[7].terminated);
    assert_eq!(rows[7].line, 8);
}

#[test]
fn explicit_mapping_renames_and_ignores() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "f.ndjson",
        b"{\"order\":1,\"id\":99,\"skip\":2,\"name\":\"n\"}\n",
    );
    let rows = read(
        &p,
        "ndjson",
        r#"{"mapping": {"order": "id", "skip": null}}"#,
        &target(),
    );
    assert_eq!(
        rows[0].outcome,
        Ok((vec!["id".into(), "name".into()], s(&[Some("1"), Some("n")])))
    );
}

#[test]
fn latin1_ndjson() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "f.ndjson", b"{\"id\":1,\"name\":\"caf\xe9\"}\n");
    let rows = read(&p, "ndjson", r#"{"encoding": "latin1"}"#, &target());
    assert_eq!(values(&rows), vec![s(&[Some("1"), Some("café")])]);
    let rows = read(&p, "ndjson", "{}", &target());
    assert!(rows[0].outcome.is_err());
}
