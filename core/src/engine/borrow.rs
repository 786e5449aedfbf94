//! License borrowing: a checkout of a `BORROW[=hours]` line held for a
//! number of hours whatever its connection does, for use away from the
//! network.
//!
//! A borrow is an ordinary instance whose deadline is the borrow's end and
//! whose linger word carries [`BORROWED`]: it survives its connection (it
//! has a deadline), expires on the caller's timers like any linger, is
//! returned early by a check-in or an admin's release, and goes with its
//! mark wherever instances go (a REREAD's snapshot and restore, the
//! journal's linger field). A checkout that finds a borrowed instance under
//! its key is refused ([`BorrowRefusal::Borrowed`]): a renewal would
//! rewrite the linger and the deadline, ending the borrow.
//!
//! What [`Engine::borrow`] checks, in order (FlexNet's rules; see
//! `docs/license-file.md` and `docs/options-file.md`):
//! the line has `BORROW` ([`PoolLine::borrow_hours`], 168 h when bare);
//! the hours are within the smaller of the line's and the options file's
//! `MAX_BORROW_HOURS` (which only lowers it); `EXCLUDE_BORROW` /
//! `INCLUDE_BORROW` allow the borrower (matched as `EXCLUDE` / `INCLUDE`
//! are, by the same compiled matcher, `policy.rs`); the checkout itself
//! (every rule of an ordinary checkout applies too); and
//! `BORROW_LOWWATER`: the licenses borrowed from the feature's pools the
//! rule selects stay at most their count minus n.
//!
//! Borrows are rare: they are decided one at a time under one lock, and
//! LOWWATER counts what is borrowed by reading the table. None of it is
//! on the path of an ordinary checkout: an engine without `BORROW` lines
//! has no [`Borrowing`]; a renewal tests the mark in the table, on one
//! relaxed load of the slot's linger word (the value its linger CAS then
//! expects, made only when the linger changed), and the table never
//! clears it (`table.rs`, `LINGER_MARK`).

use std::net::IpAddr;

use super::policy::{by_feature, selects, Access, Policy};
use super::pool::Pool;
use super::table::{Claimed, Found};
use super::uses::Counting;
use super::{Denial, Engine, Grant, GrantKind, Reason, Request};
use crate::clock::Millis;
use crate::license::PoolLine;
use crate::options::{FeatureLimit, OptionsFile};
use crate::sync::{lock, Mutex};

/// The mark of a borrowed instance in its linger word (and in a
/// [`super::Restore`]'s `linger_ms`, and a journal's): the top bit, far
/// above any linger ([`super::MAX_LINGER_MS`] needs 42 bits).
pub const BORROWED: u64 = super::table::LINGER_MARK;

/// Milliseconds in an hour.
const HOUR_MS: u64 = 3_600_000;

/// Why a borrow was refused (inside [`Reason::Borrow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BorrowRefusal {
    /// No line of the feature that could serve the borrow says `BORROW`.
    NotBorrowable,
    /// `EXCLUDE_BORROW` names the borrower.
    Excluded,
    /// `INCLUDE_BORROW` lines exist for the line and none names the
    /// borrower.
    NotIncluded,
    /// `BORROW_LOWWATER` keeps the remaining licenses from being borrowed.
    LowWater {
        /// Licenses the rule keeps unborrowed.
        keep: u32,
        /// Its options-file line.
        line: u32,
    },
    /// Longer than the line allows (its `BORROW` hours, lowered by
    /// `MAX_BORROW_HOURS`).
    TooLong {
        /// The most hours allowed.
        max_hours: u32,
    },
    /// A DUP_GROUP feature's instances are shared by their group: one
    /// holder cannot take one away.
    Shared,
    /// The borrower's handle already holds the feature: check it in first.
    AlreadyHeld,
    /// The instance under the request's key is borrowed: a checkout cannot
    /// renew it (check it in to end the borrow).
    Borrowed,
}

