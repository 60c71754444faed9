//! A private PostgreSQL 15 cluster with `ecommerce_ingest` preloaded, started with
//! `scripts/cluster.sh` and stopped when the guard is dropped (also on error).

use crate::util::{err, log, R};
use postgres::{Client, NoTls};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Cluster {
    pub data: PathBuf,
    pub input: PathBuf,
    pub port: u16,
    script: PathBuf,
    running: bool,
}

/// The first port from `from` on that nothing listens on.
pub fn free_port(from: u16) -> R<u16> {
    for p in from..from.saturating_add(200) {
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return Ok(p);
        }
    }
    Err(err(format!("no free port in {from}..{}", from + 200)))
}

impl Cluster {
    /// Starts a fresh cluster whose data lives in `dir/pg` and whose input folder is `dir/input`.
    pub fn start(repo: &Path, dir: &Path, port: u16, conf: &[&str]) -> R<Cluster> {
        let data = dir.join("pg");
        let input = dir.join("input");
        let script = repo.join("scripts/cluster.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(&data)
            .arg(port.to_string())
            .arg(&input)
            .args(conf)
            .output()?;
        if !out.status.success() {
            return Err(err(format!(
                "scripts/cluster.sh start {} failed ({}): {}{}",
                data.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        log(&format!(
            "cluster started on 127.0.0.1:{port} (data {})",
            data.display()
        ));
        Ok(Cluster {
            data,
            input,
            port,
            script,
            running: true,
        })
    }

    pub fn connect(&self) -> R<Client> {
        let dsn = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
            self.port
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Client::connect(&dsn, NoTls) {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(err(format!("connect to port {}: {e}", self.port))),
            }
        }
    }

    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.data)
            .arg("fast")
            .status();
        log("cluster stopped");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
