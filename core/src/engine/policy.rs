//! Options-file rules compiled for admission.
//!
//! When an engine is built with an options file, every user, host and
//! display name the rules mention is interned to a small id, and each pool
//! gets a [`PoolRules`]: hash sets for EXCLUDE and INCLUDE, hash maps from a
//! name id to the MAX counters and RESERVE reservations it is subject to.
//! A checkout interns its three names once (three hash lookups) and then
//! does id lookups; no rule list is scanned. A pool no rule touches has no
//! `PoolRules` and costs one `None` test; an engine without options has no
//! `Policy` at all.
//!
//! # Counters
//!
//! Every limit is a [`Counter`]: an `AtomicU64` taken by a CAS loop that
//! never passes its (32-bit) cap, given back by `fetch_sub`; 64 bits so
//! that instances forced in beyond the cap (restored) cannot wrap it. Like the pool counter
//! (`pool.rs`) each is one location whose read-modify-writes are totally
//! ordered, so each cap holds whatever the ordering; they publish nothing,
//! hence `Relaxed`. Admission takes, in order: every MAX counter that
//! applies, then a reservation of the requester's (or, failing that, the
//! pool's *general* counter, capped at `limit - reserved`), then the pool
//! counter. Any failure gives back what was taken, in reverse. So at every
//! instant `general + sum(reservations) <= limit` is implied by the caps,
//! and no one outside a reservation can take its licenses.
//!
//! # The charge record
//!
//! A release must give back exactly the counters its admission took. Which
//! reservation was used is not a function of the holder (it depends on what
//! was free), and the holder text the table keeps may be shortened, so the
//! admission writes a *charge record* per table slot: the reservation index
//! and the three name ids. It is stored while the slot is still claimed,
//! before the table's LIVE store publishes it; the release that wins the
//! slot (it alone runs the credit step, while the slot is RELEASING so
//! nobody can reuse it) takes it (`swap` to 0, `Acquire`). Nothing waits.
//! Record words are never 0 (bit 63 set).

use std::net::IpAddr;

use rustc_hash::{FxHashMap, FxHashSet};

use super::pool::Pool;
use super::Reason;
use crate::license::{BasedKind, PoolLine};
use crate::options::{
    IpPattern, OptionsFile, QualifierKey, Rule, RuleKind, TargetKind, MAX_NAME_BYTES,
};
use crate::sync::{AtomicU64, Ordering};

/// Most reservations (RESERVE rules) one pool can hold.
const MAX_RESERVATIONS_PER_POOL: usize = 255;
/// Bits of a name id in the charge record.
const ID_BITS: u32 = 18;
/// Most distinct names of one kind (user, host, display) the rules may use.
const MAX_IDS: u32 = (1 << ID_BITS) - 1;
/// Bit set in every charge record.
const WRITTEN: u64 = 1 << 63;

/// Bits of [`Policy::features`].
const KIND_ANY: u8 = 1;
const KIND_USER: u8 = 2;
const KIND_HOST: u8 = 4;
const KIND_DISPLAY: u8 = 8;

/// Name kinds, as tags in the high bits of a set key.
const USER: u64 = 1 << 32;
const HOST: u64 = 2 << 32;
const DISPLAY: u64 = 3 << 32;

/// One capped counter.
#[derive(Debug)]
pub(crate) struct Counter {
    cap: u32,
    used: AtomicU64,
}

impl Counter {
    fn new(cap: u32) -> Counter {
        Counter {
            cap,
            used: AtomicU64::new(0),
        }
    }

    /// Takes `n` if that stays within the cap.
    fn take(&self, n: u32) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur
                .checked_add(u64::from(n))
                .filter(|&v| v <= u64::from(self.cap))
            else {
                return false;
            };
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes `n` whatever the cap (restoring instances already out).
    fn force(&self, n: u32) {
        self.used.fetch_add(u64::from(n), Ordering::Relaxed);
    }

