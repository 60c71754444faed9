//! Ctrl-C ends an endless run cleanly: exit 0, a summary, complete files only.

mod common;

use common::*;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn wait_for_files(dir: &std::path::Path, n: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while csv_files(dir).len() < n {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the feeder ended early"
        );
        assert!(Instant::now() < deadline, "no files appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn interrupt_and_wait(child: Child) -> std::process::Output {
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    child.wait_with_output().unwrap()
}

fn assert_clean(dir: &std::path::Path, per_file: usize) -> usize {
    let all = names(dir);
    assert!(
        all.iter()
            .all(|n| !n.starts_with('.') && n.ends_with(".csv")),
        "{all:?}"
    );
    let files = csv_files(dir);
    for f in &files {
        let p = parse(f);
        assert!(p.rejected.is_empty());
        assert_eq!(p.valid.len(), per_file, "{} is incomplete", f.display());
    }
    files.len()
}

#[test]
fn ctrl_c_stops_an_endless_run_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let json = d.path().join("summary.json");
    let dir = d.path().join("out");
    let mut child = feeder()
        .arg("--output-dir")
        .arg(&dir)
        .args([
            "--total-files",
            "0",
            "--delay",
            "30ms",
            "--events-per-file",
            "50",
        ])
        .args(["--summary-json", json.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_files(&dir, 3, &mut child);
    let out = interrupt_and_wait(child);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("feeder summary (stopped by Ctrl-C)"),
        "{text}"
    );
    let n = assert_clean(&dir, 50);
    let s = summary(&json);
    assert_eq!(s["interrupted"], true);
    assert_eq!(s["files"].as_u64().unwrap() as usize, n);
    assert_eq!(s["events"].as_u64().unwrap() as usize, n * 50);
}

#[test]
fn ctrl_c_in_the_middle_of_a_large_file_discards_it() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("out");
    let per_file = 400_000;
    let child = feeder()
        .arg("--output-dir")
        .arg(&dir)
        .args(["--total-files", "0", "--burst", "--quiet"])
        .args(["--events-per-file", &per_file.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a temporary file is being written, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !names(&dir).iter().any(|n| n.starts_with(".events_")) {
        assert!(Instant::now() < deadline, "no file in progress seen");
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = interrupt_and_wait(child);
    assert_eq!(out.status.code(), Some(0));
    assert_clean(&dir, per_file);
}
