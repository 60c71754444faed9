//! Progress while running (a bar on a terminal, else a line every few seconds on stderr) and
//! the final summary (text, and JSON with --summary-json).

use crate::generator::Counts;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often a progress line is printed when stderr is not a terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// Everything written so far (published files only).
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub files: u64,
    pub counts: Counts,
    pub bytes: u64,
    pub first_file: Option<String>,
    pub last_file: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub output_dir: String,
    pub files: u64,
    /// Valid events (views + purchases).
    pub events: u64,
    pub views: u64,
    pub purchases: u64,
    /// Contract-breaking rows injected on purpose (--bad-row-ratio).
    pub bad_rows: u64,
    /// Every row written: events + bad rows.
    pub rows: u64,
    pub bytes: u64,
    pub elapsed_seconds: f64,
    pub events_per_second: f64,
    pub rows_per_second: f64,
    pub seed: u64,
    /// True if Ctrl-C (or SIGTERM) ended the run.
    pub interrupted: bool,
    pub first_file: Option<String>,
    pub last_file: Option<String>,
}

impl Summary {
    pub fn new(dir: &Path, t: &Totals, elapsed: Duration, seed: u64, interrupted: bool) -> Self {
        let secs = elapsed.as_secs_f64();
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        Summary {
            output_dir: dir.display().to_string(),
            files: t.files,
            events: t.counts.events,
            views: t.counts.views,
            purchases: t.counts.purchases,
            bad_rows: t.counts.bad_rows,
            rows: t.counts.rows(),
            bytes: t.bytes,
            elapsed_seconds: secs,
            events_per_second: per_sec(t.counts.events),
            rows_per_second: per_sec(t.counts.rows()),
            seed,
            interrupted,
            first_file: t.first_file.clone(),
            last_file: t.last_file.clone(),
        }
    }

    pub fn text(&self) -> String {
        format!(
            "feeder summary{}\n  files:     {} in {}\n  events:    {} ({} views, {} purchases)\n  \
             bad rows:  {} injected\n  bytes:     {} ({})\n  elapsed:   {:.3} s\n  \
             events/s:  {:.0}\n  seed:      {}\n",
            if self.interrupted {
                " (stopped by Ctrl-C)"
            } else {
                ""
            },
            self.files,
            self.output_dir,
            self.events,
            self.views,
            self.purchases,
            self.bad_rows,
            self.bytes,
            human_bytes(self.bytes),
            self.elapsed_seconds,
            self.rows_per_second,
            self.seed,
        )
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let mut s = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        s.push('\n');
        std::fs::write(path, s)
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

enum Mode {
    Silent,
    Bar(ProgressBar),
    Lines { next: Instant },
}

/// Shows progress: a bar for a finite run on a terminal, else periodic lines on stderr.
pub struct Reporter {
    mode: Mode,
    started: Instant,
}

impl Reporter {
    /// `total_rows`: None for an endless run.
    pub fn new(quiet: bool, total_rows: Option<u64>) -> Self {
        let started = Instant::now();
        let mode = if quiet {
            Mode::Silent
        } else {
            match total_rows {
                Some(n) if std::io::stderr().is_terminal() => {
                    let bar = ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr());
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{bar:40} {pos}/{len} rows, {msg} [{elapsed_precise}, eta {eta}]",
                        )
                        .expect("valid template"),
                    );
                    Mode::Bar(bar)
                }
                _ => Mode::Lines {
                    next: started + LINE_EVERY,
                },
            }
        };
        Reporter { mode, started }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Called often (after each file, while waiting): cheap unless something is shown.
    pub fn update(&mut self, t: &Totals) {
        match &mut self.mode {
            Mode::Silent => {}
            Mode::Bar(bar) => {
                bar.set_position(t.counts.rows());
                bar.set_message(format!("{} files", t.files));
            }
            Mode::Lines { next } => {
                let now = Instant::now();
                if now >= *next {
                    *next = now + LINE_EVERY;
                    eprintln!("{}", progress_line(t, now - self.started));
                }
            }
        }
    }

    pub fn finish(&mut self) {
        if let Mode::Bar(bar) = &self.mode {
            bar.finish_and_clear();
        }
    }
}

fn progress_line(t: &Totals, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    format!(
        "feeder: {} files, {} events ({} purchases), {} bad rows, {}, {:.0} s, {:.0} events/s",
        t.files,
        t.counts.events,
        t.counts.purchases,
        t.counts.bad_rows,
        human_bytes(t.bytes),
        secs,
        if secs > 0.0 {
            t.counts.rows() as f64 / secs
        } else {
            0.0
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_readable() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
