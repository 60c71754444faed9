//! Column mapping of CSV/TSV headers and NDJSON keys.

mod common;
use common::*;
use ingest_core::*;

fn h(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn by_name_case_insensitive_trimmed_with_extras() {
    let r = resolve(
        Some(&h(&[" B ", "zz", "a"])),
        &ColumnMapping::ByName,
        &cols(&["a", "b"]),
    )
    .unwrap();
    assert_eq!(r.copy_columns, vec!["b", "a"]);
    assert_eq!(r.source_fields, vec![0, 2]);
    assert_eq!(r.extra, vec!["zz"]);
    assert_eq!(r.expected_fields, 3);
}

#[test]
fn explicit_mapping_wins_and_ignores() {
    let m = ColumnMapping::Explicit(vec![("x".into(), "b".into()), ("c".into(), String::new())]);
    let r = resolve(Some(&h(&["x", "b", "a", "c"])), &m, &cols(&["a", "b", "c"])).unwrap();
    assert_eq!(r.copy_columns, vec!["b", "a"]);
    assert_eq!(r.source_fields, vec![0, 2]);
    assert_eq!(r.extra, vec!["b", "c"]);
}

#[test]
fn errors_are_named() {
    let t = cols(&["a", "b"]);
    let e = resolve(
        Some(&h(&["a"])),
        &ColumnMapping::Explicit(vec![("q".into(), "a".into())]),
        &t,
    )
    .unwrap_err();
    assert!(matches!(e, MappingError::UnknownFileColumn { .. }) && e.to_string().contains("\"q\""));
    let e = resolve(
        Some(&h(&["a"])),
        &ColumnMapping::Explicit(vec![("a".into(), "nope".into())]),
        &t,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("\"nope\"") && e.to_string().contains("\"a\", \"b\""),
        "{e}"
    );
    let e = resolve(Some(&h(&["a", "A"])), &ColumnMapping::ByName, &t).unwrap_err();
    assert!(matches!(e, MappingError::Duplicate { .. }), "{e}");
    let e = resolve(Some(&h(&["", " "])), &ColumnMapping::ByName, &t).unwrap_err();
    assert_eq!(e, MappingError::EmptyHeader);
    let e = resolve(Some(&h(&["q"])), &ColumnMapping::ByName, &t).unwrap_err();
    assert!(matches!(e, MappingError::NothingMapped { .. }), "{e}");
    let mut g = cols(&["a", "g"]);
    g[1].insertable = false;
    let e = resolve(Some(&h(&["a", "g"])), &ColumnMapping::ByName, &g).unwrap_err();
    assert!(e.to_string().contains("GENERATED"), "{e}");
    let e = resolve(None, &ColumnMapping::ByName, &t).unwrap_err();
    assert_eq!(e, MappingError::NoHeader);
    let e = resolve(
        None,
        &ColumnMapping::Positional(Some(vec![Some("zz".into())])),
        &t,
    )
    .unwrap_err();
    assert!(matches!(e, MappingError::UnknownTableColumn { .. }));
}

#[test]
fn positional_without_columns_uses_insertable_columns() {
    let mut t = cols(&["id", "a", "b"]);
    t[0].insertable = false;
    let r = resolve(None, &ColumnMapping::Positional(None), &t).unwrap();
    assert_eq!(r.copy_columns, vec!["a", "b"]);
    assert_eq!(r.expected_fields, 2);
}

#[test]
fn ndjson_lookup() {
    let mut t = cols(&["id", "Name", "gen"]);
    t[2].insertable = false;
    let c = ndjson_columns(
        &t,
        &ColumnMapping::Explicit(vec![("ID".into(), "name".into())]),
    )
    .unwrap();
    assert_eq!(c.lookup("ID"), Some(Some(1)));
    assert_eq!(c.lookup("id"), Some(Some(0)));
    assert_eq!(c.lookup("name"), None);
    assert_eq!(c.lookup("gen"), Some(None));
    assert_eq!(c.lookup("other"), None);
    let e = ndjson_columns(
        &t,
        &ColumnMapping::Explicit(vec![("x".into(), "gen".into())]),
    )
    .unwrap_err();
    assert!(matches!(e, MappingError::NotInsertable { .. }));
}
