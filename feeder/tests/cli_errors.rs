//! Invalid options are refused with exit status 2 and a message naming the option, before
//! anything is written.

mod common;

use common::{feeder, names, run_ok};
use std::path::Path;

fn refused(args: &[&str], names: &[&str]) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("out");
    let out = feeder()
        .arg("--output-dir")
        .arg(&dir)
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    for n in names {
        assert!(
            err.contains(n),
            "{args:?}: message does not name {n}: {err}"
        );
    }
    assert!(!dir.exists(), "{args:?}: the output folder was touched");
}

#[test]
fn invalid_values_are_refused_naming_the_option() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--events-per-file", "0"],
            &["--events-per-file", "at least 1"],
        ),
        (
            &["--events-per-file", "-5"],
            &["--events-per-file", "negative"],
        ),
        (&["--events-per-file", "ten"], &["--events-per-file"]),
        (&["--delay", "5x"], &["--delay", "unknown unit"]),
        (&["--delay", "5"], &["--delay", "unit"]),
        (&["--delay", "-1s"], &["--delay", "negative"]),
        (&["--total-files", "-1"], &["--total-files"]),
        (
            &["--bad-row-ratio", "1.5"],
            &["--bad-row-ratio", "between 0 and 1"],
        ),
        (&["--bad-row-ratio", "-0.1"], &["--bad-row-ratio"]),
        (
            &["--conversion-rate", "2"],
            &["--conversion-rate", "between 0 and 1"],
        ),
        (&["--users", "0"], &["--users", "at least 1"]),
        (&["--products", "0"], &["--products", "at least 1"]),
        (&["--rate", "-3"], &["--rate", "greater than 0"]),
        (&["--rate", "0"], &["--rate"]),
        (&["--seed", "-1"], &["--seed"]),
        (
            &["--start-time", "yesterday"],
            &["--start-time", "ISO 8601"],
        ),
        (&["--burst", "--rate", "100"], &["--burst", "--rate"]),
        (&["--delay", "1s", "--rate", "100"], &["--delay", "--rate"]),
        (&["--no-such-option"], &["--no-such-option"]),
    ];
    for (args, names) in cases {
        refused(args, names);
    }
}

#[test]
fn output_dir_is_required() {
    let out = feeder().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--output-dir"));
}

#[test]
fn help_shows_every_option_with_its_default() {
    let out = feeder().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for want in [
        "--output-dir",
        "--events-per-file <N>",
        "[default: 10]",
        "--delay <DURATION>",
        "[default: 5s]",
        "--total-files <N>",
        "[default: 20]",
        "--seed",
        "--burst",
        "--rate",
        "--users",
        "--products",
        "--start-time",
        "--conversion-rate",
        "[default: 0.03]",
        "--bad-row-ratio",
        "--quiet",
        "--summary-json",
    ] {
        assert!(help.contains(want), "help lacks {want}:\n{help}");
    }
}

/// Runs the feeder with `--summary-json summary`; it must refuse before writing anything.
fn summary_refused(summary: &Path, words: &[&str]) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("out");
    let out = feeder()
        .arg("--output-dir")
        .arg(&dir)
        .args(["--burst", "--total-files", "3", "--quiet"])
        .arg("--summary-json")
        .arg(summary)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{summary:?}: {err}");
    for w in words {
        assert!(err.contains(w), "{summary:?}: message lacks {w:?}: {err}");
    }
    assert!(
        names(&dir).is_empty() && !dir.exists(),
        "{summary:?}: files were written"
    );
}

#[test]
fn an_unwritable_summary_path_is_refused_before_any_file_is_written() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("no/such/folder/summary.json");
    summary_refused(
        &missing,
        &["--summary-json", "no/such/folder", "does not exist"],
    );
    summary_refused(d.path(), &["--summary-json", "is a folder"]);
    // Below a regular file: refused even as root.
    let plain = d.path().join("plain");
    std::fs::write(&plain, "x").unwrap();
    summary_refused(
        &plain.join("summary.json"),
        &["--summary-json", "is not a folder"],
    );
}

#[test]
fn a_summary_in_the_output_folder_it_creates_is_fine() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("out");
    let json = dir.join("summary.json");
    run_ok(
        &dir,
        &[
            "--burst",
            "--total-files",
            "1",
            "--quiet",
            "--summary-json",
            json.to_str().unwrap(),
        ],
    );
    assert!(json.is_file());
}
