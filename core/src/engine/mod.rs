//! The checkout engine: admission, one instance per key, linger deadlines.
//!
//! An [`Engine`] is built once from a [`LicenseSet`] and shared by every
//! thread (`&self` everywhere). It does no I/O and reads no clock: each call
//! takes `now` in Unix milliseconds.
//!
//! ```
//! use tally_core::engine::{Engine, EngineConfig, Request};
//! use tally_core::license::parse_str;
//!
//! let lic = parse_str("demo", "FEATURE MPM_ADV_RC CITRIX 1.0 permanent 2\n");
//! let engine = Engine::new(&lic, EngineConfig::default());
//! let now = 1_700_000_000_000;
//! let mut req = Request::new("MPM_ADV_RC", "USER15", "GENE-VM-2K3", "ec26edf8");
//! req.linger_ms = 21 * 24 * 3600 * 1000;
//! let grant = engine.checkout(&req, now).unwrap();
//! assert_eq!(grant.deadline, Some(now + req.linger_ms));
//! // Returning the license: check it out again with linger 1 s.
//! req.linger_ms = 1000;
//! let again = engine.checkout(&req, now + 5).unwrap();
//! assert_eq!(again.id, grant.id);
//! ```
//!
//! Hot path (checkout, check-in, expiry): no allocation, no lock, no
//! syscall, no formatting. The feature lookup reads an immutable `HashMap`;
//! admission is a CAS on the pool counter (`pool.rs`); the instance slot is
//! claimed with atomics (`table.rs`). Releases found due are reported to the
//! caller, who logs them; [`Timers`] (or, with linger timers only,
//! [`Lingers`]) drives expiry from a timer wheel.
//! The exceptions are DUP_GROUP features: their uses are counted per
//! instance under a lock per bucket of 16 slots, never one lock for all
//! (`uses.rs`; [`Engine::checkout_use`]); and the components of a package
//! suite (`PACKAGE ... OPTIONS=SUITE`), whose new instances and releases
//! take the suite's lock to share one suite license per holder
//! (`suite.rs`; with `SUITE_RESERVED` the lock is held across the
//! component's charge too); and borrows ([`Engine::borrow`], `borrow.rs`), decided
//! one at a time under the engine's borrow lock (an engine with `BORROW`
//! lines also reads an instance's linger word on each renewal).

mod borrow;
mod denial;
mod holder;
mod key;
mod lingers;
mod names;
mod policy;
mod pool;
mod reconcile;
mod scan;
mod suite;
#[allow(unsafe_code)] // the levels' pointers; each block says why it holds
mod table;
mod unservable;
mod uses;
mod visit;

use rustc_hash::FxHashMap;

pub use borrow::{BorrowRefusal, BORROWED};
pub use denial::{Denial, FullText, Reason};
pub use holder::HolderBuf;
pub use lingers::{Due, Lingers, Timers};
pub use names::Names;
pub use reconcile::Reconciled;
pub use scan::Lingering;
pub use table::InstanceId;
pub use unservable::{unservable, Unservable, MAX_HOLDERS};
pub use uses::{Counted, Ended, Use, Uses};
use uses::{Counting, NoUses};
pub use visit::HolderView;

use crate::clock::Millis;
use crate::license::{DupGroup, Expiry, LicenseSet, PoolKind, Version};
use crate::options::OptionsFile;
use borrow::Borrowing;
use key::{InstanceKey, KeyFields, KeyPrefix, KeySeed};
use policy::{Access, Policy, Who};
use pool::Pool;
use suite::{SuiteOf, Suites};
use table::{Claim, Extras, Fields, Found, Lookup, Renew, Table, MAX_DEADLINE, NO_DEADLINE};

/// Most licenses one checkout may ask for.
pub const MAX_COUNT_PER_CHECKOUT: u32 = 1_000_000;

/// A keyword on a pool line that marks it *retired*: a reread removed it
/// while instances were out. The engine keeps the pool so they stay held
/// and counted, serves nothing new from it (new checkouts and renewals are
/// denied as if the feature did not exist) and lets them drain.
pub const RETIRED_KEYWORD: &str = "TALLY_RETIRED";

/// Longest linger accepted: 100 years, in ms.
pub const MAX_LINGER_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// Index of a feature in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeatureId(pub u32);

/// Index of a pool (one FEATURE/INCREMENT line) in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolId(pub u32);

/// Settings for building an [`Engine`].
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Secret for the instance-key hash (give it random bits in a server, so
    /// clients cannot aim hash collisions at each other).
    pub seed: (u64, u64),
    /// Instances the table's first level holds room for at least. It is
    /// otherwise sized for the licenses the counted pools can grant, but
    /// for no more than 4,096 instances; the table grows as instances come
    /// (see [`Engine::table_bytes`]).
    pub min_instances: usize,
}

impl EngineConfig {
    /// This config with the table's first level sized to restore
    /// `instances` at once (a restart's recovery, a REREAD's migration),
    /// so that the table does not grow level by level while they come
    /// back: [`EngineConfig::min_instances`] raised to two thirds of them,
    /// which gives the level at least four slots for every three
    /// instances (at most three quarters full, where its two-choice
    /// buckets of 16 hold them all).
    pub fn restoring(self, instances: usize) -> EngineConfig {
        EngineConfig {
            min_instances: self.min_instances.max(instances - instances / 3),
            ..self
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            seed: (0x7461_6c6c_7973_6565, 0x6420_6b65_7973_2121),
            min_instances: 0,
        }
    }
}

/// A checkout request. Strings are borrowed: building one does not allocate.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The feature and who asks (one instance per handle, unless the
    /// feature's DUP_GROUP names other fields).
    pub names: Names<&'a str>,
    /// Lowest version the client accepts (scaled as [`Version::scaled`]);
    /// `None` accepts any.
    pub version: Option<u64>,
    /// Licenses to take (default 1).
    pub count: u32,
    /// Linger in ms: held until `last checkout + linger`. 0 = held until
    /// check-in (or, in a server, disconnect).
    pub linger_ms: u64,
}

