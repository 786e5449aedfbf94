//! Uses of one shared instance under `DUP_GROUP`.
//!
//! With `DUP_GROUP=UH` (say), every checkout by alice on pc1 with another
//! handle is a *use* of one instance: the first takes the license, the
//! others share it. Each use ends on its own (its CHECKIN, its connection
//! closing, its idle TIMEOUT), and the license goes back only when the last
//! one ends, as FlexLM does: otherwise a second program of alice's would
//! run on a license that another user has meanwhile been granted. Uses may
//! sit on different connections, served by different threads, so the count
//! lives with the instance, here. Only grouped features are counted (a
//! handle's instance has one use), and only through
//! [`Engine::checkout_use`], [`Engine::end_uses`] and
//! [`Engine::check_in_use`]: the engine does not know connections, so the
//! caller says which of them are its own uses ([`Use`]).
//!
//! # The rules
//!
//! Each use is *bound* (its latest checkout had no linger: held while its
//! connection lives) or *lingering* (promised a deadline). The instance is
//! held while a bound use lives, and otherwise until the latest deadline
//! any use was promised, even one whose connection has closed: a deadline
//! an `OK` promised is kept. So the instance's deadline in the table is
//! "none" while a bound use lives, else the latest promise; the deadline a
//! journal should record ([`Counted::promised`]) is always the latest
//! promise (after a restart no connection is left, so that is what the
//! instance is held until). A CHECKIN takes back its handle's own promise.
//! An instance whose uses were never counted (one restored from a journal)
//! has one implicit use, and the deadline it had when its first use is
//! counted is a promise (of nobody, `""`).
//!
//! # Where the counts live, and the last-use race
//!
//! Each bucket of the table (16 slots) has a lock over a short list of the
//! uses of its shared instances, one entry per slot at most, keyed by lane
//! and generation ([`BucketUses`]). A table only has these locks when its
//! engine has a grouped feature; otherwise it pays nothing.
//!
//! Every change to an instance's uses happens under its bucket's lock, and
//! so does every step that acts on the count: the renewal of a found
//! instance by a new use (its deadline CAS) and the check-in by its last
//! use. A renewal checks, under the lock, that the instance it found is
//! still live before counting itself; the last use's check-in releases the
//! slot (LIVE -> RELEASING -> FREE) before unlocking. So of a new use on
//! one thread and the last use's end on another, either the new use counts
//! first (and the end finds a use left: `Kept`), or the release completes
//! first (and the renewal finds the instance gone and starts over: a new
//! instance, or a denial). Never an `OK` without a license; the loom models
//! in `loom-tests/tests/uses.rs` check it (they fail with the lock dropped
//! before the last use's check-in).
//!
//! Releases that do not count uses (an expiry at the latest promise, an
//! admin REMOVE) are single CASes on the slot word, as everywhere; a
//! renewal under the lock is a CAS on the same word, so one of them fails
//! and sees the other. A released instance's entry stays in its bucket
//! (at most one per slot) until a counted use of a later instance of the
//! slot replaces it, or a grouped instance is restored there: its
//! generation no longer matches, so nothing reads it. Plain checkouts
//! ([`Engine::checkout_from`]) never touch the entries, so they cost what
//! they did before uses were counted.
//!
//! The lock is per bucket: threads on different buckets share nothing, and
//! nothing waits under a lock (the table steps taken under it are CASes
//! and stores on the slot, never a wait for another thread's claim or
//! release; the caller's `prior` is called under it and must not call the
//! engine's use methods: the lock is not reentrant). Counting a use may allocate (the bucket's list, a promise and
//! its handle); ungrouped features never take these locks, and their
//! checkouts count nothing.

use super::table::{Claimed, Found, Renew, MAX_DEADLINE, NO_DEADLINE};
use super::{deadline_out, Denial, Engine, FeatureId, Grant, GrantKind, InstanceId, PoolId};
use super::{BorrowRefusal, HolderBuf, Reason, Release, Request, Restore};
use crate::clock::Millis;
use crate::sync::{lock, Mutex};

/// What a caller knows of its own use of a shared instance before a
/// checkout: bound (its latest checkout had no linger) or lingering. A
/// checkout by a caller with no use of the instance it finds begins a new
/// use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Held while the caller's connection lives.
    Bound,
    /// Promised a deadline.
    Lingering,
}

