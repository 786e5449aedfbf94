//! The whole suite: every scenario against tally, the Redis Lua semaphore
//! and Redis `SET`, repeated, with a progress display, into a [`Report`].
//!
//! Servers (tallyd with one event loop, redis-server) are pinned to core 0
//! and the generator runs on the other cores (`bench/run` starts it under
//! `taskset`), when `taskset` exists and the machine has 2+ cores.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::load::{self, Measured, Timing, Workload};
use crate::results::{Better, Distribution, Entry, Report, Skipped};
use crate::servers::{self, Placement, Redis, Running, TallydSpec};
use crate::status;
use crate::wire::{Conn, Encoder, Target};

/// Scenario names, in run order.
pub const SCENARIOS: [&str; 12] = [
    "steady",
    "renew",
    "storm",
    "expiry",
    "memory",
    "idle",
    "durability",
    "reportlog",
    "status",
    "scrape",
    "scale",
    "criterion",
];

/// The scrape scenario's period between two GETs of `/metrics`.
const SCRAPE_EVERY: Duration = Duration::from_millis(100);

/// What to run and how big.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// Small sizes, short durations, no criterion.
    pub quick: bool,
    /// Repetitions of each measurement.
    pub reps: usize,
    /// tallyd binary.
    pub tallyd: PathBuf,
    /// redis-server binary, if found.
    pub redis: Option<PathBuf>,
    /// Why Redis is missing.
    pub redis_missing: String,
    /// Server placement.
    pub place: Placement,
    /// Text describing the core split for the report.
    pub placement_text: String,
    /// Workspace root (for `cargo bench`).
    pub root: PathBuf,
    /// Scenarios to run (all if empty).
    pub only: Vec<String>,
    /// The command line, for the report.
    pub command: String,
    /// Open-loop rate (requests/s over 50 connections); default: half the
    /// Redis Lua semaphore's closed-loop 50x1 throughput in this run.
    pub open_rate: Option<f64>,
}

struct Sizes {
    timing: Timing,
    seats: u64,
    storm_clients: usize,
    expiry_backgrounds: Vec<usize>,
    expiry_rounds: usize,
    expiry_linger_ms: u64,
    memory_held: usize,
    idle: Vec<usize>,
    pipeline_conns: usize,
    /// Generated features of the `status` scenario.
    status_features: usize,
    /// One of every this many of them is held.
    status_hold_every: usize,
    /// Clients looping STATUS in its loaded phase.
    status_clients: usize,
    /// Each of its phases.
    status_timing: Timing,
}

impl Sizes {
    fn of(quick: bool) -> Sizes {
        if quick {
            Sizes {
                timing: Timing {
                    warmup_s: 0.2,
                    seconds: 0.5,
                },
                seats: 50_000,
                storm_clients: 200,
                expiry_backgrounds: vec![0, 10_000],
                expiry_rounds: 10,
                expiry_linger_ms: 100,
                memory_held: 10_000,
                idle: vec![1_000],
                pipeline_conns: 4,
                status_features: 2_000,
                status_hold_every: 10,
                status_clients: 4,
                status_timing: Timing {
                    warmup_s: 0.2,
                    seconds: 0.5,
                },
            }
        } else {
            Sizes {
                timing: Timing {
                    warmup_s: 1.0,
                    seconds: 3.0,
                },
                seats: 1_000_000,
                storm_clients: 5_000,
                expiry_backgrounds: vec![0, 100_000, 1_000_000],
                expiry_rounds: 100,
                expiry_linger_ms: 100,
                memory_held: 1_000_000,
                idle: vec![10_000, 100_000],
                pipeline_conns: 4,
                status_features: 100_000,
                status_hold_every: 10,
                status_clients: 4,
                status_timing: Timing {
                    warmup_s: 1.0,
                    seconds: 5.0,
                },
            }
        }
    }
}

/// Runs the suite.
pub struct Suite {
    cfg: SuiteConfig,
    sizes: Sizes,
    report: Report,
    t0: Instant,
    step: usize,
    steps: usize,
    /// Redis-Lua closed-loop 50x1 throughput of the steady scenario, the
    /// basis of the open-loop rate.
    open_rate: Option<f64>,
}

impl std::fmt::Debug for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suite").field("cfg", &self.cfg).finish()
    }
}

fn measured_entries(scenario: &str, variant: &str, target: &str, ms: &[Measured]) -> Vec<Entry> {
    let m = |metric: &str, unit: &str, better: Better, f: &dyn Fn(&Measured) -> f64| Entry {
        scenario: scenario.into(),
        variant: variant.into(),
        target: target.into(),
        metric: metric.into(),
        unit: unit.into(),
        better,
        values: ms.iter().map(f).collect(),
        median: 0.0,
        spread: 0.0,
    };
    let mut out = vec![
        m("ops_per_s", "req/s", Better::Higher, &|x| x.ops_per_s),
        m("p50_us", "µs", Better::Lower, &|x| x.p50_us),
        m("p90_us", "µs", Better::Lower, &|x| x.p90_us),
        m("p99_us", "µs", Better::Lower, &|x| x.p99_us),
        m("p999_us", "µs", Better::Lower, &|x| x.p999_us),
        m("max_us", "µs", Better::Lower, &|x| x.max_us),
        m("ok", "count", Better::None, &|x| x.ok as f64),
        m("denied", "count", Better::None, &|x| x.denied as f64),
        m("err", "count", Better::None, &|x| x.err as f64),
    ];
    // The server's CPU per request, where it was measured.
    let cpu: Vec<f64> = ms.iter().filter_map(|x| x.cpu_us_per_req).collect();
    if !cpu.is_empty() {
        let mut e = m("cpu_us_per_req", "µs", Better::Lower, &|_| 0.0);
        e.values = cpu;
        out.push(e);
    }
    out
}

/// tally's CPU per request over each Redis row's, where both were run.
fn cpu_ratios(scenario: &str, variant: &str, by_target: &[(Target, Vec<Measured>)]) -> Vec<Entry> {
    let Some((_, t)) = by_target.iter().find(|(k, _)| *k == Target::Tally) else {
        return Vec::new();
    };
    by_target
        .iter()
        .filter(|(k, _)| k.is_redis())
        .map(|(k, o)| cpu_ratio(scenario, variant, k.name(), t, o))
        .filter(|e| !e.values.is_empty())
        .collect()
}

