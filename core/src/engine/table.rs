//! The checkout table: one slot per held license instance, found by key.
//!
//! # Shape
//!
//! The table is made of *levels*; a level is a fixed array of buckets of
//! [`SLOTS_PER_BUCKET`] slots (`level.rs`). Level 0 is sized when the
//! engine is built, for the licenses the counted pools can grant but at
//! most [`INITIAL_INSTANCES`] (twice that in slots, so it is never more
//! than half full for that many); each further level has twice the slots
//! of the one before. A level is allocated and published the first time a
//! claim finds no room in any level there is (below), and is then never
//! moved, resized or freed while the table lives. So an instance's global
//! slot index (level offset + index in its level), which [`InstanceId`]s,
//! timers, journals and the options' charge records use, stays valid for
//! the instance's life, and readers never wait for a resize.
//!
//! Within a level, a key (a 128-bit keyed hash of the feature and the
//! duplicate-grouping fields, see `key.rs`) lives in its *primary* bucket
//! (chosen by the hash's low half) or its *secondary* one (the high half):
//! a new key goes to the primary unless that is crowded (12 of 16 slots in
//! use) and the secondary is emptier, so the level keeps the balance of
//! two-choice hashing while most keys sit in their primary. Each bucket
//! counts the keys that spilled out of it ([`level::Bucket::spilled`]);
//! while that count is 0, a key is looked for in its primary bucket alone,
//! so a lookup touches one cache line per level. Buckets are the table's
//! shards: threads working on different keys touch different cache lines
//! and share no lock.
//!
//! # Levels
//!
//! Level 0 is inline in the table; level `k >= 1` is a pointer in a fixed
//! array, null until published, and `levels` counts the published ones.
//! A new key is claimed in the newest level that has room in one of its
//! two buckets (the newest first). When none has, the claimer allocates
//! level `n` (`n` the count it saw), CASes it into the null pointer (the
//! loser of that race frees its own allocation, never published), then
//! CASes the count from `n` to `n + 1` (SeqCst; anyone who finds the
//! pointer set does the same, so a stalled grower stalls nobody), and
//! claims again. A pointer is stored before the count passes it, so a
//! thread that loaded the count (acquire) can read every level below it.
//! Lookups, renewals and check-ins by key look in every published level,
//! newest first; check-ins by id go straight to the id's level.
//!
//! Slot indices fit the 32 bits of an id: with level 0 of `2^s` slots,
//! there are at most `32 - s` levels (`2^32 - 2^s` slots). A claim that
//! finds no room when the last level is out, or whose level cannot be
//! allocated (the allocation is fallible), gets [`Claim::Full`]: the
//! engine's `TABLE_FULL`. Nothing aborts for size.
//!
//! # Memory
//!
//! Memory follows what is held, not what is licensed: a 4,294,967,295-seat
//! pool starts with the same level 0 as a 4,096-seat one (about 1.4 MB).
//! A level is published only when a claim found both buckets of its key
//! full in every level, which at two-choice loads happens near the top of
//! the newest level; levels double, so the table holds at most about four
//! slots per instance out at its busiest. What the process pays for is
//! less: a level's arrays come zeroed from the allocator (every field's
//! initial value is 0) and are not written when published, and a level's
//! cold data (start time and holder names, three quarters of a slot's
//! bytes) is laid out lane by lane, a claim taking the first free lane of
//! its bucket, so the lightly used newest level has touched, and so has in
//! its RSS, only its hot buckets and the first lanes' cold data (at 1 M
//! held: 1 M slots in the newest level, 8 % used). It is a high-water mark: levels
//! are never freed while the engine lives, even when their instances are
//! all checked in (a slot in any level is reused by later claims; a REREAD
//! builds a new engine, sized afresh).
//!
//! # The slot word
//!
//! Each slot's life is one `AtomicU64`, [`Word`]: a state, a generation and
//! the linger deadline. Every transition is a single CAS or store on it:
//!
//! ```text
//!  FREE(g) -CAS-> RESERVED(g) -store-> CLAIMING(g) -store-> LIVE(g, d) <-CAS-> LIVE(g, d')  (renew)
//!    ^                                    |                     |
//!    +----- store FREE(g+1) (back off) ---+                     | CAS (check-in / expiry / removal)
//!    +----- store FREE(g+1) <-- pool credited <-- RELEASING(g) <+
//! ```
//!
//! The owner of a RESERVED slot writes its key with relaxed stores and
//! publishes it with the CLAIMING store and its fingerprint (below); once
//! the claim is validated it writes the rest (pool, count, start, linger,
//! holder) and publishes them with the LIVE store (release). A claim that
//! backs off or finds no license never writes the holder. Nobody else
//! writes those fields,
//! and a slot only gets a new owner after it went FREE with the generation
//! bumped, so a reader that saw LIVE(g) and still sees generation g
//! afterwards read fields of that one instance (a seqlock, the generation as
//! its counter).
//!
//! # One instance per key
//!
//! A new key is claimed *before* the pool is charged: load the level count
//! (SeqCst) and reserve a slot in a level it names (growing the table if
//! none has room), (in the secondary bucket: raise the primary's spill
//! count, SeqCst,) write the key, store CLAIMING, set the slot's
//! fingerprint byte with a SeqCst XOR, then **re-read the level count with
//! a SeqCst load** and re-scan, in every level it names, with SeqCst loads
//! the fingerprints of the key's primary bucket, and of its secondary one
//! if the claim is there or the primary's spill count is not 0, and look at
//! the matching slots. All SeqCst operations fall in one total order S
//! that agrees with each thread's program order, and a SeqCst load cannot
//! read a value older than a SeqCst write before it in S. Of two claimers
//! of one key, the one whose fingerprint XOR is later in S (call it L, the
//! other E) sees E's fingerprint:
//!
//! - same level, same bucket: L's re-scan loads follow its XOR, which
//!   follows E's XOR, in S;
//! - same level, one in each bucket: the spilled claimer always scans the
//!   primary bucket, and E's spill count was raised before E's XOR, so if
//!   E spilled, L's SeqCst load of it sees it and L scans the secondary;
//! - different levels: L's re-scan covers E's level. If E's level is lower,
//!   L's count names it (levels are never removed). If it is higher, E
//!   claimed in a level whose publication P (the count CAS past it) is
//!   before, in S, E's own SeqCst count load that named it (or is E's own
//!   CAS), so P < E's XOR < L's XOR < L's re-read of the count in S: the
//!   re-read returns P's value or a later one, and L scans E's level. (Had
//!   L used the count it loaded before its XOR, it could miss a level
//!   published in between, claimed in, and scanned by E before L's XOR:
//!   two instances. The loom model `twins_across_a_growth` finds exactly
//!   that without the re-read.)
//!
//! (Under loom, which models SeqCst accesses as AcqRel, a SeqCst fence
//! follows the XOR: `sync::seqcst_handshake`.) The fingerprint is set last,
//! so whoever sees it (acquire) sees the key and CLAIMING. With slots
//! ordered by their global index:
//!
//! - another slot is LIVE with my key: back off and renew that one;
//! - another slot is CLAIMING my key at a lower index: back off and retry
//!   (the retry waits for that claim to end);
//! - another slot is CLAIMING my key at a higher index, or RELEASING it:
//!   wait until that ends, then look again.
//!
//! A claimer only waits for a higher index or a release (which waits for
//! nothing), so waits cannot form a cycle; if both see each other the higher
//! backs off; if only one sees the other, that one backs off or waits for the
//! other's outcome. Never two LIVE slots with one key. Only the surviving
//! claimer charges the pool, so a same-key racer is never denied for want of
//! the license its twin is taking.
//!
//! A release keeps the key visible (RELEASING) until the pool is credited,
//! so a checkout of the same key never sees "no instance, and no license
//! free" in between: it waits for the credit, then takes the license anew.
//! A lookup that happens after a publish (acquire) sees the count that
//! named the instance's level, loaded before the claim, so it looks there.
//!
//! # Fingerprints
//!
//! Each bucket keeps a byte per slot ([`level::Bucket::tags`]): 7 bits of
//! the key with the high bit set, from just after the CLAIMING store until
//! after the pool is credited on release, else 0. A scan reads two words
//! per bucket instead of sixteen slot words and compares all lanes at once;
//! only lanes whose byte matches are looked at (a false match costs one
//! slot check). The release clear is a release XOR: a scanner that no
//! longer sees the byte also sees the pool credit that preceded it.
//!
//! The waits are the one place a thread can spin: for a few dozen
//! instructions of another thread working on the *same key*. Different keys
//! never wait for each other.
//!
//! Hot path: no lock, no syscall, and no allocation except the publication
//! of a level, at most `32 - s` times in an engine's life (by the claim
//! that found the table full; other threads go on meanwhile).

