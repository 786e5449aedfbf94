//! [`Agent`]: seed 002's license lifecycle for a program, on an explicit
//! clock.
//!
//! 1. **Start**: the startup license ([`AgentConfig::startup_feature`],
//!    `CITRIX` by default: checked out and at once checked in), then the
//!    product license with its linger ([`AgentConfig::product`]).
//! 2. **Renewal**: every [`AgentConfig::renew_every`] (default linger / 84:
//!    every 6 hours for a linger of 21 days) the same checkout again, same
//!    handle and linger; the server moves the deadline to now + linger.
//! 3. **Return** on [`Agent::shutdown`]: the checkout again with linger
//!    1 s; the server checks the license in a second later.
//!
//! The agent never reads a clock and never sleeps: the program calls
//! [`Agent::tick`] with the time, and the [`Tick`] says what was done
//! ([`Event`]s) and when the agent next needs to run. Tests drive it on a
//! manual clock; a program sleeps until [`Tick::next`] (or polls).
//!
//! **Failures.** When a renewal fails (no server answers, or the server
//! denies it), the license is kept: it stays valid until the deadline the
//! server last granted ([`Agent::holds`]), and the renewal is retried with
//! backoff: [`AgentConfig::retry_first_ms`] (1 minute), doubling at each
//! failure, at most [`AgentConfig::retry_max_ms`] (1 hour; both capped at
//! the renewal interval).
//! **If the deadline passes** with no renewal granted, the server has
//! checked the license in: the agent reports [`Event::Expired`], holds
//! nothing any more, and goes on trying to check the license out again
//! (same request, same backoff) until one succeeds ([`Event::CheckedOut`]).
//! A failed start (startup license or first checkout) is retried the same
//! way; a startup license that has been taken is not taken again.
//!
//! A product checkout without linger is held by the connection: it has no
//! deadline and is never renewed.
//!
//! **Offline** ([`Agent::with_offline`], optional): after every granted
//! checkout or renewal the agent fetches `PICTURE` and stores it in the
//! cache file ([`crate::join::refresh`]: rewritten only when it changed;
//! the contact recorded). When a checkout finds no server, the session is
//! admitted offline under grace ([`crate::offline::Offline::admit`],
//! [`Event::AdmittedOffline`]): the agent holds it, and keeps trying the
//! server with the same backoff. Before its first call to a server that
//! answers again, it reports every pending offline admission
//! ([`crate::join::reconcile`], one [`Event::Reconciled`] each), then
//! checks the license out online (same handle: the reconciled instance).
//! A refusal (grace over, pool full, no usable cache) is
//! [`Event::OfflineRefused`] and the agent retries as without a cache.
//! The startup license too is taken offline when no server answers
//! ([`Event::StartupOffline`]: admitted under its own grace, 96 h for
//! `LT=SYS`, and released at once).
//!
//! ```no_run
//! use std::time::Duration;
//! use tally_client::agent::{Agent, AgentConfig};
//! use tally_client::{Checkout, Client};
//! use tally_core::clock::{Clock, SystemClock};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let product = Checkout::new("MPM_ADV_RC", "USER15", "GENE-VM-2K3", "ec26edf8")
//!     .linger(Duration::from_secs(21 * 24 * 3600));
//! let mut agent = Agent::new(Client::from_env()?, AgentConfig::new(product));
//! # let stop_requested = || true;
//! loop {
//!     let now = SystemClock.now_ms();
//!     let tick = agent.tick(now);
//!     for event in &tick.events {
//!         println!("{event}");
//!     }
//!     if stop_requested() {
//!         break;
//!     }
//!     let wait = tick.next.map_or(60_000, |next| next.saturating_sub(now).min(60_000));
//!     std::thread::sleep(Duration::from_millis(wait));
//! }
//! for event in agent.shutdown(SystemClock.now_ms()).events {
//!     println!("{event}");
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::PathBuf;

use tally_core::clock::Millis;

use crate::cache::Identity;
use crate::join::{self, Outcome, Refresh};
use crate::offline::{Durability, Offline, Session, Verdict};

use crate::client::{Checkout, Client, ClientError, Grant, Reconciled, STARTUP_FEATURE};
use crate::offline::Admission;
use crate::picture::Picture;

/// What an [`Agent`] needs from a license server: [`Client`] is the real
/// one; tests give a fake.
pub trait Licensing {
    /// The startup license: check out and at once check in.
    fn startup_license(
        &mut self,
        feature: &str,
        user: &str,
        host: &str,
        handle: &str,
    ) -> Result<Grant, ClientError>;

    /// Check `req` out (also: renew it).
    fn checkout(&mut self, req: &Checkout) -> Result<Grant, ClientError>;

    /// Return `req`'s license: check it out again with linger 1 s.
    fn return_license(&mut self, req: &Checkout) -> Result<Grant, ClientError>;

    /// The license picture (`PICTURE`).
    fn picture(&mut self) -> Result<Picture, ClientError>;

    /// Report a session admitted offline (`RECONCILE`).
    fn reconcile(&mut self, admission: &Admission) -> Result<Reconciled, ClientError>;
}

impl Licensing for Client {
    fn startup_license(
        &mut self,
        feature: &str,
        user: &str,
        host: &str,
        handle: &str,
    ) -> Result<Grant, ClientError> {
        Client::startup_license(self, feature, user, host, handle)
    }

    fn checkout(&mut self, req: &Checkout) -> Result<Grant, ClientError> {
        Client::checkout(self, req)
    }

    fn return_license(&mut self, req: &Checkout) -> Result<Grant, ClientError> {
        Client::return_license(self, req)
    }

    fn picture(&mut self) -> Result<Picture, ClientError> {
        Client::picture(self)
    }

    fn reconcile(&mut self, admission: &Admission) -> Result<Reconciled, ClientError> {
        Client::reconcile(self, admission)
    }
}