/// The latency distributions (µs) of a measurement's repetitions.
fn distribution(scenario: &str, variant: &str, target: &str, ms: &[Measured]) -> Distribution {
    Distribution {
        scenario: scenario.into(),
        variant: variant.into(),
        target: target.into(),
        unit: "µs".into(),
        ladders: ms.iter().map(|m| m.ladder.clone()).collect(),
        samples: Vec::new(),
    }
}

/// tally's CPU per request over another target's, one value per
/// repetition pair (`cpu_ratio`, lower is better: the issue's "0.80×
/// Redis's").
fn cpu_ratio(scenario: &str, variant: &str, other: &str, t: &[Measured], o: &[Measured]) -> Entry {
    single(
        scenario,
        &format!("{variant}: tally / {other}"),
        "tally",
        "cpu_ratio",
        "×",
        Better::Lower,
        t.iter()
            .zip(o)
            .filter_map(|(t, o)| Some(status::ratio(t.cpu_us_per_req?, o.cpu_us_per_req?)))
            .collect(),
    )
}

/// The debug log's dropped events so far (STATUS `log_dropped`).
fn log_dropped(addr: std::net::SocketAddr) -> Result<u64, String> {
    let mut c = tally_client::Connection::connect_addr(
        addr,
        tally_client::Timeouts::all(crate::wire::IO_TIMEOUT),
    )
    .map_err(|e| e.to_string())?;
    c.send_line("STATUS").map_err(|e| e.to_string())?;
    let line = c.read_line().map_err(|e| e.to_string())?;
    let json = line
        .strip_prefix("OK ")
        .ok_or_else(|| format!("STATUS: {line}"))?;
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    v["server"]["log_dropped"]
        .as_u64()
        .ok_or_else(|| "STATUS has no server.log_dropped".to_string())
}

fn single(
    scenario: &str,
    variant: &str,
    target: &str,
    metric: &str,
    unit: &str,
    better: Better,
    values: Vec<f64>,
) -> Entry {
    Entry {
        scenario: scenario.into(),
        variant: variant.into(),
        target: target.into(),
        metric: metric.into(),
        unit: unit.into(),
        better,
        values,
        median: 0.0,
        spread: 0.0,
    }
}

fn limits_field(n: usize) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(n)?.parse().ok()
}

/// A server's RSS idle, then with `n` lingering licenses held, and the
/// bytes per held license between the two.
fn rss_per_held(server: &Running, enc: &Encoder, n: usize) -> Result<(u64, u64, f64), String> {
    let settle = Duration::from_millis(300);
    std::thread::sleep(settle);
    let idle = server.rss_bytes()?;
    load::hold_lingering(server.addr, enc, n, "m", 86_400)?;
    std::thread::sleep(settle);
    let held = server.rss_bytes()?;
    Ok((idle, held, held.saturating_sub(idle) as f64 / n as f64))
}

/// Open files allowed to this process (soft limit), from /proc.
pub fn fd_limit() -> Option<u64> {
    limits_field(3)
}

/// The hard limit on open files, from /proc.
pub fn fd_hard_limit() -> Option<u64> {
    limits_field(4)
}

impl Suite {
    /// A suite for `cfg`.
    pub fn new(cfg: SuiteConfig, report: Report) -> Suite {
        let sizes = Sizes::of(cfg.quick);
        let steps = SCENARIOS
            .iter()
            .filter(|s| cfg.only.is_empty() || cfg.only.iter().any(|o| o == *s))
            .count();
        Suite {
            cfg,
            sizes,
            report,
            t0: Instant::now(),
            step: 0,
            steps,
            open_rate: None,
        }
    }

    fn progress(&self, what: &str) {
        eprintln!(
            "[{}/{} {:>6.1}s] {what}",
            self.step,
            self.steps,
            self.t0.elapsed().as_secs_f64()
        );
    }

    fn skip(&mut self, scenario: &str, reason: &str) {
        self.progress(&format!("{scenario}: SKIPPED: {reason}"));
        self.report.skipped.push(Skipped {
            scenario: scenario.into(),
            reason: reason.into(),
        });
    }

    fn push(&mut self, mut entries: Vec<Entry>) {
        for e in &mut entries {
            e.settle();
        }
        self.report.entries.extend(entries);
    }

    /// Runs `measure` once per repetition, printing each result after
    /// `label`.
    fn repeat(
        &mut self,
        label: &str,
        mut measure: impl FnMut() -> Result<load::Measured, String>,
    ) -> Result<Vec<load::Measured>, String> {
        let mut ms = Vec::new();
        for rep in 0..self.cfg.reps {
            let m = measure()?;
            self.progress(&format!(
                "  {label} rep {}/{}: {}",
                rep + 1,
                self.cfg.reps,
                m.line()
            ));
            ms.push(m);
        }
        Ok(ms)
    }

    /// A private tallyd. Unless `extra` says otherwise it runs with
    /// `--durability off`: the Redis it is compared with runs without
    /// persistence (`--save '' --appendonly no`); what the journal costs is
    /// the `durability` scenario's (and `memory`'s second row).
    fn tallyd(&self, extra: &[String]) -> Result<Running, String> {
        self.tallyd_licensed(&servers::bench_license(self.sizes.seats), extra)
    }

    /// [`Suite::tallyd`] serving the license text `license`.
    fn tallyd_licensed(&self, license: &str, extra: &[String]) -> Result<Running, String> {
        let mut args = extra.to_vec();
        if !args.iter().any(|a| a == "--durability") {
            args.extend(["--durability".to_string(), "off".to_string()]);
        }
        servers::start_tallyd_licensed(
            &TallydSpec {
                bin: self.cfg.tallyd.clone(),
                seats: self.sizes.seats,
                workers: 1,
                extra: args,
            },
            license,
            &self.cfg.place,
        )
    }

