//! Who holds an instance (user, host, display, handle), packed into a fixed
//! number of words so the table stores it inline without allocating.
//!
//! Layout of the [`META_BYTES`] bytes: four length bytes (user, host,
//! display, handle), then the four strings back to back. Text beyond
//! [`TEXT_BYTES`] in total is shortened for display only (each too-long field
//! is cut at a character boundary and ends in `~`); the instance's identity
//! is the key hash of the full strings, never this copy.

use crate::sync::{AtomicU64, Ordering};

/// Words of holder text stored per slot (with the slot's start time, two
/// cache lines).
#[cfg(not(loom))]
pub(crate) const META_WORDS: usize = 15;
/// Words of holder text stored per slot (small under loom).
#[cfg(loom)]
pub(crate) const META_WORDS: usize = 2;

/// Bytes of holder data per slot.
pub(crate) const META_BYTES: usize = META_WORDS * 8;
/// Bytes of text (after the four length bytes) per slot.
pub(crate) const TEXT_BYTES: usize = META_BYTES - 4;

/// A packed copy of the holder's names; `Copy`, no heap.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HolderBuf {
    bytes: [u8; META_BYTES],
}

impl std::fmt::Debug for HolderBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}:{} [{}]",
            self.user(),
            self.host(),
            self.display(),
            self.handle()
        )
    }
}

impl HolderBuf {
    /// Packs the four names, shortening them if they do not fit.
    #[inline]
    pub fn new(user: &str, host: &str, display: &str, handle: &str) -> HolderBuf {
        let fields = [user, host, display, handle];
        let total = user.len() + host.len() + display.len() + handle.len();
        if total > TEXT_BYTES {
            return Self::shortened(fields);
        }
        // Everything fits (the common case): lengths, then the text.
        let mut bytes = [0u8; META_BYTES];
        let mut at = 4;
        for (i, field) in fields.iter().enumerate() {
            bytes[i] = field.len() as u8;
            copy_short(&mut bytes[at..at + field.len()], field.as_bytes());
            at += field.len();
        }
        HolderBuf { bytes }
    }

    /// Whether these names fit a slot whole ([`HolderBuf::new`] keeps them
    /// as they are); if not, the table's copy is shortened and only the
    /// caller has the full names.
    pub fn fits(user: &str, host: &str, display: &str, handle: &str) -> bool {
        user.len() + host.len() + display.len() + handle.len() <= TEXT_BYTES
    }

    /// [`HolderBuf::new`] for names that do not fit: each too-long one is
    /// cut to the largest common limit under which all fit.
    #[cold]
    fn shortened(fields: [&str; 4]) -> HolderBuf {
        let limit = {
            // The largest per-field limit under which everything fits.
            let fits =
                |l: usize| fields.iter().map(|f| f.len().min(l)).sum::<usize>() <= TEXT_BYTES;
            (0..=255).rev().find(|&l| fits(l)).unwrap_or(0)
        };
        let mut bytes = [0u8; META_BYTES];
        let mut at = 4;
        for (i, field) in fields.iter().enumerate() {
            let kept = shorten(field, limit);
            let n = kept.len();
            bytes[at..at + n].copy_from_slice(kept.as_bytes());
            let mut len = n;
            if n < field.len() && limit > 0 {
                bytes[at + n] = b'~';
                len += 1;
            }
            bytes[i] = len as u8;
            at += len;
        }
        HolderBuf { bytes }
    }

    fn field(&self, i: usize) -> &str {
        std::str::from_utf8(self.field_bytes(i)).unwrap_or("?")
    }

    /// Field `i`'s bytes as stored (UTF-8, cut on a character boundary).
    #[inline]
    fn field_bytes(&self, i: usize) -> &[u8] {
        let start = 4 + self.bytes[..i]
            .iter()
            .map(|&b| usize::from(b))
            .sum::<usize>();
        let end = (start + usize::from(self.bytes[i])).min(META_BYTES);
        &self.bytes[start.min(end)..end]
    }

    /// The user name.
    pub fn user(&self) -> &str {
        self.field(0)
    }
    /// The host name.
    pub fn host(&self) -> &str {
        self.field(1)
    }
    /// The display (terminal) name.
    pub fn display(&self) -> &str {
        self.field(2)
    }
    /// The client's handle string.
    pub fn handle(&self) -> &str {
        self.field(3)
    }

    /// Words that hold the lengths and the text (the rest are zero).
    fn words_used(lengths: [u8; 4]) -> usize {
        let text: usize = lengths.iter().map(|&l| usize::from(l)).sum();
        (4 + text).div_ceil(8).min(META_WORDS)
    }

