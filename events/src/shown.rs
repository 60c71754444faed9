//! Capped excerpts of file text for messages (`ingest_core::shown`, shared with the pipelines'
//! readers): excerpts with control characters escaped, lists of names.

pub use ingest_core::shown::*;