    fn redis(&self, maxclients: usize) -> Result<Option<Redis>, String> {
        match &self.cfg.redis {
            Some(bin) => servers::start_redis(bin, &self.cfg.place, maxclients).map(Some),
            None => Ok(None),
        }
    }

    fn encoder(&self, target: Target, redis: Option<&Redis>) -> Encoder {
        Encoder {
            target,
            sha: redis.map(|r| r.sha.clone()).unwrap_or_default(),
            limit: self.sizes.seats,
        }
    }

    /// Runs every selected scenario; returns the report.
    pub fn run(mut self) -> Report {
        for name in SCENARIOS {
            if !self.cfg.only.is_empty() && !self.cfg.only.iter().any(|o| o == name) {
                continue;
            }
            self.step += 1;
            self.progress(&format!("{name}: start"));
            let r = match name {
                "steady" => self.load_scenario("steady", Workload::Pairs { linger_s: 0 }),
                "renew" => self.load_scenario("renew", Workload::Renew),
                "storm" => self.storm(),
                "expiry" => self.expiry(),
                "memory" => self.memory(),
                "idle" => self.idle(),
                "durability" => self.durability(),
                "reportlog" => self.reportlog(),
                "status" => self.status(),
                "scrape" => self.scrape(),
                "scale" => crate::scale::run(
                    &self.cfg,
                    crate::scale::Progress {
                        t0: self.t0,
                        step: self.step,
                        steps: self.steps,
                    },
                )
                .map(|es| self.push(es)),
                _ => self.criterion(),
            };
            if let Err(e) = r {
                self.skip(name, &format!("FAILED: {e}"));
            }
        }
        self.progress("done");
        self.report
    }

    /// Closed 50x1, closed 4x32, open 50 conns: three targets each.
    fn load_scenario(&mut self, scenario: &str, work: Workload) -> Result<(), String> {
        let tallyd = self.tallyd(&[])?;
        let redis = self.redis(10_000)?;
        if redis.is_none() {
            let why = self.cfg.redis_missing.clone();
            self.skip(&format!("{scenario} (redis rows)"), &why);
        }
        let t = self.sizes.timing;
        let pc = self.sizes.pipeline_conns;
        let closed = [(50usize, 1usize), (pc, 32)];
        let targets: Vec<Target> = Target::ALL
            .into_iter()
            .filter(|t| !t.is_redis() || redis.is_some())
            .collect();
        let addr_of = |t: Target| -> SocketAddr {
            match (t, &redis) {
                (Target::Tally, _) | (_, None) => tallyd.addr,
                (_, Some(r)) => r.server.addr,
            }
        };
        // The server process whose CPU time is read (taskset execs: the
        // child's pid is the server's).
        let pid_of = |t: Target| -> u32 {
            match (t, &redis) {
                (Target::Tally, _) | (_, None) => tallyd.pid(),
                (_, Some(r)) => r.server.pid(),
            }
        };
        let mut entries = Vec::new();
        for (conns, pipe) in closed {
            let variant = format!("closed {conns}x{pipe}");
            let mut by_target: Vec<(Target, Vec<Measured>)> = Vec::new();
            for &target in &targets {
                let enc = self.encoder(target, redis.as_ref());
                if let Some(r) = &redis {
                    r.flush()?;
                }
                let label = format!("{scenario} {variant} {}", target.name());
                let ms = self.repeat(&label, || {
                    let (addr, pid) = (addr_of(target), pid_of(target));
                    load::closed_loop_cpu(addr, pid, &enc, work, conns, pipe, t)
                })?;
                if scenario == "steady" && conns == 50 && target == Target::RedisLua {
                    let mut v: Vec<f64> = ms.iter().map(|m| m.ops_per_s).collect();
                    v.sort_by(f64::total_cmp);
                    self.open_rate = v.get(v.len() / 2).map(|x| x * 0.5);
                }
                if scenario == "steady" && conns == 50 && target == Target::Tally && redis.is_none()
                {
                    self.open_rate = ms.first().map(|m| m.ops_per_s * 0.5);
                }
                entries.extend(measured_entries(scenario, &variant, target.name(), &ms));
                let d = distribution(scenario, &variant, target.name(), &ms);
                self.report.distributions.push(d);
                by_target.push((target, ms));
            }
            entries.extend(cpu_ratios(scenario, &variant, &by_target));
        }
        // Open loop at half the Lua semaphore's closed-loop capacity.
        let rate = self
            .cfg
            .open_rate
            .or(self.open_rate)
            .unwrap_or(20_000.0)
            .max(1_000.0)
            .round();
        // The rate is an entry of its own, so the variant name (the key
        // `compare` matches on) stays the same from run to run.
        let variant = "open 50 conns".to_string();
        let mut by_target: Vec<(Target, Vec<Measured>)> = Vec::new();
        for &target in &targets {
            let enc = self.encoder(target, redis.as_ref());
            if let Some(r) = &redis {
                r.flush()?;
            }
            let label = format!("{scenario} {variant} {}", target.name());
            let ms = self.repeat(&label, || {
                load::open_loop_cpu(addr_of(target), pid_of(target), &enc, work, 50, rate, t)
            })?;
            entries.extend(measured_entries(scenario, &variant, target.name(), &ms));
            let d = distribution(scenario, &variant, target.name(), &ms);
            self.report.distributions.push(d);
            entries.push(single(
                scenario,
                &variant,
                target.name(),
                "offered_per_s",
                "req/s",
                Better::None,
                vec![rate; ms.len()],
            ));
            by_target.push((target, ms));
        }
        entries.extend(cpu_ratios(scenario, &variant, &by_target));
        self.push(entries);
        Ok(())
    }

