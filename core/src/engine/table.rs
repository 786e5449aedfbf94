//! The checkout table: one slot per held license instance, found by key.
//!
//! # Shape
//!
//! A fixed array of buckets of [`SLOTS_PER_BUCKET`] slots, sized when the
//! engine is built (twice the licenses the counted pools can grant, so it is
//! never more than half full). A key (a 128-bit keyed hash of the feature and
//! the duplicate-grouping fields, see `key.rs`) lives in its *primary*
//! bucket (chosen by the hash's low half) or its *secondary* one (the high
//! half): a new key goes to the primary unless that is crowded (12 of 16
//! slots in use) and the secondary is emptier, so the table keeps the
//! balance of two-choice hashing while most keys sit in their primary.
//! Each bucket counts the keys that spilled out of it
//! ([`Bucket::spilled`]); while that count is 0, a key is looked for in its
//! primary bucket alone, so a lookup touches one cache line.
//! Buckets are the table's shards: threads working on different keys touch
//! different cache lines and share no lock.
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
//! A new key is claimed *before* the pool is charged: (in the secondary
//! bucket: raise the primary's spill count, SeqCst,) write the key, store
//! CLAIMING, set the slot's fingerprint byte with a SeqCst XOR, then re-scan
//! with SeqCst loads the fingerprints of the primary bucket, and of the
//! secondary one if the claim is there or the primary's spill count is not
//! 0, and look at the matching slots. All SeqCst operations fall in one
//! total order S that agrees with each thread's program order, and a SeqCst
//! load cannot read a value older than a SeqCst write before it in S. So of
//! two claimers of one key, the one whose last re-scan load is later in S
//! sees the other's fingerprint: both in one bucket, through its
//! fingerprint word; one in each, because the spilled claimer always scans
//! the primary bucket, and the other, if its loads come later, sees the
//! spill count and so scans the secondary bucket too. (Under loom, which
//! models SeqCst accesses as AcqRel, a SeqCst fence follows the XOR:
//! `sync::seqcst_handshake`.) The fingerprint is set last, so whoever sees
//! it (acquire) sees the key and CLAIMING. With slots ordered by their
//! global index:
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
//!
//! # Fingerprints
//!
//! Each bucket keeps a byte per slot ([`Bucket::tags`]): 7 bits of the key
//! with the high bit set, from just after the CLAIMING store until after
//! the pool is credited on release, else 0. A scan reads two words per bucket
//! instead of sixteen slot words and compares all lanes at once; only lanes
//! whose byte matches are looked at (a false match costs one slot check).
//! The release clear is a release XOR: a scanner that no longer sees the
//! byte also sees the pool credit that preceded it.
//!
//! The waits are the one place a thread can spin: for a few dozen
//! instructions of another thread working on the *same key*. Different keys
//! never wait for each other.
//!
//! Hot path: no allocation, no lock, no syscall.

use super::holder::{HolderBuf, META_WORDS};
use super::key::InstanceKey;
use crate::sync::{fence, seqcst_handshake, spin_wait, AtomicU32, AtomicU64, Ordering};

/// Slots in one bucket. Small under loom so the model stays tractable.
#[cfg(not(loom))]
pub(crate) const SLOTS_PER_BUCKET: usize = 16;
/// Slots in one bucket. Small under loom so the model stays tractable.
#[cfg(loom)]
pub(crate) const SLOTS_PER_BUCKET: usize = 2;

/// A new key goes to its primary bucket unless that has this many slots in
/// use (then to the emptier of its two). Under loom: only when full, so
/// the models place keys where they expect.
#[cfg(not(loom))]
const CROWDED: u32 = SLOTS_PER_BUCKET as u32 * 3 / 4;
/// A new key goes to its primary bucket unless that has this many slots in
/// use (then to the emptier of its two). Under loom: only when full, so
/// the models place keys where they expect.
#[cfg(loom)]
const CROWDED: u32 = SLOTS_PER_BUCKET as u32;

/// Words of fingerprint bytes per bucket: one byte per slot.
const TAG_WORDS: usize = SLOTS_PER_BUCKET.div_ceil(8);
/// The low bit of every byte of a word.
const BYTE_LO: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte of a word (set in every fingerprint).
const BYTE_HI: u64 = 0x8080_8080_8080_8080;

/// A bit per lane of a bucket.
const LANES: u32 = (1 << SLOTS_PER_BUCKET) - 1;

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
    fn next_gen(self) -> u32 {
        ((u64::from(self.gen()) + 1) & GEN_MASK) as u32
    }
}

/// A key's fingerprint byte: 7 bits of the key, high bit set so that it is
/// never 0 (the byte of an empty slot). The bits are not the ones that
/// choose the buckets.
fn tag_of(key: InstanceKey) -> u8 {
    0x80 | (key.hi >> 57) as u8
}

