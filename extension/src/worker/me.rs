//! Which pipeline this worker process serves, and which of its workers it is: set once at its
//! start (the first events worker serves `events` as worker 0; any other worker the pipeline
//! named in its start arguments, as the worker its slot says). Every statement on the ledger,
//! chunks, rejects and batch history is about this pipeline only, and about this worker's share
//! of its files (ingest_core::share).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

static PIPELINE: OnceLock<String> = OnceLock::new();
static INDEX: AtomicU32 = AtomicU32::new(0);

/// Sets this process's pipeline and worker index (once, at the start of a worker the events
/// worker started).
pub fn serve(name: &str, index: u32) {
    let _ = PIPELINE.set(name.to_string());
    INDEX.store(index, Ordering::Relaxed);
}

/// The pipeline this process serves (`events` unless [`serve`] said otherwise).
pub fn pipeline() -> &'static str {
    PIPELINE
        .get()
        .map_or(crate::settings::EVENTS_PIPELINE, String::as_str)
}

/// Which of its pipeline's workers this process is (0-based).
pub fn index() -> u32 {
    INDEX.load(Ordering::Relaxed)
}

/// This process serves a pipeline of the catalog (not the events pipeline).
pub fn is_generic() -> bool {
    pipeline() != crate::settings::EVENTS_PIPELINE
}

/// This process is the events pipeline's first worker: the one the launcher starts, which
/// starts every other worker and speaks for the installation (its marker, its pause on
/// re-creation).
pub fn is_first_events_worker() -> bool {
    !is_generic() && index() == 0
}