    fn storm(&mut self) -> Result<(), String> {
        let n = self.sizes.storm_clients;
        let limit = fd_limit().unwrap_or(1024) as usize;
        if n + 200 > limit {
            return Err(format!(
                "{n} clients need {} open files; the limit is {limit} (bench/run raises it)",
                n + 200
            ));
        }
        let tallyd = self.tallyd(&[])?;
        let redis = self.redis(n + 1000)?;
        if redis.is_none() {
            let why = self.cfg.redis_missing.clone();
            self.skip("storm (redis rows)", &why);
        }
        let variant = format!("{n} clients in 1 s");
        let mut entries = Vec::new();
        for target in Target::ALL {
            let addr = match (target, &redis) {
                (Target::Tally, _) => tallyd.addr,
                (_, Some(r)) => r.server.addr,
                (_, None) => continue,
            };
            let enc = self.encoder(target, redis.as_ref());
            let mut ms = Vec::new();
            let mut done = Vec::new();
            let mut drops = Vec::new();
            for rep in 0..self.cfg.reps {
                if let Some(r) = &redis {
                    r.flush()?;
                }
                let overflows0 = listen_overflows();
                let s = load::storm(addr, &enc, n, Duration::from_secs(1), 32)?;
                let overflows = listen_overflows().saturating_sub(overflows0);
                self.progress(&format!(
                    "  storm {} rep {}/{}: {} of {n} clients got both licenses; listen-queue overflows {overflows}; connect+2 grants {}",
                    target.name(),
                    rep + 1,
                    self.cfg.reps,
                    s.completed,
                    s.m.line()
                ));
                drops.push(overflows as f64);
                done.push(s.completed as f64);
                ms.push(s.m);
                // Let the server settle the closed connections.
                std::thread::sleep(Duration::from_millis(300));
            }
            let mut es = measured_entries("storm", &variant, target.name(), &ms);
            let d = distribution("storm", &variant, target.name(), &ms);
            self.report.distributions.push(d);
            // Throughput of a storm is its arrival rate: not a figure.
            es.retain(|e| e.metric != "ops_per_s");
            es.push(single(
                "storm",
                &variant,
                target.name(),
                "completed",
                "clients",
                Better::Higher,
                done,
            ));
            // SYNs dropped because the accept queue was full (machine-wide
            // counter): each costs its client a one-second retransmission.
            es.push(single(
                "storm",
                &variant,
                target.name(),
                "listen_overflows",
                "count",
                Better::None,
                drops,
            ));
            entries.extend(es);
        }
        self.push(entries);
        Ok(())
    }

    fn expiry(&mut self) -> Result<(), String> {
        let bgs = self.sizes.expiry_backgrounds.clone();
        for bg in bgs {
            let tallyd = self.tallyd(&[])?;
            let enc = self.encoder(Target::Tally, None);
            let t = Instant::now();
            load::hold_lingering(tallyd.addr, &enc, bg, "bg", 86_400)?;
            self.progress(&format!(
                "  expiry: {bg} background lingers held in {:.1}s",
                t.elapsed().as_secs_f64()
            ));
            let variant = format!("{bg} other lingers");
            let (mut p50, mut p99, mut p999, mut max) = (vec![], vec![], vec![], vec![]);
            let mut early = vec![];
            let mut dist = Distribution {
                scenario: "expiry".into(),
                variant: variant.clone(),
                target: "tally".into(),
                unit: "ms".into(),
                ..Distribution::default()
            };
            for rep in 0..self.cfg.reps {
                let x = load::expiry(
                    tallyd.addr,
                    self.sizes.expiry_rounds,
                    self.sizes.expiry_linger_ms,
                    &format!("x{rep}"),
                )?;
                let l = x.lateness();
                self.progress(&format!(
                    "  expiry {variant} rep {}/{}: {} rounds, lateness ms p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}; early {}",
                    rep + 1,
                    self.cfg.reps,
                    l.samples_us.len() as u64 + x.early,
                    l.quantile_ms(0.5),
                    l.quantile_ms(0.99),
                    l.quantile_ms(0.999),
                    l.quantile_ms(1.0),
                    x.early
                ));
                early.push(x.early as f64);
                p50.push(l.quantile_ms(0.5));
                p99.push(l.quantile_ms(0.99));
                p999.push(l.quantile_ms(0.999));
                max.push(l.quantile_ms(1.0));
                dist.ladders.push(l.ladder_ms());
                dist.samples
                    .extend(l.samples_us.iter().map(|&us| us as f64 / 1000.0));
            }
            self.report.distributions.push(dist);
            let e = |m: &str, v: Vec<f64>| {
                single("expiry", &variant, "tally", m, "ms", Better::Lower, v)
            };
            self.push(vec![
                e("p50_ms", p50),
                e("p99_ms", p99),
                e("p999_ms", p999),
                e("max_ms", max),
                single(
                    "expiry",
                    &variant,
                    "tally",
                    "early",
                    "count",
                    Better::Lower,
                    early,
                ),
            ]);
        }
        Ok(())
    }

    fn memory(&mut self) -> Result<(), String> {
        let n = self.sizes.memory_held;
        let variant = format!("{n} held");
        let mut entries = Vec::new();
        // tally: fresh server, RSS idle, then n lingering licenses held.
        let tallyd = self.tallyd(&[])?;
        let enc = self.encoder(Target::Tally, None);
        let (idle, held, per) = rss_per_held(&tallyd, &enc, n)?;
        let total_seats = servers::bench_license_total(self.sizes.seats);
        let per_seat = idle as f64 / total_seats as f64;
        self.progress(&format!(
            "  memory tally: RSS {idle} B idle ({per_seat:.0} B per licensed seat, {total_seats} seats), {held} B with {n} held: {per:.1} B per held license"
        ));
        entries.push(single(
            "memory",
            &variant,
            "tally",
            "bytes_per_held",
            "B",
            Better::Lower,
            vec![per],
        ));
        entries.push(single(
            "memory",
            "idle server",
            "tally",
            "bytes_per_seat",
            "B",
            Better::Lower,
            vec![per_seat],
        ));
        entries.push(single(
            "memory",
            "idle server",
            "tally",
            "rss_bytes",
            "B",
            Better::Lower,
            vec![idle as f64],
        ));
        drop(tallyd);
        // The same with the journal on (the default in production): its
        // snapshots scan the table (it once kept its own copy of every
        // lingering instance, ~130 B each: server/src/journal/mod.rs).
        let tallyd = self.tallyd(&["--durability".to_string(), "sync".to_string()])?;
        let (_, _, per) = rss_per_held(&tallyd, &enc, n)?;
        drop(tallyd);
        self.progress(&format!(
            "  memory tally --durability sync: {per:.1} B per held license"
        ));
        entries.push(single(
            "memory",
            &format!("{variant}, --durability sync"),
            "tally",
            "bytes_per_held",
            "B",
            Better::Lower,
            vec![per],
        ));
        match self.redis(10_000)? {
            Some(r) => {
                let enc = self.encoder(Target::RedisLua, Some(&r));
                let (idle, held, per) = rss_per_held(&r.server, &enc, n)?;
                self.progress(&format!(
                    "  memory redis-lua: RSS {idle} B idle, {held} B with {n} held: {per:.1} B per held license"
                ));
                entries.push(single(
                    "memory",
                    &variant,
                    "redis-lua",
                    "bytes_per_held",
                    "B",
                    Better::Lower,
                    vec![per],
                ));
                entries.push(single(
                    "memory",
                    "idle server",
                    "redis-lua",
                    "rss_bytes",
                    "B",
                    Better::Lower,
                    vec![idle as f64],
                ));
            }
            None => {
                let why = self.cfg.redis_missing.clone();
                self.skip("memory (redis rows)", &why);
            }
        }
        self.push(entries);
        Ok(())
    }

