//! The `scale` scenario: ten million lingering licenses on one tallyd.
//!
//! One tallyd with the production defaults (`--durability sync`, a state
//! directory of its own) serving a feature of `N` licenses
//! ([`scale_size`]: 10,000,000 in a full run, 100,000 with `--quick`,
//! `TALLY_BENCH_SCALE=N` to choose). In order:
//!
//! 1. **Hold**: `N` lingering checkouts (a day's linger), pipelined over
//!    [`HOLD_CONNS`] connections; the time it took.
//! 2. **Memory**: RSS idle and with the `N` held, and the bytes per held
//!    license between the two.
//! 3. **Expiry** with the `N` outstanding: [`EXPIRY_STREAMS`] streams of
//!    short lingers at once, each on a count-1 feature of its own (as the
//!    `expiry` scenario does on one): lateness p50/p99/p99.9/max, and the
//!    grants that came before their deadline (`early`: must be 0).
//! 4. **STATUS** of the big feature: the summary (`holders_limit=0`) and
//!    one page of [`STATUS_PAGE`] holders, each timed, and the server's
//!    peak RSS after them (VmHWM): what `lmstat -a` costs it.
//! 5. **Recovery**: `kill -9`, start it again on the same state directory
//!    and port; the time from the new process's start to its first PONG,
//!    and the in-use count STATUS then reports (must be `N`).
//!
//! Goals (issue 18): expiry p99.9 ≤ 1 ms and none early, RSS ≤ 2 GiB,
//! recovery ≤ 10 s. The figures go into the results as every scenario's
//! do; none is asserted here.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::load;
use crate::results::{Better, Entry};
use crate::scrape;
use crate::servers::{self, FEATURE};
use crate::suite::SuiteConfig;
use crate::wire::{Conn, Encoder, Target};

/// Licenses held in a full run.
pub const FULL_SIZE: usize = 10_000_000;
/// Licenses held with `--quick`.
pub const QUICK_SIZE: usize = 100_000;
/// Connections the holds are pipelined over.
pub const HOLD_CONNS: usize = 4;
/// Linger of the held licenses: a day (they outlive the run).
pub const HOLD_LINGER_S: u32 = 86_400;
/// Expiry streams running at once (one count-1 feature each).
pub const EXPIRY_STREAMS: usize = 8;
/// Linger of each expiry round, ms.
pub const EXPIRY_LINGER_MS: u64 = 100;
/// Holders in the timed STATUS page.
pub const STATUS_PAGE: usize = 10_000;

/// How the scenario reports progress: the suite's `[step/steps  t]`.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// When the suite started.
    pub t0: Instant,
    /// This scenario's step.
    pub step: usize,
    /// Steps in all.
    pub steps: usize,
}

impl Progress {
    fn say(&self, what: &str) {
        eprintln!(
            "[{}/{} {:>6.1}s] {what}",
            self.step,
            self.steps,
            self.t0.elapsed().as_secs_f64()
        );
    }
}

/// Licenses held: `TALLY_BENCH_SCALE` if set, else 100,000 for `--quick`
/// and 10,000,000 for a full run.
pub fn scale_size(quick: bool) -> Result<usize, String> {
    match std::env::var("TALLY_BENCH_SCALE") {
        Ok(v) => v
            .trim()
            .replace('_', "")
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("TALLY_BENCH_SCALE={v:?} is not a positive whole number")),
        Err(_) => Ok(if quick { QUICK_SIZE } else { FULL_SIZE }),
    }
}

/// Name of expiry stream `i`'s feature.
fn expiry_feature(i: usize) -> String {
    format!("EXP{i}")
}

/// The license: `n` licenses of [`FEATURE`], and one count-1 feature per
/// expiry stream.
pub fn license(n: usize) -> String {
    let mut s = format!("INCREMENT {FEATURE} BENCH 1.0 permanent {n}\n");
    for i in 0..EXPIRY_STREAMS {
        s.push_str(&format!(
            "INCREMENT {} BENCH 1.0 permanent 1\n",
            expiry_feature(i)
        ));
    }
    s
}