impl<'a> Request<'a> {
    /// A request for one license with no linger and display `""`.
    pub fn new(feature: &'a str, user: &'a str, host: &'a str, handle: &'a str) -> Request<'a> {
        Request {
            names: Names::new(feature, user, host, handle),
            version: None,
            count: 1,
            linger_ms: 0,
        }
    }

    fn key_fields(&self) -> KeyFields<'a> {
        self.names.key_fields()
    }

    /// Whether the request is well formed: the first thing a checkout
    /// checks, before it looks the feature up (so a caller that looked it
    /// up itself and found nothing denies with this reason, if any, else
    /// [`Reason::NoSuchFeature`], as [`Engine::checkout`] would).
    pub fn validate(&self) -> Result<(), Reason> {
        if self.names.feature.is_empty() {
            return Err(Reason::BadRequest("empty feature name"));
        }
        if self.names.handle.is_empty() {
            return Err(Reason::BadRequest("empty handle"));
        }
        if self.count == 0 {
            return Err(Reason::BadRequest("count must be at least 1"));
        }
        if self.count > MAX_COUNT_PER_CHECKOUT {
            return Err(Reason::BadRequest("count is larger than 1000000"));
        }
        if self.linger_ms > MAX_LINGER_MS {
            return Err(Reason::BadRequest("linger is longer than 100 years"));
        }
        Ok(())
    }
}

/// An instance that was already out, to put back into an engine (after a
/// license-file reread, or from a journal after a restart).
#[derive(Debug, Clone, Copy)]
pub struct Restore<'a> {
    /// The feature and the holder's names.
    pub names: Names<&'a str>,
    /// Licenses held.
    pub count: u32,
    /// Version of the pool it was charged to (the new pool must serve it).
    pub version: u64,
    /// First checkout, Unix ms.
    pub since_ms: Millis,
    /// Linger of the latest checkout, ms; with [`BORROWED`] set, the
    /// instance is restored as a borrow (see [`HolderSnapshot::borrowed`]).
    pub linger_ms: u64,
    /// Deadline, Unix ms; `None` = held until check-in.
    pub deadline_ms: Option<Millis>,
    /// The instance's identity in the engine it comes from
    /// ([`HolderSnapshot::identity`]), when that engine had the same seed
    /// (a reread): used instead of the names, which a snapshot may have
    /// shortened. `None`: the key is computed from the names (full names
    /// from a journal, say).
    pub identity: Option<Identity>,
}

/// Who an instance is, as the engine knows it: its key (a keyed hash of the
/// feature name and the fields its duplicate grouping names) and that
/// grouping. Opaque; only meaningful to engines built with the same seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    key: InstanceKey,
    dup: DupGroup,
}

/// How a checkout was satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    /// A new instance took licenses from a pool.
    New,
    /// The key already held an instance: its deadline moved, nothing taken.
    Renewed,
    /// A startup license (`LT=SYS`): checked out and at once checked in.
    Startup,
    /// An uncounted pool: granted, not tracked.
    Uncounted,
}

/// A successful checkout.
///
/// A counted use of a DUP_GROUP instance ([`Engine::checkout_use`]) returns
/// what it counted ([`Counted`]) beside its grant, not in it: the grant of
/// every checkout is this size, whatever the feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The instance (`None` for startup and uncounted grants).
    pub id: Option<InstanceId>,
    /// What happened.
    pub kind: GrantKind,
    /// The feature.
    pub feature: FeatureId,
    /// The pool charged (for a renewal: the pool first charged).
    pub pool: PoolId,
    /// Licenses held by the instance.
    pub count: u32,
    /// When the instance will be checked in; `None` = held until check-in.
    /// For a counted use ([`Engine::checkout_use`]): the deadline this use
    /// was promised (the reply's); the instance's own is `schedule`.
    pub deadline: Option<Millis>,
    /// The caller must arm a timer for this deadline (the instance is new,
    /// or its deadline moved earlier than any timer already armed). For a
    /// counted use's renewal: the instance's deadline now (`None` while a
    /// bound use holds it).
    pub schedule: Option<Millis>,
    /// The grant took the pool past its count (an overdraft license).
    pub overdraft: bool,
    /// For a renewal: the deadline the instance had before it (`None`:
    /// held until check-in, or not a renewal).
    pub previous_deadline: Option<Millis>,
}

/// A license instance that was checked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The instance (its slot may already hold another one).
    pub id: InstanceId,
    /// The feature.
    pub feature: FeatureId,
    /// The pool credited.
    pub pool: PoolId,
    /// Licenses returned.
    pub count: u32,
    /// When the instance was first checked out.
    pub since_ms: Millis,
    /// Its deadline at release (`None` if it had none).
    pub deadline: Option<Millis>,
    /// It was borrowed ([`Engine::borrow`]).
    pub borrowed: bool,
    /// Who held it.
    pub holder: HolderBuf,
}

/// What [`Engine::expire`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// The deadline had passed: checked in.
    Released(Release),
    /// Renewed since the timer was armed: due at this later time.
    Later(Millis),
    /// Already checked in, or no longer lingering: nothing to do.
    Gone,
}

/// A check-in of something not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CheckinError {
    /// No such feature.
    #[error("no such feature")]
    NoSuchFeature,
    /// The feature exists but this client holds no instance of it.
    #[error("no license of this feature is held by this client")]
    NotHeld,
}

#[derive(Debug)]
struct Feature {
    name: String,
    vendor: String,
    pools: Vec<u32>,
    /// The key hash, primed with the name and grouping (which it keeps).
    key: KeyPrefix,
}

/// The pools of a feature that serve one request, in file order: an
/// iterator that is cheap to clone (see [`Engine::eligible`]).
#[derive(Clone)]
struct Serving<'s> {
    engine: &'s Engine,
    pools: &'s [u32],
    /// Bit `i`: `pools[i]` serves (for `i < 64`); taken bits are cleared.
    mask: u64,
    /// The next position beyond 64 to judge.
    at: usize,
    want: u64,
    who: Option<&'s (&'s Policy, Who)>,
    now: Millis,
}

impl Iterator for Serving<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.mask != 0 {
            let i = self.mask.trailing_zeros() as usize;
            self.mask &= self.mask - 1;
            return Some(self.pools[i]);
        }
        let e = self.engine;
        while let Some(&p) = self.pools.get(64 + self.at) {
            self.at += 1;
            if e.serves(p, self.want, self.who, self.now) {
                return Some(p);
            }
        }
        None
    }
}

