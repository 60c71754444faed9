//! The command line: options, their defaults, and the checks that refuse bad values
//! (clap exits with status 2 and names the option).

use clap::{CommandFactory, Parser};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Writes e-commerce event CSV files that follow the event contract, one file at a time,
/// each published atomically (written under a dot-prefixed temporary name, fsynced, renamed).
#[derive(Debug, Clone, Parser)]
#[command(name = "feeder", version, about, long_about = None)]
pub struct Args {
    /// Folder the files are written to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub output_dir: PathBuf,

    /// Rows per file (valid events plus injected bad rows).
    #[arg(long, value_name = "N", default_value = "10", value_parser = positive_u64, allow_negative_numbers = true)]
    pub events_per_file: u64,

    /// Pause between files: a number and a unit, `ms`, `s`, `m` or `h` (`200ms`, `5s`, `1m`).
    /// With a simulated clock (--start-time) it is also the simulated time one file spans.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub delay: Duration,

    /// Number of files to write; 0 runs until Ctrl-C.
    #[arg(long, value_name = "N", default_value = "20", value_parser = non_negative_u64, allow_negative_numbers = true)]
    pub total_files: u64,

    /// Seed of the random generator, for reproducible runs [default: random, printed in the summary].
    #[arg(long, value_name = "N", value_parser = non_negative_u64, allow_negative_numbers = true)]
    pub seed: Option<u64>,

    /// Write as fast as possible, no pause between files (for benchmarks). A simulated clock
    /// still advances by --delay per file.
    #[arg(long, conflicts_with = "rate")]
    pub burst: bool,

    /// Pace by events per second instead of --delay (each file is due events-per-file / rate
    /// seconds after the previous one). Fractions allowed.
    #[arg(long, value_name = "EVENTS_PER_SECOND", value_parser = positive_f64, allow_negative_numbers = true, conflicts_with = "delay")]
    pub rate: Option<f64>,

    /// Number of distinct users (`user_1` .. `user_N`).
    #[arg(long, value_name = "N", default_value = "1000", value_parser = count_u32, allow_negative_numbers = true)]
    pub users: u32,

    /// Size of the product catalogue (`prod_0001` ..). A product id always has the same name,
    /// category and price, in every run.
    #[arg(long, value_name = "N", default_value = "200", value_parser = catalogue_size, allow_negative_numbers = true)]
    pub products: u32,

    /// Start of a simulated clock (RFC 3339, e.g. `2024-05-01T00:00:00Z`): event timestamps and
    /// file names come from it, not from the wall clock, so a seeded run is byte-for-byte
    /// reproducible [default: the real clock, UTC now].
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_start_time)]
    pub start_time: Option<chrono::DateTime<chrono::Utc>>,

    /// Probability (0 to 1) that a purchase follows a view, of a product viewed in the session.
    #[arg(long, value_name = "RATIO", default_value = "0.03", value_parser = ratio, allow_negative_numbers = true)]
    pub conversion_rate: f64,

    /// Probability (0 to 1) that a row is replaced by a contract-breaking row (for tests of the
    /// rejects path). The kinds of breakage rotate; the summary says how many were injected.
    #[arg(long, value_name = "RATIO", default_value = "0", value_parser = ratio, allow_negative_numbers = true)]
    pub bad_row_ratio: f64,

    /// No progress bar, no periodic progress lines, no final summary (errors are still shown).
    #[arg(long, short)]
    pub quiet: bool,

    /// Also write the final summary as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
}

/// Upper bound on --events-per-file: beyond it a file would not be a sensible unit of work.
const MAX_EVENTS_PER_FILE: u64 = 1_000_000_000;
/// Upper bound on --products (the catalogue is built in memory).
const MAX_PRODUCTS: u32 = 10_000_000;

fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err("must not be negative".into());
    }
    t.parse::<u64>()
        .map_err(|_| format!("expected a whole number, found {s:?}"))
}

fn positive_u64(s: &str) -> Result<u64, String> {
    match parse_u64(s)? {
        0 => Err("must be at least 1".into()),
        n if n > MAX_EVENTS_PER_FILE => Err(format!("must be at most {MAX_EVENTS_PER_FILE}")),
        n => Ok(n),
    }
}

