//! A reader polling the folder while the feeder runs never sees a partial `*.csv`.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const PER_FILE: usize = 10_000;

#[test]
fn a_polling_reader_never_sees_a_partial_file() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (dir, done) = (dir.clone(), done.clone());
        std::thread::spawn(move || {
            let mut checked = std::collections::HashSet::new();
            let mut listings = 0u64;
            loop {
                let finished = done.load(Ordering::SeqCst);
                listings += 1;
                for f in csv_files(&dir) {
                    // Parse every file it sees completely, not only new ones: a file must never
                    // change after it appeared.
                    let p = parse(&f);
                    assert!(p.rejected.is_empty(), "{}: {:?}", f.display(), p.rejected);
                    assert_eq!(p.valid.len(), PER_FILE, "{} is partial", f.display());
                    let head = std::fs::read(&f).unwrap();
                    assert!(head.starts_with(ecommerce_events::header_line().as_bytes()));
                    checked.insert(f);
                }
                if finished {
                    return (checked.len(), listings);
                }
            }
        })
    };
    run_ok(
        &dir,
        &[
            "--burst",
            "--events-per-file",
            &PER_FILE.to_string(),
            "--total-files",
            "30",
            "--quiet",
        ],
    );
    done.store(true, Ordering::SeqCst);
    let (checked, listings) = reader.join().expect("reader saw only complete files");
    assert_eq!(checked, 30);
    assert!(listings > 1);
    assert!(names(&dir).iter().all(|n| !n.starts_with('.')));
}