/// The license engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    source: String,
    features: Vec<Feature>,
    /// Feature name -> index. Fixed after build and only read, so a fast
    /// non-keyed hash is safe: lookups cannot degrade a table nobody inserts into.
    by_name: FxHashMap<String, u32>,
    pools: Vec<Pool>,
    table: Table,
    /// The compiled options file, if any (see `policy.rs`).
    policy: Option<Box<Policy>>,
    /// Package suites: which pools' checkouts also take a suite license.
    suites: Suites,
    /// `BORROW` lines' rules (`borrow.rs`); `None` if no line says BORROW.
    borrowing: Option<Box<Borrowing>>,
}

impl Engine {
    /// Builds an engine serving the pools of `licenses`. The table starts
    /// small (room for the licenses the counted pools can grant, up to
    /// 4,096 instances) and grows with the instances held, whatever the
    /// counts: memory follows what is out, not what is licensed.
    ///
    /// A `USER_BASED` / `HOST_BASED` line needs INCLUDE lines to be used at
    /// all: with such a line the engine is built as if with an empty
    /// options file, which denies every checkout of it (`NOT_INCLUDED`).
    pub fn new(licenses: &LicenseSet, config: EngineConfig) -> Engine {
        if licenses.pools.iter().any(|l| l.based.is_some()) {
            return Engine::with_options(licenses, &OptionsFile::default(), config);
        }
        Engine::build(licenses, config, false)
    }

    /// Builds an engine that applies an options file: INCLUDE / EXCLUDE /
    /// RESERVE / MAX rules are compiled into per-pool admission data and
    /// `MAX_OVERDRAFT` lowers the pools' overdraft. Rules that cannot be
    /// applied are listed by [`Engine::policy_warnings`]. See
    /// `docs/options-file.md`.
    pub fn with_options(
        licenses: &LicenseSet,
        options: &OptionsFile,
        config: EngineConfig,
    ) -> Engine {
        let mut capped;
        let mut licenses = licenses;
        if !options.max_overdraft.is_empty() {
            capped = licenses.clone();
            for line in &mut capped.pools {
                if let Some(m) = options.max_overdraft.iter().rev().find(|m| {
                    // A package's name caps each of its components.
                    m.feature.name == line.feature
                        || line
                            .package
                            .as_ref()
                            .is_some_and(|c| c.package == m.feature.name)
                }) {
                    line.overdraft = line.overdraft.min(m.value);
                }
            }
            licenses = &capped;
        }
        let mut engine = Engine::build(licenses, config, true);
        let mut policy = Policy::compile(options, &engine.pools, engine.features.len());
        engine.borrowing =
            Borrowing::compile(&engine.pools, engine.features.len(), Some(options)).map(Box::new);
        if let Some(b) = &engine.borrowing {
            policy.warnings.extend(b.warnings.iter().cloned());
        }
        engine.policy = Some(Box::new(policy));
        engine
    }

    /// Options-file rules that could not be applied (a feature no license
    /// line serves, a reservation larger than its pools, ...), in words.
    pub fn policy_warnings(&self) -> &[String] {
        self.policy.as_deref().map_or(&[], |p| &p.warnings)
    }

    /// Licenses of `pool` that RESERVE rules hold back and nobody uses.
    pub fn reserved_free(&self, pool: PoolId) -> u32 {
        self.policy
            .as_deref()
            .map_or(0, |p| p.reserved_free(pool.0))
    }

    /// The engine without its policy; `charged`: its table keeps the
    /// options' charge records.
    fn build(licenses: &LicenseSet, config: EngineConfig, charged: bool) -> Engine {
        let mut features: Vec<Feature> = Vec::new();
        let mut by_name: FxHashMap<String, u32> = FxHashMap::default();
        let mut pools = Vec::with_capacity(licenses.pools.len());
        for line in &licenses.pools {
            let fid = *by_name.entry(line.feature.clone()).or_insert_with(|| {
                features.push(Feature {
                    name: line.feature.clone(),
                    vendor: line.vendor.clone(),
                    pools: Vec::new(),
                    key: KeyPrefix::new(
                        KeySeed(config.seed.0, config.seed.1),
                        &line.feature,
                        line.dup_group,
                    ),
                });
                (features.len() - 1) as u32
            });
            features[fid as usize].pools.push(pools.len() as u32);
            pools.push(Pool::new(line, fid));
        }
        let grantable = pools
            .iter()
            .filter(|p| p.counted && !p.startup)
            .fold(0usize, |n, p| n.saturating_add(p.limit as usize));
        let first_level = grantable
            .min(table::INITIAL_INSTANCES)
            .max(config.min_instances);
        let extras = Extras {
            charges: charged,
            uses: features.iter().any(|f| !f.key.dup().is_by_handle()),
        };
        let suites = Suites::build(pools.len(), features.len(), |p| {
            let of = pools[p].line.package.as_ref().filter(|c| c.suite)?;
            let suite = &features[*by_name.get(&of.package)? as usize];
            Some(SuiteOf {
                pools: &suite.pools[..],
                dup: of.suite_dup,
                reserved: of.suite_reserved,
                feature: pools[p].feature,
            })
        });
        let borrowing = Borrowing::compile(&pools, features.len(), None).map(Box::new);
        Engine {
            source: licenses.source.clone(),
            features,
            by_name,
            pools,
            table: Table::with_extras(first_level, extras),
            policy: None,
            suites,
            borrowing,
        }
    }

    /// Where the licenses came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Number of slots in the checkout table now (it grows as instances
    /// are held, never shrinks).
    pub fn table_slots(&self) -> usize {
        self.table.slot_count()
    }

    /// Bytes the checkout table has allocated now: what the engine's
    /// memory grows with (about 1.4 MB until thousands of instances are
    /// out, then two to four slots of 172 bytes per instance out at the
    /// busiest: 359 MB for a million; never given back while the engine
    /// lives). An engine with a DUP_GROUP feature adds 2 bytes per slot
    /// (a lock per bucket of 16), plus, not counted here, the heap of the
    /// uses of its shared instances (`uses.rs`).
    pub fn table_bytes(&self) -> usize {
        self.table.bytes()
    }

    /// Number of features.
    pub fn feature_count(&self) -> usize {
        self.features.len()
    }

    /// The `i`-th feature in license-file order.
    pub fn feature_id_at(&self, i: usize) -> Option<FeatureId> {
        (i < self.features.len()).then_some(FeatureId(i as u32))
    }

