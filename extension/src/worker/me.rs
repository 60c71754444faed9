//! Which pipeline this worker process serves: set once at its start (the events worker serves
//! `events`; a pipeline worker the pipeline named in its start arguments). Every statement on
//! the ledger, chunks, rejects and batch history is about this pipeline only.

use std::sync::OnceLock;

static PIPELINE: OnceLock<String> = OnceLock::new();

/// Sets this process's pipeline (once, at the start of a pipeline worker).
pub fn serve(name: &str) {
    let _ = PIPELINE.set(name.to_string());
}

/// The pipeline this process serves (`events` unless [`serve`] said otherwise).
pub fn pipeline() -> &'static str {
    PIPELINE
        .get()
        .map_or(crate::settings::EVENTS_PIPELINE, String::as_str)
}

/// This process serves a pipeline of the catalog (not the events pipeline).
pub fn is_generic() -> bool {
    pipeline() != crate::settings::EVENTS_PIPELINE
}
