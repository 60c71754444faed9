//! The `ecommerce_ingest.*` settings: registration, and a snapshot the worker reads once per loop.

use ecommerce_events::folders::canonical;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::PostgresGucEnum;
use std::ffi::{CStr, CString};
use std::path::PathBuf;
use std::time::Duration;

#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProcessedAction {
    #[name = c"keep"]
    Keep,
    #[name = c"archive"]
    Archive,
    #[name = c"delete"]
    Delete,
}

pub static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
/// No default: every folder inside the data directory is refused (see `ecommerce_events::folders`).
pub static INPUT_DIR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
pub static TRIGGER_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static MAX_FILES_PER_TRIGGER: GucSetting<i32> = GucSetting::<i32>::new(1000);
pub static FILE_PATTERN: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"*.csv"));
pub static PROCESSED_ACTION: GucSetting<ProcessedAction> =
    GucSetting::<ProcessedAction>::new(ProcessedAction::Keep);
pub static ARCHIVE_DIR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
pub static FAILED_DIR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
pub static CHUNK_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(64 * 1024);
pub static BATCH_ROWS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static MIN_FILE_AGE_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
pub static MAX_RECORD_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(16 * 1024);
pub static LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
/// Seconds a file's record is kept after the file left the input folder; 0: for ever.
pub static LEDGER_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(0);
/// Set (for its transaction only) by a worker deleting records of files long gone: the counters
/// keep what those files brought (see schema.sql, ingest_count_ledger).
pub static FORGETTING: GucSetting<bool> = GucSetting::<bool>::new(false);
/// How many workers ingest the events pipeline's files (each owns a share of the names).
pub static WORKERS: GucSetting<i32> = GucSetting::<i32>::new(1);
/// Seconds the history (rejects, batch log, chunks of done files) is kept; 0: for ever.
pub static HISTORY_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(0);
/// Folders under which a non-superuser may create pipelines (comma-separated; empty: none).
pub static ALLOWED_ROOTS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c""));

/// The name of the pipeline this file's settings configure (the events of docs/contract.md into
/// user_events); every other pipeline is a row of ingest_pipelines.
pub const EVENTS_PIPELINE: &str = "events";