/// Default first retry delay after a failure, ms (1 minute).
pub const DEFAULT_RETRY_FIRST_MS: Millis = 60_000;

/// Default longest retry delay, ms (1 hour).
pub const DEFAULT_RETRY_MAX_MS: Millis = 3_600_000;

/// Renewals per linger by default: seed 002 renews a 21-day linger every
/// 6 hours, 84 times per linger.
pub const RENEWALS_PER_LINGER: u64 = 84;

/// What an [`Agent`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The product license, with its linger.
    pub product: Checkout,
    /// The startup license's feature (by the product's user, host and
    /// handle), `CITRIX` by default; `None`: no startup license.
    pub startup_feature: Option<String>,
    /// Renewal interval, ms; `None`: linger / [`RENEWALS_PER_LINGER`]
    /// ([`AgentConfig::renew_every`]).
    pub renew_every_ms: Option<Millis>,
    /// First retry delay after a failure, ms.
    pub retry_first_ms: Millis,
    /// Longest retry delay, ms.
    pub retry_max_ms: Millis,
}

impl AgentConfig {
    /// Seed 002's agent for `product`: the `CITRIX` startup license,
    /// renewal every linger / 84, retries from 1 minute doubling up to 1
    /// hour.
    pub fn new(product: Checkout) -> AgentConfig {
        AgentConfig {
            product,
            startup_feature: Some(STARTUP_FEATURE.to_string()),
            renew_every_ms: None,
            retry_first_ms: DEFAULT_RETRY_FIRST_MS,
            retry_max_ms: DEFAULT_RETRY_MAX_MS,
        }
    }

    /// The renewal interval, ms: as set, else linger / 84 (at least 1 ms);
    /// `None` for a checkout without linger (never renewed).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tally_client::{agent::AgentConfig, Checkout};
    ///
    /// let product = Checkout::new("MPM_ADV_RC", "u", "h", "x")
    ///     .linger(Duration::from_secs(21 * 24 * 3600));
    /// assert_eq!(AgentConfig::new(product).renew_every(), Some(6 * 3600 * 1000));
    /// ```
    pub fn renew_every(&self) -> Option<Millis> {
        if self.product.linger_ms == 0 {
            return None;
        }
        Some(
            self.renew_every_ms
                .unwrap_or(self.product.linger_ms / RENEWALS_PER_LINGER)
                .max(1),
        )
    }

    /// The delay before retry number `attempt` (1 for the first):
    /// `retry_first` doubled `attempt - 1` times, at most `retry_max`;
    /// both capped at the renewal interval.
    pub fn retry_delay(&self, attempt: u32) -> Millis {
        let cap = self.renew_every().unwrap_or(Millis::MAX);
        let max = self.retry_max_ms.min(cap).max(1);
        let first = self.retry_first_ms.min(max).max(1);
        let shift = attempt.saturating_sub(1).min(63);
        first.saturating_mul(1u64 << shift).min(max)
    }
}

/// One thing an agent did, at the time `at` of the tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The startup license was checked out and in.
    Startup {
        /// When.
        at: Millis,
        /// Its feature.
        feature: String,
    },
    /// The startup license failed; the start is retried at `retry_at`.
    StartupFailed {
        /// When.
        at: Millis,
        /// Why.
        error: ClientError,
        /// When the agent tries again.
        retry_at: Millis,
    },
    /// The product license was checked out.
    CheckedOut {
        /// When.
        at: Millis,
        /// The server's deadline (Unix ms; 0: held by the connection).
        deadline_ms: Millis,
    },
    /// The product checkout failed (nothing is held); retried at
    /// `retry_at`.
    CheckoutFailed {
        /// When.
        at: Millis,
        /// Why.
        error: ClientError,
        /// When the agent tries again.
        retry_at: Millis,
    },
    /// The license was renewed.
    Renewed {
        /// When.
        at: Millis,
        /// The new deadline.
        deadline_ms: Millis,
    },
    /// A renewal failed; the license is still held until `deadline_ms`,
    /// the renewal is retried at `retry_at`.
    RenewFailed {
        /// When.
        at: Millis,
        /// Why.
        error: ClientError,
        /// When the agent tries again.
        retry_at: Millis,
        /// Until when the license is still held.
        deadline_ms: Millis,
    },
    /// The deadline passed with no renewal: the server has checked the
    /// license in. The agent tries to check it out again.
    Expired {
        /// When the agent noticed.
        at: Millis,
        /// The deadline that passed.
        deadline_ms: Millis,
    },
    /// Returned on shutdown (checked out with linger 1 s): the server
    /// checks it in at `deadline_ms`.
    Returned {
        /// When.
        at: Millis,
        /// The 1-second deadline.
        deadline_ms: Millis,
    },
    /// The return failed: the license stays out until its deadline
    /// (`deadline_ms`; 0: until the connection closes, which is now).
    ReturnFailed {
        /// When.
        at: Millis,
        /// Why.
        error: ClientError,
        /// The deadline it lapses at.
        deadline_ms: Millis,
    },
    /// No server answered the startup license: taken offline under its
    /// grace (admitted and at once released, as the server checks it out
    /// and in).
    StartupOffline {
        /// When.
        at: Millis,
        /// Its feature.
        feature: String,
        /// The admission id (what RECONCILE sends).
        id: String,
    },
    /// No server answered: admitted offline under grace (until
    /// `grace_ends_ms`); the agent holds it and retries the server at
    /// `retry_at`.
    AdmittedOffline {
        /// When.
        at: Millis,
        /// The admission id (what RECONCILE sends).
        id: String,
        /// When the pool's grace ends.
        grace_ends_ms: Millis,
        /// When the agent tries the server again.
        retry_at: Millis,
    },
    /// No server answered and the offline path refused too.
    OfflineRefused {
        /// When.
        at: Millis,
        /// Why (the grace refusal, or why the cache cannot be used).
        reason: String,
    },
    /// An offline admission reported to the server.
    Reconciled {
        /// When.
        at: Millis,
        /// What the server recorded.
        outcome: Box<Outcome>,
    },
    /// The cache was not refreshed after a contact (the server has no
    /// PICTURE: said once; or the cache could not be written).
    CacheNotRefreshed {
        /// When.
        at: Millis,
        /// Why.
        why: String,
    },
    /// Shut down while held offline: the admission is released locally
    /// (if not reconciled yet, RECONCILE still reports it, with its end).
    ReleasedOffline {
        /// When.
        at: Millis,
        /// The admission id.
        id: String,
    },
}

