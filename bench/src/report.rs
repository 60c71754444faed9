//! The results: a table (stdout and results.md), JSON, and SVG charts.

use crate::experiments::STATUS_CALLS;
use crate::experiments::{BigFile, Feeder, History, Latency, Sizes, Throughput};
use crate::pipelines::Pipelines;
use crate::timequeries::TimeQueries;
use crate::util::{Machine, R};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    pub id: String,
    pub name: String,
    pub measured: String,
    pub yardstick: String,
    /// measured ÷ yardstick.
    pub ratio: Option<f64>,
    /// Target of the ratio, and its direction (`>=` or `<=`); none for figures reported for
    /// information.
    pub target: Option<f64>,
    pub higher_is_better: bool,
    pub met: Option<bool>,
    /// Short label for the chart.
    pub label: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub date: String,
    pub mode: String,
    pub duration_seconds: f64,
    pub machine: Machine,
    pub sizes: Sizes,
    pub figures: Vec<Figure>,
    pub backlog: Option<Throughput>,
    pub latency: Option<Latency>,
    pub history: Option<History>,
    pub big_file: Option<BigFile>,
    pub feeder: Option<Feeder>,
    #[serde(default)]
    pub pipelines: Option<Pipelines>,
    #[serde(default)]
    pub partitioned: Option<Throughput>,
    #[serde(default)]
    pub time_queries: Option<TimeQueries>,
    #[serde(default)]
    pub workers: Option<Vec<crate::workers::WithWorkers>>,
}

fn rps(v: f64) -> String {
    format!("{v:.0} rows/s")
}

fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.3} ms")
    } else {
        format!("{v:.2} ms")
    }
}

#[allow(clippy::too_many_arguments)]
fn fig(
    id: &str,
    label: &str,
    name: &str,
    measured: String,
    yardstick: String,
    ratio: Option<f64>,
    target: Option<f64>,
    higher_is_better: bool,
) -> Figure {
    let met = match (ratio, target) {
        (Some(r), Some(t)) => Some(if higher_is_better { r >= t } else { r <= t }),
        _ => None,
    };
    Figure {
        id: id.into(),
        name: name.into(),
        measured,
        yardstick,
        ratio,
        target,
        higher_is_better,
        met,
        label: label.into(),
    }
}