    /// The feature's duplicate grouping.
    pub fn dup_group(&self, id: FeatureId) -> DupGroup {
        self.features[id.0 as usize].key.dup()
    }

    /// Looks a feature up by name.
    pub fn feature_id(&self, name: &str) -> Option<FeatureId> {
        self.by_name.get(name).map(|&i| FeatureId(i))
    }

    /// The feature's name.
    pub fn feature_name(&self, id: FeatureId) -> &str {
        &self.features[id.0 as usize].name
    }

    /// The PACKAGE the feature is a component of (of its first pool that
    /// is one), if any: what an options-file TIMEOUT or LINGER naming the
    /// package applies to.
    pub fn feature_package(&self, id: FeatureId) -> Option<&str> {
        self.features[id.0 as usize].pools.iter().find_map(|&p| {
            self.pools[p as usize]
                .line
                .package
                .as_ref()
                .map(|c| c.package.as_str())
        })
    }

    /// The feature's vendor daemon name.
    pub fn feature_vendor(&self, id: FeatureId) -> &str {
        &self.features[id.0 as usize].vendor
    }

    /// Whether no pool of feature `fid` could ever grant `count` licenses
    /// at once (each counted pool's count plus overdraft is smaller, and no
    /// pool is uncounted): such a request is denied, never queued.
    pub fn never_grants(&self, fid: FeatureId, count: u32) -> bool {
        self.features.get(fid.0 as usize).is_some_and(|f| {
            f.pools.iter().all(|&p| {
                let pool = &self.pools[p as usize];
                pool.counted && !pool.startup && pool.limit < count
            })
        })
    }

    /// Whether a checkout of the feature can leave an instance in the
    /// table: false when every pool is a startup (`LT=SYS`) or uncounted
    /// one, whose grants hold nothing (a check-in of them has nothing to do).
    pub fn holds_instances(&self, id: FeatureId) -> bool {
        self.features[id.0 as usize].pools.iter().any(|&p| {
            let pool = &self.pools[p as usize];
            pool.counted && !pool.startup
        })
    }

    /// Checks a license out, or renews the key's instance. See the module
    /// docs and `docs/architecture.md` for the protocol.
    pub fn checkout(&self, req: &Request<'_>, now: Millis) -> Result<Grant, Denial> {
        self.checkout_from(req, None, now)
    }

    /// [`Engine::checkout`] for a client at address `ip`, which options-file
    /// `INTERNET` rules test.
    ///
    /// For a DUP_GROUP feature this renews the shared instance without
    /// counting uses (each renewal sets its deadline); a server that ends
    /// uses on their own uses [`Engine::checkout_use`] instead.
    pub fn checkout_from(
        &self,
        req: &Request<'_>,
        ip: Option<std::net::IpAddr>,
        now: Millis,
    ) -> Result<Grant, Denial> {
        req.validate()?;
        let fid = *self
            .by_name
            .get(req.names.feature)
            .ok_or(Reason::NoSuchFeature)?;
        self.checkout_as(fid, req, None, ip, now, &NoUses, &mut ())
    }

