//! Working without a server: the cache file ([`crate::cache`]), the side
//! file of offline admissions ([`log`]) and the grace rules
//! ([`crate::grace`]) together.
//!
//! - [`Offline::contact`] after every successful contact with the server:
//!   stores the picture (the cache file is rewritten only when it changed)
//!   and records the contact in the side file.
//! - [`Offline::admit`] when no server answers: decides by grace, and
//!   records an admission durably (append + fsync) before saying yes.
//! - [`Offline::release`] when such a session ends; [`Offline::pending`]
//!   and [`Offline::mark_reconciled`] for RECONCILE.
//! - [`Offline::open`] in a new process (after a reboot mid-outage): the
//!   cache and every recorded admission, contact and clock reading come
//!   back, so counting goes on where it stopped.
//!
//! Time: every call takes `now`; the highest time seen is what grace is
//! measured with, and it is recorded (with the admission, or as a `seen`
//! record) whenever it rises, so a clock moved backwards never extends
//! grace, across restarts too. A contact resets it to the contact's time
//! (grace starts over then anyway).
//!
//! Counting: a pool's offline admissions count against its cached
//! `NumLic` until released or reconciled (after that the server counts
//! them). Sessions admitted online are the server's business.

pub mod log;

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tally_core::clock::Millis;

use crate::cache::{self, Cache, CacheError, Identity, Stored};
use crate::grace::{self, Ask, Decision, HighWater, Refusal};
use crate::picture::{Picture, PoolTerms};
use crate::proto::field_fault;

pub use log::{Admission, Durability, Lock, Record, Salvaged, SideFile};

/// Suffix of the side file's name: `tally.ini` keeps its admissions in
/// `tally.ini.admissions`.
pub const SIDE_FILE_SUFFIX: &str = ".admissions";

/// The side file of the cache at `cache`.
pub fn side_file_path(cache: &Path) -> PathBuf {
    let mut name = cache.as_os_str().to_owned();
    name.push(SIDE_FILE_SUFFIX);
    PathBuf::from(name)
}

/// What went wrong offline.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The cache file cannot be used (it is never used then).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The side file cannot be read or written.
    #[error("{}: {source}", file.display())]
    Io {
        /// The side file.
        file: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The side file is damaged before its last line.
    #[error("{}: line {line}: {what}", file.display())]
    Corrupt {
        /// The side file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// A session field that RECONCILE could not send.
    #[error("bad {what} {value:?}: {why}")]
    BadField {
        /// Which (`user`, ...).
        what: &'static str,
        /// Its value.
        value: String,
        /// The field rule it breaks.
        why: String,
    },
}

/// A session asking to be admitted offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session<'a> {
    /// Feature.
    pub feature: &'a str,
    /// Version wanted (`None`: any).
    pub version: Option<&'a str>,
    /// User.
    pub user: &'a str,
    /// Host.
    pub host: &'a str,
    /// The client's handle.
    pub handle: &'a str,
    /// Licenses (at least 1).
    pub count: u32,
}

/// The answer to [`Offline::admit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted and recorded.
    Admitted {
        /// The record (its id is what RECONCILE sends).
        admission: Admission,
        /// When the pool's grace ends, Unix ms.
        grace_ends_ms: Millis,
    },
    /// Refused (nothing recorded but the time).
    Refused(Refusal),
}

/// One admission and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The admission.
    pub admission: Admission,
    /// When it ended, if it did.
    pub released_ms: Option<Millis>,
    /// The server recorded it.
    pub reconciled: bool,
    /// When it was last renewed (the same session asking again), if it was.
    pub renewed_ms: Option<Millis>,
    /// The server refused it for good (RECONCILE answered `DENIED`): the
    /// reason. It no longer counts and is not sent again.
    pub rejected: Option<String>,
}

/// The state a side file's records describe (pure: no I/O).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ledger {
    /// The client tag (admission ids start with it).
    pub tag: String,
    /// Every admission, in order.
    pub entries: Vec<Entry>,
    /// The latest contact recorded, if any.
    pub last_contact_ms: Option<Millis>,
    /// The highest time recorded since the latest contact.
    pub high_ms: Millis,
}

impl Ledger {
    /// Replays `records`.
    pub fn replay(records: &[Record]) -> Ledger {
        let mut l = Ledger::default();
        for r in records {
            l.apply(r);
        }
        l
    }

