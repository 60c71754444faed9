//! The worker seen through SQL: `ingest_status()`, triggers, waiting for a condition, the
//! worker's process (waiting for it, killing it).

use crate::cluster::Cluster;
use crate::sql::db_error_text;
use std::time::{Duration, Instant};

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

impl Cluster {
    pub fn event_count(&mut self) -> i64 {
        self.int("SELECT count(*) FROM user_events")
    }

    /// A file's status in `ingest_files` (`None`: the ledger does not know it).
    pub fn file_status(&mut self, file: &str) -> Option<String> {
        self.client()
            .query_opt(
                "SELECT status FROM ingest_files WHERE file_name = $1",
                &[&file],
            )
            .unwrap()
            .map(|r| r.get(0))
    }

    /// Now, by the server's clock, in Unix microseconds.
    pub fn now_us(&mut self) -> i64 {
        self.int("SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::int8")
    }

    /// The events pipeline's status (the first row of `ingest_status()`, in every version).
    pub fn try_status(&mut self) -> Result<Status, postgres::Error> {
        let r = self.client().query_one(
            "SELECT state, paused, worker_pid, database, input_dir, trigger_interval,
                    files_ingested, files_failed, files_pending, rows_ingested, rows_rejected,
                    (extract(epoch FROM last_trigger_at) * 1e6)::int8, lag_seconds, last_error, detail
               FROM ingest_status() LIMIT 1",
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

    /// Reads `f` every `every` until two readings in a row are equal (e.g. a chunk in flight
    /// when a pause came has committed); returns that value.
    pub fn wait_steady<T: PartialEq>(
        &mut self,
        every: Duration,
        mut f: impl FnMut(&mut Cluster) -> T,
    ) -> T {
        let mut last = f(self);
        loop {
            std::thread::sleep(every);
            let now = f(self);
            if now == last {
                return now;
            }
            last = now;
        }
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
        self.crash_process(pid);
        let mut new_pid = 0;
        self.wait_for("a new worker after SIGKILL", Duration::from_secs(30), |c| {
            new_pid = c.worker_pid().unwrap_or(0);
            new_pid != 0 && new_pid != pid
        });
        println!("killed worker {pid}; new worker {new_pid}");
    }

    /// SIGKILLs server process `pid` (any backend or worker: the postmaster then restarts every
    /// process, as after a crash); waits until our own connection is gone and connections are
    /// accepted again, and reconnects.
    pub fn crash_process(&mut self, pid: i32) {
        let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill -9 {pid}: {}", std::io::Error::last_os_error());
        // Our own backend is terminated by the crash restart: wait for that first.
        let start = Instant::now();
        while self.client().simple_query("SELECT 1").is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the postmaster did not restart after process {pid} was killed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.client = None;
        self.client = Some(self.connect_retry("postgres", Duration::from_secs(60)));
    }
}
