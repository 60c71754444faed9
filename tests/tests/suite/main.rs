//! The end-to-end suite: one test binary, so that `cargo test -p e2e` runs every test even when
//! some fail. Each test starts its own cluster.

mod analytics;
mod contract;
mod control;
mod crash;
mod ingest;
mod security;