mod level;

use std::ptr;

use super::holder::{HolderBuf, StoreHolder};
use super::key::InstanceKey;
use super::uses::BucketUses;
use crate::sync::{
    fence, seqcst_handshake, spin_wait, AtomicPtr, AtomicU64, AtomicUsize, Mutex, Ordering,
};
pub(crate) use level::SLOTS_PER_BUCKET;
use level::{tag_of, Level, BYTE_HI};

/// Level 0 is sized for the licenses the counted pools can grant, but for
/// no more instances than this (it then holds twice as many slots, so it
/// never fills before this many are out): about 1.4 MB.
#[cfg(not(loom))]
pub(crate) const INITIAL_INSTANCES: usize = 4096;
/// Level 0 is sized for the licenses the counted pools can grant, but for
/// no more instances than this (under loom: what the engine models'
/// one-to-three-license pools need, so their tables are as before).
#[cfg(loom)]
pub(crate) const INITIAL_INSTANCES: usize = 4;

/// Most levels a table can have (the bound for the smallest level 0, of
/// one bucket; larger ones allow fewer: see "Levels").
#[cfg(not(loom))]
const MAX_LEVELS: usize = 32 - SLOTS_PER_BUCKET.trailing_zeros() as usize;
/// Most levels a table can have (few under loom, so the models stay small).
#[cfg(loom)]
const MAX_LEVELS: usize = 3;

/// Bits of a global slot index (an id's `slot` field).
const INDEX_BITS: u32 = u32::BITS;

/// Most slots level 0 can have: half of all slot indices, so that there
/// is room for one level more.
const MAX_FIRST_SLOTS: usize = 1 << (INDEX_BITS - 1);

/// Most instances a table can hold whose level 0 has room for
/// [`INITIAL_INSTANCES`] (every table of pools that can grant that many):
/// every slot of its levels, `2^32 - 2 * INITIAL_INSTANCES`.
pub(crate) const MAX_INSTANCES: u64 = (1 << INDEX_BITS) - 2 * INITIAL_INSTANCES as u64;

/// Deadline field value meaning "no deadline: held until check-in".
pub(crate) const NO_DEADLINE: u64 = (1 << DEADLINE_BITS) - 1;

const STATE_BITS: u32 = 3;
const GEN_BITS: u32 = 19;
const DEADLINE_BITS: u32 = 64 - STATE_BITS - GEN_BITS;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;

/// The largest deadline a slot can hold, in Unix ms: 2^42 - 2 ms, which is
/// in the year 2109.
pub(crate) const MAX_DEADLINE: u64 = NO_DEADLINE - 1;

/// A bit of the linger word that marks an instance for good: written at
/// publish, never cleared by a renewal, which refuses such an instance
/// ([`Renew::Marked`]). The engine's borrow mark (`BORROWED`); far above
/// any linger.
pub(crate) const LINGER_MARK: u64 = 1 << 63;

// Unix ms deadlines must fit until at least 2100-01-01.
const _: () = assert!(MAX_DEADLINE > 4_102_444_800_000);

/// What a slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Empty, claimable.
    Free = 0,
    /// Claimed by one thread, fields being written; not yet visible by key.
    Reserved = 1,
    /// Key written (visible once the fingerprint is set); the owner is
    /// checking for a duplicate. The other fields are written at publish.
    Claiming = 2,
    /// A held license instance.
    Live = 3,
    /// Being checked in: the key is still visible until the pool is credited.
    Releasing = 4,
}

/// A decoded slot word: state, generation, deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(u64);