impl BorrowRefusal {
    /// The wire name: `BORROW_TOO_LONG` for [`BorrowRefusal::TooLong`],
    /// `NOT_BORROWABLE` for every other.
    pub fn name(self) -> &'static str {
        match self {
            BorrowRefusal::TooLong { .. } => "BORROW_TOO_LONG",
            _ => "NOT_BORROWABLE",
        }
    }

    /// FlexLM's code for the nearest situation: the EXCLUDE / INCLUDE codes
    /// for those rules, "licensed number of users already reached" for
    /// LOWWATER (as RESERVE), else LM_BADPARAM.
    pub fn flexlm_code(self) -> i32 {
        match self {
            BorrowRefusal::Excluded => -38,
            BorrowRefusal::NotIncluded => -39,
            BorrowRefusal::LowWater { .. } => -4,
            _ => -42,
        }
    }

    /// The text (the details a value holds are added by
    /// [`Reason::full_text`]).
    pub fn text(self) -> &'static str {
        match self {
            BorrowRefusal::NotBorrowable => "Feature cannot be borrowed (no BORROW on its line).",
            BorrowRefusal::Excluded => "User/host on EXCLUDE_BORROW list for feature.",
            BorrowRefusal::NotIncluded => "User/host not on INCLUDE_BORROW list for feature.",
            BorrowRefusal::LowWater { .. } => {
                "Licensed number of users already reached (the rest are kept unborrowed by BORROW_LOWWATER)."
            }
            BorrowRefusal::TooLong { .. } => "Cannot borrow that long.",
            BorrowRefusal::Shared => {
                "Feature cannot be borrowed (DUP_GROUP licenses are shared by their group)."
            }
            BorrowRefusal::AlreadyHeld => {
                "The handle already holds this feature; check it in before borrowing."
            }
            BorrowRefusal::Borrowed => {
                "The handle's license is borrowed; check it in to end the borrow."
            }
        }
    }
}

impl From<BorrowRefusal> for Denial {
    fn from(r: BorrowRefusal) -> Denial {
        Reason::Borrow(r).into()
    }
}

/// One `BORROW_LOWWATER` rule, compiled.
#[derive(Debug)]
struct LowWater {
    /// The pools it selects.
    pools: Vec<u32>,
    /// Most licenses of them that may be borrowed: their count minus n.
    room: u32,
    /// n.
    keep: u32,
    /// Options-file line.
    line: u32,
}

/// An engine's borrowing rules (`Some` in an engine with a `BORROW` line).
#[derive(Debug)]
pub(crate) struct Borrowing {
    /// By pool: the most hours a borrow may last (the line's `BORROW`,
    /// lowered by `MAX_BORROW_HOURS`); `None`: the line is not borrowable.
    hours: Vec<Option<u32>>,
    lowwater: Vec<LowWater>,
    /// `INCLUDE_BORROW` / `EXCLUDE_BORROW`, compiled as INCLUDE / EXCLUDE
    /// (`None`: no such line).
    policy: Option<Policy>,
    /// Borrows are decided one at a time: LOWWATER counts what is out.
    lock: Mutex<()>,
    /// Rules that could not be applied, in words.
    pub(crate) warnings: Vec<String>,
}

/// The last `MAX_BORROW_HOURS`-like limit of `limits` that selects `line`.
fn last_for<'a>(limits: &'a [FeatureLimit], line: &PoolLine) -> Option<&'a FeatureLimit> {
    limits
        .iter()
        .rev()
        .find(|l| selects(&Some(l.feature.clone()), line))
}