    /// Writes the packed bytes into a slot's words (relaxed; published by the
    /// slot word's release store). Only the words in use: short names touch
    /// one cache line, not the slot's whole holder area.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn store(&self, words: &[AtomicU64; META_WORDS]) {
        self.store_split(words, || &[]);
    }

    /// [`HolderBuf::store`] into words kept in two places: word `i` is
    /// `first[i]`, or `rest()[i - first.len()]` past `first` (the table
    /// keeps the first line's worth beside the slot's start time and the
    /// rest in an array that short names never touch, nor look up).
    /// `first.len() + rest().len()` must be [`META_WORDS`].
    #[inline]
    pub(crate) fn store_split<'w>(
        &self,
        first: &[AtomicU64],
        rest: impl FnOnce() -> &'w [AtomicU64],
    ) {
        let lengths = [self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]];
        let used = Self::words_used(lengths);
        let near = used.min(first.len());
        let store = |words: &[AtomicU64], bytes: &[u8]| {
            for (w, chunk) in words.iter().zip(bytes.chunks_exact(8)) {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                w.store(u64::from_le_bytes(b), Ordering::Relaxed);
            }
        };
        store(&first[..near], &self.bytes);
        if used > near {
            store(&rest()[..used - near], &self.bytes[8 * near..]);
        }
    }

    /// Reads the packed bytes back (relaxed; validated by the caller's
    /// generation check): the words [`HolderBuf::store`] wrote, the rest 0.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn load(words: &[AtomicU64; META_WORDS]) -> HolderBuf {
        Self::load_split(words, || &[])
    }

    /// [`HolderBuf::load`] from words kept as [`HolderBuf::store_split`]
    /// writes them: words past what the lengths say are not read (nor is
    /// `rest` called, if the first word says they fit `first`).
    #[inline]
    pub(crate) fn load_split<'w>(
        first: &[AtomicU64],
        rest: impl FnOnce() -> &'w [AtomicU64],
    ) -> HolderBuf {
        Self::load_fields_split(first, rest, 4)
    }

    /// [`HolderBuf::load_split`] of only the words that hold the lengths
    /// and the first `fields` names (user, host, …): the renewal's holder
    /// check reads user and host, often one word, not all of them. Fields
    /// past `fields` read as whatever of them those words hold (or empty).
    #[inline]
    pub(crate) fn load_fields_split<'w>(
        first: &[AtomicU64],
        rest: impl FnOnce() -> &'w [AtomicU64],
        fields: usize,
    ) -> HolderBuf {
        let mut bytes = [0u8; META_BYTES];
        let head = first[0].load(Ordering::Relaxed).to_le_bytes();
        bytes[..8].copy_from_slice(&head);
        let mut lengths = [head[0], head[1], head[2], head[3]];
        lengths[fields.min(4)..].fill(0);
        let used = Self::words_used(lengths);
        let near = used.min(first.len());
        let load = |words: &[AtomicU64], bytes: &mut [u8]| {
            for (w, chunk) in words.iter().zip(bytes.chunks_exact_mut(8)) {
                chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
        };
        load(&first[1..near], &mut bytes[8..]);
        if used > near {
            load(&rest()[..used - near], &mut bytes[8 * near..]);
        }
        HolderBuf { bytes }
    }
}

impl HolderBuf {
    /// [`HolderBuf::is_user_host`] of the holder stored in a slot's words
    /// (as [`HolderBuf::load_fields_split`] reads them), without building
    /// the `HolderBuf` when the stored user and host are whole (their
    /// lengths are the asked ones) and in the first words: those words
    /// alone are read and compared. Otherwise (a shortened name, or long
    /// ones) through a copy.
    #[inline]
    pub(crate) fn words_are_user_host<'w>(
        first: &[AtomicU64],
        rest: impl FnOnce() -> &'w [AtomicU64],
        user: &str,
        host: &str,
    ) -> bool {
        const NEAR: usize = 64;
        let head = first[0].load(Ordering::Relaxed);
        let (lu, lh) = (usize::from(head as u8), usize::from((head >> 8) as u8));
        let end = 4 + lu + lh;
        if lu != user.len() || lh != host.len() || end > (first.len() * 8).min(NEAR) {
            return Self::load_fields_split(first, rest, 2).is_user_host(user, host);
        }
        let mut bytes = [0u8; NEAR];
        bytes[..8].copy_from_slice(&head.to_le_bytes());
        let used = end.div_ceil(8);
        for (w, chunk) in first[1..used].iter().zip(bytes[8..].chunks_exact_mut(8)) {
            chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        eq_short(&bytes[4..4 + lu], user.as_bytes())
            && eq_short(&bytes[4 + lu..end], host.as_bytes())
    }

    /// Whether this holder's user and host are `user` and `host`. A name
    /// this copy shortened (ending in `~`) matches every name it is a
    /// shortening of.
    /// Compared as bytes: the stored copy is valid UTF-8 cut on a
    /// character boundary, so a byte prefix is a character prefix (no
    /// `from_utf8` on the renewal path).
    #[inline]
    pub fn is_user_host(&self, user: &str, host: &str) -> bool {
        #[inline(always)]
        fn same(stored: &[u8], asked: &[u8]) -> bool {
            eq_short(stored, asked)
                || stored
                    .strip_suffix(b"~")
                    .is_some_and(|prefix| asked.len() > prefix.len() && asked.starts_with(prefix))
        }
        same(self.field_bytes(0), user.as_bytes()) && same(self.field_bytes(1), host.as_bytes())
    }
}