    fn give(&self, n: u32) {
        let before = self.used.fetch_sub(u64::from(n), Ordering::Relaxed);
        debug_assert!(before >= u64::from(n), "policy counter underflow");
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// The requester's names as ids (0: not named by any rule).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Who {
    user: u32,
    host: u32,
    display: u32,
    ip: Option<IpAddr>,
}

impl Who {
    fn keys(&self) -> [u64; 3] {
        [
            USER | u64::from(self.user),
            HOST | u64::from(self.host),
            DISPLAY | u64::from(self.display),
        ]
    }

    fn record(&self, reservation: u8) -> u64 {
        WRITTEN
            | (u64::from(reservation) << (3 * ID_BITS))
            | (u64::from(self.user) << (2 * ID_BITS))
            | (u64::from(self.host) << ID_BITS)
            | u64::from(self.display)
    }

    fn from_record(rec: u64) -> (Who, u8) {
        let mask = u64::from(MAX_IDS);
        (
            Who {
                user: ((rec >> (2 * ID_BITS)) & mask) as u32,
                host: ((rec >> ID_BITS) & mask) as u32,
                display: (rec & mask) as u32,
                ip: None,
            },
            ((rec >> (3 * ID_BITS)) & 0xff) as u8,
        )
    }
}

/// The people a rule names: name ids (tagged by kind) and address
/// patterns. Used while compiling.
#[derive(Debug, Default)]
struct IdSet {
    ids: FxHashSet<u64>,
    ips: Vec<IpPattern>,
}

/// What the rules of one pool say about one name id.
#[derive(Debug, Default)]
struct Entry {
    excluded: bool,
    included: bool,
    /// Indices into [`Policy::max`].
    max: Vec<u16>,
    /// Indices into [`PoolRules::reservations`].
    reserved: Vec<u16>,
}

#[derive(Debug)]
struct Reservation {
    counter: Counter,
    /// Options-file line of the RESERVE rule.
    line: u32,
}

/// What the rules say about one pool: one hash map from name id to
/// everything about that name, so a request costs three lookups per pool.
#[derive(Debug, Default)]
struct PoolRules {
    by_id: FxHashMap<u64, Entry>,
    exclude_ips: Vec<IpPattern>,
    /// Some INCLUDE / INCLUDEALL applies to the pool.
    has_include: bool,
    include_ips: Vec<IpPattern>,
    has_max: bool,
    reservations: Vec<Reservation>,
    /// Capped at `limit - reserved`; `Some` iff there are reservations.
    general: Option<Counter>,
    /// The line is `USER_BASED` / `HOST_BASED`: only names INCLUDEd by
    /// their kind count, up to a limit.
    based: Option<BasedRules>,
}

/// A `USER_BASED[=n]` / `HOST_BASED[=n]` pool's INCLUDE bookkeeping while
/// compiling. Admission needs none of it: the pool's `has_include` is set
/// from the start, and only the names admitted here are `included`.
#[derive(Debug, Clone, Copy)]
struct BasedRules {
    /// [`USER`] or [`HOST`]: the kind of name INCLUDE lines must give.
    tag: u64,
    /// Most distinct names that may be included (`None`: no limit).
    limit: Option<u32>,
    /// Distinct names included so far.
    named: u32,
}

/// The entries of a requester's user, host and display in one pool.
type View<'a> = [Option<&'a Entry>; 3];

impl PoolRules {
    /// Whether admission takes counters (and so writes a charge record).
    fn counts(&self) -> bool {
        self.has_max || self.general.is_some()
    }

    fn view(&self, who: &Who) -> View<'_> {
        who.keys()
            .map(|k| (k & 0xffff_ffff != 0).then(|| self.by_id.get(&k)).flatten())
    }

    fn entry(&mut self, key: u64) -> &mut Entry {
        self.by_id.entry(key).or_default()
    }
}

