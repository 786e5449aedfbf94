//! `tallyctl agent checkout` and `tallyctl agent run`: the library
//! ([`crate::Client`], [`crate::Agent`]) from the command line, for demos,
//! operators and tests.
//!
//! `agent checkout FEATURE --user U --host H --handle X [--linger SECS]
//! [--version V] --cache FILE` prints one line:
//!
//! | line | exit |
//! |---|---|
//! | `OK <feature> <handle> deadline <unix-ms> (<time>) from <server>` | 0 |
//! | `DENIED <feature> <handle> <REASON> <flexlm-code> <text>` | 1 |
//! | `REFUSED no license server answered (<what was tried>)` | 241 |
//!
//! A server's `ERR ...` or a reply that breaks the protocol is reported on
//! stderr as other tallyctl errors are (exit 1, 244). When no server
//! answers, [`offline_checkout`] is asked first: the offline path (the
//! cache file and its grace) plugs in there; until it does, it answers
//! [`OfflineOutcome::Unavailable`] and the checkout is `REFUSED`.
//!
//! `agent run FEATURE --user U --host H --handle X --linger SECS
//! [--renew-every SECS] [--for SECS]` runs an [`crate::Agent`] on the
//! system clock and prints one line per action, `HH:MM:SS <EVENT> ...`
//! ([`crate::agent::Event`]'s text); with `--for` it shuts down (returns
//! the license) after that long.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, TimeZone};
use tally_core::clock::{Clock, Millis, SystemClock};

use super::args::{AgentCheckoutArgs, AgentCommand, AgentRunArgs};
use super::{print, CtlError};
use crate::agent::{Agent, AgentConfig};
use crate::{Checkout, Client, ClientError, ServerAddr, Timeouts};

/// What the offline path answers for a checkout no server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfflineOutcome {
    /// No offline admission possible (no offline path, or no usable
    /// cache): the checkout is `REFUSED`.
    Unavailable,
    /// Admitted under grace until `grace_end_ms` (Unix ms): `OFFLINE ...`.
    Admitted {
        /// When this pool's grace ends.
        grace_end_ms: Millis,
    },
    /// Refused by the offline rules (grace over, pool full): `REFUSED
    /// <reason>`.
    Refused {
        /// Why.
        reason: String,
    },
}

/// The offline path of `agent checkout`: called when no server answered
/// (`unreachable` says what was tried), with the `--cache` file. The cache
/// and grace code (client/src/cache/, grace.rs) plugs in here; for now
/// nothing is admitted offline.
pub fn offline_checkout(
    cache: &Path,
    req: &Checkout,
    unreachable: &ClientError,
    now: Millis,
) -> OfflineOutcome {
    let _ = (cache, req, unreachable, now);
    OfflineOutcome::Unavailable
}

/// Runs `agent ...`.
pub(crate) fn run(
    cmd: &AgentCommand,
    servers: Vec<ServerAddr>,
    wait: Duration,
) -> Result<i32, CtlError> {
    let client = Client::with_timeouts(servers, Timeouts::all(wait));
    match cmd {
        AgentCommand::Checkout(a) => checkout(a, client),
        AgentCommand::Run(a) => run_agent(a, client),
    }
}

fn secs(what: &str, value: f64) -> Result<Duration, CtlError> {
    Duration::try_from_secs_f64(value).map_err(|_| CtlError::BadField {
        what: what.to_string(),
        value: value.to_string(),
        why: "must be a number of seconds, 0 or more".to_string(),
    })
}

fn product(
    feature: &str,
    user: &str,
    host: &str,
    handle: &str,
    linger: Duration,
    version: Option<&String>,
) -> Checkout {
    let mut c = Checkout::new(feature, user, host, handle).linger(linger);
    c.version = version.cloned();
    c
}

