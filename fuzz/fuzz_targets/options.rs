//! `ingest_core`'s pipeline options on arbitrary bytes: the input is split at its first NUL
//! byte into two options texts `a` and `b` (lossy UTF-8; no NUL at all: `b` is empty), each
//! parsed for every format name (csv, tsv, ndjson, a case- and space-variant name, an unknown
//! one) and merged as an `ALTER` patch (`merge_options(a, b)`). Nothing panics; every error's
//! message is short and on one line. `merge_options` succeeds exactly when both texts are blank
//! or JSON objects, and then gives the object of `a` with `b`'s keys put in and `b`'s null keys
//! taken out. Re-serializing options changes nothing: `merge_options(a, "")` parses as `a`
//! does. When `a` and `b` both parse for a format, their merge either parses too or is refused
//! only for keys that conflict (`OptionError::Conflict`: each key's value is checked on its
//! own), and each setting that has a key of its own (the pipeline settings, compression,
//! encoding, delimiter, header, null) is `b`'s when `b` sets that key, else `a`'s. (Not
//! "parses whenever both parse": `{"null": ";"}` and `{"delimiter": ";"}` each parse, their
//! merge is a conflict.)
#![no_main]

use ecommerce_events_fuzz::ingest::check_message;
use ingest_core::{merge_options, parse_options, Format, OptionError, PipelineOptions};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// What `merge_options` should parse a text as: blank is `{}`.
fn object(t: &str) -> Option<Map<String, Value>> {
    let t = if t.trim().is_empty() { "{}" } else { t };
    match serde_json::from_str(t) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

fn parse(format: &str, json: &str) -> Result<PipelineOptions, OptionError> {
    let r = parse_options(format, json);
    if let Err(e) = &r {
        check_message("option error", &e.to_string());
    }
    r
}

/// The settings of `o` that one key each decides, by key.
fn keyed(o: &PipelineOptions) -> Vec<(&'static str, String)> {
    let s = &o.settings;
    let mut v = vec![
        ("file_pattern", format!("{:?}", s.file_patterns)),
        ("trigger_interval", format!("{:?}", s.trigger_interval_ms)),
        (
            "max_files_per_trigger",
            format!("{:?}", s.max_files_per_trigger),
        ),
        ("chunk_size", format!("{:?}", s.chunk_size_kb)),
        ("batch_rows", format!("{:?}", s.batch_rows)),
        ("min_file_age", format!("{:?}", s.min_file_age_ms)),
        ("processed_action", format!("{:?}", s.processed_action)),
        ("archive_dir", format!("{:?}", s.archive_dir)),
        ("failed_dir", format!("{:?}", s.failed_dir)),
        ("compression", format!("{:?}", o.compression)),
        ("encoding", format!("{:?}", o.encoding())),
    ];
    if let Format::Csv(c) = &o.format {
        v.push(("delimiter", format!("{:?}", c.delimiter)));
        v.push(("header", format!("{:?}", c.header)));
        v.push(("null", format!("{:?}", c.null)));
    }
    v
}

fuzz_target!(|data: &[u8]| {
    let (a, b) = match data.iter().position(|&x| x == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let a = String::from_utf8_lossy(a);
    let b = String::from_utf8_lossy(b);
    let (oa, ob) = (object(&a), object(&b));

    let merged = merge_options(&a, &b);
    match &merged {
        Err(e) => {
            check_message("merge error", &e.to_string());
            assert!(
                oa.is_none() || ob.is_none(),
                "merge refused two objects: {e}"
            );
        }
        Ok(m) => {
            let (Some(oa), Some(ob)) = (&oa, &ob) else {
                panic!("merged a text that is not an object: {m}");
            };
            let mut want = oa.clone();
            for (k, v) in ob {
                if v.is_null() {
                    want.remove(k);
                } else {
                    want.insert(k.clone(), v.clone());
                }
            }
            let got = object(m).expect("the merge is an object");
            assert_eq!(got.len(), want.len(), "keys of the merge {m}");
            for (k, v) in &want {
                let g = got.get(k).unwrap_or_else(|| panic!("key {k:?} lost"));
                assert!(same_json(g, v), "key {k:?}: {g} != {v}");
            }
        }
    }
    let again = merge_options(&a, "").ok();
    assert_eq!(again.is_some(), oa.is_some());

    for format in ["csv", "tsv", "ndjson", " NdJson ", "CSV", "json"] {
        let pa = parse(format, &a);
        let pb = parse(format, &b);
        if format == "json" {
            assert!(matches!(pa, Err(OptionError::UnknownFormat(_))));
            continue;
        }
        assert!(
            !matches!(pa, Err(OptionError::UnknownFormat(_))),
            "format {format:?}"
        );
        if format == " NdJson " {
            assert_eq!(pa, parse("ndjson", &a));
        }
        if let (Some(again), Ok(pa)) = (&again, &pa) {
            assert_eq!(
                parse(format, again).as_ref(),
                Ok(pa),
                "re-serialized {again}"
            );
        }
        let (Ok(pa), Ok(pb), Ok(m)) = (&pa, &pb, &merged) else {
            if let Ok(m) = &merged {
                let _ = parse(format, m);
            }
            continue;
        };
        let ob = ob.as_ref().unwrap();
        match parse(format, m) {
            Err(OptionError::Conflict(_)) => {}
            Err(e) => panic!("{format}: {a:?} and {b:?} parse, their merge {m} does not: {e}"),
            Ok(pm) => {
                for ((k, vm), ((_, va), (_, vb))) in keyed(&pm)
                    .into_iter()
                    .zip(keyed(pa).into_iter().zip(keyed(pb)))
                {
                    let want = if ob.contains_key(k) { vb } else { va };
                    assert_eq!(
                        vm, want,
                        "{format}: {k} of the merge {m} of {a:?} and {b:?}"
                    );
                }
            }
        }
    }
});

/// Equal JSON values, except that two floats (at any depth: inside a `mapping` object too) may
/// come back a float ulp apart (serde_json without float_roundtrip); every option refuses a
/// float anyway.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => true,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