impl fmt::Display for Event {
    /// One line: the action in capitals, then its details (times in Unix
    /// ms).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Startup { feature, .. } => write!(f, "STARTUP {feature} checked out and in"),
            Event::StartupFailed {
                error, retry_at, ..
            } => write!(f, "STARTUP_FAILED {error}; retry at {retry_at}"),
            Event::CheckedOut { deadline_ms, .. } => {
                write!(f, "CHECKED_OUT deadline {deadline_ms}")
            }
            Event::CheckoutFailed {
                error, retry_at, ..
            } => write!(f, "CHECKOUT_FAILED {error}; retry at {retry_at}"),
            Event::Renewed { deadline_ms, .. } => write!(f, "RENEWED deadline {deadline_ms}"),
            Event::RenewFailed {
                error,
                retry_at,
                deadline_ms,
                ..
            } => write!(
                f,
                "RENEW_FAILED {error}; still held until {deadline_ms}; retry at {retry_at}"
            ),
            Event::Expired { deadline_ms, .. } => {
                write!(f, "EXPIRED deadline {deadline_ms} passed unrenewed")
            }
            Event::Returned { deadline_ms, .. } => {
                write!(f, "RETURNED checked in by the server at {deadline_ms}")
            }
            Event::ReturnFailed {
                error, deadline_ms, ..
            } => write!(f, "RETURN_FAILED {error}; lapses at {deadline_ms}"),
            Event::AdmittedOffline {
                id,
                grace_ends_ms,
                retry_at,
                ..
            } => write!(
                f,
                "OFFLINE admitted as {id}, grace until {}; retry at {retry_at}",
                crate::grace::rfc3339(*grace_ends_ms)
            ),
            Event::OfflineRefused { reason, .. } => write!(f, "OFFLINE_REFUSED {reason}"),
            Event::StartupOffline { feature, id, .. } => {
                write!(f, "STARTUP_OFFLINE {feature} admitted as {id} and released")
            }
            Event::Reconciled { outcome, .. } => write!(f, "{outcome}"),
            Event::CacheNotRefreshed { why, .. } => write!(f, "CACHE_NOT_REFRESHED {why}"),
            Event::ReleasedOffline { id, .. } => write!(f, "RELEASED_OFFLINE {id}"),
        }
    }
}

/// What one [`Agent::tick`] (or [`Agent::shutdown`]) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// What was done, in order (empty when nothing was due).
    pub events: Vec<Event>,
    /// When the agent next needs a tick (Unix ms); `None`: never (stopped,
    /// or a license without linger that needs no renewal).
    pub next: Option<Millis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not started, or the start failed: startup license then checkout,
    /// due at `at`.
    Start { attempt: u32, at: Millis },
    /// Held until `deadline` (0: by the connection); renewal due at `renew_at`.
    Held {
        deadline: Millis,
        renew_at: Option<Millis>,
    },
    /// Renewal failed `attempt` times; still held until `deadline`.
    Retrying {
        deadline: Millis,
        attempt: u32,
        at: Millis,
    },
    /// Nothing held (the first checkout failed, or the license expired);
    /// checkout due at `at`.
    Acquiring { attempt: u32, at: Millis },
    /// Held offline (admitted under grace); the server is tried again at
    /// `at`.
    OfflineHeld { attempt: u32, at: Millis },
    /// Shut down.
    Stopped,
}

/// Where an [`Agent`] keeps its offline cache ([`Agent::with_offline`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineConfig {
    /// The cache file (its side file next to it).
    pub cache: PathBuf,
    /// `ProdName` / `ProdFeatName` written into it.
    pub identity: Identity,
    /// Whether side-file appends are fsynced ([`Durability::Fsync`]: the
    /// default).
    pub durability: Durability,
}

impl OfflineConfig {
    /// The cache at `cache`, default identity, fsynced.
    pub fn new(cache: impl Into<PathBuf>) -> OfflineConfig {
        OfflineConfig {
            cache: cache.into(),
            identity: Identity::default(),
            durability: Durability::Fsync,
        }
    }
}

#[derive(Debug)]
struct OfflineSide {
    config: OfflineConfig,
    /// The cache and side file, once opened (or refreshed).
    state: Option<Offline>,
    /// The admission held offline, if any.
    admission: Option<String>,
    /// `CacheNotRefreshed` for a server without PICTURE was told.
    told_unsupported: bool,
}

impl OfflineSide {
    /// The cache's state, opened if it was not (`Err`: why it cannot be).
    fn open(&mut self) -> Result<&mut Offline, String> {
        if self.state.is_none() {
            let o = Offline::open(&self.config.cache, self.config.durability)
                .map_err(|e| e.to_string())?;
            self.state = Some(o);
        }
        self.state.as_mut().ok_or_else(String::new)
    }
}

/// Seed 002's agent ([module docs](self)).
#[derive(Debug)]
pub struct Agent<L: Licensing = Client> {
    lic: L,
    config: AgentConfig,
    state: State,
    offline: Option<OfflineSide>,
}

