//! The identity of an instance: which checkouts are "the same" one.
//!
//! A checkout's key is a 128-bit hash of the fields its duplicate grouping
//! names (the handle by default; user, host and/or display under
//! `DUP_GROUP`), under a seed that is the feature's own.
//!
//! - **Per feature, once:** the seed is a SipHash-1-3 (a keyed PRF) of the
//!   engine's secret, the feature's name and its grouping. It is secret
//!   like the engine's key, and differs between features.
//! - **Per checkout:** XXH3-128 of the fields under that seed: the handle
//!   alone (one field needs no separator), or, under `DUP_GROUP`, each
//!   field length-prefixed so `("ab","c")` and `("a","bc")` differ. XXH3
//!   costs about a tenth of SipHash-128 on a short handle; it is the one
//!   hash every checkout and check-in pays.
//!
//! Two distinct field sets collide with probability about 2^-128 per pair.
//! XXH3 is not a cryptographic PRF, so against a client that *searches* for
//! a collision the defence is that the seed is secret; and a collision
//! would gain such a client nothing it lacks anyway, since any client may
//! name another's handle. Bucket placement (the key's two halves) is
//! likewise unknown without the seed, so a client cannot aim its keys at
//! one bucket to crowd others out.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;
use xxhash_rust::xxh3::{xxh3_128_with_seed, Xxh3};

use crate::license::DupGroup;

/// A 128-bit instance key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct InstanceKey {
    pub(crate) lo: u64,
    pub(crate) hi: u64,
}

impl From<u128> for InstanceKey {
    fn from(h: u128) -> InstanceKey {
        InstanceKey {
            lo: h as u64,
            hi: (h >> 64) as u64,
        }
    }
}

/// The secret that keys instance hashes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeySeed(pub(crate) u64, pub(crate) u64);

/// The fields a key may be built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyFields<'a> {
    pub(crate) user: &'a str,
    pub(crate) host: &'a str,
    pub(crate) display: &'a str,
    pub(crate) handle: &'a str,
}

/// A feature's key function: its secret seed (derived once per engine from
/// the name and grouping) and its grouping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyPrefix {
    seed: u64,
    dup: DupGroup,
}

impl KeyPrefix {
    pub(crate) fn new(seed: KeySeed, feature: &str, dup: DupGroup) -> KeyPrefix {
        let mut h = SipHasher13::new_with_keys(seed.0, seed.1);
        h.write_usize(feature.len());
        h.write(feature.as_bytes());
        h.write_u8(dup.mask());
        KeyPrefix {
            seed: h.finish(),
            dup,
        }
    }

    /// The feature's duplicate grouping.
    pub(crate) fn dup(&self) -> DupGroup {
        self.dup
    }

    /// The key of a checkout with these fields, under the feature's
    /// grouping. Inlined: the handle's hash (every checkout and check-in
    /// of a feature without DUP_GROUP) takes its bytes straight from the
    /// caller, not a call with the four fields on the stack.
    #[inline(always)]
    pub(crate) fn key(&self, f: KeyFields<'_>) -> InstanceKey {
        if self.dup.is_by_handle() {
            return xxh3_128_with_seed(f.handle.as_bytes(), self.seed).into();
        }
        self.grouped_key(f)
    }

    /// [`KeyPrefix::key`] under a `DUP_GROUP` (kept out of the inlined
    /// path).
    #[inline(never)]
    fn grouped_key(&self, f: KeyFields<'_>) -> InstanceKey {
        let mut h = Xxh3::with_seed(self.seed);
        let mut field = |s: &str| {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        let m = self.dup.mask();
        if m & DupGroup::USER != 0 {
            field(f.user);
        }
        if m & DupGroup::HOST != 0 {
            field(f.host);
        }
        if m & DupGroup::DISPLAY != 0 {
            field(f.display);
        }
        // VENDOR adds nothing: the feature already names the vendor.
        h.digest128().into()
    }
}

impl InstanceKey {
    /// The key of a checkout of `feature` under grouping `dup` (for tests;
    /// the engine keeps a [`KeyPrefix`] per feature).
    #[cfg(test)]
    pub(crate) fn new(
        seed: KeySeed,
        feature: &str,
        dup: DupGroup,
        f: KeyFields<'_>,
    ) -> InstanceKey {
        KeyPrefix::new(seed, feature, dup).key(f)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const SEED: KeySeed = KeySeed(1, 2);

    fn fields<'a>(user: &'a str, host: &'a str, handle: &'a str) -> KeyFields<'a> {
        KeyFields {
            user,
            host,
            display: "d",
            handle,
        }
    }

    #[test]
    fn handle_grouping_ignores_user_and_host() {
        let by = DupGroup::by_handle();
        let a = InstanceKey::new(SEED, "F0", by, fields("u1", "h1", "x"));
        let b = InstanceKey::new(SEED, "F0", by, fields("u2", "h2", "x"));
        let c = InstanceKey::new(SEED, "F0", by, fields("u1", "h1", "y"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, InstanceKey::new(SEED, "F1", by, fields("u1", "h1", "x")));
    }

    #[test]
    fn dup_group_widens_sameness() {
        let uh = DupGroup::parse("UH").unwrap();
        let a = InstanceKey::new(SEED, "F0", uh, fields("u", "h", "x"));
        let b = InstanceKey::new(SEED, "F0", uh, fields("u", "h", "y"));
        let c = InstanceKey::new(SEED, "F0", uh, fields("u", "h2", "x"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let v = DupGroup::parse("V").unwrap();
        assert_eq!(
            InstanceKey::new(SEED, "F0", v, fields("a", "b", "c")),
            InstanceKey::new(SEED, "F0", v, fields("d", "e", "f"))
        );
    }

    #[test]
    fn fields_are_length_prefixed() {
        let uh = DupGroup::parse("UH").unwrap();
        let a = InstanceKey::new(SEED, "F0", uh, fields("ab", "c", "x"));
        let b = InstanceKey::new(SEED, "F0", uh, fields("a", "bc", "x"));
        assert_ne!(a, b);
    }
}
