//! Pipeline options: defaults, every key, and every error.

use ingest_core::*;

fn err(format: &str, json: &str) -> String {
    parse_options(format, json).unwrap_err().to_string()
}

#[test]
fn defaults() {
    let o = parse_options("CSV", "{}").unwrap();
    assert_eq!(o.format_name, "csv");
    let Format::Csv(c) = &o.format else { panic!() };
    assert_eq!(
        (c.delimiter, c.quote, c.escape, c.header),
        (b',', Some(b'"'), Some(b'"'), true)
    );
    assert_eq!((c.null.as_str(), c.encoding), ("", Encoding::Utf8));
    assert_eq!(o.compression, CompressionChoice::Auto);
    assert_eq!(o.mapping, ColumnMapping::ByName);
    assert_eq!(o.settings, PipelineSettings::default());
    let o = parse_options("tsv", "").unwrap();
    let Format::Csv(c) = &o.format else { panic!() };
    assert_eq!((c.delimiter, c.quote, c.escape), (b'\t', None, None));
    assert_eq!(
        parse_options("ndjson", "{}").unwrap().format,
        Format::Ndjson
    );
    assert_eq!(
        default_patterns("csv"),
        vec!["*.csv", "*.csv.gz", "*.csv.zst"]
    );
    assert_eq!(
        default_patterns("ndjson"),
        vec![
            "*.ndjson",
            "*.ndjson.gz",
            "*.ndjson.zst",
            "*.jsonl",
            "*.jsonl.gz",
            "*.jsonl.zst"
        ]
    );
}

#[test]
fn every_key() {
    let o = parse_options(
        "csv",
        r#"{"delimiter": ";", "quote": "'", "escape": "\\", "header": false, "null": "NULL",
            "encoding": "ISO-8859-1", "compression": "zstd", "columns": ["a", null],
            "file_pattern": ["*.txt", "x*"], "trigger_interval": 500, "max_files_per_trigger": 3,
            "chunk_size": 1024, "batch_rows": 100, "min_file_age": 0,
            "processed_action": "archive", "archive_dir": "/a", "failed_dir": "/f"}"#,
    )
    .unwrap();
    let Format::Csv(c) = &o.format else { panic!() };
    assert_eq!(
        (c.delimiter, c.quote, c.escape, c.header),
        (b';', Some(b'\''), Some(b'\\'), false)
    );
    assert_eq!((c.null.as_str(), c.encoding), ("NULL", Encoding::Latin1));
    assert_eq!(o.compression, CompressionChoice::Forced(Compression::Zstd));
    assert_eq!(
        o.mapping,
        ColumnMapping::Positional(Some(vec![Some("a".into()), None]))
    );
    let s = &o.settings;
    assert_eq!(s.file_patterns, Some(vec!["*.txt".into(), "x*".into()]));
    assert_eq!(
        (
            s.trigger_interval_ms,
            s.max_files_per_trigger,
            s.chunk_size_kb,
            s.batch_rows,
            s.min_file_age_ms
        ),
        (Some(500), Some(3), Some(1024), Some(100), Some(0))
    );
    assert_eq!(s.processed_action, Some(ProcessedAction::Archive));
    assert_eq!(
        (s.archive_dir.as_deref(), s.failed_dir.as_deref()),
        (Some("/a"), Some("/f"))
    );
    let o = parse_options(
        "csv",
        r#"{"mapping": {"x": "a", "y": null}, "quote": null}"#,
    )
    .unwrap();
    assert_eq!(
        o.mapping,
        ColumnMapping::Explicit(vec![("x".into(), "a".into()), ("y".into(), String::new())])
    );
    let o = parse_options(
        "ndjson",
        r#"{"encoding": "latin1", "file_pattern": "*.log"}"#,
    )
    .unwrap();
    assert_eq!(o.encoding(), Encoding::Latin1);
    assert_eq!(o.patterns(), vec!["*.log"]);
}