impl Word {
    pub(crate) fn new(state: State, gen: u32, deadline: u64) -> Word {
        debug_assert!(deadline <= NO_DEADLINE);
        Word(
            (deadline << (STATE_BITS + GEN_BITS))
                | ((u64::from(gen) & GEN_MASK) << STATE_BITS)
                | state as u64,
        )
    }
    /// The state (tests; the protocol tests bits: [`Word::is`],
    /// [`Word::is_live`]).
    #[cfg(test)]
    pub(crate) fn state(self) -> State {
        match self.0 & STATE_MASK {
            0 => State::Free,
            1 => State::Reserved,
            2 => State::Claiming,
            3 => State::Live,
            _ => State::Releasing,
        }
    }
    pub(crate) fn gen(self) -> u32 {
        ((self.0 >> STATE_BITS) & GEN_MASK) as u32
    }
    pub(crate) fn deadline(self) -> u64 {
        self.0 >> (STATE_BITS + GEN_BITS)
    }
    /// Whether the word is LIVE in generation `gen`: one compare of its
    /// state and generation bits (a `gen` beyond [`GEN_BITS`], from an id
    /// a caller made up, matches no word).
    #[inline(always)]
    pub(crate) fn is_live(self, gen: u32) -> bool {
        self.0 & (STATE_MASK | (GEN_MASK << STATE_BITS))
            == (u64::from(gen) << STATE_BITS) | State::Live as u64
    }
    /// Whether the word is in state `s` (its state bits alone).
    #[inline(always)]
    pub(crate) fn is(self, s: State) -> bool {
        self.0 & STATE_MASK == s as u64
    }
    fn next_gen(self) -> u32 {
        ((u64::from(self.gen()) + 1) & GEN_MASK) as u32
    }
}

/// Where an instance lives: slot index and the generation it was claimed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstanceId {
    pub(crate) slot: u32,
    pub(crate) gen: u32,
}

impl InstanceId {
    /// A number that names this instance while it lives and is never shared
    /// with another live instance: lmstat's "license handle".
    pub fn ticket(self) -> u64 {
        u64::from(self.slot) + 1
    }

    /// Packs the id into a `u64` (for timer payloads and journals).
    pub fn to_bits(self) -> u64 {
        (u64::from(self.gen) << 32) | u64::from(self.slot)
    }

    /// Inverse of [`InstanceId::to_bits`].
    pub fn from_bits(bits: u64) -> InstanceId {
        InstanceId {
            slot: bits as u32,
            gen: (bits >> 32) as u32,
        }
    }
}

/// A slot of a level: the level and the slot's index in it. Compared by
/// identity; printed as the global index.
#[derive(Clone, Copy)]
pub(crate) struct At<'t> {
    level: &'t Level,
    local: usize,
}

impl At<'_> {
    /// The global index.
    #[inline]
    fn index(self) -> usize {
        self.level.offset + self.local
    }
}

impl PartialEq for At<'_> {
    fn eq(&self, other: &Self) -> bool {
        ptr::eq(self.level, other.level) && self.local == other.local
    }
}

impl Eq for At<'_> {}

impl std::fmt::Debug for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "slot {}", self.index())
    }
}

/// A slot claimed for a new key, not yet LIVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a claim must be published or abandoned"]
pub(crate) struct Claimed<'t> {
    at: At<'t>,
    gen: u32,
    tag: u8,
    /// The primary bucket (first local slot index) when the claim spilled
    /// into the secondary one: its spill count was raised.
    spilled_from: Option<usize>,
}

impl<'t> Claimed<'t> {
    /// The generation the slot is claimed in (the id's, once published).
    pub(crate) fn gen(&self) -> u32 {
        self.gen
    }

    /// The DUP_GROUP uses of the claimed slot's bucket and its lane there
    /// (`None` in a table built without them): the claimer writes its
    /// instance's entry before [`Table::publish`].
    pub(crate) fn uses(&self) -> Option<(&'t Mutex<BucketUses>, u8)> {
        self.at.level.uses(self.at.local)
    }

    /// The claimed slot's charge record (options-file counters, see
    /// `policy.rs`), written before [`Table::publish`] publishes it;
    /// `None` in a table built without charge records.
    pub(crate) fn charge(&self) -> Option<&'t AtomicU64> {
        self.at.level.charge(self.at.local)
    }
}

/// What a claimed slot becomes when published. `H`: where the holder's
/// text comes from (a packed [`HolderBuf`], or the names themselves, packed
/// straight into the slot: [`StoreHolder`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a, H: StoreHolder = HolderBuf> {
    /// The pool charged.
    pub(crate) pool: u32,
    /// Licenses charged.
    pub(crate) count: u32,
    /// Unix ms of the first checkout.
    pub(crate) since: u64,
    /// Linger of the checkout, ms.
    pub(crate) linger: u64,
    /// Deadline field: Unix ms, or [`NO_DEADLINE`].
    pub(crate) deadline: u64,
    /// Who holds it.
    pub(crate) holder: &'a H,
}

/// A LIVE instance found by key, with what a renewal needs: where it is,
/// the word it was seen with (the renewal's first CAS expects it) and its
/// grant, read in the same seqlock window as the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found<'t> {
    at: At<'t>,
    pub(crate) id: InstanceId,
    word: Word,
    /// The pool charged.
    pub(crate) pool: u32,
    /// Licenses held.
    pub(crate) count: u32,
}

impl<'t> Found<'t> {
    /// The DUP_GROUP uses of the instance's bucket and its lane there
    /// (`None` in a table built without them).
    pub(crate) fn uses(&self) -> Option<(&'t Mutex<BucketUses>, u8)> {
        self.at.level.uses(self.at.local)
    }