/// A tallyd on a fixed port and state directory, so it can be killed and
/// started again on them; its stderr goes to `stderr-N.log` in its
/// directory.
struct Daemon {
    child: Option<Child>,
    bin: PathBuf,
    core: Option<usize>,
    dir: PathBuf,
    port: u16,
    /// Its `--http` port (`/metrics`: the server's own lateness figures).
    http_port: u16,
    starts: usize,
}

impl Daemon {
    fn new(cfg: &SuiteConfig, n: usize) -> Result<Daemon, String> {
        let dir = std::env::temp_dir().join(format!("tally-bench-scale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state"))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("scale.lic"), license(n)).map_err(|e| e.to_string())?;
        let port = servers::free_port()?;
        let http_port = (0..100)
            .map(|_| servers::free_port())
            .find(|p| p.as_ref().map_or(true, |&p| p != port))
            .unwrap_or_else(|| Err("no second free port".into()))?;
        Ok(Daemon {
            child: None,
            bin: cfg.tallyd.clone(),
            core: cfg.place.server_core,
            dir,
            port,
            http_port,
            starts: 0,
        })
    }

    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// Its `--http` address (`/metrics`).
    fn http(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.http_port).into()
    }

    fn pid(&self) -> Result<u32, String> {
        self.child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| "tallyd is not running".to_string())
    }

    /// Starts it; returns when the process is spawned (not yet serving).
    fn spawn(&mut self) -> Result<Instant, String> {
        self.starts += 1;
        let mut cmd = match self.core {
            Some(core) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(core.to_string()).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let err =
            std::fs::File::create(self.stderr_path(self.starts)).map_err(|e| e.to_string())?;
        cmd.arg("-c")
            .arg(self.dir.join("scale.lic"))
            .arg("-l")
            .arg(self.dir.join("debug.log"))
            .args(["--port", &self.port.to_string(), "--workers", "1"])
            .args(["--http", &self.http().to_string()])
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .stdout(Stdio::null())
            .stderr(err);
        let t = Instant::now();
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start {}: {e} (build it: cargo build --release -p tally-server)",
                self.bin.display()
            )
        })?;
        self.child = Some(child);
        Ok(t)
    }

    fn stderr_path(&self, start: usize) -> PathBuf {
        self.dir.join(format!("stderr-{start}.log"))
    }

    /// What its latest start wrote on stderr before serving (the
    /// recovery summary among it), one line.
    fn startup_text(&self) -> String {
        let Ok(f) = std::fs::File::open(self.stderr_path(self.starts)) else {
            return String::new();
        };
        BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .take(20)
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Waits (at most `limit`) until it answers PING; the time since
    /// `since`.
    fn first_pong(&mut self, since: Instant, limit: Duration) -> Result<Duration, String> {
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!("tallyd exited ({st}): {}", self.startup_text()));
                }
            }
            if let Ok(mut c) = Conn::connect(self.addr(), false) {
                if c.request_line("PING").is_ok_and(|r| r == "PONG") {
                    return Ok(since.elapsed());
                }
            }
            if since.elapsed() > limit {
                return Err(format!(
                    "tallyd did not answer PING in {limit:?}: {}",
                    self.startup_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// `kill -9`, and reaps it.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `VmRSS` or `VmHWM` of `pid`, bytes.
fn proc_status_bytes(pid: u32, field: &str) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("{path}: no {field} line"))
}

/// One STATUS request's reply line and how long it took.
fn status_line(addr: SocketAddr, line: &str) -> Result<(String, Duration), String> {
    let mut c = tally_client::Connection::connect_addr(
        addr,
        tally_client::Timeouts::all(Duration::from_secs(600)),
    )
    .map_err(|e| e.to_string())?;
    let t = Instant::now();
    c.send_line(line).map_err(|e| e.to_string())?;
    let reply = c.read_line().map_err(|e| e.to_string())?.to_string();
    Ok((reply, t.elapsed()))
}

/// The in-use count of [`FEATURE`] in a STATUS summary, and how long the
/// summary took.
fn held_count(addr: SocketAddr) -> Result<(u64, Duration), String> {
    let (reply, took) = status_line(addr, &format!("STATUS {FEATURE} holders_limit=0"))?;
    let json = reply
        .strip_prefix("OK ")
        .ok_or_else(|| format!("STATUS: {}", reply.chars().take(200).collect::<String>()))?;
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let n = v["features"]
        .as_array()
        .map(|fs| fs.iter().filter_map(|f| f["in_use"].as_u64()).sum())
        .ok_or_else(|| "STATUS summary without features".to_string())?;
    Ok((n, took))
}

fn entry(variant: &str, metric: &str, unit: &str, better: Better, v: f64) -> Entry {
    let mut e = Entry {
        scenario: "scale".into(),
        variant: variant.into(),
        target: "tally".into(),
        metric: metric.into(),
        unit: unit.into(),
        better,
        values: vec![v],
        median: 0.0,
        spread: 0.0,
    };
    e.settle();
    e
}

/// Runs the scenario; its result entries.
pub fn run(cfg: &SuiteConfig, p: Progress) -> Result<Vec<Entry>, String> {
    let n = scale_size(cfg.quick)?;
    let variant = format!("{n} lingering");
    let mut out = Vec::new();
    let mut d = Daemon::new(cfg, n)?;
    let started = d.spawn()?;
    d.first_pong(started, Duration::from_secs(60))?;
    let addr = d.addr();
    std::thread::sleep(Duration::from_millis(300));
    let idle = servers::rss_bytes(d.pid()?)?;

    // 1. Hold.
    let enc = Encoder {
        target: Target::Tally,
        sha: String::new(),
        limit: n as u64,
    };
    let t = Instant::now();
    let say = |done: usize| {
        p.say(&format!(
            "  scale: {done} of {n} held ({:.0}/s)",
            done as f64 / t.elapsed().as_secs_f64()
        ))
    };
    // A line every 10 s.
    let said = std::cell::Cell::new(0u64);
    load::hold_lingering_parallel(addr, &enc, n, "m", HOLD_LINGER_S, HOLD_CONNS, &|done| {
        let s = t.elapsed().as_secs() / 10;
        if s > said.get() {
            said.set(s);
            say(done)
        }
    })?;
    let hold_s = t.elapsed().as_secs_f64();
    p.say(&format!(
        "  scale: {n} lingering licenses held in {hold_s:.1}s ({:.0} checkouts/s over {HOLD_CONNS} connections)",
        n as f64 / hold_s
    ));
    out.push(entry(&variant, "hold_s", "s", Better::Lower, hold_s));

    // 2. Memory.
    std::thread::sleep(Duration::from_millis(500));
    let held = servers::rss_bytes(d.pid()?)?;
    let per = held.saturating_sub(idle) as f64 / n as f64;
    p.say(&format!(
        "  scale: RSS {idle} B idle, {held} B with {n} held ({:.2} GiB): {per:.1} B per held license",
        held as f64 / (1u64 << 30) as f64
    ));
    out.push(entry(
        &variant,
        "rss_bytes",
        "B",
        Better::Lower,
        held as f64,
    ));
    out.push(entry(&variant, "bytes_per_held", "B", Better::Lower, per));

    // 3. Expiry lateness with the n outstanding, as the spinning clients
    // see it and as the server counted it (/metrics before and after).
    let metrics = || scrape::metrics_text(d.http()).unwrap_or_default();
    let before = metrics();
    let rounds = if cfg.quick { 20 } else { 130 };
    let results: Vec<Result<load::Expiries, String>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..EXPIRY_STREAMS)
            .map(|i| {
                s.spawn(move || {
                    load::expiry_counted(
                        addr,
                        &expiry_feature(i),
                        rounds,
                        EXPIRY_LINGER_MS,
                        &format!("x{i}"),
                    )
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("expiry thread panicked".into()))
            })
            .collect()
    });
    let mut all = load::Lateness {
        samples_us: Vec::new(),
    };
    let mut early = 0;
    for r in results {
        let r = r?;
        all.samples_us.extend(r.samples_us);
        early += r.early;
    }
    let q = |x: f64| all.quantile_ms(x);
    p.say(&format!(
        "  scale: expiry with {n} outstanding: {} rounds ({EXPIRY_STREAMS} streams of {EXPIRY_LINGER_MS} ms lingers), lateness ms p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}; early {early}",
        all.samples_us.len() as u64 + early,
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0)
    ));
    for (m, v) in [
        ("p50_ms", q(0.5)),
        ("p99_ms", q(0.99)),
        ("p999_ms", q(0.999)),
        ("max_ms", q(1.0)),
    ] {
        out.push(entry(&variant, m, "ms", Better::Lower, v));
    }
    out.push(entry(
        &variant,
        "early",
        "count",
        Better::Lower,
        early as f64,
    ));
    // The server's side of it: how late its wheel expired the lingers
    // (now - deadline at expiry, ms resolution), and how long the journal's
    // syncs took meanwhile (a grant's reply waits for one in sync mode).
    let after = metrics();
    let delta = |name: &str| {
        scrape::histogram_delta(
            &scrape::histogram_buckets(&before, name),
            &scrape::histogram_buckets(&after, name),
        )
    };
    let (expired, late_bound) = delta("tally_linger_expiry_lateness_seconds");
    let (syncs, sync_bound) = delta("tally_journal_fsync_seconds");
    let ms = |b: Option<f64>| b.map_or(0.0, |s| s * 1e3);
    p.say(&format!(
        "  scale: the server meanwhile: {expired} linger expiries, all within {:.3} ms of their deadline (bucket bound); {syncs} journal syncs, all within {:.3} ms",
        ms(late_bound),
        ms(sync_bound)
    ));
    for (m, v) in [
        ("server_expiry_lateness_bound_ms", ms(late_bound)),
        ("journal_sync_bound_ms", ms(sync_bound)),
    ] {
        out.push(entry(&variant, m, "ms", Better::Lower, v));
    }

    // 4. STATUS of the big feature: summary and one page of holders.
    let (count, summary_took) = held_count(addr)?;
    let (page, page_took) = status_line(
        addr,
        &format!("STATUS {FEATURE} holders_limit={STATUS_PAGE}"),
    )?;
    let hwm = proc_status_bytes(d.pid()?, "VmHWM")?;
    p.say(&format!(
        "  scale: STATUS {FEATURE} holders_limit=0: {count} in use, {:.1} ms; holders_limit={STATUS_PAGE}: {} B in {:.1} ms; peak RSS since start {hwm} B",
        summary_took.as_secs_f64() * 1e3,
        page.len(),
        page_took.as_secs_f64() * 1e3
    ));
    out.push(entry(
        &variant,
        "status_summary_ms",
        "ms",
        Better::Lower,
        summary_took.as_secs_f64() * 1e3,
    ));
    out.push(entry(
        &variant,
        "status_page_ms",
        "ms",
        Better::Lower,
        page_took.as_secs_f64() * 1e3,
    ));
    out.push(entry(
        &variant,
        "peak_rss_bytes",
        "B",
        Better::Lower,
        hwm as f64,
    ));

    // 5. kill -9 and recovery.
    d.kill9();
    let restarted = d.spawn()?;
    let limit = Duration::from_secs(600);
    let up = d.first_pong(restarted, limit)?;
    let (again, _) = held_count(addr)?;
    let rss_after = servers::rss_bytes(d.pid()?)?;
    p.say(&format!(
        "  scale: kill -9, restart: first PONG after {:.2}s; {again} of {n} held again; RSS {rss_after} B; tallyd said: {}",
        up.as_secs_f64(),
        d.startup_text()
    ));
    out.push(entry(
        &variant,
        "recovery_s",
        "s",
        Better::Lower,
        up.as_secs_f64(),
    ));
    out.push(entry(
        &variant,
        "held_after_recovery",
        "count",
        Better::Higher,
        again as f64,
    ));
    out.push(entry(
        &variant,
        "rss_after_recovery_bytes",
        "B",
        Better::Lower,
        rss_after as f64,
    ));
    if again != n as u64 {
        return Err(format!(
            "after kill -9 and recovery {again} of {n} lingering licenses are held (figures: {})",
            out.iter()
                .map(|e| format!("{}={}", e.metric, e.median))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    Ok(out)
}