impl Borrowing {
    /// The rules for `pools` under `options` (`None` when no line says
    /// `BORROW`).
    pub(crate) fn compile(
        pools: &[Pool],
        features: usize,
        options: Option<&OptionsFile>,
    ) -> Option<Borrowing> {
        let borrowable = |p: &Pool| p.counted && !p.startup && p.line.borrow_hours().is_some();
        if !pools.iter().any(borrowable) {
            return None;
        }
        let none = OptionsFile::default();
        let options = options.unwrap_or(&none);
        let mut warnings = Vec::new();
        let mut hours = Vec::with_capacity(pools.len());
        let mut raised = Vec::new();
        for p in pools {
            let Some(line_hours) = p.line.borrow_hours().filter(|_| borrowable(p)) else {
                hours.push(None);
                continue;
            };
            hours.push(Some(match last_for(&options.max_borrow_hours, &p.line) {
                // More than the line's: the guide says it must be less; the
                // line's stands (it never raises it), said once per rule.
                Some(m) if m.value > line_hours => {
                    if !raised.contains(&m.line) {
                        raised.push(m.line);
                        warnings.push(format!(
                            "{}: MAX_BORROW_HOURS {} {} (line {}) is more than the line's BORROW={line_hours}; \
                             the line's {line_hours} hours apply",
                            options.source, m.feature, m.value, m.line
                        ));
                    }
                    line_hours
                }
                // 0: nothing may be borrowed (TooLong, "at most 0").
                Some(m) => m.value,
                None => line_hours,
            }));
        }
        let mut lowwater = Vec::new();
        for (keyword, limits) in [
            ("BORROW_LOWWATER", &options.borrow_lowwater),
            ("MAX_BORROW_HOURS", &options.max_borrow_hours),
        ] {
            for l in limits {
                let selected: Vec<u32> = (0..pools.len() as u32)
                    .filter(|&p| {
                        hours[p as usize].is_some()
                            && selects(&Some(l.feature.clone()), &pools[p as usize].line)
                    })
                    .collect();
                if selected.is_empty() {
                    warnings.push(format!(
                        "{}: {keyword} {} (line {}) names no BORROW line; ignored",
                        options.source, l.feature, l.line
                    ));
                } else if keyword == "BORROW_LOWWATER" {
                    // n kept per feature: a package's name keeps n of each
                    // component.
                    let selected: Vec<usize> = selected.iter().map(|&p| p as usize).collect();
                    for group in by_feature(&selected, pools) {
                        let total = group
                            .iter()
                            .fold(0u32, |n, &p| n.saturating_add(pools[p].count));
                        lowwater.push(LowWater {
                            pools: group.iter().map(|&p| p as u32).collect(),
                            room: total.saturating_sub(l.value),
                            keep: l.value,
                            line: l.line,
                        });
                    }
                }
            }
        }
        let policy = (!options.borrow_rules.is_empty()).then(|| {
            let as_rules = OptionsFile {
                source: options.source.clone(),
                rules: options.borrow_rules.clone(),
                groups: options.groups.clone(),
                host_groups: options.host_groups.clone(),
                group_case_insensitive: options.group_case_insensitive,
                ..OptionsFile::default()
            };
            let policy = Policy::compile_access(&as_rules, pools, features);
            warnings.extend(
                policy
                    .warnings
                    .iter()
                    .map(|w| w.replace("rule ignored", "ignored")),
            );
            policy
        });
        Some(Borrowing {
            hours,
            lowwater,
            policy,
            lock: Mutex::new(()),
            warnings,
        })
    }

    /// INCLUDE_BORROW / EXCLUDE_BORROW for pool `p`.
    fn access(&self, p: u32, fid: u32, req: &Request<'_>, ip: Option<IpAddr>) -> Access {
        let Some(policy) = &self.policy else {
            return Access::Allowed;
        };
        if !policy.covers(fid) {
            return Access::Allowed;
        }
        let n = &req.names;
        policy.access(p, &policy.who(fid, n.user, n.host, n.display, ip))
    }

    /// Why pool `p` may not lend `hours` to `req` (`None`: it may, LOWWATER
    /// aside).
    fn refuses(
        &self,
        p: u32,
        fid: u32,
        req: &Request<'_>,
        hours: u32,
        ip: Option<IpAddr>,
    ) -> Option<BorrowRefusal> {
        let Some(max_hours) = self.hours[p as usize] else {
            return Some(BorrowRefusal::NotBorrowable);
        };
        if hours > max_hours {
            return Some(BorrowRefusal::TooLong { max_hours });
        }
        match self.access(p, fid, req, ip) {
            Access::Allowed => None,
            Access::Excluded => Some(BorrowRefusal::Excluded),
            Access::NotIncluded => Some(BorrowRefusal::NotIncluded),
        }
    }
}

