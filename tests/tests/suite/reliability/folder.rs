//! A replaced input folder: the worker watches the new one within a trigger interval.

use super::rows_of;
use e2e::*;
use std::fs;
use std::time::{Duration, Instant};

#[test]
fn a_replaced_input_folder_is_watched_again_within_a_trigger_interval() {
    let mut c = Cluster::start(ClusterOptions::with_conf(&[
        "ecommerce_ingest.trigger_interval = '1s'",
    ]));
    c.write_file_atomic("before.csv", &gen_file(40, 5));
    c.wait_files_done(1, Duration::from_secs(30));
    // A cleanup script deletes the folder and makes it again.
    let input = c.input_dir().to_path_buf();
    fs::remove_dir_all(&input).unwrap();
    fs::create_dir(&input).unwrap();
    let ok = std::process::Command::new("chown")
        .arg("postgres")
        .arg(&input)
        .status()
        .unwrap();
    assert!(ok.success());
    // Within a trigger interval the worker looks at the new folder (the polling finds a file
    // there), and a trigger that lists the folder first makes sure it watches that folder.
    c.write_file_atomic("probe.csv", &gen_file(39, 5));
    let noticed = c.wait_for(
        "probe.csv in the new folder ingested",
        Duration::from_secs(10),
        |c| rows_of(c, "probe.csv") == 5,
    );
    println!("the new folder looked at after {noticed:?}");
    // From now on no polling (an hour; the safety rescan is once a minute): a file can only
    // come in within 20 s through a notification from the new folder. No bound on latency,
    // which a loaded machine would break: the 20 s tell notifications from polling apart.
    c.reload(&[("ecommerce_ingest.trigger_interval", "1h")]);
    std::thread::sleep(Duration::from_millis(300));
    let mut latencies = Vec::new();
    for i in 0..20u64 {
        let name = format!("after{i:02}.csv");
        let bytes = gen_file(41 + i, 5);
        let t0 = Instant::now();
        c.write_file_atomic(&name, &bytes);
        loop {
            if rows_of(&mut c, &name) == 5 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{name} not ingested after 20 s: the new folder is not watched\n{}",
                c.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        latencies.push(t0.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let worst = *latencies.last().unwrap();
    println!("after the replacement: p50 {p50:?}, max {worst:?}");
    super::report("folder-replaced", 1, &mut c, 110);
    assert_eq!(c.event_count(), 110);
    assert!(c.duplicates().is_empty());
}