/// One bucket's hot data: the fingerprint bytes first (a scan reads these
/// two words and nothing else for slots that cannot hold its key), then
/// each slot's hot fields side by side, so that a renewal, after the
/// fingerprints, touches one slot's 40 bytes: the word, the key, the grant
/// and the linger. (`repr(C)`: the fingerprints share the first cache line
/// with the first slots.)
#[derive(Debug)]
#[repr(C, align(64))]
struct Bucket {
    /// Byte `lane % 8` of word `lane / 8` is the fingerprint of the key in
    /// slot `lane` from just after its CLAIMING store until just before
    /// its FREE store, else 0. Only the slot's owner changes its byte, by
    /// XOR, so concurrent owners of other lanes never undo each other.
    tags: [AtomicU64; TAG_WORDS],
    /// Keys whose primary bucket this is that are in their secondary one,
    /// counted from before their fingerprint is set there until after it is
    /// cleared. While 0, a lookup need not look at the secondary bucket.
    spilled: AtomicU32,
    slots: [Hot; SLOTS_PER_BUCKET],
}

/// A slot's hot fields: everything a lookup, a claim or a renewal reads.
#[derive(Debug)]
#[repr(C)]
struct Hot {
    /// The slot's life: state, generation, deadline ([`Word`]).
    word: AtomicU64,
    key_lo: AtomicU64,
    key_hi: AtomicU64,
    /// Pool index (low 32 bits) and license count (high 32 bits).
    grant: AtomicU64,
    /// Linger of the latest checkout, ms (for status; not part of the
    /// protocol: the deadline in the word decides).
    linger: AtomicU64,
}

impl Bucket {
    fn new() -> Bucket {
        let free = Word::new(State::Free, 0, 0).0;
        Bucket {
            tags: std::array::from_fn(|_| AtomicU64::new(0)),
            spilled: AtomicU32::new(0),
            slots: std::array::from_fn(|_| Hot {
                word: AtomicU64::new(free),
                key_lo: AtomicU64::new(0),
                key_hi: AtomicU64::new(0),
                grant: AtomicU64::new(0),
                linger: AtomicU64::new(0),
            }),
        }
    }
}

/// A slot's cold data: read only for status, logging and release. Two
/// cache lines, aligned: a checkout with short names writes only the first.
#[derive(Debug)]
#[repr(C, align(64))]
struct Cold {
    /// Unix ms of the first checkout of this instance.
    since: AtomicU64,
    meta: [AtomicU64; META_WORDS],
}