impl Engine {
    /// Whether any line of this engine says `BORROW`.
    pub fn lends(&self) -> bool {
        self.borrowing.is_some()
    }

    /// The most hours a license of pool `p` may be borrowed for (its line's
    /// `BORROW`, lowered by `MAX_BORROW_HOURS`); `None` if it is not
    /// borrowable.
    pub fn borrow_hours(&self, p: super::PoolId) -> Option<u32> {
        self.borrowing.as_ref()?.hours.get(p.0 as usize).copied()?
    }

    /// Borrows `req.count` licenses of `req`'s feature for `hours` hours
    /// from `now`, for a client at `ip`: a new instance (never a renewal)
    /// whose deadline is the borrow's end, marked [`BORROWED`]; its
    /// `req.linger_ms` is ignored. See the module docs for the rules; every
    /// rule of [`Engine::checkout_from`] applies too. The caller arms a
    /// timer for the grant's `schedule` as for any linger.
    ///
    /// Only the lines that may lend (BORROW, the hours, INCLUDE_BORROW /
    /// EXCLUDE_BORROW, LOWWATER room) serve it, judged under the borrow
    /// lock before anything is taken: a refused borrow takes nothing. The
    /// instance is published with its mark and deadline, and a checkout
    /// under the same key racing it either finds it (a renewal, refused
    /// [`BorrowRefusal::Borrowed`]) or makes it (the borrow is then
    /// [`BorrowRefusal::AlreadyHeld`]): the key is claimed once.
    pub fn borrow(
        &self,
        req: &Request<'_>,
        hours: u32,
        ip: Option<IpAddr>,
        now: Millis,
    ) -> Result<Grant, Denial> {
        req.validate()?;
        if hours == 0 {
            return Err(Reason::BadRequest("a borrow lasts at least 1 hour").into());
        }
        let fid = *self
            .by_name
            .get(req.names.feature)
            .ok_or(Reason::NoSuchFeature)?;
        let Some(b) = self.borrowing.as_ref() else {
            return Err(BorrowRefusal::NotBorrowable.into());
        };
        let feature = &self.features[fid as usize];
        if !feature.key.dup().is_by_handle() {
            return Err(BorrowRefusal::Shared.into());
        }
        // The lines whose rules let this borrower borrow this long, or the
        // refusal of the feature's most permissive line if none does.
        let mut admit = vec![false; self.pools.len()];
        let mut why = BorrowRefusal::NotBorrowable;
        for &p in &feature.pools {
            match b.refuses(p, fid, req, hours, ip) {
                None => admit[p as usize] = true,
                Some(r) => why = stronger(why, r),
            }
        }
        if !admit.contains(&true) {
            return Err(why.into());
        }
        let _one_at_a_time = lock(&b.lock);
        // Under the lock: what is borrowed is what the table holds marked
        // (only borrows, one at a time, and restores make marked instances).
        let kept = self.low_water(b, &mut admit, req.count);
        if let (Some(r), false) = (kept, admit.contains(&true)) {
            return Err(r.into());
        }
        let mut borrowing = *req;
        borrowing.linger_ms = u64::from(hours) * HOUR_MS;
        let lending = Lending { admit: &admit };
        let grant = match self.checkout_as(fid, &borrowing, None, ip, now, &lending, &mut ()) {
            // The lines left are out: say why the others did not lend.
            Err(d) if d.reason == Reason::AllInUse && kept.is_some() => {
                return Err(kept.map_or(d, Denial::from))
            }
            Err(d)
                if d.reason == Reason::AllInUse
                    && !self.lender_serves(fid, req, &admit, ip, now) =>
            {
                return Err(BorrowRefusal::NotBorrowable.into())
            }
            other => other?,
        };
        if grant.kind != GrantKind::New {
            // Not reached: uncounted and startup lines are never admitted.
            return Err(BorrowRefusal::NotBorrowable.into());
        }
        Ok(grant)
    }

