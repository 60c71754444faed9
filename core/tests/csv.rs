//! CSV/TSV reading: quoting, escapes, NULL vs empty, line numbers, CRLF, encodings, rejects.

mod common;
use common::*;
use ingest_core::*;

#[test]
fn quoted_newlines_keep_exact_line_numbers_and_offsets() {
    let d = tempfile::tempdir().unwrap();
    let text = b"a,b\n1,\"x\ny\nz\"\n\n2,plain\n3,\"q\"\"q\"";
    let p = write(d.path(), "f.csv", text);
    let rows = read(&p, "csv", "{}", &cols(&["a", "b"]));
    assert_eq!(rows.len(), 3);
    assert_eq!((rows[0].line, rows[0].start, rows[0].end), (2, 4, 14));
    assert_eq!(rows[0].raw, b"1,\"x\ny\nz\"");
    assert_eq!(values(&rows[..1]), vec![s(&[Some("1"), Some("x\ny\nz")])]);
    // Line 5 is blank and skipped; line 6 is the next record.
    assert_eq!(rows[1].line, 6);
    assert_eq!(rows[1].start, 15);
    assert_eq!(rows[2].line, 7);
    assert!(rows[1].terminated && !rows[2].terminated);
    assert_eq!(rows[2].end, text.len() as u64);
    assert_eq!(values(&rows[2..]), vec![s(&[Some("3"), Some("q\"q")])]);
    assert_eq!(
        rows[0].outcome.as_ref().unwrap().0,
        vec!["a".to_string(), "b".to_string()]
    );
}

#[test]
fn crlf_endings_are_stripped_and_counted() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "f.csv", b"a,b\r\n1,2\r\n\r\n\"3\r\n\",4\r\n");
    let rows = read(&p, "csv", "{}", &cols(&["a", "b"]));
    assert_eq!(
        values(&rows),
        vec![s(&[Some("1"), Some("2")]), s(&[Some("3\r\n"), Some("4")])]
    );
    assert_eq!((rows[0].line, rows[1].line), (2, 4));
    assert_eq!(rows[0].raw, b"1,2");
}

#[test]
fn null_is_an_unquoted_match_only() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "f.csv", b"a,b,c\n,\"\",x\nNA,\"NA\",NA\n");
    let rows = read(&p, "csv", "{}", &cols(&["a", "b", "c"]));
    assert_eq!(
        values(&rows),
        vec![
            s(&[None, Some(""), Some("x")]),
            s(&[Some("NA"), Some("NA"), Some("NA")])
        ]
    );
    let rows = read(&p, "csv", r#"{"null": "NA"}"#, &cols(&["a", "b", "c"]));
    assert_eq!(
        values(&rows),
        vec![
            s(&[Some(""), Some(""), Some("x")]),
            s(&[None, Some("NA"), None])
        ]
    );
}

#[test]
fn escape_variants() {
    let d = tempfile::tempdir().unwrap();
    // Backslash escape: \" and \\ inside quotes; outside quotes a backslash is data.
    let p = write(
        d.path(),
        "f.csv",
        b"a,b\n\"x\\\"y\",\"p\\\\q\"\nc\\d,\"e\\f\"\n\"new\\\"\nline\",z\n",
    );
    let rows = read(&p, "csv", r#"{"escape": "\\"}"#, &cols(&["a", "b"]));
    assert_eq!(
        values(&rows),
        vec![
            s(&[Some("x\"y"), Some("p\\q")]),
            s(&[Some("c\\d"), Some("e\\f")]),
            s(&[Some("new\"\nline"), Some("z")]),
        ]
    );
    assert_eq!(rows[2].line, 4);
    // Single-quote quoting, semicolon delimiter.
    let p = write(d.path(), "g.csv", b"a;b\n'x;y';'it''s'\n");
    let rows = read(
        &p,
        "csv",
        r#"{"delimiter": ";", "quote": "'"}"#,
        &cols(&["a", "b"]),
    );
    assert_eq!(values(&rows), vec![s(&[Some("x;y"), Some("it's")])]);
    // A quote in the middle of a field opens a quoted part (as PostgreSQL does).
    let p = write(d.path(), "h.csv", b"a,b\nab\"c,d\"e,f\n");
    let rows = read(&p, "csv", "{}", &cols(&["a", "b"]));
    assert_eq!(values(&rows), vec![s(&[Some("abc,de"), Some("f")])]);
}

#[test]
fn tsv_has_no_quoting_and_values_are_escaped_for_copy() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "f.tsv", b"a\tb\n\"x\"\ty\\z\n\tq\n");
    let rows = read(&p, "tsv", "{}", &cols(&["a", "b"]));
    assert_eq!(
        values(&rows),
        vec![s(&[Some("\"x\""), Some("y\\z")]), s(&[None, Some("q")])]
    );
}