    /// [`Engine::checkout_from`] of feature `fid` (the request validated,
    /// its feature looked up), a new instance keeping the holder text in
    /// `holder` (built there if it is `Some(None)`; with no `holder` given,
    /// packed from the names straight into the slot), counting the use as
    /// `counting` says and writing what it counted to `counted` (left
    /// alone if nothing was):
    /// `NoUses` (every checkout but [`Engine::checkout_use`]'s: nothing
    /// counted, `counted` is `()`, the code of a plain checkout) or
    /// `ByPrior` (a grouped feature's use). An out-parameter rather than a
    /// wider return so that the plain checkout returns what it did before
    /// uses were counted.
    #[allow(clippy::too_many_arguments)]
    fn checkout_as<C: Counting>(
        &self,
        fid: u32,
        req: &Request<'_>,
        holder: Option<&mut Option<HolderBuf>>,
        ip: Option<std::net::IpAddr>,
        now: Millis,
        counting: &C,
        counted: &mut C::Counted,
    ) -> Result<Grant, Denial> {
        let feature = &self.features[fid as usize];
        // The caller's holder text, or (none given) one of our own, built
        // only if a suite needs it: a new instance then packs the names
        // straight into its slot.
        let keep_holder = holder.is_some();
        let mut own = None;
        let holder = holder.unwrap_or(&mut own);
        // Names interned only when the options file has rules for the feature.
        let who = self.policy.as_deref().filter(|p| p.covers(fid)).map(|p| {
            let n = &req.names;
            (p, p.who(fid, n.user, n.host, n.display, ip))
        });
        // Every pool for a checkout (a constant `true`); a borrow's own.
        let eligible = self
            .eligible(feature, req, who.as_ref(), now)?
            .filter(|&p| counting.admits(p));

        // Startup and uncounted pools hold nothing in the table.
        if let Some(p) = eligible
            .clone()
            .find(|&p| self.pools[p as usize].startup || !self.pools[p as usize].counted)
        {
            let pool = &self.pools[p as usize];
            return Ok(Grant {
                id: None,
                kind: if pool.startup {
                    GrantKind::Startup
                } else {
                    GrantKind::Uncounted
                },
                feature: FeatureId(fid),
                pool: PoolId(p),
                count: req.count,
                deadline: None,
                schedule: None,
                overdraft: false,
                previous_deadline: None,
            });
        }

        let key = feature.key.key(req.key_fields());
        let deadline = if req.linger_ms == 0 {
            NO_DEADLINE
        } else {
            now.saturating_add(req.linger_ms).min(MAX_DEADLINE)
        };
        // Decided once: whether this checkout counts its use (never for
        // `NoUses`, a constant there).
        let counts = counting.counts(self, fid);
        loop {
            if let Lookup::Live(found) = self.table.lookup(key) {
                self.check_holder(feature, &found, req)?;
                match counting.renew(self, (fid, &found), deadline, (req, now), counts, counted) {
                    Some(result) => return result,
                    None => continue, // released meanwhile: start over
                }
            }
            match self.table.claim(key) {
                Claim::Owned(claim) => {
                    // The key is ours alone: now charge a pool (a reserved
                    // suite's component: and take the suite, under the
                    // suite's lock, `suite.rs`).
                    let reserved = self.suites.reserved_of(fid);
                    let charged = match reserved {
                        None => self.charge(eligible.clone(), who, req.count),
                        Some(s) => {
                            let holder = holder.get_or_insert_with(|| req.names.holder());
                            self.suites
                                .checkout_reserved(
                                    s,
                                    fid,
                                    &self.pools,
                                    holder,
                                    now,
                                    || {
                                        self.charge(eligible.clone(), who, req.count)
                                            .map(|(p, u, r)| (p, (u, r)))
                                    },
                                    |p, &(_, record)| {
                                        if let Some((policy, _)) = who {
                                            policy.give_back(p, record, req.count);
                                        }
                                        self.pools[p as usize].unreserve(req.count);
                                    },
                                )
                                .map(|(p, (u, r))| (p, u, r))
                        }
                    };
                    let (p, in_use, record) = match charged {
                        Ok(c) => c,
                        Err(reason) => {
                            self.table.abandon(claim);
                            // Off the hot path: full now, or full forever?
                            if reason == Reason::AllInUse
                                && eligible.clone().next().is_some()
                                && eligible
                                    .clone()
                                    .all(|p| self.pools[p as usize].limit < req.count)
                            {
                                return Err(Reason::CountTooHigh.into());
                            }
                            return Err(reason.into());
                        }
                    };
                    // A suite's component also takes the suite (`suite.rs`);
                    // refused, the component's charge goes back.
                    if let Some(s) = self.suites.of(p).filter(|_| reserved.is_none()) {
                        let holder = holder.get_or_insert_with(|| req.names.holder());
                        if let Err(reason) = self.suites.take(s, &self.pools, holder, now) {
                            if let Some((policy, _)) = who {
                                policy.give_back(p, record, req.count);
                            }
                            self.pools[p as usize].unreserve(req.count);
                            self.table.abandon(claim);
                            return Err(reason.into());
                        }
                    }
                    // Before publish: a release that wins the LIVE slot
                    // then finds the record without waiting for us.
                    if let Some((policy, _)) = who {
                        policy.record(claim.charge(), record);
                    }
                    // Before publish: whoever finds the instance LIVE
                    // and locks its bucket finds its first use.
                    let first = (req.names.handle, deadline);
                    counting.first(self, (fid, &claim), first, counts, counted);
                    // Packed only now (unless the caller has): renewals
                    // and denials never need it; packed straight into the
                    // slot from the names when nobody else needs it.
                    let (since, linger) = (now, counting.linger_word(req.linger_ms));
                    let (pool, count) = (p, req.count);
                    if keep_holder && holder.is_none() {
                        *holder = Some(req.names.holder());
                    }
                    let id = match holder {
                        Some(holder) => self.table.publish(
                            claim,
                            &Fields {
                                pool,
                                count,
                                since,
                                linger,
                                deadline,
                                holder,
                            },
                        ),
                        None => self.table.publish(
                            claim,
                            &Fields {
                                pool,
                                count,
                                since,
                                linger,
                                deadline,
                                holder: &req.names,
                            },
                        ),
                    };
                    return Ok(Grant {
                        id: Some(id),
                        kind: GrantKind::New,
                        feature: FeatureId(fid),
                        pool: PoolId(p),
                        count: req.count,
                        deadline: deadline_out(deadline),
                        schedule: deadline_out(deadline),
                        overdraft: in_use > u64::from(self.pools[p as usize].count),
                        previous_deadline: None,
                    });
                }
                Claim::Exists(found) => {
                    self.check_holder(feature, &found, req)?;
                    let renewed =
                        counting.renew(self, (fid, &found), deadline, (req, now), counts, counted);
                    if let Some(result) = renewed {
                        return result;
                    }
                }
                Claim::Retry => {}
                Claim::Full => return Err(Reason::TableFull.into()),
            }
        }
    }

    /// Takes `n` licenses from the first eligible pool that admits them:
    /// (pool, its new in-use count, charge record).
    fn charge(
        &self,
        mut eligible: impl Iterator<Item = u32>,
        who: Option<(&Policy, Who)>,
        n: u32,
    ) -> Result<(u32, u64, u64), Reason> {
        let Some((policy, who)) = who else {
            return eligible
                .find_map(|p| self.pools[p as usize].reserve(n).map(|u| (p, u, 0)))
                .ok_or(Reason::AllInUse);
        };
        // The most telling refusal if no pool admits: MAX, then RESERVE.
        let mut why = Reason::AllInUse;
        for p in eligible {
            match policy.admit(p, &self.pools[p as usize], &who, n) {
                Ok((in_use, record)) => return Ok((p, in_use, record)),
                Err(r) => {
                    why = match (why, r) {
                        (Reason::OverMax, _) | (_, Reason::OverMax) => Reason::OverMax,
                        (Reason::ReservedForOthers { .. }, _) => why,
                        _ => r,
                    }
                }
            }
        }
        Err(why)
    }

