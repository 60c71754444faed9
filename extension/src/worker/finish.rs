//! What happens to a file once judged: done (archive, delete or keep), failed or changed (to
//! the failed folder), vanished from the folder, or seen again with other bytes.

use super::files;
use super::say::Topic;
use super::state::{set_state_because, ActionProblem, Worker};
use crate::settings::{ProcessedAction, Settings};
use crate::shared::{WorkerState, STATUS};
use ecommerce_events::ledger::{hash_hex, Entry, FileStatus, Update};
use ecommerce_events::plan::{vanished, Seen, Vanished};
use ecommerce_events::Candidate;
use pgrx::pg_sys;
use std::os::unix::fs::MetadataExt;

impl Worker {
    /// Files that were still in progress and are gone from the folder: each ends as
    /// `ecommerce_events::plan::vanished` says (their committed rows stay).
    pub fn vanished(&mut self, names: &[String]) {
        for name in names {
            self.active.remove(name);
            let Some(e) = self.entry(name).cloned() else {
                continue;
            };
            let Some(ledger) = self.ledger.as_mut() else {
                return;
            };
            match vanished(&e) {
                Vanished::End { status, message } => {
                    let u = Update::status_only(
                        name,
                        status,
                        e.size,
                        e.mtime_ns,
                        e.resume,
                        Some(message.clone()),
                    );
                    let _ = ledger.write_status(&u);
                    if status == FileStatus::Failed {
                        self.say(
                            Topic::File(name.clone()),
                            format!("file {name:?}: {message}"),
                            true,
                        );
                    }
                }
                Vanished::Forget => {
                    if ledger.forget_unread(name).is_ok() {
                        self.settled(Topic::File(name.clone()));
                    }
                }
                Vanished::Keep => {}
            }
        }
    }

    /// Records a non-regular entry (symlink, FIFO, directory) once in the ledger as failed.
    pub fn refused_once(&mut self, name: &str, reason: &str) {
        let Some(ledger) = self.ledger.as_mut() else {
            return;
        };
        if ledger.get(name).is_some() {
            return;
        }
        let u = Update::status_only(
            name,
            FileStatus::Failed,
            0,
            0,
            Default::default(),
            Some(reason.to_string()),
        );
        let _ = ledger.write_status(&u);
        self.say(
            Topic::File(name.to_string()),
            format!("file {name:?}: {reason}"),
            true,
        );
    }

    /// A file the ledger knows seen again with another size, mtime, inode or ctime: the same
    /// bytes (touched, copied back: only its identity is updated), or changed (reported once,
    /// not ingested)?
    pub fn check_changed(&mut self, st: &Settings, cand: &Candidate, e: &Entry) {
        let path = st.input_dir.join(&cand.name);
        // The ledger's hash is of the content as read: decompressed for a compressed file.
        let now_hash = match st.compression(&cand.name) {
            ingest_core::Compression::None => ecommerce_events::reader::hash_file(&path).ok(),
            c => ingest_core::compression::content_hash(&path, c).ok(),
        }
        .map(hash_hex);
        let Some(ledger) = self.ledger.as_mut() else {
            return;
        };
        if now_hash.is_some() && now_hash == e.hash && e.status == FileStatus::Done {
            let _ = ledger.touch(cand);
            self.after_done(st, cand);
            return;
        }
        // A file that failed before it was read to its end has no hash recorded.
        let was = match e.hash.as_deref() {
            Some(h) => format!("{} bytes, hash {h}", e.resume.byte),
            None => format!("{} bytes read, no hash recorded", e.resume.byte),
        };
        let msg = format!(
            "file {:?} changed after it was ingested ({was}) and now has {} bytes, hash {}: its new content is NOT ingested; give it a new name to ingest it",
            cand.name,
            cand.size,
            now_hash.as_deref().unwrap_or("unreadable")
        );
        let u = Update::status_only(
            &cand.name,
            FileStatus::Changed,
            e.size,
            e.mtime_ns,
            e.resume,
            Some(msg.clone()),
        );
        let _ = ledger.write_status(&u);
        self.say(Topic::File(cand.name.clone()), msg, true);
        self.changed_seen.insert(cand.name.clone(), Seen::of(cand));
        self.after_failed(st, cand);
    }

    /// The processed action for a file done: archive, delete, or nothing (keep).
    pub fn after_done(&mut self, st: &Settings, cand: &Candidate) {
        match st.processed_action {
            ProcessedAction::Keep => {}
            ProcessedAction::Delete => self.act(st, cand, Act::Delete),
            ProcessedAction::Archive => self.act(st, cand, Act::Archive),
        }
    }

    /// A file that failed as a whole, or changed: to the failed folder, unless keep.
    pub fn after_failed(&mut self, st: &Settings, cand: &Candidate) {
        if st.processed_action != ProcessedAction::Keep {
            self.act(st, cand, Act::MoveToFailed);
        }
    }