fn max_of<'a>(view: &'a View<'a>) -> impl Iterator<Item = u16> + 'a {
    view.iter().flatten().flat_map(|e| e.max.iter().copied())
}

fn reserved_of<'a>(view: &'a View<'a>) -> impl Iterator<Item = u16> + 'a {
    view.iter()
        .flatten()
        .flat_map(|e| e.reserved.iter().copied())
}

fn ip_in(ips: &[IpPattern], who: &Who) -> bool {
    !ips.is_empty() && who.ip.is_some_and(|ip| ips.iter().any(|p| p.matches(ip)))
}

/// Why access to a pool is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Allowed,
    Excluded,
    NotIncluded,
}

/// The compiled options file. See the module docs.
#[derive(Debug)]
pub(crate) struct Policy {
    fold_case: bool,
    users: FxHashMap<Box<str>, u32>,
    hosts: FxHashMap<Box<str>, u32>,
    displays: FxHashMap<Box<str>, u32>,
    /// By pool index.
    pools: Vec<Option<Box<PoolRules>>>,
    /// By feature index: which name kinds its pools' rules mention
    /// ([`KIND_USER`] ...; [`KIND_ANY`] alone: rules, but only by address).
    /// 0: no rules.
    features: Vec<u8>,
    /// One per MAX rule.
    max: Vec<Counter>,
    /// Rules that could not be applied, in words.
    pub(crate) warnings: Vec<String>,
}

/// Whether `rule`'s feature spec selects the pool `line`: a line of that
/// feature, or a component of the package of that name (a PACKAGE line's
/// name in a rule stands for all its components, as the guide says of
/// RESERVE). A `:VERSION=` qualifier compares with the line's version, or
/// for a package's component with the enabling line's; the other
/// qualifiers with what the component inherited from the enabling line.
pub(crate) fn selects(rule_feature: &Option<crate::options::FeatureSpec>, line: &PoolLine) -> bool {
    let Some(spec) = rule_feature else {
        return true;
    };
    let version = if spec.name == line.feature {
        &line.version
    } else {
        match &line.package {
            Some(c) if c.package == spec.name => &c.package_version,
            _ => return false,
        }
    };
    let Some(q) = &spec.qualifier else {
        return true;
    };
    match q.key {
        QualifierKey::Version => {
            crate::license::Version::scaled_of(&q.value) == Some(version.scaled())
        }
        // Any spelling the license parser reads (`permanent`, `1-jan-0`,
        // `31-Dec-2026`, `2026.1231`): compared as dates, not as text.
        QualifierKey::ExpDate => crate::license::parse_expiry(&q.value) == Ok(line.expiry),
        QualifierKey::VendorString => line
            .vendor_string
            .as_ref()
            .is_some_and(|v| v.raw == q.value),
        QualifierKey::Issuer => line.issuer.as_deref() == Some(q.value.as_str()),
        QualifierKey::Notice => line.notice.as_deref() == Some(q.value.as_str()),
        QualifierKey::Sign => line.sign.as_deref() == Some(q.value.as_str()),
    }
}

/// Whether the rule's feature name is a package's: some target is one of
/// its components.
fn names_package(
    rule_feature: &Option<crate::options::FeatureSpec>,
    targets: &[usize],
    pools: &[Pool],
) -> bool {
    let Some(spec) = rule_feature else {
        return false;
    };
    targets.iter().any(|&p| {
        pools[p]
            .line
            .package
            .as_ref()
            .is_some_and(|c| c.package == spec.name)
    })
}

/// `targets` (pool indices) grouped by feature, in order of first
/// appearance, each group in file order.
pub(crate) fn by_feature(targets: &[usize], pools: &[Pool]) -> Vec<Vec<usize>> {
    let mut at: FxHashMap<u32, usize> = FxHashMap::default();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &p in targets {
        let g = *at.entry(pools[p].feature).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(p);
    }
    groups
}

