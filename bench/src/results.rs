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
const TABLE_METRICS: [&str; 23] = [
    "offered_per_s",
    "listen_overflows",
    "ops_per_s",
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
];

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
    let _ = writeln!(
        s,
        "| scenario | variant | metric | tally | redis-lua | redis-set | tally vs lua | tally vs set |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for k in &order {
        let row = &by[k];
        let cell = |t: &str| {
            row.get(t)
                .map_or("–".to_string(), |e| fmt_num(e.median, &e.unit))
        };
        let unit = row.values().next().map_or("", |e| e.unit.as_str());
        let tally_cell = row
            .get("tally")
            .map_or("–".into(), |e| fmt_num(e.median, &e.unit));
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
        let _ = writeln!(
            s,
            "| {} | {} | {} ({unit}) | {} | {} | {} | {} | {} |",
            k.0,
            k.1,
            k.2,
            tally_cell,
            lua_cell,
            cell("redis-set"),
            ratio(row.get("redis-lua").or_else(|| row.get("redis"))),
            ratio(row.get("redis-set")),
        );
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
}