    /// Archives, deletes or moves the file `cand` was about, if it is still that file: a file
    /// replaced under the same name meanwhile is left alone (the worker never moves or deletes
    /// a file it did not judge). A failure is logged once per folder (not per file) and makes
    /// the state `degraded` until an action succeeds there again.
    fn act(&mut self, st: &Settings, cand: &Candidate, act: Act) {
        // The commit that recorded the file must be on disk before the file can go: with
        // synchronous_commit = off it may not be yet, and a crash would lose the rows and the
        // file. (XactLastCommitEnd: this process's last commit, the file's or a later one.)
        // SAFETY: on the worker's thread, outside any critical section; XLogFlush returns at
        // once when the WAL is already flushed that far.
        unsafe { pg_sys::XLogFlush(pg_sys::XactLastCommitEnd) };
        let name = cand.name.as_str();
        // And on every standby streaming from this server: after a failover to one of them,
        // a file whose commit it never received must still be in the folder, to be ingested
        // there. Until then the action waits (looked at again at every trigger).
        // SAFETY: read on the worker's own thread; a plain integer.
        let commit = unsafe { pg_sys::XactLastCommitEnd };
        let on_standbys = on_streaming_standbys(commit);
        // Asked after the view was read: no WAL sender in it may mean they exited with a
        // postmaster that died (SIGKILL) before or while it was read, and an orphan's commits
        // are not replicated. Leave the file (see orphan.rs).
        if !on_standbys || super::orphan::postmaster_gone() {
            self.action_retry.insert(name.to_string());
            return;
        }
        let src = st.input_dir.join(name);
        self.action_retry.remove(name);
        match std::fs::symlink_metadata(&src) {
            // Already moved (the action is repeated after a crash): nothing to do.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.leaving.push(name.to_string());
                return;
            }
            Ok(md) if md.dev() != cand.dev || md.ino() != cand.inode => {
                self.say(
                    Topic::File(name.to_string()),
                    format!(
                        "file {name:?} was replaced by another file after it was ingested: the new one is left in place, not {}",
                        act.verb()
                    ),
                    false,
                );
                return;
            }
            _ => {}
        }
        let folder = match act {
            Act::Archive => st.archive_dir.clone(),
            Act::MoveToFailed => st.failed_dir.clone(),
            Act::Delete => st.input_dir.clone(),
        };
        let r = match act {
            Act::Delete => files::delete(&src),
            Act::Archive | Act::MoveToFailed => {
                if files::same_dir(&folder, &st.input_dir) {
                    Err(std::io::Error::other(
                        "it is the input folder itself (under another path): files moved there would be ingested again",
                    ))
                } else {
                    files::move_into(&src, &folder, name).map(|_| ())
                }
            }
        };
        let topic = Topic::Action(folder.clone());
        match r {
            Ok(()) => {
                self.leaving.push(name.to_string());
                if self
                    .action_problem
                    .as_ref()
                    .is_some_and(|p| p.folder == folder)
                {
                    self.action_problem = None;
                    self.say(
                        topic.clone(),
                        format!(
                            "processed files can be {} {} again",
                            act.verb(),
                            folder.display()
                        ),
                        false,
                    );
                    if STATUS.share().state == WorkerState::Degraded {
                        super::state::set_state(WorkerState::Running);
                    }
                }
                self.settled(topic);
            }
            // Removed meanwhile (by someone else, between the look above and the move): there
            // is nothing left to move, and nothing wrong with the folder.
            Err(_)
                if std::fs::symlink_metadata(&src)
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
            {
                self.leaving.push(name.to_string());
            }
            Err(e) => {
                let msg = format!(
                    "processed files cannot be {} {}: {e} (first seen with {name:?}); they stay in the input folder, already ingested, and are retried at every trigger",
                    act.verb(),
                    folder.display()
                );
                self.say_keyed(topic, format!("{:?}", e.kind()), msg.clone(), true);
                self.action_problem = Some(ActionProblem {
                    folder,
                    message: msg.clone(),
                });
                self.action_retry.insert(name.to_string());
                if STATUS.share().state == WorkerState::Running {
                    set_state_because(WorkerState::Degraded, &msg);
                }
            }
        }
    }
}

/// What happens to a file once judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Archive,
    Delete,
    MoveToFailed,
}

impl Act {
    fn verb(self) -> &'static str {
        match self {
            Act::Archive => "archived into",
            Act::Delete => "deleted from",
            Act::MoveToFailed => "moved into",
        }
    }
}

/// Whether every standby streaming from this server has flushed the WAL up to `lsn` (true when
/// none streams). A failure to ask counts as not yet: the action waits for the next trigger.
fn on_streaming_standbys(lsn: pg_sys::XLogRecPtr) -> bool {
    let lsn = format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff);
    super::txn::transaction(|| {
        pgrx::Spi::get_one_with_args::<bool>(
            "SELECT coalesce(pg_catalog.bool_and(flush_lsn OPERATOR(pg_catalog.>=) $1::pg_catalog.pg_lsn), true)
               FROM pg_catalog.pg_stat_replication WHERE state OPERATOR(pg_catalog.=) 'streaming'",
            &[lsn.as_str().into()],
        )
        .ok()
        .flatten()
        .unwrap_or(false)
    })
    .unwrap_or(false)
}