    /// The pools that may serve `req` now (in file order), or why none may.
    /// Each pool is judged once: the first 64 into a bit mask, any further
    /// ones (a feature of more than 64 lines) as the caller comes to them.
    /// (Inlined into its one caller, the checkout: a call here cost about
    /// 50 instructions per checkout, its iterator built in memory.)
    #[inline(always)]
    fn eligible<'s>(
        &'s self,
        feature: &'s Feature,
        req: &Request<'_>,
        who: Option<&'s (&'s Policy, Who)>,
        now: Millis,
    ) -> Result<Serving<'s>, Denial> {
        let want = req.version.unwrap_or(0);
        let mut mask = 0u64;
        for (i, &p) in feature.pools.iter().take(64).enumerate() {
            if self.serves(p, want, who, now) {
                mask |= 1 << i;
            }
        }
        let serving = Serving {
            engine: self,
            pools: &feature.pools,
            mask,
            at: 0,
            want,
            who,
            now,
        };
        if mask != 0 || serving.clone().next().is_some() {
            return Ok(serving);
        }
        let pools = &self.pools;
        let dated = |p: &u32| {
            let pool = &pools[*p as usize];
            pool.version >= want && !pool.is_expired(now) && pool.is_started(now) && !pool.retired
        };
        if let Some((policy, w)) = who {
            // Dates and versions allow a pool, the options file does not.
            let refused = feature
                .pools
                .iter()
                .filter(|p| dated(p))
                .map(|&p| policy.access(p, w))
                .find(|a| *a != Access::Allowed);
            match refused {
                Some(Access::Excluded) => return Err(Reason::Excluded.into()),
                Some(_) => return Err(Reason::NotIncluded.into()),
                None => {}
            }
        }
        let of_version = || {
            feature
                .pools
                .iter()
                .map(|&p| &pools[p as usize])
                .filter(|p| p.version >= want && !p.retired)
        };
        let reason = if feature.pools.iter().all(|&p| pools[p as usize].retired) {
            Reason::NoSuchFeature
        } else if of_version().next().is_none() {
            Reason::VersionTooHigh
        } else if of_version().any(|p| !p.is_expired(now) && !p.is_started(now)) {
            Reason::NotYetStarted
        } else {
            Reason::Expired
        };
        Err(reason.into())
    }

    /// Whether pool `p` serves version `want` at `now` to `who`.
    fn serves(&self, p: u32, want: u64, who: Option<&(&Policy, Who)>, now: Millis) -> bool {
        let pool = &self.pools[p as usize];
        pool.version >= want
            && !pool.is_expired(now)
            && pool.is_started(now)
            && !pool.retired
            && who.map_or(true, |(policy, w)| policy.access(p, w) == Access::Allowed)
    }

    /// Only its holder renews a handle's own instance: a checkout naming
    /// the handle with another user or host is `NOT_HOLDER` (a reconnecting
    /// client, same user and host, gets its instance back). Under DUP_GROUP
    /// the names are the key, so whoever matches it shares the instance by
    /// design. One read of the instance's holder, on renewals only.
    fn check_holder(
        &self,
        feature: &Feature,
        found: &Found,
        req: &Request<'_>,
    ) -> Result<(), Denial> {
        if !feature.key.dup().is_by_handle() {
            return Ok(());
        }
        // `None`: released meanwhile, the renewal finds it gone.
        match self.table.held_by(found, req.names.user, req.names.host) {
            Some(false) => Err(Reason::NotHolder.into()),
            Some(true) | None => Ok(()),
        }
    }

    /// Renews a found instance; `None` if it was released before the
    /// renewal landed (the caller starts over).
    fn renew(
        &self,
        fid: u32,
        found: &Found,
        deadline: u64,
        linger: u64,
        now: Millis,
    ) -> Option<Result<Grant, Denial>> {
        let (id, pool_index, count) = (found.id, found.pool, found.count);
        if let Err(d) = self.renewable(found, now) {
            return Some(Err(d));
        }
        match self.table.renew(found, deadline, linger) {
            Renew::Gone => None,
            // A renewal would end a borrow (`borrow.rs`): refused, by the
            // table, from the linger word it reads for its own CAS.
            Renew::Marked => Some(Err(BorrowRefusal::Borrowed.into())),
            Renew::Renewed { old_deadline } => {
                let moved_earlier = deadline != NO_DEADLINE && deadline < old_deadline;
                Some(Ok(Grant {
                    id: Some(id),
                    kind: GrantKind::Renewed,
                    feature: FeatureId(fid),
                    pool: PoolId(pool_index),
                    count,
                    deadline: deadline_out(deadline),
                    schedule: if moved_earlier {
                        deadline_out(deadline)
                    } else {
                        None
                    },
                    overdraft: false,
                    previous_deadline: deadline_out(old_deadline),
                }))
            }
        }
    }

    /// Whether a found instance's pool still serves renewals at `now`.
    fn renewable(&self, found: &Found<'_>, now: Millis) -> Result<(), Denial> {
        let pool = &self.pools[found.pool as usize];
        if pool.is_expired(now) {
            return Err(Reason::Expired.into());
        }
        if pool.retired {
            return Err(Reason::NoSuchFeature.into());
        }
        Ok(())
    }

    /// Finds the live instance a client with these names holds of feature
    /// `fid` (under the feature's duplicate grouping; `names.feature` is
    /// not read).
    pub fn find(&self, fid: FeatureId, names: &Names<&str>) -> Option<InstanceId> {
        self.features.get(fid.0 as usize)?;
        self.find_in(fid.0, names.key_fields())
    }

    fn find_in(&self, fid: u32, fields: KeyFields<'_>) -> Option<InstanceId> {
        let feature = &self.features[fid as usize];
        self.table.find(feature.key.key(fields))
    }

    /// Checks in the instance of `feature` held by the client with these
    /// names, whatever its deadline.
    pub fn checkin(
        &self,
        feature: &str,
        user: &str,
        host: &str,
        display: &str,
        handle: &str,
    ) -> Result<Release, CheckinError> {
        let fid = *self
            .by_name
            .get(feature)
            .ok_or(CheckinError::NoSuchFeature)?;
        let fields = KeyFields {
            user,
            host,
            display,
            handle,
        };
        let key = self.features[fid as usize].key.key(fields);
        // The instance as the lookup found it: released from that slot and
        // word (no second locate by id).
        let Lookup::Live(found) = self.table.lookup(key) else {
            return Err(CheckinError::NotHeld);
        };
        let read = self
            .table
            .release_found(&found, |_| true, |r, charge| self.credit(r, charge))
            .ok_or(CheckinError::NotHeld)?;
        Ok(self.release_out(&read))
    }

    /// The live instance of feature `fid` that `handle` holds, looked up
    /// by handle alone (a check-in whose caller decides first whether the
    /// requester is the holder: see [`Engine::holder`]).
    pub fn find_by_handle(&self, fid: FeatureId, handle: &str) -> Option<InstanceId> {
        let fields = KeyFields {
            user: "",
            host: "",
            display: "",
            handle,
        };
        self.features.get(fid.0 as usize)?;
        self.find_in(fid.0, fields)
    }

    /// The holder's names of live instance `id` (one consistent read of its
    /// slot), or `None` if it is no longer held.
    pub fn holder(&self, id: InstanceId) -> Option<HolderBuf> {
        self.table.read(id).map(|live| live.holder)
    }

    /// Sets a held instance's deadline (`None`: held until check-in), as a
    /// renewal would, without touching its linger (of a DUP_GROUP instance
    /// whose uses the engine counts, [`Engine::checkout_use`] and its
    /// kin set the deadline: do not move it here). Returns false if `id`
    /// is no longer held. A deadline moved earlier needs a timer: arm one
    /// in a [`Lingers`] at the new deadline.
    pub fn reschedule(&self, id: InstanceId, deadline_ms: Option<Millis>) -> bool {
        let d = deadline_ms.map_or(NO_DEADLINE, |d| d.min(MAX_DEADLINE));
        self.table.set_deadline(id, d).is_some()
    }

    /// Whether instance `id` is still held.
    pub fn is_live(&self, id: InstanceId) -> bool {
        self.table.deadline_of(id).is_some()
    }

    /// Puts back an instance that was already out. It is charged to the
    /// first counted pool of the feature serving its version, even beyond
    /// that pool's limit (nothing already out is revoked; the pool refuses
    /// new checkouts until it drains). Returns the new id, or why it cannot
    /// be restored (the feature or a pool of its version is gone, or it is
    /// uncounted / a startup license, which hold nothing).
    pub fn restore(&self, r: &Restore<'_>) -> Result<InstanceId, Reason> {
        let fid = *self
            .by_name
            .get(r.names.feature)
            .ok_or(Reason::NoSuchFeature)?;
        let p = self.features[fid as usize]
            .pools
            .iter()
            .copied()
            .find(|&p| self.restores_into(p, r))
            .ok_or(Reason::VersionTooHigh)?;
        self.restore_charged(fid, r, || {
            self.pools[p as usize].force(r.count);
            Ok(p)
        })
    }

    /// Hints the CPU to load what restoring `r` will read in the table,
    /// without restoring it: a caller restoring many instances calls it a
    /// few instances ahead of [`Engine::restore`] or
    /// [`Engine::restore_within_count`], so that their cache misses overlap
    /// instead of coming one after another. Changes nothing.
    pub fn prefetch_restore(&self, r: &Restore<'_>) {
        if let Some(&fid) = self.by_name.get(r.names.feature) {
            let key = self.restore_key(&self.features[fid as usize], r);
            self.table.prefetch(key);
        }
    }

    /// The key a restored instance gets: its identity from the engine it
    /// comes from if the grouping is unchanged, else computed from the
    /// names.
    fn restore_key(&self, feature: &Feature, r: &Restore<'_>) -> InstanceKey {
        match r.identity {
            Some(i) if i.dup == feature.key.dup() => i.key,
            _ => feature.key.key(r.names.key_fields()),
        }
    }

    /// Like [`Engine::restore`], but never beyond a count: the instance is
    /// charged to the first counted pool serving its version that still has
    /// room (count plus overdraft), in file order. [`Reason::AllInUse`] if
    /// none has. For recovery after a restart, where the license file may
    /// have shrunk while the server was down.
    pub fn restore_within_count(&self, r: &Restore<'_>) -> Result<InstanceId, Reason> {
        let fid = *self
            .by_name
            .get(r.names.feature)
            .ok_or(Reason::NoSuchFeature)?;
        let pools = &self.features[fid as usize].pools;
        if !pools.iter().any(|&p| self.restores_into(p, r)) {
            return Err(Reason::VersionTooHigh);
        }
        self.restore_charged(fid, r, || {
            pools
                .iter()
                .copied()
                .filter(|&p| self.restores_into(p, r))
                .find(|&p| self.pools[p as usize].reserve(r.count).is_some())
                .ok_or(Reason::AllInUse)
        })
    }

    /// Whether pool `p` can take restored instance `r` (counted, not a
    /// startup pool, of its version or later).
    fn restores_into(&self, p: u32, r: &Restore<'_>) -> bool {
        let pool = &self.pools[p as usize];
        pool.counted && !pool.startup && pool.version >= r.version
    }

    /// Claims a slot for restored instance `r` of feature `fid` and, once
    /// it is ours, charges a pool with `charge` (which returns the pool, or
    /// why none takes it: the claim is then abandoned). The options'
    /// counters take it too, whatever their caps (it was out already), and
    /// its charge record is in place before the slot is LIVE.
    fn restore_charged(
        &self,
        fid: u32,
        r: &Restore<'_>,
        charge: impl Fn() -> Result<u32, Reason>,
    ) -> Result<InstanceId, Reason> {
        let key = self.restore_key(&self.features[fid as usize], r);
        let deadline = r.deadline_ms.map_or(NO_DEADLINE, |d| d.min(MAX_DEADLINE));
        let holder = r.names.holder();
        loop {
            if let Lookup::Live(found) = self.table.lookup(key) {
                return Ok(found.id);
            }
            match self.table.claim(key) {
                Claim::Owned(c) => {
                    let p = match charge() {
                        Ok(p) => p,
                        Err(why) => {
                            self.table.abandon(c);
                            return Err(why);
                        }
                    };
                    if let Some(policy) = self.policy.as_deref() {
                        let n = &r.names;
                        let who = policy.who(fid, n.user, n.host, n.display, None);
                        policy.record(c.charge(), policy.force(p, &who, r.count));
                    }
                    if let Some(s) = self.suites.of(p) {
                        self.suites.force(s, &self.pools, &holder);
                    }
                    if let (true, Some(cell)) = (self.shares(fid), c.uses()) {
                        // Not counted (an older instance's entry goes):
                        // see `Engine::restore_uses`.
                        self.first_use(cell, c.gen(), r.names.handle, None, false);
                    }
                    return Ok(self.table.publish(
                        c,
                        &Fields {
                            pool: p,
                            count: r.count,
                            since: r.since_ms,
                            linger: r.linger_ms,
                            deadline,
                            holder: &holder,
                        },
                    ));
                }
                Claim::Exists(found) => return Ok(found.id),
                Claim::Retry => {}
                Claim::Full => return Err(Reason::TableFull),
            }
        }
    }

    /// Checks in instance `id` whatever its deadline (admin removal,
    /// disconnect). `None` if it is no longer live.
    pub fn release(&self, id: InstanceId) -> Option<Release> {
        self.release_if(id, |_| true)
    }

    /// Checks in instance `id` only if it is held until check-in (no linger
    /// deadline): what a server does when the connection that checked it out
    /// closes. A lingering instance survives its connection.
    pub fn release_if_unlingered(&self, id: InstanceId) -> Option<Release> {
        self.release_if(id, |d| d == NO_DEADLINE)
    }

    fn release_if(&self, id: InstanceId, should: impl Fn(u64) -> bool) -> Option<Release> {
        let read = self
            .table
            .release(id, should, |r, charge| self.credit(r, charge))?;
        Some(self.release_out(&read))
    }

    /// Gives a released instance's licenses back (while its slot is
    /// RELEASING): the options' counters, a reserved suite's kept
    /// license, the pool.
    #[inline(always)]
    fn credit(&self, r: &table::LiveRead, charge: Option<&crate::sync::AtomicU64>) {
        if let Some(policy) = self.policy.as_deref() {
            policy.release(r.pool, charge, r.count);
        }
        // A reserved suite may keep one of the licenses for the holder.
        let suites = &self.suites;
        let kept = suites
            .of(r.pool)
            .is_some_and(|s| suites.give(s, &self.pools, &r.holder, r.pool));
        self.pools[r.pool as usize].unreserve(r.count - u32::from(kept))
    }

    /// The [`Release`] of a released instance.
    #[inline(always)]
    fn release_out(&self, read: &table::LiveRead) -> Release {
        let pool = &self.pools[read.pool as usize];
        Release {
            id: read.id,
            feature: FeatureId(pool.feature),
            pool: PoolId(read.pool),
            count: read.count,
            since_ms: read.since,
            deadline: deadline_out(read.deadline),
            borrowed: read.linger & BORROWED != 0,
            holder: read.holder,
        }
    }

    /// Checks in instance `id` if its deadline has passed at `now`.
    pub fn expire(&self, id: InstanceId, now: Millis) -> Expired {
        loop {
            let Some(deadline) = self.table.deadline_of(id) else {
                return Expired::Gone;
            };
            if deadline == NO_DEADLINE {
                return Expired::Gone;
            }
            if deadline > now {
                return Expired::Later(deadline);
            }
            if let Some(r) = self.release_if(id, |d| d != NO_DEADLINE && d <= now) {
                return Expired::Released(r);
            }
        }
    }

    /// A read-only picture of every pool and holder, each pool's holders
    /// in order of first checkout, then ticket. Each holder is read
    /// consistently; the picture as a whole is not one atomic instant. It
    /// copies every holder: a caller that needs only some of them, or
    /// counts, visits them ([`Engine::for_each_holder`]) or reads the
    /// pools alone ([`Engine::pools_snapshot`]).
    pub fn snapshot(&self, now: Millis) -> Snapshot {
        let mut holders: Vec<Vec<HolderSnapshot>> = vec![Vec::new(); self.pools.len()];
        self.for_each_holder(|h| holders[h.pool.0 as usize].push(h.to_snapshot()));
        let mut snapshot = self.pools_snapshot(now);
        for p in snapshot.features.iter_mut().flat_map(|f| &mut f.pools) {
            let mut list = std::mem::take(&mut holders[p.id.0 as usize]);
            list.sort_by_key(|h| (h.since_ms, h.ticket));
            p.holders = list;
        }
        snapshot
    }
}

