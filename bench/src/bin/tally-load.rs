//! tally-load: one load scenario against tally or Redis, from the command
//! line (the suite, `tally-bench all`, runs them all).
//!
//! ```text
//! tally-load pairs  --connections 50 --pipeline 1 --seconds 5
//! tally-load pairs  --target redis-lua --connections 4 --pipeline 32
//! tally-load renew  --open-rate 40000 --connections 50
//! tally-load storm  --clients 2000
//! tally-load expiry --rounds 50 --background 100000
//! ```
//!
//! Without `--addr` it starts its own server on a free loopback port:
//! tallyd (the binary next to this one) or redis-server (from PATH, with
//! the semaphore script loaded), and stops it afterwards.
//!
//! Closed loop (default): each connection sends `--pipeline` requests,
//! waits for their replies, and repeats; latency is from the send of the
//! batch. Closed loops hide queueing delay (coordinated omission).
//! `--open-rate R`: open loop at R requests/s over all connections, latency
//! from each request's intended send time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tally_bench::load::{self, Timing, Workload};
use tally_bench::servers::{self, Placement, Redis, Running, TallydSpec};
use tally_bench::wire::{Conn, Encoder, Target};

#[derive(Debug, Parser)]
#[command(
    name = "tally-load",
    about = "Load generator: tally (protocol v1) or Redis (RESP)"
)]
struct Args {
    /// tally, redis-lua (Lua semaphore via EVALSHA) or redis-set.
    #[arg(long, global = true, default_value = "tally", value_parser = parse_target)]
    target: Target,
    /// Server to load (default: start a private one on loopback).
    #[arg(long, global = true)]
    addr: Option<SocketAddr>,
    /// tallyd binary to start (default: next to this binary).
    #[arg(long, global = true)]
    tallyd: Option<PathBuf>,
    /// Event-loop threads for the tallyd it starts.
    #[arg(long, global = true, default_value_t = 1)]
    server_workers: usize,
    /// Licenses of the load feature (tallyd license; Redis semaphore limit).
    #[arg(long, global = true, default_value_t = 2_000_000)]
    seats: u64,
    /// Extra argument for the tallyd it starts (repeatable; `{dir}` is its
    /// scratch directory), e.g. --tallyd-arg=--durability --tallyd-arg=sync.
    #[arg(long = "tallyd-arg", global = true, allow_hyphen_values = true)]
    tallyd_args: Vec<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

fn parse_target(s: &str) -> Result<Target, String> {
    Target::parse(s).ok_or_else(|| format!("{s:?}: expected tally, redis-lua or redis-set"))
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Acquire then release a fresh instance, over and over.
    Pairs {
        #[command(flatten)]
        load: LoadArgs,
        /// Linger of each checkout, seconds (0: connection-bound).
        #[arg(long, default_value_t = 0)]
        linger: u32,
    },
    /// Re-acquire held handles with a one-hour linger (renewal churn).
    Renew(LoadArgs),
    /// Logon storm: new clients arrive evenly over one second; each
    /// connects, takes the startup (CITRIX) and a product license.
    Storm {
        /// Clients arriving.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
    },
    /// Linger expiry lateness (tally only): a count=1 feature, a second
    /// client spinning until it gets it; lateness = grant time - deadline.
    Expiry {
        /// Expiries to measure.
        #[arg(long, default_value_t = 30)]
        rounds: usize,
        /// Linger of the measured checkout, ms.
        #[arg(long, default_value_t = 1000)]
        linger_ms: u64,
        /// Other lingering licenses held meanwhile (far deadlines).
        #[arg(long, default_value_t = 0)]
        background: usize,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct LoadArgs {
    /// Connections (driven by the generator threads, several per thread).
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Requests in flight per connection (closed loop).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Warm-up seconds (not measured).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Open loop at this many requests per second (all connections).
    #[arg(long)]
    open_rate: Option<f64>,
}

/// The servers this run started; stopped when dropped.
struct Started {
    _tally: Option<Running>,
    _redis: Option<Redis>,
}

fn start(args: &Args) -> Result<(SocketAddr, String, Option<Started>), String> {
    let no_pin = Placement { server_core: None };
    if args.target.is_redis() {
        match args.addr {
            Some(a) => {
                let sha = Conn::connect(a, true)
                    .and_then(|mut c| {
                        c.command(&["SCRIPT", "LOAD", tally_bench::wire::SEMAPHORE_LUA])
                    })
                    .map_err(|e| format!("{a}: {e}"))?;
                Ok((a, sha, None))
            }
            None => {
                let bin = servers::find_redis().ok_or_else(servers::redis_missing_message)?;
                let r = servers::start_redis(&bin, &no_pin, 10_000)?;
                Ok((
                    r.server.addr,
                    r.sha.clone(),
                    Some(Started {
                        _tally: None,
                        _redis: Some(r),
                    }),
                ))
            }
        }
    } else {
        match args.addr {
            Some(a) => Ok((a, String::new(), None)),
            None => {
                let bin = match &args.tallyd {
                    Some(p) => p.clone(),
                    None => servers::default_tallyd()?,
                };
                let t = servers::start_tallyd(
                    &TallydSpec {
                        bin,
                        seats: args.seats,
                        workers: args.server_workers,
                        extra: args.tallyd_args.clone(),
                    },
                    &no_pin,
                )?;
                Ok((
                    t.addr,
                    String::new(),
                    Some(Started {
                        _tally: Some(t),
                        _redis: None,
                    }),
                ))
            }
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let (addr, sha, _server) = start(args)?;
    let enc = Encoder {
        target: args.target,
        sha,
        limit: args.seats,
    };
    let name = args.target.name();
    let drive = |work: Workload, a: &LoadArgs| -> Result<(), String> {
        let t = Timing {
            warmup_s: a.warmup,
            seconds: a.seconds,
        };
        match a.open_rate {
            Some(rate) => {
                let m = load::open_loop(addr, &enc, work, a.connections, rate, t)?;
                println!(
                    "{name} open loop {rate:.0}/s over {} connections: {}",
                    a.connections,
                    m.line()
                );
            }
            None => {
                let m = load::closed_loop(addr, &enc, work, a.connections, a.pipeline, t)?;
                println!(
                    "{name} {} connections x {} pipelined: {}",
                    a.connections,
                    a.pipeline,
                    m.line()
                );
            }
        }
        Ok(())
    };
    match &args.scenario {
        Scenario::Pairs { load, linger } => drive(Workload::Pairs { linger_s: *linger }, load),
        Scenario::Renew(a) => drive(Workload::Renew, a),
        Scenario::Storm { clients } => {
            let s = load::storm(addr, &enc, *clients, Duration::from_secs(1), 32)?;
            println!(
                "{name} logon storm: {} of {clients} clients got both licenses; connect + 2 grants: {}",
                s.completed,
                s.m.line()
            );
            Ok(())
        }
        Scenario::Expiry {
            rounds,
            linger_ms,
            background,
        } => {
            if args.target.is_redis() {
                return Err("expiry: the Redis semaphore has no expiry to measure".into());
            }
            load::hold_lingering(addr, &enc, *background, "bg", 86_400)?;
            let x = load::expiry(addr, *rounds, *linger_ms, "")?;
            let l = x.lateness();
            println!(
                "expiry lateness with {background} other lingers, {rounds} rounds: p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.2} ms, early {}",
                l.quantile_ms(0.5),
                l.quantile_ms(0.99),
                l.quantile_ms(0.999),
                l.quantile_ms(1.0),
                x.early
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tally-load: {e}");
            ExitCode::FAILURE
        }
    }
}