impl<L: Licensing> Agent<L> {
    /// An agent that starts at its first [`Agent::tick`].
    pub fn new(lic: L, config: AgentConfig) -> Agent<L> {
        Agent {
            lic,
            config,
            state: State::Start { attempt: 0, at: 0 },
            offline: None,
        }
    }

    /// An agent with an offline cache ([module docs](self)): refreshed on
    /// every grant, used when no server answers, reconciled when one
    /// answers again. Admissions a former process left pending (a reboot
    /// mid-outage) are reconciled too.
    pub fn with_offline(lic: L, config: AgentConfig, offline: OfflineConfig) -> Agent<L> {
        let mut a = Agent::new(lic, config);
        a.offline = Some(OfflineSide {
            config: offline,
            state: None,
            admission: None,
            told_unsupported: false,
        });
        a
    }

    /// The offline admission held, if the license is held offline.
    pub fn offline_admission(&self) -> Option<&str> {
        match self.state {
            State::OfflineHeld { .. } => self.offline.as_ref()?.admission.as_deref(),
            _ => None,
        }
    }

    /// The offline cache's state, if one is configured and opened.
    pub fn offline(&self) -> Option<&Offline> {
        self.offline.as_ref()?.state.as_ref()
    }

    /// Its configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// The license service (the [`Client`]).
    pub fn licensing(&mut self) -> &mut L {
        &mut self.lic
    }

    /// True if the product license is held at `now`: granted and its
    /// deadline not passed (even if renewals are failing).
    pub fn holds(&self, now: Millis) -> bool {
        match self.state {
            State::Held { deadline, .. } => deadline == 0 || now < deadline,
            State::Retrying { deadline, .. } => now < deadline,
            State::OfflineHeld { .. } => true,
            _ => false,
        }
    }