/// Registers the settings. `database` needs a restart, so it exists only when preloaded
/// (PostgreSQL refuses postmaster-level settings defined later).
pub fn register(preloading: bool) {
    if preloading {
        GucRegistry::define_string_guc(
            c"ecommerce_ingest.database",
            c"Database the ingestion worker connects to.",
            c"The extension must be created in this database. Takes effect at server restart.",
            &DATABASE,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
    GucRegistry::define_string_guc(
        c"ecommerce_ingest.input_dir",
        c"Folder the worker ingests CSV files from.",
        c"An absolute path outside the data directory, its tablespaces and configuration folders. Only a superuser can set it (postgresql.conf or ALTER SYSTEM).",
        &INPUT_DIR,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"ecommerce_ingest.allowed_roots",
        c"Folders under which members of ecommerce_ingest_admin who are not superusers may create pipelines.",
        c"Absolute paths separated by commas; a pipeline's folders must be inside one of them after symbolic links are resolved. Empty: only superusers create pipelines. Only a superuser can set it.",
        &ALLOWED_ROOTS,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"ecommerce_ingest.trigger_interval",
        c"How often the worker scans the input folder when no notification arrives.",
        c"File-system notifications and ingest_trigger() start a trigger at once; this is the polling fallback.",
        &TRIGGER_INTERVAL_MS,
        10,
        24 * 3600 * 1000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"ecommerce_ingest.max_files_per_trigger",
        c"Most files one trigger ingests; a remaining backlog starts the next trigger at once.",
        c"",
        &MAX_FILES_PER_TRIGGER,
        1,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"ecommerce_ingest.file_pattern",
        c"Shell pattern of the file names to ingest, like *.csv.",
        c"Names starting with a dot or ending in .tmp or .part are always ignored.",
        &FILE_PATTERN,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"ecommerce_ingest.processed_action",
        c"What to do with a file once ingested: keep, archive or delete.",
        c"archive moves it to archive_dir; files that fail are moved to failed_dir unless keep.",
        &PROCESSED_ACTION,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"ecommerce_ingest.archive_dir",
        c"Where archived files go (processed_action = archive). Empty: <input_dir>/archive.",
        c"",
        &ARCHIVE_DIR,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"ecommerce_ingest.failed_dir",
        c"Where files that failed as a whole go (unless processed_action = keep). Empty: <input_dir>/failed.",
        c"",
        &FAILED_DIR,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"ecommerce_ingest.chunk_size",
        c"A file is committed in chunks of about this many bytes.",
        c"Each chunk commits its rows with the byte offset reached; a restart resumes after the last chunk.",
        &CHUNK_SIZE_KB,
        64,
        i32::MAX / 1024,
        GucContext::Sighup,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"ecommerce_ingest.batch_rows",
        c"Rows per INSERT statement.",
        c"",
        &BATCH_ROWS,
        1,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ecommerce_ingest.min_file_age",
        c"A file modified more recently than this is treated as still being written.",
        c"Its complete lines are ingested at once, but an unterminated last line waits, and the file is finished (and archived or deleted) only once it is this old.",
        &MIN_FILE_AGE_MS,
        0,
        24 * 3600 * 1000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"ecommerce_ingest.max_record_size",
        c"Longest CSV record (line) accepted; a longer one is rejected with its line number.",
        c"Bounds the worker's memory whatever the input: the rest of the file is read on after the next line break.",
        &MAX_RECORD_SIZE_KB,
        1,
        1024 * 1024,
        GucContext::Sighup,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"ecommerce_ingest.history_retention",
        c"How long rejected rows and the batch history are kept (0: for ever).",
        c"Older rows are deleted by each pipeline's first worker while it is idle (or after 5 minutes of steady work), a few thousand at a time. The ledger (ingest_files) and its chunks are kept: see ecommerce_ingest.ledger_retention.",
        &HISTORY_RETENTION_S,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"ecommerce_ingest.ledger_retention",
        c"How long a file's record (its ingest_files row and chunks) is kept after the file left the input folder (0: for ever).",
        c"A file leaves when it is archived, deleted or moved to the failed folder, or is found gone at a full scan. A record is never deleted while its file is in the folder; a file copied back after its record was deleted is ingested again as a new file. The counters of ingest_status() keep what forgotten files brought.",
        &LEDGER_RETENTION_S,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"ecommerce_ingest.forgetting",
        c"Internal: set by a worker for the transaction that deletes records of files gone long ago.",
        c"",
        &FORGETTING,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL | GucFlags::DISALLOW_IN_FILE | GucFlags::DISALLOW_IN_AUTO_FILE,
    );
    GucRegistry::define_int_guc(
        c"ecommerce_ingest.lock_timeout",
        c"How long a chunk waits for a lock held by another session before the worker looks at the folder again.",
        c"The chunk is rolled back and retried at once; meanwhile ingest_status() says waiting_for_lock and keeps files_pending and lag_seconds current.",
        &LOCK_TIMEOUT_MS,
        10,
        3600 * 1000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"ecommerce_ingest.workers",
        c"How many workers ingest the events pipeline's files at once.",
        c"Each worker owns the files whose name hashes to it (a file and all its chunks belong to one worker); every worker is a background worker of its own (max_worker_processes must leave room). A pipeline has its own option \"workers\".",
        &WORKERS,
        1,
        ingest_core::share::MAX_WORKERS as i32,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // SAFETY: called from _PG_init, on the only thread, with a NUL-terminated static string.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"ecommerce_ingest".as_ptr()) };
}

fn string(s: &GucSetting<Option<CString>>) -> String {
    s.get()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The settings as the worker uses them, read at the start of each loop. Folders are canonical
/// (symbolic links resolved), so that they can be checked against the server's own folders.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `input_dir` is empty: nothing may be read (an empty path would be the data directory).
    pub input_unset: bool,
    pub input_dir: PathBuf,
    pub trigger_interval: Duration,
    pub max_files_per_trigger: usize,
    pub file_pattern: String,
    pub processed_action: ProcessedAction,
    pub archive_dir: PathBuf,
    pub failed_dir: PathBuf,
    pub chunk_bytes: u64,
    pub batch_rows: usize,
    pub min_file_age: Duration,
    pub max_record_bytes: u64,
    pub lock_timeout: Duration,
    /// How long the history is kept (`None`: for ever); see worker/retention.rs.
    pub history_retention: Option<Duration>,
    /// How long a file's record is kept after the file left the folder (`None`: for ever).
    pub ledger_retention: Option<Duration>,
    /// How many workers share the pipeline's files (ingest_core::share).
    pub workers: u32,
    /// What the files hold and where their rows go.
    pub source: Source,
}

/// What a pipeline's files hold and where their rows go.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The events of docs/contract.md, into user_events (configured by this file's settings).
    Events,
    /// A pipeline of ingest_pipelines.
    Pipeline(std::sync::Arc<crate::pipeline::PipelineDef>),
}

/// The folders non-superusers may use (`ecommerce_ingest.allowed_roots`), canonical.
pub fn allowed_roots() -> Vec<PathBuf> {
    string(&ALLOWED_ROOTS)
        .split(',')
        .map(str::trim)
        .filter(|s| s.starts_with('/'))
        .map(|s| canonical(std::path::Path::new(s)))
        .collect()
}

/// The data directory (the server's working directory).
pub fn data_dir() -> PathBuf {
    // SAFETY: DataDir is set by the postmaster before any library is loaded and never changes;
    // it is a NUL-terminated C string.
    let data_dir = unsafe { CStr::from_ptr(pgrx::pg_sys::DataDir) };
    PathBuf::from(data_dir.to_string_lossy().into_owned())
}

/// Resolves a setting's path against the data directory (the server's working directory).
pub fn resolve(p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        data_dir().join(p)
    }
}

impl Settings {
    pub fn read() -> Settings {
        let input = string(&INPUT_DIR);
        let input_dir = canonical(&resolve(&input));
        let or_sub = |s: String, sub: &str| {
            if s.is_empty() {
                input_dir.join(sub)
            } else {
                canonical(&resolve(&s))
            }
        };
        Settings {
            input_unset: input.trim().is_empty(),
            archive_dir: or_sub(string(&ARCHIVE_DIR), "archive"),
            failed_dir: or_sub(string(&FAILED_DIR), "failed"),
            input_dir: input_dir.clone(),
            trigger_interval: Duration::from_millis(TRIGGER_INTERVAL_MS.get() as u64),
            max_files_per_trigger: MAX_FILES_PER_TRIGGER.get() as usize,
            file_pattern: string(&FILE_PATTERN),
            processed_action: PROCESSED_ACTION.get(),
            chunk_bytes: CHUNK_SIZE_KB.get() as u64 * 1024,
            batch_rows: BATCH_ROWS.get() as usize,
            min_file_age: Duration::from_millis(MIN_FILE_AGE_MS.get() as u64),
            max_record_bytes: MAX_RECORD_SIZE_KB.get() as u64 * 1024,
            lock_timeout: Duration::from_millis(LOCK_TIMEOUT_MS.get() as u64),
            history_retention: match HISTORY_RETENTION_S.get() {
                0 => None,
                s => Some(Duration::from_secs(s as u64)),
            },
            ledger_retention: match LEDGER_RETENTION_S.get() {
                0 => None,
                s => Some(Duration::from_secs(s as u64)),
            },
            workers: WORKERS
                .get()
                .clamp(1, ingest_core::share::MAX_WORKERS as i32) as u32,
            source: Source::Events,
        }
    }

    /// File `name` is read through a decompressor (a pipeline's `.gz`, `.zst`): its offsets
    /// count decompressed bytes, not bytes of the file on disk.
    pub fn compressed(&self, name: &str) -> bool {
        self.compression(name) != ingest_core::Compression::None
    }

    /// How file `name` is compressed (the events pipeline's files never are).
    pub fn compression(&self, name: &str) -> ingest_core::Compression {
        match &self.source {
            Source::Events => ingest_core::Compression::None,
            Source::Pipeline(def) => def.options.compression.for_file(name),
        }
    }

    /// A pipeline's settings: its own where it has them, this file's otherwise (the events
    /// pipeline's pattern and processed action excepted: a pipeline's default pattern is its
    /// format's, and its files are kept unless it says otherwise).
    pub fn for_pipeline(def: std::sync::Arc<crate::pipeline::PipelineDef>) -> Settings {
        use ingest_core::options::ProcessedAction as Action;
        let base = Settings::read();
        let o = &def.options.settings;
        let folders = ecommerce_events::folders::Folders::of_pipeline(&def.input_dir, o);
        let ms = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_millis);
        Settings {
            input_unset: def.input_dir.trim().is_empty(),
            archive_dir: folders.archive,
            failed_dir: folders.failed,
            input_dir: folders.input,
            trigger_interval: ms(o.trigger_interval_ms, base.trigger_interval),
            max_files_per_trigger: o
                .max_files_per_trigger
                .map_or(base.max_files_per_trigger, |v| v as usize),
            file_pattern: o
                .file_patterns
                .clone()
                .unwrap_or_else(|| ingest_core::options::default_patterns(def.options.format_name))
                .join(","),
            processed_action: match o.processed_action {
                Some(Action::Archive) => ProcessedAction::Archive,
                Some(Action::Delete) => ProcessedAction::Delete,
                Some(Action::Keep) | None => ProcessedAction::Keep,
            },
            // A file that may fail as a whole is read in one transaction (see ingest.rs).
            chunk_bytes: if ingest_core::policy::whole_file_in_one_transaction(&def.options.policy)
            {
                u64::MAX
            } else {
                o.chunk_size_kb.map_or(base.chunk_bytes, |k| k * 1024)
            },
            batch_rows: o.batch_rows.map_or(base.batch_rows, |v| v as usize),
            min_file_age: ms(o.min_file_age_ms, base.min_file_age),
            max_record_bytes: base.max_record_bytes,
            lock_timeout: base.lock_timeout,
            history_retention: base.history_retention,
            ledger_retention: base.ledger_retention,
            workers: o.workers.map_or(1, |w| w as u32),
            source: Source::Pipeline(def),
        }
    }
}

pub fn database() -> String {
    string(&DATABASE)
}

/// The input folder as configured (resolved against the data directory when relative), or
/// empty when not set.
pub fn input_dir_display() -> String {
    let s = string(&INPUT_DIR);
    if s.trim().is_empty() {
        String::new()
    } else {
        resolve(&s).display().to_string()
    }
}

/// The value of one of the server's own settings (e.g. `config_file`), if it has one.
pub fn server_setting(name: &str) -> Option<String> {
    let name = CString::new(name).ok()?;
    // SAFETY: called on a backend's main thread; GetConfigOption returns a pointer into the GUC
    // storage (or NULL for an unknown name with missing_ok), copied at once.
    unsafe {
        let p = pgrx::pg_sys::GetConfigOption(name.as_ptr(), true, false);
        (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}
