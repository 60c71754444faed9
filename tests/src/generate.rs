//! Test input: deterministic rows and files, seeds and a small random generator, atomic writes
//! into a folder, and the feeder binary.

use crate::repo::{repo_root, run};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn feeder_bin() -> PathBuf {
    std::env::var_os("FEEDER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/feeder"))
}

/// Writes `dir/.name.tmp` (mode 0644), then renames it to `dir/name`.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(name);
    let mut f = fs::File::create(&tmp).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
    fs::rename(&tmp, &dst).unwrap_or_else(|e| panic!("rename to {}: {e}", dst.display()));
    dst
}

const NAMES: [&str; 6] = [
    "USB-C Cable",
    "Widget, \"Deluxe\" edition",
    "Café crème mug",
    "Laptop Stand",
    "Noise-cancelling Headphones, 2nd gen",
    "Plain \"quoted\" thing",
];
const CATEGORIES: [&str; 4] = ["Electronics", "Home & Kitchen", "Books", "Sports"];
const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One deterministic, valid CSV row (no line terminator) for file `seed`, row `i`. Varies
/// quoting, price forms and timestamp forms (Z, no offset, +02:00, space separator, fractions).
pub fn gen_row(seed: u64, i: u64) -> String {
    let x = seed
        .wrapping_mul(1_000_003)
        .wrapping_add(i.wrapping_mul(7919));
    let day = seed % 28 + 1;
    let secs = (i * 37 + seed * 11) % 86_400;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let ts = match i % 4 {
        0 => format!("2024-05-{day:02}T{h:02}:{m:02}:{s:02}Z"),
        1 => format!("2024-05-{day:02} {h:02}:{m:02}:{s:02}.{:06}", x % 1_000_000),
        2 => format!(
            "2024-05-{day:02}T{:02}:{m:02}:{s:02}.{:03}+02:00",
            (h + 2) % 24,
            x % 1000
        ),
        _ => format!("2024-05-{day:02}T{h:02}:{m:02}:{s:02}"),
    };
    // `(h + 2) % 24` with +02:00 may land on the previous day in UTC: still a valid timestamp.
    let price = match i % 5 {
        0 => format!("{}.{:02}", x % 1000, x % 100),
        1 => format!("{}", x % 500),
        2 => format!("{}.{}", x % 300, x % 10),
        3 => format!("0.{:02}", x % 100),
        _ => format!("{}.99", x % 99_999_999),
    };
    [
        format!("user_{}", x % 1000),
        (if x.is_multiple_of(3) {
            "purchase"
        } else {
            "view"
        })
        .to_string(),
        format!("prod_{:04}", x % 5000),
        csv_field(NAMES[(x % 6) as usize]),
        csv_field(CATEGORIES[(x % 4) as usize]),
        price,
        ts,
        format!("sess_{seed}_{}", i / 10),
        DEVICES[(x % 3) as usize].to_string(),
    ]
    .join(",")
}

/// A whole file: the header and `rows` rows from [`gen_row`], LF-terminated.
pub fn gen_file(seed: u64, rows: u64) -> Vec<u8> {
    let mut s = ecommerce_events::header_line();
    s.push('\n');
    for i in 0..rows {
        s.push_str(&gen_row(seed, i));
        s.push('\n');
    }
    s.into_bytes()
}

/// Runs the feeder binary with `args`; panics with its output if it fails or is missing.
pub fn run_feeder(args: &[&str]) {
    let bin = feeder_bin();
    assert!(
        bin.exists(),
        "the feeder binary {} does not exist (build it with `cargo build -p feeder` or set FEEDER_BIN)",
        bin.display()
    );
    run(Command::new(&bin).args(args));
}

/// A small deterministic random generator (SplitMix64) for kill moments and the like.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The seed of a randomised test: `E2E_SEED` if set, else from the clock. Printed, so that a
/// failing run can be repeated with `E2E_SEED=<seed>`.
pub fn test_seed(test: &str) -> u64 {
    let seed = match std::env::var("E2E_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("E2E_SEED must be an unsigned integer, not {s:?}")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    println!("{test}: seed {seed} (repeat with E2E_SEED={seed})");
    seed
}

/// Copies `src` into `dir` under `name` the way a producer should: a temporary name, then a
/// rename (see [`write_atomic`]).
pub fn copy_in_atomic(dir: &Path, name: &str, src: &Path) -> PathBuf {
    let bytes = fs::read(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    write_atomic(dir, name, &bytes)
}

/// The regular, non-temporary files directly inside `dir`, sorted by name.
pub fn data_files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !ecommerce_events::is_temporary_name(n))
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}
