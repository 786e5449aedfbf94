//! Who holds an instance (user, host, display, handle), packed into a fixed
//! number of words so the table stores it inline without allocating.
//!
//! Layout of the [`META_BYTES`] bytes: four length bytes (user, host,
//! display, handle), then the four strings back to back. Text beyond
//! [`TEXT_BYTES`] in total is shortened for display only (each too-long field
//! is cut at a character boundary and ends in `~`); the instance's identity
//! is the key hash of the full strings, never this copy.

use crate::sync::{AtomicU64, Ordering};

/// Words of holder text stored per slot.
#[cfg(not(loom))]
pub(crate) const META_WORDS: usize = 16;
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
    pub fn new(user: &str, host: &str, display: &str, handle: &str) -> HolderBuf {
        let fields = [user, host, display, handle];
        let total: usize = fields.iter().map(|f| f.len().min(255)).sum();
        let limit = if total <= TEXT_BYTES {
            255
        } else {
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
        let start = 4 + self.bytes[..i]
            .iter()
            .map(|&b| usize::from(b))
            .sum::<usize>();
        let end = (start + usize::from(self.bytes[i])).min(META_BYTES);
        std::str::from_utf8(&self.bytes[start.min(end)..end]).unwrap_or("?")
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

    /// Writes the packed bytes into a slot's words (relaxed; published by the
    /// slot word's release store).
    pub(crate) fn store(&self, words: &[AtomicU64; META_WORDS]) {
        for (w, chunk) in words.iter().zip(self.bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
    }

    /// Reads the packed bytes back (relaxed; validated by the caller's
    /// generation check).
    pub(crate) fn load(words: &[AtomicU64; META_WORDS]) -> HolderBuf {
        let mut bytes = [0u8; META_BYTES];
        for (w, chunk) in words.iter().zip(bytes.chunks_exact_mut(8)) {
            chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        HolderBuf { bytes }
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
    fn multibyte_text_is_cut_on_a_boundary() {
        let user = "é".repeat(100);
        let h = HolderBuf::new(&user, &user, "d", "h");
        assert!(h.user().ends_with('~'));
        assert!(h.user().trim_end_matches('~').chars().all(|c| c == 'é'));
    }
}