impl Cold {
    fn new() -> Cold {
        Cold {
            since: AtomicU64::new(0),
            meta: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// One slot's fields, gathered from its bucket and the cold array. Only
/// `word` decides anything; the rest is published by it.
#[derive(Debug, Clone, Copy)]
struct Slot<'a> {
    word: &'a AtomicU64,
    key_lo: &'a AtomicU64,
    key_hi: &'a AtomicU64,
    grant: &'a AtomicU64,
    linger: &'a AtomicU64,
    cold: &'a Cold,
}

impl Slot<'_> {
    fn load(&self, order: Ordering) -> Word {
        Word(self.word.load(order))
    }

    /// True if this slot's published key is `key`. Call only after an
    /// acquire load saw CLAIMING, LIVE or RELEASING; confirm with a second
    /// load of the word (the key is rewritten once the slot is FREE again).
    fn key_is(&self, key: InstanceKey) -> bool {
        self.key_lo.load(Ordering::Relaxed) == key.lo
            && self.key_hi.load(Ordering::Relaxed) == key.hi
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

/// A slot claimed for a new key, not yet LIVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a claim must be published or abandoned"]
pub(crate) struct Claimed {
    index: usize,
    gen: u32,
    tag: u8,
    /// The primary bucket (first slot index) when the claim spilled into
    /// the secondary one: its spill count was raised.
    spilled_from: Option<usize>,
}

impl Claimed {
    /// The claimed slot's index: per-slot side data (the policy's charge
    /// record) can be written before [`Table::publish`] publishes it.
    pub(crate) fn slot(self) -> u32 {
        self.index as u32
    }
}

/// What a claimed slot becomes when published.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'a> {
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
    pub(crate) holder: &'a HolderBuf,
}

/// A LIVE instance found by key, with what a renewal needs: the word it
/// was seen with (the renewal's first CAS expects it) and its grant, read
/// in the same seqlock window as the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) id: InstanceId,
    word: Word,
    /// The pool charged.
    pub(crate) pool: u32,
    /// Licenses held.
    pub(crate) count: u32,
}

impl Found {
    fn new(index: usize, word: Word, grant: u64) -> Found {
        Found {
            id: InstanceId {
                slot: index as u32,
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
pub(crate) enum Lookup {
    /// The key's live instance.
    Live(Found),
    /// No instance.
    Absent,
}

/// What [`Table::claim`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The key is ours to publish (or abandon).
    Owned(Claimed),
    /// The key was already LIVE here; nothing was claimed.
    Exists(Found),
    /// Another thread is claiming the key; look it up again.
    Retry,
    /// Both candidate buckets are full.
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
}

/// The slot array. See the module docs for the protocol.
#[derive(Debug)]
pub(crate) struct Table {
    hot: Box<[Bucket]>,
    cold: Box<[Cold]>,
    buckets: usize,
}

impl Table {
    /// A table able to hold at least `instances` live instances with room
    /// to spare (never more than half full).
    pub(crate) fn with_capacity(instances: usize) -> Table {
        let wanted = instances.saturating_mul(2).max(SLOTS_PER_BUCKET);
        let buckets = wanted.div_ceil(SLOTS_PER_BUCKET).next_power_of_two();
        Table {
            hot: (0..buckets).map(|_| Bucket::new()).collect(),
            cold: (0..buckets * SLOTS_PER_BUCKET)
                .map(|_| Cold::new())
                .collect(),
            buckets,
        }
    }

    pub(crate) fn slot_count(&self) -> usize {
        self.cold.len()
    }

    /// Slot `i` (global index: bucket * SLOTS_PER_BUCKET + lane).
    fn slot(&self, i: usize) -> Slot<'_> {
        let (b, lane) = (i / SLOTS_PER_BUCKET, i % SLOTS_PER_BUCKET);
        let bucket = &self.hot[b];
        Slot {
            word: &bucket.slots[lane].word,
            key_lo: &bucket.slots[lane].key_lo,
            key_hi: &bucket.slots[lane].key_hi,
            grant: &bucket.slots[lane].grant,
            linger: &bucket.slots[lane].linger,
            cold: &self.cold[i],
        }
    }

    /// Slot `i`, or `None` if out of range (ids come from callers).
    fn try_slot(&self, i: usize) -> Option<Slot<'_>> {
        (i < self.cold.len()).then(|| self.slot(i))
    }

    /// The first slot index of the key's primary and secondary buckets
    /// (equal when the table has a single bucket).
    fn buckets_of(&self, key: InstanceKey) -> [usize; 2] {
        let mask = self.buckets - 1;
        let a = (key.lo as usize) & mask;
        let mut b = (key.hi as usize) & mask;
        if b == a && self.buckets > 1 {
            b = (a + 1) & mask;
        }
        [a * SLOTS_PER_BUCKET, b * SLOTS_PER_BUCKET]
    }

    /// Slots of the bucket starting at slot `start` whose fingerprint is set
    /// (claimed or live), as one thread sees them now.
    fn used(&self, start: usize) -> u32 {
        self.hot[start / SLOTS_PER_BUCKET]
            .tags
            .iter()
            .map(|t| (t.load(Ordering::Relaxed) & BYTE_HI).count_ones())
            .sum()
    }

    /// The spill count of the bucket starting at slot `start`.
    fn spilled(&self, start: usize) -> &AtomicU32 {
        &self.hot[start / SLOTS_PER_BUCKET].spilled
    }

    /// One pass over the fingerprints of the bucket starting at slot
    /// `start`: a bit per lane whose fingerprint is `key`'s (a filter,
    /// confirmed by [`Table::wait_for_key`]; about one other key in 128
    /// passes it).
    ///
    /// A slot whose key is `key` has its bit set while LIVE, and from just
    /// after its CLAIMING store while claiming (see `claim` for which claims
    /// a re-scan is sure to see).
    fn scan(&self, start: usize, key: InstanceKey, order: Ordering) -> u32 {
        let bucket = &self.hot[start / SLOTS_PER_BUCKET];
        let pattern = BYTE_LO * u64::from(tag_of(key));
        let mut maybe = 0u32;
        for (k, tags) in bucket.tags.iter().enumerate() {
            // Acquire (at least): pairs with the owner's XOR, so the key
            // fields and word written before it are visible when the bit
            // is followed up. A claim's re-scan passes SeqCst.
            let t = tags.load(order);
            // Bytes equal to the pattern become 0; flag the zero bytes (a
            // borrow may flag a byte above a true match too: harmless).
            let x = t ^ pattern;
            let zero = x.wrapping_sub(BYTE_LO) & !x & BYTE_HI;
            // Gather the flags (bit 7 of each byte) into one bit per lane:
            // the multiply adds them into the top byte without carries.
            let lanes = zero.wrapping_mul(0x0002_0408_1020_4081) >> 56;
            maybe |= (lanes as u32) << (8 * k);
        }
        maybe & LANES
    }

    /// The buckets a key may be in, by first slot index: the primary, and
    /// the secondary if it is another bucket and something spilled out of
    /// the primary (or `spilled`: the caller's own claim is there).
    fn candidates(&self, key: InstanceKey, spilled: bool, order: Ordering) -> ([usize; 2], usize) {
        let [a, b] = self.buckets_of(key);
        // Relaxed: a claimer's count is ordered against a racing claim by
        // both sides' SeqCst accesses (module docs); a lookup that happens
        // after a publish sees the count, raised before it.
        let both = a != b && (spilled || self.spilled(a).load(order) != 0);
        ([a, b], if both { 2 } else { 1 })
    }

    /// XORs `tag` into slot `i`'s fingerprint byte: sets it when the byte is
    /// 0, clears it when it is `tag`.
    fn flip_tag(&self, i: usize, tag: u8, order: Ordering) {
        let (b, lane) = (i / SLOTS_PER_BUCKET, i % SLOTS_PER_BUCKET);
        self.hot[b].tags[lane / 8].fetch_xor(u64::from(tag) << (8 * (lane % 8)), order);
    }

    /// Finds the LIVE instance holding `key`, waiting out a claim or a
    /// release of the same key in progress.
    pub(crate) fn find(&self, key: InstanceKey) -> Option<InstanceId> {
        match self.lookup(key) {
            Lookup::Live(found) => Some(found.id),
            Lookup::Absent => None,
        }
    }

    /// [`Table::find`], as a [`Lookup`].
    pub(crate) fn lookup(&self, key: InstanceKey) -> Lookup {
        let (buckets, n) = self.candidates(key, false, Ordering::Relaxed);
        for &start in &buckets[..n] {
            let mut maybe = self.scan(start, key, Ordering::Acquire);
            while maybe != 0 {
                let i = start + maybe.trailing_zeros() as usize;
                maybe &= maybe - 1;
                if let Some((w, grant)) = self.wait_for_key(i, key, false) {
                    return Lookup::Live(Found::new(i, w, grant));
                }
            }
        }
        Lookup::Absent
    }

    /// Looks at slot `i`: returns its word and grant field if it is LIVE
    /// with `key`, or CLAIMING it and `stop_at_claiming` (the grant is then
    /// meaningless); waits while it is RELEASING `key`, or CLAIMING it and
    /// not `stop_at_claiming`; returns `None` when it holds something else.
    fn wait_for_key(
        &self,
        i: usize,
        key: InstanceKey,
        stop_at_claiming: bool,
    ) -> Option<(Word, u64)> {
        let slot = self.slot(i);
        loop {
            let w = slot.load(Ordering::Acquire);
            if matches!(w.state(), State::Free | State::Reserved) {
                return None;
            }
            let same = slot.key_is(key);
            let grant = slot.grant.load(Ordering::Relaxed);
            // Seqlock re-check: the fence orders the key loads before it,
            // so keys written by a later owner (after its release fence in
            // `reserve`) show as a changed word.
            fence(Ordering::Acquire);
            if slot.load(Ordering::Relaxed) != w {
                continue; // changed under us: look again
            }
            if !same {
                return None;
            }
            match w.state() {
                State::Live => return Some((w, grant)),
                State::Claiming if stop_at_claiming => return Some((w, grant)),
                _ => spin_wait(), // same key mid-claim or mid-release
            }
        }
    }

    /// Claims a slot for `key` unless the key is already live. On
    /// [`Claim::Owned`] the caller must [`Table::publish`] or
    /// [`Table::abandon`] the claim.
    pub(crate) fn claim(&self, key: InstanceKey) -> Claim {
        let Some((mine, gen)) = self.reserve(key) else {
            return Claim::Full;
        };
        let [primary, _] = self.buckets_of(key);
        let spilled_from = (mine / SLOTS_PER_BUCKET != primary / SLOTS_PER_BUCKET).then(|| {
            // Raised before the fingerprint is set: whoever sees the
            // fingerprint sees the count raised, so a lookup after it looks
            // in the secondary bucket too. SeqCst: part of the twin
            // argument (module docs).
            self.spilled(primary).fetch_add(1, Ordering::SeqCst);
            primary
        });
        let slot = self.slot(mine);
        slot.key_lo.store(key.lo, Ordering::Relaxed);
        slot.key_hi.store(key.hi, Ordering::Relaxed);
        slot.word
            .store(Word::new(State::Claiming, gen, 0).0, Ordering::Release);
        // The fingerprint last: a scanner that sees it (acquire) sees the
        // key, CLAIMING and the spill count. SeqCst RMW, then SeqCst loads
        // in the re-scan below: of two claimers of one key, the one whose
        // loads come later in the single SeqCst order sees the other's
        // fingerprint (module docs). No fence: on x86 this is one locked
        // XOR and plain loads, where `fence(SeqCst)` (MFENCE) cost about
        // 130 ns of a checkout's latency.
        let tag = tag_of(key);
        self.flip_tag(mine, tag, Ordering::SeqCst);
        seqcst_handshake();
        let claimed = Claimed {
            index: mine,
            gen,
            tag,
            spilled_from,
        };
        let (buckets, n) = self.candidates(key, spilled_from.is_some(), Ordering::SeqCst);
        for &start in &buckets[..n] {
            let mut maybe = self.scan(start, key, Ordering::SeqCst);
            while maybe != 0 {
                let j = start + maybe.trailing_zeros() as usize;
                maybe &= maybe - 1;
                if j == mine {
                    continue;
                }
                // Stop waiting on a CLAIMING twin at a lower index (we back
                // off); wait for one at a higher index to go LIVE or away.
                let Some((w, grant)) = self.wait_for_key(j, key, j < mine) else {
                    continue;
                };
                self.abandon(claimed);
                return if w.state() == State::Live {
                    Claim::Exists(Found::new(j, w, grant))
                } else {
                    Claim::Retry
                };
            }
        }
        Claim::Owned(claimed)
    }

    /// Makes a claimed slot a LIVE instance: writes its fields, then
    /// publishes them with the LIVE store.
    pub(crate) fn publish(&self, c: Claimed, fields: &Fields<'_>) -> InstanceId {
        let slot = self.slot(c.index);
        slot.grant.store(
            u64::from(fields.pool) | (u64::from(fields.count) << 32),
            Ordering::Relaxed,
        );
        slot.cold.since.store(fields.since, Ordering::Relaxed);
        slot.linger.store(fields.linger, Ordering::Relaxed);
        fields.holder.store(&slot.cold.meta);
        // Release: publishes every field to acquire loads of LIVE.
        slot.word.store(
            Word::new(State::Live, c.gen, fields.deadline).0,
            Ordering::Release,
        );
        InstanceId {
            slot: c.index as u32,
            gen: c.gen,
        }
    }

    /// Gives up a claim: the slot becomes FREE in the next generation.
    pub(crate) fn abandon(&self, c: Claimed) {
        // Cleared before the FREE store, so the next owner finds it 0.
        self.flip_tag(c.index, c.tag, Ordering::Release);
        if let Some(primary) = c.spilled_from {
            self.spilled(primary).fetch_sub(1, Ordering::Release);
        }
        let next = Word::new(State::Claiming, c.gen, 0).next_gen();
        self.slot(c.index)
            .word
            .store(Word::new(State::Free, next, 0).0, Ordering::Release);
    }

    /// Claims a FREE slot: in the key's primary bucket, unless it is
    /// crowded ([`CROWDED`]) and the secondary one is emptier; then in the
    /// other bucket if the first is full. (Always the primary first would
    /// read one bucket less, but overflows: at half load, buckets of 16
    /// hold 8 keys on average and a few in a thousand get 17, so a table of
    /// a million seats filled up before all were out. Choosing the emptier
    /// of two only when crowded keeps the two-choice bound.)
    fn reserve(&self, key: InstanceKey) -> Option<(usize, u32)> {
        let [a, b] = self.buckets_of(key);
        let n = if a == b { 1 } else { 2 };
        let order = if n == 2 && self.used(a) >= CROWDED && self.used(b) < self.used(a) {
            [b, a]
        } else {
            [a, b]
        };
        for &start in &order[..n] {
            for i in start..start + SLOTS_PER_BUCKET {
                let slot = self.slot(i);
                let w = slot.load(Ordering::Relaxed);
                if w.state() != State::Free {
                    continue;
                }
                // Acquire: the previous owner's release happened-before our
                // field writes (their fields are dead; ours replace them).
                if slot
                    .word
                    .compare_exchange(
                        w.0,
                        Word::new(State::Reserved, w.gen(), 0).0,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    // Seqlock writer: a reader that sees any field we write
                    // from now on sees this RESERVED word (or later) when it
                    // checks the word again after its acquire fence.
                    fence(Ordering::Release);
                    return Some((i, w.gen()));
                }
            }
        }
        None
    }

    /// Moves a found instance's deadline to `deadline` (and records the
    /// linger that produced it, for status). The first CAS expects the word
    /// the lookup saw.
    pub(crate) fn renew(&self, found: &Found, deadline: u64, linger: u64) -> Renew {
        let id = found.id;
        let slot = self.slot(id.slot as usize);
        let mut w = found.word;
        loop {
            if w.state() != State::Live || w.gen() != id.gen {
                return Renew::Gone;
            }
            let next = Word::new(State::Live, id.gen, deadline);
            match slot
                .word
                .compare_exchange(w.0, next.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // Status only: a racing renewal may interleave here.
                    slot.linger.store(linger, Ordering::Relaxed);
                    return Renew::Renewed {
                        old_deadline: w.deadline(),
                    };
                }
                Err(actual) => w = Word(actual),
            }
        }
    }

