//! Experiment 6: pipelines (docs/pipelines.md) against PostgreSQL's own COPY, in the same run:
//! the feeder's events as a generic CSV pipeline into a plain 9-column table, the same files
//! gzipped and as NDJSON, and a 12-column table with a mix of types. Each pipeline ingests a
//! backlog alone (the others paused); the yardstick is `COPY … FROM file (FORMAT csv, HEADER)`
//! of the plain CSV files, one transaction per file, into an identical table. The experiment runs
//! in rounds (up to 3); each figure is its median round's.

use crate::experiments::{Env, Sizes, COLUMNS};
use crate::util::{err, log, stage, sync, R};
use postgres::Client;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One pipeline's figure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Variant {
    /// `csv`, `csv.gz`, `ndjson`, `csv 12 types`.
    pub name: String,
    pub files: u64,
    pub rows: u64,
    /// Bytes of the files the pipeline read (compressed for .gz).
    pub bytes: u64,
    pub pipeline_seconds: f64,
    pub copy_seconds: f64,
    /// pipeline rows/s ÷ COPY rows/s (of the plain CSV files).
    pub ratio: f64,
    /// The target for the ratio (`None`: reported only).
    pub target: Option<f64>,
    /// The ratio of every round, in the order they ran (the figures above are the median
    /// round's).
    #[serde(default)]
    pub round_ratios: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pipelines {
    pub variants: Vec<Variant>,
}

/// The 9 contract columns as a plain table (no identity, no extra columns).
const T9: &str = "(user_id varchar(50) NOT NULL, event_type varchar(20) NOT NULL,
    product_id varchar(50) NOT NULL, product_name varchar(200) NOT NULL,
    product_category varchar(100) NOT NULL, price numeric(10,2) NOT NULL,
    event_timestamp timestamptz NOT NULL, session_id varchar(100) NOT NULL,
    device_type varchar(50) NOT NULL)";

/// A 12-column table with the type mix of the pipelines issue.
const T12: &str = "(id bigint PRIMARY KEY, name text NOT NULL, qty integer, amount numeric(12,2),
    ratio double precision, active boolean, day date, at timestamptz, uid uuid, meta jsonb,
    tags text[], ip inet)";
const COLUMNS12: &str = "id, name, qty, amount, ratio, active, day, at, uid, meta, tags, ip";

fn q(c: &mut Client, sql: &str) -> R<i64> {
    Ok(c.query_one(sql, &[])?.get(0))
}

/// Gzips `src` into `dst`.
fn gzip(src: &Path, dst: &Path) -> R<()> {
    let mut out =
        flate2::write::GzEncoder::new(std::fs::File::create(dst)?, flate2::Compression::default());
    std::io::copy(&mut std::fs::File::open(src)?, &mut out)?;
    out.finish()?.sync_all()?;
    Ok(())
}

/// The events of a CSV file as NDJSON: one object per row, the price a JSON number.
fn to_ndjson(src: &Path, dst: &Path) -> R<()> {
    let mut rd = csv::Reader::from_path(src)?;
    let header: Vec<String> = rd.headers()?.iter().map(str::to_string).collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(dst)?);
    for rec in rd.records() {
        let rec = rec?;
        let mut obj = serde_json::Map::new();
        for (k, v) in header.iter().zip(rec.iter()) {
            let value = match (k.as_str(), v.parse::<f64>()) {
                ("price", Ok(p)) => serde_json::json!(p),
                _ => serde_json::Value::String(v.to_string()),
            };
            obj.insert(k.clone(), value);
        }
        serde_json::to_writer(&mut out, &serde_json::Value::Object(obj))?;
        out.write_all(b"\n")?;
    }
    out.into_inner()
        .map_err(|e| err(e.to_string()))?
        .sync_all()?;
    Ok(())
}

