//! One level of the checkout table: a fixed array of buckets and the cold
//! data of their slots, allocated once, when the table publishes it, and
//! never moved, resized or freed while the table lives. Everything here is
//! local to the level: slot indices are *local* (0 = the level's first
//! slot); the table adds [`Level::offset`] to make the global index an
//! [`InstanceId`](super::InstanceId) carries.
//!
//! A bucket's fingerprints, spill count and slots are described in the
//! table's module docs; this file only lays them out and scans them.

use super::super::holder::META_WORDS;
use super::super::key::InstanceKey;
use super::super::uses::BucketUses;
use super::{Extras, State, Word};
use crate::sync::{fence, AtomicU32, AtomicU64, Mutex, Ordering};

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
pub(super) const CROWDED: u32 = SLOTS_PER_BUCKET as u32 * 3 / 4;
/// A new key goes to its primary bucket unless that has this many slots in
/// use (then to the emptier of its two). Under loom: only when full, so
/// the models place keys where they expect.
#[cfg(loom)]
pub(super) const CROWDED: u32 = SLOTS_PER_BUCKET as u32;

/// Words of fingerprint bytes per bucket: one byte per slot.
const TAG_WORDS: usize = SLOTS_PER_BUCKET.div_ceil(8);
/// The low bit of every byte of a word.
const BYTE_LO: u64 = 0x0101_0101_0101_0101;
/// The high bit of every byte of a word (set in every fingerprint).
pub(super) const BYTE_HI: u64 = 0x8080_8080_8080_8080;

/// A bit per lane of a bucket.
const LANES: u32 = (1 << SLOTS_PER_BUCKET) - 1;

