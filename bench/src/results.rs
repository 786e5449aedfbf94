//! Result files: the JSON a run writes, its Markdown table, and `compare`,
//! which flags regressions beyond the noise the runs themselves show.
//!
//! Each measured quantity is an [`Entry`]: scenario, variant, target,
//! metric, and the value of every repetition. Its noise is the relative
//! spread of those values, `(max - min) / median`. `compare` calls a metric
//! regressed when its median moved the wrong way by more than
//! `max(floor, spread of A, spread of B)` (floor 5 % unless told). Only
//! tally's own figures can regress; a baseline (Redis, the Mutex/DashMap
//! tables) that moved is reported as a sign the machine changed.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Throughput.
    Higher,
    /// Latency, memory.
    Lower,
    /// A count, for the record: never compared.
    None,
}

/// One measured quantity over the repetitions of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// Scenario name (`steady`, `renew`, ...).
    pub scenario: String,
    /// Variant inside it (`closed 50x1`, `1000000 lingers`, ...).
    pub variant: String,
    /// `tally`, `redis-lua`, `redis-set`, `redis`.
    pub target: String,
    /// Metric name (`ops_per_s`, `p99_us`, ...).
    pub metric: String,
    /// Unit for humans.
    pub unit: String,
    /// Which way is better.
    pub better: Better,
    /// One value per repetition.
    pub values: Vec<f64>,
    /// Median of `values`.
    pub median: f64,
    /// Relative spread `(max - min) / median` of `values` (0 for one
    /// value), or a noise estimate given by the source (criterion's
    /// confidence interval).
    pub spread: f64,
}

impl Entry {
    /// The key `compare` matches entries on.
    pub fn key(&self) -> String {
        format!(
            "{} | {} | {} | {}",
            self.scenario, self.variant, self.target, self.metric
        )
    }

    /// Recomputes median and spread from `values`.
    pub fn settle(&mut self) {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return;
        }
        let n = v.len();
        self.median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        if n > 1 && self.median.abs() > f64::EPSILON {
            self.spread = (v[n - 1] - v[0]) / self.median.abs();
        }
    }
}

/// A scenario not run, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    /// Scenario (and part) skipped.
    pub scenario: String,
    /// Why, and what would make it run.
    pub reason: String,
}

/// The machine a run was taken on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// `nproc`.
    pub nproc: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// Kernel release.
    pub kernel: String,
    /// Memory in GiB.
    pub mem_gib: f64,
}

impl Machine {
    /// Reads this machine's description.
    pub fn here() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|s| s.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let mem_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            kernel,
            mem_gib,
        }
    }
}

/// A result file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Format version.
    pub schema: u32,
    /// UTC date and time of the run.
    pub date: String,
    /// `git rev-parse --short HEAD` (with `-dirty` if the tree was).
    pub git_sha: String,
    /// The command that made it.
    pub command: String,
    /// True for a `--quick` run (small sizes, not for comparison).
    pub quick: bool,
    /// Repetitions per measurement.
    pub reps: usize,
    /// Where it ran.
    pub machine: Machine,
    /// How cores were split between servers and generator.
    pub placement: String,
    /// Every measured quantity.
    pub entries: Vec<Entry>,
    /// Scenarios not run, with reasons.
    pub skipped: Vec<Skipped>,
    /// Remarks printed with the table.
    pub notes: Vec<String>,
    /// Latency distributions behind the percentile entries, for the HTML
    /// report's plots (absent in files written before schema 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distributions: Vec<Distribution>,
}

/// The quantiles a [`Ladder`] keeps: deciles, then ever more nines up to
/// the maximum (1.0).
pub const LADDER_QUANTILES: [f64; 22] = [
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999,
    0.9995, 0.9998, 0.9999, 0.99995, 0.99999, 1.0,
];

/// A compact latency distribution: the value at each of a fixed set of
/// quantiles (a percentile ladder), read from an HDR histogram.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ladder {
    /// Samples recorded.
    pub count: u64,
    /// Quantiles, ascending (0 = min, 1 = max).
    pub q: Vec<f64>,
    /// The value at each quantile, in the [`Distribution`]'s unit.
    pub v: Vec<f64>,
}

