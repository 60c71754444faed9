//! Reading a file with 64 MiB lines under a 1 MiB record cap takes a few MiB, not the lines'
//! size: counted by a global allocator that tracks the peak of live heap bytes. Its own test
//! binary, with one test, so nothing else allocates meanwhile.

use ecommerce_events::{EventReader, Outcome};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is passed on to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1024 * 1024;
const HEADER: &str = "user_id,event_type,product_id,product_name,product_category,price,event_timestamp,session_id,device_type";
const GOOD: &str =
    "user_1,view,prod_1,Phone,Electronics,19.99,2024-05-01T12:30:00Z,sess_1,mobile\n";

/// Writes `n` MiB of `byte` as one line, a MiB at a time.
fn long_line(f: &mut impl Write, byte: u8, n: usize) {
    let piece = vec![byte; MIB];
    for _ in 0..n {
        f.write_all(&piece).unwrap();
    }
    f.write_all(b"\n").unwrap();
}

#[test]
fn a_64_mib_line_under_a_1_mib_cap_takes_a_few_mib() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(f, "{HEADER}").unwrap();
        f.write_all(GOOD.as_bytes()).unwrap();
        long_line(&mut f, b'x', 64); // text: the record's field buffer would hold it
        long_line(&mut f, b',', 64); // commas: 8 bytes of field bookkeeping each
        f.write_all(GOOD.as_bytes()).unwrap();
    }

    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let mut r = EventReader::open(&path, None)
        .unwrap()
        .with_max_record_bytes(MIB as u64);
    let mut seen = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        let reason = match rec.outcome {
            Outcome::Valid(_) => String::new(),
            Outcome::Rejected { error, .. } => error.message,
        };
        seen.push((rec.line, reason));
    }
    assert!(r.content_hash().is_some());
    drop(r);
    let peak = PEAK.load(Relaxed) - base;

    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[0], (2, String::new()));
    assert_eq!(seen[1].0, 3);
    assert!(
        seen[1]
            .1
            .starts_with("the record is longer than 1048576 bytes"),
        "{seen:?}"
    );
    assert_eq!(seen[2].0, 4);
    assert!(
        seen[2]
            .1
            .starts_with("the record has more than 131072 commas"),
        "{seen:?}"
    );
    assert_eq!(seen[3], (5, String::new()));
    // The cap (1 MiB, doubled by the parser's growth), 131072 commas plus a parser buffer of
    // slack at 8 bytes each (doubled), and the 256 KiB parser buffers: about 11 MiB at most.
    // Without the cap the text line alone takes 64 MiB (128 MiB after doubling).
    assert!(
        peak < 16 * MIB,
        "reading took {:.1} MiB at the peak",
        peak as f64 / MIB as f64
    );
    println!("peak {:.1} MiB", peak as f64 / MIB as f64);
}