/// A key's fingerprint byte: 7 bits of the key, high bit set so that it is
/// never 0 (the byte of an empty slot). The bits are not the ones that
/// choose the buckets.
#[inline]
pub(super) fn tag_of(key: InstanceKey) -> u8 {
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
pub(super) struct Bucket {
    /// Byte `lane % 8` of word `lane / 8` is the fingerprint of the key in
    /// slot `lane` from just after its CLAIMING store until just before
    /// its FREE store, else 0. Only the slot's owner changes its byte, by
    /// XOR, so concurrent owners of other lanes never undo each other.
    pub(super) tags: [AtomicU64; TAG_WORDS],
    /// Keys whose primary bucket (in this level) this is that are in their
    /// secondary one, counted from before their fingerprint is set there
    /// until after it is cleared. While 0, a lookup need not look at the
    /// secondary bucket.
    pub(super) spilled: AtomicU32,
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

/// Holder words kept beside the start time, in the cold array: with the
/// four length bytes, 52 bytes of names (of [`META_WORDS`]).
const FIRST_WORDS: usize = if META_WORDS < 7 { META_WORDS } else { 7 };
/// Holder words kept apart, in the level's second cold array ([`ColdRest`]).
const REST_WORDS: usize = META_WORDS - FIRST_WORDS;

/// A slot's cold data: read only for status, logging and release. One
/// cache line, aligned: the start time and the first [`FIRST_WORDS`] words
/// of the holder's names, which is all of them unless they are long (more
/// than 52 bytes together); the rest are in a second array, [`ColdRest`],
/// whose pages short names never touch (so never bring into RSS: see
/// [`try_zeroed`]).
///
/// A level's cold arrays are lane-major: lane `l` of every bucket, then
/// lane `l + 1` (slot `b * SLOTS_PER_BUCKET + l` is at `l * buckets + b`).
/// A claim takes the first free lane of its bucket, so a level that is
/// lightly used (the newest, after it is published) writes only the first
/// lanes' stretch of the arrays, and the pages of the rest stay untouched
/// and out of RSS; bucket-major, every page would hold some bucket's
/// lane 0.
#[derive(Debug)]
#[repr(C, align(64))]
pub(super) struct Cold {
    /// Unix ms of the first checkout of this instance.
    pub(super) since: AtomicU64,
    pub(super) meta: [AtomicU64; FIRST_WORDS],
}

impl Cold {
    fn new() -> Cold {
        Cold {
            since: AtomicU64::new(0),
            meta: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The holder words of a slot past the first [`FIRST_WORDS`] (written and
/// read only for long names). One cache line.
#[derive(Debug)]
#[repr(C, align(64))]
pub(super) struct ColdRest(pub(super) [AtomicU64; REST_WORDS]);

impl ColdRest {
    fn new() -> ColdRest {
        ColdRest(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// One slot's fields, gathered from its bucket and the cold array. Only
/// `word` decides anything; the rest is published by it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot<'a> {
    pub(super) word: &'a AtomicU64,
    pub(super) key_lo: &'a AtomicU64,
    pub(super) key_hi: &'a AtomicU64,
    pub(super) grant: &'a AtomicU64,
    pub(super) linger: &'a AtomicU64,
    /// The level and the local index, for [`Slot::cold`].
    level: &'a Level,
    local: usize,
}

impl<'a> Slot<'a> {
    /// The slot's cold data (found only when asked for: most slot looks
    /// read the hot fields alone).
    #[inline]
    pub(super) fn cold(&self) -> &'a Cold {
        &self.level.cold[self.cold_index()]
    }

    /// The slot's holder words past [`Cold::meta`] (none under loom).
    #[inline]
    pub(super) fn cold_rest(&self) -> &'a [AtomicU64] {
        self.level
            .rest
            .get(self.cold_index())
            .map_or(&[], |r| &r.0[..])
    }

    /// The slot's index in the lane-major cold arrays.
    #[inline]
    fn cold_index(&self) -> usize {
        let (b, lane) = (self.local / SLOTS_PER_BUCKET, self.local % SLOTS_PER_BUCKET);
        lane * self.level.buckets() + b
    }

    #[inline]
    pub(super) fn load(&self, order: Ordering) -> Word {
        Word(self.word.load(order))
    }

    /// True if this slot's published key is `key`. Call only after an
    /// acquire load saw CLAIMING, LIVE or RELEASING; confirm with a second
    /// load of the word (the key is rewritten once the slot is FREE again).
    #[inline]
    pub(super) fn key_is(&self, key: InstanceKey) -> bool {
        self.key_lo.load(Ordering::Relaxed) == key.lo
            && self.key_hi.load(Ordering::Relaxed) == key.hi
    }
}

/// `n` values made by `f`, or `None` if the memory cannot be had: a level
/// that cannot be allocated is a full table, never an abort.
fn try_boxed<T>(n: usize, f: impl FnMut() -> T) -> Option<Box<[T]>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.extend(std::iter::repeat_with(f).take(n));
    Some(v.into_boxed_slice())
}

/// A type whose every field is an atomic integer (or an array of them)
/// initialised to 0 by `new`: all-zero bytes are that value.
///
/// # Safety
///
/// All-zero bytes must be a valid value of the type, equal to the one
/// its `new` makes.
unsafe trait ZeroIsNew {}

/// `n` values as `new` makes them, or `None` if the memory cannot be had.
/// Outside loom the memory comes zeroed from the allocator's `calloc`,
/// untouched: a large allocation is fresh pages the kernel maps on first
/// touch, so the part of a level no slot has used yet stays out of the
/// process's RSS (a newly published level is mostly empty). Under loom,
/// whose atomics are not plain integers, each value is made with `new`.
#[cfg(loom)]
fn try_zeroed<T: ZeroIsNew>(n: usize, new: fn() -> T) -> Option<Zeroed<T>> {
    try_boxed(n, new)
}

/// Under loom, a level's arrays are plain boxes.
#[cfg(loom)]
type Zeroed<T> = Box<[T]>;

/// See the loom version.
#[cfg(not(loom))]
fn try_zeroed<T: ZeroIsNew>(n: usize, new: fn() -> T) -> Option<Zeroed<T>> {
    let _ = new; // all-zero bytes are its value (`ZeroIsNew`)
    Zeroed::new(n)
}

/// A fixed array of `T` in zeroed memory (outside loom). Not a
/// `Box<[T]>`: the global allocator's `alloc_zeroed` writes the zeros
/// itself for an alignment above 16 (a bucket's and a cold slot's are 64),
/// touching every page; this asks for alignment 16, which `calloc` serves
/// from fresh pages, and aligns the start itself within 64 spare bytes.
#[cfg(not(loom))]
struct Zeroed<T> {
    /// The first value (aligned for `T`).
    ptr: std::ptr::NonNull<T>,
    len: usize,
    /// The allocation and its layout, for `dealloc`.
    base: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

#[cfg(not(loom))]
impl<T: ZeroIsNew> Zeroed<T> {
    /// Alignment asked of the allocator: what `calloc` gives.
    const BASE_ALIGN: usize = 16;

    fn new(n: usize) -> Option<Zeroed<T>> {
        let align = std::mem::align_of::<T>();
        let size = std::mem::size_of::<T>()
            .checked_mul(n)?
            .checked_add(align)?;
        let layout = std::alloc::Layout::from_size_align(size, Self::BASE_ALIGN.min(align)).ok()?;
        // Safety: the layout's size is at least `align`, so not 0.
        let base = std::ptr::NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        let skip = base.as_ptr().align_offset(align);
        if skip > align {
            // Safety: `base` was allocated just above with `layout`.
            unsafe { std::alloc::dealloc(base.as_ptr(), layout) };
            return None;
        }
        // Safety: `skip <= align` and `align` spare bytes were allocated,
        // so the `n` values from `base + skip` lie within the allocation.
        let ptr = unsafe { base.add(skip) }.cast::<T>();
        Some(Zeroed {
            ptr,
            len: n,
            base,
            layout,
        })
    }
}

#[cfg(not(loom))]
impl<T> std::ops::Deref for Zeroed<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // Safety: `ptr` is aligned for `T` and starts `len` values within
        // a live allocation (`new`), all initialised: zero bytes, a valid
        // `T` (`ZeroIsNew`, required by `new`); shared only as `&[T]`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

#[cfg(not(loom))]
impl<T> Drop for Zeroed<T> {
    fn drop(&mut self) {
        // Safety: the values are initialised and ours (`&mut self`);
        // dropped once, then the allocation is freed with the layout it
        // was made with.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.len,
            ));
            std::alloc::dealloc(self.base.as_ptr(), self.layout);
        }
    }
}

// Safety: a `Zeroed<T>` owns its values as a `Box<[T]>` does.
#[cfg(not(loom))]
unsafe impl<T: Send> Send for Zeroed<T> {}
// Safety: as for `Send`: shared access is `&[T]`.
#[cfg(not(loom))]
unsafe impl<T: Sync> Sync for Zeroed<T> {}

#[cfg(not(loom))]
impl<T: std::fmt::Debug> std::fmt::Debug for Zeroed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zeroed").field("len", &self.len).finish()
    }
}

// Safety: a `Bucket` is atomics only; `Bucket::new` sets the tags and the
// spill count to 0 and every slot to 0, its word FREE of generation 0 with
// no deadline, which is the word 0 (the table's unit test
// `the_zero_word_is_free_of_generation_zero`).
unsafe impl ZeroIsNew for Bucket {}

// Safety: a `Cold` is atomics only, all 0 from `Cold::new`.
unsafe impl ZeroIsNew for Cold {}

// Safety: a `ColdRest` is atomics only, all 0 from `ColdRest::new`.
unsafe impl ZeroIsNew for ColdRest {}

// Safety: an atomic integer's bytes are the integer's; 0 is `new(0)` (outside
// loom, the only place `try_zeroed` relies on it).
unsafe impl ZeroIsNew for AtomicU64 {}

/// One level: `buckets` buckets (a power of two), their cold slots and,
/// in an engine with an options file, one charge record per slot; in an
/// engine with DUP_GROUP features, one lock per bucket over the uses of its
/// shared instances.
#[derive(Debug)]
pub(super) struct Level {
    hot: Zeroed<Bucket>,
    cold: Zeroed<Cold>,
    /// The holder words of each slot past its `Cold` ones (empty if there
    /// are none: under loom).
    rest: Zeroed<ColdRest>,
    /// The options' charge record of each slot (`policy.rs`), or empty.
    charges: Zeroed<AtomicU64>,
    /// The DUP_GROUP uses of each bucket's shared instances
    /// (`engine/uses.rs`), or empty.
    uses: Box<[Mutex<BucketUses>]>,
    /// `buckets - 1`.
    mask: usize,
    /// Global index of the level's first slot.
    pub(super) offset: usize,
}

impl Level {
    /// A level of `buckets` buckets (a power of two) whose first slot has
    /// global index `offset`, with the `extras` asked for; `None` if the
    /// memory cannot be allocated.
    pub(super) fn try_new(buckets: usize, offset: usize, extras: Extras) -> Option<Level> {
        debug_assert!(buckets.is_power_of_two());
        let slots = buckets.checked_mul(SLOTS_PER_BUCKET)?;
        Some(Level {
            hot: try_zeroed(buckets, Bucket::new)?,
            cold: try_zeroed(slots, Cold::new)?,
            rest: try_zeroed(if REST_WORDS > 0 { slots } else { 0 }, ColdRest::new)?,
            charges: try_zeroed(if extras.charges { slots } else { 0 }, || AtomicU64::new(0))?,
            uses: try_boxed(if extras.uses { buckets } else { 0 }, || {
                Mutex::new(BucketUses::default())
            })?,
            mask: buckets - 1,
            offset,
        })
    }

    /// Asks the CPU to start loading the first `bytes` of the bucket
    /// starting at slot `start` (its fingerprints, then its slots' words),
    /// without waiting for them: a hint, which changes nothing a thread
    /// sees.
    #[inline]
    pub(super) fn prefetch_bucket(&self, start: usize, bytes: usize) {
        let bucket: *const Bucket = &self.hot[start / SLOTS_PER_BUCKET];
        for line in (0..bytes.min(std::mem::size_of::<Bucket>())).step_by(64) {
            prefetch(bucket.cast::<u8>().wrapping_add(line));
        }
    }

    /// Number of buckets.
    pub(super) fn buckets(&self) -> usize {
        self.hot.len()
    }

    /// Number of slots.
    #[inline]
    pub(super) fn slots(&self) -> usize {
        self.cold.len()
    }

    /// Bytes of the level's arrays (not of the `Level` itself).
    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of_val::<[Bucket]>(&*self.hot)
            + std::mem::size_of_val::<[Cold]>(&*self.cold)
            + std::mem::size_of_val::<[ColdRest]>(&*self.rest)
            + std::mem::size_of_val::<[AtomicU64]>(&*self.charges)
            + std::mem::size_of_val::<[Mutex<BucketUses>]>(&self.uses)
    }

    /// The bucket at index `b`.
    pub(super) fn bucket(&self, b: usize) -> &Bucket {
        &self.hot[b]
    }

    /// Local slot `i` (bucket * SLOTS_PER_BUCKET + lane).
    #[inline]
    pub(super) fn slot(&self, i: usize) -> Slot<'_> {
        let (b, lane) = (i / SLOTS_PER_BUCKET, i % SLOTS_PER_BUCKET);
        let hot = &self.hot[b].slots[lane];
        Slot {
            word: &hot.word,
            key_lo: &hot.key_lo,
            key_hi: &hot.key_hi,
            grant: &hot.grant,
            linger: &hot.linger,
            level: self,
            local: i,
        }
    }

    /// The charge record of local slot `i`, if the level keeps them.
    #[inline]
    pub(super) fn charge(&self, i: usize) -> Option<&AtomicU64> {
        self.charges.get(i)
    }

    /// The DUP_GROUP uses of the bucket of local slot `i` and the slot's
    /// lane in it, if the level keeps them.
    #[inline]
    pub(super) fn uses(&self, i: usize) -> Option<(&Mutex<BucketUses>, u8)> {
        let m = self.uses.get(i / SLOTS_PER_BUCKET)?;
        Some((m, (i % SLOTS_PER_BUCKET) as u8))
    }

    /// The first local slot index of the key's primary and secondary
    /// buckets in this level (equal when the level has a single bucket).
    #[inline]
    pub(super) fn buckets_of(&self, key: InstanceKey) -> [usize; 2] {
        let a = (key.lo as usize) & self.mask;
        let mut b = (key.hi as usize) & self.mask;
        if b == a && self.mask != 0 {
            b = (a + 1) & self.mask;
        }
        [a * SLOTS_PER_BUCKET, b * SLOTS_PER_BUCKET]
    }

    /// Slots of the bucket starting at slot `start` whose fingerprint is set
    /// (claimed or live), as one thread sees them now.
    #[inline]
    fn used(&self, start: usize) -> u32 {
        self.hot[start / SLOTS_PER_BUCKET]
            .tags
            .iter()
            .map(|t| (t.load(Ordering::Relaxed) & BYTE_HI).count_ones())
            .sum()
    }

    /// Whether the bucket starting at slot `start` has [`CROWDED`] slots in
    /// use, without counting them while its last fingerprint word is empty
    /// (then at most the other words' lanes are: fewer than `CROWDED`), as
    /// it is in a bucket that is not crowded, whose claims take the first
    /// free lanes.
    #[inline]
    fn crowded(&self, start: usize) -> bool {
        const _: () = assert!(8 * (TAG_WORDS - 1) < CROWDED as usize);
        let tags = &self.hot[start / SLOTS_PER_BUCKET].tags;
        tags[TAG_WORDS - 1].load(Ordering::Relaxed) & BYTE_HI != 0 && self.used(start) >= CROWDED
    }

    /// The spill count of the bucket starting at slot `start`.
    #[inline]
    pub(super) fn spilled(&self, start: usize) -> &AtomicU32 {
        &self.hot[start / SLOTS_PER_BUCKET].spilled
    }

    /// One pass over the fingerprints of the bucket starting at slot
    /// `start`: a bit per lane whose fingerprint is `key`'s (a filter,
    /// confirmed by the table's `wait_for_key`; about one other key in 128
    /// passes it).
    ///
    /// A slot whose key is `key` has its bit set while LIVE, and from just
    /// after its CLAIMING store while claiming (see the table's `claim` for
    /// which claims a re-scan is sure to see).
    #[inline]
    pub(super) fn scan(&self, start: usize, key: InstanceKey, order: Ordering) -> u32 {
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
    #[inline]
    pub(super) fn candidates(
        &self,
        key: InstanceKey,
        spilled: bool,
        order: Ordering,
    ) -> ([usize; 2], usize) {
        let [a, b] = self.buckets_of(key);
        // Relaxed for a lookup: a claimer's count is ordered against a
        // racing claim by both sides' SeqCst accesses (table module docs);
        // a lookup that happens after a publish sees the count, raised
        // before it.
        let both = a != b && (spilled || self.spilled(a).load(order) != 0);
        ([a, b], if both { 2 } else { 1 })
    }

    /// XORs `tag` into local slot `i`'s fingerprint byte: sets it when the
    /// byte is 0, clears it when it is `tag`.
    #[inline]
    pub(super) fn flip_tag(&self, i: usize, tag: u8, order: Ordering) {
        let (b, lane) = (i / SLOTS_PER_BUCKET, i % SLOTS_PER_BUCKET);
        self.hot[b].tags[lane / 8].fetch_xor(u64::from(tag) << (8 * (lane % 8)), order);
    }

    /// Claims a FREE slot of this level for `key` (local index and its
    /// generation): in the key's primary bucket, unless it is crowded
    /// ([`CROWDED`]) and the secondary one is emptier; then in the other
    /// bucket if the first is full; `None` if both are full. (Always the
    /// primary first would read one bucket less, but overflows: at half
    /// load, buckets of 16 hold 8 keys on average and a few in a thousand
    /// get 17, so a table of a million seats filled up before all were out.
    /// Choosing the emptier of two only when crowded keeps the two-choice
    /// bound.)
    #[inline(always)]
    pub(super) fn reserve(&self, key: InstanceKey) -> Option<(usize, u32)> {
        let [a, b] = self.buckets_of(key);
        let n = if a == b { 1 } else { 2 };
        let order = if n == 2 && self.crowded(a) && self.used(b) < self.used(a) {
            [b, a]
        } else {
            [a, b]
        };
        for &start in &order[..n] {
            for i in start..start + SLOTS_PER_BUCKET {
                let slot = self.slot(i);
                let w = slot.load(Ordering::Relaxed);
                if !w.is(State::Free) {
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
}

/// Hints the CPU to load the cache line at `p` (nothing on targets without
/// a prefetch instruction here).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    // Safety: a prefetch is a hint: it reads nothing the program sees and
    // faults on no address, valid or not. SSE, which it needs, is part of
    // every x86_64 target.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    let _ = p;
}
