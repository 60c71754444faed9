//! Compressed files: by suffix or forced, multi-member gzip, corrupt and truncated archives.

mod common;
use common::*;
use ingest_core::*;

const CSV: &[u8] = b"a,b\n1,2\n3,4\n5,6\n";

#[test]
fn names_decide_the_compression() {
    assert_eq!(Compression::of_name("x.CSV.GZ"), Compression::Gzip);
    assert_eq!(Compression::of_name("x.csv.zst"), Compression::Zstd);
    assert_eq!(Compression::of_name("x.csv"), Compression::None);
    assert_eq!(Compression::of_name("gz"), Compression::None);
}

#[test]
fn gzip_zstd_and_forced() {
    let d = tempfile::tempdir().unwrap();
    let t = cols(&["a", "b"]);
    for (name, bytes, opts) in [
        ("f.csv.gz", gz(CSV), "{}"),
        ("f.csv.zst", zst(CSV), "{}"),
        ("f.data", gz(CSV), r#"{"compression": "gzip"}"#),
        ("g.csv.gz", CSV.to_vec(), r#"{"compression": "none"}"#),
    ] {
        let p = write(d.path(), name, &bytes);
        let rows = read(&p, "csv", opts, &t);
        assert_eq!(values(&rows).len(), 3, "{name}");
        assert_eq!(rows[2].end, CSV.len() as u64);
    }
}

#[test]
fn concatenated_gzip_members_are_all_read() {
    let d = tempfile::tempdir().unwrap();
    let mut bytes = gz(b"a,b\n1,2\n");
    bytes.extend(gz(b"3,4\n"));
    let p = write(d.path(), "f.csv.gz", &bytes);
    let rows = read(&p, "csv", "{}", &cols(&["a", "b"]));
    assert_eq!(values(&rows).len(), 2);
}

fn big_csv() -> Vec<u8> {
    let mut v = b"a,b\n".to_vec();
    for i in 0..50_000u32 {
        v.extend_from_slice(format!("{i},{}\n", i.wrapping_mul(2654435761)).as_bytes());
    }
    v
}

fn read_until_error(p: &std::path::Path) -> (usize, std::io::Error) {
    let opts = parse_options("csv", "{}").unwrap();
    let mut r = open(p, &opts, &cols(&["a", "b"])).unwrap();
    let mut n = 0;
    loop {
        match r.next_record() {
            Ok(Some(rec)) => {
                assert!(matches!(rec.outcome, RowOutcome::Valid { .. }), "row {n}");
                n += 1
            }
            Ok(None) => panic!("silent end after {n} rows"),
            Err(e) => return (n, e),
        }
    }
}

#[test]
fn truncated_gzip_is_an_error_after_the_good_rows() {
    let d = tempfile::tempdir().unwrap();
    let full = gz(&big_csv());
    let p = write(d.path(), "f.csv.gz", &full[..full.len() * 2 / 3]);
    let (n, e) = read_until_error(&p);
    assert!(n > 1000, "{n}");
    assert!(
        e.to_string().contains("truncated or corrupt gzip data"),
        "{e}"
    );
}

#[test]
fn corrupt_zstd_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let mut bytes = zst(&big_csv());
    let len = bytes.len();
    let p = write(d.path(), "t.csv.zst", &bytes[..len / 2]);
    let (_, e) = read_until_error(&p);
    assert!(
        e.to_string().contains("truncated or corrupt zstd data"),
        "{e}"
    );
    for b in &mut bytes[len / 2..len / 2 + 64] {
        *b ^= 0x5a;
    }
    let p = write(d.path(), "c.csv.zst", &bytes);
    let (_, e) = read_until_error(&p);
    assert!(
        e.to_string().contains("truncated or corrupt zstd data"),
        "{e}"
    );
}

#[test]
fn not_gzip_at_all_fails_the_open() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "f.csv.gz", CSV);
    let opts = parse_options("csv", "{}").unwrap();
    match open(&p, &opts, &cols(&["a", "b"])) {
        Err(OpenError::Io(e)) => assert!(e.to_string().contains("gzip"), "{e}"),
        other => panic!("{:?}", other.err()),
    }
}