fn checkout(a: &AgentCheckoutArgs, mut client: Client) -> Result<i32, CtlError> {
    let linger = secs("linger", a.linger.unwrap_or(0.0))?;
    let req = product(
        &a.feature,
        &a.user,
        &a.host,
        &a.handle,
        linger,
        a.version.as_ref(),
    );
    match client.checkout(&req) {
        Ok(g) => {
            let when = if g.deadline_ms == 0 {
                "held by the connection: checked in when tallyctl exits".to_string()
            } else {
                local_time(g.deadline_ms).to_rfc3339()
            };
            print(&format!(
                "OK {} {} deadline {} ({when}) from {}\n",
                g.feature, g.handle, g.deadline_ms, g.server
            ));
            Ok(0)
        }
        Err(ClientError::Denied {
            reason,
            flexlm_code,
            text,
            ..
        }) => {
            print(&format!(
                "DENIED {} {} {reason} {flexlm_code} {text}\n",
                req.feature, req.handle
            ));
            Ok(1)
        }
        Err(e) if e.is_unreachable() => {
            match offline_checkout(&a.cache, &req, &e, SystemClock.now_ms()) {
                OfflineOutcome::Admitted { grace_end_ms } => {
                    print(&format!(
                        "OFFLINE {} {} grace ends {grace_end_ms} ({})\n",
                        req.feature,
                        req.handle,
                        local_time(grace_end_ms).to_rfc3339()
                    ));
                    Ok(0)
                }
                OfflineOutcome::Refused { reason } => {
                    print(&format!("REFUSED {reason}\n"));
                    Ok(241)
                }
                OfflineOutcome::Unavailable => {
                    print(&format!("REFUSED {e}\n"));
                    Ok(241)
                }
            }
        }
        Err(e) => Err(CtlError::from(e)),
    }
}

fn run_agent(a: &AgentRunArgs, client: Client) -> Result<i32, CtlError> {
    let linger = secs("linger", a.linger)?;
    let mut config = AgentConfig::new(product(
        &a.feature,
        &a.user,
        &a.host,
        &a.handle,
        linger,
        a.version.as_ref(),
    ));
    config.startup_feature = (!a.no_startup).then(|| a.startup_feature.clone());
    if let Some(every) = a.renew_every {
        let every = secs("renew-every", every)?;
        config.renew_every_ms = Some(u64::try_from(every.as_millis()).unwrap_or(u64::MAX));
    }
    let run_for = a.run_for.map(|s| secs("for", s)).transpose()?;
    let started = Instant::now();
    let mut agent = Agent::new(client, config);
    let show = |events: &[crate::agent::Event]| {
        for e in events {
            let t = local_time(SystemClock.now_ms()).format("%H:%M:%S");
            print(&format!("{t} {e}\n"));
        }
    };
    loop {
        let now = SystemClock.now_ms();
        let tick = agent.tick(now);
        show(&tick.events);
        let left = run_for.map(|d| d.saturating_sub(started.elapsed()));
        if left == Some(Duration::ZERO) {
            break;
        }
        let until_next = tick.next.map_or(Duration::from_secs(60), |next| {
            Duration::from_millis(next.saturating_sub(SystemClock.now_ms()))
        });
        let nap = left.map_or(until_next, |l| l.min(until_next));
        std::thread::sleep(nap.max(Duration::from_millis(1)));
    }
    show(&agent.shutdown(SystemClock.now_ms()).events);
    Ok(0)
}

fn local_time(ms: Millis) -> DateTime<Local> {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    Local
        .timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Local::now)
}

impl From<ClientError> for CtlError {
    /// tallyctl's error (exit status, message) for a library error.
    fn from(e: ClientError) -> CtlError {
        match e {
            ClientError::Server { server, code, text } => CtlError::Server {
                addr: server,
                reply: format!("ERR {code} {text}"),
            },
            ClientError::BadReply { server, reply, why } => CtlError::BadReply {
                addr: server,
                reply,
                why,
            },
            ClientError::BadField { what, value, fault } => CtlError::BadField {
                what: what.to_string(),
                value,
                why: fault.to_string(),
            },
            ClientError::Denied {
                server,
                reason,
                flexlm_code,
                text,
            } => CtlError::Server {
                addr: server,
                reply: format!("DENIED {reason} {flexlm_code} {text}"),
            },
            e @ ClientError::NoServer { .. } => CtlError::Unreachable { why: e.to_string() },
        }
    }
}
