//! COPY text encoding.

use ingest_core::textcopy::*;
use ingest_core::ColumnKind;
use serde_json::json;

fn enc(v: serde_json::Value, k: ColumnKind) -> String {
    let mut out = Vec::new();
    encode_json_value(&mut out, &v, k).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn escapes_and_decodes() {
    let mut out = Vec::new();
    escape_into(&mut out, b"a\\b\tc\nd\re");
    assert_eq!(out, b"a\\\\b\\tc\\nd\\re");
    assert_eq!(decode_line(&out), vec![Some(b"a\\b\tc\nd\re".to_vec())]);
    assert_eq!(
        decode_line(b"\\N\t\tx\n"),
        vec![None, Some(vec![]), Some(b"x".to_vec())]
    );
    let mut l = Vec::new();
    escape_latin1_into(&mut l, b"\xe9\t");
    assert_eq!(l, "é\\t".as_bytes());
}

#[test]
fn json_values_by_kind() {
    assert_eq!(enc(json!(null), ColumnKind::Json), "\\N");
    assert_eq!(enc(json!("s"), ColumnKind::Json), "\"s\"");
    assert_eq!(
        enc(json!({"a": "x\ny"}), ColumnKind::Json),
        "{\"a\":\"x\\\\ny\"}"
    );
    assert_eq!(enc(json!("s\\"), ColumnKind::Other), "s\\\\");
    assert_eq!(enc(json!(1.5), ColumnKind::Other), "1.5");
    assert_eq!(enc(json!(true), ColumnKind::Other), "true");
    assert_eq!(enc(json!([1, "a"]), ColumnKind::Other), "[1,\"a\"]");
    assert_eq!(enc(json!([]), ColumnKind::Array), "{}");
    assert_eq!(
        enc(json!([["a\\", null], [true, {"k": 1}]]), ColumnKind::Array),
        "{{\"a\\\\\\\\\",NULL},{true,\"{\\\\\"k\\\\\":1}\"}}"
    );
    let mut out = Vec::new();
    assert!(encode_json_value(&mut out, &json!("a\u{0}"), ColumnKind::Other).is_err());
}