impl Policy {
    /// Compiles `options` against the engine's pools.
    pub(crate) fn compile(options: &OptionsFile, pools: &[Pool], features: usize) -> Policy {
        Policy::compile_with(options, pools, features, true)
    }

    /// Compiles the INCLUDE / EXCLUDE rules of `options` alone, as access
    /// rules (the borrow rules, `borrow.rs`): no line's `USER_BASED` /
    /// `HOST_BASED` applies.
    pub(crate) fn compile_access(options: &OptionsFile, pools: &[Pool], features: usize) -> Policy {
        Policy::compile_with(options, pools, features, false)
    }

    fn compile_with(options: &OptionsFile, pools: &[Pool], features: usize, based: bool) -> Policy {
        let mut policy = Policy {
            fold_case: options.group_case_insensitive,
            users: FxHashMap::default(),
            hosts: FxHashMap::default(),
            displays: FxHashMap::default(),
            pools: (0..pools.len()).map(|_| None).collect(),
            features: vec![0; features],
            max: Vec::new(),
            warnings: Vec::new(),
        };
        // USER_BASED / HOST_BASED lines: nobody is included until an
        // INCLUDE line names them.
        for (p, pool) in pools.iter().enumerate().filter(|_| based) {
            if let Some(b) = pool.line.based {
                let rules = policy.rules_mut(p);
                rules.has_include = true;
                rules.based = Some(BasedRules {
                    tag: match b.kind {
                        BasedKind::User => USER,
                        BasedKind::Host => HOST,
                    },
                    limit: b.limit(pool.line.count),
                    named: 0,
                });
            }
        }
        // Reserved so far per pool (a RESERVE spanning pools fills them in
        // file order).
        let mut reserved = vec![0u32; pools.len()];
        for rule in &options.rules {
            let Some(members) = policy.members(options, rule) else {
                continue;
            };
            let mut targets: Vec<usize> = pools
                .iter()
                .enumerate()
                .filter(|(_, p)| selects(&rule.feature, &p.line))
                .map(|(i, _)| i)
                .collect();
            // A suite's name selects its own feature line and its
            // components: INCLUDE / EXCLUDE apply to both, the counting
            // rules (MAX, RESERVE) to the components only (a component
            // checkout takes its suite license past the suite's rules,
            // `suite.rs`, so a count there would not hold).
            if matches!(rule.kind, RuleKind::Max(_) | RuleKind::Reserve(_))
                && names_package(&rule.feature, &targets, pools)
            {
                targets.retain(|&p| pools[p].line.package.is_some());
            }
            if targets.is_empty() {
                if let Some(f) = &rule.feature {
                    policy.warnings.push(format!(
                        "{}: {} names feature {f}, which no license line serves; rule ignored",
                        options.source,
                        rule.label()
                    ));
                }
                continue;
            }
            match rule.kind {
                RuleKind::Include | RuleKind::Exclude => {
                    let exclude = rule.kind == RuleKind::Exclude;
                    for &p in &targets {
                        if based
                            && !exclude
                            && policy.include_based(options, rule, &members, &pools[p], p)
                        {
                            continue;
                        }
                        let rules = policy.rules_mut(p);
                        for &k in &members.ids {
                            let e = rules.entry(k);
                            if exclude {
                                e.excluded = true;
                            } else {
                                e.included = true;
                            }
                        }
                        if exclude {
                            rules.exclude_ips.extend(members.ips.iter().copied());
                        } else {
                            rules.has_include = true;
                            rules.include_ips.extend(members.ips.iter().copied());
                        }
                    }
                }
                RuleKind::Max(n) => {
                    // One counter per feature: a package's name caps each
                    // of its components at n.
                    for group in by_feature(&targets, pools) {
                        let Ok(index) = u16::try_from(policy.max.len()) else {
                            policy.warnings.push(format!(
                                "{}: {}: more than 65535 MAX counters; rule ignored",
                                options.source,
                                rule.label()
                            ));
                            break;
                        };
                        policy.max.push(Counter::new(n));
                        for p in group {
                            if !pools[p].counted || pools[p].startup {
                                continue; // untracked pools hold nothing to cap
                            }
                            let rules = policy.rules_mut(p);
                            rules.has_max = true;
                            for &k in &members.ids {
                                let list = &mut rules.entry(k).max;
                                if !list.contains(&index) {
                                    list.push(index);
                                }
                            }
                        }
                    }
                }
                RuleKind::Reserve(n) => {
                    // n per feature: a package's name reserves n licenses
                    // of each component; a feature's pools fill in file
                    // order.
                    let mut short = Vec::new();
                    let groups = by_feature(&targets, pools);
                    let groups_of_one_feature = groups.len() == 1;
                    for group in groups {
                        let mut left = n;
                        for p in group.iter().copied() {
                            let pool = &pools[p];
                            if !pool.counted || pool.startup || left == 0 {
                                continue;
                            }
                            let room = pool.limit.saturating_sub(reserved[p]);
                            let here = left.min(room);
                            if here == 0 {
                                continue;
                            }
                            let rules = policy.rules_mut(p);
                            if rules.reservations.len() >= MAX_RESERVATIONS_PER_POOL {
                                break;
                            }
                            let index = rules.reservations.len() as u16;
                            rules.reservations.push(Reservation {
                                counter: Counter::new(here),
                                line: rule.line,
                            });
                            for &k in &members.ids {
                                let list = &mut rules.entry(k).reserved;
                                if !list.contains(&index) {
                                    list.push(index);
                                }
                            }
                            reserved[p] += here;
                            left -= here;
                        }
                        if left > 0 {
                            short.push((pools[group[0]].line.feature.as_str(), n - left));
                        }
                    }
                    for (feature, got) in short {
                        let of = if groups_of_one_feature {
                            String::new()
                        } else {
                            format!(" of component {feature}")
                        };
                        policy.warnings.push(format!(
                            "{}: {}: only {got} of {n} licenses{of} could be reserved (the pools have no more room, or are uncounted)",
                            options.source,
                            rule.label(),
                        ));
                    }
                }
            }
        }
        for (p, rules) in policy.pools.iter_mut().enumerate() {
            if let Some(rules) = rules {
                if rules.based.is_some_and(|b| b.named == 0) {
                    let line = &pools[p].line;
                    let based = line.based.map_or("", |b| b.keyword());
                    policy.warnings.push(format!(
                        "license line {}: feature {} is {based} and no INCLUDE line names a {}: every checkout of it is denied",
                        line.line,
                        line.feature,
                        if based == "HOST_BASED" { "host" } else { "user" },
                    ));
                }
                if !rules.reservations.is_empty() {
                    rules.general = Some(Counter::new(pools[p].limit.saturating_sub(reserved[p])));
                }
                let mut kinds = KIND_ANY;
                for key in rules.by_id.keys() {
                    kinds |= match key & !0xffff_ffff {
                        USER => KIND_USER,
                        HOST => KIND_HOST,
                        _ => KIND_DISPLAY,
                    };
                }
                policy.features[pools[p].feature as usize] |= kinds;
            }
        }
        policy
    }

