//! The pipelines' workers: the events worker starts one worker per pipeline of
//! ingest_pipelines (a dynamic background worker, given the pipeline's slot in shared memory
//! and its name), starts it again 5 s after it stops, and frees the slot of a dropped pipeline.
//! A pipeline worker reads its definition at every trigger (`pipeline_settings`) and stops
//! when the pipeline is dropped. One process per pipeline: one pipeline's slow or failing
//! files never hold another back, and a pipeline's worker runs as its own backend (its own
//! row in pg_stat_activity).

use super::sql;
use super::state::{set_state_because, Worker};
use super::txn::transaction;
use crate::pipeline::{self, check_under_roots};
use crate::settings::{self, Settings};
use crate::shared::{WorkerState, MAX_PIPELINES, SLOTS};
use crate::trust::{self, Schema};
use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a pipeline's worker stays stopped before it is started again.
const RESTART_AFTER: Duration = Duration::from_secs(5);
/// How often the events worker looks at ingest_pipelines without being asked.
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// A pipeline worker the events worker started.
pub struct Child {
    handle: pgrx::bgworkers::DynamicBackgroundWorker,
    started: Instant,
}

/// What a pipeline worker found at the start of a loop.
pub enum Definition {
    Ready(Box<Settings>),
    /// It exists but cannot run (state `error`, saying why).
    Invalid,
    /// Dropped, re-created, or the extension is gone: the worker stops.
    Gone,
}

impl Worker {
    /// Starts the worker of each pipeline that has none, and frees the slots of dropped ones.
    pub fn supervise(&mut self, reason: super::state::Reason) {
        use super::state::Reason;
        let asked = matches!(reason, Reason::Start | Reason::Manual);
        if !asked && self.supervised_at.is_some_and(|t| t.elapsed() < LOOK_EVERY) {
            return;
        }
        self.supervised_at = Some(Instant::now());
        let names = transaction(|| {
            Spi::connect(|c| {
                if !extension_ready()? {
                    return Ok(None);
                }
                let mut names = Vec::new();
                for r in c.select(sql::PIPELINE_NAMES, None, &[])? {
                    names.push(r.get::<String>(1)?.unwrap_or_default());
                }
                Ok::<_, pgrx::spi::Error>(Some(names))
            })
            .unwrap_or_else(|e| error!("{e}"))
        });
        let names = match names {
            Ok(Some(n)) => n,
            // No extension (or not at this version): no pipeline workers are started; those
            // running stop by themselves.
            _ => Vec::new(),
        };
        self.children.retain(|name, _| names.contains(name));
        {
            // Free the slots of dropped pipelines whose worker has stopped.
            let mut slots = SLOTS.exclusive();
            for i in 1..MAX_PIPELINES {
                let s = &mut slots.slots[i];
                if s.name_len > 0 && s.status.pid == 0 && !names.iter().any(|n| n == s.name()) {
                    *s = Default::default();
                }
            }
        }
        for name in names {
            if let Some(c) = self.children.get(&name) {
                if c.handle.pid().is_ok() || c.started.elapsed() < RESTART_AFTER {
                    continue;
                }
            }
            let Some(slot) = SLOTS.exclusive().claim(&name) else {
                self.say(
                    super::say::Topic::Pipeline(name.clone()),
                    format!(
                        "no slot for pipeline {name:?}: at most {} pipelines run at once",
                        MAX_PIPELINES - 1
                    ),
                    true,
                );
                continue;
            };
            let started =
                BackgroundWorkerBuilder::new(&format!("ecommerce_ingest pipeline {name}"))
                    .set_type("ecommerce_ingest pipeline")
                    .set_library("ecommerce_ingest")
                    .set_function("ecommerce_ingest_pipeline_main")
                    .set_argument(Some(pg_sys::Datum::from(slot)))
                    .set_extra(&name)
                    .enable_spi_access()
                    .set_start_time(BgWorkerStartTime::ConsistentState)
                    .set_restart_time(None)
                    .load_dynamic();
            match started {
                Ok(handle) => {
                    self.settled(super::say::Topic::Pipeline(name.clone()));
                    self.children.insert(
                        name,
                        Child {
                            handle,
                            started: Instant::now(),
                        },
                    );
                }
                Err(_) => self.say(
                    super::say::Topic::Pipeline(name.clone()),
                    format!("cannot start the worker of pipeline {name:?} (max_worker_processes reached?); trying again"),
                    true,
                ),
            }
        }
    }