/// What a slot's holder text is written from at publish: a packed
/// [`HolderBuf`], or the names it would pack
/// ([`Names`](super::Names), packed straight into the slot's words, no
/// `HolderBuf` built in between, when they fit the first words).
pub(crate) trait StoreHolder {
    /// Writes the packed holder into a slot's words as
    /// [`HolderBuf::store_split`] does (the same words, the same bytes).
    fn store_holder<'w>(&self, first: &[AtomicU64], rest: impl FnOnce() -> &'w [AtomicU64]);
}

impl StoreHolder for HolderBuf {
    #[inline]
    fn store_holder<'w>(&self, first: &[AtomicU64], rest: impl FnOnce() -> &'w [AtomicU64]) {
        self.store_split(first, rest);
    }
}

impl StoreHolder for super::Names<&str> {
    /// The names' lengths and text, as [`HolderBuf::new`] packs them, put
    /// together in a buffer of the first words only and stored from there
    /// when they fit those words (names of up to 52 bytes together, say),
    /// else through a [`HolderBuf`].
    #[inline]
    fn store_holder<'w>(&self, first: &[AtomicU64], rest: impl FnOnce() -> &'w [AtomicU64]) {
        const NEAR: usize = 64;
        let fields = [self.user, self.host, self.display, self.handle];
        let total = fields.iter().map(|f| f.len()).sum::<usize>();
        let room = (first.len() * 8).min(NEAR);
        if 4 + total > room {
            HolderBuf::new(self.user, self.host, self.display, self.handle)
                .store_split(first, rest);
            return;
        }
        let mut bytes = [0u8; NEAR];
        let mut at = 4;
        for (i, field) in fields.iter().enumerate() {
            bytes[i] = field.len() as u8;
            copy_short(&mut bytes[at..at + field.len()], field.as_bytes());
            at += field.len();
        }
        let used = at.div_ceil(8);
        for (w, chunk) in first[..used].iter().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
    }
}

/// `dst.copy_from_slice(src)` for names of a few bytes without a call to
/// `memcpy`: up to 16 bytes as two overlapping 8- (or 4-) byte moves.
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    debug_assert_eq!(dst.len(), n);
    if (8..=16).contains(&n) {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if (4..8).contains(&n) {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else if n < 4 {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    } else {
        dst.copy_from_slice(src);
    }
}

/// `a == b` for names of a few bytes without a call to `memcmp`: up to 16
/// bytes as two overlapping 8- (or 4-) byte compares.
#[inline(always)]
fn eq_short(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let w8 = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
    let w4 = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or([0; 4]));
    if (8..=16).contains(&n) {
        w8(a, 0) == w8(b, 0) && w8(a, n - 8) == w8(b, n - 8)
    } else if (4..8).contains(&n) {
        w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4)
    } else if n < 4 {
        a.iter().zip(b).all(|(x, y)| x == y)
    } else {
        a == b
    }
}