/// `rows` rows of the 12-column table as CSV with a header, ids from `first`.
fn write_t12(path: &Path, first: u64, rows: u64) -> R<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "{COLUMNS12}")?;
    let mut x: u64 = first.wrapping_mul(6364136223846793005).wrapping_add(1);
    for id in first..first + rows {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = x >> 33;
        writeln!(
            out,
            "{id},customer {r},{},{}.{:02},{},{},2024-{:02}-{:02},2024-05-01T{:02}:{:02}:{:02}Z,\
             {:08x}-{:04x}-4{:03x}-8{:03x}-{:012x},\"{{\"\"k\"\": {}, \"\"v\"\": \"\"x{}\"\"}}\",\"{{a{},b}}\",10.{}.{}.{}",
            r % 1000,
            r % 100_000,
            r % 100,
            (r % 10_000) as f64 / 7.0,
            if r.is_multiple_of(2) { "true" } else { "false" },
            1 + r % 12,
            1 + r % 28,
            r % 24,
            r % 60,
            (r / 60) % 60,
            r as u32,
            (r >> 3) as u16,
            r % 4096,
            (r >> 7) % 4096,
            x & 0xffff_ffff_ffff,
            r % 97,
            r % 13,
            r % 7,
            r % 256,
            (r >> 8) % 256,
            (r >> 16) % 256,
        )?;
    }
    out.into_inner()
        .map_err(|e| err(e.to_string()))?
        .sync_all()?;
    Ok(())
}

