//! `tallyctl agent checkout`, `agent reconcile` and `agent run`: the
//! library ([`crate::Client`], [`crate::Agent`], [`crate::join`]) from the
//! command line, for demos, operators and tests.
//!
//! `agent checkout FEATURE --user U --host H --handle X [--linger SECS]
//! [--version V] --cache FILE` prints one line:
//!
//! | line | exit |
//! |---|---|
//! | `OK <feature> <handle> deadline <unix-ms> (<time>) from <server>` | 0 |
//! | `DENIED <feature> <handle> <REASON> <flexlm-code> <text>` | 1 |
//! | `OFFLINE <feature> <handle> grace until <time> (<n> of <count> offline)` | 0 |
//! | `REFUSED <CODE> <reason>` (offline grace refused; `GRACE_ENDED` ends `(grace ended <time>)`) | 241 |
//! | `REFUSED cache <file>: [<SECTION>] line <n>: <what>` (no usable cache) | 241 |
//! | ``REFUSED cache <file>.admissions: line <n>: <what>; run `tallyctl cache salvage <file>` ...`` (a damaged side file) | 241 |
//! | `REFUSED no license server answered (<what was tried>)` (no cache file yet) | 241 |
//!
//! With an offline `REFUSED`, stderr says which servers were tried.
//!
//! A server's `ERR ...` or a reply that breaks the protocol is reported on
//! stderr as other tallyctl errors are (exit 1, 244). After an `OK` the
//! picture is fetched on the same connection (one `PICTURE` per run) and
//! stored in the cache ([`crate::join::refresh`]); a server without
//! PICTURE, or a cache that cannot be written, is said on stderr and the
//! checkout stays `OK`. When no server answers, [`offline_checkout`]
//! admits the session under grace from the cache.
//!
//! `agent reconcile --cache FILE` sends one `RECONCILE` per pending
//! offline admission and prints one line each (`RECONCILED ...`,
//! `OVERDRAFT ... excess <n>`, `DUPLICATE ...`, `REJECTED <feature>
//! <handle> <REASON> ...` (the server denied it for good: recorded as
//! rejected, not sent again), `FAILED ...`, [`crate::join::Outcome`]), then
//! the summary; exit 0 when every admission was recorded, 1 when some
//! failed or were rejected, 241 when no server answered.
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

use super::args::{AgentCheckoutArgs, AgentCommand, AgentReconcileArgs, AgentRunArgs};
use super::{print, CtlError};
use crate::agent::{Agent, AgentConfig, OfflineConfig};
use crate::cache::{CacheError, Identity};
use crate::grace::{rfc3339, Refusal};
use crate::join::{self, Refresh};
use crate::offline::{Durability, Offline, OfflineError, Session, Verdict};
use crate::{Checkout, Client, ClientError, ServerAddr, Timeouts};

/// What the offline path answers for a checkout no server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfflineOutcome {
    /// No usable cache: `REFUSED cache <why>` (damaged, side file
    /// unreadable: the cache is never used then), or, when there is no
    /// cache file yet (no contact ever), `REFUSED no license server
    /// answered (...)` as without one.
    Unavailable {
        /// Why (the file, and for a damaged one its section and line).
        why: String,
        /// The cache file does not exist.
        missing: bool,
    },
    /// Admitted under grace until `grace_end_ms` (Unix ms): `OFFLINE ...`.
    Admitted {
        /// The admission id (what RECONCILE sends).
        id: String,
        /// When this pool's grace ends.
        grace_end_ms: Millis,
        /// Licenses of the pool held offline now, this one included.
        held: u32,
        /// The pool's cached count (`None`: uncounted).
        total: Option<u32>,
    },
    /// Refused by the offline rules (grace over, pool full, ...): `REFUSED
    /// <reason>`.
    Refused {
        /// Why, starting with the code (`GRACE_ENDED ...`).
        reason: String,
    },
}

