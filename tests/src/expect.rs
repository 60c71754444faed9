//! What the files say the database must hold: the expected rows and rejects, computed with the
//! contract's own reader, the rows stored, and their comparison.

use crate::cluster::Cluster;
use crate::generate::write_atomic;
use ecommerce_events::{EventReader, Outcome};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// The columns of `user_events` compared with the files, in [`EventRow`] order.
pub const EVENTS_QUERY: &str = "SELECT source_file, source_line, user_id, event_type, product_id,
        product_name, product_category, price::text,
        (extract(epoch FROM event_timestamp) * 1e6)::int8, session_id, device_type
   FROM user_events_with_source ORDER BY source_file, source_line";

/// A valid event as the files say it should be stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventRow {
    pub file: String,
    pub line: i64,
    pub user_id: String,
    pub event_type: String,
    pub product_id: String,
    pub product_name: String,
    pub product_category: String,
    /// `12.34`
    pub price: String,
    /// UTC microseconds since the Unix epoch.
    pub ts_us: i64,
    pub session_id: String,
    pub device_type: String,
}

impl EventRow {
    /// A row of a query shaped like [`EVENTS_QUERY`].
    pub fn from_row(r: &postgres::Row) -> EventRow {
        EventRow {
            file: r.get(0),
            line: r.get(1),
            user_id: r.get(2),
            event_type: r.get(3),
            product_id: r.get(4),
            product_name: r.get(5),
            product_category: r.get(6),
            price: r.get(7),
            ts_us: r.get(8),
            session_id: r.get(9),
            device_type: r.get(10),
        }
    }
}

/// A rejected row as the files say it should be reported.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RejectRow {
    pub file: String,
    pub line: i64,
    pub column: Option<String>,
}

#[derive(Debug, Default)]
pub struct Expected {
    pub rows: Vec<EventRow>,
    pub rejects: Vec<RejectRow>,
}

impl Cluster {
    /// Every row of `user_events`, in [`EventRow`] form, sorted.
    pub fn stored_rows(&mut self) -> Vec<EventRow> {
        let rows = self.client().query(EVENTS_QUERY, &[]).expect("user_events");
        let mut out: Vec<EventRow> = rows.iter().map(EventRow::from_row).collect();
        out.sort();
        out
    }

    /// Every reject, sorted.
    pub fn stored_rejects(&mut self) -> Vec<RejectRow> {
        let rows = self
            .client()
            .query(
                "SELECT file_name, line_number, column_name FROM ingest_rejects",
                &[],
            )
            .expect("ingest_rejects");
        let mut out: Vec<RejectRow> = rows
            .iter()
            .map(|r| RejectRow {
                file: r.get(0),
                line: r.get(1),
                column: r.get(2),
            })
            .collect();
        out.sort();
        out
    }

    /// No duplicates, and exactly the expected rows with the expected values.
    pub fn assert_exact_rows(&mut self, expected: &[EventRow]) {
        let dups = self.duplicates();
        assert!(
            dups.is_empty(),
            "{} duplicated (file, line) pairs, e.g. {:?}",
            dups.len(),
            &dups[..dups.len().min(5)]
        );
        let got = self.stored_rows();
        assert_same_rows(expected, &got);
    }
}

/// Compares two sorted row lists; on a difference shows the first few mismatches.
pub fn assert_same_rows(expected: &[EventRow], got: &[EventRow]) {
    if expected == got {
        return;
    }
    let mut msg = format!(
        "user_events differs from the files: expected {} rows, found {}\n",
        expected.len(),
        got.len()
    );
    let mut shown = 0;
    let (mut i, mut j) = (0, 0);
    while (i < expected.len() || j < got.len()) && shown < 10 {
        match (expected.get(i), got.get(j)) {
            (Some(e), Some(g)) if e == g => {
                i += 1;
                j += 1;
            }
            (Some(e), Some(g)) if (&e.file, e.line) == (&g.file, g.line) => {
                let _ = writeln!(msg, "  different values:\n    file: {e:?}\n    db:   {g:?}");
                shown += 1;
                i += 1;
                j += 1;
            }
            (Some(e), Some(g)) if (&e.file, e.line) < (&g.file, g.line) => {
                let _ = writeln!(msg, "  missing: {e:?}");
                shown += 1;
                i += 1;
            }
            (Some(_), Some(g)) => {
                let _ = writeln!(msg, "  extra: {g:?}");
                shown += 1;
                j += 1;
            }
            (Some(e), None) => {
                let _ = writeln!(msg, "  missing: {e:?}");
                shown += 1;
                i += 1;
            }
            (None, Some(g)) => {
                let _ = writeln!(msg, "  extra: {g:?}");
                shown += 1;
                j += 1;
            }
            (None, None) => break,
        }
    }
    panic!("{msg}");
}

/// What a file named `name` holding `bytes` must give, read from a copy outside any input
/// folder: computed before the file is dropped, so the worker's clock starts only once the
/// test is ready to watch it.
pub fn expected_of(name: &str, bytes: &[u8]) -> Expected {
    let staging = tempfile::tempdir().expect("a staging folder");
    expected_rows(&[write_atomic(staging.path(), name, bytes)])
}

/// Parses files with the contract's own reader: their valid rows and their rejects. `paths`
/// may name files or folders (every regular, non-hidden file directly inside is read).
pub fn expected_rows<P: AsRef<Path>>(paths: &[P]) -> Expected {
    let mut files = Vec::new();
    for p in paths {
        let p = p.as_ref();
        if p.is_dir() {
            for e in fs::read_dir(p).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().unwrap().is_file() && !ecommerce_events::is_temporary_name(&name) {
                    files.push(e.path());
                }
            }
        } else {
            files.push(p.to_path_buf());
        }
    }
    let mut out = Expected::default();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut r =
            EventReader::open(&path, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        while let Some(rec) = r
            .next_record()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        {
            match rec.outcome {
                Outcome::Valid(v) => out.rows.push(EventRow {
                    file: name.clone(),
                    line: rec.line as i64,
                    user_id: v.user_id.into(),
                    event_type: v.event_type.as_str().into(),
                    product_id: v.product_id.into(),
                    product_name: v.product_name.into(),
                    product_category: v.product_category.into(),
                    price: v.price.to_string(),
                    ts_us: v.event_timestamp_us,
                    session_id: v.session_id.into(),
                    device_type: v.device_type.as_str().into(),
                }),
                Outcome::Rejected { error, .. } => out.rejects.push(RejectRow {
                    file: name.clone(),
                    line: rec.line as i64,
                    column: error.column.map(str::to_string),
                }),
            }
        }
    }
    out.rows.sort();
    out.rejects.sort();
    out
}
