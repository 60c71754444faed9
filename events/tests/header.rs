//! The header line: BOM, column order, case and spaces, extra, missing and duplicated
//! columns, empty, header-only and binary files.

mod common;

use common::*;
use ecommerce_events::reader::hash_file;
use ecommerce_events::{EventReader, HeaderError, OpenError, COLUMNS};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------------

#[test]
fn utf8_bom_before_the_header() {
    for nl in ["\n", "\r\n"] {
        let dir = TempDir::new().unwrap();
        let mut head = b"\xEF\xBB\xBF".to_vec();
        head.extend_from_slice(HEADER.as_bytes());
        let (data, spans) = build(&[(&head, nl), (good_line().as_bytes(), nl)]);
        let p = write(&dir, "bom.csv", &data);
        let mut r = open(&p);
        assert!(r.header().extra_columns().is_empty());
        assert_eq!(r.header().width(), 9);
        let (recs, hash) = drain(&mut r);
        assert_eq!(recs, vec![valid(2, spans[1], true, good())]);
        // The hash covers every byte, the BOM included.
        assert_eq!(hash, hash_file(&p).unwrap());
    }
}

#[test]
fn utf8_bom_before_a_quoted_first_header_name() {
    let dir = TempDir::new().unwrap();
    let data = format!("\u{feff}\"user_id\",{}\n{}\n", &HEADER[8..], good_line());
    let p = write(&dir, "bom.csv", data);
    let recs = read_all(&p);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].row(), &good());
}

#[test]
fn header_in_another_order() {
    let dir = TempDir::new().unwrap();
    let names: Vec<&str> = COLUMNS.iter().rev().copied().collect();
    let values: Vec<String> = fields().into_iter().rev().collect();
    let data = format!("{}\n{}\n", names.join(","), values.join(","));
    let p = write(&dir, "o.csv", data);
    let r = open(&p);
    assert_eq!(r.header().width(), 9);
    assert_eq!(read_all(&p)[0].row(), &good());
}

#[test]
fn header_names_ignore_case_and_surrounding_spaces() {
    let dir = TempDir::new().unwrap();
    let head = " USER_ID ,Event_Type,  product_id,Product_Name\t,PRODUCT_CATEGORY,Price,\"Event_Timestamp \",session_ID,device_type ";
    let data = format!("{head}\n{}\n", good_line());
    let p = write(&dir, "c.csv", data);
    assert_eq!(read_all(&p)[0].row(), &good());
}

#[test]
fn extra_columns_are_ignored_and_reported() {
    let dir = TempDir::new().unwrap();
    let head = format!("note,{HEADER}, Extra Col ");
    let row = format!("anything,{},\"x, y\"", good_line());
    let short = good_line();
    let (data, spans) = build(&[
        (head.as_bytes(), "\n"),
        (row.as_bytes(), "\n"),
        (short.as_bytes(), "\n"),
    ]);
    let p = write(&dir, "x.csv", &data);
    let mut r = open(&p);
    assert_eq!(
        r.header().extra_columns(),
        &["note".to_string(), "Extra Col".to_string()]
    );
    assert_eq!(r.header().width(), 11);
    let (recs, _) = drain(&mut r);
    assert_eq!(recs[0], valid(2, spans[1], true, good()));
    // Every row must have the header's width, extras included.
    let (column, message, raw) = recs[1].rejected();
    assert_eq!(column, None);
    assert_eq!(message, "expected 11 fields as in the header, found 9");
    assert_eq!(raw, short);
}

#[test]
fn missing_column_fails_the_file() {
    let dir = TempDir::new().unwrap();
    let without: Vec<&str> = COLUMNS.iter().copied().filter(|c| *c != "price").collect();
    let p = write(&dir, "m.csv", format!("{}\n", without.join(",")));
    match open_err(&p) {
        OpenError::Header(HeaderError::Missing {
            missing,
            found,
            more,
        }) => {
            assert_eq!(missing, vec!["price"]);
            assert_eq!(found, without);
            assert_eq!(more, 0);
        }
        other => panic!("{other:?}"),
    }
    // Several missing: all named, in contract order; the message says what is lacking.
    let p = write(&dir, "m2.csv", "device_type,user_id,foo\n");
    let e = open_err(&p);
    match &e {
        OpenError::Header(HeaderError::Missing { missing, found, .. }) => {
            assert_eq!(
                missing,
                &vec![
                    "event_type",
                    "product_id",
                    "product_name",
                    "product_category",
                    "price",
                    "event_timestamp",
                    "session_id"
                ]
            );
            assert_eq!(found, &vec!["device_type", "user_id", "foo"]);
        }
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("lacks required column(s) event_type, product_id"),
        "{msg}"
    );
    assert!(
        msg.contains("found columns: device_type, user_id, foo"),
        "{msg}"
    );
}