/// Runs pipeline `name` over the files already in its (paused) folder; returns seconds from
/// resume to the last commit, after checking every file done and `rows` rows in `table`.
fn run_pipeline(c: &mut Client, name: &str, table: &str, files: u64, rows: u64) -> R<f64> {
    c.batch_execute("CHECKPOINT; SELECT pg_sleep(0.5)")?;
    let t0: f64 = c
        .query_one(
            "SELECT extract(epoch FROM clock_timestamp())::float8, ingest_resume($1)",
            &[&name],
        )?
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let done = c
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'done'),
                        count(*) FILTER (WHERE status IN ('failed', 'changed', 'error'))
                   FROM ingest_files WHERE pipeline = $1",
                &[&name],
            )
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))?;
        if done.1 > 0 {
            return Err(err(format!("pipeline {name}: {} files failed", done.1)));
        }
        if done.0 as u64 >= files {
            break;
        }
        if Instant::now() > deadline {
            return Err(err(format!("pipeline {name}: not done after 900 s")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let t1: f64 = c
        .query_one(
            "SELECT extract(epoch FROM max(committed_at))::float8 FROM ingest_files WHERE pipeline = $1",
            &[&name],
        )?
        .get(0);
    let (in_table, rejected) = (
        q(c, &format!("SELECT count(*) FROM {table}"))?,
        c.query_one(
            "SELECT count(*) FROM ingest_rejects WHERE pipeline = $1",
            &[&name],
        )?
        .get::<_, i64>(0),
    );
    if in_table as u64 != rows || rejected != 0 {
        return Err(err(format!(
            "pipeline {name}: {rows} rows generated, {table} holds {in_table}, {rejected} rejected"
        )));
    }
    c.batch_execute(&format!("SELECT ingest_pause('{name}')"))?;
    Ok(t1 - t0)
}

/// COPY of each file into `table` (`columns`), one transaction per file; seconds.
fn copy_files(c: &mut Client, table: &str, columns: &str, paths: &[PathBuf], rows: u64) -> R<f64> {
    c.batch_execute("CHECKPOINT; SELECT pg_sleep(0.5)")?;
    let t = Instant::now();
    let mut copied = 0;
    for p in paths {
        copied += c.execute(
            &format!(
                "COPY {table} ({columns}) FROM {} (FORMAT csv, HEADER)",
                e2e::lit(&p.display().to_string())
            ),
            &[],
        )?;
    }
    let secs = t.elapsed().as_secs_f64();
    if copied != rows {
        return Err(err(format!("COPY into {table}: {copied} rows, not {rows}")));
    }
    Ok(secs)
}

/// A folder the server can read and write, with files moved in later.
fn folder(root: &Path, name: &str) -> R<PathBuf> {
    let d = root.join(name);
    e2e::postgres_folder(&d);
    Ok(d)
}

/// Rounds of the whole experiment (each with its own cluster and its own COPY yardsticks);
/// each figure is reported from its median round, with every round's ratio beside it.
fn rounds(z: &Sizes) -> u64 {
    z.backlog_rounds.clamp(1, 3)
}

pub fn pipelines(env: &Env, z: &Sizes) -> R<Pipelines> {
    let n = rounds(z);
    let mut all: Vec<Vec<Variant>> = Vec::new();
    for r in 1..=n {
        log(&format!("== 6. pipelines, round {r} of {n}"));
        all.push(one_round(env, z)?.variants);
    }
    Ok(Pipelines {
        variants: median_rounds(all),
    })
}

/// For each figure (same position in every round), the round with the median ratio, and all
/// the rounds' ratios.
fn median_rounds(all: Vec<Vec<Variant>>) -> Vec<Variant> {
    let Some(first) = all.first() else {
        return Vec::new();
    };
    (0..first.len())
        .map(|i| {
            let mut of_i: Vec<&Variant> = all.iter().filter_map(|round| round.get(i)).collect();
            let ratios: Vec<f64> = of_i.iter().map(|v| v.ratio).collect();
            of_i.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
            let mut v = of_i[of_i.len() / 2].clone();
            v.round_ratios = ratios;
            v
        })
        .collect()
}

fn one_round(env: &Env, z: &Sizes) -> R<Pipelines> {
    let (files, per_file) = (z.backlog_files, z.backlog_rows_per_file);
    log(&format!(
        "== 6. pipelines: {files} files x {per_file} rows as csv, csv.gz, ndjson; a 12-column table"
    ));
    let dir = env.fresh("pipelines")?;
    let mut cluster = env.cluster(
        &dir,
        &[
            "ecommerce_ingest.trigger_interval = '10s'",
            // A worker per pipeline: more than the default 8 background workers.
            "max_worker_processes = 24",
        ],
    )?;
    let c = cluster.client();
    let (staged, rows) = stage(&env.repo, &dir.join("staging"), files, per_file, 2)?;
    let plain: Vec<PathBuf> = staged.iter().map(|s| s.path.clone()).collect();
    let root = dir.join("pipelines");
    let mut variants = Vec::new();

    // The three forms of the same events, each its own pipeline and table.
    c.batch_execute(&format!(
        "CREATE TABLE c9 {T9}; CREATE TABLE t9_csv {T9}; CREATE TABLE t9_gz {T9};
         CREATE TABLE t9_nd {T9}; CREATE TABLE c12 {T12}; CREATE TABLE t12 {T12};"
    ))?;
    c.batch_execute(&format!("CREATE TABLE t9_tr {T9};"))?;
    let forms: [(&str, &str, &str, &str); 4] = [
        ("csv", "p_csv", "t9_csv", "csv"),
        ("csv.gz", "p_gz", "t9_gz", "csv"),
        ("ndjson", "p_nd", "t9_nd", "ndjson"),
        ("csv, trivial transform", "p_tr", "t9_tr", "csv"),
    ];
    let copy9 = copy_files(c, "c9", COLUMNS, &plain, rows)?;
    for (form, name, table, format) in forms {
        let input = folder(&root, name)?;
        // The trivial transform: what a plain pipeline does, through the staging table.
        let transform: Option<String> =
            (name == "p_tr").then(|| format!("INSERT INTO public.{table} SELECT * FROM $batch"));
        c.execute(
            "SELECT ingest_create_pipeline($1, $2, $3::text::regclass, $4, '{}', $5)",
            &[
                &name,
                &input.display().to_string(),
                &table,
                &format,
                &transform,
            ],
        )?;
        c.batch_execute(&format!("SELECT ingest_pause('{name}')"))?;
        let mut bytes = 0;
        let prep = Instant::now();
        for (i, p) in plain.iter().enumerate() {
            let tmp = input.join(format!(".f{i}.tmp"));
            let dst = match form {
                "csv" | "csv, trivial transform" => {
                    std::fs::copy(p, &tmp)?;
                    input.join(format!("f{i}.csv"))
                }
                "csv.gz" => {
                    gzip(p, &tmp)?;
                    input.join(format!("f{i}.csv.gz"))
                }
                _ => {
                    to_ndjson(p, &tmp)?;
                    input.join(format!("f{i}.ndjson"))
                }
            };
            bytes += std::fs::metadata(&tmp)?.len();
            std::fs::rename(&tmp, &dst)?;
        }
        sync();
        log(&format!(
            "{form}: {} files prepared in {:.1} s",
            plain.len(),
            prep.elapsed().as_secs_f64()
        ));
        let secs = run_pipeline(c, name, table, files, rows)?;
        let ratio = copy9 / secs;
        log(&format!(
            "pipeline {form}: {secs:.2} s ({:.0} rows/s), COPY of the csv {copy9:.2} s: {ratio:.2}x",
            rows as f64 / secs
        ));
        variants.push(Variant {
            name: form.into(),
            files,
            rows,
            bytes,
            pipeline_seconds: secs,
            copy_seconds: copy9,
            ratio,
            target: Some(match form {
                "csv" => 1.0,
                "csv, trivial transform" => 0.7,
                _ => 0.8,
            }),
            round_ratios: Vec::new(),
        });
    }

    // Two pipelines at once (one worker each), each with half the files, against one pipeline
    // with all of them (the csv figure above): what a second worker process buys on this
    // machine's cores.
    c.batch_execute(&format!(
        "CREATE TABLE t9_h1 {T9}; CREATE TABLE t9_h2 {T9};"
    ))?;
    let halves = [("p_h1", "t9_h1"), ("p_h2", "t9_h2")];
    let mut inputs = Vec::new();
    for (name, table) in halves {
        let input = folder(&root, name)?;
        c.execute(
            "SELECT ingest_create_pipeline($1, $2, $3::text::regclass)",
            &[&name, &input.display().to_string(), &table],
        )?;
        c.batch_execute(&format!("SELECT ingest_pause('{name}')"))?;
        inputs.push(input);
    }
    let mut half_rows = [0u64; 2];
    for (i, p) in plain.iter().enumerate() {
        let k = i % 2;
        let tmp = inputs[k].join(format!(".f{i}.tmp"));
        std::fs::copy(p, &tmp)?;
        std::fs::rename(&tmp, inputs[k].join(format!("f{i}.csv")))?;
        half_rows[k] += per_file;
    }
    sync();
    c.batch_execute("CHECKPOINT; SELECT pg_sleep(0.5)")?;
    let t0: f64 = c
        .query_one(
            "SELECT extract(epoch FROM clock_timestamp())::float8, ingest_resume('p_h1'), ingest_resume('p_h2')",
            &[],
        )?
        .get(0);
    let want_files = plain.len() as i64;
    let deadline = Instant::now() + Duration::from_secs(900);
    while q(
        c,
        "SELECT count(*) FROM ingest_files WHERE pipeline IN ('p_h1', 'p_h2') AND status = 'done'",
    )? < want_files
    {
        if Instant::now() > deadline {
            return Err(err("two pipelines: not done after 900 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let t1: f64 = c
        .query_one(
            "SELECT extract(epoch FROM max(committed_at))::float8 FROM ingest_files WHERE pipeline IN ('p_h1', 'p_h2')",
            &[],
        )?
        .get(0);
    let both = q(
        c,
        "SELECT (SELECT count(*) FROM t9_h1) + (SELECT count(*) FROM t9_h2)",
    )?;
    if both as u64 != rows || half_rows.iter().sum::<u64>() != rows {
        return Err(err(format!("two pipelines: {both} rows, not {rows}")));
    }
    let secs = t1 - t0;
    log(&format!(
        "two pipelines at once: {secs:.2} s ({:.0} rows/s), COPY {copy9:.2} s: {:.2}x",
        rows as f64 / secs,
        copy9 / secs
    ));
    variants.push(Variant {
        name: "csv, two pipelines at once".into(),
        files,
        rows,
        bytes: 0,
        pipeline_seconds: secs,
        copy_seconds: copy9,
        ratio: copy9 / secs,
        target: None,
        round_ratios: Vec::new(),
    });

    // The type mix.
    let input = folder(&root, "p12")?;
    c.batch_execute(&format!(
        "SELECT ingest_create_pipeline('p12', '{}', 't12'); SELECT ingest_pause('p12');",
        input.display()
    ))?;
    let staging12 = dir.join("staging12");
    std::fs::create_dir_all(&staging12)?;
    let mut paths12 = Vec::new();
    let mut bytes12 = 0;
    for i in 0..files {
        let p = staging12.join(format!("g{i}.csv"));
        write_t12(&p, i * per_file, per_file)?;
        bytes12 += std::fs::metadata(&p)?.len();
        paths12.push(p);
    }
    let copy12 = copy_files(c, "c12", COLUMNS12, &paths12, rows)?;
    for (i, p) in paths12.iter().enumerate() {
        let tmp = input.join(format!(".g{i}.tmp"));
        std::fs::copy(p, &tmp)?;
        std::fs::rename(&tmp, input.join(format!("g{i}.csv")))?;
    }
    sync();
    let secs = run_pipeline(c, "p12", "t12", files, rows)?;
    // Same values in both tables (COPY's conversion is the pipeline's).
    let differ = q(
        c,
        "SELECT count(*) FROM (SELECT * FROM c12 EXCEPT ALL SELECT * FROM t12) d",
    )?;
    if differ != 0 {
        return Err(err(format!(
            "12 columns: {differ} rows of COPY's table are not in the pipeline's"
        )));
    }
    let ratio = copy12 / secs;
    log(&format!(
        "pipeline 12 columns: {secs:.2} s, COPY {copy12:.2} s: {ratio:.2}x"
    ));
    variants.push(Variant {
        name: "csv 12 types".into(),
        files,
        rows,
        bytes: bytes12,
        pipeline_seconds: secs,
        copy_seconds: copy12,
        ratio,
        target: Some(0.9),
        round_ratios: Vec::new(),
    });

    // De-duplication: consecutive files overlap by 10 % of their rows (ids seen before), into a
    // table keyed by id with dedup_key; the yardstick is COPY of the unique rows.
    let step = per_file - per_file / 10;
    let distinct = step * (files - 1) + per_file;
    c.batch_execute(&format!(
        "CREATE TABLE t12d {T12}; CREATE TABLE c12u {T12};"
    ))?;
    let dd = folder(&root, "p_dd")?;
    c.batch_execute(&format!(
        "SELECT ingest_create_pipeline('p_dd', '{}', 't12d', 'csv', '{{\"dedup_key\": [\"id\"]}}');
         SELECT ingest_pause('p_dd');",
        dd.display()
    ))?;
    let unique = staging12.join("unique.csv");
    write_t12(&unique, 0, distinct)?;
    let copy_unique = copy_files(
        c,
        "c12u",
        COLUMNS12,
        std::slice::from_ref(&unique),
        distinct,
    )?;
    for i in 0..files {
        let tmp = dd.join(format!(".d{i}.tmp"));
        write_t12(&tmp, i * step, per_file)?;
        std::fs::rename(&tmp, dd.join(format!("d{i}.csv")))?;
    }
    sync();
    let secs = run_pipeline(c, "p_dd", "t12d", files, distinct)?;
    let dups = q(
        c,
        "SELECT sum(rows_duplicate)::int8 FROM ingest_files WHERE pipeline = 'p_dd'",
    )?;
    if dups as u64 != files * per_file - distinct {
        return Err(err(format!(
            "dedup: {dups} duplicates counted, {} expected",
            files * per_file - distinct
        )));
    }
    let ratio = copy_unique / secs;
    log(&format!(
        "pipeline dedup_key (10 % duplicates): {secs:.2} s, COPY of the unique rows {copy_unique:.2} s: {ratio:.2}x"
    ));
    variants.push(Variant {
        name: "dedup_key, 10 % duplicates".into(),
        files,
        rows: distinct,
        bytes: 0,
        pipeline_seconds: secs,
        copy_seconds: copy_unique,
        ratio,
        target: None,
        round_ratios: Vec::new(),
    });
    drop(cluster);
    env.clean(&dir);
    Ok(Pipelines { variants })
}
