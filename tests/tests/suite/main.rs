//! The end-to-end suite: one test binary, so that `cargo test -p e2e` runs every test even when
//! some fail. Each test starts its own cluster.

mod analytics;
mod backup;
mod citus;
mod contract;
mod control;
mod crash;
mod crash_random;
mod database;
mod escalation;
mod foreign;
mod groups;
mod hostile;
mod identity;
mod ingest;
mod partitioning;
mod pipelines;
mod reliability;
mod retention;
mod security;
mod semantics;
mod truthful;
mod upgrade;
mod workers;
