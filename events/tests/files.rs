//! What may be opened (no directories, FIFOs or symbolic links) and which files a folder
//! listing selects: order, patterns, temporary names.

mod common;

use common::*;
use ecommerce_events::reader::hash_file;
use ecommerce_events::{is_temporary_name, list_dir, EventReader, FilePattern, OpenError};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// What may be opened
// ---------------------------------------------------------------------------------------------

#[test]
fn open_refuses_directories_fifos_and_symlinks() {
    let dir = TempDir::new().unwrap();
    let d = dir.path().join("dir.csv");
    std::fs::create_dir(&d).unwrap();
    assert!(matches!(open_err(&d), OpenError::NotRegular("directory")));

    let fifo = dir.path().join("fifo.csv");
    mkfifo(&fifo);
    let f2 = fifo.clone();
    let e = within(5, move || EventReader::open(&f2, None).err());
    assert!(matches!(e, Some(OpenError::NotRegular("FIFO"))), "{e:?}");
    let f2 = fifo.clone();
    let e = within(5, move || hash_file(&f2).err());
    assert!(matches!(e, Some(OpenError::NotRegular("FIFO"))), "{e:?}");

    let target = write(&dir, "real.csv", format!("{HEADER}\n{}\n", good_line()));
    let link = dir.path().join("link.csv");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert!(matches!(
        open_err(&link),
        OpenError::NotRegular("symbolic link")
    ));
    assert!(matches!(
        hash_file(&link),
        Err(OpenError::NotRegular("symbolic link"))
    ));
    assert_eq!(
        open_err(&link).to_string(),
        "not a regular file (symbolic link); never read"
    );
    let dangling = dir.path().join("dangling.csv");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    assert!(matches!(
        open_err(&dangling),
        OpenError::NotRegular("symbolic link")
    ));

    match open_err(&dir.path().join("missing.csv")) {
        OpenError::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    // The regular file itself opens.
    assert_eq!(read_all(&target).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// File selection
// ---------------------------------------------------------------------------------------------

fn set_mtime(p: &Path, secs: i64, nanos: u32) {
    filetime::set_symlink_file_times(
        p,
        filetime::FileTime::from_unix_time(secs, nanos),
        filetime::FileTime::from_unix_time(secs, nanos),
    )
    .unwrap();
}

#[test]
fn list_dir_selects_regular_files_oldest_first() {
    let dir = TempDir::new().unwrap();
    let body = format!("{HEADER}\n");
    let files = [
        ("b.csv", 2_000, 0),
        ("a.csv", 3_000, 0),
        ("with space 'single' \"double\" é日本.csv", 1_000, 5),
        ("f.csv", 4_000, 0),
        ("e.csv", 4_000, 0), // same time: by name
        ("late.csv", 4_000, 1),
    ];
    for (name, secs, nanos) in files {
        let p = write(&dir, name, &body);
        set_mtime(&p, secs, nanos);
    }
    // Ignored silently: temporary names and names that do not match.
    for name in [".x.csv", "x.csv.tmp", "x.csv.part", "notes.txt", "x.CSV"] {
        let p = write(&dir, name, &body);
        set_mtime(&p, 500, 0);
    }
    // Matching entries that are never read.
    std::fs::create_dir(dir.path().join("d.csv")).unwrap();
    mkfifo(&dir.path().join("p.csv"));
    std::os::unix::fs::symlink(dir.path().join("a.csv"), dir.path().join("l.csv")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("dangling.csv"))
        .unwrap();
    let bad_name = OsStr::from_bytes(b"bad\xff.csv");
    std::fs::write(dir.path().join(bad_name), &body).unwrap();

    let pattern = FilePattern::new("*.csv").unwrap();
    let listing = within(10, {
        let d = dir.path().to_path_buf();
        move || list_dir(&d, &pattern).unwrap()
    });
    let names: Vec<&str> = listing.files.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "with space 'single' \"double\" é日本.csv",
            "b.csv",
            "a.csv",
            "e.csv",
            "f.csv",
            "late.csv"
        ]
    );
    for c in &listing.files {
        let md = std::fs::symlink_metadata(dir.path().join(&c.name)).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(c.size, body.len() as u64);
        assert_eq!(c.inode, md.ino());
        assert_eq!(c.mtime_ns, md.mtime() * 1_000_000_000 + md.mtime_nsec());
        // Names are opaque but usable: the file opens by its listed name.
        assert!(read_all(&dir.path().join(&c.name)).is_empty());
    }
    assert_eq!(listing.files[0].mtime_ns, 1_000_000_000_005);
    assert_eq!(listing.files[5].mtime_ns, 4_000_000_000_001);

    let mut skipped: Vec<(String, String)> = listing
        .skipped
        .iter()
        .map(|s| (s.name.clone(), s.reason.clone()))
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        vec![
            (
                "bad\u{fffd}.csv".to_string(),
                "the file name is not valid UTF-8".to_string()
            ),
            (
                "d.csv".to_string(),
                "not a regular file (directory); never read".to_string()
            ),
            (
                "dangling.csv".to_string(),
                "not a regular file (symbolic link); never read".to_string()
            ),
            (
                "l.csv".to_string(),
                "not a regular file (symbolic link); never read".to_string()
            ),
            (
                "p.csv".to_string(),
                "not a regular file (FIFO); never read".to_string()
            ),
        ]
    );
}

#[test]
fn list_dir_of_a_missing_directory_is_an_error() {
    let dir = TempDir::new().unwrap();
    let pattern = FilePattern::new("*.csv").unwrap();
    assert!(list_dir(&dir.path().join("nope"), &pattern).is_err());
    let empty = list_dir(dir.path(), &pattern).unwrap();
    assert!(empty.files.is_empty() && empty.skipped.is_empty());
}

#[test]
fn file_patterns() {
    assert!(FilePattern::new("in/*.csv").is_err());
    assert!(FilePattern::new("/tmp/*.csv").is_err());
    assert!(FilePattern::new("../*.csv").is_err());
    assert!(FilePattern::new("[").is_err());
    let p = FilePattern::new("*.csv").unwrap();
    for yes in ["x.csv", "a b.csv", "é日本.csv", "'q\".csv", "x.tmp.csv"] {
        assert!(p.matches(yes), "{yes}");
    }
    for no in [".hidden.csv", "x.CSV", "x.csv.tmp", "x.csvx", "x.txt"] {
        assert!(!p.matches(no), "{no}");
    }
    let q = FilePattern::new("events_??.csv").unwrap();
    assert!(q.matches("events_01.csv"));
    assert!(!q.matches("events_1.csv"));
    let r = FilePattern::new("[ab]*.csv").unwrap();
    assert!(r.matches("a1.csv") && r.matches("b.csv") && !r.matches("c.csv"));
    // Several patterns, separated by commas: any of them.
    let l = FilePattern::new("*.csv, *.csv.gz,*.csv.zst").unwrap();
    assert!(l.matches("a.csv") && l.matches("a.csv.gz") && l.matches("a.csv.zst"));
    assert!(!l.matches("a.gz") && !l.matches("a.csv.bz2"));
    assert!(FilePattern::new("*.csv,[").is_err());
}

#[test]
fn temporary_names() {
    for t in [".x.csv", ".", "x.csv.tmp", "x.csv.part", ".partial"] {
        assert!(is_temporary_name(t), "{t}");
    }
    for n in ["x.csv", "x.tmp.csv", "part.csv", "tmp"] {
        assert!(!is_temporary_name(n), "{n}");
    }
}