    fn new(at: At<'t>, word: Word, grant: u64) -> Found<'t> {
        Found {
            at,
            id: InstanceId {
                slot: at.index() as u32,
                gen: word.gen(),
            },
            word,
            pool: grant as u32,
            count: (grant >> 32) as u32,
        }
    }
}

/// What [`Table::lookup`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup<'t> {
    /// The key's live instance.
    Live(Found<'t>),
    /// No instance.
    Absent,
}

/// What [`Table::claim`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim<'t> {
    /// The key is ours to publish (or abandon).
    Owned(Claimed<'t>),
    /// The key was already LIVE here; nothing was claimed.
    Exists(Found<'t>),
    /// Another thread is claiming the key; look it up again.
    Retry,
    /// No level has room for the key and no level can be added (the last
    /// one is out, or its memory cannot be had).
    Full,
}

/// A live instance as read by [`Table::read`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveRead {
    pub(crate) id: InstanceId,
    pub(crate) pool: u32,
    pub(crate) count: u32,
    pub(crate) since: u64,
    pub(crate) linger: u64,
    pub(crate) deadline: u64,
    pub(crate) holder: HolderBuf,
    pub(crate) key: InstanceKey,
}

/// What a renewal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renew {
    /// The deadline is now the new one; the old one is returned.
    Renewed { old_deadline: u64 },
    /// The instance was released before the renewal landed.
    Gone,
    /// The instance's linger word carries [`LINGER_MARK`]: nothing changed.
    Marked,
}

/// What a table keeps besides its slots, in every level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Extras {
    /// A charge record per slot (an engine with an options file).
    pub(crate) charges: bool,
    /// A lock per bucket over the uses of its DUP_GROUP instances (an
    /// engine with a grouped feature).
    pub(crate) uses: bool,
}

/// The levels of slots. See the module docs for the protocol.
pub(crate) struct Table {
    /// Level 0, inline: a table of one level follows no pointer.
    first: Level,
    /// Level `k >= 1` at `more[k - 1]`: null until published, then fixed
    /// until the table is dropped.
    more: [AtomicPtr<Level>; MAX_LEVELS - 1],
    /// Levels published (at least 1). Only ever raised, by a CAS from `n`
    /// to `n + 1` once `more[n - 1]` is set.
    levels: AtomicUsize,
    /// Levels this table may have: its slot indices fit [`INDEX_BITS`].
    max_levels: usize,
    /// log2 of level 0's slots; level `k` has `2^(shift + k)`.
    shift: u32,
    /// What levels keep besides their slots.
    extras: Extras,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("levels", &self.levels.load(Ordering::Relaxed))
            .field("slots", &self.slot_count())
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        for cell in &self.more {
            let p = cell.load(Ordering::Acquire);
            if !p.is_null() {
                // Safety: a non-null pointer in `more` came from
                // `Box::into_raw` in `grow` and was published once; `&mut
                // self` means no reference into it outlives this.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

impl Table {
    /// [`Table::with_extras`] with a charge record per slot if `charged`
    /// and no uses (tests and models).
    #[cfg(test)]
    pub(crate) fn with_capacity(instances: usize, charged: bool) -> Table {
        let extras = Extras {
            charges: charged,
            uses: false,
        };
        Table::with_extras(instances, extras)
    }

    /// A table whose level 0 holds at least `instances` live instances with
    /// room to spare (never more than half full), keeping `extras` in every
    /// level. If that much memory cannot be had, level 0 is made smaller
    /// (later levels grow as instances come).
    pub(crate) fn with_extras(instances: usize, extras: Extras) -> Table {
        Table::build(instances, extras, MAX_LEVELS)
    }

    /// [`Table::with_capacity`], with at most `max_levels` levels (tests
    /// cap it to reach a full table).
    #[cfg(all(test, not(loom)))]
    fn with_levels(instances: usize, charged: bool, max_levels: usize) -> Table {
        let extras = Extras {
            charges: charged,
            uses: false,
        };
        Table::build(instances, extras, max_levels)
    }

    /// [`Table::with_extras`], with at most `max_levels` levels.
    fn build(instances: usize, extras: Extras, max_levels: usize) -> Table {
        let wanted = instances
            .saturating_mul(2)
            .clamp(SLOTS_PER_BUCKET, MAX_FIRST_SLOTS);
        let mut buckets = wanted.div_ceil(SLOTS_PER_BUCKET).next_power_of_two();
        let first = loop {
            match Level::try_new(buckets, 0, extras) {
                Some(level) => break level,
                None if buckets > 1 => buckets /= 2,
                None => std::alloc::handle_alloc_error(std::alloc::Layout::new::<Level>()),
            }
        };
        let shift = first.slots().trailing_zeros();
        // Level k ends at slot 2^shift * (2^(k+1) - 1); all must be below
        // 2^INDEX_BITS (and fit a usize).
        let fit = (INDEX_BITS.min(usize::BITS - 1) - shift) as usize;
        Table {
            first,
            more: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            levels: AtomicUsize::new(1),
            max_levels: fit.min(max_levels).clamp(1, MAX_LEVELS),
            shift,
            extras,
        }
    }

    /// The global index of level `k`'s first slot.
    #[inline]
    fn offset(&self, k: usize) -> usize {
        ((1 << k) - 1) << self.shift
    }

    /// Level `k`. Only for `k` below a value of `levels` the caller loaded.
    #[inline]
    fn level(&self, k: usize) -> &Level {
        if k == 0 {
            return &self.first;
        }
        // Acquire: pairs with the CAS that stored it (the count the caller
        // loaded orders it already; this keeps the pairing local).
        let p = self.more[k - 1].load(Ordering::Acquire);
        debug_assert!(!p.is_null(), "level {k} read before it was published");
        // Safety: the caller saw `levels > k`, and `more[k - 1]` is set
        // before `levels` passes k (`grow`), to a level that lives until
        // the table is dropped, which `&self` outlives.
        unsafe { &*p }
    }

    /// The slot with global index `i`, if its level is published (ids come
    /// from callers).
    #[inline]
    fn locate(&self, i: usize) -> Option<At<'_>> {
        if i < self.first.slots() {
            return Some(At {
                level: &self.first,
                local: i,
            });
        }
        let q = (i >> self.shift) + 1;
        let k = (usize::BITS - 1 - q.leading_zeros()) as usize;
        if k >= self.levels.load(Ordering::Acquire) {
            return None;
        }
        let level = self.level(k);
        Some(At {
            level,
            local: i - level.offset,
        })
    }

    /// Slots in the published levels.
    pub(crate) fn slot_count(&self) -> usize {
        self.offset(self.levels.load(Ordering::Acquire))
    }

    /// Bytes allocated for the table: its published levels and itself.
    pub(crate) fn bytes(&self) -> usize {
        let n = self.levels.load(Ordering::Acquire);
        let boxed = (n - 1) * std::mem::size_of::<Level>();
        (0..n).map(|k| self.level(k).bytes()).sum::<usize>() + boxed + std::mem::size_of::<Table>()
    }

    /// Publishes level `n` unless someone has (`n`: the count the caller
    /// loaded). False if the table has all its levels, or the level's
    /// memory cannot be had and no one else published it.
    #[cold]
    #[inline(never)]
    fn grow(&self, n: usize) -> bool {
        if n >= self.max_levels {
            return false;
        }
        let cell = &self.more[n - 1];
        // Acquire: a level someone else stored is read by our count CAS's
        // readers too (they acquire the count we release).
        if cell.load(Ordering::Acquire).is_null() {
            let buckets = self.first.buckets() << n;
            let Some(level) = Level::try_new(buckets, self.offset(n), self.extras) else {
                return self.levels.load(Ordering::Acquire) > n;
            };
            let new = Box::into_raw(Box::new(level));
            // Release (SeqCst): the level's contents before its pointer.
            if cell
                .compare_exchange(ptr::null_mut(), new, Ordering::SeqCst, Ordering::Acquire)
                .is_err()
            {
                // Safety: `new` came from `Box::into_raw` just above and
                // was never published: nobody else has seen it.
                drop(unsafe { Box::from_raw(new) });
            }
        }
        // SeqCst: the publication P of the module docs' twin argument.
        // Failure: someone else raised it (our n is stale or they helped).
        let _ = self
            .levels
            .compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::Relaxed);
        true
    }

    /// Finds the LIVE instance holding `key`, waiting out a claim or a
    /// release of the same key in progress.
    pub(crate) fn find(&self, key: InstanceKey) -> Option<InstanceId> {
        match self.lookup(key) {
            Lookup::Live(found) => Some(found.id),
            Lookup::Absent => None,
        }
    }

    /// [`Table::find`], as a [`Lookup`]: every level, newest first.
    pub(crate) fn lookup(&self, key: InstanceKey) -> Lookup<'_> {
        // Acquire: a publish that happened before us is in a level this
        // names (module docs).
        let n = self.levels.load(Ordering::Acquire);
        if n == 1 {
            // One level (the common case): no pointer, no loop.
            return lookup_in(&self.first, key);
        }
        self.lookup_levels(key, n)
    }

