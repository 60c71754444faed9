//! Exactly-once check for `scripts/soak.sh`: compares a worker's database with the files it was
//! given, file by file, value by value (parsed with the contract's own reader).
//!
//!     soak_check PORT DIR...
//!
//! Prints `key=value` lines (files, rows_expected, rows_stored, rejects_expected, rejects_stored,
//! duplicates, missing, extra, different, files_not_done, ledger_problems) and exits 1 on any
//! mismatch.

use e2e::{expected_rows, ledger_problems, EventRow, RejectRow, DUPLICATES_QUERY};
use postgres::{Client, NoTls};
use std::collections::BTreeSet;
use std::path::PathBuf;

const ROWS_OF_FILE: &str = "SELECT source_file, source_line, user_id, event_type, product_id,
        product_name, product_category, price::text,
        (extract(epoch FROM event_timestamp) * 1e6)::int8, session_id, device_type
   FROM user_events_with_source WHERE source_file = $1 ORDER BY source_line";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: soak_check PORT DIR...");
        std::process::exit(2);
    }
    let port: u16 = args[0].parse().expect("PORT");
    let mut db = postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .application_name("soak_check")
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));

    let mut files: Vec<PathBuf> = Vec::new();
    for d in &args[1..] {
        let d = PathBuf::from(d);
        files.extend(e2e::data_files(&d).into_iter().map(|n| d.join(n)));
    }
    let names: BTreeSet<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        files.len(),
        "the same file name in two folders"
    );

    let (mut rows_expected, mut rows_stored, mut rejects_expected) = (0usize, 0usize, 0usize);
    let (mut missing, mut extra, mut different) = (0usize, 0usize, 0usize);
    let mut examples: Vec<String> = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let exp = expected_rows(&[path]);
        rows_expected += exp.rows.len();
        rejects_expected += exp.rejects.len();
        let got = stored(&mut db, &name);
        rows_stored += got.len();
        let (m, x, d) = diff(&exp.rows, &got, &mut examples);
        missing += m;
        extra += x;
        different += d;
        let got_rej = rejects(&mut db, &name);
        if got_rej != exp.rejects {
            different += 1;
            if examples.len() < 10 {
                examples.push(format!(
                    "{name}: rejects differ: expected {:?}, stored {:?}",
                    exp.rejects, got_rej
                ));
            }
        }
    }
    // Rows of files that are not in the folders at all.
    let stray: i64 = db
        .query_one(
            "SELECT count(*) FROM user_events_with_source WHERE NOT (source_file IS NOT NULL AND source_file = ANY($1))",
            &[&names.iter().cloned().collect::<Vec<_>>()],
        )
        .unwrap()
        .get(0);
    extra += stray as usize;
    let total: i64 = db
        .query_one("SELECT count(*) FROM user_events", &[])
        .unwrap()
        .get(0);
    let rejects_stored: i64 = db
        .query_one("SELECT count(*) FROM ingest_rejected", &[])
        .unwrap()
        .get(0);
    let duplicates = db.query(DUPLICATES_QUERY, &[]).unwrap().len();
    let not_done: i64 = db
        .query_one(
            "SELECT count(*) FROM unnest($1::text[]) AS f(name)
              WHERE NOT EXISTS (SELECT 1 FROM ingest_ledger WHERE file_name = f.name AND status = 'done')",
            &[&names.iter().cloned().collect::<Vec<_>>()],
        )
        .unwrap()
        .get(0);
    let problems = ledger_problems(&mut db);

    println!("files={}", files.len());
    println!("rows_expected={rows_expected}");
    println!("rows_stored={total}");
    println!("rejects_expected={rejects_expected}");
    println!("rejects_stored={rejects_stored}");
    println!("duplicates={duplicates}");
    println!("missing={missing}");
    println!("extra={extra}");
    println!("different={different}");
    println!("files_not_done={not_done}");
    println!("ledger_problems={}", problems.len());
    for e in examples.iter().chain(problems.iter().take(10)) {
        eprintln!("  {e}");
    }
    let ok = total as usize == rows_expected
        && rows_stored == rows_expected
        && rejects_stored as usize == rejects_expected
        && duplicates == 0
        && missing == 0
        && extra == 0
        && different == 0
        && not_done == 0
        && problems.is_empty();
    std::process::exit(if ok { 0 } else { 1 });
}

fn stored(db: &mut Client, file: &str) -> Vec<EventRow> {
    db.query(ROWS_OF_FILE, &[&file])
        .unwrap()
        .iter()
        .map(EventRow::from_row)
        .collect()
}

fn rejects(db: &mut Client, file: &str) -> Vec<RejectRow> {
    db.query(
        "SELECT file_name, line_number, column_name FROM ingest_rejected
          WHERE file_name = $1 ORDER BY line_number, column_name",
        &[&file],
    )
    .unwrap()
    .iter()
    .map(|r| RejectRow {
        file: r.get(0),
        line: r.get(1),
        column: r.get(2),
    })
    .collect()
}

/// Missing, extra and differing rows of one file (both lists sorted by line).
fn diff(exp: &[EventRow], got: &[EventRow], examples: &mut Vec<String>) -> (usize, usize, usize) {
    let (mut i, mut j) = (0, 0);
    let (mut m, mut x, mut d) = (0, 0, 0);
    let mut note = |s: String| {
        if examples.len() < 10 {
            examples.push(s);
        }
    };
    while i < exp.len() || j < got.len() {
        match (exp.get(i), got.get(j)) {
            (Some(e), Some(g)) if e.line == g.line => {
                if e != g {
                    d += 1;
                    note(format!("different: file {e:?} db {g:?}"));
                }
                i += 1;
                j += 1;
            }
            (Some(e), Some(g)) if e.line < g.line => {
                m += 1;
                note(format!("missing: {e:?}"));
                i += 1;
            }
            (Some(e), None) => {
                m += 1;
                note(format!("missing: {e:?}"));
                i += 1;
            }
            (_, Some(g)) => {
                x += 1;
                note(format!("extra: {g:?}"));
                j += 1;
            }
            (None, None) => break,
        }
    }
    (m, x, d)
}