#[test]
fn latin1_is_converted() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "f.csv", b"n\xe4me,b\ncaf\xe9,\xff\n");
    let rows = read(
        &p,
        "csv",
        r#"{"encoding": "LATIN1"}"#,
        &cols(&["näme", "b"]),
    );
    assert_eq!(values(&rows), vec![s(&[Some("café"), Some("ÿ")])]);
}

#[test]
fn invalid_utf8_names_the_column() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "f.csv", b"a,b\nok,caf\xe9\nfine,row\n");
    let rows = read(&p, "csv", "{}", &cols(&["a", "b"]));
    let e = rows[0].outcome.clone().unwrap_err();
    assert!(e.contains("column \"b\" (field 2)"), "{e}");
    assert!(e.contains("0xE9") && e.contains("LATIN1"), "{e}");
    assert!(rows[1].outcome.is_ok());
}

#[test]
fn wrong_field_counts_are_rejected_not_fatal() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "f.csv", b"a,b,c\n1,2,3,4\n1,2\n5,6,7\n8,9");
    let rows = read(&p, "csv", "{}", &cols(&["a", "b", "c"]));
    assert_eq!(
        rows[0].outcome,
        Err("expected 3 fields as in the header, found 4".into())
    );
    assert_eq!(
        rows[1].outcome,
        Err("expected 3 fields as in the header, found 2".into())
    );
    assert!(rows[2].outcome.is_ok());
    assert_eq!(
        rows[3].outcome,
        Err("expected 3 fields as in the header, found 2 (truncated last line?)".into())
    );
    assert_eq!(rows[1].raw, b"1,2");
}

#[test]
fn unterminated_quote_at_eof_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "f.csv", b"a,b\n1,2\n3,\"open\nmore\n");
    let rows = read(&p, "csv", "{}", &cols(&["a", "b"]));
    assert_eq!(rows.len(), 2);
    assert!(!rows[1].terminated);
    let e = rows[1].outcome.clone().unwrap_err();
    assert!(
        e.contains("unterminated quoted field") && e.contains("line 3"),
        "{e}"
    );
}

#[test]
fn headerless_files_by_position() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "f.csv", b"1,skip,x\n2,skip,y\n");
    let rows = read(
        &p,
        "csv",
        r#"{"header": false, "columns": ["id", null, "name"]}"#,
        &cols(&["name", "id"]),
    );
    assert_eq!(
        rows[0].outcome,
        Ok((
            vec!["id".to_string(), "name".to_string()],
            s(&[Some("1"), Some("x")])
        ))
    );
    assert_eq!(rows[0].line, 1);
    let rows = read(&p, "csv", r#"{"header": false}"#, &cols(&["a", "b", "c"]));
    assert_eq!(values(&rows)[1], s(&[Some("2"), Some("skip"), Some("y")]));
}

#[test]
fn overlong_record_is_rejected_with_bounded_memory() {
    let d = tempfile::tempdir().unwrap();
    let mut text = b"a,b\n1,2\n".to_vec();
    text.extend_from_slice(b"3,");
    text.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
    text.extend_from_slice(b"\n4,5\n");
    let p = write(d.path(), "f.csv", &text);
    let opts = parse_options("csv", "{}").unwrap();
    let mut r =
        rows::RowReader::open(&p, &opts, &cols(&["a", "b"]), None, None, 1024 * 1024).unwrap();
    let rows = drain(&mut r).unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows[0].outcome.is_ok() && rows[2].outcome.is_ok());
    let e = rows[1].outcome.clone().unwrap_err();
    assert!(
        e.contains("more than the maximum record size of 1048576"),
        "{e}"
    );
    assert_eq!(rows[1].raw.len(), rows::RAW_CAP);
    assert_eq!(rows[2].line, 4);
    assert_eq!(rows[2].start, 8 + 2 + 10 * 1024 * 1024 + 1);
    assert!(
        r.buffer_len() <= 1024 * 1024 + 2 + 2 * source::READ_SIZE,
        "{}",
        r.buffer_len()
    );
}

