//! Helpers shared by the integration tests: run the built binary, read its files back through
//! the contract's own reader.
#![allow(dead_code)]

use ecommerce_events::{EventReader, Outcome};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn feeder() -> Command {
    Command::new(env!("CARGO_BIN_EXE_feeder"))
}

/// Runs the feeder with `args` and `--output-dir dir`; panics unless it exits 0.
pub fn run_ok(dir: &Path, args: &[&str]) -> Output {
    let out = feeder()
        .arg("--output-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("feeder runs");
    assert!(
        out.status.success(),
        "feeder {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A valid row, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub user_id: String,
    pub event_type: String,
    pub product_id: String,
    pub product_name: String,
    pub product_category: String,
    pub price_cents: i64,
    pub ts_us: i64,
    pub session_id: String,
    pub device_type: String,
}

/// What the contract reader made of one file.
#[derive(Debug, Default)]
pub struct Parsed {
    pub valid: Vec<Row>,
    pub rejected: Vec<String>,
}

pub fn parse(path: &Path) -> Parsed {
    let mut rdr = EventReader::open(path, None)
        .unwrap_or_else(|e| panic!("{}: cannot open: {e}", path.display()));
    let mut p = Parsed::default();
    while let Some(rec) = rdr.next_record().expect("readable") {
        assert!(rec.terminated, "{}: unterminated last line", path.display());
        match rec.outcome {
            Outcome::Valid(v) => p.valid.push(Row {
                user_id: v.user_id.into(),
                event_type: v.event_type.as_str().into(),
                product_id: v.product_id.into(),
                product_name: v.product_name.into(),
                product_category: v.product_category.into(),
                price_cents: v.price.cents(),
                ts_us: v.event_timestamp_us,
                session_id: v.session_id.into(),
                device_type: v.device_type.as_str().into(),
            }),
            Outcome::Rejected { error, raw } => p.rejected.push(format!("{error}: {raw}")),
        }
    }
    p
}

/// Every entry name of the folder, sorted (none while it does not exist yet).
pub fn names(dir: &Path) -> Vec<String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    let mut v: Vec<String> = entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// The published `*.csv` files, in name order.
pub fn csv_files(dir: &Path) -> Vec<PathBuf> {
    names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".csv") && !n.starts_with('.'))
        .map(|n| dir.join(n))
        .collect()
}

/// Reads the `--summary-json` file.
pub fn summary(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