    /// Clears in `admit` the pools whose `BORROW_LOWWATER` rules leave no
    /// room for `count` more; the first blocking rule's refusal if it
    /// cleared any. One read of the table if a rule selects an admitted
    /// pool.
    fn low_water(&self, b: &Borrowing, admit: &mut [bool], count: u32) -> Option<BorrowRefusal> {
        let rules: Vec<&LowWater> = b
            .lowwater
            .iter()
            .filter(|l| l.pools.iter().any(|&p| admit[p as usize]))
            .collect();
        if rules.is_empty() {
            return None;
        }
        let mut out = vec![0u64; self.pools.len()];
        self.table.for_each_live(|r| {
            if r.linger & BORROWED != 0 {
                out[r.pool as usize] += u64::from(r.count);
            }
        });
        let mut blocked = None;
        for (p, may) in admit.iter_mut().enumerate() {
            if !*may {
                continue;
            }
            let full = rules.iter().find(|l| {
                let lent: u64 = l.pools.iter().map(|&q| out[q as usize]).sum();
                l.pools.contains(&(p as u32))
                    && lent.saturating_add(u64::from(count)) > u64::from(l.room)
            });
            if let Some(l) = full {
                *may = false;
                blocked.get_or_insert(BorrowRefusal::LowWater {
                    keep: l.keep,
                    line: l.line,
                });
            }
        }
        blocked
    }

    /// Whether a pool in `admit` serves `req` now by the ordinary rules
    /// (version, dates, the options file): if none does, a borrow the
    /// other lines could serve is [`BorrowRefusal::NotBorrowable`], not
    /// `ALL_IN_USE`.
    fn lender_serves(
        &self,
        fid: u32,
        req: &Request<'_>,
        admit: &[bool],
        ip: Option<IpAddr>,
        now: Millis,
    ) -> bool {
        let who = self.policy.as_deref().filter(|p| p.covers(fid)).map(|p| {
            let n = &req.names;
            (p, p.who(fid, n.user, n.host, n.display, ip))
        });
        let want = req.version.unwrap_or(0);
        self.features[fid as usize]
            .pools
            .iter()
            .any(|&p| admit[p as usize] && self.serves(p, want, who.as_ref(), now))
    }

    /// Whether live instance `id` is borrowed (false if it is not live):
    /// one read of its slot.
    pub fn is_borrowed(&self, id: super::InstanceId) -> bool {
        self.table
            .read(id)
            .is_some_and(|r| r.linger & BORROWED != 0)
    }
}

/// A borrow's checkout ([`Engine::borrow`]): only the admitted pools
/// serve, the instance is published marked, and an instance already under
/// the key (found, or made by a racing checkout) refuses the borrow.
struct Lending<'a> {
    /// By pool: may it lend.
    admit: &'a [bool],
}

impl Counting for Lending<'_> {
    type Counted = ();

    fn counts(&self, _: &Engine, _: u32) -> bool {
        false
    }

    fn renew(
        &self,
        _: &Engine,
        _: (u32, &Found<'_>),
        _: u64,
        _: (&Request<'_>, Millis),
        _: bool,
        (): &mut (),
    ) -> Option<Result<Grant, Denial>> {
        Some(Err(BorrowRefusal::AlreadyHeld.into()))
    }

    fn first(&self, _: &Engine, _: (u32, &Claimed<'_>), _: (&str, u64), _: bool, (): &mut ()) {}

    fn admits(&self, p: u32) -> bool {
        self.admit.get(p as usize).copied().unwrap_or(false)
    }

    fn linger_word(&self, linger_ms: u64) -> u64 {
        linger_ms | BORROWED
    }
}

/// The more telling of two refusals: a rule naming the borrower beats a
/// limit, which beats a line without BORROW.
fn stronger(a: BorrowRefusal, b: BorrowRefusal) -> BorrowRefusal {
    if let (BorrowRefusal::TooLong { max_hours: x }, BorrowRefusal::TooLong { max_hours: y }) =
        (a, b)
    {
        return BorrowRefusal::TooLong {
            max_hours: x.max(y),
        };
    }
    let rank = |r: BorrowRefusal| match r {
        BorrowRefusal::Excluded => 3,
        BorrowRefusal::NotIncluded => 2,
        BorrowRefusal::TooLong { .. } => 1,
        _ => 0,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
