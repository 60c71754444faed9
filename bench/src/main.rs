//! The benchmark of ecommerce_ingest. Starts its own private clusters (the end-to-end harness's
//! `Cluster`: scripts/cluster.sh), generates its input with the feeder, measures each figure
//! against its yardstick in the same run, prints a table and writes results.md, results.json,
//! ratios.svg and latency.svg.
//!
//!   ecommerce_bench [--short] [--out DIR] [--only LIST] [--port N]
//!
//! The extension must be installed and the feeder built (scripts/bench.sh does both).

mod experiments;
mod partitioned;
mod pipelines;
mod report;
mod timequeries;
mod util;
mod workers;

use e2e::repo_root;
use experiments::{BenchCluster, Env, Sizes};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use util::{err, log, R};

const ALL: [&str; 9] = [
    "backlog",
    "latency",
    "history",
    "bigfile",
    "feeder",
    "pipelines",
    "partitioned",
    "timequeries",
    "workers",
];

struct Opts {
    short: bool,
    render: Option<PathBuf>,
    out: Option<PathBuf>,
    only: Vec<String>,
    port: u16,
}

const USAGE: &str = "usage: ecommerce_bench [--short] [--out DIR] [--only backlog,latency,history,bigfile,feeder,pipelines,partitioned,timequeries,workers] [--port N]
  --short   small sizes (CI): checks the counts, asserts nothing about speed
  --out     where results.md, results.json and the charts go
            [default: docs/bench, or target/bench-short with --short]
  --only    run only these experiments
  --port    first port to try for the private clusters [default: 55499]
  --render  FILE: no measurement; rewrite results.md and the charts from a results.json
            (into --out, default: the JSON's folder)";

fn parse_args() -> R<Opts> {
    let mut o = Opts {
        short: false,
        render: None,
        out: None,
        only: ALL.iter().map(|s| s.to_string()).collect(),
        port: 55499,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--short" => o.short = true,
            "--render" => {
                o.render = Some(
                    args.next()
                        .ok_or_else(|| err("--render needs a results.json"))?
                        .into(),
                )
            }
            "--out" => {
                o.out = Some(
                    args.next()
                        .ok_or_else(|| err("--out needs a folder"))?
                        .into(),
                )
            }
            "--only" => {
                let list = args.next().ok_or_else(|| err("--only needs a list"))?;
                o.only = list.split(',').map(|s| s.trim().to_string()).collect();
                if let Some(bad) = o.only.iter().find(|s| !ALL.contains(&s.as_str())) {
                    return Err(err(format!("--only: unknown experiment {bad:?}\n{USAGE}")));
                }
            }
            "--port" => {
                o.port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| err("--port needs a number"))?
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(err(format!("unknown argument {other:?}\n{USAGE}"))),
        }
    }
    Ok(o)
}