    fn idle(&mut self) -> Result<(), String> {
        let sizes = self.sizes.idle.clone();
        let limit = fd_limit().unwrap_or(1024) as usize;
        for n in sizes {
            if n + 1000 > limit {
                self.skip(
                    &format!("idle {n}"),
                    &format!(
                        "needs {} open files in the generator and in the server; the limit here is {limit} (hard limit {}). bench/run raises the soft limit with ulimit -n, up to the hard limit; past it only a process with CAP_SYS_RESOURCE can go (here even root cannot: the sandbox does not grant it)",
                        n + 1000,
                        fd_hard_limit().map_or("unknown".to_string(), |h| h.to_string())
                    ),
                );
                continue;
            }
            let variant = format!("{n} idle conns");
            let mut entries = Vec::new();
            for target in [Target::Tally, Target::RedisLua] {
                let (tallyd, redis): (Option<Running>, Option<Redis>) = match target {
                    Target::Tally => (Some(self.tallyd(&[])?), None),
                    _ => match self.redis(n + 1000)? {
                        Some(r) => (None, Some(r)),
                        None => {
                            let why = self.cfg.redis_missing.clone();
                            self.skip(&format!("idle {n} (redis)"), &why);
                            continue;
                        }
                    },
                };
                let Some(server) = tallyd.as_ref().or(redis.as_ref().map(|r| &r.server)) else {
                    continue;
                };
                let name = if target == Target::Tally {
                    "tally"
                } else {
                    "redis"
                };
                let (addr, pid) = (server.addr, server.pid());
                std::thread::sleep(Duration::from_millis(200));
                let before = servers::rss_bytes(pid)?;
                let t = Instant::now();
                let (streams, err) = load::connect_idle(
                    addr,
                    n,
                    5_000,
                    8,
                    Instant::now() + Duration::from_secs(120),
                );
                let connect_s = t.elapsed().as_secs_f64();
                let got = streams.len();
                // Wait (bounded) until the server has accepted them all.
                let seen = wait_accepted(addr, target, got, Duration::from_secs(60));
                let after = servers::rss_bytes(pid)?;
                // Does it still serve a request while they are held?
                let t1 = Instant::now();
                let serves = ping(addr, target).is_ok();
                let ping_us = t1.elapsed().as_secs_f64() * 1e6;
                // Count what the server holds, not what connect() returned.
                let held = seen.min(got);
                let per = after.saturating_sub(before) as f64 / held.max(1) as f64;
                self.progress(&format!(
                    "  idle {name}: {got} of {n} connected in {connect_s:.1}s{}, server reports {seen}; RSS {before} -> {after} B: {per:.0} B per idle connection; serves a request: {serves} ({ping_us:.0} µs incl. connect)",
                    err.as_ref().map_or(String::new(), |e| format!(" (stopped: {e})"))
                ));
                if let Some(e) = err {
                    self.report
                        .notes
                        .push(format!("idle {n} {name}: connected {got} of {n}: {e}"));
                }
                entries.push(single(
                    "idle",
                    &variant,
                    name,
                    "connected",
                    "conns",
                    Better::Higher,
                    vec![got as f64],
                ));
                entries.push(single(
                    "idle",
                    &variant,
                    name,
                    "bytes_per_conn",
                    "B",
                    Better::Lower,
                    vec![per],
                ));
                entries.push(single(
                    "idle",
                    &variant,
                    name,
                    "serves_request",
                    "count",
                    Better::Higher,
                    vec![if serves { 1.0 } else { 0.0 }],
                ));
                entries.push(single(
                    "idle",
                    &variant,
                    name,
                    "ping_us",
                    "µs",
                    Better::None,
                    vec![ping_us],
                ));
                drop(streams);
                drop(redis);
                drop(tallyd);
            }
            self.push(entries);
        }
        Ok(())
    }

    fn durability(&mut self) -> Result<(), String> {
        let t = self.sizes.timing;
        let mut entries = Vec::new();
        for mode in ["sync", "async", "off"] {
            let extra = vec!["--durability".to_string(), mode.to_string()];
            let tallyd = self.tallyd(&extra)?;
            let enc = self.encoder(Target::Tally, None);
            for (name, work) in [
                ("renew 50x1", Workload::Renew),
                ("pairs linger=60 50x1", Workload::Pairs { linger_s: 60 }),
            ] {
                let label = format!("durability {mode} {name}");
                let ms = self.repeat(&label, || {
                    load::closed_loop(tallyd.addr, &enc, work, 50, 1, t)
                })?;
                let variant = format!("{name} {mode}");
                entries.extend(measured_entries("durability", &variant, "tally", &ms));
                let d = distribution("durability", &variant, "tally", &ms);
                self.report.distributions.push(d);
            }
        }
        self.push(entries);
        Ok(())
    }