/// The table's figures, from what was measured (the experiments not run give none).
pub fn figures(r: &Results) -> Vec<Figure> {
    let backlog = r.backlog.as_ref();
    let latency = r.latency.as_ref();
    let history = r.history.as_ref();
    let big = r.big_file.as_ref();
    let feeder = r.feeder.as_ref();
    let pipelines = r.pipelines.as_ref();
    let partitioned = r.partitioned.as_ref();
    let time_queries = r.time_queries.as_ref();
    let workers = r.workers.as_deref().unwrap_or_default();
    let mut f = Vec::new();
    if let Some(b) = backlog {
        f.push(fig(
            "1",
            "backlog",
            &format!(
                "backlog of {} files ({} rows): worker vs COPY per file",
                b.files, b.rows
            ),
            rps(b.worker_rows_per_second),
            format!("COPY {}", rps(b.copy_rows_per_second)),
            Some(b.ratio),
            Some(1.0),
            true,
        ));
    }
    if let Some(l) = latency {
        let what = format!(
            "{} files of 10 rows at {}/s, rename → commit",
            l.files, l.rate_per_second
        );
        f.push(fig(
            "2a",
            "latency p50",
            &format!("latency p50 ({what})"),
            ms(l.p50_ms),
            "target 10 ms".into(),
            Some(l.p50_ms / 10.0),
            Some(1.0),
            false,
        ));
        f.push(fig(
            "2b",
            "latency p99",
            "latency p99",
            ms(l.p99_ms),
            "target 50 ms".into(),
            Some(l.p99_ms / 50.0),
            Some(1.0),
            false,
        ));
        f.push(fig(
            "2c",
            "latency max",
            "latency max",
            ms(l.max_ms),
            "—".into(),
            None,
            None,
            false,
        ));
    }
    if let Some(h) = history {
        f.push(fig(
            "3a",
            "history: trigger",
            &format!(
                "interval trigger that finds nothing new (median of {}), {} ingested files in the folder vs empty folder",
                h.with_history.interval_trigger_ms.len(),
                h.with_history.files_in_folder
            ),
            ms(h.with_history.interval_trigger_median_ms),
            format!("empty folder {}", ms(h.empty.interval_trigger_median_ms)),
            Some(h.trigger_ratio),
            Some(1.2),
            false,
        ));
        f.push(fig(
            "3a'",
            "history: manual rescan",
            "manual full rescan, ingest_trigger() (lists and stats the whole folder; no target)",
            ms(h.with_history.manual_rescan_median_ms),
            format!("empty folder {}", ms(h.empty.manual_rescan_median_ms)),
            Some(h.rescan_ratio),
            None,
            false,
        ));
        f.push(fig(
            "3b",
            "history: new file p50",
            &format!(
                "latency p50 of a new file ({} files at {}/s) with the history vs empty folder",
                h.with_history.new_file_latency.files,
                h.with_history.new_file_latency.rate_per_second
            ),
            ms(h.with_history.new_file_latency.p50_ms),
            format!("empty folder {}", ms(h.empty.new_file_latency.p50_ms)),
            Some(h.latency_p50_ratio),
            Some(1.2),
            false,
        ));
        f.push(fig(
            "3b'",
            "history: new file p99",
            "latency p99 of a new file with the history vs empty folder (no target)",
            ms(h.with_history.new_file_latency.p99_ms),
            format!("empty folder {}", ms(h.empty.new_file_latency.p99_ms)),
            Some(h.with_history.new_file_latency.p99_ms / h.empty.new_file_latency.p99_ms),
            None,
            false,
        ));
        f.push(fig(
            "3c",
            "history: ingest_status()",
            &format!(
                "ingest_status() with {} ingested files (median of {} calls, client side over loopback)",
                h.with_history.files_in_folder, STATUS_CALLS
            ),
            ms(h.with_history.status_call_ms),
            format!(
                "target 5 ms (empty folder {})",
                ms(h.empty.status_call_ms)
            ),
            Some(h.with_history.status_call_ms / 5.0),
            Some(1.0),
            false,
        ));
    }
    if let Some(b) = big {
        let t = &b.throughput;
        f.push(fig(
            "4",
            "big file",
            &format!(
                "one file of {:.2} GB ({} rows): worker vs one COPY",
                t.bytes as f64 / 1e9,
                t.rows
            ),
            rps(t.worker_rows_per_second),
            format!("COPY {}", rps(t.copy_rows_per_second)),
            Some(t.ratio),
            Some(1.0),
            true,
        ));
        f.push(fig(
            "4m",
            "big file: RssAnon",
            "worker's peak private memory (max RssAnon, sampled every 50 ms)",
            format!("{:.1} MiB", b.worker_rss_anon_max_mib),
            "target 100 MB".into(),
            Some(b.worker_rss_anon_max_mib * 1024.0 * 1024.0 / 100e6),
            Some(1.0),
            false,
        ));
        f.push(fig(
            "4h",
            "big file: VmHWM",
            "worker's peak resident set (VmHWM: includes the shared_buffers pages it touched; no target)",
            format!("{:.1} MiB", b.worker_vm_hwm_mib),
            "—".into(),
            None,
            None,
            false,
        ));
    }
    if let Some(fd) = feeder {
        let yard = backlog.map(|b| b.worker_rows_per_second);
        f.push(fig(
            "5",
            "feeder",
            &format!(
                "feeder --burst, {} files of {} events (no target; > 1 means the feeder outpaces the worker)",
                fd.files,
                fd.events / fd.files.max(1)
            ),
            format!("{:.0} events/s", fd.events_per_second),
            yard.map_or("—".into(), |y| format!("worker {}", rps(y))),
            yard.map(|y| fd.events_per_second / y),
            None,
            true,
        ));
    }
    if let Some(p) = pipelines {
        for (i, v) in p.variants.iter().enumerate() {
            f.push(fig(
                &format!("6{}", (b'a' + i as u8) as char),
                &format!("pipeline {}", v.name),
                &format!(
                    "pipeline, {} ({} files, {} rows) vs COPY of the plain CSV{}",
                    v.name,
                    v.files,
                    v.rows,
                    if v.round_ratios.len() > 1 {
                        let shown: Vec<String> =
                            v.round_ratios.iter().map(|r| format!("{r:.2}")).collect();
                        format!("; median of {} rounds ({})", shown.len(), shown.join(", "))
                    } else {
                        String::new()
                    }
                ),
                rps(v.rows as f64 / v.pipeline_seconds),
                format!("COPY {}", rps(v.rows as f64 / v.copy_seconds)),
                Some(v.ratio),
                v.target,
                true,
            ));
        }
    }
    if let Some(b) = partitioned {
        f.push(fig(
            "7",
            "partitioned backlog",
            &format!(
                "backlog of {} files ({} rows) into user_events partitioned by month: worker vs COPY into the same partitions; median of {} rounds",
                b.files,
                b.rows,
                b.rounds.len()
            ),
            rps(b.worker_rows_per_second),
            format!("COPY {}", rps(b.copy_rows_per_second)),
            Some(b.ratio),
            Some(0.9),
            true,
        ));
    }
    if let Some(q) = time_queries {
        f.push(fig(
            "8a",
            "events per hour",
            &format!(
                "reference query \"events per hour\" over {} rows, with a BRIN index on event_timestamp vs without (the whole table: no index helps; median of 5)",
                q.rows
            ),
            ms(q.events_per_hour_brin_ms),
            format!("without {}", ms(q.events_per_hour_ms)),
            Some(q.events_per_hour_brin_ms / q.events_per_hour_ms),
            None,
            false,
        ));
        f.push(fig(
            "8b",
            "revenue last hour",
            &format!(
                "revenue_per_minute_last_hour over {} rows, with a BRIN index ({:.0} kB for a {:.0} MiB table) vs without (median of 5)",
                q.rows, q.brin_kib, q.table_mib
            ),
            ms(q.revenue_last_hour_brin_ms),
            format!("without {}", ms(q.revenue_last_hour_ms)),
            Some(q.revenue_last_hour_brin_ms / q.revenue_last_hour_ms),
            None,
            false,
        ));
        f.push(fig(
            "8c",
            "ingestion with BRIN",
            &format!(
                "worker time for a backlog of {} rows appended with the BRIN index vs without (median of 2 rounds each)",
                q.backlog_rows
            ),
            format!("{:.2} s", q.ingest_brin_seconds),
            format!("without {:.2} s", q.ingest_seconds),
            Some(q.ingest_brin_seconds / q.ingest_seconds),
            None,
            false,
        ));
    }
    for (w, letter) in workers.iter().zip(["a", "b", "c", "d"]) {
        let b = &w.throughput;
        f.push(fig(
            &format!("9{letter}"),
            &format!("{} worker(s)", w.workers),
            &format!(
                "backlog of {} files ({} rows) with {} worker(s) (ecommerce_ingest.workers) vs COPY by one session; {:.2}x one worker; median of {} rounds",
                b.files,
                b.rows,
                w.workers,
                w.speedup,
                b.rounds.len()
            ),
            rps(b.worker_rows_per_second),
            format!("COPY {}", rps(b.copy_rows_per_second)),
            Some(b.ratio),
            None,
            true,
        ));
    }
    f
}