impl Ladder {
    /// The ladder of histogram `h` at [`LADDER_QUANTILES`], values divided
    /// by `scale` (1000 for a histogram in ns and a ladder in µs).
    pub fn from_histogram(h: &hdrhistogram::Histogram<u64>, scale: f64) -> Ladder {
        if h.is_empty() {
            return Ladder::default();
        }
        let v = LADDER_QUANTILES
            .iter()
            .map(|&q| {
                if q >= 1.0 {
                    h.max() as f64 / scale
                } else {
                    h.value_at_quantile(q) as f64 / scale
                }
            })
            .collect();
        Ladder {
            count: h.len(),
            q: LADDER_QUANTILES.to_vec(),
            v,
        }
    }

    /// The value at quantile `q`, interpolated linearly between the
    /// ladder's steps (exact at them); `None` for an empty ladder.
    pub fn at(&self, q: f64) -> Option<f64> {
        let n = self.q.len().min(self.v.len());
        if n == 0 {
            return None;
        }
        let i = self.q[..n].partition_point(|&x| x < q);
        if i == 0 {
            return Some(self.v[0]);
        }
        if i >= n {
            return Some(self.v[n - 1]);
        }
        if self.q[i] == q {
            return Some(self.v[i]);
        }
        let (q0, q1, v0, v1) = (self.q[i - 1], self.q[i], self.v[i - 1], self.v[i]);
        if q1 <= q0 {
            return Some(v1);
        }
        Some(v0 + (v1 - v0) * (q - q0) / (q1 - q0))
    }

    /// The step-by-step median of several ladders of the same quantiles
    /// (the curve the report draws for a figure's repetitions).
    pub fn median_of(ls: &[Ladder]) -> Ladder {
        let ls: Vec<&Ladder> = ls.iter().filter(|l| !l.v.is_empty()).collect();
        let Some(first) = ls.first() else {
            return Ladder::default();
        };
        let q = first.q.clone();
        let v = (0..q.len())
            .map(|i| {
                let mut col: Vec<f64> = ls.iter().filter_map(|l| l.v.get(i).copied()).collect();
                col.sort_by(f64::total_cmp);
                let n = col.len();
                if n % 2 == 1 {
                    col[n / 2]
                } else {
                    (col[n / 2 - 1] + col[n / 2]) / 2.0
                }
            })
            .collect();
        let mut counts: Vec<u64> = ls.iter().map(|l| l.count).collect();
        counts.sort_unstable();
        Ladder {
            count: counts[counts.len() / 2],
            q,
            v,
        }
    }
}

/// The latency distribution of one measurement (scenario, variant,
/// target): one ladder per repetition, and for small measurements (the
/// expiry rounds) the raw samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Distribution {
    /// Scenario name, as in its [`Entry`]s.
    pub scenario: String,
    /// Variant, as in its entries.
    pub variant: String,
    /// Target, as in its entries.
    pub target: String,
    /// Unit of the values (`µs`, `ms`).
    pub unit: String,
    /// One ladder per repetition.
    pub ladders: Vec<Ladder>,
    /// Every sample, when there are few (expiry lateness), for histograms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<f64>,
}