    /// Closed-loop 50x1 CHECKOUT+CHECKIN pairs with the report log off and
    /// on (`--report-log`, durability off as the other load scenarios: the
    /// report log's lines and the usage aggregation on the log thread),
    /// then with `--durability async` (the usage history written too)
    /// without and with an upload to an endpoint that never answers
    /// (`--upload-url`, first upload at once); the debug log's dropped
    /// events after each (STATUS `log_dropped`: the usage events ride its
    /// channel), and the on/off and hanging/async throughput ratios.
    fn reportlog(&mut self) -> Result<(), String> {
        let t = self.sizes.timing;
        let mut entries = Vec::new();
        let mut medians = Vec::new();
        // An upload endpoint that accepts and never answers (not even the
        // TLS handshake): the uploader's thread waits on it the whole run.
        let hang = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let hang_url = format!("https://{}/", hang.local_addr().map_err(|e| e.to_string())?);
        let mut held = Vec::new();
        hang.set_nonblocking(true).map_err(|e| e.to_string())?;
        for mode in ["off", "on", "async", "async+hanging"] {
            let extra: Vec<String> = match mode {
                "on" => vec!["--report-log".into(), "{dir}/report.log".into()],
                // Durability async: a state dir, so the usage history
                // (usage.sqlite) is written too; the upload needs it.
                "async" => vec!["--durability".into(), "async".into()],
                _ => vec![
                    "--durability".into(),
                    "async".into(),
                    "--upload-url".into(),
                    hang_url.clone(),
                    "--upload-delay".into(),
                    "0".into(),
                    "--upload-timeout".into(),
                    "1h".into(),
                ],
            };
            let tallyd = self.tallyd(&extra)?;
            let enc = self.encoder(Target::Tally, None);
            let work = Workload::Pairs { linger_s: 0 };
            let label = format!("reportlog {mode} pairs 50x1");
            let ms = self.repeat(&label, || {
                while let Ok((c, _)) = hang.accept() {
                    held.push(c);
                }
                load::closed_loop(tallyd.addr, &enc, work, 50, 1, t)
            })?;
            let dropped = log_dropped(tallyd.addr)?;
            self.progress(&format!("  reportlog {mode}: log_dropped {dropped}"));
            let variant = format!("pairs 50x1 {mode}");
            entries.extend(measured_entries("reportlog", &variant, "tally", &ms));
            let d = distribution("reportlog", &variant, "tally", &ms);
            self.report.distributions.push(d);
            entries.push(single(
                "reportlog",
                &variant,
                "tally",
                "log_dropped",
                "count",
                Better::Lower,
                vec![dropped as f64],
            ));
            let mut ops: Vec<f64> = ms.iter().map(|m| m.ops_per_s).collect();
            ops.sort_by(f64::total_cmp);
            medians.push(ops.get(ops.len() / 2).copied().unwrap_or(0.0));
        }
        while let Ok((c, _)) = hang.accept() {
            held.push(c);
        }
        // The hanging endpoint must have been reached, or the last pair
        // measured nothing of it.
        if held.is_empty() {
            return Err("reportlog: the uploader never connected to the hanging endpoint".into());
        }
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        if let [off, on, sync, hanging] = medians[..] {
            for (variant, r) in [
                ("pairs 50x1 on/off", ratio(on, off)),
                ("pairs 50x1 hanging/async", ratio(hanging, sync)),
            ] {
                self.progress(&format!("  reportlog: {variant} throughput {r:.3}"));
                entries.push(single(
                    "reportlog",
                    variant,
                    "tally",
                    "ops_ratio",
                    "ratio",
                    Better::Higher,
                    vec![r],
                ));
            }
        }
        self.push(entries);
        Ok(())
    }

    /// Latency of one client's PING and CHECKOUT+CHECKIN on a server of
    /// many features, alone and while clients loop full STATUS requests.
    fn status(&mut self) -> Result<(), String> {
        let n = self.sizes.status_features;
        let k = self.sizes.status_clients;
        let t = self.sizes.status_timing;
        let t0 = Instant::now();
        let tallyd = self.tallyd_licensed(&status::license(n), &[])?;
        let held = status::hold_holders(tallyd.addr, n, self.sizes.status_hold_every)?;
        self.progress(&format!(
            "  status: tallyd serving {n} features up, {held} of them held, in {:.1}s",
            t0.elapsed().as_secs_f64()
        ));
        let mut alone: [Vec<Measured>; 2] = [Vec::new(), Vec::new()];
        let mut loaded: [Vec<Measured>; 2] = [Vec::new(), Vec::new()];
        let (mut sizes, mut rates, mut replies, mut errs) = (vec![], vec![], vec![], vec![]);
        for rep in 0..self.cfg.reps {
            let a = status::phase(tallyd.addr, 0, t)?;
            let b = status::phase(tallyd.addr, k, t)?;
            let per_s = b.status.replies as f64 / t.seconds;
            for (name, ma, mb) in [
                (status::Probe::Ping.name(), &a.ping, &b.ping),
                (status::Probe::Pair.name(), &a.pair, &b.pair),
            ] {
                self.progress(&format!(
                    "  status {name} rep {}/{}: alone: {}",
                    rep + 1,
                    self.cfg.reps,
                    ma.line()
                ));
                self.progress(&format!(
                    "  status {name} rep {}/{}: {k} STATUS loops: {}",
                    rep + 1,
                    self.cfg.reps,
                    mb.line()
                ));
            }
            self.progress(&format!(
                "  status rep {}/{}: {} STATUS replies in {:.1}s ({per_s:.1}/s), {:.0} B each, {} not OK",
                rep + 1,
                self.cfg.reps,
                b.status.replies,
                t.seconds,
                b.status.reply_bytes(),
                b.status.err
            ));
            sizes.push(b.status.reply_bytes());
            rates.push(per_s);
            replies.push(b.status.replies as f64);
            errs.push(b.status.err as f64);
            alone[0].push(a.ping);
            alone[1].push(a.pair);
            loaded[0].push(b.ping);
            loaded[1].push(b.pair);
        }
        let mut entries = Vec::new();
        // A probe's ops_per_s is the requests it sent of the 1,000 a second
        // it schedules: fewer when slots passed while a reply was late.
        let probe_entries =
            |variant: &str, ms: &[Measured]| measured_entries("status", variant, "tally", ms);
        for (i, probe) in [status::Probe::Ping, status::Probe::Pair]
            .into_iter()
            .enumerate()
        {
            let name = probe.name();
            let (va, vl) = (
                format!("{n} features, {name} alone"),
                format!("{n} features, {name} under {k} STATUS loops"),
            );
            entries.extend(probe_entries(&va, &alone[i]));
            entries.extend(probe_entries(&vl, &loaded[i]));
            let ds = [
                distribution("status", &va, "tally", &alone[i]),
                distribution("status", &vl, "tally", &loaded[i]),
            ];
            self.report.distributions.extend(ds);
            let variant = format!("{n} features, {name}: under {k} STATUS loops / alone");
            let pairs = || alone[i].iter().zip(&loaded[i]);
            let r = |metric: &str, f: &dyn Fn(&Measured) -> f64| {
                single(
                    "status",
                    &variant,
                    "tally",
                    metric,
                    "×",
                    Better::Lower,
                    pairs().map(|(a, b)| status::ratio(f(b), f(a))).collect(),
                )
            };
            entries.push(r("p50_ratio", &|m| m.p50_us));
            entries.push(r("p99_ratio", &|m| m.p99_us));
            entries.push(r("p999_ratio", &|m| m.p999_us));
            entries.push(r("max_ratio", &|m| m.max_us));
        }
        let variant = format!("{n} features, {k} STATUS loops");
        let e = |metric: &str, unit: &str, v: Vec<f64>| {
            single("status", &variant, "tally", metric, unit, Better::None, v)
        };
        entries.push(e("reply_bytes", "B", sizes));
        entries.push(e("replies_per_s", "replies/s", rates));
        entries.push(e("ok", "count", replies));
        entries.push(e("err", "count", errs));
        self.push(entries);
        Ok(())
    }

