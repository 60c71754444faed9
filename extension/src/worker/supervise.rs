//! The pipelines' workers: the events worker starts a pipeline's workers (its option
//! `workers`, 1 by default) and the events pipeline's own further workers
//! (`ecommerce_ingest.workers`), each a dynamic background worker given its slot in shared
//! memory (which says which of the pipeline's workers it is) and the pipeline's name; starts
//! each again 5 s after it stops, and frees the slots of dropped pipelines and surplus workers.
//! A pipeline worker reads its definition at every trigger (`pipeline_settings`) and stops
//! when the pipeline is dropped. One process per pipeline: one pipeline's slow or failing
//! files never hold another back, and a pipeline's worker runs as its own backend (its own
//! row in pg_stat_activity).

use super::sql;
use super::state::{set_state_because, Worker};
use super::txn::transaction;
use crate::pipeline::{self, check_under_roots};
use crate::settings::EVENTS_PIPELINE;
use crate::settings::{self, Settings};
use crate::shared::{WorkerState, MAX_SLOTS, SLOTS};
use crate::trust::{self, Schema};
use ingest_core::share::MAX_WORKERS;
use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
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
    /// Starts the workers of each pipeline that has fewer than its `workers` (the events
    /// pipeline's beyond the first, which the launcher starts), and frees the slots of dropped
    /// pipelines and of workers one too many.
    pub fn supervise(&mut self, st: &Settings, reason: super::state::Reason) {
        use super::state::Reason;
        let asked = matches!(reason, Reason::Start | Reason::Manual);
        if !asked && self.supervised_at.is_some_and(|t| t.elapsed() < LOOK_EVERY) {
            return;
        }
        self.supervised_at = Some(Instant::now());
        let listed = transaction(|| {
            Spi::connect(|c| {
                if !extension_ready()? {
                    return Ok(None);
                }
                let mut listed = Vec::new();
                for r in c.select(sql::PIPELINE_NAMES, None, &[])? {
                    let workers = r.get::<i64>(2)?.unwrap_or(1).clamp(1, MAX_WORKERS as i64);
                    listed.push((r.get::<String>(1)?.unwrap_or_default(), workers as u32));
                }
                Ok::<_, pgrx::spi::Error>(Some(listed))
            })
            .unwrap_or_else(|e| error!("{e}"))
        });
        let wanted: Vec<(String, u32)> = match listed {
            // The events pipeline's further workers too (the first is this one).
            Ok(Some(mut n)) => {
                self.settled(super::say::Topic::Supervise);
                n.push((EVENTS_PIPELINE.to_string(), st.workers));
                n
            }
            // No extension (or not at this version): no other worker is started; those
            // running stop by themselves.
            Ok(None) => Vec::new(),
            // (A lock on ingest_pipelines, say): the running workers are left alone.
            Err(e) => {
                self.say(
                    super::say::Topic::Supervise,
                    format!("cannot read the pipelines to start their workers: {e}; trying again"),
                    true,
                );
                return;
            }
        };
        let wants = |name: &str, index: u32| wanted.iter().any(|(n, w)| n == name && index < *w);
        self.children.retain(|(name, index), _| wants(name, *index));
        {
            // Free the slots of workers no longer wanted once they have stopped.
            let mut slots = SLOTS.exclusive();
            for i in 1..MAX_SLOTS {
                let s = &mut slots.slots[i];
                if s.name_len > 0 && s.status.pid == 0 && !wants(s.name(), s.index) {
                    *s = Default::default();
                }
            }
        }
        for (name, workers) in wanted.clone() {
            let first = if name == EVENTS_PIPELINE { 1 } else { 0 };
            for index in first..workers {
                self.start_worker(&name, index);
            }
        }
    }

    /// Starts worker `index` of pipeline `name` unless it runs or was started less than
    /// RESTART_AFTER ago.
    fn start_worker(&mut self, name: &str, index: u32) {
        let key = (name.to_string(), index);
        if let Some(c) = self.children.get(&key) {
            if c.handle.pid().is_ok() || c.started.elapsed() < RESTART_AFTER {
                return;
            }
        }
        // (One topic per worker: each says what it has to say once.)
        let topic = super::say::Topic::Pipeline(format!("{name} worker {}", index + 1));
        let Some(slot) = SLOTS.exclusive().claim(name, index) else {
            self.say(
                topic,
                format!(
                    "no slot for worker {} of pipeline {name:?}: at most {MAX_SLOTS} workers run at once, all pipelines together",
                    index + 1
                ),
                true,
            );
            return;
        };
        // (The title is the process's in ps and pg_stat_activity's backend's.)
        let title = match index {
            0 => format!("ecommerce_ingest pipeline {name}"),
            i => format!("ecommerce_ingest pipeline {name} worker {}", i + 1),
        };
        let started = BackgroundWorkerBuilder::new(&title)
            .set_type("ecommerce_ingest pipeline")
            .set_library("ecommerce_ingest")
            .set_function("ecommerce_ingest_pipeline_main")
            .set_argument(Some(pg_sys::Datum::from(slot)))
            .set_extra(name)
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::ConsistentState)
            .set_restart_time(None)
            .load_dynamic();
        match started {
            Ok(handle) => {
                self.settled(topic);
                self.children.insert(
                    key,
                    Child {
                        handle,
                        started: Instant::now(),
                    },
                );
            }
            Err(_) => self.say(
                topic,
                format!("cannot start worker {} of pipeline {name:?} (max_worker_processes reached?); trying again", index + 1),
                true,
            ),
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
                let def = match def {
                    Some(Ok(d)) => Some(
                        check_owner(&d)
                            .and(check_not_shared(c, &d)?)
                            .map(|()| (d, created)),
                    ),
                    Some(Err(why)) => Some(Err(why)),
                    None => None,
                };
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

/// No other pipeline uses this pipeline's input folder, nor moves files into it, nor is read
/// from its archive or failed folder (`ecommerce_events::folders::check_not_shared`), checked
/// at every trigger: a folder set, changed or linked since the pipeline was created (another
/// pipeline, the events pipeline's settings, a symbolic link) stops it before it reads.
fn check_not_shared(
    c: &SpiClient<'_>,
    d: &pipeline::PipelineDef,
) -> Result<Result<(), String>, pgrx::spi::Error> {
    let mine = ecommerce_events::folders::Folders::of_pipeline(&d.input_dir, &d.options.settings);
    let others = pipeline::neighbours(c, &d.name)?;
    Ok(ecommerce_events::folders::check_not_shared(&mine, &others)
        .map_err(|e| format!("pipeline {:?}: {e}", d.name)))
}