/// A report as the text of a result file: pretty-printed, except that each
/// [`Distribution`] takes one line (their hundreds of numbers would
/// otherwise take one line each and triple the file).
pub fn to_json(r: &Report) -> Result<String, String> {
    let rest = Report {
        distributions: Vec::new(),
        ..r.clone()
    };
    let mut text = serde_json::to_string_pretty(&rest).map_err(|e| e.to_string())?;
    if !r.distributions.is_empty() {
        let lines = r
            .distributions
            .iter()
            .map(|d| serde_json::to_string(d).map(|l| format!("    {l}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        // The pretty text ends with "\n}": the field goes before it.
        let end = text
            .rfind('}')
            .ok_or_else(|| "report did not serialize to an object".to_string())?;
        text.truncate(end);
        let body = text.trim_end().to_string();
        text = format!(
            "{body},\n  \"distributions\": [\n{}\n  ]\n}}",
            lines.join(",\n")
        );
    }
    text.push('\n');
    Ok(text)
}

/// Reads a result file.
pub fn load(path: &std::path::Path) -> Result<Report, String> {
    let s = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&s).map_err(|e| format!("{}: not a result file: {e}", path.display()))
}

fn fmt_num(v: f64, unit: &str) -> String {
    let big = |v: f64| {
        let s = format!("{:.0}", v);
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 && ch != '-' {
                out.push(',');
            }
            out.push(ch);
        }
        out
    };
    match unit {
        "req/s" | "B" | "conns" | "clients" | "count" => big(v),
        _ if v >= 100.0 => big(v),
        _ if v >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

/// Metrics the main table shows, in order.
const TABLE_METRICS: [&str; 35] = [
    "offered_per_s",
    "listen_overflows",
    "ops_per_s",
    "cpu_us_per_req",
    "cpu_ratio",
    "p50_us",
    "p99_us",
    "p999_us",
    "max_us",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "bytes_per_held",
    "bytes_per_conn",
    "serves_request",
    "p50_ratio",
    "p99_ratio",
    "p999_ratio",
    "max_ratio",
    "reply_bytes",
    "replies_per_s",
    "throughput_ratio",
    "scrape_ms",
    "scrape_bytes",
    "early",
    "hold_s",
    "rss_bytes",
    "peak_rss_bytes",
    "status_summary_ms",
    "status_page_ms",
    "recovery_s",
    "held_after_recovery",
    "rss_after_recovery_bytes",
    "bytes_per_seat",
];

/// The rows of the main table: scenario, variant, `metric (unit)`, tally,
/// redis-lua (or the one `redis`), redis-set, and the two ratios (> 1:
/// tally better), for the Markdown and the HTML report alike.
pub fn table_rows(r: &Report) -> Vec<[String; 8]> {
    // (scenario, variant, metric) -> target -> entry, in first-seen order.
    let mut order: Vec<(String, String, String)> = Vec::new();
    let mut by: BTreeMap<(String, String, String), BTreeMap<String, &Entry>> = BTreeMap::new();
    for e in r.entries.iter().filter(|e| e.scenario != "criterion") {
        if !TABLE_METRICS.contains(&e.metric.as_str()) {
            continue;
        }
        let k = (e.scenario.clone(), e.variant.clone(), e.metric.clone());
        if !by.contains_key(&k) {
            order.push(k.clone());
        }
        by.entry(k).or_default().insert(e.target.clone(), e);
    }
    let mut rows = Vec::new();
    for k in &order {
        let row = &by[k];
        let cell = |t: &str| {
            row.get(t)
                .map_or("–".to_string(), |e| fmt_num(e.median, &e.unit))
        };
        let unit = row.values().next().map_or("", |e| e.unit.as_str());
        // Idle connections: one Redis server; show it in the Lua column.
        let lua_cell = row
            .get("redis-lua")
            .or_else(|| row.get("redis"))
            .map_or("–".into(), |e| fmt_num(e.median, &e.unit));
        let ratio = |other: Option<&&Entry>| -> String {
            let (Some(t), Some(o)) = (row.get("tally"), other) else {
                return String::new();
            };
            if t.median <= 0.0 || o.median <= 0.0 {
                return String::new();
            }
            match t.better {
                Better::Higher => format!("{:.2}×", t.median / o.median),
                Better::Lower => format!("{:.2}×", o.median / t.median),
                Better::None => String::new(),
            }
        };
        rows.push([
            k.0.clone(),
            k.1.clone(),
            format!("{} ({unit})", k.2),
            cell("tally"),
            lua_cell,
            cell("redis-set"),
            ratio(row.get("redis-lua").or_else(|| row.get("redis"))),
            ratio(row.get("redis-set")),
        ]);
    }
    rows
}

/// The Markdown tables of a report: tally vs redis-lua vs redis-set with
/// ratios (> 1 means tally is better), the counts, criterion, skips.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Run {} at {} ({}{}), {} repetition(s) per figure (median shown).\n",
        r.git_sha,
        r.date,
        r.command,
        if r.quick {
            ", QUICK: smoke sizes, not figures"
        } else {
            ""
        },
        r.reps
    );
    let _ = writeln!(
        s,
        "Machine: {} cores, {}, {:.0} GiB, Linux {}. {}\n",
        r.machine.nproc, r.machine.cpu, r.machine.mem_gib, r.machine.kernel, r.placement
    );
    let _ = writeln!(
        s,
        "| scenario | variant | metric | tally | redis-lua | redis-set | tally vs lua | tally vs set |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for row in table_rows(r) {
        let _ = writeln!(s, "| {} |", row.join(" | "));
    }
    let _ = writeln!(
        s,
        "\nRatios: > 1 means tally is better (higher throughput, or lower latency/memory).\n"
    );
    // Counts.
    let mut counts: BTreeMap<(String, String, String), [f64; 3]> = BTreeMap::new();
    let mut corder = Vec::new();
    for e in &r.entries {
        let i = match e.metric.as_str() {
            "ok" => 0,
            "denied" => 1,
            "err" => 2,
            _ => continue,
        };
        let k = (e.scenario.clone(), e.variant.clone(), e.target.clone());
        if !counts.contains_key(&k) {
            corder.push(k.clone());
        }
        counts.entry(k).or_default()[i] = e.values.iter().sum();
    }
    if !corder.is_empty() {
        let _ = writeln!(s, "Replies counted (sum over repetitions):\n");
        let _ = writeln!(s, "| scenario | variant | target | OK | DENIED | ERR |");
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for k in &corder {
            let c = counts[k];
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                k.0,
                k.1,
                k.2,
                fmt_num(c[0], "count"),
                fmt_num(c[1], "count"),
                fmt_num(c[2], "count")
            );
        }
        let _ = writeln!(s);
    }
    let crit: Vec<&Entry> = r
        .entries
        .iter()
        .filter(|e| e.scenario == "criterion")
        .collect();
    if !crit.is_empty() {
        let _ = writeln!(s, "Criterion (in process, median time per iteration):\n");
        let _ = writeln!(s, "| bench | median | ± (95 % CI, relative) |");
        let _ = writeln!(s, "|---|---|---|");
        for e in crit {
            let _ = writeln!(
                s,
                "| {} | {} {} | {:.1} % |",
                e.variant,
                fmt_num(e.median, &e.unit),
                e.unit,
                e.spread * 50.0
            );
        }
        let _ = writeln!(s);
    }
    for k in &r.skipped {
        let _ = writeln!(s, "- **skipped** {}: {}", k.scenario, k.reason);
    }
    for n in &r.notes {
        let _ = writeln!(s, "- {n}");
    }
    s
}

