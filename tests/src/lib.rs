//! End-to-end test harness: private PostgreSQL 15 clusters with `ecommerce_ingest`, an input
//! folder, deterministic event files, and the expected rows computed from the files themselves.
//!
//! One module per job; everything public is re-exported here, so `use e2e::*;` brings it all.
//!
//! - `cluster`: [`Cluster`] and [`ClusterOptions`]: start, stop, restart, configuration,
//!   connections, simple queries, the server log.
//! - `death`: [`Cluster::kill_postmaster`], [`Cluster::recover_after_crash`].
//! - `worker`: the worker through SQL: [`Status`], triggers, waits, killing the worker.
//! - `expect`: what the files say must be stored ([`expected_rows`], [`EventRow`]) and the
//!   comparison with what is ([`assert_same_rows`]).
//! - `invariants`: what must hold at any moment ([`ledger_problems`], [`counter_problems`],
//!   [`DUPLICATES_QUERY`]).
//! - `generate`: test input: [`gen_file`], [`Rng`], [`test_seed`], [`write_atomic`], the feeder.
//! - `catalog`: the extension's SQL objects, compared across installs ([`extension_catalog`]).
//! - `repo`: the repository: [`repo_root`], its scripts, [`previous_release`].
//! - `sql`: [`lit`], [`db_error_text`], [`expect_db_error`].

mod catalog;
mod cluster;
mod death;
mod expect;
mod generate;
mod invariants;
mod repo;
mod sql;
mod worker;

pub use catalog::{assert_same_catalog, extension_catalog};
pub use cluster::{postgres_folder, Cluster, ClusterOptions, DEFAULT_CONF};
pub use expect::{
    assert_same_rows, expected_of, expected_rows, EventRow, Expected, RejectRow, EVENTS_QUERY,
};
pub use generate::{
    copy_in_atomic, data_files, feeder_bin, gen_file, gen_row, run_feeder, test_seed, write_atomic,
    Rng,
};
pub use invariants::{counter_problems, ledger_problems, DUPLICATES_QUERY};
pub use repo::{previous_release, repo_root, PreviousRelease};
pub use sql::{db_error_text, expect_db_error, lit};
pub use worker::Status;