    /// Applies an INCLUDE rule to pool `p` if the pool is `USER_BASED` /
    /// `HOST_BASED` (returns false otherwise, and does nothing): only names
    /// of the line's kind are included (USER / GROUP, or HOST / HOST_GROUP),
    /// in the order they were first named in the file, until the line's
    /// limit; the rest are left out with a warning naming the rule's line.
    fn include_based(
        &mut self,
        options: &OptionsFile,
        rule: &Rule,
        members: &IdSet,
        pool: &Pool,
        p: usize,
    ) -> bool {
        let Some(rules) = self.pools[p].as_deref_mut() else {
            return false;
        };
        let Some(mut b) = rules.based else {
            return false;
        };
        // Ids are handed out in the order names first appear in the file.
        let mut ids: Vec<u64> = members.ids.iter().copied().collect();
        ids.sort_unstable();
        let mut other_kind = !members.ips.is_empty();
        let mut over = 0u32;
        for k in ids {
            if k & !0xffff_ffff != b.tag {
                other_kind = true;
                continue;
            }
            let e = rules.by_id.entry(k).or_default();
            if e.included {
                continue;
            }
            if b.limit.map_or(true, |l| b.named < l) {
                e.included = true;
                b.named += 1;
            } else {
                over += 1;
            }
        }
        rules.based = Some(b);
        let line = &pool.line;
        let (based, noun, types) = match b.tag {
            USER => ("USER_BASED", "users", "USER and GROUP"),
            _ => ("HOST_BASED", "hosts", "HOST and HOST_GROUP"),
        };
        let at = format!("{}:{}: {}", options.source, rule.line, rule.label());
        if over > 0 {
            self.warnings.push(format!(
                "{at}: feature {} is {based} (license line {}), which allows {} {noun}; {over} more named here are not included",
                line.feature,
                line.line,
                b.limit.unwrap_or(0),
            ));
        }
        if other_kind {
            self.warnings.push(format!(
                "{at}: feature {} is {based} (license line {}): only INCLUDE {types} name its {noun}; the rest of this rule does not apply to that line",
                line.feature, line.line,
            ));
        }
        true
    }