fn non_negative_u64(s: &str) -> Result<u64, String> {
    parse_u64(s)
}

fn count_u32(s: &str) -> Result<u32, String> {
    match parse_u64(s)? {
        0 => Err("must be at least 1".into()),
        n => u32::try_from(n).map_err(|_| format!("must be at most {}", u32::MAX)),
    }
}

fn catalogue_size(s: &str) -> Result<u32, String> {
    let n = count_u32(s)?;
    if n > MAX_PRODUCTS {
        return Err(format!("must be at most {MAX_PRODUCTS}"));
    }
    Ok(n)
}

fn parse_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("expected a number, found {s:?}"))?;
    if !v.is_finite() {
        return Err("must be a finite number".into());
    }
    Ok(v)
}

fn positive_f64(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v <= 0.0 {
        return Err("must be greater than 0".into());
    }
    Ok(v)
}

fn ratio(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if !(0.0..=1.0).contains(&v) {
        return Err("must be between 0 and 1".into());
    }
    Ok(v)
}

/// `200ms`, `5s`, `1.5s`, `1m`, `2h`, `0s`. A unit is required.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err("must not be negative".into());
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "expected a number and a unit (ms, s, m or h), like 200ms or 5s; found {s:?}"
        ));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| format!("expected a number before the unit, found {num:?}"))?;
    let secs_per_unit = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "" => {
            return Err(format!(
                "a unit is required (ms, s, m or h), like {num}s; found {s:?}"
            ))
        }
        other => {
            return Err(format!(
                "unknown unit {other:?}; expected ms, s, m or h (like 200ms, 5s, 1m)"
            ))
        }
    };
    let secs = value * secs_per_unit;
    if !secs.is_finite() || secs > 30.0 * 86_400.0 {
        return Err("must be at most 30 days".into());
    }
    // Whole microseconds: the simulated clock counts in microseconds.
    Ok(Duration::from_micros((secs * 1e6).round() as u64))
}

fn parse_start_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let us = ecommerce_events::parse_timestamp(s.trim().as_bytes())
        .map_err(|why| format!("{why}; found {s:?}"))?;
    // File names and the fast timestamp formatter assume four-digit years after 1970.
    const MAX_US: i64 = 253_402_300_799_000_000 - 1_000 * 365 * 86_400 * 1_000_000; // year ~9000
    if !(0..=MAX_US).contains(&us) {
        return Err("must be between 1970 and the year 9000".into());
    }
    Ok(chrono::DateTime::from_timestamp_micros(us).expect("in range"))
}

/// How files are paced in wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// No pause at all.
    Burst,
    /// One file every this long.
    Every(Duration),
}

/// The validated run configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub output_dir: PathBuf,
    pub events_per_file: u64,
    /// `None`: endless.
    pub total_files: Option<u64>,
    pub seed: u64,
    pub seed_given: bool,
    pub pacing: Pacing,
    /// Simulated time one file spans (also with the real clock, to spread nothing: unused there).
    pub file_span: Duration,
    pub users: u32,
    pub products: u32,
    pub start_time: Option<chrono::DateTime<chrono::Utc>>,
    pub conversion_rate: f64,
    pub bad_row_ratio: f64,
    pub quiet: bool,
    pub summary_json: Option<PathBuf>,
}

impl Args {
    pub fn into_config(self) -> Config {
        let file_span = match self.rate {
            Some(r) => {
                let secs = self.events_per_file as f64 / r;
                if !secs.is_finite() || secs > 30.0 * 86_400.0 {
                    Args::command()
                        .error(
                            clap::error::ErrorKind::ValueValidation,
                            "--rate is so low that one file would take more than 30 days",
                        )
                        .exit();
                }
                Duration::from_micros((secs * 1e6).round().max(1.0) as u64)
            }
            None => self.delay,
        };
        if let Some(path) = &self.summary_json {
            // Checked now, like every other option: finding out after the run would leave the
            // files written and the summary lost.
            if let Err(why) = check_summary_path(path, &self.output_dir) {
                Args::command()
                    .error(
                        clap::error::ErrorKind::ValueValidation,
                        format!("--summary-json {}: {why}", path.display()),
                    )
                    .exit();
            }
        }
        let pacing = if self.burst {
            Pacing::Burst
        } else {
            Pacing::Every(file_span)
        };
        let seed = self.seed.unwrap_or_else(random_seed);
        Config {
            output_dir: self.output_dir,
            events_per_file: self.events_per_file,
            total_files: (self.total_files > 0).then_some(self.total_files),
            seed,
            seed_given: self.seed.is_some(),
            pacing,
            file_span,
            users: self.users,
            products: self.products,
            start_time: self.start_time,
            conversion_rate: self.conversion_rate,
            bad_row_ratio: self.bad_row_ratio,
            quiet: self.quiet,
            summary_json: self.summary_json,
        }
    }
}