    /// [`Table::lookup`] in levels `n - 1` down to 0 (kept out of the
    /// one-level path).
    #[inline(never)]
    fn lookup_levels(&self, key: InstanceKey, n: usize) -> Lookup<'_> {
        for k in (0..n).rev() {
            if let found @ Lookup::Live(_) = lookup_in(self.level(k), key) {
                return found;
            }
        }
        Lookup::Absent
    }

    /// Hints the CPU to load the buckets a lookup or claim of `key` reads
    /// in the newest level (where a claim goes first), so that one made a
    /// little later finds them in cache: for a caller that knows its next
    /// keys ahead (recovery restores millions, each in a random bucket).
    pub(crate) fn prefetch(&self, key: InstanceKey) {
        let n = self.levels.load(Ordering::Acquire);
        let level = self.level(n - 1);
        let [primary, secondary] = level.buckets_of(key);
        // The primary's fingerprints and the words a claim scans for a free
        // slot until the bucket is crowded (it then looks at the secondary,
        // whose fingerprints come first too); more would only queue behind
        // the misses that matter.
        level.prefetch_bucket(primary, 512);
        level.prefetch_bucket(secondary, 64);
    }

    /// Claims a slot for `key` unless the key is already live. On
    /// [`Claim::Owned`] the caller must [`Table::publish`] or
    /// [`Table::abandon`] the claim.
    pub(crate) fn claim(&self, key: InstanceKey) -> Claim<'_> {
        let Some((level, mine, gen)) = self.reserve(key) else {
            return Claim::Full;
        };
        let [primary, _] = level.buckets_of(key);
        let spilled_from = (mine / SLOTS_PER_BUCKET != primary / SLOTS_PER_BUCKET).then(|| {
            // Raised before the fingerprint is set: whoever sees the
            // fingerprint sees the count raised, so a lookup after it looks
            // in the secondary bucket too. SeqCst: part of the twin
            // argument (module docs).
            level.spilled(primary).fetch_add(1, Ordering::SeqCst);
            primary
        });
        let slot = level.slot(mine);
        slot.key_lo.store(key.lo, Ordering::Relaxed);
        slot.key_hi.store(key.hi, Ordering::Relaxed);
        slot.word
            .store(Word::new(State::Claiming, gen, 0).0, Ordering::Release);
        // The fingerprint last: a scanner that sees it (acquire) sees the
        // key, CLAIMING and the spill count. SeqCst RMW, then SeqCst loads
        // (the level count, the spill counts, the fingerprints) in the
        // re-scan below: of two claimers of one key, the one whose XOR
        // comes later in the single SeqCst order sees the other's
        // fingerprint (module docs). No fence: on x86 this is one locked
        // XOR and plain loads, where `fence(SeqCst)` (MFENCE) cost about
        // 130 ns of a checkout's latency.
        let tag = tag_of(key);
        level.flip_tag(mine, tag, Ordering::SeqCst);
        seqcst_handshake();
        let me = At { level, local: mine };
        let claimed = Claimed {
            at: me,
            gen,
            tag,
            spilled_from,
        };
        // Re-read, SeqCst: a level published since `reserve` looked, in
        // which a twin may be claiming (module docs, "different levels").
        let n = self.levels.load(Ordering::SeqCst);
        let twin = if n == 1 {
            twin_in(&self.first, key, me, spilled_from.is_some())
        } else {
            self.twin_in_levels(key, me, n, spilled_from.is_some())
        };
        let Some((at, w, grant)) = twin else {
            return Claim::Owned(claimed);
        };
        self.abandon(claimed);
        if w.is(State::Live) {
            Claim::Exists(Found::new(at, w, grant))
        } else {
            Claim::Retry
        }
    }

    /// [`twin_in`] for levels `n - 1` down to 0 (kept out of the one-level
    /// path). `spilled`: `me` is in its level's secondary bucket.
    #[inline(never)]
    fn twin_in_levels<'t>(
        &'t self,
        key: InstanceKey,
        me: At<'_>,
        n: usize,
        spilled: bool,
    ) -> Option<(At<'t>, Word, u64)> {
        (0..n).rev().find_map(|k| {
            let l = self.level(k);
            twin_in(l, key, me, ptr::eq(l, me.level) && spilled)
        })
    }

    /// Reserves a FREE slot for `key` in the newest level with room in one
    /// of its buckets, publishing a new level when none has; `None` when no
    /// level can be added.
    fn reserve(&self, key: InstanceKey) -> Option<(&Level, usize, u32)> {
        loop {
            // SeqCst: a claim in a level this names comes after the level's
            // publication in S (module docs, "different levels").
            let n = self.levels.load(Ordering::SeqCst);
            for k in (0..n).rev() {
                let level = self.level(k);
                if let Some((i, gen)) = level.reserve(key) {
                    return Some((level, i, gen));
                }
            }
            if !self.grow(n) {
                return None;
            }
        }
    }

    /// Makes a claimed slot a LIVE instance: writes its fields, then
    /// publishes them with the LIVE store.
    pub(crate) fn publish<H: StoreHolder>(
        &self,
        c: Claimed<'_>,
        fields: &Fields<'_, H>,
    ) -> InstanceId {
        let slot = c.at.level.slot(c.at.local);
        slot.grant.store(
            u64::from(fields.pool) | (u64::from(fields.count) << 32),
            Ordering::Relaxed,
        );
        slot.cold().since.store(fields.since, Ordering::Relaxed);
        if fields.linger & LINGER_MARK == 0 {
            slot.linger.store(fields.linger, Ordering::Relaxed);
        } else {
            // A marked instance (rare): an RMW, so that the mark comes after
            // a late linger CAS of a renewal of the slot's previous owner
            // in the linger word's order (that CAS then fails, or precedes
            // it) in any model of it, loom's included.
            slot.linger.swap(fields.linger, Ordering::Relaxed);
        }
        fields
            .holder
            .store_holder(&slot.cold().meta, || slot.cold_rest());
        // Release: publishes every field to acquire loads of LIVE.
        slot.word.store(
            Word::new(State::Live, c.gen, fields.deadline).0,
            Ordering::Release,
        );
        InstanceId {
            slot: c.at.index() as u32,
            gen: c.gen,
        }
    }

    /// Gives up a claim: the slot becomes FREE in the next generation.
    pub(crate) fn abandon(&self, c: Claimed<'_>) {
        let level = c.at.level;
        // Cleared before the FREE store, so the next owner finds it 0.
        level.flip_tag(c.at.local, c.tag, Ordering::Release);
        if let Some(primary) = c.spilled_from {
            level.spilled(primary).fetch_sub(1, Ordering::Release);
        }
        let next = Word::new(State::Claiming, c.gen, 0).next_gen();
        level
            .slot(c.at.local)
            .word
            .store(Word::new(State::Free, next, 0).0, Ordering::Release);
    }

    /// Moves a found instance's deadline to `deadline` (and records the
    /// linger that produced it, for status). The first CAS expects the word
    /// the lookup saw. An instance whose linger word carries
    /// [`LINGER_MARK`] is not renewed ([`Renew::Marked`]): the mark is
    /// written at publish and never changes while the instance is live, so
    /// the check and the CAS judge the same instance.
    pub(crate) fn renew(&self, found: &Found<'_>, deadline: u64, linger: u64) -> Renew {
        let id = found.id;
        let slot = found.at.level.slot(found.at.local);
        let mut w = found.word;
        loop {
            if !w.is_live(id.gen) {
                return Renew::Gone;
            }
            let seen = match linger_of(&slot, w) {
                Ok(l) if l & LINGER_MARK != 0 => return Renew::Marked,
                Ok(l) => l,
                Err(actual) => {
                    w = actual;
                    continue;
                }
            };
            // The linger first (status only: a racing renewal may win it),
            // by a CAS from the value seen, never a store: the slot may have
            // been released and published again since, and a store would
            // wipe the next instance's mark (the CAS then fails, and so does
            // the word's below). Before the word's CAS, whose release orders
            // it before any later owner's publish.
            if seen != linger {
                let _ = slot.linger.compare_exchange(
                    seen,
                    linger,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            let next = Word::new(State::Live, id.gen, deadline);
            match slot
                .word
                .compare_exchange(w.0, next.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Renew::Renewed {
                        old_deadline: w.deadline(),
                    };
                }
                Err(actual) => w = Word(actual),
            }
        }
    }

    /// Whether found instance `found` carries [`LINGER_MARK`] (false if it
    /// is no longer live: a renewal then finds it gone).
    pub(crate) fn marked(&self, found: &Found<'_>) -> bool {
        let slot = found.at.level.slot(found.at.local);
        let mut w = found.word;
        loop {
            if !w.is_live(found.id.gen) {
                return false;
            }
            match linger_of(&slot, w) {
                Ok(l) => return l & LINGER_MARK != 0,
                Err(actual) => w = actual,
            }
        }
    }

    /// Sets a LIVE instance's deadline to `deadline` whatever it was (one
    /// CAS on its word, as a renewal); the old deadline, or `None` if `id`
    /// is not live.
    pub(crate) fn set_deadline(&self, id: InstanceId, deadline: u64) -> Option<u64> {
        let at = self.locate(id.slot as usize)?;
        let slot = at.level.slot(at.local);
        let mut w = slot.load(Ordering::Acquire);
        loop {
            if !w.is_live(id.gen) {
                return None;
            }
            let next = Word::new(State::Live, id.gen, deadline);
            match slot
                .word
                .compare_exchange(w.0, next.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(w.deadline()),
                Err(actual) => w = Word(actual),
            }
        }
    }

    /// The DUP_GROUP uses of the bucket of instance `id`'s slot and its
    /// lane there (whatever the slot holds now); `None` if the table keeps
    /// none or the slot's level is not published.
    pub(crate) fn uses_of(&self, id: InstanceId) -> Option<(&Mutex<BucketUses>, u8)> {
        let at = self.locate(id.slot as usize)?;
        at.level.uses(at.local)
    }

    /// The deadline of a LIVE instance (one load of its word, no field
    /// reads); `None` if `id` is not live.
    pub(crate) fn deadline_of(&self, id: InstanceId) -> Option<u64> {
        let at = self.locate(id.slot as usize)?;
        let w = at.level.slot(at.local).load(Ordering::Acquire);
        w.is_live(id.gen).then(|| w.deadline())
    }

    /// Reads a LIVE instance's fields, or `None` if `id` is not live.
    pub(crate) fn read(&self, id: InstanceId) -> Option<LiveRead> {
        read_at(self.locate(id.slot as usize)?, id.gen)
    }

    /// Reads only a LIVE instance's user and host (the words of the holder
    /// that hold them, often one), or `None` if `id` is not live: the same
    /// seqlock read as [`Table::read`] without the other fields. The
    /// display and handle of the copy returned may be cut or empty.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn user_host(&self, id: InstanceId) -> Option<HolderBuf> {
        let at = self.locate(id.slot as usize)?;
        let w = at.level.slot(at.local).load(Ordering::Acquire);
        holder_read(at, id.gen, w, |slot| {
            HolderBuf::load_fields_split(&slot.cold().meta, || slot.cold_rest(), 2)
        })
    }

    /// Whether found instance `found` is held by `user` on `host`
    /// ([`HolderBuf::is_user_host`]), judged on one consistent read of the
    /// words of its holder that hold them (the renewal's holder check: no
    /// holder is built for short names: [`HolderBuf::words_are_user_host`]),
    /// starting from the word the lookup saw; `None` if it is no longer
    /// live.
    #[inline]
    pub(crate) fn held_by(&self, found: &Found<'_>, user: &str, host: &str) -> Option<bool> {
        holder_read(found.at, found.id.gen, found.word, |slot| {
            HolderBuf::words_are_user_host(&slot.cold().meta, || slot.cold_rest(), user, host)
        })
    }

    /// Releases instance `id` if it is LIVE and `should(deadline)` holds for
    /// its current deadline: LIVE -> RELEASING, then `credit` (the caller
    /// gives the licenses back to the pool, and takes the slot's charge
    /// record if it has one), then FREE. Exactly one caller can release a
    /// given instance.
    pub(crate) fn release(
        &self,
        id: InstanceId,
        should: impl Fn(u64) -> bool,
        credit: impl FnOnce(&LiveRead, Option<&AtomicU64>),
    ) -> Option<LiveRead> {
        let at = self.locate(id.slot as usize)?;
        let w = at.level.slot(at.local).load(Ordering::Acquire);
        release_at(at, id.gen, w, should, credit)
    }

    /// [`Table::release`] of an instance found by key: from the slot and
    /// word the lookup saw (no locate, no second load; the first CAS
    /// expects that word, as [`Table::renew`]'s does).
    #[inline]
    pub(crate) fn release_found(
        &self,
        found: &Found<'_>,
        should: impl Fn(u64) -> bool,
        credit: impl FnOnce(&LiveRead, Option<&AtomicU64>),
    ) -> Option<LiveRead> {
        release_at(found.at, found.id.gen, found.word, should, credit)
    }

    /// Calls `f` for every LIVE instance (a consistent read of each, not an
    /// atomic picture of the whole table). Reads two fingerprint words per
    /// bucket and only the slots whose byte is set, so an idle table of a
    /// million slots is read in about 130,000 loads.
    pub(crate) fn for_each_live(&self, mut f: impl FnMut(&LiveRead)) {
        let n = self.levels.load(Ordering::Acquire);
        for k in 0..n {
            let level = self.level(k);
            for b in 0..level.buckets() {
                for (w, tags) in level.bucket(b).tags.iter().enumerate() {
                    let mut set = tags.load(Ordering::Acquire) & BYTE_HI;
                    while set != 0 {
                        let lane = w * 8 + set.trailing_zeros() as usize / 8;
                        set &= set - 1;
                        let at = At {
                            level,
                            local: b * SLOTS_PER_BUCKET + lane,
                        };
                        let word = level.slot(at.local).load(Ordering::Acquire);
                        if !word.is(State::Live) {
                            continue;
                        }
                        if let Some(r) = read_at(at, word.gen()) {
                            f(&r);
                        }
                    }
                }
            }
        }
    }
}

