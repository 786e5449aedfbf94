//! Offline grace: whether a session may be admitted locally when no
//! server answers. Pure: the cached pools, what is held offline, the last
//! contact and `now` come in as arguments; nothing here reads a clock or a
//! file ([`crate::offline`] does that).
//!
//! The rules (docs/client.md, "Grace"):
//!
//! - Each pool has its own grace: `GP=` hours of its VENDOR_STRING
//!   (`gp_hours`), else [`STARTUP_GRACE_HOURS`] for the startup license
//!   (`LT=SYS`) and [`DEFAULT_GRACE_HOURS`] for any other.
//! - A pool admits while `now < last_contact + grace` ([`grace_end_ms`]):
//!   at exactly `grace` hours after the last contact it refuses.
//! - It admits up to its cached count (`NumLic`), counting the sessions
//!   admitted offline and still held; an uncounted pool has no limit.
//! - It must serve the version asked (its version not lower, compared as
//!   numbers as FlexLM does), have started (`start`, 00:00 UTC) and not be
//!   expired (`now < expiry_ms`).
//! - `now` is the highest time seen ([`HighWater`]), so a clock moved
//!   backwards never extends grace.
//! - Nothing here ends a session: those admitted keep running.

use std::fmt;

use tally_core::clock::Millis;

use crate::picture::PoolTerms;

/// Grace of a pool whose VENDOR_STRING has no `GP=`, hours (30 days).
pub const DEFAULT_GRACE_HOURS: u32 = 720;

/// Grace of the startup license (`LT=SYS`) without `GP=`, hours (4 days,
/// what Citrix's startup license says).
pub const STARTUP_GRACE_HOURS: u32 = 96;

/// The license type (`LT=`) of the startup license.
pub const STARTUP_LICENSE_TYPE: &str = "SYS";

/// Milliseconds per hour.
pub const MS_PER_HOUR: u64 = 3_600_000;

/// The grace of `pool`, hours.
pub fn grace_hours(pool: &PoolTerms) -> u32 {
    pool.gp_hours
        .unwrap_or(if pool.lt.as_deref() == Some(STARTUP_LICENSE_TYPE) {
            STARTUP_GRACE_HOURS
        } else {
            DEFAULT_GRACE_HOURS
        })
}

/// When grace of `hours` after a contact at `last_contact_ms` ends: the
/// first millisecond that is refused.
pub fn grace_end_ms(last_contact_ms: Millis, hours: u32) -> Millis {
    last_contact_ms.saturating_add(u64::from(hours) * MS_PER_HOUR)
}

/// The highest time seen: what grace is measured with. A clock moved
/// backwards leaves it where it was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HighWater(Millis);

impl HighWater {
    /// Starting at `ms` (e.g. the highest time a side file recorded).
    pub fn new(ms: Millis) -> HighWater {
        HighWater(ms)
    }

    /// Takes `now` into account; returns the time to use.
    pub fn observe(&mut self, now: Millis) -> Millis {
        self.0 = self.0.max(now);
        self.0
    }

    /// The highest time seen.
    pub fn get(self) -> Millis {
        self.0
    }
}

/// A session asking to be admitted offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask<'a> {
    /// Feature.
    pub feature: &'a str,
    /// Version wanted (`None`: any).
    pub version: Option<&'a str>,
    /// Licenses wanted (at least 1).
    pub count: u32,
}

/// The verdict on an [`Ask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Admitted from pool `pool` (index into the cached pools); its grace
    /// ends at `grace_ends_ms`.
    Admit {
        /// Index of the pool.
        pool: usize,
        /// When the pool's grace ends, Unix ms.
        grace_ends_ms: Millis,
    },
    /// Refused.
    Refuse(Refusal),
}

/// Why a session was refused offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No cached pool of the feature.
    NoSuchFeature {
        /// Feature.
        feature: String,
    },
    /// Grace ended (of every pool that could serve it: the latest end).
    GraceEnded {
        /// Feature.
        feature: String,
        /// When it ended, Unix ms.
        ended_ms: Millis,
        /// The grace, hours.
        hours: u32,
    },
    /// Every pool in grace is at its count.
    PoolFull {
        /// Feature.
        feature: String,
        /// The pool's count.
        total: u32,
        /// Held offline now.
        held: u32,
        /// Asked for.
        asked: u32,
    },
    /// The pool expired.
    Expired {
        /// Feature.
        feature: String,
        /// When, Unix ms.
        expired_ms: Millis,
    },
    /// The pool's start date is not reached.
    NotStarted {
        /// Feature.
        feature: String,
        /// The start date, `YYYY-MM-DD`.
        start: String,
    },
    /// No pool serves the version asked.
    Version {
        /// Feature.
        feature: String,
        /// Version asked.
        asked: String,
    },
}

