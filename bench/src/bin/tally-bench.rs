//! tally-bench: the one-command benchmark suite and its regression check.
//!
//! ```text
//! tally-bench all [--quick] [--reps 3] [--only steady,renew]   # what bench/run calls
//!     [--tallyd PATH] [--label NAME]                           # another tallyd, file suffix
//! tally-bench compare OLD.json NEW.json [--floor 0.05]         # exit 1 on a regression
//! tally-bench table RESULT.json                               # print its Markdown table
//! tally-bench html RESULT.json [--out PAGE.html]              # (re)make its HTML report
//! tally-bench trend FIGURE FILE.json... [--html PAGE.html]    # one figure across files
//! tally-bench compare --trend FIGURE FILE.json...             # the same
//! ```
//!
//! `all` pins the servers (tallyd with one event loop, redis-server) to
//! core 0 and itself to the other cores with `taskset`, runs every scenario
//! against tally, the Redis Lua semaphore and Redis `SET`, and writes
//! `bench/results/<date>-<git-sha>.json`, `.md` and `.html`.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};
use tally_bench::html;
use tally_bench::results::{self, Machine, Report};
use tally_bench::servers;
use tally_bench::suite::{Suite, SuiteConfig, SCENARIOS};

#[derive(Debug, Parser)]
#[command(
    name = "tally-bench",
    about = "tally's benchmark suite: tally vs a Redis semaphore"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run every scenario (or --only some) and write the result files.
    All {
        /// Short smoke run: small sizes, sub-second durations, no criterion.
        #[arg(long)]
        quick: bool,
        /// Repetitions of each measurement (default 3, or 1 with --quick).
        #[arg(long)]
        reps: Option<usize>,
        /// Comma-separated scenarios to run (default: all).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Do not pin servers and generator to cores.
        #[arg(long)]
        no_pin: bool,
        /// Workspace root (default: the current directory).
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Directory for the result files (default: ROOT/bench/results).
        #[arg(long)]
        out: Option<PathBuf>,
        /// tallyd binary (default: next to this binary; also settable with
        /// TALLY_BENCH_TALLYD), e.g. one built from an older commit.
        #[arg(long)]
        tallyd: Option<PathBuf>,
        /// Appended to the result files' names (`<date>-<sha>-LABEL`), so a
        /// run against another tallyd does not overwrite this tree's.
        #[arg(long)]
        label: Option<String>,
        /// redis-server binary (default: from PATH).
        #[arg(long)]
        redis: Option<PathBuf>,
        /// Open-loop rate, requests/s over 50 connections (default: half
        /// the Redis Lua semaphore's closed-loop 50x1 throughput in this
        /// run; fix it to compare open-loop latency across runs).
        #[arg(long)]
        open_rate: Option<f64>,
    },
    /// Compare two result files; exit 1 if NEW regressed beyond the noise.
    /// With --trend FIGURE: that figure's trend across all the files given.
    Compare {
        /// The older result file.
        old: PathBuf,
        /// The newer result file.
        new: PathBuf,
        /// More result files (only with --trend).
        more: Vec<PathBuf>,
        /// Smallest relative change ever called a regression.
        #[arg(long, default_value_t = 0.05)]
        floor: f64,
        /// Show this figure's trend across the files instead (see `trend`).
        #[arg(long)]
        trend: Option<String>,
        /// With --trend: also write the trend plot to this HTML file.
        #[arg(long, requires = "trend")]
        html: Option<PathBuf>,
    },
    /// Print the Markdown table of a result file.
    Table {
        /// A result file.
        file: PathBuf,
    },
    /// Write a result file's HTML report (plots and the figures table).
    Html {
        /// A result file.
        file: PathBuf,
        /// The page (default: the result file with .html).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// One figure across result files (in the order the runs were taken):
    /// a table, and with --html a plot.
    Trend {
        /// SCENARIO/VARIANT/TARGET/METRIC, VARIANT any part of its name and
        /// METRIC a name, its prefix (p99) or throughput, cpu, memory, e.g.
        /// steady/50x1/tally/throughput; or an entry's full key.
        figure: String,
        /// Result files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also write the trend plot to this HTML file.
        #[arg(long)]
        html: Option<PathBuf>,
    },
}

