//! Remembers, outside the extension's tables, which installation of the extension last ingested
//! files from the input folder. DROP EXTENSION drops the ledger with the tables; a new
//! installation next to the same files would ingest them all again. With this marker the worker
//! notices and starts paused instead (see `recreated`).

use super::say::Topic;
use super::sql;
use super::state::{set_state, Worker};
use super::txn::transaction;
use crate::settings::Settings;
use crate::shared::WorkerState;
use ecommerce_events::Candidate;
use pgrx::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The installation that ingested from a folder: database and extension oids, and the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub database: u32,
    pub extension: u32,
    pub input_dir: PathBuf,
}

const FILE: &str = "ecommerce_ingest.marker";

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The marker in the data directory, if there is a readable one.
pub fn read(data_dir: &Path) -> Option<Marker> {
    let text = std::fs::read_to_string(path(data_dir)).ok()?;
    let mut lines = text.lines();
    let mut ids = lines.next()?.split_whitespace();
    let database = ids.next()?.parse().ok()?;
    let extension = ids.next()?.parse().ok()?;
    let input_dir = PathBuf::from(lines.next()?);
    Some(Marker {
        database,
        extension,
        input_dir,
    })
}

/// Writes the marker (to a temporary name, flushed, then renamed into place).
pub fn write(data_dir: &Path, m: &Marker) -> std::io::Result<()> {
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{} {}", m.database, m.extension)?;
    writeln!(f, "{}", m.input_dir.display())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path(data_dir))
}

/// True when another installation of the extension ingested from this folder before, the
/// current one has an empty ledger, and the folder holds files: they may be the files ingested
/// before, whose record went with DROP EXTENSION (or DROP DATABASE).
pub fn recreated(before: Option<&Marker>, now: &Marker, ledger_empty: bool, files: usize) -> bool {
    match before {
        Some(b) => {
            ledger_empty
                && files > 0
                && b.input_dir == now.input_dir
                && (b.database, b.extension) != (now.database, now.extension)
        }
        None => false,
    }
}

impl Worker {
    /// A new installation of the extension (empty ledger) next to files that an earlier one
    /// ingested from this folder: ingesting them would store their rows again. Pauses (once,
    /// unless a user already paused or resumed) and says why. Returns whether paused.
    pub fn pause_if_recreated(&mut self, st: &Settings, candidates: &[Candidate]) -> bool {
        let (Some(now), Some(ledger)) = (self.installation(st), self.ledger.as_ref()) else {
            return false;
        };
        let before = read(&crate::settings::data_dir());
        if !recreated(before.as_ref(), &now, ledger.is_empty(), candidates.len()) {
            return false;
        }
        let why = format!(
            "the extension was created again while {} file(s) were in the input folder {}, from which an earlier installation ingested files (its record of them was dropped with it): ingesting them again would store their rows twice. Move away the files that were ingested before, then SELECT ingest_resume()",
            candidates.len(),
            st.input_dir.display()
        );
        let paused = transaction(|| {
            Spi::run_with_args(sql::PAUSE_WITH_REASON, &[why.as_str().into()])
                .unwrap_or_else(|e| error!("{e}"));
            Spi::get_one_with_args::<bool>(sql::PAUSED, &[super::me::pipeline().into()])
                .unwrap_or_else(|e| error!("{e}"))
                .unwrap_or(false)
        });
        match paused {
            Ok(true) => {
                self.say(Topic::SelfPause, format!("paused: {why}"), true);
                set_state(WorkerState::Paused);
                true
            }
            Ok(false) => false,
            Err(e) => {
                self.say(
                    Topic::SelfPause,
                    format!("cannot pause after a re-created extension: {e}"),
                    true,
                );
                // Safer to ingest nothing this time and try again.
                true
            }
        }
    }

    /// This database, extension and input folder.
    fn installation(&self, st: &Settings) -> Option<Marker> {
        Some(Marker {
            // SAFETY: MyDatabaseId is set once the worker is connected, and never changes.
            database: unsafe { pg_sys::MyDatabaseId }.to_u32(),
            extension: self.extension_oid?,
            input_dir: st.input_dir.clone(),
        })
    }

    /// Once something was ingested (the ledger is not empty), remembers this installation in
    /// the data directory's marker (see marker.rs).
    pub fn remember_installation(&mut self, st: &Settings) {
        let Some(now) = self.installation(st) else {
            return;
        };
        let ingested = self.ledger.as_ref().is_some_and(|l| !l.is_empty());
        if !ingested || self.marker_written == Some(now.extension) {
            return;
        }
        let dir = crate::settings::data_dir();
        if read(&dir).as_ref() != Some(&now) {
            if let Err(e) = write(&dir, &now) {
                self.say(
                    Topic::Marker,
                    format!(
                        "cannot write {}: {e}; a re-created extension could not tell which files were ingested before",
                        dir.join("ecommerce_ingest.marker").display()
                    ),
                    true,
                );
                return;
            }
        }
        self.settled(Topic::Marker);
        self.marker_written = Some(now.extension);
    }
}