fn deadline_out(d: u64) -> Option<Millis> {
    (d != NO_DEADLINE).then_some(d)
}

/// A snapshot of the engine for status displays.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// When it was taken.
    pub taken_ms: Millis,
    /// Every feature, in license-file order.
    pub features: Vec<FeatureSnapshot>,
}

/// One feature in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSnapshot {
    /// Feature name.
    pub name: String,
    /// Vendor daemon.
    pub vendor: String,
    /// Its duplicate grouping.
    pub dup_group: DupGroup,
    /// Its pools, in file order.
    pub pools: Vec<PoolSnapshot>,
}

/// One pool in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSnapshot {
    /// The pool.
    pub id: PoolId,
    /// FEATURE or INCREMENT.
    pub kind: PoolKind,
    /// License-file line.
    pub line: u32,
    /// Highest version served.
    pub version: Version,
    /// Expiry.
    pub expiry: Expiry,
    /// Licenses in the file (`None` = uncounted).
    pub count: Option<u32>,
    /// Overdraft allowed beyond `count`.
    pub overdraft_limit: u32,
    /// A startup (`LT=SYS`) pool.
    pub startup: bool,
    /// Licenses out now (the admission counter; shown as `u32::MAX` in the
    /// one case it is more: a REREAD that folded pools of more than that
    /// many licenses into one, while they drain).
    pub in_use: u32,
    /// Of those, beyond `count`.
    pub overdraft: u32,
    /// Whether the pool has expired.
    pub expired: bool,
    /// The PACKAGE this pool is a component of, if any.
    pub package: Option<String>,
    /// Of `in_use`, the licenses of this suite pool that its components'
    /// holders took with their checkouts (one per holder, not listed in
    /// `holders`: see `engine/suite.rs`).
    pub suite_in_use: u32,
    /// Of `in_use`, the licenses of this component pool kept for holders
    /// of its `SUITE_RESERVED` suite (held by no instance, not listed in
    /// `holders`: see `engine/suite.rs`).
    pub suite_kept: u32,
    /// Licenses of this pool that RESERVE rules hold back and nobody uses
    /// (free, but only for those the rules name).
    pub reserved_free: u32,
    /// Who holds them.
    pub holders: Vec<HolderSnapshot>,
}

/// One holder in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderSnapshot {
    /// The instance.
    pub id: InstanceId,
    /// Its identity, for [`Restore::identity`] (the names below may be
    /// shortened: see [`HolderBuf`]).
    pub identity: Identity,
    /// Numeric license handle (lmstat's number after `server/port`).
    pub ticket: u64,
    /// User.
    pub user: String,
    /// Host.
    pub host: String,
    /// Display.
    pub display: String,
    /// Client handle string.
    pub handle: String,
    /// Licenses held.
    pub count: u32,
    /// First checkout.
    pub since_ms: Millis,
    /// Linger of the latest checkout, ms (0 = none).
    pub linger_ms: u64,
    /// Linger deadline; `None` = held until check-in. For a borrowed
    /// instance: the borrow's end.
    pub deadline_ms: Option<Millis>,
    /// Borrowed ([`Engine::borrow`]): held until `deadline_ms` whatever its
    /// connection does. To restore it as borrowed, give
    /// [`Restore::linger_ms`] `linger_ms | BORROWED`.
    pub borrowed: bool,
}

#[cfg(all(test, not(loom)))]
mod growth_tests;
#[cfg(all(test, not(loom)))]
mod package_rules_tests;
#[cfg(all(test, not(loom)))]
mod tests;