fn target_text(f: &Figure) -> String {
    match f.target {
        Some(t) if f.higher_is_better => format!("≥ {t:.1}"),
        Some(t) => format!("≤ {t:.1}"),
        None => "—".into(),
    }
}

pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmark results\n");
    let _ = writeln!(
        s,
        "Produced by `scripts/bench.sh{}` ({} mode) on {}; the run took {:.0} s.\n",
        if r.mode == "short" { " --short" } else { "" },
        r.mode,
        r.date,
        r.duration_seconds
    );
    let _ = writeln!(
        s,
        "Machine: {} CPUs (`nproc`), {}, {:.1} GiB RAM, {}.\n",
        r.machine.nproc, r.machine.cpu_model, r.machine.ram_gib, r.machine.postgres
    );
    let _ = writeln!(
        s,
        "Every figure is measured in the same run as its yardstick; ratio = measured ÷ yardstick.\n"
    );
    let _ = writeln!(
        s,
        "| # | figure | measured | yardstick (same run) | ratio | target | met |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- |");
    for f in &r.figures {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            f.id,
            f.name,
            f.measured,
            f.yardstick,
            f.ratio.map_or("—".into(), |v| format!("{v:.2}")),
            target_text(f),
            match f.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            }
        );
    }
    if let Some(b) = r.backlog.as_ref().filter(|b| b.rounds.len() > 1) {
        let list: Vec<String> = b
            .rounds
            .iter()
            .map(|x| {
                format!(
                    "{:.2} ({:.2} s / {:.2} s)",
                    x.ratio, x.worker_seconds, x.copy_seconds
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "\nBacklog (figure 1): {} rounds, each the worker then COPY on the same files (under new names, \
             into emptied tables); the table shows the median round. Every round, ratio (worker / COPY): {}.",
            b.rounds.len(),
            list.join(", ")
        );
    }
    if let Some(l) = &r.latency {
        let n = l.samples_ms.len() / 5;
        if n > 0 {
            let first = crate::util::median(&l.samples_ms[..n]);
            let last = crate::util::median(&l.samples_ms[l.samples_ms.len() - n..]);
            let _ = writeln!(
                s,
                "\nLatency (figure 2) over the run: median {} for the first fifth of the files, {} for the last fifth \
                 (the files stay in the folder: a growth means a cost that grows with the folder).",
                ms(first),
                ms(last)
            );
        }
    }
    if let Some(h) = &r.history {
        let _ = writeln!(
            s,
            "\nHistory: {} files of {} rows ingested by the worker in {:.1} s (synchronous_commit off during that setup only). \
             `ingest_status()` took {:.2} ms with the history, {:.2} ms with the empty folder (median of {STATUS_CALLS} calls).",
            h.history_files,
            h.history_rows / h.history_files.max(1),
            h.load_seconds,
            h.with_history.status_call_ms,
            h.empty.status_call_ms
        );
    }
    if let Some(b) = &r.big_file {
        let _ = writeln!(
            s,
            "\nBig file: worker {:.1} s, COPY {:.1} s; worker RssAnon {:.1} MiB before, {:.1} MiB at most ({} samples); VmHWM {:.1} MiB.",
            b.throughput.worker_seconds,
            b.throughput.copy_seconds,
            b.worker_rss_anon_before_mib,
            b.worker_rss_anon_max_mib,
            b.memory_samples,
            b.worker_vm_hwm_mib
        );
    }
    let _ = writeln!(
        s,
        "\nCharts: `ratios.svg` (every ratio against its target), `latency.svg` (latency histogram of figure 2). Raw numbers: `results.json`."
    );
    s
}

/// A plain-text table for the terminal.
pub fn text_table(r: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<5} {:<24} {:>18} {:>28} {:>7} {:>7} {:>4}",
        "#", "figure", "measured", "yardstick (same run)", "ratio", "target", "met"
    );
    for f in &r.figures {
        let _ = writeln!(
            s,
            "{:<5} {:<24} {:>18} {:>28} {:>7} {:>7} {:>4}",
            f.id,
            f.label,
            f.measured,
            f.yardstick,
            f.ratio.map_or("—".into(), |v| format!("{v:.2}")),
            target_text(f),
            match f.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "—",
            }
        );
    }
    s
}

type DrawResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn draw_err<E: std::fmt::Debug>(e: E) -> Box<dyn std::error::Error + Send + Sync> {
    format!("chart: {e:?}").into()
}

/// Bar chart of the ratios that have a target, with the target of each bar as a red line.
pub fn ratios_chart(r: &Results, path: &Path) -> DrawResult {
    let bars: Vec<&Figure> = r
        .figures
        .iter()
        .filter(|f| f.ratio.is_some_and(|v| v.is_finite() && v > 0.0) && f.target.is_some())
        .collect();
    if bars.is_empty() {
        return Ok(());
    }
    let vals = bars
        .iter()
        .flat_map(|f| [f.ratio.unwrap_or(1.0), f.target.unwrap_or(1.0)]);
    let (lo, hi) = vals.fold((1.0f64, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = (lo / 3.0, hi * 3.0);
    let n = bars.len();
    let root = SVGBackend::new(path, (160 * n as u32 + 120, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "ecommerce_ingest: measured ÷ yardstick ({} run, {})",
                r.mode, r.date
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n as f64, (lo..hi).log_scale())
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc("ratio (log scale); red line: target; green: met, orange: not met")
        .y_label_formatter(&|v| format!("{v:.2}"))
        .draw()
        .map_err(draw_err)?;
    for (i, f) in bars.iter().enumerate() {
        let v = f.ratio.unwrap_or(1.0);
        let t = f.target.unwrap_or(1.0);
        let x = i as f64;
        let color = if f.met == Some(true) {
            RGBColor(60, 160, 90)
        } else {
            RGBColor(230, 130, 40)
        };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x + 0.2, lo), (x + 0.8, v)],
                color.filled(),
            )))
            .map_err(draw_err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x + 0.08, t), (x + 0.92, t)],
                RED.stroke_width(3),
            )))
            .map_err(draw_err)?;
        let style = TextStyle::from(("sans-serif", 14).into_font())
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{v:.2}"),
                (x + 0.5, v * 1.08),
                style.clone(),
            )))
            .map_err(draw_err)?;
        let dir = if f.higher_is_better { "≥" } else { "≤" };
        // Labels under the axis, in pixels of the whole picture.
        let (px, py) = chart.backend_coord(&(x + 0.5, lo));
        let label_style =
            TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(
            f.label.clone(),
            (px, py + 8),
            label_style.clone(),
        ))
        .map_err(draw_err)?;
        root.draw(&Text::new(
            format!("target {dir} {t:.1}"),
            (px, py + 26),
            label_style,
        ))
        .map_err(draw_err)?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

