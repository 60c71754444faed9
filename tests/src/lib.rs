//! End-to-end test harness: private PostgreSQL 15 clusters with `ecommerce_ingest`, an input
//! folder, deterministic event files, and the expected rows computed from the files themselves.

use ecommerce_events::{EventReader, Outcome};
use postgres::{Client, NoTls};
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Settings every cluster gets first (a test's own lines come later and win).
pub const DEFAULT_CONF: [&str; 2] = [
    "ecommerce_ingest.trigger_interval = '200ms'",
    "ecommerce_ingest.min_file_age = '100ms'",
];

/// The columns of `user_events` compared with the files, in [`EventRow`] order.
pub const EVENTS_QUERY: &str = "SELECT source_file, source_line, user_id, event_type, product_id,
        product_name, product_category, price::text,
        (extract(epoch FROM event_timestamp) * 1e6)::int8, session_id, device_type
   FROM user_events_with_source ORDER BY source_file, source_line";

/// Duplicated (file, line) pairs: must always be empty.
pub const DUPLICATES_QUERY: &str =
    "SELECT source_file, source_line, count(*) FROM user_events_with_source
  GROUP BY source_file, source_line HAVING count(*) > 1";

pub struct ClusterOptions {
    /// postgresql.conf lines, after [`DEFAULT_CONF`] (later lines win).
    pub extra_conf: Vec<String>,
    /// `false`: `shared_preload_libraries = ''` (no worker).
    pub preload: bool,
    /// Run `CREATE EXTENSION ecommerce_ingest` once connected.
    pub create_extension: bool,
    /// With `create_extension`: `CREATE EXTENSION ecommerce_ingest VERSION '<this>'` instead of
    /// the default version.
    pub extension_version: Option<String>,
    /// Load `ecommerce_ingest.so` from this folder instead of `$libdir` (e.g. a previous
    /// release, see [`previous_release`]). The file is copied into the cluster's own folder
    /// (readable by the server's OS user, and safe from a rebuild while the server has it
    /// mapped) and named first in `dynamic_library_path`. Both `shared_preload_libraries` and
    /// the functions' `module_pathname` say `ecommerce_ingest`, without a directory, so both
    /// resolve through that path. [`Cluster::use_installed_library`] removes the line.
    pub library_dir: Option<PathBuf>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            extra_conf: Vec::new(),
            preload: true,
            create_extension: true,
            extension_version: None,
            library_dir: None,
        }
    }
}

impl ClusterOptions {
    pub fn with_conf(lines: &[&str]) -> Self {
        ClusterOptions {
            extra_conf: lines.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Files committed in chunks of 64 kB (batches of 100 rows): a file of a few hundred
    /// thousand rows takes hundreds of transactions, time to act while it is half ingested.
    pub fn small_chunks() -> Self {
        ClusterOptions::with_conf(&[
            "ecommerce_ingest.chunk_size = '64kB'",
            "ecommerce_ingest.batch_rows = 100",
        ])
    }
}

/// One row of `ingest_status()`.
#[derive(Debug, Clone)]
pub struct Status {
    pub state: String,
    pub paused: bool,
    pub worker_pid: Option<i32>,
    pub database: String,
    pub input_dir: String,
    pub trigger_interval: String,
    pub files_ingested: i64,
    pub files_failed: i64,
    pub files_pending: Option<i64>,
    pub rows_ingested: i64,
    pub rows_rejected: i64,
    /// Microseconds since the Unix epoch.
    pub last_trigger_at: Option<i64>,
    pub lag_seconds: Option<f64>,
    pub last_error: Option<String>,
    pub detail: String,
}

/// A valid event as the files say it should be stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventRow {
    pub file: String,
    pub line: i64,
    pub user_id: String,
    pub event_type: String,
    pub product_id: String,
    pub product_name: String,
    pub product_category: String,
    /// `12.34`
    pub price: String,
    /// UTC microseconds since the Unix epoch.
    pub ts_us: i64,
    pub session_id: String,
    pub device_type: String,
}

impl EventRow {
    /// A row of a query shaped like [`EVENTS_QUERY`].
    pub fn from_row(r: &postgres::Row) -> EventRow {
        EventRow {
            file: r.get(0),
            line: r.get(1),
            user_id: r.get(2),
            event_type: r.get(3),
            product_id: r.get(4),
            product_name: r.get(5),
            product_category: r.get(6),
            price: r.get(7),
            ts_us: r.get(8),
            session_id: r.get(9),
            device_type: r.get(10),
        }
    }
}

/// A rejected row as the files say it should be reported.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RejectRow {
    pub file: String,
    pub line: i64,
    pub column: Option<String>,
}

#[derive(Debug, Default)]
pub struct Expected {
    pub rows: Vec<EventRow>,
    pub rejects: Vec<RejectRow>,
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn feeder_bin() -> PathBuf {
    std::env::var_os("FEEDER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/feeder"))
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().unwrap().port()
}

/// The setting [`ClusterOptions::library_dir`] writes.
const LIBRARY_PATH_SETTING: &str = "dynamic_library_path";

/// The previous release, as `scripts/previous-release.sh` builds it.
pub struct PreviousRelease {
    /// Its version, e.g. `0.1.0`.
    pub version: String,
    /// The folder of its `ecommerce_ingest.so` (for [`ClusterOptions::library_dir`]).
    pub library_dir: PathBuf,
    /// Its install script `ecommerce_ingest--<version>.sql`, as pgrx generated it.
    pub install_script: PathBuf,
}