    /// Closed 50x1 against a tallyd with `--http`, alone and while a
    /// scraper GETs `/metrics` every [`SCRAPE_EVERY`]; the two alternate
    /// (which goes first flips each repetition) on the same server.
    fn scrape(&mut self) -> Result<(), String> {
        let port = servers::free_port()?;
        let http: SocketAddr = ([127, 0, 0, 1], port).into();
        let tallyd = self.tallyd(&["--http".to_string(), http.to_string()])?;
        let enc = self.encoder(Target::Tally, None);
        let work = Workload::Pairs { linger_s: 0 };
        let t = self.sizes.timing;
        let (mut alone, mut scraped, mut stats) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..self.cfg.reps {
            for scraping in [rep % 2 == 1, rep % 2 == 0] {
                let scraper = scraping.then(|| crate::scrape::Scraper::start(http, SCRAPE_EVERY));
                let m = load::closed_loop(tallyd.addr, &enc, work, 50, 1, t)?;
                let what = match scraper {
                    Some(s) => {
                        let st = s.stop();
                        if st.ok == 0 {
                            return Err(format!("no scrape of http://{http}/metrics succeeded"));
                        }
                        stats.push(st);
                        scraped.push(m);
                        format!(
                            "scraped ({} scrapes, {} failed, {:.0} B, {:.2} ms each)",
                            st.ok, st.failed, st.mean_bytes, st.mean_ms
                        )
                    }
                    None => {
                        alone.push(m);
                        "alone".to_string()
                    }
                };
                let m = if scraping {
                    scraped.last()
                } else {
                    alone.last()
                };
                self.progress(&format!(
                    "  scrape closed 50x1 {what} rep {}/{}: {}",
                    rep + 1,
                    self.cfg.reps,
                    m.map(Measured::line).unwrap_or_default()
                ));
            }
        }
        let mut entries = measured_entries("scrape", "closed 50x1, no scraper", "tally", &alone);
        let every = SCRAPE_EVERY.as_millis();
        let variant = format!("closed 50x1, /metrics every {every} ms");
        entries.extend(measured_entries("scrape", &variant, "tally", &scraped));
        for (v, ms) in [
            ("closed 50x1, no scraper", &alone),
            (variant.as_str(), &scraped),
        ] {
            let d = distribution("scrape", v, "tally", ms);
            self.report.distributions.push(d);
        }
        let ratio_variant = format!("closed 50x1: /metrics every {every} ms / no scraper");
        let pairs = || alone.iter().zip(&scraped);
        entries.push(single(
            "scrape",
            &ratio_variant,
            "tally",
            "throughput_ratio",
            "×",
            Better::Higher,
            pairs()
                .map(|(a, b)| status::ratio(b.ops_per_s, a.ops_per_s))
                .collect(),
        ));
        entries.push(single(
            "scrape",
            &ratio_variant,
            "tally",
            "p99_ratio",
            "×",
            Better::Lower,
            pairs()
                .map(|(a, b)| status::ratio(b.p99_us, a.p99_us))
                .collect(),
        ));
        entries.push(single(
            "scrape",
            &variant,
            "tally",
            "scrape_ms",
            "ms",
            Better::None,
            stats.iter().map(|s| s.mean_ms).collect(),
        ));
        entries.push(single(
            "scrape",
            &variant,
            "tally",
            "scrape_bytes",
            "B",
            Better::None,
            stats.iter().map(|s| s.mean_bytes).collect(),
        ));
        self.push(entries);
        Ok(())
    }