/// [`Table::release`] of the instance of generation `gen` in slot `at`,
/// whose word was last seen as `w` (loaded with `Acquire`, or by a CAS).
#[inline(always)]
fn release_at(
    at: At<'_>,
    gen: u32,
    mut w: Word,
    should: impl Fn(u64) -> bool,
    credit: impl FnOnce(&LiveRead, Option<&AtomicU64>),
) -> Option<LiveRead> {
    let (level, local) = (at.level, at.local);
    let slot = level.slot(local);
    loop {
        if !w.is_live(gen) || !should(w.deadline()) {
            return None;
        }
        let releasing = Word::new(State::Releasing, gen, w.deadline());
        match slot
            .word
            .compare_exchange(w.0, releasing.0, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => break,
            Err(actual) => w = Word(actual),
        }
    }
    // The slot is ours until FREE: its fields are stable.
    let read = read_fields(at, w);
    credit(&read, level.charge(local));
    // The key can go unseen now that the pool is credited; cleared
    // before the FREE store, so the next owner finds the byte 0.
    // Release: a scanner that no longer sees the fingerprint must see
    // the credit too (else a same-key checkout could find neither the
    // instance nor its license: the loom model renewal_races_expiry).
    level.flip_tag(local, tag_of(read.key), Ordering::Release);
    let [primary, _] = level.buckets_of(read.key);
    if local / SLOTS_PER_BUCKET != primary / SLOTS_PER_BUCKET {
        level.spilled(primary).fetch_sub(1, Ordering::Release);
    }
    slot.word
        .store(Word::new(State::Free, w.next_gen(), 0).0, Ordering::Release);
    Some(read)
}