/// The previous release built by `scripts/previous-release.sh` (under `target/previous/`);
/// panics saying to run the script when it is missing.
pub fn previous_release() -> PreviousRelease {
    let root = repo_root().join("target/previous");
    let hint = "run scripts/previous-release.sh (it builds the previous release and installs its SQL script)";
    let version = fs::read_to_string(root.join("version"))
        .unwrap_or_else(|e| panic!("{}: {e}: {hint}", root.join("version").display()))
        .trim()
        .to_string();
    let dir = root.join(&version);
    let p = PreviousRelease {
        library_dir: dir.join("lib"),
        install_script: dir.join(format!("ecommerce_ingest--{version}.sql")),
        version,
    };
    for f in [
        p.library_dir.join("ecommerce_ingest.so"),
        p.install_script.clone(),
    ] {
        assert!(f.is_file(), "{} is missing: {hint}", f.display());
    }
    p
}

pub struct Cluster {
    root: PathBuf,
    data: PathBuf,
    input: PathBuf,
    port: u16,
    conf: Vec<String>,
    client: Option<Client>,
}

fn script() -> PathBuf {
    repo_root().join("scripts/cluster.sh")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Quotes a SQL string literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Cluster {
    pub fn start(opts: ClusterOptions) -> Cluster {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let root = PathBuf::from(format!("/tmp/e2e-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create the test folder");
        let data = root.join("data");
        let input = root.join("in");
        let mut conf: Vec<String> = DEFAULT_CONF.iter().map(|s| s.to_string()).collect();
        if !opts.preload {
            conf.push("shared_preload_libraries = ''".into());
        }
        if let Some(dir) = &opts.library_dir {
            let lib = root.join("lib");
            fs::create_dir_all(&lib).expect("create the library folder");
            let src = dir.join("ecommerce_ingest.so");
            fs::copy(&src, lib.join("ecommerce_ingest.so"))
                .unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
            fs::set_permissions(&lib, fs::Permissions::from_mode(0o755)).unwrap();
            conf.push(format!(
                "{LIBRARY_PATH_SETTING} = {}",
                lit(&format!("{}:$libdir", lib.display()))
            ));
        }
        conf.extend(opts.extra_conf);
        let mut c = Cluster {
            root,
            data,
            input,
            port: free_port(),
            conf,
            client: None,
        };
        c.pg_start();
        if opts.create_extension {
            match &opts.extension_version {
                Some(v) => c.execute(&format!(
                    "CREATE EXTENSION ecommerce_ingest VERSION {}",
                    lit(v)
                )),
                None => c.execute("CREATE EXTENSION ecommerce_ingest"),
            }
        }
        c
    }

    fn pg_start(&mut self) {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .arg("start")
            .arg(&self.data)
            .arg(self.port.to_string())
            .arg(&self.input)
            .args(&self.conf);
        run(&mut cmd);
        self.client = Some(self.connect_retry("postgres", Duration::from_secs(60)));
    }

    fn pg_stop(&mut self, mode: &str) {
        self.client = None;
        let mut cmd = Command::new("bash");
        cmd.arg(script()).arg("stop").arg(&self.data).arg(mode);
        run(&mut cmd);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn input_dir(&self) -> &Path {
        &self.input
    }

    /// The test's own folder (holds `data/` and `in/`): a place outside the input folder.
    pub fn root_dir(&self) -> &Path {
        &self.root
    }

    pub fn try_connect_as(&self, user: &str) -> Result<Client, postgres::Error> {
        self.try_connect_to("postgres", user)
    }

    pub fn try_connect_to(&self, dbname: &str, user: &str) -> Result<Client, postgres::Error> {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .dbname(dbname)
            .application_name("e2e")
            .connect_timeout(Duration::from_secs(10))
            .connect(NoTls)
    }

    /// A new connection to database `dbname`, as postgres.
    pub fn connect_to(&self, dbname: &str) -> Client {
        self.try_connect_to(dbname, "postgres")
            .unwrap_or_else(|e| panic!("connect to {dbname}: {e}"))
    }

    pub fn connect_as(&self, user: &str) -> Client {
        self.try_connect_as(user)
            .unwrap_or_else(|e| panic!("connect as {user}: {e}"))
    }

    fn connect_retry(&self, user: &str, timeout: Duration) -> Client {
        let start = Instant::now();
        loop {
            match self.try_connect_as(user) {
                Ok(mut c) => {
                    if c.simple_query("SELECT 1").is_ok() {
                        return c;
                    }
                }
                Err(e) if start.elapsed() > timeout => {
                    panic!(
                        "the server does not accept connections after {timeout:?}: {e}\n{}",
                        self.log_tail(40)
                    )
                }
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("connected")
    }

    pub fn execute(&mut self, sql: &str) {
        if let Err(e) = self.client().batch_execute(sql) {
            panic!("{sql}: {}", db_error_text(&e));
        }
    }

    /// The first column of the first row, as i64 (NULL → 0).
    pub fn int(&mut self, sql: &str) -> i64 {
        let row = self
            .client()
            .query_one(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {}", db_error_text(&e)));
        row.get::<_, Option<i64>>(0).unwrap_or(0)
    }

    /// The first column of the first row, as text.
    pub fn text(&mut self, sql: &str) -> Option<String> {
        let row = self
            .client()
            .query_one(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {}", db_error_text(&e)));
        row.get::<_, Option<String>>(0)
    }

    pub fn event_count(&mut self) -> i64 {
        self.int("SELECT count(*) FROM user_events")
    }

    /// Now, by the server's clock, in Unix microseconds.
    pub fn now_us(&mut self) -> i64 {
        self.int("SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::int8")
    }

    pub fn try_status(&mut self) -> Result<Status, postgres::Error> {
        let r = self.client().query_one(
            "SELECT state, paused, worker_pid, database, input_dir, trigger_interval,
                    files_ingested, files_failed, files_pending, rows_ingested, rows_rejected,
                    (extract(epoch FROM last_trigger_at) * 1e6)::int8, lag_seconds, last_error, detail
               FROM ingest_status()",
            &[],
        )?;
        Ok(Status {
            state: r.get(0),
            paused: r.get(1),
            worker_pid: r.get(2),
            database: r.get(3),
            input_dir: r.get(4),
            trigger_interval: r.get(5),
            files_ingested: r.get(6),
            files_failed: r.get(7),
            files_pending: r.get(8),
            rows_ingested: r.get(9),
            rows_rejected: r.get(10),
            last_trigger_at: r.get(11),
            lag_seconds: r.get(12),
            last_error: r.get(13),
            detail: r.get(14),
        })
    }

    pub fn status(&mut self) -> Status {
        self.try_status()
            .unwrap_or_else(|e| panic!("ingest_status(): {}", db_error_text(&e)))
    }

    /// Calls `ingest_trigger()`.
    pub fn trigger(&mut self) -> String {
        self.text("SELECT ingest_trigger()").unwrap_or_default()
    }

    /// Polls `f` every 50 ms until it is true; on timeout panics with `desc`, the last status
    /// and the end of the server log.
    pub fn wait_for(
        &mut self,
        desc: &str,
        timeout: Duration,
        mut f: impl FnMut(&mut Cluster) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if f(self) {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                let status = match self.try_status() {
                    Ok(s) => format!("{s:#?}"),
                    Err(e) => db_error_text(&e),
                };
                panic!(
                    "timed out after {timeout:?} waiting for: {desc}\nlast status: {status}\n--- server.log (tail) ---\n{}",
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a whole trigger started after this call has finished (the worker sets
    /// `last_trigger_at` to the start of a trigger once it is over). Calls `ingest_trigger()`.
    pub fn full_trigger(&mut self) {
        let t0 = self.now_us();
        self.trigger();
        self.wait_for(
            "a complete trigger after ingest_trigger()",
            Duration::from_secs(30),
            |c| c.status().last_trigger_at.is_some_and(|t| t > t0),
        );
    }

    /// Two complete triggers, then the caller checks that nothing else arrived.
    pub fn settle(&mut self) {
        self.full_trigger();
        std::thread::sleep(Duration::from_millis(300));
        self.full_trigger();
    }

    /// Waits until every file named is `done` in `ingest_files`.
    pub fn wait_files_done(&mut self, n: i64, timeout: Duration) -> Duration {
        self.wait_for(&format!("{n} files done in ingest_files"), timeout, |c| {
            c.int("SELECT count(*) FROM ingest_files WHERE status = 'done'") >= n
        })
    }

    pub fn worker_pid(&mut self) -> Option<i32> {
        let r = self
            .client()
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'ecommerce_ingest'",
                &[],
            )
            .expect("pg_stat_activity");
        r.map(|r| r.get(0))
    }

    /// Waits for the worker process to appear; returns its pid.
    pub fn wait_worker(&mut self) -> i32 {
        let mut pid = 0;
        self.wait_for("the worker process", Duration::from_secs(30), |c| {
            pid = c.worker_pid().unwrap_or(0);
            pid != 0
        });
        pid
    }

    /// SIGKILLs the worker. The postmaster then restarts every process (crash recovery): waits
    /// until connections are accepted again, reconnects, and waits for a new worker.
    pub fn kill_worker(&mut self) {
        let pid = self.wait_worker();
        let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill -9 {pid}: {}", std::io::Error::last_os_error());
        // Our own backend is terminated by the crash restart: wait for that first.
        let start = Instant::now();
        while self.client().simple_query("SELECT 1").is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the postmaster did not restart after the worker was killed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.client = None;
        self.client = Some(self.connect_retry("postgres", Duration::from_secs(60)));
        let mut new_pid = 0;
        self.wait_for("a new worker after SIGKILL", Duration::from_secs(30), |c| {
            new_pid = c.worker_pid().unwrap_or(0);
            new_pid != 0 && new_pid != pid
        });
        println!("killed worker {pid}; new worker {new_pid}");
    }

    /// `pg_ctl stop -m MODE` and start again with the same configuration; reconnects.
    pub fn restart(&mut self, mode: &str) {
        self.pg_stop(mode);
        self.pg_start();
    }

    /// `pg_ctl stop -m MODE` only (see [`Cluster::start_again`]).
    pub fn stop(&mut self, mode: &str) {
        self.pg_stop(mode);
    }

    /// Starts a stopped cluster again with the same configuration; reconnects.
    pub fn start_again(&mut self) {
        self.pg_start();
    }

    /// `ALTER SYSTEM SET name = value` for each pair, then `pg_reload_conf()`.
    pub fn reload(&mut self, settings: &[(&str, &str)]) {
        for (name, value) in settings {
            self.execute(&format!("ALTER SYSTEM SET {name} = {}", lit(value)));
        }
        self.execute("SELECT pg_reload_conf()");
    }

    /// Forgets [`ClusterOptions::library_dir`]: from the next start on, the server loads the
    /// library installed in `$libdir`. Call it while the cluster is stopped (see
    /// [`Cluster::stop`], [`Cluster::start_again`]): a running server keeps the library it
    /// loaded.
    pub fn use_installed_library(&mut self) {
        self.remove_conf_lines(LIBRARY_PATH_SETTING);
    }

    /// The files of the `ecommerce_ingest` library mapped by process `pid` (from
    /// `/proc/<pid>/maps`): which copy a server process really runs.
    pub fn mapped_libraries(pid: i32) -> Vec<PathBuf> {
        let maps = fs::read_to_string(format!("/proc/{pid}/maps"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/maps: {e}"));
        let mut out: Vec<PathBuf> = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .filter(|p| p.ends_with("/ecommerce_ingest.so"))
            .map(PathBuf::from)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Removes every line starting with `prefix` from the conf file the script wrote (and from
    /// the lines used at the next restart). Call `SELECT pg_reload_conf()` afterwards.
    pub fn remove_conf_lines(&mut self, prefix: &str) {
        self.conf.retain(|l| !l.starts_with(prefix));
        let path = self.data.join("ecommerce_ingest.conf");
        let text = fs::read_to_string(&path).expect("read ecommerce_ingest.conf");
        let kept: String = text
            .lines()
            .filter(|l| !l.starts_with(prefix))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&path, kept).expect("write ecommerce_ingest.conf");
    }

    pub fn server_log(&self) -> String {
        fs::read(self.data.join("server.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.server_log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Writes `.name.tmp` in the input folder, then renames it to `name`.
    pub fn write_file_atomic(&self, name: &str, bytes: &[u8]) -> PathBuf {
        write_atomic(&self.input, name, bytes)
    }

    /// Every row of `user_events`, in [`EventRow`] form, sorted.
    pub fn stored_rows(&mut self) -> Vec<EventRow> {
        let rows = self.client().query(EVENTS_QUERY, &[]).expect("user_events");
        let mut out: Vec<EventRow> = rows.iter().map(EventRow::from_row).collect();
        out.sort();
        out
    }

    /// Every reject, sorted.
    pub fn stored_rejects(&mut self) -> Vec<RejectRow> {
        let rows = self
            .client()
            .query(
                "SELECT file_name, line_number, column_name FROM ingest_rejects",
                &[],
            )
            .expect("ingest_rejects");
        let mut out: Vec<RejectRow> = rows
            .iter()
            .map(|r| RejectRow {
                file: r.get(0),
                line: r.get(1),
                column: r.get(2),
            })
            .collect();
        out.sort();
        out
    }

    pub fn duplicates(&mut self) -> Vec<(String, i64, i64)> {
        self.client()
            .query(DUPLICATES_QUERY, &[])
            .expect("duplicates query")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    /// No duplicates, and exactly the expected rows with the expected values.
    pub fn assert_exact_rows(&mut self, expected: &[EventRow]) {
        let dups = self.duplicates();
        assert!(
            dups.is_empty(),
            "{} duplicated (file, line) pairs, e.g. {:?}",
            dups.len(),
            &dups[..dups.len().min(5)]
        );
        let got = self.stored_rows();
        assert_same_rows(expected, &got);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- server.log of {} (tail) ---\n{}",
                self.data.display(),
                self.log_tail(80)
            );
        }
        self.client = None;
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.data)
            .arg("immediate")
            .output();
        if std::env::var_os("E2E_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// The text of a database error: message, detail and hint.
pub fn db_error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => {
            let mut s = format!("{}: {}", d.severity(), d.message());
            if let Some(x) = d.detail() {
                let _ = write!(s, " DETAIL: {x}");
            }
            if let Some(x) = d.hint() {
                let _ = write!(s, " HINT: {x}");
            }
            s
        }
        None => e.to_string(),
    }
}

/// Writes `dir/.name.tmp` (mode 0644), then renames it to `dir/name`.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(name);
    let mut f = fs::File::create(&tmp).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
    fs::rename(&tmp, &dst).unwrap_or_else(|e| panic!("rename to {}: {e}", dst.display()));
    dst
}

/// Compares two sorted row lists; on a difference shows the first few mismatches.
pub fn assert_same_rows(expected: &[EventRow], got: &[EventRow]) {
    if expected == got {
        return;
    }
    let mut msg = format!(
        "user_events differs from the files: expected {} rows, found {}\n",
        expected.len(),
        got.len()
    );
    let mut shown = 0;
    let (mut i, mut j) = (0, 0);
    while (i < expected.len() || j < got.len()) && shown < 10 {
        match (expected.get(i), got.get(j)) {
            (Some(e), Some(g)) if e == g => {
                i += 1;
                j += 1;
            }
            (Some(e), Some(g)) if (&e.file, e.line) == (&g.file, g.line) => {
                let _ = writeln!(msg, "  different values:\n    file: {e:?}\n    db:   {g:?}");
                shown += 1;
                i += 1;
                j += 1;
            }
            (Some(e), Some(g)) if (&e.file, e.line) < (&g.file, g.line) => {
                let _ = writeln!(msg, "  missing: {e:?}");
                shown += 1;
                i += 1;
            }
            (Some(_), Some(g)) => {
                let _ = writeln!(msg, "  extra: {g:?}");
                shown += 1;
                j += 1;
            }
            (Some(e), None) => {
                let _ = writeln!(msg, "  missing: {e:?}");
                shown += 1;
                i += 1;
            }
            (None, Some(g)) => {
                let _ = writeln!(msg, "  extra: {g:?}");
                shown += 1;
                j += 1;
            }
            (None, None) => break,
        }
    }
    panic!("{msg}");
}

/// Parses files with the contract's own reader: their valid rows and their rejects. `paths`
/// may name files or folders (every regular, non-hidden file directly inside is read).
/// What a file named `name` holding `bytes` must give, read from a copy outside any input
/// folder: computed before the file is dropped, so the worker's clock starts only once the
/// test is ready to watch it.
pub fn expected_of(name: &str, bytes: &[u8]) -> Expected {
    let staging = tempfile::tempdir().expect("a staging folder");
    expected_rows(&[write_atomic(staging.path(), name, bytes)])
}

pub fn expected_rows<P: AsRef<Path>>(paths: &[P]) -> Expected {
    let mut files = Vec::new();
    for p in paths {
        let p = p.as_ref();
        if p.is_dir() {
            for e in fs::read_dir(p).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().unwrap().is_file() && !ecommerce_events::is_temporary_name(&name) {
                    files.push(e.path());
                }
            }
        } else {
            files.push(p.to_path_buf());
        }
    }
    let mut out = Expected::default();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut r =
            EventReader::open(&path, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        while let Some(rec) = r
            .next_record()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        {
            match rec.outcome {
                Outcome::Valid(v) => out.rows.push(EventRow {
                    file: name.clone(),
                    line: rec.line as i64,
                    user_id: v.user_id.into(),
                    event_type: v.event_type.as_str().into(),
                    product_id: v.product_id.into(),
                    product_name: v.product_name.into(),
                    product_category: v.product_category.into(),
                    price: v.price.to_string(),
                    ts_us: v.event_timestamp_us,
                    session_id: v.session_id.into(),
                    device_type: v.device_type.as_str().into(),
                }),
                Outcome::Rejected { error, .. } => out.rejects.push(RejectRow {
                    file: name.clone(),
                    line: rec.line as i64,
                    column: error.column.map(str::to_string),
                }),
            }
        }
    }
    out.rows.sort();
    out.rejects.sort();
    out
}

const NAMES: [&str; 6] = [
    "USB-C Cable",
    "Widget, \"Deluxe\" edition",
    "Café crème mug",
    "Laptop Stand",
    "Noise-cancelling Headphones, 2nd gen",
    "Plain \"quoted\" thing",
];
const CATEGORIES: [&str; 4] = ["Electronics", "Home & Kitchen", "Books", "Sports"];
const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One deterministic, valid CSV row (no line terminator) for file `seed`, row `i`. Varies
/// quoting, price forms and timestamp forms (Z, no offset, +02:00, space separator, fractions).
pub fn gen_row(seed: u64, i: u64) -> String {
    let x = seed
        .wrapping_mul(1_000_003)
        .wrapping_add(i.wrapping_mul(7919));
    let day = seed % 28 + 1;
    let secs = (i * 37 + seed * 11) % 86_400;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let ts = match i % 4 {
        0 => format!("2024-05-{day:02}T{h:02}:{m:02}:{s:02}Z"),
        1 => format!("2024-05-{day:02} {h:02}:{m:02}:{s:02}.{:06}", x % 1_000_000),
        2 => format!(
            "2024-05-{day:02}T{:02}:{m:02}:{s:02}.{:03}+02:00",
            (h + 2) % 24,
            x % 1000
        ),
        _ => format!("2024-05-{day:02}T{h:02}:{m:02}:{s:02}"),
    };
    // `(h + 2) % 24` with +02:00 may land on the previous day in UTC: still a valid timestamp.
    let price = match i % 5 {
        0 => format!("{}.{:02}", x % 1000, x % 100),
        1 => format!("{}", x % 500),
        2 => format!("{}.{}", x % 300, x % 10),
        3 => format!("0.{:02}", x % 100),
        _ => format!("{}.99", x % 99_999_999),
    };
    [
        format!("user_{}", x % 1000),
        (if x.is_multiple_of(3) {
            "purchase"
        } else {
            "view"
        })
        .to_string(),
        format!("prod_{:04}", x % 5000),
        csv_field(NAMES[(x % 6) as usize]),
        csv_field(CATEGORIES[(x % 4) as usize]),
        price,
        ts,
        format!("sess_{seed}_{}", i / 10),
        DEVICES[(x % 3) as usize].to_string(),
    ]
    .join(",")
}

/// A whole file: the header and `rows` rows from [`gen_row`], LF-terminated.
pub fn gen_file(seed: u64, rows: u64) -> Vec<u8> {
    let mut s = ecommerce_events::header_line();
    s.push('\n');
    for i in 0..rows {
        s.push_str(&gen_row(seed, i));
        s.push('\n');
    }
    s.into_bytes()
}

/// Runs the feeder binary with `args`; panics with its output if it fails or is missing.
pub fn run_feeder(args: &[&str]) {
    let bin = feeder_bin();
    assert!(
        bin.exists(),
        "the feeder binary {} does not exist (build it with `cargo build -p feeder` or set FEEDER_BIN)",
        bin.display()
    );
    run(Command::new(&bin).args(args));
}

/// Expects `r` to be a database error; returns its text.
pub fn expect_db_error<T: std::fmt::Debug>(r: Result<T, postgres::Error>, what: &str) -> String {
    match r {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => db_error_text(&e),
    }
}

/// A small deterministic random generator (SplitMix64) for kill moments and the like.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The seed of a randomised test: `E2E_SEED` if set, else from the clock. Printed, so that a
/// failing run can be repeated with `E2E_SEED=<seed>`.
pub fn test_seed(test: &str) -> u64 {
    let seed = match std::env::var("E2E_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("E2E_SEED must be an unsigned integer, not {s:?}")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    };
    println!("{test}: seed {seed} (repeat with E2E_SEED={seed})");
    seed
}

/// Checks the exactly-once bookkeeping as committed at this moment, file by file: the ledger's
/// row and reject counts equal what `user_events` and `ingest_rejected` hold, nothing lies at or
/// beyond the committed line, the chunks add up to the ledger and are contiguous, and no
/// (file, line) is stored twice. Returns one line per problem (empty: all consistent).
pub fn ledger_problems(client: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    let q = "WITH e AS (SELECT source_file AS f, count(*) AS n, max(source_line) AS m
                        FROM user_events_with_source GROUP BY 1),
                  r AS (SELECT file_name AS f, count(*) AS n, max(line_number) AS m
                        FROM ingest_rejected GROUP BY 1),
                  k AS (SELECT file_name AS f, count(*) AS n, sum(rows_ok)::int8 AS ok,
                               sum(rows_rejected)::int8 AS rej
                        FROM ingest_chunks GROUP BY 1)
             SELECT format('%s: ledger status %s rows_ok %s rows_rejected %s chunks %s committed_line %s; \
                            user_events %s rows (max line %s); rejects %s (max line %s); chunk rows %s/%s in %s chunks',
                           coalesce(l.file_name, e.f, r.f), l.status, l.rows_ok, l.rows_rejected, l.chunks,
                           l.committed_line, e.n, e.m, r.n, r.m, k.ok, k.rej, k.n)
               FROM ingest_ledger l
               FULL JOIN e ON e.f = l.file_name
               FULL JOIN r ON r.f = coalesce(l.file_name, e.f)
               LEFT JOIN k ON k.f = l.file_name
              WHERE coalesce(l.rows_ok, 0) <> coalesce(e.n, 0)
                 OR coalesce(l.rows_rejected, 0) <> coalesce(r.n, 0)
                 OR e.m >= l.committed_line OR r.m >= l.committed_line
                 OR coalesce(k.ok, 0) <> coalesce(l.rows_ok, 0)
                 OR coalesce(k.rej, 0) <> coalesce(l.rows_rejected, 0)
                 OR coalesce(k.n, 0) <> coalesce(l.chunks, 0)";
    for r in client.query(q, &[]).expect("ledger consistency query") {
        out.push(r.get::<_, String>(0));
    }
    let q = "SELECT format('%s: chunk %s starts at %s (line %s) but the previous ended at %s (line %s)',
                           file_name, chunk_no, start_offset, first_line, prev_end, prev_line + 1)
               FROM (SELECT *, lag(end_offset) OVER w AS prev_end, lag(last_line) OVER w AS prev_line,
                            lag(chunk_no) OVER w AS prev_no
                       FROM ingest_chunks WINDOW w AS (PARTITION BY file_name ORDER BY chunk_no)) c
              WHERE prev_no IS NOT NULL
                AND (prev_no <> chunk_no - 1 OR start_offset <> prev_end OR first_line <= prev_line)";
    for r in client.query(q, &[]).expect("chunk contiguity query") {
        out.push(r.get::<_, String>(0));
    }
    for r in client
        .query(DUPLICATES_QUERY, &[])
        .expect("duplicates query")
    {
        out.push(format!(
            "{}: line {} stored {} times",
            r.get::<_, String>(0),
            r.get::<_, i64>(1),
            r.get::<_, i64>(2)
        ));
    }
    out
}

/// Copies `src` into `dir` under `name` the way a producer should: a temporary name, then a
/// rename (see [`write_atomic`]).
pub fn copy_in_atomic(dir: &Path, name: &str, src: &Path) -> PathBuf {
    let bytes = fs::read(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    write_atomic(dir, name, &bytes)
}

/// The regular, non-temporary files directly inside `dir`, sorted by name.
pub fn data_files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !ecommerce_events::is_temporary_name(n))
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// One query per kind of object, each row `(object, field, value)`. `$1` is the extension's
/// name. Members are the objects `pg_depend` ties to the extension (deptype `e`); relations
/// also count the indexes of member tables, the sequences they own and the row types of
/// member composite types. Privileges are sorted `aclitem`s, so that the order of GRANTs does
/// not matter; OIDs never appear, names do.
const CATALOG_QUERIES: [&str; 9] = [
    // The extension itself and the tables pg_dump keeps (pg_extension_config_dump).
    "SELECT 'extension ' || e.extname, 'schema, relocatable',
            concat_ws(', ', e.extnamespace::regnamespace, e.extrelocatable)
       FROM pg_extension e WHERE e.extname = $1
     UNION ALL
     SELECT 'extension ' || e.extname, 'config dump of ' || c.cfg::regclass::text,
            coalesce(e.extcondition[c.n], 'NULL')
       FROM pg_extension e, unnest(e.extconfig) WITH ORDINALITY AS c(cfg, n)
      WHERE e.extname = $1",
    // Every member, whatever its kind (operators, casts, ...: at least they exist).
    "SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid), 'member', 'yes'
       FROM pg_depend d JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass
                                           AND d.refobjid = e.oid
      WHERE d.deptype = 'e' AND e.extname = $1",
    // Functions and procedures.
    "WITH f AS (
        SELECT p.* , p.oid AS poid FROM pg_proc p
          JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1)
     SELECT 'function ' || poid::regprocedure::text, x.field, coalesce(x.value, 'NULL')
       FROM f, LATERAL (VALUES
         ('arguments', pg_get_function_arguments(poid)),
         ('result', pg_get_function_result(poid)),
         ('kind, volatility, strict, parallel, leakproof, returns set',
          concat_ws(', ', prokind, provolatile, proisstrict, proparallel, proleakproof, proretset)),
         ('security definer', prosecdef::text),
         ('config', proconfig::text),
         ('language, library, symbol',
          concat_ws(', ', (SELECT lanname FROM pg_language WHERE oid = prolang), coalesce(probin, '-'),
                    CASE WHEN probin IS NULL THEN md5(prosrc) ELSE prosrc END)),
         ('cost, rows', concat_ws(', ', procost, prorows)),
         ('owner', proowner::regrole::text),
         ('privileges', (SELECT string_agg(a::text, ' ' ORDER BY a::text) FROM unnest(proacl) a)),
         ('comment', obj_description(poid, 'pg_proc')),
         ('definition', CASE WHEN prokind IN ('f', 'p') THEN pg_get_functiondef(poid) END)
       ) AS x(field, value)",
    // Relations: tables, views, sequences, indexes, composite types.
    "WITH member_rel AS (
        SELECT d.objid AS oid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
           AND d.deptype = 'e' AND e.extname = $1
        UNION SELECT t.typrelid FROM pg_type t
          JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1
         WHERE t.typrelid <> 0),
     rel AS (
        SELECT oid FROM member_rel
        UNION SELECT i.indexrelid FROM pg_index i JOIN member_rel m ON m.oid = i.indrelid
        UNION SELECT d.objid FROM pg_depend d JOIN member_rel m ON m.oid = d.refobjid
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.deptype IN ('a', 'i') AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S')
     SELECT 'relation ' || c.oid::regclass::text, x.field, coalesce(x.value, 'NULL')
       FROM rel JOIN pg_class c ON c.oid = rel.oid, LATERAL (VALUES
         ('kind, persistence', concat_ws(', ', c.relkind, c.relpersistence)),
         ('owner', c.relowner::regrole::text),
         ('privileges', (SELECT string_agg(a::text, ' ' ORDER BY a::text) FROM unnest(c.relacl) a)),
         ('options', (SELECT string_agg(o, ', ' ORDER BY o) FROM unnest(c.reloptions) o)),
         ('row security, forced, replica identity',
          concat_ws(', ', c.relrowsecurity, c.relforcerowsecurity, c.relreplident)),
         ('comment', obj_description(c.oid, 'pg_class')),
         ('index', CASE WHEN c.relkind = 'i' THEN pg_get_indexdef(c.oid) END),
         ('view', CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid, true) END),
         ('sequence', (SELECT concat_ws(' ', format_type(s.seqtypid, NULL), 'start', s.seqstart,
                                        'increment', s.seqincrement, 'min', s.seqmin, 'max', s.seqmax,
                                        'cache', s.seqcache, 'cycle', s.seqcycle)
                         FROM pg_sequence s WHERE s.seqrelid = c.oid)),
         ('owned by', (SELECT string_agg(format('%s.%s (%s)', d.refobjid::regclass, a.attname, d.deptype), ', ')
                         FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                          AND c.relkind = 'S'))
       ) AS x(field, value)
      WHERE x.value IS NOT NULL OR x.field IN ('privileges', 'comment')",
    // Columns, with their position among the live columns (an added column comes last).
    "WITH rel AS (
        SELECT d.objid AS oid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
           AND d.deptype = 'e' AND e.extname = $1
        UNION SELECT t.typrelid FROM pg_type t
          JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1
         WHERE t.typrelid <> 0),
     col AS (
        SELECT a.*, row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) AS position
          FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
          JOIN pg_class c ON c.oid = a.attrelid
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind <> 'S')
     SELECT 'column ' || attrelid::regclass::text || '.' || quote_ident(attname), x.field,
            coalesce(x.value, 'NULL')
       FROM col, LATERAL (VALUES
         ('position', position::text),
         ('type', format_type(atttypid, atttypmod)
                  || CASE WHEN attcollation <> 0 AND attcollation <> (SELECT typcollation FROM pg_type WHERE oid = atttypid)
                          THEN ' COLLATE ' || attcollation::regcollation::text ELSE '' END),
         ('not null', attnotnull::text),
         ('default', (SELECT pg_get_expr(ad.adbin, ad.adrelid) FROM pg_attrdef ad
                       WHERE ad.adrelid = attrelid AND ad.adnum = attnum)),
         ('identity, generated', concat_ws(', ', quote_literal(attidentity::text), quote_literal(attgenerated::text))),
         ('privileges', (SELECT string_agg(a::text, ' ' ORDER BY a::text) FROM unnest(attacl) a)),
         ('comment', col_description(attrelid, attnum))
       ) AS x(field, value)",
    // Constraints of member tables and domains.
    "SELECT 'constraint ' || coalesce(c.conrelid::regclass::text, c.contypid::regtype::text) || '.'
            || quote_ident(c.conname), x.field, coalesce(x.value, 'NULL')
       FROM pg_constraint c
       JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
                       AND ((d.classid = 'pg_class'::regclass AND d.objid = c.conrelid)
                         OR (d.classid = 'pg_type'::regclass AND d.objid = c.contypid))
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1,
       LATERAL (VALUES
         ('definition', pg_get_constraintdef(c.oid)),
         ('deferrable, deferred, validated, no inherit',
          concat_ws(', ', c.condeferrable, c.condeferred, c.convalidated, c.connoinherit)),
         ('index', c.conindid::regclass::text),
         ('comment', obj_description(c.oid, 'pg_constraint'))
       ) AS x(field, value)
      WHERE x.field <> 'index' OR c.conindid <> 0",
    // Triggers and row-level security policies on member tables.
    "SELECT 'trigger ' || t.tgrelid::regclass::text || '.' || quote_ident(t.tgname), 'definition',
            format('%s (enabled %s)', pg_get_triggerdef(t.oid), t.tgenabled)
       FROM pg_trigger t
       JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = t.tgrelid
                       AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1
      WHERE NOT t.tgisinternal
     UNION ALL
     SELECT 'policy ' || p.polrelid::regclass::text || '.' || quote_ident(p.polname), 'definition',
            concat_ws(' ', p.polcmd, p.polpermissive,
                      (SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END, ',' ORDER BY 1)
                         FROM unnest(p.polroles) r),
                      pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
       FROM pg_policy p
       JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = p.polrelid
                       AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1",
    // Types (enums, domains, composites, base types).
    "SELECT 'type ' || t.oid::regtype::text, x.field, coalesce(x.value, 'NULL')
       FROM pg_type t
       JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = t.oid
                       AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1,
       LATERAL (VALUES
         ('kind', t.typtype::text),
         ('labels', (SELECT string_agg(quote_literal(enumlabel), ', ' ORDER BY enumsortorder)
                       FROM pg_enum WHERE enumtypid = t.oid)),
         ('base type, not null, default', CASE WHEN t.typtype = 'd' THEN
             concat_ws(', ', format_type(t.typbasetype, t.typtypmod), t.typnotnull,
                       coalesce(t.typdefault, 'NULL')) END),
         ('owner', t.typowner::regrole::text),
         ('privileges', (SELECT string_agg(a::text, ' ' ORDER BY a::text) FROM unnest(t.typacl) a)),
         ('comment', obj_description(t.oid, 'pg_type'))
       ) AS x(field, value)",
    // Event triggers.
    "SELECT 'event trigger ' || quote_ident(t.evtname), 'definition',
            concat_ws(' ', t.evtevent, t.evtfoid::regproc::text, t.evttags::text, t.evtenabled)
       FROM pg_event_trigger t
       JOIN pg_depend d ON d.classid = 'pg_event_trigger'::regclass AND d.objid = t.oid
                       AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = $1",
];

/// A description of the SQL objects of extension `extname` in the database `client` is
/// connected to, one entry per (object, field): members, functions (arguments, result,
/// volatility, SECURITY DEFINER, SET options, library symbol, privileges, full definition),
/// tables, views, sequences and indexes (definition, options, privileges, comments), columns
/// (position, type, NOT NULL, default, identity, privileges), constraints, triggers, policies,
/// types, event triggers, and the tables registered for pg_dump. Two databases whose
/// descriptions are equal have the same extension objects; see [`assert_same_catalog`].
pub fn extension_catalog(
    client: &mut Client,
    extname: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for q in CATALOG_QUERIES {
        let rows = client
            .query(q, &[&extname])
            .unwrap_or_else(|e| panic!("catalog query failed: {}\n{q}", db_error_text(&e)));
        for r in rows {
            let key = format!("{} | {}", r.get::<_, String>(0), r.get::<_, String>(1));
            let value: String = r.get(2);
            if let Some(old) = out.insert(key.clone(), value) {
                panic!("catalog entry {key} twice (first {old:?})");
            }
        }
    }
    assert!(
        !out.is_empty(),
        "extension {extname} not found (no catalog entries)"
    );
    out
}

/// Fails, listing every difference, unless the two descriptions from [`extension_catalog`]
/// are equal. `a_name` and `b_name` say where each comes from ("after the update", "in a fresh
/// install"). An object found on one side only is shown once, with its fields.
pub fn assert_same_catalog(
    a_name: &str,
    a: &std::collections::BTreeMap<String, String>,
    b_name: &str,
    b: &std::collections::BTreeMap<String, String>,
) {
    use std::collections::{BTreeMap, BTreeSet};
    fn indent(v: &str) -> String {
        v.trim_end().replace('\n', "\n          ")
    }
    // object -> field -> value
    fn by_object(m: &BTreeMap<String, String>) -> BTreeMap<&str, BTreeMap<&str, &str>> {
        let mut out: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
        for (k, v) in m {
            let (object, field) = k.split_once(" | ").unwrap_or((k, ""));
            out.entry(object).or_default().insert(field, v);
        }
        out
    }
    let (oa, ob) = (by_object(a), by_object(b));
    let empty = BTreeMap::new();
    let mut diff = String::new();
    let mut n = 0;
    let objects: BTreeSet<&str> = oa.keys().chain(ob.keys()).copied().collect();
    for object in objects {
        let (fa, fb) = (
            oa.get(object).unwrap_or(&empty),
            ob.get(object).unwrap_or(&empty),
        );
        if fa == fb {
            continue;
        }
        n += 1;
        if fa.is_empty() || fb.is_empty() {
            let (side, fields) = if fa.is_empty() {
                (b_name, fb)
            } else {
                (a_name, fa)
            };
            let _ = writeln!(diff, "  only {side}: {object}");
            for (field, value) in fields.iter().filter(|(_, v)| **v != "NULL") {
                let _ = writeln!(diff, "      {field}: {}", indent(value));
            }
            continue;
        }
        let fields: BTreeSet<&str> = fa.keys().chain(fb.keys()).copied().collect();
        for field in fields {
            let (x, y) = (fa.get(field), fb.get(field));
            if x != y {
                let _ = writeln!(
                    diff,
                    "  differs: {object} | {field}\n    {a_name}:\n          {}\n    {b_name}:\n          {}",
                    indent(x.unwrap_or(&"(absent)")),
                    indent(y.unwrap_or(&"(absent)"))
                );
            }
        }
    }
    assert!(
        n == 0,
        "the extension's SQL objects {a_name} differ from those {b_name} ({n} objects differ):\n{diff}"
    );
}