/// The offline path of `agent checkout`: called when no server answered
/// (`unreachable` says what was tried), with the `--cache` file: the
/// session admitted under grace ([`Offline::admit_lingering`], recorded in
/// the side file, fsynced, before this returns) or refused.
pub fn offline_checkout(
    cache: &Path,
    req: &Checkout,
    unreachable: &ClientError,
    now: Millis,
) -> OfflineOutcome {
    let _ = unreachable;
    let mut offline = match Offline::open(cache, Durability::Fsync) {
        Ok(o) => o,
        Err(e) => {
            let missing = matches!(&e, OfflineError::Cache(CacheError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound);
            return OfflineOutcome::Unavailable {
                why: with_hint(&e, cache),
                missing,
            };
        }
    };
    let session = Session {
        feature: &req.feature,
        version: req.version.as_deref(),
        user: &req.user,
        host: &req.host,
        handle: &req.handle,
        count: 1,
    };
    let linger = (req.linger_ms > 0).then_some(req.linger_ms);
    match offline.admit_lingering(&session, linger, now) {
        Err(e @ OfflineError::BadField { .. }) => OfflineOutcome::Refused {
            reason: format!("BAD_FIELD {e}"),
        },
        Err(e) => OfflineOutcome::Unavailable {
            why: with_hint(&e, cache),
            missing: false,
        },
        Ok(Verdict::Admitted {
            admission,
            grace_ends_ms: grace_end_ms,
        }) => {
            let pools = &offline.cache().pools;
            let i = pools.iter().position(|p| {
                p.feature == admission.feature
                    && p.version == admission.pool_version
                    && p.expiry == admission.pool_expiry
            });
            let held = offline.ledger().held(pools);
            OfflineOutcome::Admitted {
                id: admission.id,
                grace_end_ms,
                held: i.and_then(|i| held.get(i).copied()).unwrap_or(0),
                total: i.and_then(|i| pools[i].total),
            }
        }
        Ok(Verdict::Refused(r)) => OfflineOutcome::Refused {
            reason: match &r {
                Refusal::GraceEnded {
                    feature,
                    ended_ms,
                    hours,
                } => format!(
                    "GRACE_ENDED no license server answered and the offline grace of {feature} \
                     ({hours} h after the last contact) is over (grace ended {})",
                    rfc3339(*ended_ms)
                ),
                r => format!("{} {r}", r.code()),
            },
        },
    }
}

/// `e`'s text; for a damaged side file, followed by what to do about it.
fn with_hint(e: &OfflineError, cache: &Path) -> String {
    match e {
        OfflineError::Corrupt { .. } => {
            format!("{e}; {}", super::cache::salvage_hint(cache))
        }
        e => e.to_string(),
    }
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
        AgentCommand::Reconcile(a) => reconcile(a, client),
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
            refresh_cache(&mut client, &a.cache);
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
                OfflineOutcome::Admitted {
                    grace_end_ms,
                    held,
                    total,
                    ..
                } => {
                    let total = total.map_or_else(|| "uncounted".to_string(), |t| t.to_string());
                    print(&format!(
                        "OFFLINE {} {} grace until {} ({held} of {total} offline)\n",
                        req.feature,
                        req.handle,
                        rfc3339(grace_end_ms)
                    ));
                    Ok(0)
                }
                OfflineOutcome::Refused { reason } => {
                    print(&format!("REFUSED {reason}\n"));
                    eprintln!("tallyctl: {e}");
                    Ok(241)
                }
                OfflineOutcome::Unavailable { why, missing: true } => {
                    print(&format!("REFUSED {e}\n"));
                    eprintln!("tallyctl: no offline cache yet: {why}");
                    Ok(241)
                }
                OfflineOutcome::Unavailable { why, .. } => {
                    print(&format!("REFUSED cache {why}\n"));
                    eprintln!("tallyctl: {e}");
                    Ok(241)
                }
            }
        }
        Err(e) => Err(CtlError::from(e)),
    }
}

/// After a granted checkout: the picture into the cache; what went wrong
/// on stderr (the checkout stands).
fn refresh_cache(client: &mut Client, cache: &Path) {
    let now = SystemClock.now_ms();
    match join::refresh(client, cache, &Identity::default(), now, Durability::Fsync) {
        Ok(Refresh::Stored { offline, .. }) => {
            let pending = offline.pending().len();
            if pending > 0 {
                eprintln!(
                    "tallyctl: {pending} offline admissions in {} not reconciled yet: \
                     run tallyctl agent reconcile --cache {}",
                    cache.display(),
                    cache.display()
                );
            }
        }
        Ok(Refresh::Unsupported { server }) => eprintln!(
            "tallyctl: {server} does not answer PICTURE (ERR UNKNOWN_COMMAND): the cache {} \
             is not refreshed",
            cache.display()
        ),
        Err(e) => eprintln!(
            "tallyctl: the cache {} is not refreshed: {e}",
            cache.display()
        ),
    }
}