    /// Takes one record into account.
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::Client { tag } => self.tag.clone_from(tag),
            Record::Contact { at_ms } => {
                self.last_contact_ms = Some(*at_ms);
                self.high_ms = *at_ms;
            }
            Record::Seen { at_ms } => self.high_ms = self.high_ms.max(*at_ms),
            Record::Admit(a) => {
                self.high_ms = self.high_ms.max(a.start_ms);
                self.entries.push(Entry {
                    admission: a.clone(),
                    released_ms: None,
                    reconciled: false,
                    renewed_ms: None,
                    rejected: None,
                });
            }
            Record::Renew {
                id,
                at_ms,
                linger_ms,
            } => {
                self.high_ms = self.high_ms.max(*at_ms);
                if let Some(e) = self.find(id) {
                    e.renewed_ms = Some(*at_ms);
                    if linger_ms.is_some() {
                        e.admission.linger_ms = *linger_ms;
                    }
                }
            }
            Record::Release { id, at_ms } => {
                self.high_ms = self.high_ms.max(*at_ms);
                if let Some(e) = self.find(id) {
                    e.released_ms.get_or_insert(*at_ms);
                }
            }
            Record::Reconciled { id } => {
                if let Some(e) = self.find(id) {
                    e.reconciled = true;
                }
            }
            Record::Rejected { id, reason } => {
                if let Some(e) = self.find(id) {
                    e.rejected.get_or_insert_with(|| reason.clone());
                }
            }
        }
    }

    fn find(&mut self, id: &str) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.admission.id == id)
    }

    /// Admissions the server has not recorded yet, in order (ended ones
    /// included: they happened; rejected ones left out: the server said no
    /// for good).
    pub fn pending(&self) -> Vec<&Admission> {
        self.entries
            .iter()
            .filter(|e| !e.reconciled && e.rejected.is_none())
            .map(|e| &e.admission)
            .collect()
    }

    /// Licenses each pool of `pools` has out offline (admitted, neither
    /// released nor reconciled nor rejected).
    pub fn held(&self, pools: &[PoolTerms]) -> Vec<u32> {
        let mut held = vec![0u32; pools.len()];
        for e in self
            .entries
            .iter()
            .filter(|e| !e.reconciled && e.rejected.is_none() && e.released_ms.is_none())
        {
            let a = &e.admission;
            let pool = pools.iter().position(|p| {
                p.feature == a.feature && p.version == a.pool_version && p.expiry == a.pool_expiry
            });
            if let Some(i) = pool {
                held[i] = held[i].saturating_add(a.count);
            }
        }
        held
    }
}

/// Grace of one pool at a time, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolGrace {
    /// Feature.
    pub feature: String,
    /// Pool version.
    pub version: String,
    /// Cached count (`None`: uncounted).
    pub total: Option<u32>,
    /// Held offline.
    pub held: u32,
    /// Grace, hours.
    pub grace_hours: u32,
    /// When grace ends, Unix ms.
    pub grace_ends_ms: Millis,
    /// Grace left at the time asked, ms (0 when ended).
    pub grace_left_ms: u64,
}

/// A cache, its side file, and the state they describe.
#[derive(Debug)]
pub struct Offline {
    cache: Cache,
    side: SideFile,
    ledger: Ledger,
    high: HighWater,
}

impl Offline {
    /// Opens the cache at `cache_path` (refused if damaged) and its side
    /// file (created if missing).
    pub fn open(cache_path: &Path, durability: Durability) -> Result<Offline, OfflineError> {
        let cache = cache::read(cache_path)?;
        Offline::with_cache(cache_path, cache, durability)
    }

    /// After a successful contact at `now` that fetched `picture`: stores
    /// it (rewriting the cache file only if the terms changed), records the
    /// contact, and returns the state.
    ///
    /// The contact's time is the earlier of `now` and the server's clock
    /// (the picture's `now_ms`, when the server sends it): a client clock
    /// set ahead at contact, then back, would otherwise start grace in the
    /// future and stretch it.
    pub fn contact(
        cache_path: &Path,
        picture: &Picture,
        identity: &Identity,
        now: Millis,
        durability: Durability,
    ) -> Result<(Offline, Stored), OfflineError> {
        let now = picture.now_ms.map_or(now, |server| server.min(now));
        let stored = cache::store(cache_path, picture, identity, now)?;
        let mut offline = Offline::open(cache_path, durability)?;
        let _lock = offline.sync()?;
        offline.record(Record::Contact { at_ms: now })?;
        Ok((offline, stored))
    }

    fn with_cache(
        cache_path: &Path,
        cache: Cache,
        durability: Durability,
    ) -> Result<Offline, OfflineError> {
        let (side, records) = SideFile::open(&side_file_path(cache_path), durability, new_tag)?;
        let ledger = Ledger::replay(&records);
        let mut offline = Offline {
            cache,
            side,
            high: HighWater::new(0),
            ledger,
        };
        offline.high = HighWater::new(offline.ledger.high_ms.max(offline.last_contact_ms()));
        Ok(offline)
    }