/// Histogram of the latencies of figure 2, with p50, p99 and the targets.
pub fn latency_chart(l: &Latency, mode: &str, path: &Path) -> DrawResult {
    if l.samples_ms.is_empty() {
        return Ok(());
    }
    let top = (l.p99_ms * 1.5).max(60.0).min(l.max_ms.max(60.0));
    let bins = 60usize;
    let width = top / bins as f64;
    let mut counts = vec![0u32; bins];
    let mut over = 0u32;
    for &v in &l.samples_ms {
        let b = (v.max(0.0) / width) as usize;
        if b < bins {
            counts[b] += 1;
        } else {
            over += 1;
        }
    }
    let ymax = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.15;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "latency rename → commit, {} files of 10 rows at {}/s ({mode} run){}",
                l.files,
                l.rate_per_second,
                if over > 0 {
                    format!("; {over} beyond {top:.0} ms")
                } else {
                    String::new()
                }
            ),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..top, 0f64..ymax)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("ms")
        .y_desc("files")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(draw_err)?;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, &c)| {
            let x0 = i as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], BLUE.mix(0.6).filled())
        }))
        .map_err(draw_err)?;
    let lines = [
        (
            l.p50_ms,
            format!("p50 {:.2} ms", l.p50_ms),
            RGBColor(20, 130, 60),
        ),
        (
            l.p99_ms,
            format!("p99 {:.2} ms", l.p99_ms),
            RGBColor(120, 40, 160),
        ),
        (10.0, "target p50 10 ms".into(), RED),
        (50.0, "target p99 50 ms".into(), RGBColor(200, 60, 60)),
    ];
    for (x, label, color) in lines {
        if x <= top {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, ymax)],
                    color.stroke_width(2),
                )))
                .map_err(draw_err)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)?;
    Ok(())
}

pub fn write_all(r: &Results, out: &Path) -> R<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("results.md"), markdown(r))?;
    let mut json = serde_json::to_string_pretty(r)?;
    json.push('\n');
    std::fs::write(out.join("results.json"), json)?;
    ratios_chart(r, &out.join("ratios.svg"))?;
    if let Some(l) = &r.latency {
        latency_chart(l, &r.mode, &out.join("latency.svg"))?;
    }
    Ok(())
}