fn reconcile(a: &AgentReconcileArgs, mut client: Client) -> Result<i32, CtlError> {
    let mut offline = match Offline::open(&a.cache, Durability::Fsync) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tallyctl: {}", with_hint(&e, &a.cache));
            return Ok(1);
        }
    };
    let report = match join::reconcile(&mut client, &mut offline) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tallyctl: {e}");
            return Ok(1);
        }
    };
    for o in &report.outcomes {
        print(&format!("{o}\n"));
    }
    print(&format!("{}\n", report.summary()));
    if report.stopped.is_some() {
        return Ok(241);
    }
    if report.outcomes.is_empty() {
        // Nothing was sent: no contact to record.
        return Ok(0);
    }
    refresh_cache(&mut client, &a.cache);
    Ok(if report.counts().3 > 0 || report.rejected() > 0 {
        1
    } else {
        0
    })
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
    let mut agent = match &a.cache {
        Some(cache) => Agent::with_offline(client, config, OfflineConfig::new(cache)),
        None => Agent::new(client, config),
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::picture::sample;

    /// The last contact: 2026-04-22 09:08:00 UTC.
    const T0: Millis = 1_776_848_880_000;
    const HOUR: Millis = 3_600_000;

    fn cache() -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().expect("dir");
        let p = d.path().join("tally.ini");
        Offline::contact(&p, &sample(), &Identity::default(), T0, Durability::NoSync)
            .expect("contact");
        (d, p)
    }

    fn nobody() -> ClientError {
        ClientError::NoServer {
            tried: vec!["27000@lic1: cannot connect: refused".into()],
        }
    }

    #[test]
    fn admits_up_to_the_count_then_refuses_and_grace_ends() {
        let (_d, p) = cache();
        let req =
            |h: &str| Checkout::new("MPM_ADV_RC", "u", "ts1", h).linger(Duration::from_secs(60));
        for (i, h) in ["a", "b"].into_iter().enumerate() {
            match offline_checkout(&p, &req(h), &nobody(), T0 + 1) {
                OfflineOutcome::Admitted {
                    grace_end_ms,
                    held,
                    total,
                    ..
                } => {
                    assert_eq!(
                        (grace_end_ms, held, total),
                        (T0 + 720 * HOUR, i as u32 + 1, Some(2))
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        let full = offline_checkout(&p, &req("c"), &nobody(), T0 + 2);
        assert!(
            matches!(&full, OfflineOutcome::Refused { reason } if reason.starts_with("POOL_FULL ")),
            "{full:?}"
        );
        // The linger went into the side file (RECONCILE sends it).
        let (_, ledger) = Offline::inspect(&p).expect("inspect");
        assert_eq!(ledger.entries[0].admission.linger_ms, Some(60_000));
        let late = offline_checkout(&p, &req("c"), &nobody(), T0 + 720 * HOUR);
        match late {
            OfflineOutcome::Refused { reason } => assert!(
                reason.starts_with("GRACE_ENDED ")
                    && reason.ends_with("(grace ended 2026-05-22T09:08:00Z)"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_damaged_or_missing_cache_is_never_used() {
        let (d, p) = cache();
        let text = std::fs::read_to_string(&p).expect("read");
        let edited = text.replacen("NumLic=2", "NumLic=200", 1);
        assert_ne!(edited, text);
        std::fs::write(&p, edited).expect("edit");
        let req = Checkout::new("MPM_ADV_RC", "u", "ts1", "a");
        match offline_checkout(&p, &req, &nobody(), T0 + 1) {
            OfflineOutcome::Unavailable { why, missing } => {
                assert!(!missing);
                assert!(
                    why.starts_with(&format!("{}: [PLD_POOL_LIC_NODE_", p.display())),
                    "{why}"
                );
                assert!(why.contains("] line "), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let none = d.path().join("none.ini");
        assert!(matches!(
            offline_checkout(&none, &req, &nobody(), T0),
            OfflineOutcome::Unavailable { missing: true, .. }
        ));
        assert!(!crate::offline::side_file_path(&none).exists());
    }
}
