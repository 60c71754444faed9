//! ecommerce_ingest: a PostgreSQL extension whose background worker ingests e-commerce event
//! CSV files into `user_events`, exactly once. Parsing and validation live in the pgrx-free
//! `ecommerce_events` crate; this crate is the PostgreSQL glue.

use pgrx::prelude::*;

mod api;
mod citus;
mod drop_guard;
mod guc;
mod one_row;
mod pipeline;
mod restricted;
mod settings;
mod shared;
mod staged_shape;
mod trust;
mod worker;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: a flag PostgreSQL sets before loading the preloaded libraries; read in _PG_init.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    settings::register(preloading);
    if !preloading {
        // CREATE EXTENSION still works; ingest_status() explains that no worker runs.
        return;
    }
    shared::PRELOADED.store(true, std::sync::atomic::Ordering::Relaxed);
    shared::init();
    worker::register();
    drop_guard::install();
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    include!("tests.rs");
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'ecommerce_ingest'",
            "ecommerce_ingest.database = 'pgrx_tests'",
        ]
    }
}