/// What a grouped checkout counted: returned beside its [`Grant`] by
/// [`Engine::checkout_use`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// The checkout began a new use (else it renewed the caller's own).
    pub new_use: bool,
    /// The latest deadline any use of the instance is promised: what a
    /// journal records (`None`: no promise, held by bound uses only).
    pub promised: Option<Millis>,
}

/// What [`Engine::end_uses`] / [`Engine::check_in_use`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Other uses go on, or a promise keeps the license out until its
    /// deadline: nothing was checked in.
    Kept {
        /// The instance's deadline moved: arm a timer at this one (in a
        /// [`Lingers`](super::Lingers)).
        schedule: Option<Millis>,
        /// The latest promise left (what a journal records).
        promised: Option<Millis>,
    },
    /// That was the last use and no promise is left. The check-in ran:
    /// its release, or `None` if nothing was checked in (the instance was
    /// no longer held; or, for [`Engine::end_uses`], it has a deadline,
    /// which has passed: its expiry checks it in).
    Last(Option<Release>),
}

/// The uses of one shared instance, and the deadlines they were promised.
/// Read with [`Engine::uses`]; carried across a reread by
/// [`Engine::restore_uses`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uses {
    /// Live uses.
    uses: u32,
    /// Of those, bound ones.
    bound: u32,
    /// Per handle, the latest deadline (Unix ms) an `OK` promised it
    /// (`""`: the deadline the instance had before its uses were counted).
    promises: Vec<(Box<str>, Millis)>,
}

impl Uses {
    /// Live uses.
    pub fn count(&self) -> u32 {
        self.uses
    }

    /// Of those, the bound ones.
    pub fn bound(&self) -> u32 {
        self.bound
    }

    /// The deadlines promised, by handle (`""`: a deadline from before the
    /// uses were counted), including ones already passed.
    pub fn promises(&self) -> impl Iterator<Item = (&str, Millis)> + '_ {
        self.promises.iter().map(|(h, d)| (&**h, *d))
    }

    /// The latest promise still ahead of `now`, forgetting the others.
    fn latest(&mut self, now: Millis) -> Option<Millis> {
        self.promises.retain(|(_, d)| *d > now);
        self.promises.iter().map(|(_, d)| *d).max()
    }

    /// The deadline the instance should have at `now`: none while a bound
    /// use lives, else the latest promise (`now` if uses live whose
    /// promises all passed: due).
    fn engine_deadline(&mut self, now: Millis) -> Option<Millis> {
        if self.bound > 0 {
            return None;
        }
        Some(self.latest(now).unwrap_or(now))
    }

    /// Counts a checkout by `handle`, whose use before it was `prior`,
    /// promised `deadline` (`None`: bound). Returns the instance's deadline
    /// and the latest promise.
    fn begin(
        &mut self,
        handle: &str,
        prior: Option<Use>,
        deadline: Option<Millis>,
        now: Millis,
    ) -> (Option<Millis>, Option<Millis>) {
        match prior {
            None => self.uses += 1,
            Some(Use::Bound) => self.bound = self.bound.saturating_sub(1),
            Some(Use::Lingering) => {}
        }
        if deadline.is_none() {
            self.bound += 1;
        }
        self.promises.retain(|(h, _)| &**h != handle);
        if let Some(d) = deadline {
            self.promises.push((handle.into(), d));
        }
        (self.engine_deadline(now), self.latest(now))
    }

    /// Ends `n` uses, `bound` of them bound.
    fn end(&mut self, n: u32, bound: u32) {
        self.uses = self.uses.saturating_sub(n);
        self.bound = self.bound.saturating_sub(bound);
    }

    /// Adds `other`'s uses and promises (two instances a reread merged).
    fn merge(&mut self, other: &Uses) {
        self.uses = self.uses.saturating_add(other.uses);
        self.bound = self.bound.saturating_add(other.bound);
        self.promises.extend(other.promises.iter().cloned());
    }
}

/// The uses of the shared instances of one bucket of the table, behind
/// the bucket's lock: at most one entry per lane, for the generation that
/// wrote it.
#[derive(Debug, Default)]
pub(crate) struct BucketUses(Vec<Entry>);