impl Refusal {
    /// A short upper-case code (`GRACE_ENDED`, ...), the first word
    /// `tallyctl` prints after `REFUSED`.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoSuchFeature { .. } => "NO_SUCH_FEATURE",
            Refusal::GraceEnded { .. } => "GRACE_ENDED",
            Refusal::PoolFull { .. } => "POOL_FULL",
            Refusal::Expired { .. } => "EXPIRED",
            Refusal::NotStarted { .. } => "NOT_STARTED",
            Refusal::Version { .. } => "VERSION",
        }
    }

    /// Rank when pools refuse for different reasons: the highest is told.
    fn rank(&self) -> u8 {
        match self {
            Refusal::PoolFull { .. } => 5,
            Refusal::GraceEnded { .. } => 4,
            Refusal::Expired { .. } => 3,
            Refusal::NotStarted { .. } => 2,
            Refusal::Version { .. } => 1,
            Refusal::NoSuchFeature { .. } => 0,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoSuchFeature { feature } => {
                write!(f, "no cached license of {feature}")
            }
            Refusal::GraceEnded {
                feature,
                ended_ms,
                hours,
            } => write!(
                f,
                "offline grace of {feature} ended at {} ({hours} h after the last contact with \
                 the license server)",
                rfc3339(*ended_ms)
            ),
            Refusal::PoolFull {
                feature,
                total,
                held,
                asked,
            } => write!(
                f,
                "all {total} cached licenses of {feature} in use offline ({held} held, {asked} asked)"
            ),
            Refusal::Expired {
                feature,
                expired_ms,
            } => write!(f, "{feature} expired at {}", rfc3339(*expired_ms)),
            Refusal::NotStarted { feature, start } => {
                write!(f, "{feature} starts on {start}")
            }
            Refusal::Version { feature, asked } => {
                write!(f, "no cached license of {feature} serves version {asked}")
            }
        }
    }
}

/// Unix ms as RFC 3339 UTC with seconds (`2026-05-22T11:08:00Z`).
pub fn rfc3339(ms: Millis) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || format!("{ms} ms"),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
}

/// Decides `ask` at `now` (the [`HighWater`] time): `held[i]` is what pool
/// `i` of `pools` has out offline; `last_contact_ms` the last successful
/// contact with the server. The first pool (in cache order) that can take
/// it admits it.
pub fn decide(
    pools: &[PoolTerms],
    held: &[u32],
    last_contact_ms: Millis,
    now: Millis,
    ask: &Ask<'_>,
) -> Decision {
    let mut best: Option<Refusal> = None;
    for (i, pool) in pools.iter().enumerate() {
        if pool.feature != ask.feature {
            continue;
        }
        let held = held.get(i).copied().unwrap_or(0);
        match check(pool, held, last_contact_ms, now, ask) {
            Ok(grace_ends_ms) => {
                return Decision::Admit {
                    pool: i,
                    grace_ends_ms,
                }
            }
            Err(r) => {
                best = Some(match best.take() {
                    Some(b) => prefer(b, r),
                    None => r,
                })
            }
        }
    }
    Decision::Refuse(best.unwrap_or_else(|| Refusal::NoSuchFeature {
        feature: ask.feature.to_string(),
    }))
}

/// Of two refusals of one ask, the one told: the higher rank; of two
/// grace ends, the later; else the first.
fn prefer(first: Refusal, second: Refusal) -> Refusal {
    match (&first, &second) {
        (Refusal::GraceEnded { ended_ms: a, .. }, Refusal::GraceEnded { ended_ms: b, .. }) => {
            if b > a {
                second
            } else {
                first
            }
        }
        _ if second.rank() > first.rank() => second,
        _ => first,
    }
}

/// One pool's verdict: `Ok(grace end)` or why not.
fn check(
    pool: &PoolTerms,
    held: u32,
    last_contact_ms: Millis,
    now: Millis,
    ask: &Ask<'_>,
) -> Result<Millis, Refusal> {
    let feature = || pool.feature.clone();
    if let Some(asked) = ask.version {
        if !serves_version(&pool.version, asked) {
            return Err(Refusal::Version {
                feature: feature(),
                asked: asked.to_string(),
            });
        }
    }
    if let Some(start) = &pool.start {
        if start_ms(start).is_some_and(|s| now < s) {
            return Err(Refusal::NotStarted {
                feature: feature(),
                start: start.clone(),
            });
        }
    }
    if let Some(expired_ms) = pool.expiry_ms.filter(|&e| now >= e) {
        return Err(Refusal::Expired {
            feature: feature(),
            expired_ms,
        });
    }
    let hours = grace_hours(pool);
    let end = grace_end_ms(last_contact_ms, hours);
    if now >= end {
        return Err(Refusal::GraceEnded {
            feature: feature(),
            ended_ms: end,
            hours,
        });
    }
    if let Some(total) = pool.total {
        if u64::from(held) + u64::from(ask.count) > u64::from(total) {
            return Err(Refusal::PoolFull {
                feature: feature(),
                total,
                held,
                asked: ask.count,
            });
        }
    }
    Ok(end)
}

/// FlexLM's version rule: the pool serves `asked` when its version is not
/// lower, both read as numbers (`2007.0726` >= `1.0`); versions that are
/// not numbers must be equal.
fn serves_version(pool: &str, asked: &str) -> bool {
    match (pool.parse::<f64>(), asked.parse::<f64>()) {
        (Ok(p), Ok(a)) => p >= a,
        _ => pool == asked,
    }
}

/// `YYYY-MM-DD` as Unix ms of 00:00 UTC; `None` if it is not a date (then
/// it does not restrict).
fn start_ms(date: &str) -> Option<Millis> {
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let ms = d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
    u64::try_from(ms).ok()
}

#[cfg(test)]
mod tests;