    /// Reads a cache and its side file without changing either (for
    /// `tallyctl cache show`).
    pub fn inspect(cache_path: &Path) -> Result<(Cache, Ledger), OfflineError> {
        let cache = cache::read(cache_path)?;
        let contents = log::read(&side_file_path(cache_path))?;
        Ok((cache, Ledger::replay(&contents.records)))
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The side file's state.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The last successful contact, Unix ms.
    pub fn last_contact_ms(&self) -> Millis {
        last_contact(&self.cache, &self.ledger)
    }

    /// The highest time seen.
    pub fn high_water_ms(&self) -> Millis {
        self.high.get()
    }

    /// Decides `session` at `now`; an admission is on disk before this
    /// returns.
    pub fn admit(&mut self, session: &Session<'_>, now: Millis) -> Result<Verdict, OfflineError> {
        self.admit_lingering(session, None, now)
    }

    /// [`Offline::admit`] of a session that asked for a linger of
    /// `linger_ms` (recorded with the admission: RECONCILE sends it).
    pub fn admit_lingering(
        &mut self,
        session: &Session<'_>,
        linger_ms: Option<u64>,
        now: Millis,
    ) -> Result<Verdict, OfflineError> {
        for (what, value) in [
            ("feature", session.feature),
            ("user", session.user),
            ("host", session.host),
            ("handle", session.handle),
        ] {
            if let Some(fault) = field_fault(value) {
                return Err(OfflineError::BadField {
                    what,
                    value: value.to_string(),
                    why: fault.to_string(),
                });
            }
        }
        let _lock = self.sync()?;
        let now = self.observe(now);
        if let Some(renewed) = self.renew(session, linger_ms, now)? {
            return Ok(renewed);
        }
        let held = self.ledger.held(&self.cache.pools);
        let ask = Ask {
            feature: session.feature,
            version: session.version,
            count: session.count.max(1),
        };
        match grace::decide(&self.cache.pools, &held, self.last_contact_ms(), now, &ask) {
            Decision::Refuse(r) => {
                self.record_seen()?;
                Ok(Verdict::Refused(r))
            }
            Decision::Admit {
                pool,
                grace_ends_ms,
            } => {
                let p = &self.cache.pools[pool];
                let admission = Admission {
                    id: format!(
                        "{}-{}-{}",
                        self.ledger.tag,
                        self.ledger.entries.len() + 1,
                        random_hex()
                    ),
                    feature: session.feature.to_string(),
                    version: session.version.map(str::to_string),
                    user: session.user.to_string(),
                    host: session.host.to_string(),
                    handle: session.handle.to_string(),
                    start_ms: now,
                    count: ask.count,
                    pool_version: p.version.clone(),
                    pool_expiry: p.expiry.clone(),
                    linger_ms,
                };
                self.record(Record::Admit(admission.clone()))?;
                Ok(Verdict::Admitted {
                    admission,
                    grace_ends_ms,
                })
            }
        }
    }

    /// A session asking again with the (feature, user, host, handle) of an
    /// offline admission still held (neither released nor reconciled) is
    /// that session, as online (a second checkout of a handle renews its
    /// instance): the admission is renewed at `now` (a `renew` record,
    /// with the linger asked), keeps its id and counts once, whatever the
    /// grace (a session admitted keeps running). `None`: no such
    /// admission.
    fn renew(
        &mut self,
        session: &Session<'_>,
        linger_ms: Option<u64>,
        now: Millis,
    ) -> Result<Option<Verdict>, OfflineError> {
        let Some(i) = self.ledger.entries.iter().position(|e| {
            let a = &e.admission;
            !e.reconciled
                && e.rejected.is_none()
                && e.released_ms.is_none()
                && a.feature == session.feature
                && a.user == session.user
                && a.host == session.host
                && a.handle == session.handle
        }) else {
            return Ok(None);
        };
        let a = &self.ledger.entries[i].admission;
        let hours = self
            .cache
            .pools
            .iter()
            .find(|p| {
                p.feature == a.feature && p.version == a.pool_version && p.expiry == a.pool_expiry
            })
            .map_or(0, grace::grace_hours);
        let grace_ends_ms = grace::grace_end_ms(self.last_contact_ms(), hours);
        self.record(Record::Renew {
            id: a.id.clone(),
            at_ms: now,
            linger_ms,
        })?;
        let admission = self.ledger.entries[i].admission.clone();
        Ok(Some(Verdict::Admitted {
            admission,
            grace_ends_ms,
        }))
    }

    /// A session admitted offline ended at `now`; `false` if `id` is
    /// unknown or already released.
    pub fn release(&mut self, id: &str, now: Millis) -> Result<bool, OfflineError> {
        let _lock = self.sync()?;
        let known = self
            .ledger
            .entries
            .iter()
            .any(|e| e.admission.id == id && e.released_ms.is_none());
        if !known {
            return Ok(false);
        }
        let at_ms = self.observe(now);
        self.record(Record::Release {
            id: id.to_string(),
            at_ms,
        })?;
        Ok(true)
    }

    /// Admissions RECONCILE still has to report.
    pub fn pending(&self) -> Vec<&Admission> {
        self.ledger.pending()
    }

    /// The server recorded admission `id`; `false` if it is unknown or was
    /// already marked.
    pub fn mark_reconciled(&mut self, id: &str) -> Result<bool, OfflineError> {
        let _lock = self.sync()?;
        let known = self
            .ledger
            .entries
            .iter()
            .any(|e| e.admission.id == id && !e.reconciled);
        if known {
            self.record(Record::Reconciled { id: id.to_string() })?;
        }
        Ok(known)
    }

    /// The server refused admission `id` for good (`reason`: its DENIED
    /// reason): it leaves the count and the pending list; `false` if it is
    /// unknown or no longer pending.
    pub fn mark_rejected(&mut self, id: &str, reason: &str) -> Result<bool, OfflineError> {
        let _lock = self.sync()?;
        let known = self
            .ledger
            .entries
            .iter()
            .any(|e| e.admission.id == id && !e.reconciled && e.rejected.is_none());
        if known {
            self.record(Record::Rejected {
                id: id.to_string(),
                reason: reason.to_string(),
            })?;
        }
        Ok(known)
    }

    /// Grace of every pool at `now` (not recorded).
    pub fn grace(&self, now: Millis) -> Vec<PoolGrace> {
        pool_graces(&self.cache, &self.ledger, now.max(self.high.get()))
    }

    /// Takes the side file's lock and reads what other processes appended
    /// since (their admissions count, their contact restarts grace): every
    /// decision is made and recorded under it.
    fn sync(&mut self) -> Result<Lock, OfflineError> {
        let lock = self.side.lock()?;
        let records = self.side.load(new_tag)?;
        let before = self.ledger.last_contact_ms;
        self.ledger = Ledger::replay(&records);
        if self.ledger.last_contact_ms == before {
            self.high.observe(self.ledger.high_ms);
        } else {
            self.high = HighWater::new(self.ledger.high_ms.max(self.last_contact_ms()));
        }
        Ok(lock)
    }

    /// Raises the high-water mark with `now`; returns the time to use.
    fn observe(&mut self, now: Millis) -> Millis {
        self.high.observe(now)
    }

    /// Records the high-water mark if it rose past what is on disk.
    fn record_seen(&mut self) -> Result<(), OfflineError> {
        let at_ms = self.high.get();
        if at_ms > self.ledger.high_ms {
            self.record(Record::Seen { at_ms })?;
        }
        Ok(())
    }

    /// Appends `record` durably, then applies it.
    fn record(&mut self, record: Record) -> Result<(), OfflineError> {
        self.side.append(&record)?;
        self.ledger.apply(&record);
        if let Record::Contact { at_ms } = record {
            self.high = HighWater::new(at_ms);
        }
        Ok(())
    }
}

/// The latest contact: the side file's, else the cache's `LastContact`.
fn last_contact(cache: &Cache, ledger: &Ledger) -> Millis {
    ledger.last_contact_ms.unwrap_or(cache.last_contact_ms)
}

/// Grace of every pool of `cache` at `now` (already the high-water time).
pub fn pool_graces(cache: &Cache, ledger: &Ledger, now: Millis) -> Vec<PoolGrace> {
    let last = last_contact(cache, ledger);
    let now = now.max(ledger.high_ms);
    let held = ledger.held(&cache.pools);
    cache
        .pools
        .iter()
        .zip(held)
        .map(|(p, held)| {
            let hours = grace::grace_hours(p);
            let end = grace::grace_end_ms(last, hours);
            PoolGrace {
                feature: p.feature.clone(),
                version: p.version.clone(),
                total: p.total,
                held,
                grace_hours: hours,
                grace_ends_ms: end,
                grace_left_ms: end.saturating_sub(now),
            }
        })
        .collect()
}

/// 16 hex digits from std's randomly keyed hasher (a fresh key per call):
/// the random part of an admission id, so that side files copied with a
/// cloned machine (the same tag) still never give out the same id.
fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// [`log::salvage`] of the side file of the cache at `cache_path`
/// (`stamp` names the damaged file: `<cache>.admissions.damaged-<stamp>`).
pub fn salvage(cache_path: &Path, stamp: &str) -> Result<Option<Salvaged>, OfflineError> {
    log::salvage(&side_file_path(cache_path), stamp, new_tag)
}

/// A fresh client tag: 16 hex digits from std's randomly keyed hasher,
/// the time and the process id.
fn new_tag() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests;
