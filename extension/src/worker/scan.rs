//! Looking at the input folder: the watcher, and the full or notified listing.

use super::say::Topic;
use super::state::{Scanned, Worker};
use super::watch;
use crate::settings::Settings;
use ecommerce_events::{
    classify, dir_mtime_ns, list_dir, sort_oldest_first, Candidate, EntryKind, FilePattern,
};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

/// How often a folder whose mtime changed is rescanned in full although notifications work.
const SAFETY_RESCAN_EVERY: Duration = Duration::from_secs(60);

impl Worker {
    fn ensure_watcher(&mut self, dir: &std::path::Path) {
        // The same path may now be another folder (deleted and made again, remounted): the old
        // watch would hear nothing. Compared at every trigger, so at worst one trigger interval.
        let identity = std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()));
        if self
            .watcher
            .as_ref()
            .is_some_and(|w| w.dir == dir && Some(w.identity) == identity && !w.is_lost())
        {
            return;
        }
        if self.watcher.take().is_some_and(|w| w.dir == dir) {
            // Files may have arrived in the new folder unheard: list it whole.
            self.scanned = None;
            self.say(
                Topic::Watch,
                format!(
                    "the input folder {} was replaced; watching the new one",
                    dir.display()
                ),
                false,
            );
        }
        match watch::Watcher::new(dir) {
            Ok(w) => {
                self.watcher = Some(w);
                self.settled(Topic::Watch);
            }
            Err(e) => self.say(
                Topic::Watch,
                format!(
                    "no file-system notifications for {}: {e}; polling every trigger_interval",
                    dir.display()
                ),
                false,
            ),
        }
    }

    /// The files to consider in this trigger, oldest first. A full scan lists and stats the whole
    /// folder; otherwise only the names notifications reported and the files still in progress
    /// are looked at, so a trigger's cost does not grow with the files ingested before.
    pub fn look(
        &mut self,
        st: &Settings,
        pattern: &FilePattern,
        mut full: bool,
    ) -> std::io::Result<Vec<Candidate>> {
        let dir = &st.input_dir;
        let dir_mtime = dir_mtime_ns(dir)?;
        self.ensure_watcher(dir);
        let inbox = self.watcher.as_ref().map(|w| w.take_inbox());
        // With a healthy watcher the notified names are enough; a changed folder mtime only
        // asks for a safety rescan, at most once a minute (notifications can miss changes made
        // by other hosts on network file systems).
        full |= match (&inbox, &self.scanned) {
            (None, _) | (_, None) => true,
            (Some(i), Some(sc)) => {
                i.rescan
                    || sc.dir != *dir
                    || sc.pattern != st.file_pattern
                    || (sc.mtime != dir_mtime && sc.at.elapsed() >= SAFETY_RESCAN_EVERY)
            }
        };
        // Only this worker's share of the names: the pipeline's other workers own the rest.
        let share = self.share;
        if full {
            let mut listing = list_dir(dir, pattern)?;
            listing.files.retain(|c| share.owns(&c.name));
            listing.skipped.retain(|sk| share.owns(&sk.name));
            for sk in &listing.skipped {
                // The archive and failed folders may sit in the input folder (the default) and
                // match a broad pattern: they are the worker's own, not refused input.
                let path = dir.join(&sk.name);
                if path == st.archive_dir || path == st.failed_dir {
                    continue;
                }
                self.refused_once(&sk.name, &sk.reason);
            }
            let present: HashSet<&str> = listing.files.iter().map(|c| c.name.as_str()).collect();
            // Files done with that are not there any more have left (recorded only where their
            // records are to be deleted some time after: it costs a pass over the copy).
            if st.ledger_retention.is_some() {
                if let Some(l) = &self.ledger {
                    let mut skipped: HashSet<&str> = present.clone();
                    skipped.extend(listing.skipped.iter().map(|sk| sk.name.as_str()));
                    // Not listed is not gone: a name the pattern no longer matches is still
                    // there (its record must stay, or a pattern changed back would ingest it
                    // again). One stat per file not yet recorded as gone.
                    let left = l.left_since(&skipped).into_iter().filter(|n| {
                        std::fs::symlink_metadata(dir.join(n))
                            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
                    });
                    self.leaving.extend(left);
                }
            }
            let gone: Vec<String> = self
                .active
                .iter()
                .filter(|n| !present.contains(n.as_str()))
                .cloned()
                .collect();
            self.vanished(&gone);
            self.scanned = Some(Scanned {
                dir: dir.clone(),
                pattern: st.file_pattern.clone(),
                mtime: dir_mtime,
                at: Instant::now(),
            });
            return Ok(listing.files);
        }
        let mut names: HashSet<String> = inbox.map(|i| i.names).unwrap_or_default();
        names.extend(self.active.iter().cloned());
        names.extend(self.action_retry.iter().cloned());
        names.retain(|n| share.owns(n));
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            match classify(dir, &name, pattern) {
                EntryKind::File(c) => files.push(c),
                EntryKind::Refused(sk) => {
                    let path = dir.join(&sk.name);
                    if path != st.archive_dir && path != st.failed_dir {
                        self.refused_once(&sk.name, &sk.reason)
                    }
                }
                EntryKind::Ignored => {
                    if self.active.contains(&name) {
                        self.vanished(std::slice::from_ref(&name));
                    }
                }
            }
        }
        sort_oldest_first(&mut files);
        Ok(files)
    }
}
