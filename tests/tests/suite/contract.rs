//! File-format corners of the contract: producers writing in place, BOM, CRLF, column order.

use e2e::*;
use std::io::Write;
use std::time::Duration;

fn row(i: u64) -> String {
    if i.is_multiple_of(5) {
        format!(
            "user_{i},view,prod_{i},\"Multi\nline, \"\"quoted\"\" name {i}\",Books,{}.25,2024-05-02T03:04:05.123456Z,sess_{i},tablet",
            i % 90
        )
    } else {
        gen_row(4242, i)
    }
}

#[test]
fn a_producer_writing_in_place_never_gets_half_a_line_ingested() {
    // min_file_age 2 s: a pause of the writer longer than that (a busy CI machine) would make
    // the incomplete line final, rightly rejected; 100 ms was too close.
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.min_file_age = '2s'",
    ]));
    let mut text = ecommerce_events::header_line() + "\n";
    for i in 0..300 {
        text.push_str(&row(i));
        text.push('\n');
    }
    let bytes = text.into_bytes();
    let path = c.input_dir().join("inplace.csv");
    let mut f = std::fs::File::create(&path).unwrap();
    // Write in small pieces that cut lines (and quoted multi-line fields) anywhere, with pauses
    // shorter than min_file_age so the file is always "still changing".
    let mut pos = 0;
    let mut k = 0u64;
    while pos < bytes.len() {
        let step = 97 + (k * 389 % 1500) as usize;
        let end = (pos + step).min(bytes.len());
        f.write_all(&bytes[pos..end]).unwrap();
        pos = end;
        k += 1;
        std::thread::sleep(Duration::from_millis(15));
    }
    drop(f);
    c.wait_files_done(1, Duration::from_secs(30));
    let exp = expected_rows(&[&path]);
    assert_eq!(exp.rows.len(), 300);
    let rejects = c.stored_rejects();
    let reasons: Vec<Option<String>> = c
        .client()
        .query("SELECT line_number::text || ': ' || reason || ' | ' || coalesce(raw_text, '') FROM ingest_rejects ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        rejects.is_empty(),
        "rows of a file written in place were rejected (read before their line was complete): {reasons:#?}"
    );
    c.assert_exact_rows(&exp.rows);
    let chunks = c.int("SELECT count(*) FROM ingest_file_chunks");
    println!("{k} writes, {chunks} chunks committed while the file grew");
}

#[test]
fn bom_crlf_any_column_order_extra_columns_and_no_final_newline() {
    let mut c = Cluster::start(ClusterOptions::default());
    let mut s = String::from("\u{feff}device_type,price,note,event_timestamp,user_id,event_type,session_id,product_id,product_category,product_name\r\n");
    for i in 0..20u64 {
        s.push_str(&format!(
            "desktop,{}.5,ignored {i},2024-05-03T10:00:{:02}+01:00,user_{i},purchase,sess_{i},prod_{i},Books,\"Name, {i}\"\r\n",
            i,
            i
        ));
    }
    // The last line has no line terminator: once the file is complete it is data.
    s.push_str("mobile,7,x,2024-05-03 11:00:00,user_last,view,sess_last,prod_last,Books,Last");
    let path = c.write_file_atomic("bom_crlf.csv", s.as_bytes());
    c.wait_files_done(1, Duration::from_secs(30));
    let exp = expected_rows(&[&path]);
    assert_eq!(exp.rows.len(), 21);
    assert!(exp.rejects.is_empty());
    c.assert_exact_rows(&exp.rows);
    assert_eq!(
        c.text("SELECT array_to_string(extra_columns, ',') FROM ingest_files")
            .as_deref(),
        Some("note")
    );
    assert_eq!(
        c.text("SELECT user_id FROM user_events WHERE source_line = 2")
            .as_deref(),
        Some("user_0")
    );
    assert_eq!(
        c.text("SELECT price::text FROM user_events WHERE user_id = 'user_last'")
            .as_deref(),
        Some("7.00")
    );
    c.settle();
    c.assert_exact_rows(&exp.rows);
}