    /// Sets a LIVE instance's deadline to `deadline` whatever it was (one
    /// CAS on its word, as a renewal); the old deadline, or `None` if `id`
    /// is not live.
    pub(crate) fn set_deadline(&self, id: InstanceId, deadline: u64) -> Option<u64> {
        let slot = self.try_slot(id.slot as usize)?;
        let mut w = slot.load(Ordering::Acquire);
        loop {
            if w.state() != State::Live || w.gen() != id.gen {
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

    /// The deadline of a LIVE instance (one load of its word, no field
    /// reads); `None` if `id` is not live.
    pub(crate) fn deadline_of(&self, id: InstanceId) -> Option<u64> {
        let w = self.try_slot(id.slot as usize)?.load(Ordering::Acquire);
        (w.state() == State::Live && w.gen() == id.gen).then(|| w.deadline())
    }

    /// Reads a LIVE instance's fields, or `None` if `id` is not live.
    pub(crate) fn read(&self, id: InstanceId) -> Option<LiveRead> {
        let slot = self.try_slot(id.slot as usize)?;
        loop {
            let w = slot.load(Ordering::Acquire);
            if w.state() != State::Live || w.gen() != id.gen {
                return None;
            }
            let read = self.read_fields(id.slot as usize, w);
            // Seqlock check: fields are only rewritten after a release,
            // which bumps the generation (the fence orders the field loads
            // before this one; see `wait_for_key`).
            fence(Ordering::Acquire);
            let again = slot.load(Ordering::Relaxed);
            if again.state() == State::Live && again.gen() == id.gen {
                return Some(LiveRead {
                    deadline: again.deadline(),
                    ..read
                });
            }
        }
    }

    fn read_fields(&self, index: usize, w: Word) -> LiveRead {
        let slot = self.slot(index);
        let grant = slot.grant.load(Ordering::Relaxed);
        LiveRead {
            id: InstanceId {
                slot: index as u32,
                gen: w.gen(),
            },
            pool: grant as u32,
            count: (grant >> 32) as u32,
            since: slot.cold.since.load(Ordering::Relaxed),
            linger: slot.linger.load(Ordering::Relaxed),
            deadline: w.deadline(),
            holder: HolderBuf::load(&slot.cold.meta),
            key: InstanceKey {
                lo: slot.key_lo.load(Ordering::Relaxed),
                hi: slot.key_hi.load(Ordering::Relaxed),
            },
        }
    }

    /// Releases instance `id` if it is LIVE and `should(deadline)` holds for
    /// its current deadline: LIVE -> RELEASING, then `credit` (the caller
    /// gives the licenses back to the pool), then FREE. Exactly one caller
    /// can release a given instance.
    pub(crate) fn release(
        &self,
        id: InstanceId,
        should: impl Fn(u64) -> bool,
        credit: impl FnOnce(&LiveRead),
    ) -> Option<LiveRead> {
        let slot = self.try_slot(id.slot as usize)?;
        let mut w = slot.load(Ordering::Acquire);
        loop {
            if w.state() != State::Live || w.gen() != id.gen || !should(w.deadline()) {
                return None;
            }
            let releasing = Word::new(State::Releasing, id.gen, w.deadline());
            match slot
                .word
                .compare_exchange(w.0, releasing.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => w = Word(actual),
            }
        }
        // The slot is ours until FREE: its fields are stable.
        let read = self.read_fields(id.slot as usize, w);
        credit(&read);
        // The key can go unseen now that the pool is credited; cleared
        // before the FREE store, so the next owner finds the byte 0.
        // Release: a scanner that no longer sees the fingerprint must see
        // the credit too (else a same-key checkout could find neither the
        // instance nor its license: the loom model renewal_races_expiry).
        self.flip_tag(id.slot as usize, tag_of(read.key), Ordering::Release);
        let [primary, _] = self.buckets_of(read.key);
        if id.slot as usize / SLOTS_PER_BUCKET != primary / SLOTS_PER_BUCKET {
            self.spilled(primary).fetch_sub(1, Ordering::Release);
        }
        slot.word
            .store(Word::new(State::Free, w.next_gen(), 0).0, Ordering::Release);
        Some(read)
    }

    /// Calls `f` for every LIVE instance (a consistent read of each, not an
    /// atomic picture of the whole table). Reads two fingerprint words per
    /// bucket and only the slots whose byte is set, so an idle table of a
    /// million seats is read in about a quarter of a million loads.
    pub(crate) fn for_each_live(&self, mut f: impl FnMut(&LiveRead)) {
        for (b, bucket) in self.hot.iter().enumerate() {
            for (k, tags) in bucket.tags.iter().enumerate() {
                let mut set = tags.load(Ordering::Acquire) & BYTE_HI;
                while set != 0 {
                    let lane = k * 8 + set.trailing_zeros() as usize / 8;
                    set &= set - 1;
                    let i = b * SLOTS_PER_BUCKET + lane;
                    let w = self.slot(i).load(Ordering::Acquire);
                    if w.state() != State::Live {
                        continue;
                    }
                    if let Some(r) = self.read(InstanceId {
                        slot: i as u32,
                        gen: w.gen(),
                    }) {
                        f(&r);
                    }
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn key(n: u64) -> InstanceKey {
        InstanceKey {
            lo: n,
            hi: n.rotate_left(17) ^ 0x9e37,
        }
    }

    /// Claims and publishes (pool 3, count 2, since 100, deadline 500).
    fn insert(t: &Table, k: InstanceKey, h: &HolderBuf) -> Result<InstanceId, Claim> {
        match t.claim(k) {
            Claim::Owned(c) => Ok(t.publish(
                c,
                &Fields {
                    pool: 3,
                    count: 2,
                    since: 100,
                    linger: 0,
                    deadline: 500,
                    holder: h,
                },
            )),
            other => Err(other),
        }
    }

    #[test]
    fn scan_flags_every_lane_with_the_fingerprint() {
        let t = Table::with_capacity(8); // one bucket
        let k = key(77);
        let tag = tag_of(k);
        // Other fingerprints that differ from `tag` in a high bit are never
        // flagged; those that differ only in the lowest bit may be, just
        // above a true match (the SWAR borrow; a key check rejects them).
        for (other, exact) in [(tag ^ 0x40, true), (tag ^ 0x01, false)] {
            for lanes in [0u32, 1, 0x8001, 0xffff, 0x0f0f, 0x1234, 0x8000] {
                for lane in 0..SLOTS_PER_BUCKET {
                    let byte = if lanes >> lane & 1 == 1 { tag } else { other };
                    let w = &t.hot[0].tags[lane / 8];
                    let shift = 8 * (lane % 8);
                    let old = w.load(Ordering::Relaxed) & !(0xff << shift);
                    w.store(old | u64::from(byte) << shift, Ordering::Relaxed);
                }
                let got = t.scan(0, k, Ordering::Relaxed);
                assert_eq!(got & lanes, lanes, "{lanes:#x} -> {got:#x}");
                if exact {
                    assert_eq!(got, lanes, "{lanes:#x} -> {got:#x}");
                }
            }
        }
    }

    #[test]
    fn word_round_trips() {
        let w = Word::new(State::Live, (1 << GEN_BITS) - 1, MAX_DEADLINE);
        assert_eq!(w.state(), State::Live);
        assert_eq!(w.gen(), (1 << GEN_BITS) - 1);
        assert_eq!(w.deadline(), MAX_DEADLINE);
        assert_eq!(w.next_gen(), 0);
        let w = Word::new(State::Releasing, 7, NO_DEADLINE);
        assert_eq!(
            (w.state(), w.gen(), w.deadline()),
            (State::Releasing, 7, NO_DEADLINE)
        );
    }

    #[test]
    fn claim_find_renew_release() {
        let t = Table::with_capacity(8);
        let h = HolderBuf::new("u", "h", "d", "x");
        let id = insert(&t, key(1), &h).unwrap();
        assert_eq!(t.find(key(1)), Some(id));
        assert_eq!(t.find(key(2)), None);
        let Err(Claim::Exists(found)) = insert(&t, key(1), &h) else {
            panic!("a second claim of a live key")
        };
        assert_eq!((found.id, found.pool, found.count), (id, 3, 2));
        assert_eq!(
            t.renew(&found, 900, 1),
            Renew::Renewed { old_deadline: 500 }
        );
        let r = t.read(id).unwrap();
        assert_eq!((r.pool, r.count, r.since, r.deadline), (3, 2, 100, 900));
        assert_eq!(r.holder.user(), "u");
        assert!(t.release(id, |d| d <= 800, |_| {}).is_none(), "not yet due");
        let mut credited = 0;
        let gone = t
            .release(id, |d| d <= 900, |r| credited += r.count)
            .unwrap();
        assert_eq!((gone.count, credited), (2, 2));
        assert!(
            t.release(id, |_| true, |_| {}).is_none(),
            "released once only"
        );
        assert_eq!(t.renew(&found, 1000, 1), Renew::Gone);
        assert_eq!(t.find(key(1)), None);
    }

    #[test]
    fn abandoned_claims_leave_no_trace() {
        let t = Table::with_capacity(2);
        let Claim::Owned(c) = t.claim(key(9)) else {
            panic!("not claimed")
        };
        t.abandon(c);
        assert_eq!(t.find(key(9)), None);
        let mut live = 0;
        t.for_each_live(|_| live += 1);
        assert_eq!(live, 0);
    }

    #[test]
    fn fills_up_and_reports_full() {
        let t = Table::with_capacity(1); // one bucket
        let h = HolderBuf::new("u", "h", "d", "x");
        let mut n = 0;
        while insert(&t, key(n), &h).is_ok() {
            n += 1;
        }
        assert_eq!(n as usize, t.slot_count());
        assert_eq!(insert(&t, key(n + 1), &h), Err(Claim::Full));
    }

    #[test]
    fn a_crowded_primary_bucket_spills_and_is_counted() {
        let t = Table::with_capacity(16); // two buckets of 16
        assert_eq!(t.buckets, 2);
        let h = HolderBuf::new("u", "h", "d", "x");
        // Keys whose primary is bucket 0 (and secondary bucket 1) stay
        // there until it is crowded.
        let key = |n: u64| InstanceKey { lo: n * 2, hi: n };
        let mut ids = Vec::new();
        for n in 0..u64::from(CROWDED) {
            let id = insert(&t, key(n), &h).unwrap();
            assert_eq!(id.slot / 16, 0);
            ids.push(id);
        }
        assert_eq!(t.hot[0].spilled.load(Ordering::Relaxed), 0);
        let spilled = key(100);
        let id = insert(&t, spilled, &h).unwrap();
        assert_eq!(id.slot / 16, 1, "in the emptier secondary bucket");
        assert_eq!(t.hot[0].spilled.load(Ordering::Relaxed), 1);
        assert_eq!(t.find(spilled), Some(id));
        assert!(matches!(insert(&t, spilled, &h), Err(Claim::Exists(f)) if f.id == id));
        // A key of bucket 0 that is absent is looked for in bucket 1 too,
        // and still not found.
        assert_eq!(t.find(key(101)), None);
        t.release(id, |_| true, |_| {}).unwrap();
        assert_eq!(t.hot[0].spilled.load(Ordering::Relaxed), 0);
        assert_eq!(t.find(spilled), None);
        // An abandoned spilled claim leaves the count as it found it.
        let Claim::Owned(c) = t.claim(key(200)) else {
            panic!("not claimed")
        };
        assert_eq!(t.hot[0].spilled.load(Ordering::Relaxed), 1);
        t.abandon(c);
        assert_eq!(t.hot[0].spilled.load(Ordering::Relaxed), 0);
        // No longer crowded: the key goes back to its primary.
        t.release(ids[3], |_| true, |_| {}).unwrap();
        let again = insert(&t, spilled, &h).unwrap();
        assert_eq!(again.slot / 16, 0);
        assert_eq!(t.hot[0].spilled.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_full_table_of_both_buckets_is_full() {
        let t = Table::with_capacity(16);
        let h = HolderBuf::new("u", "h", "d", "x");
        let mut n = 0;
        while insert(&t, InstanceKey { lo: n * 2, hi: n }, &h).is_ok() {
            n += 1;
        }
        assert_eq!(n, 32, "both buckets fill before a claim fails");
    }

    #[test]
    fn reuses_released_slots_with_new_generation() {
        let t = Table::with_capacity(1);
        let h = HolderBuf::new("u", "h", "d", "x");
        let a = insert(&t, key(5), &h).unwrap();
        t.release(a, |_| true, |_| {}).unwrap();
        let b = insert(&t, key(6), &h).unwrap();
        assert_eq!(a.slot, b.slot);
        assert_ne!(a.gen, b.gen);
        assert!(t.read(a).is_none());
        assert!(t.read(b).is_some());
    }
}

/// loom models of the spill protocol: a key whose primary bucket is full
/// lives in its secondary one, and two claimers of one key in different
/// buckets must still see each other. (The engine-level models in
/// `loom-tests` use one-bucket tables, where nothing spills.)
///
/// `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p tally-core --lib --release`
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Two buckets of two slots: bucket = `lo & 1` (primary), `hi & 1`
    /// (secondary; the next bucket if equal).
    /// `loom::model` with room for the spins of a claim that waits for its
    /// twin (more branches than the default 1,000).
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.max_branches = 100_000;
        b.check(f);
    }

    fn table() -> Table {
        let t = Table::with_capacity(2);
        assert_eq!(t.buckets, 2);
        t
    }

    fn key(lo: u64, hi: u64) -> InstanceKey {
        InstanceKey { lo, hi }
    }

    /// The key the models race on: primary bucket 0.
    const RACED: InstanceKey = InstanceKey { lo: 0, hi: 1 };

    /// Takes `k` as the engine does: renew a live instance, else claim and
    /// publish. Returns the instance and whether it is new.
    fn take(t: &Table, k: InstanceKey) -> (InstanceId, bool) {
        let holder = HolderBuf::new("u", "h", "", "x");
        loop {
            if let Lookup::Live(found) = t.lookup(k) {
                return (found.id, false);
            }
            match t.claim(k) {
                Claim::Owned(c) => {
                    let f = Fields {
                        pool: 0,
                        count: 1,
                        since: 0,
                        linger: 0,
                        deadline: NO_DEADLINE,
                        holder: &holder,
                    };
                    return (t.publish(c, &f), true);
                }
                Claim::Exists(found) => return (found.id, false),
                Claim::Retry => {}
                Claim::Full => panic!("table full"),
            }
        }
    }

    fn live_with(t: &Table, k: InstanceKey) -> usize {
        let mut n = 0;
        t.for_each_live(|r| n += usize::from(r.key == k));
        n
    }

    /// Fills bucket 0 (the raced key's primary) with two other keys.
    fn fill_primary(t: &Table) -> [InstanceId; 2] {
        // Fingerprints other than the raced key's (bits 57.. of `hi`).
        let a = take(t, key(2, 1 << 58)).0;
        let b = take(t, key(4, 2 << 58)).0;
        assert_eq!((a.slot / 2, b.slot / 2), (0, 0), "both in bucket 0");
        [a, b]
    }

    #[test]
    fn spilled_twins_make_one_instance() {
        model(|| {
            let t = Arc::new(table());
            fill_primary(&t);
            let t2 = t.clone();
            let other = thread::spawn(move || take(&t2, RACED));
            let mine = take(&t, RACED);
            let theirs = other.join().unwrap();
            assert_eq!(mine.0, theirs.0, "one instance");
            assert!(mine.1 ^ theirs.1, "exactly one new: {mine:?} {theirs:?}");
            assert_eq!(mine.0.slot / 2, 1, "spilled into bucket 1");
            assert_eq!(live_with(&t, RACED), 1);
        });
    }

    #[test]
    fn a_twin_in_the_primary_sees_a_spilled_one() {
        model(|| {
            let t = Arc::new(table());
            let [a, _] = fill_primary(&t);
            let t2 = t.clone();
            // Frees a primary slot, so this claimer may land in bucket 0
            // while the other one spills into bucket 1.
            let other = thread::spawn(move || {
                t2.release(a, |_| true, |_| {}).expect("released");
                take(&t2, RACED)
            });
            let mine = take(&t, RACED);
            let theirs = other.join().unwrap();
            assert_eq!(mine.0, theirs.0, "one instance");
            assert!(mine.1 ^ theirs.1, "exactly one new: {mine:?} {theirs:?}");
            assert_eq!(live_with(&t, RACED), 1);
        });
    }

    #[test]
    fn a_spilled_release_is_uncounted() {
        model(|| {
            let t = Arc::new(table());
            fill_primary(&t);
            let (id, _) = take(&t, RACED);
            assert_eq!(t.hot[0].spilled.load(Ordering::Relaxed), 1);
            let t2 = t.clone();
            let other = thread::spawn(move || t2.release(id, |_| true, |_| {}).is_some());
            let found = t.find(RACED);
            assert!(other.join().unwrap());
            assert!(found.is_none() || found == Some(id));
            assert_eq!(t.hot[0].spilled.load(Ordering::Relaxed), 0);
            assert_eq!(t.find(RACED), None);
        });
    }
}