    fn rules_mut(&mut self, p: usize) -> &mut PoolRules {
        self.pools[p].get_or_insert_with(Box::default)
    }

    /// The rule's target as a set of tagged ids (interning new names), or
    /// `None` with a warning if the names cannot be interned.
    fn members(&mut self, options: &OptionsFile, rule: &Rule) -> Option<IdSet> {
        let mut set = IdSet::default();
        let t = &rule.target;
        let names: Vec<(u64, &str)> = match t.kind {
            TargetKind::User => vec![(USER, t.name.as_str())],
            TargetKind::Host => vec![(HOST, t.name.as_str())],
            TargetKind::Display => vec![(DISPLAY, t.name.as_str())],
            TargetKind::Group => options
                .group(&t.name)
                .map(|g| g.members.iter().map(|m| (USER, m.as_str())).collect())
                .unwrap_or_default(),
            TargetKind::HostGroup => options
                .host_group(&t.name)
                .map(|g| g.members.iter().map(|m| (HOST, m.as_str())).collect())
                .unwrap_or_default(),
            TargetKind::Internet => {
                set.ips.extend(IpPattern::parse(&t.name));
                return Some(set);
            }
        };
        for (kind, name) in names {
            let Some(id) = self.intern(kind, name) else {
                self.warnings.push(format!(
                    "{}: {}: more than {MAX_IDS} distinct names; rule ignored",
                    options.source,
                    rule.label()
                ));
                return None;
            };
            set.ids.insert(kind | u64::from(id));
        }
        Some(set)
    }

    fn intern(&mut self, kind: u64, name: &str) -> Option<u32> {
        let key: Box<str> = if self.fold_case {
            name.to_lowercase().into()
        } else {
            name.into()
        };
        let map = match kind {
            USER => &mut self.users,
            HOST => &mut self.hosts,
            _ => &mut self.displays,
        };
        let next = map.len() as u32 + 1;
        if next > MAX_IDS && !map.contains_key(&key) {
            return None;
        }
        Some(*map.entry(key).or_insert(next))
    }

    /// Whether any pool of feature `fid` has rules.
    #[inline]
    pub(crate) fn covers(&self, fid: u32) -> bool {
        self.features.get(fid as usize).is_some_and(|&k| k != 0)
    }