#[test]
fn duplicated_column_fails_the_file() {
    let dir = TempDir::new().unwrap();
    let p = write(&dir, "d.csv", format!("{HEADER},user_id\n"));
    assert!(matches!(
        open_err(&p),
        OpenError::Header(HeaderError::Duplicate("user_id"))
    ));
    // The same name in another case is the same column.
    let p = write(&dir, "d2.csv", format!("{HEADER}, Device_Type \n"));
    assert!(matches!(
        open_err(&p),
        OpenError::Header(HeaderError::Duplicate("device_type"))
    ));
}

#[test]
fn empty_file_fails_the_file() {
    let dir = TempDir::new().unwrap();
    for (name, data) in [("e.csv", &b""[..]), ("nl.csv", b"\n\r\n\n")] {
        let p = write(&dir, name, data);
        assert!(
            matches!(open_err(&p), OpenError::Header(HeaderError::Empty)),
            "{name}"
        );
    }
}

#[test]
fn header_only_file_has_no_records() {
    let dir = TempDir::new().unwrap();
    for (name, data) in [
        ("h1.csv", format!("{HEADER}\n")),
        ("h2.csv", format!("{HEADER}\r\n")),
        ("h3.csv", HEADER.to_string()),
    ] {
        let p = write(&dir, name, &data);
        let mut r = open(&p);
        assert_eq!(r.size(), data.len() as u64);
        let (recs, hash) = drain(&mut r);
        assert!(recs.is_empty(), "{name}");
        assert_eq!(hash, hash_file(&p).unwrap());
    }
}

#[test]
fn binary_file_fails_the_file() {
    let dir = TempDir::new().unwrap();
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0>\0\x01\0\0\0".to_vec();
    elf.extend_from_slice(b",\n\0\0\x10\x20\n");
    elf.extend((0..4096u32).map(|i| (i * 31 % 256) as u8));
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0".to_vec();
    let zeros = vec![0u8; 8192];
    let latin1 = b"user_id,caf\xe9,pr\xeax\n".to_vec();
    let utf16 = "user_id,event_type\n"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect::<Vec<u8>>();
    for (name, data) in [
        ("elf.csv", elf),
        ("png.csv", png),
        ("zeros.csv", zeros),
        ("latin1.csv", latin1),
        ("utf16.csv", utf16),
    ] {
        let p = write(&dir, name, data);
        match open_err(&p) {
            OpenError::Header(HeaderError::NotText(_) | HeaderError::Missing { .. }) => {}
            other => panic!("{name}: {other:?}"),
        }
    }
    // NUL bytes and invalid UTF-8 in an otherwise complete header: not text.
    let p = write(&dir, "nul.csv", format!("{HEADER},\0\n"));
    assert!(matches!(
        open_err(&p),
        OpenError::Header(HeaderError::NotText(_))
    ));
    let mut h = HEADER.as_bytes().to_vec();
    h.extend_from_slice(b",\xff\xfe\n");
    let p = write(&dir, "bad.csv", h);
    assert!(matches!(
        open_err(&p),
        OpenError::Header(HeaderError::NotText(_))
    ));
}

#[test]
fn a_binary_file_with_an_open_quote_is_refused_without_reading_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bin.csv");
    let mut bytes = b"\x7fELF\"".to_vec();
    bytes.resize(3 * 1024 * 1024, b'x');
    std::fs::write(&path, &bytes).unwrap();
    match EventReader::open(&path, None) {
        Err(OpenError::Header(HeaderError::NotText(why))) => {
            assert_eq!(why.to_string(), "no header line within the first 64 KiB")
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a binary file was accepted"),
    }
}