/// Short names a figure selector may use for a metric.
const METRIC_ALIASES: [(&str, &str); 5] = [
    ("throughput", "ops_per_s"),
    ("cpu", "cpu_us_per_req"),
    ("memory", "bytes_per_held"),
    ("p99", "p99_us"),
    ("p50", "p50_us"),
];

/// Finds the entry a figure selector names in `r`.
///
/// A selector is either an entry's full key (`steady | closed 50x1 | tally
/// | ops_per_s`) or `SCENARIO/VARIANT/TARGET/METRIC`, where VARIANT is any
/// part of the variant's name (`50x1`), and METRIC a metric name, its
/// prefix before a unit (`p99` for `p99_us`) or an alias (`throughput`,
/// `cpu`, `memory`). `Ok(None)`: the file has no such figure;
/// `Err`: the selector is malformed or matches several entries.
pub fn find_figure<'a>(r: &'a Report, sel: &str) -> Result<Option<&'a Entry>, String> {
    if sel.contains(" | ") {
        return Ok(r.entries.iter().find(|e| e.key() == sel));
    }
    let parts: Vec<&str> = sel.split('/').collect();
    let [scenario, variant, target, metric] = parts[..] else {
        return Err(format!(
            "figure {sel:?}: want SCENARIO/VARIANT/TARGET/METRIC (e.g. steady/50x1/tally/throughput) or an entry's key"
        ));
    };
    let metric = METRIC_ALIASES
        .iter()
        .find(|(a, _)| *a == metric)
        .map_or(metric, |(_, m)| m);
    let hits: Vec<&Entry> = r
        .entries
        .iter()
        .filter(|e| {
            e.scenario == scenario
                && e.variant.contains(variant)
                && e.target == target
                && (e.metric == metric
                    || e.metric
                        .strip_prefix(metric)
                        .is_some_and(|u| u.starts_with('_')))
        })
        .collect();
    match hits[..] {
        [] => Ok(None),
        [e] => Ok(Some(e)),
        _ => {
            // One exact variant name wins over the ones containing it.
            let exact: Vec<&&Entry> = hits.iter().filter(|e| e.variant == variant).collect();
            if let [e] = exact[..] {
                return Ok(Some(e));
            }
            Err(format!(
                "figure {sel:?} matches {} entries: {}",
                hits.len(),
                hits.iter()
                    .map(|e| format!("{:?}", e.key()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
}

/// One result file's value of a figure, for a trend.
#[derive(Debug, Clone)]
pub struct TrendPoint {
    /// The file it came from.
    pub file: String,
    /// Its run's date.
    pub date: String,
    /// Its run's commit.
    pub git_sha: String,
    /// A `--quick` run.
    pub quick: bool,
    /// The figure there (`None`: not measured in that file).
    pub entry: Option<Entry>,
}

/// A figure across result files, in the order given; the files are sorted
/// by the caller (by name, i.e. by date, for `bench/results/*.json`).
pub fn trend(files: &[(String, Report)], sel: &str) -> Result<Vec<TrendPoint>, String> {
    let mut out = Vec::new();
    for (name, r) in files {
        let entry = find_figure(r, sel).map_err(|e| format!("{name}: {e}"))?;
        out.push(TrendPoint {
            file: name.clone(),
            date: r.date.clone(),
            git_sha: r.git_sha.clone(),
            quick: r.quick,
            entry: entry.cloned(),
        });
    }
    if out.iter().all(|p| p.entry.is_none()) {
        return Err(format!(
            "figure {sel:?}: in none of the {} file(s)",
            files.len()
        ));
    }
    Ok(out)
}

/// The Markdown table of a trend: each file's median, spread and change
/// against the first file that has the figure (+ = better).
pub fn trend_table(sel: &str, points: &[TrendPoint]) -> String {
    let mut s = String::new();
    let first = points.iter().find_map(|p| p.entry.as_ref());
    if let Some(e) = first {
        let _ = writeln!(
            s,
            "Figure: {} ({}, {} is better)\n",
            e.key(),
            e.unit,
            match e.better {
                Better::Higher => "higher",
                Better::Lower => "lower",
                Better::None => "neither",
            }
        );
    } else {
        let _ = writeln!(s, "Figure: {sel}\n");
    }
    let _ = writeln!(s, "| file | date | commit | median | spread | vs first |");
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for p in points {
        let (med, spread, vs) = match (&p.entry, first) {
            (Some(e), Some(f)) => {
                let change = if f.median.abs() > f64::EPSILON {
                    (e.median - f.median) / f.median.abs()
                } else {
                    0.0
                };
                let better = match e.better {
                    Better::Lower => -change,
                    _ => change,
                };
                (
                    format!("{} {}", fmt_num(e.median, &e.unit), e.unit),
                    format!("{:.1} %", e.spread * 100.0),
                    format!("{:+.1} %", better * 100.0 + 0.0),
                )
            }
            _ => ("–".into(), String::new(), String::new()),
        };
        let _ = writeln!(
            s,
            "| {}{} | {} | {} | {med} | {spread} | {vs} |",
            p.file,
            if p.quick { " (quick)" } else { "" },
            p.date,
            p.git_sha
        );
    }
    s
}

/// One line of a comparison.
#[derive(Debug, Clone)]
pub struct Delta {
    /// Entry key.
    pub key: String,
    /// Median in A and in B.
    pub a: f64,
    /// Median in B.
    pub b: f64,
    /// Relative change towards worse (positive = worse).
    pub worse_by: f64,
    /// Noise threshold used.
    pub threshold: f64,
}

/// Result of comparing two reports.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    /// Metrics worse beyond the threshold.
    pub regressions: Vec<Delta>,
    /// Metrics better beyond the threshold.
    pub improvements: Vec<Delta>,
    /// Metrics within noise.
    pub unchanged: usize,
    /// Keys only in A (not measured in B).
    pub missing_in_b: Vec<String>,
    /// Baseline figures (Redis, the in-process Mutex/DashMap tables) that
    /// moved beyond their noise: not regressions of tally, but a sign the
    /// machine itself changed between the runs.
    pub baseline_moved: Vec<Delta>,
}

/// True if an entry measures tally itself (not a baseline).
pub fn is_tally(e: &Entry) -> bool {
    match e.target.as_str() {
        "tally" => true,
        "in-process" => {
            let v = e.variant.to_ascii_lowercase();
            !v.contains("mutex") && !v.contains("dashmap")
        }
        _ => false,
    }
}

/// Compares B (new) against A (old).
pub fn compare(a: &Report, b: &Report, floor: f64) -> Comparison {
    let bmap: BTreeMap<String, &Entry> = b.entries.iter().map(|e| (e.key(), e)).collect();
    let mut out = Comparison::default();
    for ea in &a.entries {
        if ea.better == Better::None {
            continue;
        }
        let Some(eb) = bmap.get(&ea.key()) else {
            out.missing_in_b.push(ea.key());
            continue;
        };
        if ea.median.abs() < f64::EPSILON {
            continue;
        }
        let change = (eb.median - ea.median) / ea.median.abs();
        let worse_by = match ea.better {
            Better::Higher => -change,
            _ => change,
        };
        let threshold = floor.max(ea.spread).max(eb.spread);
        let d = Delta {
            key: ea.key(),
            a: ea.median,
            b: eb.median,
            worse_by,
            threshold,
        };
        if !is_tally(ea) {
            if worse_by.abs() > threshold {
                out.baseline_moved.push(d);
            } else {
                out.unchanged += 1;
            }
        } else if worse_by > threshold {
            out.regressions.push(d);
        } else if -worse_by > threshold {
            out.improvements.push(d);
        } else {
            out.unchanged += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(metric: &str, better: Better, values: &[f64]) -> Entry {
        let mut e = Entry {
            scenario: "steady".into(),
            variant: "closed 50x1".into(),
            target: "tally".into(),
            metric: metric.into(),
            unit: "req/s".into(),
            better,
            values: values.to_vec(),
            median: 0.0,
            spread: 0.0,
        };
        e.settle();
        e
    }

    #[test]
    fn median_and_spread() {
        let e = entry("ops_per_s", Better::Higher, &[90.0, 100.0, 110.0]);
        assert_eq!(e.median, 100.0);
        assert!((e.spread - 0.2).abs() < 1e-9);
    }

    #[test]
    fn flags_only_changes_beyond_noise() {
        let a = Report {
            entries: vec![
                entry("ops_per_s", Better::Higher, &[100.0, 102.0, 98.0]),
                entry("p99_us", Better::Lower, &[100.0, 101.0, 99.0]),
                entry("ok", Better::None, &[5.0]),
            ],
            ..Report::default()
        };
        // Throughput down 20 % (beyond 5 % floor and 4 % spread): regression.
        // p99 up 3 %: within the 5 % floor.
        let b = Report {
            entries: vec![
                entry("ops_per_s", Better::Higher, &[80.0, 81.0, 79.0]),
                entry("p99_us", Better::Lower, &[103.0, 103.5, 102.5]),
                entry("ok", Better::None, &[1.0]),
            ],
            ..Report::default()
        };
        let c = compare(&a, &b, 0.05);
        assert_eq!(c.regressions.len(), 1);
        assert!(c.regressions[0].key.ends_with("ops_per_s"));
        assert_eq!(c.unchanged, 1);
        // The other way round it is an improvement.
        let c = compare(&b, &a, 0.05);
        assert!(c.regressions.is_empty());
        assert_eq!(c.improvements.len(), 1);
    }

    #[test]
    fn a_baseline_moving_is_not_a_regression() {
        let mut a = entry("ops_per_s", Better::Higher, &[100.0]);
        a.target = "redis-lua".into();
        let mut b = a.clone();
        b.values = vec![50.0];
        b.settle();
        let c = compare(
            &Report {
                entries: vec![a],
                ..Report::default()
            },
            &Report {
                entries: vec![b],
                ..Report::default()
            },
            0.05,
        );
        assert!(c.regressions.is_empty());
        assert_eq!(c.baseline_moved.len(), 1);
    }

    #[test]
    fn wide_spread_raises_the_threshold() {
        let a = Report {
            entries: vec![entry("p99_us", Better::Lower, &[100.0, 150.0, 200.0])],
            ..Report::default()
        };
        let b = Report {
            entries: vec![entry("p99_us", Better::Lower, &[180.0, 180.0, 180.0])],
            ..Report::default()
        };
        // +20 % but A's spread is 66 %: within noise.
        assert!(compare(&a, &b, 0.05).regressions.is_empty());
    }

    #[test]
    fn markdown_has_ratio() {
        let mut t = entry("ops_per_s", Better::Higher, &[200.0]);
        t.unit = "req/s".into();
        let mut l = t.clone();
        l.target = "redis-lua".into();
        l.values = vec![100.0];
        l.settle();
        let r = Report {
            entries: vec![t, l],
            ..Report::default()
        };
        let md = markdown(&r);
        assert!(
            md.contains("| steady | closed 50x1 | ops_per_s (req/s) | 200 | 100 | – | 2.00× |"),
            "{md}"
        );
    }

    #[test]
    fn ladder_round_trips_through_json_and_matches_the_histogram() {
        let mut h = crate::load::histogram();
        // 1..=100,000 ns, and a tail: 20 samples (0.02 %) of 50 ms.
        for v in 1..=100_000u64 {
            h.saturating_record(v);
        }
        for _ in 0..20 {
            h.saturating_record(50_000_000);
        }
        let l = Ladder::from_histogram(&h, 1000.0);
        assert_eq!(l.count, 100_020);
        assert_eq!(l.q, LADDER_QUANTILES.to_vec());
        let json = serde_json::to_string(&l).expect("serialize");
        let back: Ladder = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, l);
        // Exact at its steps: the same figures the entries hold.
        for (&q, &v) in l.q.iter().zip(&l.v) {
            let want = if q >= 1.0 {
                h.max()
            } else {
                h.value_at_quantile(q)
            } as f64
                / 1000.0;
            assert_eq!(back.at(q), Some(want), "q {q}");
            assert_eq!(v, want);
        }
        // The tail is kept: p99.99 and max are the 50 ms samples.
        assert!(back.at(0.9999).expect("p99.99") > 49_000.0);
        assert!(back.at(0.5).expect("p50") < 60.0);
        // Between steps: monotone interpolation.
        let (a, m, b) = (back.at(0.99), back.at(0.992), back.at(0.995));
        assert!(a <= m && m <= b, "{a:?} {m:?} {b:?}");
        assert_eq!(Ladder::default().at(0.5), None);
    }

    #[test]
    fn median_of_ladders_is_taken_step_by_step() {
        let mk = |v: [f64; 3], count| Ladder {
            count,
            q: vec![0.0, 0.5, 1.0],
            v: v.to_vec(),
        };
        let m = Ladder::median_of(&[
            mk([1.0, 10.0, 300.0], 10),
            mk([3.0, 20.0, 100.0], 30),
            mk([2.0, 30.0, 200.0], 20),
        ]);
        assert_eq!(m.v, vec![2.0, 20.0, 200.0]);
        assert_eq!(m.count, 20);
        assert!(Ladder::median_of(&[]).v.is_empty());
    }

    #[test]
    fn a_report_with_distributions_round_trips() {
        let mut h = crate::load::histogram();
        for v in [1_000u64, 2_000, 3_000] {
            h.saturating_record(v);
        }
        let r = Report {
            schema: 2,
            distributions: vec![Distribution {
                scenario: "steady".into(),
                variant: "closed 50x1".into(),
                target: "tally".into(),
                unit: "µs".into(),
                ladders: vec![Ladder::from_histogram(&h, 1000.0)],
                samples: vec![],
            }],
            ..Report::default()
        };
        let back: Report =
            serde_json::from_str(&serde_json::to_string(&r).expect("ser")).expect("de");
        assert_eq!(back.distributions.len(), 1);
        assert_eq!(back.distributions[0].ladders, r.distributions[0].ladders);
        assert!(back.distributions[0].samples.is_empty());
        // The file's text: one line per distribution, and it loads back.
        let mut r2 = r.clone();
        r2.distributions.push(Distribution {
            samples: vec![0.5, 1.5],
            ..r.distributions[0].clone()
        });
        r2.entries = vec![entry("ops_per_s", Better::Higher, &[1.0, 2.0])];
        let text = to_json(&r2).expect("to_json");
        let back: Report = serde_json::from_str(&text).expect("to_json is JSON");
        assert_eq!(back.distributions.len(), 2);
        assert_eq!(back.distributions[1].samples, vec![0.5, 1.5]);
        assert_eq!(back.entries[0].values, vec![1.0, 2.0]);
        assert_eq!(
            text.lines().filter(|l| l.contains("\"ladders\"")).count(),
            2
        );
        assert!(text.ends_with("}\n"));
        // Without distributions: the plain pretty form.
        let plain = Report {
            distributions: Vec::new(),
            ..r2
        };
        assert_eq!(
            to_json(&plain).expect("to_json"),
            serde_json::to_string_pretty(&plain).expect("pretty") + "\n"
        );
    }

    #[test]
    fn every_result_file_in_bench_results_still_loads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
        let mut old = 0;
        for f in std::fs::read_dir(&dir).expect("bench/results") {
            let p = f.expect("entry").path();
            if p.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&p).expect("read");
            let r = load(&p).unwrap_or_else(|e| panic!("{e}"));
            assert!(!r.entries.is_empty(), "{}", p.display());
            if !text.contains("\"distributions\"") {
                assert!(r.distributions.is_empty());
                old += 1;
            }
            // Its table still renders.
            assert!(markdown(&r).contains("| scenario | variant |"));
        }
        assert!(
            old >= 5,
            "only {old} pre-distribution files in {}",
            dir.display()
        );
    }

    #[test]
    fn figure_selectors_find_one_entry() {
        let mut a = entry("ops_per_s", Better::Higher, &[200.0]);
        let mut b = entry("p99_us", Better::Lower, &[50.0]);
        let mut c = a.clone();
        c.variant = "closed 4x32".into();
        let mut d = a.clone();
        d.target = "redis-lua".into();
        a.settle();
        b.settle();
        let r = Report {
            entries: vec![a, b, c, d],
            ..Report::default()
        };
        let key = |sel| find_figure(&r, sel).expect("valid").map(|e| e.key());
        assert_eq!(
            key("steady/50x1/tally/throughput").as_deref(),
            Some("steady | closed 50x1 | tally | ops_per_s")
        );
        assert_eq!(
            key("steady/4x32/tally/ops_per_s").as_deref(),
            Some("steady | closed 4x32 | tally | ops_per_s")
        );
        assert_eq!(
            key("steady/50x1/tally/p99").as_deref(),
            Some("steady | closed 50x1 | tally | p99_us")
        );
        assert_eq!(
            key("steady | closed 50x1 | redis-lua | ops_per_s").as_deref(),
            Some("steady | closed 50x1 | redis-lua | ops_per_s")
        );
        assert_eq!(key("renew/50x1/tally/throughput"), None);
        // "closed" names both loads: ambiguous, said so.
        assert!(find_figure(&r, "steady/closed/tally/throughput").is_err());
        assert!(find_figure(&r, "steady/tally").is_err());
        let files = vec![("a.json".to_string(), r.clone()), ("b.json".to_string(), r)];
        let t = trend(&files, "steady/50x1/tally/throughput").expect("trend");
        assert_eq!(t.len(), 2);
        let table = trend_table("steady/50x1/tally/throughput", &t);
        assert!(table.contains("| a.json |"), "{table}");
        assert!(table.contains("+0.0 %"), "{table}");
        assert!(trend(&files, "renew/50x1/tally/throughput").is_err());
    }
}
