//! feeder: writes e-commerce event CSV files that follow the event contract
//! (`ecommerce_events`), for the demo, the tests and the benchmarks.

mod badrows;
mod catalog;
mod cli;
mod clock;
mod generator;
mod pacing;
mod row;
mod sessions;
mod summary;
mod writer;

use clap::Parser;
use cli::Config;
use clock::Clock;
use generator::{Counts, Generator};
use pacing::{Pacer, Stop};
use std::process::ExitCode;
use std::time::Duration;
use summary::{Reporter, Summary, Totals};
use writer::OutputDir;

/// Bytes of rows gathered in memory before they are written to the file.
const CHUNK: usize = 1 << 20;

fn main() -> ExitCode {
    let cfg = cli::Args::parse().into_config();
    // Installed first: from here on Ctrl-C never kills the process half-way.
    let stop = Stop::new();
    {
        let stop = stop.clone();
        if let Err(e) = ctrlc::set_handler(move || stop.request()) {
            eprintln!("feeder: warning: cannot handle Ctrl-C: {e}");
        }
    }
    let out = match OutputDir::prepare(&cfg.output_dir) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("feeder: error: {msg}");
            return ExitCode::from(1);
        }
    };

    let mut reporter = Reporter::new(
        cfg.quiet,
        cfg.total_files
            .map(|n| n.saturating_mul(cfg.events_per_file)),
    );
    let mut totals = Totals::default();
    let result = run(&cfg, &out, &stop, &mut reporter, &mut totals);
    let elapsed = reporter.started().elapsed();
    reporter.finish();

    let summary = Summary::new(out.path(), &totals, elapsed, cfg.seed, stop.requested());
    let mut code = 0;
    if let Err(e) = &result {
        eprintln!("feeder: error: {e}");
        code = 1;
    }
    if !cfg.quiet {
        print!("{}", summary.text());
        if !cfg.seed_given {
            println!("  (rerun with --seed {} to get the same events)", cfg.seed);
        }
    }
    if let Some(path) = &cfg.summary_json {
        if let Err(e) = summary.write_json(path) {
            eprintln!(
                "feeder: error: cannot write the summary to {}: {e}",
                path.display()
            );
            code = 1;
        }
    }
    ExitCode::from(code)
}

/// Writes files until the requested number is reached or a stop is requested.
fn run(
    cfg: &Config,
    out: &OutputDir,
    stop: &Stop,
    reporter: &mut Reporter,
    totals: &mut Totals,
) -> Result<(), String> {
    let mut generator = Generator::new(
        cfg.seed,
        cfg.users,
        cfg.products,
        cfg.conversion_rate,
        cfg.bad_row_ratio,
    );
    let mut clock = Clock::new(cfg.start_time, cfg.file_span);
    let mut pacer = Pacer::new(cfg.pacing);
    let header = row::header_bytes();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + 64 * 1024);
    let mut seq: u64 = 1;
    let mut written: u64 = 0;

    loop {
        if cfg.total_files.is_some_and(|n| written >= n) || stop.requested() {
            return Ok(());
        }
        if written > 0
            && !pacer.wait_next(stop, Duration::from_millis(500), || reporter.update(totals))
        {
            return Ok(());
        }
        let times = clock.next_file(cfg.events_per_file);
        let mut pending = out
            .begin(times.start_us, seq)
            .map_err(|e| format!("cannot create a file in {}: {e}", out.path().display()))?;
        let io_err = |e: std::io::Error| format!("cannot write to {}: {e}", out.path().display());
        buf.clear();
        buf.extend_from_slice(&header);
        let mut counts = Counts::default();
        for i in 0..cfg.events_per_file {
            generator.row(&mut buf, &times, i, &mut counts);
            if buf.len() >= CHUNK {
                pending.write_all(&buf).map_err(io_err)?;
                buf.clear();
                if stop.requested() {
                    // A large file in progress is dropped: no partial file is ever published.
                    pending.discard();
                    return Ok(());
                }
            }
        }
        pending.write_all(&buf).map_err(io_err)?;
        let published = pending.commit(out, seq).map_err(io_err)?;
        seq = published.seq + 1;
        written += 1;
        totals.files += 1;
        totals.bytes += published.bytes;
        totals.counts.add(&counts);
        if totals.first_file.is_none() {
            totals.first_file = Some(published.name.clone());
        }
        totals.last_file = Some(published.name);
        reporter.update(totals);
    }
}
