//! The private PostgreSQL 15 cluster of a test: options, start, stop and restart, its
//! configuration, connections and simple queries, and its server log.

use crate::generate::write_atomic;
use crate::repo::{repo_root, run};
use crate::sql::{db_error_text, lit};
use postgres::{Client, NoTls};
use std::fs;
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
    /// release, see [`previous_release`](crate::previous_release)). The file is copied into
    /// the cluster's own folder (readable by the server's OS user, and safe from a rebuild
    /// while the server has it mapped) and named first in `dynamic_library_path`. Both
    /// `shared_preload_libraries` and the functions' `module_pathname` say `ecommerce_ingest`,
    /// without a directory, so both resolve through that path.
    /// [`Cluster::use_installed_library`] removes the line. Default: `$E2E_LIBRARY_DIR` if
    /// set (to try a library built from a work tree without installing it, e.g.
    /// `E2E_LIBRARY_DIR=$CARGO_TARGET_DIR/release`), else `None`.
    pub library_dir: Option<PathBuf>,
    /// The cluster's own folder (it holds `data/`, `in/` and, with `library_dir`, `lib/`).
    /// `None`: a fresh `/tmp/e2e-<pid>-<n>`, removed when the cluster is dropped (unless
    /// `E2E_KEEP` is set). `Some(dir)`: `dir`, created if missing and left in place when the
    /// cluster is dropped: it belongs to the caller (the benchmark's `.bench/<experiment>/`).
    pub root: Option<PathBuf>,
    /// The loopback port. `None`: a free one, picked by the system.
    pub port: Option<u16>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            extra_conf: Vec::new(),
            preload: true,
            create_extension: true,
            extension_version: None,
            library_dir: std::env::var_os("E2E_LIBRARY_DIR").map(PathBuf::from),
            root: None,
            port: None,
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

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().unwrap().port()
}

/// The setting [`ClusterOptions::library_dir`] writes.
const LIBRARY_PATH_SETTING: &str = "dynamic_library_path";

pub struct Cluster {
    root: PathBuf,
    data: PathBuf,
    input: PathBuf,
    port: u16,
    conf: Vec<String>,
    /// The harness's own connection (as postgres, to database postgres); `None` while stopped.
    pub(crate) client: Option<Client>,
    /// Whether dropping the cluster removes `root` (a folder the harness made itself).
    remove_root: bool,
}

fn script() -> PathBuf {
    repo_root().join("scripts/cluster.sh")
}

impl Cluster {
    pub fn start(opts: ClusterOptions) -> Cluster {
        let remove_root = opts.root.is_none();
        let root = match opts.root {
            Some(dir) => dir,
            None => {
                let n = SEQ.fetch_add(1, Ordering::SeqCst);
                let root = PathBuf::from(format!("/tmp/e2e-{}-{n}", std::process::id()));
                let _ = fs::remove_dir_all(&root);
                root
            }
        };
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
            port: opts.port.unwrap_or_else(free_port),
            conf,
            client: None,
            remove_root,
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

    /// A hot standby of this cluster: a base backup of it, streaming from it, started with the
    /// same settings and reading the same input folder (the folder is shared, as with a
    /// network file system both servers mount).
    pub fn start_standby(&self) -> Cluster {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let root = PathBuf::from(format!("/tmp/e2e-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        postgres_folder(&root);
        let data = root.join("data");
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg("/usr/lib/postgresql/15/bin/pg_basebackup")
            .arg("-D")
            .arg(&data)
            // A fast checkpoint: a spread one would take half of checkpoint_timeout.
            .args([
                "-c",
                "fast",
                "-R",
                "-X",
                "stream",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-p",
            ])
            .arg(self.port.to_string())
            .output()
            .expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut c = Cluster {
            root,
            data,
            input: self.input.clone(),
            port: free_port(),
            conf: self.conf.clone(),
            client: None,
            remove_root: true,
        };
        c.pg_start();
        c
    }

    /// Promotes this hot standby (waits until it accepts writes).
    pub fn promote(&mut self) {
        self.execute("SELECT pg_promote(true, 60)");
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

    pub(crate) fn connect_retry(&self, user: &str, timeout: Duration) -> Client {
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
}

impl Cluster {
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
    /// Table `t (id int)` and a CSV pipeline `name` into it, from folder `<root>/<name>` (owned
    /// by postgres) with `options` (JSON); returns the folder.
    pub fn pipeline_into_t(&mut self, name: &str, options: &str) -> PathBuf {
        let dir = self.root_dir().join(name);
        crate::postgres_folder(&dir);
        self.execute("CREATE TABLE t (id int)");
        self.execute(&format!(
            "SELECT ingest_create_pipeline({}, {}, 't', 'csv', {})",
            crate::lit(name),
            crate::lit(&dir.display().to_string()),
            crate::lit(options)
        ));
        dir
    }

    pub fn write_file_atomic(&self, name: &str, bytes: &[u8]) -> PathBuf {
        write_atomic(&self.input, name, bytes)
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
        if self.remove_root && std::env::var_os("E2E_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// Creates `dir` (and its parents) owned by the `postgres` OS user, as a pipeline's folder the
/// server can read and move files out of.
pub fn postgres_folder(dir: &Path) {
    fs::create_dir_all(dir).expect("create folder");
    let uid = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u32>().ok());
    if let Some(uid) = uid {
        std::os::unix::fs::chown(dir, Some(uid), None).expect("chown folder");
    }
}