    /// A pipeline worker's settings for this loop: its definition, checked (the owner's folders
    /// against allowed_roots, its INSERT privilege on the target, row-level security).
    pub fn pipeline_definition(&mut self) -> Definition {
        let name = super::me::pipeline();
        let found = transaction(|| {
            Spi::connect(|c| {
                if !extension_ready()? {
                    return Ok(None);
                }
                let rows = c.select(
                    "SELECT (EXTRACT(epoch FROM created_at) * 1e6)::pg_catalog.int8 FROM public.ingest_pipelines WHERE pipeline_name OPERATOR(pg_catalog.=) $1",
                    None,
                    &[name.into()],
                )?;
                // Dropped: no row (reading one from an empty result is an error).
                if rows.is_empty() {
                    return Ok(None);
                }
                let created = rows.first().get_one::<i64>()?;
                let def = pipeline::load(c, name)?;
                let def = def.map(|d| d.and_then(|d| check_owner(&d).map(|()| d)).map(|d| (d, created)));
                Ok::<_, pgrx::spi::Error>(def)
            })
            .unwrap_or_else(|e| error!("{e}"))
        });
        let def = match found {
            Ok(Some(Ok((d, created)))) => {
                if self.pipeline_created.is_some_and(|c| Some(c) != created) {
                    return Definition::Gone;
                }
                self.pipeline_created = created;
                d
            }
            Ok(Some(Err(why))) => {
                self.say(super::say::Topic::Control, why.clone(), true);
                set_state_because(WorkerState::Error, &why);
                return Definition::Invalid;
            }
            Ok(None) => return Definition::Gone,
            Err(e) => {
                let why = format!("cannot read pipeline {name:?}: {e}");
                self.say(super::say::Topic::Control, why.clone(), true);
                set_state_because(WorkerState::Error, &why);
                return Definition::Invalid;
            }
        };
        Definition::Ready(Box::new(Settings::for_pipeline(Arc::new(def))))
    }
}

/// What the pipeline's owner may do, checked at every trigger: a privilege revoked, a folder
/// The extension is installed at this library's version, in a schema that can be trusted:
/// pipelines' workers are started and run only then.
fn extension_ready() -> Result<bool, pgrx::spi::Error> {
    Ok(matches!(
        trust::extension()?,
        Some(e) if e.schema == Schema::Trusted && e.version == env!("CARGO_PKG_VERSION")
    ))
}

/// moved out of the allowed roots or row-level security enabled later stops the pipeline.
fn check_owner(d: &pipeline::PipelineDef) -> Result<(), String> {
    pipeline::owner_may_insert(d)?;
    if !d.owner_is_superuser {
        let roots = settings::allowed_roots();
        let o = &d.options.settings;
        let archive = o
            .archive_dir
            .clone()
            .unwrap_or_else(|| format!("{}/archive", d.input_dir));
        let failed = o
            .failed_dir
            .clone()
            .unwrap_or_else(|| format!("{}/failed", d.input_dir));
        for (what, dir) in [
            ("input_dir", d.input_dir.clone()),
            ("archive_dir", archive),
            ("failed_dir", failed),
        ] {
            check_under_roots(what, Path::new(&dir), &roots)
                .map_err(|e| format!("pipeline {:?}: {e}", d.name))?;
        }
    }
    Ok(())
}
