//! A server dying on purpose: its postmaster SIGKILLed (as the OOM killer would), and coming
//! back after a crash that it may not recover from by itself (a PANIC on a full disk).

use crate::cluster::Cluster;
use std::fs;
use std::time::{Duration, Instant};

impl Cluster {
    /// The postmaster's pid (the first line of `postmaster.pid`).
    pub fn postmaster_pid(&self) -> i32 {
        let path = self.data_dir().join("postmaster.pid");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: no pid on its first line", path.display()))
    }

    /// SIGKILLs the postmaster, as the OOM killer would: nothing is shut down, its children
    /// notice on their own that it is gone and exit. Waits until the postmaster has exited
    /// (not its children). [`Cluster::start_again`] starts the server again.
    pub fn kill_postmaster(&mut self) {
        let pid = self.postmaster_pid();
        self.client = None;
        // SAFETY: sends a signal; no memory is touched.
        let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill -9 {pid}: {}", std::io::Error::last_os_error());
        let start = Instant::now();
        while process_alive(pid) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the postmaster {pid} is still there 30 s after SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// After the server crashed (a PANIC): waits until it accepts connections again (its crash
    /// recovery finished) or its postmaster exited (it does when recovery cannot finish: say,
    /// still no disk space); in that case starts it again. Reconnects.
    pub fn recover_after_crash(&mut self, timeout: Duration) {
        self.client = None;
        // No postmaster.pid: the server has already shut down.
        let pid = self
            .data_dir()
            .join("postmaster.pid")
            .exists()
            .then(|| self.postmaster_pid());
        let start = Instant::now();
        loop {
            if let Ok(mut c) = self.try_connect_as("postgres") {
                if c.simple_query("SELECT 1").is_ok() {
                    self.client = Some(c);
                    return;
                }
            }
            if !pid.is_some_and(process_alive) {
                self.start_again();
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "the server neither recovered nor exited within {timeout:?}\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether process `pid` exists and is not a zombie (a reparented process is reaped by init,
/// which in a container may never do it).
fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