    /// The deadline of the license held, if any (0: held by the
    /// connection).
    pub fn deadline(&self) -> Option<Millis> {
        match self.state {
            State::Held { deadline, .. } | State::Retrying { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    /// When the agent next needs a tick ([`Tick::next`]).
    pub fn next_due(&self) -> Option<Millis> {
        match self.state {
            State::Start { at, .. }
            | State::Acquiring { at, .. }
            | State::OfflineHeld { at, .. } => Some(at),
            State::Held { renew_at, .. } => renew_at,
            State::Retrying { deadline, at, .. } => Some(at.min(deadline)),
            State::Stopped => None,
        }
    }

    /// Does what is due at `now` (nothing if nothing is; a clock moved
    /// backwards only delays what is due).
    pub fn tick(&mut self, now: Millis) -> Tick {
        let mut events = Vec::new();
        if self.next_due().is_some_and(|due| now >= due) {
            self.reconcile(now, &mut events);
        }
        match self.state {
            State::Start { attempt, at } if now >= at => {
                if let Some(feature) = self.config.startup_feature.clone() {
                    let p = &self.config.product;
                    match self
                        .lic
                        .startup_license(&feature, &p.user, &p.host, &p.handle)
                    {
                        Ok(_) => events.push(Event::Startup { at: now, feature }),
                        Err(error)
                            if error.is_unreachable()
                                && self.startup_offline(now, &feature, &mut events) => {}
                        Err(error) => {
                            let retry_at = now.saturating_add(self.config.retry_delay(attempt + 1));
                            events.push(Event::StartupFailed {
                                at: now,
                                error,
                                retry_at,
                            });
                            self.state = State::Start {
                                attempt: attempt + 1,
                                at: retry_at,
                            };
                            return self.done(events);
                        }
                    }
                }
                self.acquire(now, 0, &mut events);
            }
            State::Acquiring { attempt, at } if now >= at => {
                self.acquire(now, attempt, &mut events)
            }
            State::OfflineHeld { attempt, at } if now >= at => {
                self.acquire(now, attempt, &mut events)
            }
            State::Held {
                deadline,
                renew_at: Some(r),
            } if now >= r => self.renew(now, deadline, 0, &mut events),
            State::Retrying { deadline, .. } if now >= deadline => {
                events.push(Event::Expired {
                    at: now,
                    deadline_ms: deadline,
                });
                self.acquire(now, 0, &mut events);
            }
            State::Retrying {
                deadline,
                attempt,
                at,
            } if now >= at => self.renew(now, deadline, attempt, &mut events),
            _ => {}
        }
        self.done(events)
    }

    /// Returns the license (checkout with linger 1 s) if one is held at
    /// `now`, and stops: later ticks do nothing.
    pub fn shutdown(&mut self, now: Millis) -> Tick {
        let mut events = Vec::new();
        if let State::OfflineHeld { .. } = self.state {
            if let Some(side) = &mut self.offline {
                if let (Some(id), Some(o)) = (side.admission.take(), side.state.as_mut()) {
                    match o.release(&id, now) {
                        Ok(_) => events.push(Event::ReleasedOffline { at: now, id }),
                        Err(e) => events.push(Event::OfflineRefused {
                            at: now,
                            reason: format!("release of {id} not recorded: {e}"),
                        }),
                    }
                }
            }
        } else if self.holds(now) {
            let deadline = self.deadline().unwrap_or(0);
            match self.lic.return_license(&self.config.product) {
                Ok(g) => events.push(Event::Returned {
                    at: now,
                    deadline_ms: g.deadline_ms,
                }),
                Err(error) => events.push(Event::ReturnFailed {
                    at: now,
                    error,
                    deadline_ms: deadline,
                }),
            }
        }
        self.state = State::Stopped;
        self.done(events)
    }

    fn done(&self, events: Vec<Event>) -> Tick {
        Tick {
            events,
            next: self.next_due(),
        }
    }

    /// The product checkout (nothing held): held, or retried.
    fn acquire(&mut self, now: Millis, attempt: u32, events: &mut Vec<Event>) {
        match self.lic.checkout(&self.config.product) {
            Ok(g) => {
                events.push(Event::CheckedOut {
                    at: now,
                    deadline_ms: g.deadline_ms,
                });
                if let Some(side) = &mut self.offline {
                    side.admission = None;
                }
                self.hold(now, g.deadline_ms);
                self.refresh(now, events);
            }
            Err(error) => {
                let retry_at = now.saturating_add(self.config.retry_delay(attempt + 1));
                let next = State::Acquiring {
                    attempt: attempt + 1,
                    at: retry_at,
                };
                if let State::OfflineHeld { .. } = self.state {
                    // Still held offline: retry the server later.
                    events.push(Event::CheckoutFailed {
                        at: now,
                        error,
                        retry_at,
                    });
                    self.state = State::OfflineHeld {
                        attempt: attempt + 1,
                        at: retry_at,
                    };
                    return;
                }
                let unreachable = error.is_unreachable();
                if unreachable && self.offline.is_some() {
                    self.state = next;
                    self.admit_offline(now, attempt, retry_at, error, events);
                    return;
                }
                events.push(Event::CheckoutFailed {
                    at: now,
                    error,
                    retry_at,
                });
                self.state = next;
            }
        }
    }

    /// No server answered the product checkout: admit it offline, or say
    /// why not (and retry at `retry_at` as without a cache).
    fn admit_offline(
        &mut self,
        now: Millis,
        attempt: u32,
        retry_at: Millis,
        error: ClientError,
        events: &mut Vec<Event>,
    ) {
        let Some(side) = &mut self.offline else {
            return;
        };
        let p = &self.config.product;
        let session = Session {
            feature: &p.feature,
            version: p.version.as_deref(),
            user: &p.user,
            host: &p.host,
            handle: &p.handle,
            count: 1,
        };
        let linger = (p.linger_ms > 0).then_some(p.linger_ms);
        let verdict = side.open().and_then(|o| {
            o.admit_lingering(&session, linger, now)
                .map_err(|e| e.to_string())
        });
        match verdict {
            Ok(Verdict::Admitted {
                admission,
                grace_ends_ms,
            }) => {
                side.admission = Some(admission.id.clone());
                events.push(Event::AdmittedOffline {
                    at: now,
                    id: admission.id,
                    grace_ends_ms,
                    retry_at,
                });
                self.state = State::OfflineHeld {
                    attempt: attempt + 1,
                    at: retry_at,
                };
            }
            Ok(Verdict::Refused(r)) => {
                events.push(Event::CheckoutFailed {
                    at: now,
                    error,
                    retry_at,
                });
                events.push(Event::OfflineRefused {
                    at: now,
                    reason: format!("{} {r}", r.code()),
                });
            }
            Err(why) => {
                events.push(Event::CheckoutFailed {
                    at: now,
                    error,
                    retry_at,
                });
                events.push(Event::OfflineRefused {
                    at: now,
                    reason: format!("cache {why}"),
                });
            }
        }
    }

    /// No server answered the startup license: take it offline under its
    /// own grace (96 h for `LT=SYS`), admitted and at once released, as
    /// the server would check it out and in. `false` (nothing recorded,
    /// the reason an event) when there is no cache or grace refuses.
    fn startup_offline(&mut self, now: Millis, feature: &str, events: &mut Vec<Event>) -> bool {
        let Some(side) = &mut self.offline else {
            return false;
        };
        let p = &self.config.product;
        let session = Session {
            feature,
            version: None,
            user: &p.user,
            host: &p.host,
            handle: &p.handle,
            count: 1,
        };
        let done = side.open().and_then(|o| {
            let v = o.admit(&session, now).map_err(|e| e.to_string())?;
            if let Verdict::Admitted { admission, .. } = &v {
                o.release(&admission.id, now).map_err(|e| e.to_string())?;
            }
            Ok(v)
        });
        match done {
            Ok(Verdict::Admitted { admission, .. }) => {
                events.push(Event::StartupOffline {
                    at: now,
                    feature: feature.to_string(),
                    id: admission.id,
                });
                true
            }
            Ok(Verdict::Refused(r)) => {
                events.push(Event::OfflineRefused {
                    at: now,
                    reason: format!("{} {r}", r.code()),
                });
                false
            }
            Err(why) => {
                events.push(Event::OfflineRefused {
                    at: now,
                    reason: format!("cache {why}"),
                });
                false
            }
        }
    }

    /// Reports pending offline admissions, if there are any (nothing is
    /// sent otherwise). A server that does not answer leaves them pending.
    fn reconcile(&mut self, now: Millis, events: &mut Vec<Event>) {
        let Some(side) = &mut self.offline else {
            return;
        };
        let Ok(offline) = side.open() else {
            return;
        };
        if offline.pending().is_empty() {
            return;
        }
        match join::reconcile(&mut self.lic, offline) {
            Ok(report) => {
                events.extend(
                    report
                        .outcomes
                        .into_iter()
                        .map(|outcome| Event::Reconciled {
                            at: now,
                            outcome: Box::new(outcome),
                        }),
                )
            }
            Err(e) => events.push(Event::OfflineRefused {
                at: now,
                reason: format!("reconciliation not recorded: {e}"),
            }),
        }
    }

    /// After a grant: the picture into the cache, the contact recorded.
    fn refresh(&mut self, now: Millis, events: &mut Vec<Event>) {
        let Some(side) = &mut self.offline else {
            return;
        };
        let c = &side.config;
        match join::refresh(&mut self.lic, &c.cache, &c.identity, now, c.durability) {
            Ok(Refresh::Stored { offline, .. }) => side.state = Some(*offline),
            Ok(Refresh::Unsupported { server }) => {
                if !std::mem::replace(&mut side.told_unsupported, true) {
                    events.push(Event::CacheNotRefreshed {
                        at: now,
                        why: format!("{server} does not answer PICTURE"),
                    });
                }
            }
            Err(e) => events.push(Event::CacheNotRefreshed {
                at: now,
                why: e.to_string(),
            }),
        }
    }

    /// A renewal of a license held until `deadline` after `attempt`
    /// failed ones.
    fn renew(&mut self, now: Millis, deadline: Millis, attempt: u32, events: &mut Vec<Event>) {
        match self.lic.checkout(&self.config.product) {
            Ok(g) => {
                events.push(Event::Renewed {
                    at: now,
                    deadline_ms: g.deadline_ms,
                });
                self.hold(now, g.deadline_ms);
                self.refresh(now, events);
            }
            Err(error) => {
                let retry_at = now.saturating_add(self.config.retry_delay(attempt + 1));
                events.push(Event::RenewFailed {
                    at: now,
                    error,
                    retry_at,
                    deadline_ms: deadline,
                });
                self.state = State::Retrying {
                    deadline,
                    attempt: attempt + 1,
                    at: retry_at,
                };
            }
        }
    }

    fn hold(&mut self, now: Millis, deadline: Millis) {
        self.state = State::Held {
            deadline,
            renew_at: self.config.renew_every().map(|e| now.saturating_add(e)),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::ServerAddr;
    use std::time::Duration;
    use tally_core::clock::{Clock, ManualClock};

    const HOUR: Millis = 3_600_000;
    const DAY: Millis = 24 * HOUR;
    const T0: Millis = 1_700_000_000_000;

    /// A server on a manual clock: grants deadline = now + linger, or
    /// fails while `down`. Records every call with its time.
    struct Fake<'a> {
        clock: &'a ManualClock,
        down: bool,
        calls: Vec<(Millis, String)>,
    }

    impl Fake<'_> {
        fn answer(
            &mut self,
            what: String,
            feature: &str,
            handle: &str,
            linger: Millis,
        ) -> Result<Grant, ClientError> {
            let now = self.clock.now_ms();
            self.calls.push((now, what));
            if self.down {
                return Err(ClientError::NoServer {
                    tried: vec!["27000@lic1: cannot connect: refused".into()],
                });
            }
            Ok(Grant {
                feature: feature.into(),
                handle: handle.into(),
                deadline_ms: if linger == 0 { 0 } else { now + linger },
                server: ServerAddr::default_local(),
            })
        }
    }

    impl Licensing for Fake<'_> {
        fn startup_license(
            &mut self,
            f: &str,
            _: &str,
            _: &str,
            h: &str,
        ) -> Result<Grant, ClientError> {
            self.answer(format!("startup {f}"), f, h, 0)
        }
        fn checkout(&mut self, r: &Checkout) -> Result<Grant, ClientError> {
            self.answer(
                format!("checkout linger={}", r.linger_ms),
                &r.feature,
                &r.handle,
                r.linger_ms,
            )
        }
        fn return_license(&mut self, r: &Checkout) -> Result<Grant, ClientError> {
            self.answer("return linger=1000".into(), &r.feature, &r.handle, 1000)
        }
        fn picture(&mut self) -> Result<Picture, ClientError> {
            self.answer("picture".into(), "-", "-", 0)?;
            Ok(crate::picture::sample())
        }
        fn reconcile(&mut self, a: &Admission) -> Result<Reconciled, ClientError> {
            self.answer(format!("reconcile {}", a.id), &a.feature, &a.handle, 0)?;
            Ok(Reconciled::Counted {
                feature: a.feature.clone(),
                handle: a.handle.clone(),
                deadline_ms: 0,
            })
        }
    }

    fn agent(clock: &ManualClock) -> Agent<Fake<'_>> {
        let product = Checkout::new("MPM_ADV_RC", "USER15", "GENE-VM-2K3", "ec26edf8")
            .linger(Duration::from_millis(21 * DAY));
        let fake = Fake {
            clock,
            down: false,
            calls: Vec::new(),
        };
        Agent::new(fake, AgentConfig::new(product))
    }

    /// Ticks at the time the agent asked for.
    fn step(a: &mut Agent<Fake<'_>>, clock: &ManualClock, next: Millis) -> Tick {
        clock.set(next);
        a.tick(next)
    }

    #[test]
    fn start_renews_every_linger_over_84_and_returns() {
        let clock = ManualClock::new(T0);
        let mut a = agent(&clock);
        let t = a.tick(T0);
        assert_eq!(
            t.events,
            [
                Event::Startup {
                    at: T0,
                    feature: "CITRIX".into()
                },
                Event::CheckedOut {
                    at: T0,
                    deadline_ms: T0 + 21 * DAY
                }
            ]
        );
        assert_eq!(t.next, Some(T0 + 6 * HOUR));
        // Nothing before it is due.
        assert!(a.tick(T0 + 6 * HOUR - 1).events.is_empty());
        let mut next = t.next.unwrap_or(0);
        for k in 1..=10 {
            assert_eq!(next, T0 + k * 6 * HOUR);
            let t = step(&mut a, &clock, next);
            assert_eq!(
                t.events,
                [Event::Renewed {
                    at: next,
                    deadline_ms: next + 21 * DAY
                }]
            );
            next = t.next.unwrap_or(0);
        }
        clock.set(next);
        let t = a.shutdown(next);
        assert_eq!(
            t.events,
            [Event::Returned {
                at: next,
                deadline_ms: next + 1000
            }]
        );
        assert_eq!(t.next, None);
        assert!(a.tick(next + DAY).events.is_empty());
        let calls: Vec<&str> = a.lic.calls.iter().map(|(_, c)| c.as_str()).collect();
        let linger = format!("checkout linger={}", 21 * DAY);
        let mut want = vec!["startup CITRIX"];
        want.extend(std::iter::repeat(linger.as_str()).take(11));
        want.push("return linger=1000");
        assert_eq!(calls, want);
    }

    #[test]
    fn a_failing_renewal_backs_off_and_keeps_the_license_until_the_deadline() {
        let clock = ManualClock::new(T0);
        let mut a = agent(&clock);
        a.tick(T0);
        a.lic.down = true;
        let first = T0 + 6 * HOUR;
        let t = step(&mut a, &clock, first);
        assert!(
            matches!(t.events[..], [Event::RenewFailed { retry_at, deadline_ms, .. }]
                if retry_at == first + 60_000 && deadline_ms == T0 + 21 * DAY),
            "{:?}",
            t.events
        );
        // 1, 2, 4, ... minutes, then every hour.
        let mut at = first;
        let mut delays = Vec::new();
        let mut next = t.next.unwrap_or(0);
        while next < T0 + 21 * DAY {
            delays.push(next - at);
            at = next;
            let t = step(&mut a, &clock, next);
            assert!(a.holds(next), "held until the deadline");
            assert!(matches!(t.events[..], [Event::RenewFailed { .. }]));
            next = t.next.unwrap_or(0);
        }
        let minute = 60_000;
        assert_eq!(
            delays[..8],
            [1, 2, 4, 8, 16, 32, 60, 60].map(|m| m * minute)
        );
        // The last retry is cut short by the deadline, where it expires.
        assert_eq!(next, T0 + 21 * DAY);
        assert!(!a.holds(next));
        let t = step(&mut a, &clock, next);
        assert!(
            matches!(t.events[..], [Event::Expired { deadline_ms, .. }, Event::CheckoutFailed { retry_at, .. }]
                if deadline_ms == next && retry_at == next + minute),
            "{:?}",
            t.events
        );
        // The server is back: checked out again, renewals resume.
        a.lic.down = false;
        let back = next + minute;
        let t = step(&mut a, &clock, back);
        assert_eq!(
            t.events,
            [Event::CheckedOut {
                at: back,
                deadline_ms: back + 21 * DAY
            }]
        );
        assert_eq!(t.next, Some(back + 6 * HOUR));
    }

    #[test]
    fn a_renewal_that_succeeds_on_retry_resets_the_schedule() {
        let clock = ManualClock::new(T0);
        let mut a = agent(&clock);
        a.tick(T0);
        a.lic.down = true;
        step(&mut a, &clock, T0 + 6 * HOUR);
        a.lic.down = false;
        let retry = T0 + 6 * HOUR + 60_000;
        let t = step(&mut a, &clock, retry);
        assert!(matches!(t.events[..], [Event::Renewed { .. }]));
        assert_eq!(t.next, Some(retry + 6 * HOUR));
    }

    #[test]
    fn a_failed_start_retries_and_nothing_is_returned() {
        let clock = ManualClock::new(T0);
        let mut a = agent(&clock);
        a.lic.down = true;
        let t = a.tick(T0);
        assert!(
            matches!(t.events[..], [Event::StartupFailed { retry_at, .. }] if retry_at == T0 + 60_000)
        );
        let t = step(&mut a, &clock, T0 + 60_000);
        assert!(
            matches!(t.events[..], [Event::StartupFailed { retry_at, .. }] if retry_at == T0 + 180_000)
        );
        assert!(a.shutdown(T0 + 90_000).events.is_empty());
        assert_eq!(a.lic.calls.len(), 2);
    }

    #[test]
    fn configurable_schedule_and_no_startup() {
        let clock = ManualClock::new(T0);
        let mut a = agent(&clock);
        a.config.startup_feature = None;
        a.config.renew_every_ms = Some(HOUR);
        let t = a.tick(T0);
        assert!(matches!(t.events[..], [Event::CheckedOut { .. }]));
        assert_eq!(t.next, Some(T0 + HOUR));
        let c = AgentConfig::new(Checkout::new("F", "u", "h", "x"));
        assert_eq!((c.renew_every(), c.retry_delay(1)), (None, 60_000));
        let short =
            AgentConfig::new(Checkout::new("F", "u", "h", "x").linger(Duration::from_secs(84)));
        assert_eq!(
            (short.renew_every(), short.retry_delay(5)),
            (Some(1000), 1000)
        );
    }

    /// An agent of MPM_ADV_RC (2 cached licenses) with a cache in `dir`.
    fn offline_agent<'a>(clock: &'a ManualClock, dir: &std::path::Path) -> Agent<Fake<'a>> {
        let product = Checkout::new("MPM_ADV_RC", "USER15", "GENE-VM-2K3", "ec26edf8")
            .linger(Duration::from_millis(21 * DAY));
        let fake = Fake {
            clock,
            down: false,
            calls: Vec::new(),
        };
        let mut config = AgentConfig::new(product);
        config.startup_feature = None;
        let mut off = OfflineConfig::new(dir.join("tally.ini"));
        off.durability = Durability::NoSync;
        Agent::with_offline(fake, config, off)
    }

    #[test]
    fn offline_admission_then_reconciliation_on_the_first_contact() {
        let dir = tempfile::tempdir().expect("dir");
        let clock = ManualClock::new(T0);
        let mut a = offline_agent(&clock, dir.path());
        // Online: checked out, then the picture cached (contact at T0).
        let t = a.tick(T0);
        assert!(matches!(t.events[..], [Event::CheckedOut { .. }]), "{t:?}");
        assert_eq!(a.licensing().calls[1], (T0, "picture".to_string()));
        assert_eq!(a.offline().map(Offline::last_contact_ms), Some(T0));
        // The server goes away for good; the license expires at its
        // deadline; the checkout again finds nobody: admitted offline.
        a.licensing().down = true;
        let mut next = t.next.expect("renewal due");
        loop {
            let t = step(&mut a, &clock, next);
            if let Some(Event::AdmittedOffline {
                id, grace_ends_ms, ..
            }) = t.events.last()
            {
                assert_eq!(*grace_ends_ms, T0 + 720 * HOUR);
                assert_eq!(a.offline_admission(), Some(id.as_str()));
                next = t.next.expect("retry");
                break;
            }
            next = t.next.expect("retry");
        }
        assert!(a.holds(next));
        // Still down: the retry keeps it offline, no second admission.
        let t = step(&mut a, &clock, next);
        assert!(
            matches!(t.events[..], [Event::CheckoutFailed { .. }]),
            "{t:?}"
        );
        assert_eq!(a.offline().expect("open").ledger().entries.len(), 1);
        // Back: the admission reported first, then the checkout online.
        a.licensing().down = false;
        let at = t.next.expect("retry");
        let t = step(&mut a, &clock, at);
        assert!(
            matches!(
                &t.events[..],
                [Event::Reconciled { outcome, .. }, Event::CheckedOut { .. }]
                    if outcome.result.is_ok()
            ),
            "{t:?}"
        );
        let calls: Vec<&str> = a
            .licensing()
            .calls
            .iter()
            .rev()
            .take(3)
            .map(|c| c.1.as_str())
            .collect();
        assert!(
            calls[2].starts_with("reconcile ") && calls[1].starts_with("checkout"),
            "{calls:?}"
        );
        assert_eq!(calls[0], "picture");
        assert!(a.offline().expect("open").pending().is_empty());
        assert_eq!(a.offline_admission(), None);
    }

    #[test]
    fn a_new_process_reconciles_what_the_last_one_admitted() {
        let dir = tempfile::tempdir().expect("dir");
        let clock = ManualClock::new(T0);
        {
            let mut a = offline_agent(&clock, dir.path());
            a.tick(T0);
            a.licensing().down = true;
            a.licensing().calls.clear();
        }
        // A second agent (after a reboot), started while the server is down.
        let mut b = offline_agent(&clock, dir.path());
        b.licensing().down = true;
        let t = step(&mut b, &clock, T0 + HOUR);
        assert!(
            matches!(t.events[..], [Event::AdmittedOffline { .. }]),
            "{t:?}"
        );
        drop(b);
        let mut c = offline_agent(&clock, dir.path());
        let t = step(&mut c, &clock, T0 + 2 * HOUR);
        assert!(
            matches!(
                &t.events[..],
                [Event::Reconciled { .. }, Event::CheckedOut { .. }]
            ),
            "{t:?}"
        );
    }

    #[test]
    fn offline_refusals_are_events_and_retries_go_on() {
        let dir = tempfile::tempdir().expect("dir");
        let clock = ManualClock::new(T0);
        // No cache ever written: refused, retried as without one.
        let mut a = offline_agent(&clock, dir.path());
        a.licensing().down = true;
        let t = a.tick(T0);
        match &t.events[..] {
            [Event::CheckoutFailed { retry_at, .. }, Event::OfflineRefused { reason, .. }] => {
                assert_eq!(*retry_at, T0 + 60_000);
                assert!(reason.starts_with("cache "), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // A cache, but grace over (720 h after the contact).
        let mut b = offline_agent(&clock, dir.path());
        b.tick(T0);
        b.shutdown(T0);
        let mut c = offline_agent(&clock, dir.path());
        c.licensing().down = true;
        let t = step(&mut c, &clock, T0 + 720 * HOUR);
        assert!(
            matches!(&t.events[..], [Event::CheckoutFailed { .. }, Event::OfflineRefused { reason, .. }] if reason.starts_with("GRACE_ENDED ")),
            "{t:?}"
        );
        assert!(!c.holds(T0 + 720 * HOUR));
    }

    #[test]
    fn shutdown_offline_releases_the_admission() {
        let dir = tempfile::tempdir().expect("dir");
        let clock = ManualClock::new(T0);
        let mut a = offline_agent(&clock, dir.path());
        a.tick(T0);
        a.shutdown(T0);
        let mut b = offline_agent(&clock, dir.path());
        b.licensing().down = true;
        let t = step(&mut b, &clock, T0 + 1);
        let Some(Event::AdmittedOffline { id, .. }) = t.events.first().cloned() else {
            panic!("{t:?}");
        };
        let t = b.shutdown(T0 + 2);
        assert_eq!(t.events, [Event::ReleasedOffline { at: T0 + 2, id }]);
        let entry = &b.offline().expect("open").ledger().entries[0];
        assert_eq!(entry.released_ms, Some(T0 + 2));
    }

    #[test]
    fn the_startup_license_is_taken_offline_under_its_own_grace() {
        let dir = tempfile::tempdir().expect("dir");
        let clock = ManualClock::new(T0);
        let with_startup = |clock| {
            let mut a = offline_agent(clock, dir.path());
            a.config.startup_feature = Some("CITRIX".into());
            a
        };
        let mut a = with_startup(&clock);
        a.tick(T0);
        a.shutdown(T0);
        // 96 h of grace for the startup license (LT=SYS), 720 h for the
        // product: within 96 h both are admitted offline.
        let mut b = with_startup(&clock);
        b.licensing().down = true;
        let t = step(&mut b, &clock, T0 + 96 * HOUR - 1);
        assert!(
            matches!(&t.events[..], [Event::StartupOffline { feature, .. }, Event::AdmittedOffline { .. }] if feature == "CITRIX"),
            "{t:?}"
        );
        let entries = &b.offline().expect("open").ledger().entries;
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].released_ms, Some(T0 + 96 * HOUR - 1));
        b.shutdown(T0 + 96 * HOUR);
        // At 96 h the startup license's grace is over: nothing admitted.
        let mut c = with_startup(&clock);
        c.licensing().down = true;
        let t = step(&mut c, &clock, T0 + 96 * HOUR);
        assert!(
            matches!(&t.events[..], [Event::OfflineRefused { reason, .. }, Event::StartupFailed { .. }] if reason.starts_with("GRACE_ENDED ")),
            "{t:?}"
        );
    }
}