    fn criterion(&mut self) -> Result<(), String> {
        if self.cfg.quick {
            self.skip("criterion", "not run with --quick");
            return Ok(());
        }
        let started = std::time::SystemTime::now();
        // Where cargo bench writes: CARGO_TARGET_DIR if set, else ROOT/target.
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map_or_else(|| self.cfg.root.join("target"), |t| self.cfg.root.join(t));
        let log = target.join("criterion-run.log");
        let logf = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let logf2 = logf.try_clone().map_err(|e| e.to_string())?;
        // Both cores: the 2-thread benches need them.
        let mut cmd = if servers::have_taskset() && self.cfg.place.server_core.is_some() {
            let mut c = std::process::Command::new("taskset");
            c.args(["-c", "0-1", "cargo"]);
            c
        } else {
            std::process::Command::new("cargo")
        };
        self.progress(&format!(
            "  criterion: cargo bench (engine, wheel), log in {}",
            log.display()
        ));
        let status = cmd
            .current_dir(&self.cfg.root)
            .args([
                "bench",
                "-p",
                "tally-bench",
                "--bench",
                "engine",
                "--bench",
                "wheel",
                "--",
                "--warm-up-time",
                "1",
                "--measurement-time",
                "3",
            ])
            .stdout(logf)
            .stderr(logf2)
            .status()
            .map_err(|e| format!("cargo bench: {e}"))?;
        if !status.success() {
            return Err(format!(
                "cargo bench failed ({status}); see {}",
                log.display()
            ));
        }
        let entries = read_criterion(&target.join("criterion"), started);
        self.progress(&format!("  criterion: {} benchmarks read", entries.len()));
        self.report.entries.extend(entries);
        Ok(())
    }
}

/// The kernel's count of connections dropped for a full accept queue
/// (TcpExtListenOverflows, machine-wide).
fn listen_overflows() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/net/netstat") else {
        return 0;
    };
    let mut lines = s.lines();
    while let (Some(h), Some(v)) = (lines.next(), lines.next()) {
        if !h.starts_with("TcpExt:") {
            continue;
        }
        let hv = h.split_whitespace().zip(v.split_whitespace());
        for (k, val) in hv {
            if k == "ListenOverflows" {
                return val.parse().unwrap_or(0);
            }
        }
    }
    0
}

fn wait_accepted(addr: SocketAddr, target: Target, n: usize, limit: Duration) -> usize {
    let t = Instant::now();
    let mut seen = 0;
    while t.elapsed() < limit {
        seen = server_connections(addr, target).unwrap_or(0);
        if seen >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    seen
}

fn server_connections(addr: SocketAddr, target: Target) -> Result<usize, String> {
    let mut c = Conn::connect(addr, target.is_redis()).map_err(|e| e.to_string())?;
    if target.is_redis() {
        let info = c.command(&["INFO", "clients"]).map_err(|e| e.to_string())?;
        info.lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .map(|v| v.saturating_sub(1))
            .ok_or_else(|| "no connected_clients in INFO".into())
    } else {
        let s = c.request_line("STATUS").map_err(|e| e.to_string())?;
        s.split("\"connections\":")
            .nth(1)
            .and_then(|r| r.split(|ch: char| !ch.is_ascii_digit()).next())
            .and_then(|v| v.parse::<usize>().ok())
            .map(|v| v.saturating_sub(1))
            .ok_or_else(|| "no connections in STATUS".into())
    }
}

fn ping(addr: SocketAddr, target: Target) -> Result<(), String> {
    let mut c = Conn::connect(addr, target.is_redis()).map_err(|e| e.to_string())?;
    let r = if target.is_redis() {
        c.command(&["PING"]).map_err(|e| e.to_string())?
    } else {
        c.request_line("PING").map_err(|e| e.to_string())?
    };
    if r == "PONG" {
        Ok(())
    } else {
        Err(format!("PING answered {r:?}"))
    }
}

/// Reads criterion's `new/estimates.json` files written after `since`.
pub fn read_criterion(dir: &std::path::Path, since: std::time::SystemTime) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    if let Some(en) = criterion_entry(&p, since) {
                        out.push(en);
                    }
                } else if p.file_name().is_some_and(|n| n != "report" && n != "base") {
                    stack.push(p);
                }
            }
        }
    }
    out.sort_by(|a, b| a.variant.cmp(&b.variant));
    out
}

fn criterion_entry(new: &std::path::Path, since: std::time::SystemTime) -> Option<Entry> {
    let est = new.join("estimates.json");
    let modified = std::fs::metadata(&est).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&est).ok()?).ok()?;
    let b: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(new.join("benchmark.json")).ok()?).ok()?;
    let id = b.get("full_id")?.as_str()?.to_string();
    // Per element when the bench declares a throughput of n elements.
    let per = b
        .get("throughput")
        .and_then(|t| t.get("Elements"))
        .and_then(serde_json::Value::as_f64)
        .filter(|&n| n > 1.0)
        .unwrap_or(1.0);
    let med = v.get("median")?;
    let point = med.get("point_estimate")?.as_f64()? / per;
    let ci = med.get("confidence_interval")?;
    let lo = ci.get("lower_bound")?.as_f64()? / per;
    let hi = ci.get("upper_bound")?.as_f64()? / per;
    Some(Entry {
        scenario: "criterion".into(),
        variant: id,
        target: "in-process".into(),
        metric: "median_ns".into(),
        unit: if per > 1.0 { "ns/element" } else { "ns" }.into(),
        better: Better::Lower,
        values: vec![point],
        median: point,
        spread: if point > 0.0 { (hi - lo) / point } else { 0.0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_medians_per_element() {
        let dir = std::env::temp_dir().join(format!("tally-bench-crit-{}", std::process::id()));
        let new = dir.join("expiry").join("tally").join("100").join("new");
        std::fs::create_dir_all(&new).expect("mkdir");
        let since = std::time::SystemTime::now() - Duration::from_secs(60);
        std::fs::write(
            new.join("estimates.json"),
            r#"{"median":{"point_estimate":2000.0,"confidence_interval":{"lower_bound":1900.0,"upper_bound":2100.0}}}"#,
        )
        .expect("write");
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"full_id":"expiry/tally/100","throughput":{"Elements":100}}"#,
        )
        .expect("write");
        let got = read_criterion(&dir, since);
        // Files older than the run are not this run's.
        let later = std::time::SystemTime::now() + Duration::from_secs(60);
        let stale = read_criterion(&dir, later);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(stale.is_empty());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].variant, "expiry/tally/100");
        assert_eq!(got[0].median, 20.0);
        assert_eq!(got[0].unit, "ns/element");
        assert!((got[0].spread - 0.1).abs() < 1e-9);
    }
}
