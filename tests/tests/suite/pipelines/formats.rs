//! Pipelines: Every format, plain and compressed; header-less CSV by position; forced compression.

use super::*;
use e2e::*;

/// `(id, name, qty, note)` of every row of `table`, by id.
type Row4 = (i32, Option<String>, Option<i32>, Option<String>);

fn rows4(c: &mut Cluster, table: &str) -> Vec<Row4> {
    c.client()
        .query(
            &format!("SELECT id, name, qty, note FROM {table} ORDER BY id"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

fn row4(id: i32, name: Option<&str>, qty: Option<i32>, note: Option<&str>) -> Row4 {
    (id, name.map(String::from), qty, note.map(String::from))
}

/// A CSV file with quoting, an embedded line break, a backslash, an empty quoted and an
/// unquoted empty field, UTF-8, a tab inside a field, and one bad integer (line 6). `crlf`:
/// lines end with CR LF.
fn csv_variant(base: i32, crlf: bool) -> Vec<u8> {
    let nl = if crlf { "\r\n" } else { "\n" };
    let b = base;
    [
        "id,name,qty,note".to_string(),
        format!("{},\"a, \"\"quoted\"\" name\",10,plain", b + 1),
        format!("{},\"multi{nl}line\",20,", b + 2),
        format!("{},back\\slash,30,\"\"", b + 3),
        format!("{},x,notanumber,bad", b + 4),
        format!("{},Café,50,ünï", b + 5),
        format!("{},tab\tin,60,x", b + 6),
    ]
    .iter()
    .map(|l| format!("{l}{nl}"))
    .collect::<String>()
    .into_bytes()
}

fn csv_expected(base: i32, crlf: bool) -> Vec<Row4> {
    let b = base;
    let multi = if crlf { "multi\r\nline" } else { "multi\nline" };
    vec![
        row4(b + 1, Some("a, \"quoted\" name"), Some(10), Some("plain")),
        row4(b + 2, Some(multi), Some(20), None),
        row4(b + 3, Some("back\\slash"), Some(30), Some("")),
        row4(b + 5, Some("Café"), Some(50), Some("ünï")),
        row4(b + 6, Some("tab\tin"), Some(60), Some("x")),
    ]
}

/// TSV: no quoting (a `"` is data), a backslash is data, an empty field is NULL; a bad integer
/// on line 4.
fn tsv_variant(base: i32) -> Vec<u8> {
    let b = base;
    format!(
        "id\tname\tqty\tnote\n{}\ta \"quoted\" name, with comma\t10\tplain\n{}\tback\\slash\t20\t\n{}\tx\tbad\tbad\n{}\tCafé\t40\tü\n",
        b + 1,
        b + 2,
        b + 3,
        b + 4
    )
    .into_bytes()
}

fn tsv_expected(base: i32) -> Vec<Row4> {
    let b = base;
    vec![
        row4(
            b + 1,
            Some("a \"quoted\" name, with comma"),
            Some(10),
            Some("plain"),
        ),
        row4(b + 2, Some("back\\slash"), Some(20), None),
        row4(b + 4, Some("Café"), Some(40), Some("ü")),
    ]
}

/// NDJSON: escapes, a number as a string, an explicit null, a missing key (NULL), a bad
/// integer (line 3), a line that is not JSON (4), a blank line (5, skipped), an unknown key
/// (line 6) and an array instead of an object (7).
fn ndjson_variant(base: i32) -> Vec<u8> {
    let b = base;
    format!(
        "{{\"id\":{},\"name\":\"a \\\"q\\\"\\nb\\tc\\\\d\",\"qty\":10,\"note\":\"plain\"}}\n\
         {{\"id\":{},\"name\":\"Caf\\u00e9 \u{fc}\",\"qty\":\"20\",\"note\":null}}\n\
         {{\"id\":{},\"qty\":\"bad\"}}\n\
         {{not json\n\
         \n\
         {{\"id\":{},\"qty\":60,\"zzz\":1}}\n\
         [1,2]\n",
        b + 1,
        b + 2,
        b + 3,
        b + 6
    )
    .into_bytes()
}

fn ndjson_expected(base: i32) -> Vec<Row4> {
    let b = base;
    vec![
        row4(b + 1, Some("a \"q\"\nb\tc\\d"), Some(10), Some("plain")),
        row4(b + 2, Some("Café ü"), Some(20), None),
        row4(b + 6, None, Some(60), None),
    ]
}

#[test]
fn every_format_plain_gzip_and_zstd_and_header_less_csv_by_position() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&["max_worker_processes = 16"]));
    for t in ["f_csv", "f_tsv", "f_nd", "f_pos", "f_forced", "f_opts"] {
        c.execute(&format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, name text, qty int, note text)"
        ));
    }
    let fast = r#""trigger_interval": 100"#;
    let dirs: Vec<PathBuf> = ["csv", "tsv", "nd", "pos", "forced", "opts"]
        .iter()
        .map(|d| folder(&c, d))
        .collect();
    create(
        &mut c,
        "p_csv",
        &dirs[0],
        "f_csv",
        "csv",
        &format!("{{{fast}}}"),
    );
    create(
        &mut c,
        "p_tsv",
        &dirs[1],
        "f_tsv",
        "tsv",
        &format!("{{{fast}}}"),
    );
    create(
        &mut c,
        "p_nd",
        &dirs[2],
        "f_nd",
        "ndjson",
        &format!("{{{fast}}}"),
    );
    create(
        &mut c,
        "p_pos",
        &dirs[3],
        "f_pos",
        "csv",
        &format!(r#"{{{fast}, "header": false, "columns": ["id", null, "name", "qty"]}}"#),
    );
    create(
        &mut c,
        "p_forced",
        &dirs[4],
        "f_forced",
        "tsv",
        &format!(r#"{{{fast}, "compression": "zstd", "file_pattern": "*.dat"}}"#),
    );

    // Another dialect: '|' between fields, quotes ' escaped by a backslash, NULL spelled NULL
    // (an empty field is an empty string, a quoted 'NULL' the word), LATIN1.
    create(
        &mut c,
        "p_opts",
        &dirs[5],
        "f_opts",
        "csv",
        &format!(
            r#"{{{fast}, "delimiter": "|", "quote": "'", "escape": "\\", "null": "NULL", "encoding": "LATIN1"}}"#
        ),
    );
    write_atomic(
        &dirs[5],
        "latin1.csv",
        b"id|name|qty|note\n1|'it\\'s | here'|10|NULL\n2|caf\xe9|20|\n3|'NULL'|30|\xfc\n",
    );

    // CSV: plain, gzip, zstd (CR LF).
    write_atomic(&dirs[0], "a.csv", &csv_variant(0, false));
    write_atomic(&dirs[0], "b.csv.gz", &gz(&csv_variant(10, false)));
    write_atomic(&dirs[0], "c.csv.zst", &zst(&csv_variant(20, true)));
    // TSV.
    write_atomic(&dirs[1], "a.tsv", &tsv_variant(0));
    write_atomic(&dirs[1], "b.tsv.gz", &gz(&tsv_variant(10)));
    write_atomic(&dirs[1], "c.tsv.zst", &zst(&tsv_variant(20)));
    // NDJSON, under both names.
    write_atomic(&dirs[2], "a.ndjson", &ndjson_variant(0));
    write_atomic(&dirs[2], "b.jsonl", &ndjson_variant(10));
    write_atomic(&dirs[2], "c.ndjson.gz", &gz(&ndjson_variant(20)));
    write_atomic(&dirs[2], "d.jsonl.zst", &zst(&ndjson_variant(30)));
    // Header-less CSV: field 2 skipped, note absent (NULL); line 3 has a field too few.
    let pos = |b: i32| {
        format!(
            "{},skip,alpha,10\n{},skip,\"be,ta\",20\n{},skip,gamma\n{},skip,delta,40\n",
            b + 1,
            b + 2,
            b + 3,
            b + 4
        )
        .into_bytes()
    };
    write_atomic(&dirs[3], "a.csv", &pos(0));
    write_atomic(&dirs[3], "b.csv.gz", &gz(&pos(10)));
    // Forced zstd under another suffix; a plain .tsv there does not match the pattern.
    write_atomic(&dirs[4], "f.dat", &zst(&tsv_variant(0)));
    write_atomic(&dirs[4], "ignored.tsv", &tsv_variant(100));

    wait_done(&mut c, "p_csv", 3);
    wait_done(&mut c, "p_tsv", 3);
    wait_done(&mut c, "p_nd", 4);
    wait_done(&mut c, "p_pos", 2);
    wait_done(&mut c, "p_forced", 1);
    wait_done(&mut c, "p_opts", 1);

    // CSV.
    let mut want = csv_expected(0, false);
    want.extend(csv_expected(10, false));
    want.extend(csv_expected(20, true));
    assert_eq!(rows4(&mut c, "f_csv"), want);
    let bad_int = |f: &str, line: i64, v: &str| {
        refused(
            f,
            line,
            Some("qty"),
            &format!("invalid input syntax for type integer: \"{v}\""),
            "22P02",
        )
    };
    assert_rejects(
        &rejects(&mut c, "p_csv"),
        &[
            bad_int("a.csv", 6, "notanumber"),
            bad_int("b.csv.gz", 6, "notanumber"),
            bad_int("c.csv.zst", 6, "notanumber"),
        ],
    );
    assert_eq!(
        files(&mut c, "p_csv"),
        vec![
            file("a.csv", "done", 5, 1),
            file("b.csv.gz", "done", 5, 1),
            file("c.csv.zst", "done", 5, 1)
        ]
    );

    // TSV.
    let mut want = tsv_expected(0);
    want.extend(tsv_expected(10));
    want.extend(tsv_expected(20));
    assert_eq!(rows4(&mut c, "f_tsv"), want);
    assert_rejects(
        &rejects(&mut c, "p_tsv"),
        &[
            bad_int("a.tsv", 4, "bad"),
            bad_int("b.tsv.gz", 4, "bad"),
            bad_int("c.tsv.zst", 4, "bad"),
        ],
    );

    // NDJSON.
    let mut want = Vec::new();
    for b in [0, 10, 20, 30] {
        want.extend(ndjson_expected(b));
    }
    assert_eq!(rows4(&mut c, "f_nd"), want);
    let mut want = Vec::new();
    for f in ["a.ndjson", "b.jsonl", "c.ndjson.gz", "d.jsonl.zst"] {
        want.push(bad_int(f, 3, "bad"));
        want.push((
            f.to_string(),
            4,
            None,
            "not valid JSON: key must be a string at line 1 column 2".to_string(),
        ));
        want.push((
            f.to_string(),
            7,
            None,
            "expected a JSON object {\"column\": value, …} per line, found an array".to_string(),
        ));
    }
    assert_rejects(&rejects(&mut c, "p_nd"), &want);
    for f in ["a.ndjson", "b.jsonl", "c.ndjson.gz", "d.jsonl.zst"] {
        let (_, extra) = file_error(&mut c, "p_nd", f);
        assert_eq!(extra, Some(vec!["zzz".to_string()]), "{f}: the unknown key");
    }

    // Header-less, by position.
    assert_eq!(
        rows4(&mut c, "f_pos"),
        vec![
            row4(1, Some("alpha"), Some(10), None),
            row4(2, Some("be,ta"), Some(20), None),
            row4(4, Some("delta"), Some(40), None),
            row4(11, Some("alpha"), Some(10), None),
            row4(12, Some("be,ta"), Some(20), None),
            row4(14, Some("delta"), Some(40), None),
        ]
    );
    let short = |f: &str| {
        (
            f.to_string(),
            3,
            None,
            "expected 4 fields as in the \"columns\" option, found 3".to_string(),
        )
    };
    assert_rejects(
        &rejects(&mut c, "p_pos"),
        &[short("a.csv"), short("b.csv.gz")],
    );
    assert_eq!(
        file_error(&mut c, "p_pos", "a.csv"),
        (
            s("unknown columns ignored: #2"),
            Some(vec!["#2".to_string()])
        ),
        "the skipped position is listed"
    );

    // Forced zstd.
    assert_eq!(rows4(&mut c, "f_forced"), tsv_expected(0));
    assert_eq!(files(&mut c, "p_forced"), vec![file("f.dat", "done", 3, 1)]);

    // Options of the dialect.
    assert_eq!(
        rows4(&mut c, "f_opts"),
        vec![
            row4(1, Some("it's | here"), Some(10), None),
            row4(2, Some("café"), Some(20), Some("")),
            row4(3, Some("NULL"), Some(30), Some("ü")),
        ]
    );
    assert_eq!(
        files(&mut c, "p_opts"),
        vec![file("latin1.csv", "done", 3, 0)]
    );

    // A compressed file done is judged by its size on disk and its decompressed content:
    // touched (same bytes), it stays done; rewritten with other bytes, it is reported changed
    // and its new content is not ingested.
    let b_gz = dirs[0].join("b.csv.gz");
    let f = std::fs::File::options().append(true).open(&b_gz).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(f);
    write_atomic(&dirs[0], "c.csv.zst", &zst(&csv_variant(40, false)));
    full_trigger(&mut c, "p_csv");
    full_trigger(&mut c, "p_csv");
    assert_eq!(
        files(&mut c, "p_csv"),
        vec![
            file("a.csv", "done", 5, 1),
            file("b.csv.gz", "done", 5, 1),
            file("c.csv.zst", "changed", 5, 1)
        ]
    );
    assert_eq!(c.int("SELECT count(*) FROM f_csv"), 15);

    for p in ["p_csv", "p_tsv", "p_nd", "p_pos", "p_forced", "p_opts"] {
        assert_consistent(&mut c, p);
        let st = pstatus(&mut c, p);
        let failed = i64::from(p == "p_csv"); // c.csv.zst changed
        assert_eq!(
            (st.state.as_str(), st.files_failed),
            ("running", failed),
            "{p}: {st:#?}"
        );
    }
}
