//! The CSV reader, validation and the binary COPY encoder on arbitrary bytes as a file: opening
//! (the header) never panics; every record is read with a small record cap drawn from the input;
//! offsets strictly increase and stay within the file, only line breaks lie between records,
//! line numbers never decrease and are exact (1 + LFs before the record), no record over the cap
//! gets through, reject texts are capped, valid rows encode for COPY and decode back; and when
//! no record broke the cap, every record (start, line, end, fields, outcome) is what the csv
//! crate reads in one plain pass. Memory: bounded by libFuzzer's -rss_limit_mb / -malloc_limit_mb.
#![no_main]

use ecommerce_events::EventReader;
use ecommerce_events_fuzz::{compare_with_oracle, read_checked, Caps, Input, Scratch};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static SCRATCH: OnceLock<Scratch> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let scratch = SCRATCH.get_or_init(|| Scratch::new("reader"));
    scratch.write(&input.file);
    let reader = match EventReader::open(scratch.path(), None) {
        Ok(r) => r,
        Err(e) => {
            // The message of a refused file stays short whatever the file holds.
            let msg = e.to_string();
            assert!(msg.len() <= 2048, "{} bytes: {msg:?}", msg.len());
            return;
        }
    };
    let caps = Caps {
        max_record: input.max_record,
        raw_cap: input.raw_cap,
    };
    let mut reader = reader
        .with_max_record_bytes(caps.max_record)
        .with_raw_cap(caps.raw_cap);
    let header_end = reader.position().byte;
    let map = reader.header().clone();
    let recs = read_checked(&mut reader, &input.file, caps);
    if !recs.iter().any(|r| r.overlong()) {
        compare_with_oracle(&input.file, &map, header_end, &recs);
    }
});