/// `s` if it fits in `limit` bytes, else its longest prefix of at most
/// `limit - 1` bytes that ends on a character boundary (room for `~`).
fn shorten(s: &str, limit: usize) -> &str {
    if s.len() <= limit {
        return s;
    }
    let mut end = limit.saturating_sub(1);
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn short_names_round_trip() {
        let h = HolderBuf::new("USER15", "GENE-VM-2K3", "console", "ec26edf8");
        assert_eq!(h.user(), "USER15");
        assert_eq!(h.host(), "GENE-VM-2K3");
        assert_eq!(h.display(), "console");
        assert_eq!(h.handle(), "ec26edf8");
        let words: [AtomicU64; META_WORDS] = std::array::from_fn(|_| AtomicU64::new(0));
        h.store(&words);
        assert_eq!(HolderBuf::load(&words), h);
    }

    #[test]
    fn long_names_are_shortened_with_a_marker() {
        let host = "a-very-long-host-name.in.a.deep.subdomain.of.example.com.".repeat(3);
        let h = HolderBuf::new("alice", &host, "display-0", "handle");
        assert_eq!(h.user(), "alice");
        assert_eq!(h.display(), "display-0");
        assert_eq!(h.handle(), "handle");
        assert!(h.host().ends_with('~'));
        assert!(host.starts_with(&h.host()[..h.host().len() - 1]));
        let total = h.user().len() + h.host().len() + h.display().len() + h.handle().len();
        assert!(total <= TEXT_BYTES);
    }

    #[test]
    fn user_and_host_match_through_shortening() {
        let user = "u".repeat(200);
        let h = HolderBuf::new(&user, "pc1", "", &"h".repeat(150));
        assert!(h.user().ends_with('~'));
        assert!(h.is_user_host(&user, "pc1"));
        assert!(!h.is_user_host("u", "pc1"));
        assert!(!h.is_user_host(&user, "pc2"));
        let short = HolderBuf::new("alice", "pc1", "", "x");
        assert!(short.is_user_host("alice", "pc1"));
        assert!(!short.is_user_host("alicex", "pc1") && !short.is_user_host("mallory", "pc1"));
        // Multibyte names, cut on a character boundary, compare as bytes.
        let wide = "é".repeat(100);
        let w = HolderBuf::new(&wide, "pc1", "", &"h".repeat(150));
        assert!(w.user().ends_with('~'));
        assert!(w.is_user_host(&wide, "pc1"));
        assert!(!w.is_user_host(&"e".repeat(100), "pc1"));
    }

    #[test]
    fn names_store_the_words_their_holder_buf_does() {
        use crate::engine::Names;
        let words = |n: usize| -> Vec<AtomicU64> { (0..n).map(|_| AtomicU64::new(0)).collect() };
        let long = "x".repeat(200);
        for total in [0, 1, 7, 8, 20, 51, 52, 53, 60, 116, 117, 300] {
            let user = &long[..total.min(3)];
            let host = &long[..total.saturating_sub(3).min(40)];
            let rest_len = total.saturating_sub(user.len() + host.len());
            let handle = &long[..rest_len.min(long.len())];
            let names = Names::new("F", user, host, handle);
            // Stale words of a previous owner: both leave them alike.
            let (f1, r1, f2, r2) = (words(7), words(8), words(7), words(8));
            for w in f1.iter().chain(&r1).chain(&f2).chain(&r2) {
                w.store(0x5a5a, Ordering::Relaxed);
            }
            names.store_holder(&f1, || &r1);
            names.holder().store_split(&f2, || &r2);
            let load = |w: &[AtomicU64]| {
                w.iter()
                    .map(|w| w.load(Ordering::Relaxed))
                    .collect::<Vec<_>>()
            };
            assert_eq!((load(&f1), load(&r1)), (load(&f2), load(&r2)), "{total}");
            assert_eq!(
                HolderBuf::load_split(&f1, || &r1),
                names.holder(),
                "{total}"
            );
        }
    }

    #[test]
    fn stored_words_match_user_and_host_as_the_holder_does() {
        let words = |n: usize| -> Vec<AtomicU64> { (0..n).map(|_| AtomicU64::new(0)).collect() };
        let (long, wide) = ("u".repeat(200), "é".repeat(100));
        let names = [
            ("alice", "pc1"),
            ("", ""),
            ("bob", ""),
            ("USER15", "GENE-VM-2K3"),
            ("a-user-of-twenty-one", "a-host-name-of-twenty-nine-b"),
            (long.as_str(), "pc1"),
            (wide.as_str(), "pc1"),
        ];
        for (user, host) in names {
            let h = HolderBuf::new(user, host, "disp", &"h".repeat(150));
            let (first, rest) = (words(7), words(8));
            h.store_split(&first, || &rest);
            for (u, o) in names
                .iter()
                .flat_map(|&(u, _)| names.iter().map(move |&(_, o)| (u, o)))
            {
                assert_eq!(
                    HolderBuf::words_are_user_host(&first, || &rest, u, o),
                    h.is_user_host(u, o),
                    "{user:?}@{host:?} asked {u:?}@{o:?}"
                );
            }
        }
    }

    #[test]
    fn eq_short_is_slice_equality() {
        let a: Vec<u8> = (0..40u8).collect();
        for n in 0..=a.len() {
            let x = &a[..n];
            assert!(eq_short(x, x), "{n}");
            for i in 0..n {
                let mut y = x.to_vec();
                y[i] ^= 1;
                assert!(!eq_short(x, &y), "{n} {i}");
            }
            if n > 0 {
                assert!(!eq_short(x, &a[..n - 1]), "{n}");
            }
        }
    }

    #[test]
    fn multibyte_text_is_cut_on_a_boundary() {
        let user = "é".repeat(100);
        let h = HolderBuf::new(&user, &user, "d", "h");
        assert!(h.user().ends_with('~'));
        assert!(h.user().trim_end_matches('~').chars().all(|c| c == 'é'));
    }
}