#[derive(Debug)]
struct Entry {
    lane: u8,
    gen: u32,
    uses: Uses,
}

impl BucketUses {
    /// The uses of the instance of generation `gen` in `lane`.
    fn get(&mut self, lane: u8, gen: u32) -> Option<&mut Uses> {
        self.0
            .iter_mut()
            .find(|e| e.lane == lane && e.gen == gen)
            .map(|e| &mut e.uses)
    }

    /// The entry of `lane` for generation `gen`, made with `make` if there
    /// is none (replacing one of an older generation: call only when `gen`
    /// is the slot's live or claimed generation).
    fn entry(&mut self, lane: u8, gen: u32, make: impl FnOnce() -> Uses) -> &mut Uses {
        match self.0.iter().position(|e| e.lane == lane) {
            Some(i) if self.0[i].gen == gen => &mut self.0[i].uses,
            Some(i) => {
                self.0[i] = Entry {
                    lane,
                    gen,
                    uses: make(),
                };
                &mut self.0[i].uses
            }
            None => {
                self.0.push(Entry {
                    lane,
                    gen,
                    uses: make(),
                });
                let last = self.0.len() - 1;
                &mut self.0[last].uses
            }
        }
    }

    /// Forgets the entry of `lane` (any generation).
    fn clear(&mut self, lane: u8) {
        self.0.retain(|e| e.lane != lane);
    }

    /// Forgets the entry of `lane` for generation `gen`.
    fn remove(&mut self, lane: u8, gen: u32) {
        self.0.retain(|e| !(e.lane == lane && e.gen == gen));
    }
}

fn deadline_in(d: Option<Millis>) -> u64 {
    d.map_or(NO_DEADLINE, |d| d.min(MAX_DEADLINE))
}

/// How a checkout (`Engine::checkout_as`) counts uses: [`NoUses`] (not at
/// all) or [`ByPrior`] ([`Engine::checkout_use`]). Generic so that the
/// plain checkout is compiled without a trace of counting: its `counts` is
/// the constant `false` and its `Counted` is `()`, so its renewals take no
/// extra branch and it returns a bare [`Grant`], as before uses were
/// counted.
pub(super) trait Counting {
    /// What the checkout writes beside its grant (`()`: nothing).
    type Counted;

    /// Whether a checkout of feature `fid` counts its use.
    fn counts(&self, engine: &Engine, fid: u32) -> bool;