/// Rewrites results.md and the charts from a results.json (after a change of presentation).
fn render(json: &Path, out: Option<&Path>) -> R<()> {
    let mut r: report::Results = serde_json::from_slice(&std::fs::read(json)?)?;
    r.figures = report::figures(&r);
    let out = out
        .map(Path::to_path_buf)
        .or_else(|| json.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    report::write_all(&r, &out)?;
    print!("{}", report::text_table(&r));
    Ok(())
}

fn run(o: &Opts) -> R<()> {
    if let Some(json) = &o.render {
        return render(json, o.out.as_deref());
    }
    let started = util::started();
    let repo = repo_root();
    let sizes = if o.short {
        Sizes::short()
    } else {
        Sizes::full()
    };
    let out = o.out.clone().unwrap_or_else(|| {
        if o.short {
            repo.join("target/bench-short")
        } else {
            repo.join("docs/bench")
        }
    });
    let feeder = util::feeder_bin(&repo);
    if !feeder.is_file() {
        return Err(err(format!(
            "{} is missing: cargo build --release -p feeder (scripts/bench.sh does it)",
            feeder.display()
        )));
    }
    let bench_dir = repo.join(".bench");
    let trash = bench_dir.join("trash");
    if trash.exists() {
        log("removing what an earlier run left in .bench/trash");
        std::fs::remove_dir_all(&trash)?;
    }
    let lib = private_library(&bench_dir)?;
    let env = Env {
        lib_conf: format!("dynamic_library_path = '{}:$libdir'", lib.display()),
        bench_dir,
        repo: repo.clone(),
        port: util::free_port(o.port)?,
    };
    let want = |name: &str| o.only.iter().any(|s| s == name);
    log(&format!(
        "ecommerce_bench ({} mode), port {}, results into {}",
        if o.short { "short" } else { "full" },
        env.port,
        out.display()
    ));

    // The machine, and a check that the extension is installed, on a throwaway cluster.
    let machine = {
        let dir = env.bench_dir.join("probe");
        let _ = std::fs::remove_dir_all(&dir);
        let mut cl = BenchCluster::start(&dir, env.port, &[env.lib_conf.as_str()], false)?;
        let c = cl.client();
        let avail: Option<String> = c
            .query_opt(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'ecommerce_ingest'",
                &[],
            )?
            .map(|r| r.get(0));
        if avail.is_none() {
            return Err(err(
                "the extension is not installed: cd extension && cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config",
            ));
        }
        let m = util::machine(c);
        drop(cl);
        let _ = std::fs::remove_dir_all(&dir);
        m
    };

    let backlog = want("backlog")
        .then(|| experiments::backlog(&env, &sizes))
        .transpose()?;
    let latency = want("latency")
        .then(|| experiments::latency(&env, &sizes))
        .transpose()?;
    let history = want("history")
        .then(|| experiments::history(&env, &sizes))
        .transpose()?;
    let big_file = want("bigfile")
        .then(|| experiments::big_file(&env, &sizes))
        .transpose()?;
    let feeder = want("feeder")
        .then(|| experiments::feeder(&env, &sizes))
        .transpose()?;
    let pipelines = want("pipelines")
        .then(|| pipelines::pipelines(&env, &sizes))
        .transpose()?;
    let partitioned = want("partitioned")
        .then(|| partitioned::partitioned(&env, &sizes))
        .transpose()?;
    let time_queries = want("timequeries")
        .then(|| timequeries::time_queries(&env, &sizes))
        .transpose()?;

    let workers = want("workers")
        .then(|| workers::workers(&env, &sizes))
        .transpose()?;

    let mut results = report::Results {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        mode: if o.short { "short" } else { "full" }.into(),
        duration_seconds: started.elapsed().as_secs_f64(),
        machine,
        sizes,
        figures: Vec::new(),
        backlog,
        latency,
        history,
        big_file,
        feeder,
        pipelines,
        partitioned,
        time_queries,
        workers,
    };
    results.figures = report::figures(&results);
    report::write_all(&results, &out)?;
    println!();
    println!(
        "ecommerce_ingest benchmark ({} mode) — {} — {} CPUs, {}, {:.1} GiB RAM, {}",
        results.mode,
        results.date,
        results.machine.nproc,
        results.machine.cpu_model,
        results.machine.ram_gib,
        results.machine.postgres
    );
    print!("{}", report::text_table(&results));
    println!(
        "took {:.0} s; wrote {}/results.md, results.json, ratios.svg{}",
        results.duration_seconds,
        out.display(),
        if results.latency.is_some() {
            ", latency.svg"
        } else {
            ""
        }
    );
    if o.short {
        println!("(short mode: the counts were checked; the speed figures are not meaningful)");
    }
    if trash.exists() {
        let t = std::time::Instant::now();
        std::fs::remove_dir_all(&trash)?;
        log(&format!(
            "removed the experiments' folders in {:.1} s",
            t.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

/// Copies the installed library into `.bench/lib/` (a new file, never overwritten in place):
/// the clusters load it from there through `dynamic_library_path`.
fn private_library(bench_dir: &Path) -> R<PathBuf> {
    let out = std::process::Command::new("/usr/lib/postgresql/15/bin/pg_config")
        .arg("--pkglibdir")
        .output()?;
    let libdir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let src = libdir.join("ecommerce_ingest.so");
    if !src.is_file() {
        return Err(err(format!(
            "{} is missing: cd extension && cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config",
            src.display()
        )));
    }
    let dir = bench_dir.join("lib");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let dst = dir.join("ecommerce_ingest.so");
    std::fs::copy(&src, &dst)?;
    let meta = std::fs::metadata(&dst)?;
    log(&format!(
        "using a private copy of {} ({} bytes) in {}",
        src.display(),
        meta.len(),
        dir.display()
    ));
    Ok(dir)
}

fn main() -> ExitCode {
    util::started();
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = e.source();
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("ecommerce_bench: FAILED: {msg}");
            ExitCode::FAILURE
        }
    }
}