    /// Interns the requester's names (no allocation), for a checkout of
    /// feature `fid`: a kind of name no rule of the feature mentions is not
    /// looked up (id 0, which matches nothing).
    pub(crate) fn who(
        &self,
        fid: u32,
        user: &str,
        host: &str,
        display: &str,
        ip: Option<IpAddr>,
    ) -> Who {
        let kinds = self.features.get(fid as usize).copied().unwrap_or(0);
        let id = |bit: u8, map, name| {
            if kinds & bit != 0 {
                self.id(map, name)
            } else {
                0
            }
        };
        Who {
            user: id(KIND_USER, &self.users, user),
            host: id(KIND_HOST, &self.hosts, host),
            display: id(KIND_DISPLAY, &self.displays, display),
            ip,
        }
    }

    fn id(&self, map: &FxHashMap<Box<str>, u32>, name: &str) -> u32 {
        if map.is_empty() {
            return 0;
        }
        if !self.fold_case {
            return map.get(name).copied().unwrap_or(0);
        }
        let mut buf = [0u8; MAX_NAME_BYTES];
        let Some(dst) = buf.get_mut(..name.len()) else {
            return 0; // longer than any name a rule can hold
        };
        dst.copy_from_slice(name.as_bytes());
        dst.make_ascii_lowercase();
        match std::str::from_utf8(dst) {
            // Non-ASCII letters were lowered with `to_lowercase` at compile
            // time; ASCII folding covers the names farms use.
            Ok(lower) => map.get(lower).copied().unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// EXCLUDE / INCLUDE for pool `p`.
    #[inline]
    pub(crate) fn access(&self, p: u32, who: &Who) -> Access {
        let Some(rules) = self.pools.get(p as usize).and_then(|r| r.as_deref()) else {
            return Access::Allowed;
        };
        let view = rules.view(who);
        if view.iter().flatten().any(|e| e.excluded) || ip_in(&rules.exclude_ips, who) {
            return Access::Excluded;
        }
        if rules.has_include
            && !view.iter().flatten().any(|e| e.included)
            && !ip_in(&rules.include_ips, who)
        {
            return Access::NotIncluded;
        }
        Access::Allowed
    }

    /// Takes `n` licenses from pool `p` under its rules. On success returns
    /// the pool's new in-use count and the charge record to store (0: none).
    pub(crate) fn admit(
        &self,
        p: u32,
        pool: &Pool,
        who: &Who,
        n: u32,
    ) -> Result<(u64, u64), Reason> {
        let Some(rules) = self.pools[p as usize].as_deref().filter(|r| r.counts()) else {
            return pool.reserve(n).map(|u| (u, 0)).ok_or(Reason::AllInUse);
        };
        let view = rules.view(who);
        // MAX: every counter that applies.
        let mut taken = 0usize;
        let mut over = false;
        for index in max_of(&view) {
            if self.max[usize::from(index)].take(n) {
                taken += 1;
            } else {
                over = true;
                break;
            }
        }
        let give_max = |count: usize| {
            for index in max_of(&view).take(count) {
                self.max[usize::from(index)].give(n);
            }
        };
        if over {
            give_max(taken);
            return Err(Reason::OverMax);
        }
        // RESERVE: the requester's reservations first, then the general part.
        let mut reservation = 0u8;
        for index in reserved_of(&view) {
            if rules.reservations[usize::from(index)].counter.take(n) {
                reservation = index as u8 + 1;
                break;
            }
        }
        if reservation == 0 {
            if let Some(general) = &rules.general {
                if !general.take(n) {
                    give_max(taken);
                    // Free licenses left, but all held back for others?
                    let reason = match rules
                        .reservations
                        .iter()
                        .find(|r| r.counter.used() < u64::from(r.counter.cap))
                    {
                        Some(r) if pool.in_use() < u64::from(pool.limit) => {
                            Reason::ReservedForOthers { line: r.line }
                        }
                        _ => Reason::AllInUse,
                    };
                    return Err(reason);
                }
            }
        }
        match pool.reserve(n) {
            Some(in_use) => Ok((in_use, who.record(reservation))),
            None => {
                self.give_reservation(rules, reservation, n);
                give_max(taken);
                Err(Reason::AllInUse)
            }
        }
    }

    /// Charges an instance put back after a reread or restart whatever the
    /// caps (nothing already out is revoked). Returns the charge record.
    pub(crate) fn force(&self, p: u32, who: &Who, n: u32) -> u64 {
        let Some(rules) = self.pools[p as usize].as_deref().filter(|r| r.counts()) else {
            return 0;
        };
        let view = rules.view(who);
        for index in max_of(&view) {
            self.max[usize::from(index)].force(n);
        }
        let mut reservation = 0u8;
        for index in reserved_of(&view) {
            if rules.reservations[usize::from(index)].counter.take(n) {
                reservation = index as u8 + 1;
                break;
            }
        }
        if reservation == 0 {
            if let Some(g) = &rules.general {
                g.force(n);
            }
        }
        who.record(reservation)
    }

    fn give_reservation(&self, rules: &PoolRules, reservation: u8, n: u32) {
        if reservation == 0 {
            if let Some(g) = &rules.general {
                g.give(n);
            }
        } else {
            rules.reservations[usize::from(reservation - 1)]
                .counter
                .give(n);
        }
    }

    /// Stores the charge record of the instance about to be published in
    /// the slot whose record is `charge` (before the table's LIVE store, so
    /// a release that wins the slot finds it).
    pub(crate) fn record(&self, charge: Option<&AtomicU64>, record: u64) {
        if record == 0 {
            return;
        }
        debug_assert!(charge.is_some(), "an engine with options keeps records");
        if let Some(charge) = charge {
            // Release: pairs with the Acquire load in `release` (the LIVE
            // store and the releaser's CAS order it too).
            charge.store(record, Ordering::Release);
        }
    }

    /// Gives back what the instance whose slot's record is `charge`
    /// (charged to pool `p`, `n` licenses) took. Called once per instance,
    /// by the release that won the slot, before the slot is freed.
    pub(crate) fn release(&self, p: u32, charge: Option<&AtomicU64>, n: u32) {
        if !self.pools[p as usize]
            .as_deref()
            .is_some_and(|r| r.counts())
        {
            return;
        }
        // Acquire: pairs with the Release store in `record`, which the LIVE
        // store and our LIVE -> RELEASING CAS order before this. The next
        // owner of the slot cannot exist before this release frees it.
        let rec = charge.map_or(0, |c| c.swap(0, Ordering::Acquire));
        debug_assert!(rec != 0, "a charged instance without its charge record");
        if rec == 0 {
            return;
        }
        self.give_back(p, rec, n);
    }

    /// Gives back what an admission to pool `p` that returned `record`
    /// took (besides the pool counter, which the caller credits): for a
    /// release, and for a checkout undone before it was published (a suite
    /// component whose suite was refused).
    pub(crate) fn give_back(&self, p: u32, record: u64, n: u32) {
        let Some(rules) = self.pools[p as usize].as_deref().filter(|r| r.counts()) else {
            return;
        };
        if record == 0 {
            return;
        }
        let (who, reservation) = Who::from_record(record);
        let view = rules.view(&who);
        for index in max_of(&view) {
            self.max[usize::from(index)].give(n);
        }
        self.give_reservation(rules, reservation, n);
    }

    /// Licenses of pool `p` held back by RESERVE rules and not in use.
    pub(crate) fn reserved_free(&self, p: u32) -> u32 {
        self.pools[p as usize].as_deref().map_or(0, |r| {
            r.reservations
                .iter()
                .map(|x| u64::from(x.counter.cap).saturating_sub(x.counter.used()))
                .fold(0u32, |sum, free| {
                    sum.saturating_add(u32::try_from(free).unwrap_or(u32::MAX))
                })
        })
    }
}