    /// Renews found instance `found` of feature `fid` (its slot deadline
    /// `deadline`) for a request at `now`, as a counted use if `counts`
    /// (written to `counted`); `None` if it was released before the renewal
    /// landed (the caller starts over).
    fn renew(
        &self,
        engine: &Engine,
        found: (u32, &Found<'_>),
        deadline: u64,
        at: (&Request<'_>, Millis),
        counts: bool,
        counted: &mut Self::Counted,
    ) -> Option<Result<Grant, Denial>>;

    /// Writes the uses entry of a new instance of feature `fid` in slot
    /// `claim` (before its publish), by `handle` with slot deadline
    /// `deadline`, and what was counted to `counted`.
    fn first(
        &self,
        engine: &Engine,
        claim: (u32, &Claimed<'_>),
        by: (&str, u64),
        counts: bool,
        counted: &mut Self::Counted,
    );

    /// Whether pool `p` may serve the checkout (beside the ordinary
    /// rules): every pool but for a borrow (`borrow.rs`).
    #[inline(always)]
    fn admits(&self, _p: u32) -> bool {
        true
    }

    /// The linger word a new instance is published with, for a request
    /// lingering `linger_ms`: that, but for a borrow (its mark added).
    #[inline(always)]
    fn linger_word(&self, linger_ms: u64) -> u64 {
        linger_ms
    }
}

/// Counts no use: [`Engine::checkout_from`].
#[derive(Debug)]
pub(super) struct NoUses;

impl Counting for NoUses {
    type Counted = ();

    #[inline(always)]
    fn counts(&self, _: &Engine, _: u32) -> bool {
        false
    }

    #[inline(always)]
    fn renew(
        &self,
        engine: &Engine,
        (fid, found): (u32, &Found<'_>),
        deadline: u64,
        (req, now): (&Request<'_>, Millis),
        _: bool,
        (): &mut (),
    ) -> Option<Result<Grant, Denial>> {
        engine.renew(fid, found, deadline, req.linger_ms, now)
    }

    /// Writes nothing, not even to forget an older instance's entry in
    /// the slot's lane: nothing reads an entry of another generation, and
    /// the lane's next counted instance (or a restore) replaces it. A check
    /// here (does the table keep uses, is the feature grouped) cost every
    /// plain checkout of a new instance 9 instructions.
    #[inline(always)]
    fn first(&self, _: &Engine, _: (u32, &Claimed<'_>), _: (&str, u64), _: bool, (): &mut ()) {}
}

/// Counts a grouped feature's use, asking `.0` for the caller's prior use
/// of the instance found: [`Engine::checkout_use`].
pub(super) struct ByPrior<P>(pub(super) P);

impl<P: Fn(InstanceId) -> Option<Use>> Counting for ByPrior<P> {
    type Counted = Option<Counted>;

    #[inline(always)]
    fn counts(&self, engine: &Engine, fid: u32) -> bool {
        engine.shares(fid)
    }

    #[inline(always)]
    fn renew(
        &self,
        engine: &Engine,
        (fid, found): (u32, &Found<'_>),
        deadline: u64,
        (req, now): (&Request<'_>, Millis),
        counts: bool,
        counted: &mut Option<Counted>,
    ) -> Option<Result<Grant, Denial>> {
        if counts {
            let what = (req.names.handle, deadline, req.linger_ms);
            return engine.renew_use(fid, found, what, now, &self.0, counted);
        }
        engine.renew(fid, found, deadline, req.linger_ms, now)
    }

    #[inline(always)]
    fn first(
        &self,
        engine: &Engine,
        (_, claim): (u32, &Claimed<'_>),
        (handle, deadline): (&str, u64),
        counts: bool,
        counted: &mut Option<Counted>,
    ) {
        if !counts {
            return;
        }
        let promised = deadline_out(deadline);
        if let Some(cell) = claim.uses() {
            engine.first_use(cell, claim.gen(), handle, promised, true);
        }
        *counted = Some(Counted {
            new_use: true,
            promised,
        });
    }
}

impl Engine {
    /// Whether feature `fid` shares instances between uses (DUP_GROUP).
    pub(super) fn shares(&self, fid: u32) -> bool {
        !self.features[fid as usize].key.dup().is_by_handle()
    }

    /// [`Engine::checkout_from`] that counts uses: for a DUP_GROUP feature,
    /// the checkout is a use of the shared instance, and `prior` says, for
    /// the instance it finds, the caller's own use of it by this handle
    /// before (`None`: a new use). Returns the grant and, for a grouped
    /// feature, what was counted (`Some`; `None` for other features). The
    /// grant's `deadline` is what this use was promised (the reply); its
    /// `schedule` is the instance's deadline now (arm a timer there if it
    /// is `Some`); [`Counted::promised`] is what a journal records. See the
    /// module docs of `engine/uses.rs`. For other features this is
    /// [`Engine::checkout_from`] (`prior` is not called).
    ///
    /// A caller that counts uses must end each with [`Engine::end_uses`]
    /// or [`Engine::check_in_use`], and renew them through this call only.
    /// `prior` is called under the bucket's lock: it must not call the
    /// engine's use methods (the lock is not reentrant).
    pub fn checkout_use(
        &self,
        req: &Request<'_>,
        ip: Option<std::net::IpAddr>,
        now: Millis,
        prior: impl Fn(InstanceId) -> Option<Use>,
    ) -> Result<(Grant, Option<Counted>), Denial> {
        req.validate()?;
        let fid = *self
            .by_name
            .get(req.names.feature)
            .ok_or(Reason::NoSuchFeature)?;
        let mut counted = None;
        let grant = self.checkout_as(fid, req, None, ip, now, &ByPrior(prior), &mut counted)?;
        Ok((grant, counted))
    }

    /// [`Engine::checkout_use`] of a feature the caller has looked up
    /// (`feature`, from this engine's [`Engine::feature_id`] of
    /// `req.names.feature`, which is not read again), so a front end that
    /// needs the id itself hashes the name once. `holder` is the holder's
    /// text if the caller has built it ([`Names::holder`](super::Names::holder)),
    /// which a new instance then keeps; if it is `None` and the checkout
    /// makes a new instance, the text is built and left there, for the
    /// caller's log. A `feature` this engine does not have is denied
    /// [`Reason::NoSuchFeature`] (after [`Request::validate`]).
    pub fn checkout_use_of(
        &self,
        feature: FeatureId,
        req: &Request<'_>,
        holder: &mut Option<HolderBuf>,
        ip: Option<std::net::IpAddr>,
        now: Millis,
        prior: impl Fn(InstanceId) -> Option<Use>,
    ) -> Result<(Grant, Option<Counted>), Denial> {
        req.validate()?;
        if feature.0 as usize >= self.features.len() {
            return Err(Reason::NoSuchFeature.into());
        }
        let mut counted = None;
        let by = ByPrior(prior);
        let grant = self.checkout_as(feature.0, req, Some(holder), ip, now, &by, &mut counted)?;
        Ok((grant, counted))
    }

    /// Renews found instance `found` of shared feature `fid` as a use by
    /// `handle` promised `deadline` (the slot's deadline field for the
    /// request), under its bucket's lock, writing what it counted to
    /// `counted`; `None` if it was released before (the caller starts
    /// over).
    pub(super) fn renew_use(
        &self,
        fid: u32,
        found: &Found<'_>,
        (handle, deadline, linger): (&str, u64, u64),
        now: Millis,
        prior: &impl Fn(InstanceId) -> Option<Use>,
        counted: &mut Option<Counted>,
    ) -> Option<Result<Grant, Denial>> {
        if let Err(d) = self.renewable(found, now) {
            return Some(Err(d));
        }
        let Some((cell, lane)) = found.uses() else {
            // A table without uses: an engine of no grouped feature.
            return self.renew(fid, found, deadline, linger, now);
        };
        let id = found.id;
        let mut bucket = lock(cell);
        // Under the lock: a last use cannot end and check it in between
        // this check and the count (module docs). Not live: start over.
        let previous = self.table.deadline_of(id)?;
        let prior = prior(id);
        // A borrowed instance is not renewed (`borrow.rs`): asked before
        // the use is counted (the mark never changes while it is live).
        if self.table.marked(found) {
            return Some(Err(BorrowRefusal::Borrowed.into()));
        }
        let uses = bucket.entry(lane, id.gen, || {
            // Never counted: its deadline is a promise.
            let mut u = Uses::default();
            if previous != NO_DEADLINE {
                u.promises.push(("".into(), previous));
            }
            u
        });
        let promise = deadline_out(deadline);
        let (engine, promised) = uses.begin(handle, prior, promise, now);
        match self.table.renew(found, deadline_in(engine), linger) {
            // Released meanwhile by an expiry or a removal (a CAS that won
            // over ours): its entry goes, the caller starts over.
            Renew::Gone => {
                bucket.remove(lane, id.gen);
                None
            }
            // Not reached: the mark was asked for above, under the lock.
            Renew::Marked => Some(Err(BorrowRefusal::Borrowed.into())),
            Renew::Renewed { old_deadline } => {
                let pool = PoolId(found.pool);
                *counted = Some(Counted {
                    new_use: prior.is_none(),
                    promised,
                });
                Some(Ok(Grant {
                    id: Some(id),
                    kind: GrantKind::Renewed,
                    feature: FeatureId(fid),
                    pool,
                    count: found.count,
                    deadline: promise,
                    schedule: engine,
                    overdraft: false,
                    previous_deadline: deadline_out(old_deadline),
                }))
            }
        }
    }

    /// Writes the entry of a new shared instance about to be published in
    /// slot `(cell, lane)` of generation `gen`: its first use, by `handle`
    /// promised `deadline`, if `counting`; else no entry (an older one of
    /// the slot is forgotten). Called under no lock; takes the bucket's.
    pub(super) fn first_use(
        &self,
        (cell, lane): (&Mutex<BucketUses>, u8),
        gen: u32,
        handle: &str,
        deadline: Option<Millis>,
        counting: bool,
    ) {
        let mut bucket = lock(cell);
        if !counting {
            bucket.clear(lane);
            return;
        }
        let uses = bucket.entry(lane, gen, Uses::default);
        *uses = Uses::default();
        uses.begin(handle, None, deadline, 0);
    }

    /// Ends `n` uses of shared instance `id`, `bound` of them bound (a
    /// connection closed, or went idle past TIMEOUT). If none is left and
    /// no promise is ahead of `now`, checks it in if it is held until
    /// check-in (else its deadline has passed, and its expiry does); else
    /// it is held on, its deadline the latest promise once no bound use is
    /// left. Promises stay: that is what a linger is. An instance whose
    /// uses were never counted has one: it is checked in if it has no
    /// deadline.
    pub fn end_uses(&self, id: InstanceId, n: u32, bound: u32, now: Millis) -> Ended {
        let Some((cell, lane)) = self.table.uses_of(id) else {
            return Ended::Last(self.release_if_unlingered(id));
        };
        let mut bucket = lock(cell);
        let Some(uses) = bucket.get(lane, id.gen) else {
            return Ended::Last(self.release_if_unlingered(id));
        };
        uses.end(n, bound);
        let promised = uses.latest(now);
        if uses.uses == 0 && promised.is_none() {
            bucket.remove(lane, id.gen);
            // Under the lock: a new use either counted itself before (and
            // then this was not the last) or finds it gone.
            return Ended::Last(self.release_if_unlingered(id));
        }
        let mut schedule = None;
        if uses.bound == 0 && bound > 0 {
            // No bound use left: the latest promise holds it.
            let d = uses.engine_deadline(now);
            if self.table.set_deadline(id, deadline_in(d)).is_some() {
                schedule = d;
            }
        }
        Ended::Kept { schedule, promised }
    }

    /// A CHECKIN by `handle` (its use `bound` or not) of shared instance
    /// `id`: ends its use and takes back the deadline it was promised; if
    /// no use and no promise is left, checks it in (whatever its deadline),
    /// else the instance's deadline becomes what the other uses leave. An
    /// instance whose uses were never counted has one: it is checked in.
    pub fn check_in_use(&self, id: InstanceId, handle: &str, bound: bool, now: Millis) -> Ended {
        let Some((cell, lane)) = self.table.uses_of(id) else {
            return Ended::Last(self.release(id));
        };
        let mut bucket = lock(cell);
        let Some(uses) = bucket.get(lane, id.gen) else {
            return Ended::Last(self.release(id));
        };
        uses.end(1, u32::from(bound));
        uses.promises.retain(|(h, _)| &**h != handle);
        let promised = uses.latest(now);
        if uses.uses == 0 && promised.is_none() {
            bucket.remove(lane, id.gen);
            return Ended::Last(self.release(id));
        }
        // Another use's promise, or none while a bound use lives, replaces
        // this handle's.
        let d = uses.engine_deadline(now);
        let schedule = match self.table.set_deadline(id, deadline_in(d)) {
            Some(_) => d,
            None => None,
        };
        Ended::Kept { schedule, promised }
    }

    /// The counted uses of shared instance `id` (`None`: not counted, or
    /// not held).
    pub fn uses(&self, id: InstanceId) -> Option<Uses> {
        let (cell, lane) = self.table.uses_of(id)?;
        let mut bucket = lock(cell);
        self.table.deadline_of(id)?;
        bucket.get(lane, id.gen).cloned()
    }

    /// [`Engine::restore`], carrying the instance's counted uses from the
    /// engine it comes from (a reread: read them there with
    /// [`Engine::uses`]). Instances that the new grouping merges into one
    /// add up their uses and promises; uses of a feature no longer grouped
    /// are dropped (a handle's instance has one use).
    pub fn restore_uses(&self, r: &Restore<'_>, uses: Option<&Uses>) -> Result<InstanceId, Reason> {
        let id = self.restore(r)?;
        let Some(from) = uses else {
            return Ok(id);
        };
        let fid = *self
            .by_name
            .get(r.names.feature)
            .ok_or(Reason::NoSuchFeature)?;
        if !self.shares(fid) {
            return Ok(id);
        }
        if let Some((cell, lane)) = self.table.uses_of(id) {
            let mut bucket = lock(cell);
            if self.table.deadline_of(id).is_some() {
                bucket.entry(lane, id.gen, Uses::default).merge(from);
            }
        }
        Ok(id)
    }
}

#[cfg(all(test, not(loom)))]
#[path = "uses_tests.rs"]
mod tests;