#[test]
fn every_error() {
    assert!(err("xml", "{}").contains("unknown format \"xml\""));
    assert!(err("csv", "{").contains("not valid JSON"));
    assert!(err("csv", "[]").contains("must be a JSON object"));
    let e = err("csv", r#"{"delimeter": ";"}"#);
    assert!(
        e.contains("unknown option \"delimeter\"") && e.contains("delimiter"),
        "{e}"
    );
    assert!(err("ndjson", r#"{"header": true}"#)
        .contains("unknown option \"header\" for format ndjson"));
    for (json, key) in [
        (r#"{"delimiter": ";;"}"#, "delimiter"),
        (r#"{"delimiter": "\n"}"#, "delimiter"),
        (r#"{"delimiter": "é"}"#, "delimiter"),
        (r#"{"quote": 1}"#, "quote"),
        (r#"{"quote": "\r"}"#, "quote"),
        (r#"{"escape": ""}"#, "escape"),
        (r#"{"header": "yes"}"#, "header"),
        (r#"{"null": 0}"#, "null"),
        (r#"{"null": "a\nb"}"#, "null"),
        (r#"{"encoding": "utf16"}"#, "encoding"),
        (r#"{"compression": "bz2"}"#, "compression"),
        (r#"{"header": false, "columns": []}"#, "columns"),
        (r#"{"header": false, "columns": [1]}"#, "columns"),
        (r#"{"mapping": []}"#, "mapping"),
        (r#"{"mapping": {"a": 1}}"#, "mapping.a"),
        (r#"{"file_pattern": "a/b"}"#, "file_pattern"),
        (r#"{"file_pattern": []}"#, "file_pattern"),
        (r#"{"trigger_interval": 5}"#, "trigger_interval"),
        (r#"{"trigger_interval": 100.5}"#, "trigger_interval"),
        (r#"{"max_files_per_trigger": 0}"#, "max_files_per_trigger"),
        (r#"{"chunk_size": 63}"#, "chunk_size"),
        (r#"{"batch_rows": 1000001}"#, "batch_rows"),
        (r#"{"min_file_age": -1}"#, "min_file_age"),
        (r#"{"processed_action": "move"}"#, "processed_action"),
        (r#"{"archive_dir": ""}"#, "archive_dir"),
        (r#"{"failed_dir": 3}"#, "failed_dir"),
    ] {
        let e = err("csv", json);
        assert!(
            e.starts_with(&format!("option \"{key}\" must be")),
            "{json}: {e}"
        );
    }
    for (json, words) in [
        (r#"{"delimiter": "\""}"#, "must differ"),
        (
            r#"{"quote": null, "escape": "\\"}"#,
            "only applies inside quoted",
        ),
        (r#"{"columns": ["a"]}"#, "needs \"header\": false"),
        (
            r#"{"header": false, "mapping": {"a": "b"}}"#,
            "\"header\" is false",
        ),
        (r#"{"null": "a,b"}"#, "must not contain the delimiter"),
        (r#"{"header": false, "columns": ["a", "a"]}"#, "twice"),
    ] {
        let e = err("csv", json);
        assert!(e.contains(words), "{json}: {e}");
    }
}

#[test]
fn merge() {
    let m = merge_options(
        r#"{"delimiter": ";", "header": false}"#,
        r#"{"header": null, "batch_rows": 5}"#,
    )
    .unwrap();
    assert_eq!(m, r#"{"batch_rows":5,"delimiter":";"}"#);
    assert!(merge_options("[]", "{}").is_err());
    assert!(merge_options("{}", "nope").is_err());
}

#[test]
fn batch_columns_declare_the_staging_table_in_order() {
    let o = parse_options(
        "ndjson",
        r#"{"batch_columns": [{"name": "sku", "type": "text"}, {"name": "Qty", "type": " numeric(12,2) "}]}"#,
    )
    .unwrap();
    let cols = o.batch_columns.unwrap();
    let shown: Vec<(&str, &str)> = cols
        .iter()
        .map(|c| (c.name.as_str(), c.type_name.as_str()))
        .collect();
    assert_eq!(shown, vec![("sku", "text"), ("Qty", "numeric(12,2)")]);
    assert_eq!(parse_options("csv", "{}").unwrap().batch_columns, None);
}

#[test]
fn batch_columns_errors_say_what_is_expected() {
    for (json, says) in [
        (r#"{"batch_columns": []}"#, "non-empty array"),
        (r#"{"batch_columns": {"sku": "text"}}"#, "non-empty array"),
        (r#"{"batch_columns": ["sku text"]}"#, "non-empty array"),
        (
            r#"{"batch_columns": [{"name": "sku"}]}"#,
            "\"type\" is a non-empty string",
        ),
        (
            r#"{"batch_columns": [{"name": " ", "type": "text"}]}"#,
            "\"name\" is a non-empty string",
        ),
        (
            r#"{"batch_columns": [{"name": "a", "type": "int", "null": true}]}"#,
            "not \"null\"",
        ),
        (
            r#"{"batch_columns": [{"name": "a", "type": "int"}, {"name": "a", "type": "text"}]}"#,
            "names the column \"a\" twice",
        ),
        (
            r#"{"batch_columns": [{"name": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "type": "int"}]}"#,
            "at most 63 bytes",
        ),
    ] {
        let e = err("csv", json);
        assert!(e.contains(says), "{json}: {e}");
    }
}