#[test]
fn required_columns_missing_fail_the_open() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "f.csv", b"a\n1\n");
    let mut target = cols(&["a", "b", "c"]);
    target[1].required = true;
    target[2].required = true;
    let opts = parse_options("csv", "{}").unwrap();
    let e = open(&p, &opts, &target).err().unwrap();
    assert!(matches!(
        e,
        OpenError::Mapping(MappingError::MissingRequired { .. })
    ));
    let m = e.to_string();
    assert!(m.contains("\"b\", \"c\""), "{m}");
}

#[test]
fn empty_files_and_symlinks() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "e.csv", b"");
    let opts = parse_options("csv", "{}").unwrap();
    assert!(matches!(
        open(&p, &opts, &cols(&["a"])),
        Err(OpenError::Empty)
    ));
    let p2 = write(d.path(), "blank.csv", b"\n\n");
    assert!(matches!(
        open(&p2, &opts, &cols(&["a"])),
        Err(OpenError::Empty)
    ));
    let real = write(d.path(), "r.csv", b"a\n1\n");
    let link = d.path().join("l.csv");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    match open(&link, &opts, &cols(&["a"])) {
        Err(OpenError::Io(e)) => assert!(e.to_string().contains("symbolic link"), "{e}"),
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn nul_bytes_are_rejected() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "f.csv", b"a,b\nx\0y,1\n");
    let rows = read(&p, "csv", "{}", &cols(&["a", "b"]));
    let e = rows[0].outcome.clone().unwrap_err();
    assert!(e.contains("NUL") && e.contains("\"a\""), "{e}");
}

#[test]
fn csv_rows_share_one_column_list() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "f.csv", b"B,a\n1,2\n3,4\n");
    let opts = parse_options("csv", "{}").unwrap();
    let mut r = open(&p, &opts, &cols(&["a", "b"])).unwrap();
    assert_eq!(r.copy_columns(), &["b".to_string(), "a".to_string()]);
    let first = match r.next_record().unwrap().unwrap().outcome {
        RowOutcome::Valid { columns, .. } => columns.clone(),
        _ => panic!(),
    };
    match r.next_record().unwrap().unwrap().outcome {
        RowOutcome::Valid { columns, text } => {
            assert!(std::sync::Arc::ptr_eq(&first, columns));
            assert_eq!(text, b"3\t4\n");
        }
        _ => panic!(),
    }
    assert!(r.next_record().unwrap().is_none());
    assert!(r.at_eof() && r.content_hash().is_some());
}

mod roundtrip {
    use super::*;
    use proptest::prelude::*;

    fn field() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            1 => Just(None),
            8 => proptest::collection::vec(
                prop_oneof![
                    Just('"'), Just(','), Just('\n'), Just('\r'), Just('\\'), Just('\t'),
                    Just('a'), Just('é'), Just(' '), Just('N')
                ],
                0..8
            )
            .prop_map(|v| Some(v.into_iter().collect())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn written_csv_reads_back(rows in proptest::collection::vec(
            proptest::collection::vec(field(), 3), 1..6)) {
            let mut text = String::from("a,b,c\n");
            for row in &rows {
                let f: Vec<String> = row
                    .iter()
                    .map(|v| match v {
                        None => String::new(),
                        Some(s) => format!("\"{}\"", s.replace('"', "\"\"")),
                    })
                    .collect();
                text.push_str(&f.join(","));
                text.push_str("\r\n");
            }
            let d = tempfile::tempdir().unwrap();
            let p = write(d.path(), "f.csv", text.as_bytes());
            let got = read(&p, "csv", "{}", &cols(&["a", "b", "c"]));
            prop_assert_eq!(values(&got), rows);
        }
    }
}