/// Writes `r`'s HTML report to `path`.
fn write_html(r: &Report, path: &Path) -> Result<(), String> {
    let page = html::report(r)?;
    std::fs::write(path, page).map_err(|e| format!("{}: {e}", path.display()))
}

fn trend(figure: &str, files: &[PathBuf], html_out: Option<&Path>) -> Result<bool, String> {
    let mut reports = Vec::new();
    for f in files {
        let name = f.file_name().map_or_else(
            || f.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        reports.push((name, results::load(f)?));
    }
    // In the order the runs were taken ("YYYY-MM-DD HH:MM UTC" sorts as
    // text; the file names alone put two runs of one day in commit order).
    reports.sort_by(|a, b| a.1.date.cmp(&b.1.date));
    let points = results::trend(&reports, figure)?;
    println!("{}", results::trend_table(figure, &points));
    if let Some(out) = html_out {
        let page = html::trend(figure, &points)?;
        std::fs::write(out, page).map_err(|e| format!("{}: {e}", out.display()))?;
        println!("wrote {}", out.display());
    }
    Ok(true)
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let o = Command::new("git")
        .current_dir(root)
        .args(args)
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn pin_self(cores: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", cores, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[allow(clippy::too_many_arguments)]
fn all(
    quick: bool,
    reps: Option<usize>,
    only: Vec<String>,
    no_pin: bool,
    root: PathBuf,
    out: Option<PathBuf>,
    tallyd: Option<PathBuf>,
    label: Option<String>,
    redis: Option<PathBuf>,
    open_rate: Option<f64>,
) -> Result<(), String> {
    if let Some(l) = &label {
        if l.is_empty()
            || !l
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(format!(
                "--label {l:?}: use letters, digits, '-' and '.' (it goes into a file name)"
            ));
        }
    }
    for o in &only {
        if !SCENARIOS.contains(&o.as_str()) {
            return Err(format!(
                "--only: no scenario {o:?} (have: {})",
                SCENARIOS.join(", ")
            ));
        }
    }
    let machine = Machine::here();
    let tallyd = tallyd.or_else(|| std::env::var_os("TALLY_BENCH_TALLYD").map(PathBuf::from));
    let given_tallyd = tallyd.is_some();
    let tallyd = match tallyd {
        Some(p) => p,
        None => servers::default_tallyd()?,
    };
    if !tallyd.is_file() {
        return Err(format!(
            "{} not found: build it with cargo build --release -p tally-server",
            tallyd.display()
        ));
    }
    let redis = redis.or_else(servers::find_redis);
    let place;
    let placement_text;
    if !no_pin && machine.nproc >= 2 && servers::have_taskset() {
        let gen = if machine.nproc == 2 {
            "1".to_string()
        } else {
            format!("1-{}", machine.nproc - 1)
        };
        if pin_self(&gen) {
            place = servers::Placement {
                server_core: Some(0),
            };
            placement_text = format!(
                "Pinned with taskset: tallyd (--workers 1) and redis-server share core 0 (one at a time), the load generator runs on core(s) {gen}."
            );
        } else {
            place = servers::Placement { server_core: None };
            placement_text =
                "Not pinned (taskset -p failed): servers and generator share all cores.".into();
        }
    } else {
        place = servers::Placement { server_core: None };
        placement_text = if no_pin {
            "Not pinned (--no-pin): servers and generator share all cores; tallyd runs one event loop.".into()
        } else {
            "Not pinned (taskset missing or one core): servers and generator share all cores; tallyd runs one event loop.".into()
        };
    }
    eprintln!("tally-bench: {placement_text}");
    if redis.is_none() {
        eprintln!("tally-bench: {}", servers::redis_missing_message());
    }
    let reps = reps.unwrap_or(if quick { 1 } else { 3 }).max(1);
    let sha = git(&root, &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "nogit".into());
    let dirty = git(&root, &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    let sha = if dirty { format!("{sha}-dirty") } else { sha };
    let now = chrono::Utc::now();
    let command = std::env::var("TALLY_BENCH_COMMAND")
        .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
    let mut notes = Vec::new();
    if given_tallyd {
        notes.push(format!(
            "tallyd under test: {} (given with --tallyd or TALLY_BENCH_TALLYD; the commit above is the suite's, not this binary's)",
            tallyd.display()
        ));
    }
    let report = Report {
        schema: 2,
        date: now.format("%Y-%m-%d %H:%M UTC").to_string(),
        git_sha: sha.clone(),
        command: command.clone(),
        quick,
        reps,
        machine,
        placement: placement_text.clone(),
        notes,
        ..Report::default()
    };
    let cfg = SuiteConfig {
        quick,
        reps,
        tallyd,
        redis,
        redis_missing: servers::redis_missing_message(),
        place,
        placement_text,
        root: root.clone(),
        only,
        command,
        open_rate,
    };
    let report = Suite::new(cfg, report).run();
    let dir = out.unwrap_or_else(|| root.join("bench").join("results"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let stem = format!(
        "{}-{sha}{}{}",
        now.format("%Y-%m-%d"),
        if quick { "-quick" } else { "" },
        label.map_or(String::new(), |l| format!("-{l}"))
    );
    let json = dir.join(format!("{stem}.json"));
    let md = dir.join(format!("{stem}.md"));
    let page = dir.join(format!("{stem}.html"));
    let text = results::to_json(&report)?;
    std::fs::write(&json, text).map_err(|e| format!("{}: {e}", json.display()))?;
    let table = results::markdown(&report);
    std::fs::write(&md, &table).map_err(|e| format!("{}: {e}", md.display()))?;
    write_html(&report, &page)?;
    println!("{table}");
    println!(
        "wrote {}, {} and {}",
        json.display(),
        md.display(),
        page.display()
    );
    Ok(())
}

fn compare(old: &Path, new: &Path, floor: f64) -> Result<bool, String> {
    let a = results::load(old)?;
    let b = results::load(new)?;
    if a.quick != b.quick {
        println!("note: one file is a --quick run, the other is not: sizes differ");
    }
    let c = results::compare(&a, &b, floor);
    println!(
        "{} ({}) -> {} ({}): noise threshold per metric = max({:.0} %, spread of its repetitions)",
        a.git_sha,
        a.date,
        b.git_sha,
        b.date,
        floor * 100.0
    );
    let show = |label: &str, ds: &[results::Delta]| {
        for d in ds {
            println!(
                "{label} {}: {:.2} -> {:.2} ({:+.1} % worse, threshold {:.1} %)",
                d.key,
                d.a,
                d.b,
                d.worse_by * 100.0,
                d.threshold * 100.0
            );
        }
    };
    show("REGRESSION", &c.regressions);
    show("improved  ", &c.improvements);
    show("baseline moved (machine noise?)", &c.baseline_moved);
    for k in &c.missing_in_b {
        println!("missing in new: {k}");
    }
    println!(
        "{} regression(s) of tally, {} improvement(s), {} within noise, {} missing, {} baseline figure(s) moved",
        c.regressions.len(),
        c.improvements.len(),
        c.unchanged,
        c.missing_in_b.len(),
        c.baseline_moved.len()
    );
    Ok(c.regressions.is_empty())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let r = match args.cmd {
        Cmd::All {
            quick,
            reps,
            only,
            no_pin,
            root,
            out,
            tallyd,
            label,
            redis,
            open_rate,
        } => all(
            quick, reps, only, no_pin, root, out, tallyd, label, redis, open_rate,
        )
        .map(|()| true),
        Cmd::Compare {
            old,
            new,
            more,
            floor,
            trend: None,
            html: _,
        } => {
            if more.is_empty() {
                compare(&old, &new, floor)
            } else {
                Err(format!(
                    "compare takes two result files ({} given); for a trend across more, add --trend FIGURE",
                    more.len() + 2
                ))
            }
        }
        Cmd::Compare {
            old,
            new,
            more,
            trend: Some(figure),
            html,
            ..
        } => {
            let files: Vec<PathBuf> = [old, new].into_iter().chain(more).collect();
            trend(&figure, &files, html.as_deref())
        }
        Cmd::Table { file } => results::load(&file).map(|r| {
            println!("{}", results::markdown(&r));
            true
        }),
        Cmd::Html { file, out } => results::load(&file).and_then(|r| {
            let out = out.unwrap_or_else(|| file.with_extension("html"));
            write_html(&r, &out)?;
            println!("wrote {}", out.display());
            Ok(true)
        }),
        Cmd::Trend {
            figure,
            files,
            html,
        } => trend(&figure, &files, html.as_deref()),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tally-bench: {e}");
            ExitCode::from(2)
        }
    }
}
