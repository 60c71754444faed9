//! Faults of the second round: the input folder replaced under the worker, failover to a
//! promoted standby (asynchronous and synchronous replication), a full disk (the heap, the
//! WAL, the archive folder). Every test prints a `reliability:` line (see [`report`]):
//! docs/reliability.md's table is made of them.

mod disk;
mod failover;
mod folder;
mod mount;

use e2e::*;

/// Rows of `file` in user_events.
pub(super) fn rows_of(c: &mut Cluster, file: &str) -> i64 {
    c.client()
        .query_one(
            "SELECT count(*) FROM user_events_with_source WHERE source_file = $1",
            &[&file],
        )
        .unwrap()
        .get(0)
}

/// Rows stored more than once: for each (file, line) stored n > 1 times, n - 1.
pub(super) fn duplicated_rows(c: &mut Cluster) -> i64 {
    c.int(
        "SELECT coalesce(sum(n - 1), 0)::int8 FROM (SELECT count(*) AS n FROM user_events_with_source
          GROUP BY source_file, source_line HAVING count(*) > 1) d",
    )
}

/// Prints `reliability: fault=… injected=… expected=… found=… duplicated=…` for the events
/// pipeline (found: rows in user_events), the line docs/reliability.md is made from; run the
/// tests with `--nocapture` to see it.
pub(super) fn report(fault: &str, injected: usize, c: &mut Cluster, expected: usize) {
    let found = c.event_count();
    let duplicated = duplicated_rows(c);
    println!(
        "reliability: fault={fault} injected={injected} expected={expected} found={found} duplicated={duplicated}"
    );
}
