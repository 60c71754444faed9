//! Resuming: a first reader reads some records (how many: from the input) and stops at its
//! position, as a committed chunk does; a second reader opened there with `open_checked` and the
//! prefix hash of the committed bytes reads exactly the records a single pass reads after them,
//! and ends with the same content hash; so does one resumed at a record's own start (a held
//! line). The same open is refused as changed when a committed byte differs or the file is
//! shorter than the committed offset.
#![no_main]

use ecommerce_events::{Changed, EventReader, OpenError, Resume};
use ecommerce_events_fuzz::{read_checked, xxh3, Caps, Input, Rec, Scratch};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static SCRATCH: OnceLock<Scratch> = OnceLock::new();

fn open(
    path: &std::path::Path,
    at: Option<Resume>,
    prefix: Option<u64>,
    caps: Caps,
) -> EventReader {
    EventReader::open_checked(path, at, prefix)
        .unwrap_or_else(|e| panic!("resuming at {at:?}: {e}"))
        .with_max_record_bytes(caps.max_record)
        .with_raw_cap(caps.raw_cap)
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let file = &input.file[..];
    let scratch = SCRATCH.get_or_init(|| Scratch::new("resume"));
    let path = scratch.path();
    scratch.write(file);
    if EventReader::open(path, None).is_err() {
        return;
    }
    let caps = Caps {
        max_record: input.max_record,
        raw_cap: input.raw_cap,
    };
    let full = read_checked(&mut open(path, None, None, caps), file, caps);
    let k = input.knob as usize % (full.len() + 1);

    // The first run: k records, then "commit" at its position.
    let mut a = open(path, None, None, caps);
    for want in &full[..k] {
        let got = Rec::of(&a.next_record().unwrap().expect("a record"));
        assert_eq!(&got, want, "first run");
    }
    let at = a.position();
    let prefix = a.prefix_hash(at.byte).unwrap();
    assert_eq!(
        prefix,
        xxh3(&file[..at.byte as usize]),
        "prefix hash at {at:?}"
    );
    drop(a);

    // The second run, checked against the committed bytes.
    let rest = read_checked(&mut open(path, Some(at), Some(prefix), caps), file, caps);
    assert_eq!(rest, full[k..], "resumed at {at:?} after {k} records");

    // Resuming at a record's own start and line (a held, unterminated last line does that).
    if let Some(rec) = full.get(k) {
        let held = Resume {
            byte: rec.start,
            line: rec.line,
        };
        let prefix = xxh3(&file[..rec.start as usize]);
        let rest = read_checked(&mut open(path, Some(held), Some(prefix), caps), file, caps);
        assert_eq!(rest, full[k..], "resumed at the start of record {k}");
    }

    // A committed byte changed: refused, never resumed.
    if at.byte > 0 {
        let i = (input.aux as u64 * 7919 % at.byte) as usize;
        let mut changed = file.to_vec();
        changed[i] ^= 0x01;
        scratch.write(&changed);
        match EventReader::open_checked(path, Some(at), Some(prefix)) {
            Err(OpenError::Changed(Changed::PrefixDiffers {
                committed,
                expected,
                found,
            })) => {
                assert_eq!((committed, expected), (at.byte, prefix));
                assert_eq!(found, xxh3(&changed[..at.byte as usize]));
            }
            Err(e) => panic!("byte {i} changed: {e}"),
            Ok(_) => panic!("byte {i} changed before {at:?}, and the file was resumed"),
        }
        // Shorter than the committed offset: refused, with or without a hash.
        scratch.write(&file[..at.byte as usize - 1]);
        for expect in [Some(prefix), None] {
            assert!(matches!(
                EventReader::open_checked(path, Some(at), expect),
                Err(OpenError::Changed(Changed::Shorter { committed, size }))
                    if committed == at.byte && size == at.byte - 1
            ));
        }
    }
});
