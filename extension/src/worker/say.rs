//! Log de-duplication: each problem is logged once, under its topic, until it is settled or
//! changes; errors also become the status' `last_error`.

use crate::shared::STATUS;
use pgrx::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;

/// What a message is about. Files and folders have their own variants, so that a file named
/// like a topic can never silence (or be silenced by) another message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// The input, archive and failed folders' settings.
    Folders,
    Pattern,
    /// Listing the input folder.
    Dir,
    /// Reading the extension's tables.
    Control,
    /// The extension's SQL objects are of another version.
    Version,
    Reader,
    Watch,
    Stale,
    BatchLog,
    /// The marker that remembers which installation ingested from the folder.
    Marker,
    /// The worker paused itself.
    SelfPause,
    /// A chunk gave up waiting for a lock.
    Lock,
    File(String),
    /// Archiving, deleting or moving files into this folder (one message for all files).
    Action(PathBuf),
    /// Starting the worker of this pipeline (the events worker).
    Pipeline(String),
    /// Reading which workers to start (the events worker).
    Supervise,
    /// Deleting old history (retention.rs).
    Retention,
    /// Folding the counters' shards (retention.rs).
    Counters,
}

#[derive(Default)]
pub struct Said(HashMap<Topic, String>);

impl Said {
    /// Logs `msg` under `topic` unless it is what was said last time.
    pub fn say(&mut self, topic: Topic, msg: String, is_error: bool) {
        let key = msg.clone();
        self.say_keyed(topic, key, msg, is_error)
    }

    /// Like `say`, but repeats are recognised by `key` (messages may hold changing values).
    pub fn say_keyed(&mut self, topic: Topic, key: String, msg: String, is_error: bool) {
        if self.0.get(&topic) == Some(&key) {
            return;
        }
        if is_error {
            warning!("ecommerce_ingest: {msg}");
            STATUS.exclusive().set_error(&msg);
        } else {
            log!("ecommerce_ingest: {msg}");
        }
        self.0.insert(topic, key);
    }

    /// The problem is over: the next one on this topic is logged again.
    pub fn settled(&mut self, topic: &Topic) {
        self.0.remove(topic);
    }
}