/// Whether the summary can be written to `path` at the end of the run, checked without
/// creating or changing anything: an existing file must open for writing; otherwise its folder
/// must exist and take new files, unless it is the output folder, which the feeder creates (and
/// checks) before writing any event file.
fn check_summary_path(path: &Path, output_dir: &Path) -> Result<(), String> {
    match fs::metadata(path) {
        Ok(md) if md.is_dir() => Err("is a folder; expected the path of a file to write".into()),
        Ok(_) => fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot be written: {e}")),
        // Not there (ENOTDIR: a part of the path is a file): look at its folder.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            let folder = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            match fs::metadata(folder) {
                Ok(md) if md.is_dir() => can_create_in(folder)
                    .map_err(|e| format!("cannot create a file in {}: {e}", folder.display())),
                Ok(_) => Err(format!("{} is not a folder", folder.display())),
                Err(_) if folder == output_dir => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
                    "the folder {} does not exist (create it first)",
                    folder.display()
                )),
                Err(e) => Err(format!("cannot use the folder {}: {e}", folder.display())),
            }
        }
        Err(e) => Err(format!("cannot be checked: {e}")),
    }
}

/// The process may create files in `folder` (write and search permission, a writable file
/// system), asked of the kernel without creating one.
fn can_create_in(folder: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(folder.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in the path"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A seed when none is given: varies from run to run (time and process id).
fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // SplitMix64 finaliser to spread the bits.
    let mut z = t ^ ((std::process::id() as u64) << 32);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) >> 1 // fits the non-negative range --seed accepts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["5x", "5", "", "s", "-1s", "1.2.3s", "5 s", "99999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_and_ratios() {
        assert!(positive_u64("0").is_err());
        assert!(positive_u64("-3").is_err());
        assert_eq!(positive_u64("10"), Ok(10));
        assert_eq!(non_negative_u64("0"), Ok(0));
        assert!(count_u32("0").is_err());
        assert!(count_u32("5000000000").is_err());
        assert!(ratio("1.5").is_err());
        assert!(ratio("-0.1").is_err());
        assert!(ratio("NaN").is_err());
        assert_eq!(ratio("1"), Ok(1.0));
        assert!(positive_f64("0").is_err());
        assert!(positive_f64("-3").is_err());
    }

    #[test]
    fn start_times() {
        let t = parse_start_time("2024-05-01T12:30:00Z").unwrap();
        assert_eq!(t.timestamp(), 1_714_566_600);
        assert!(parse_start_time("1969-12-31T23:59:59Z").is_err());
        assert!(parse_start_time("yesterday").is_err());
    }

    #[test]
    fn summary_paths() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let ok = |p: &Path| check_summary_path(p, &out);
        // A new file in an existing folder, or an existing file: fine, and left untouched.
        assert_eq!(ok(&d.path().join("s.json")), Ok(()));
        assert!(!d.path().join("s.json").exists());
        let existing = d.path().join("old.json");
        fs::write(&existing, "keep").unwrap();
        assert_eq!(ok(&existing), Ok(()));
        assert_eq!(fs::read_to_string(&existing).unwrap(), "keep");
        // In the output folder the feeder will create.
        assert_eq!(ok(&out.join("s.json")), Ok(()));
        // Refused, with the reason.
        let e = ok(&d.path().join("nope/s.json")).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        assert!(e.contains("nope"), "{e}");
        let e = ok(d.path()).unwrap_err();
        assert!(e.contains("is a folder"), "{e}");
        let e = ok(&existing.join("s.json")).unwrap_err();
        assert!(e.contains("is not a folder"), "{e}");
        // Deeper below the output folder is not created for it.
        assert!(ok(&out.join("sub/s.json")).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }
}