/// The LIVE instance of `key` in `level`, if any (one level of
/// [`Table::lookup`]).
#[inline(always)]
fn lookup_in(level: &Level, key: InstanceKey) -> Lookup<'_> {
    let (buckets, m) = level.candidates(key, false, Ordering::Relaxed);
    for &start in &buckets[..m] {
        let mut maybe = level.scan(start, key, Ordering::Acquire);
        while maybe != 0 {
            let at = At {
                level,
                local: start + maybe.trailing_zeros() as usize,
            };
            maybe &= maybe - 1;
            if let Some((w, grant)) = wait_for_key(at, key, false) {
                return Lookup::Live(Found::new(at, w, grant));
            }
        }
    }
    Lookup::Absent
}

/// One level of a claim's re-scan (SeqCst loads, module docs): another slot
/// of `level` that is LIVE with `key`, or CLAIMING it at a lower index than
/// `me`, with its word and grant (waiting out a claim at a higher index
/// and a release). `spilled`: `me` is in this level's secondary bucket.
#[inline(always)]
fn twin_in<'t>(
    level: &'t Level,
    key: InstanceKey,
    me: At<'_>,
    spilled: bool,
) -> Option<(At<'t>, Word, u64)> {
    let (buckets, m) = level.candidates(key, spilled, Ordering::SeqCst);
    for &start in &buckets[..m] {
        let mut maybe = level.scan(start, key, Ordering::SeqCst);
        while maybe != 0 {
            let at = At {
                level,
                local: start + maybe.trailing_zeros() as usize,
            };
            maybe &= maybe - 1;
            if at.index() == me.index() {
                continue;
            }
            // Stop waiting on a CLAIMING twin at a lower index (we back
            // off); wait for one at a higher index to go LIVE or away.
            if let Some((w, grant)) = wait_for_key(at, key, at.index() < me.index()) {
                return Some((at, w, grant));
            }
        }
    }
    None
}

/// The linger word of the instance that word `w` (loaded with `Acquire`,
/// or by a CAS that read it) shows in `slot`: one relaxed load. A word
/// with [`LINGER_MARK`] is confirmed as the instance's by a seqlock
/// re-check (`Err`: the word changed, it may be a later owner's, whose
/// publish writes the linger after the release fence in `reserve`); one
/// without it is `w`'s or a later owner's, and then a CAS expecting `w`
/// fails.
#[inline(always)]
fn linger_of(slot: &level::Slot<'_>, w: Word) -> Result<u64, Word> {
    let l = slot.linger.load(Ordering::Relaxed);
    if l & LINGER_MARK == 0 {
        return Ok(l);
    }
    fence(Ordering::Acquire);
    let now = slot.load(Ordering::Relaxed);
    if now == w {
        Ok(l)
    } else {
        Err(now)
    }
}

/// Looks at slot `at`: returns its word and grant field if it is LIVE with
/// `key`, or CLAIMING it and `stop_at_claiming` (the grant is then
/// meaningless); waits while it is RELEASING `key`, or CLAIMING it and not
/// `stop_at_claiming`; returns `None` when it holds something else.
fn wait_for_key(at: At<'_>, key: InstanceKey, stop_at_claiming: bool) -> Option<(Word, u64)> {
    let slot = at.level.slot(at.local);
    loop {
        let w = slot.load(Ordering::Acquire);
        // FREE or RESERVED (0 and 1): no key to look at.
        if w.0 & STATE_MASK <= State::Reserved as u64 {
            return None;
        }
        let same = slot.key_is(key);
        let grant = slot.grant.load(Ordering::Relaxed);
        // Seqlock re-check: the fence orders the key loads before it, so
        // keys written by a later owner (after its release fence in
        // `reserve`) show as a changed word.
        fence(Ordering::Acquire);
        if slot.load(Ordering::Relaxed) != w {
            continue; // changed under us: look again
        }
        if !same {
            return None;
        }
        if w.is(State::Live) || (stop_at_claiming && w.is(State::Claiming)) {
            return Some((w, grant));
        }
        spin_wait(); // same key mid-claim or mid-release
    }
}

/// `f` of slot `at`'s holder words while it holds the LIVE instance of
/// generation `gen` (`w`: its word as last loaded with `Acquire`), under
/// the seqlock of [`read_at`] (`f` may see a torn copy, whose result is
/// thrown away), or `None` if it is not (or no longer) that.
#[inline(always)]
fn holder_read<R>(
    at: At<'_>,
    gen: u32,
    mut w: Word,
    f: impl Fn(&level::Slot<'_>) -> R,
) -> Option<R> {
    let slot = at.level.slot(at.local);
    loop {
        if !w.is_live(gen) {
            return None;
        }
        let r = f(&slot);
        // Seqlock check, as in `read_at`.
        fence(Ordering::Acquire);
        let again = slot.load(Ordering::Relaxed);
        if again.is_live(gen) {
            return Some(r);
        }
        w = slot.load(Ordering::Acquire);
    }
}

/// Reads the fields of the LIVE instance in slot `at` of generation `gen`,
/// or `None` if it is not (or no longer) that.
fn read_at(at: At<'_>, gen: u32) -> Option<LiveRead> {
    let slot = at.level.slot(at.local);
    loop {
        let w = slot.load(Ordering::Acquire);
        if !w.is_live(gen) {
            return None;
        }
        let read = read_fields(at, w);
        // Seqlock check: fields are only rewritten after a release, which
        // bumps the generation (the fence orders the field loads before
        // this one; see `wait_for_key`).
        fence(Ordering::Acquire);
        let again = slot.load(Ordering::Relaxed);
        if again.is_live(gen) {
            return Some(LiveRead {
                deadline: again.deadline(),
                ..read
            });
        }
    }
}

#[inline(always)]
fn read_fields(at: At<'_>, w: Word) -> LiveRead {
    let slot = at.level.slot(at.local);
    let grant = slot.grant.load(Ordering::Relaxed);
    LiveRead {
        id: InstanceId {
            slot: at.index() as u32,
            gen: w.gen(),
        },
        pool: grant as u32,
        count: (grant >> 32) as u32,
        since: slot.cold().since.load(Ordering::Relaxed),
        linger: slot.linger.load(Ordering::Relaxed),
        deadline: w.deadline(),
        holder: HolderBuf::load_split(&slot.cold().meta, || slot.cold_rest()),
        key: InstanceKey {
            lo: slot.key_lo.load(Ordering::Relaxed),
            hi: slot.key_hi.load(Ordering::Relaxed),
        },
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_models;
