//! The identity of an instance: which checkouts are "the same" one.
//!
//! A checkout's key is a 128-bit SipHash-1-3 of the feature's name and the
//! fields
//! its duplicate grouping names (the handle by default; user, host and/or
//! display under `DUP_GROUP`), each length-prefixed so `("ab","c")` and
//! `("a","bc")` differ. The hash keys are the engine's secret seed, so a
//! client cannot aim a collision at another client's instance; two distinct
//! keys collide with probability about 2^-128 per pair.

use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13};

use crate::license::DupGroup;

/// A 128-bit instance key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct InstanceKey {
    pub(crate) lo: u64,
    pub(crate) hi: u64,
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

/// The hash state after a feature's name and grouping: every checkout's key
/// continues from a copy of it, so the name is hashed once per engine, not
/// once per checkout. The result is the same as hashing the whole input.
#[derive(Debug, Clone)]
pub(crate) struct KeyPrefix {
    hasher: SipHasher13,
    dup: DupGroup,
}

impl KeyPrefix {
    pub(crate) fn new(seed: KeySeed, feature: &str, dup: DupGroup) -> KeyPrefix {
        let mut h = SipHasher13::new_with_keys(seed.0, seed.1);
        h.write_usize(feature.len());
        h.write(feature.as_bytes());
        h.write_u8(dup.mask());
        KeyPrefix { hasher: h, dup }
    }

    /// The feature's duplicate grouping.
    pub(crate) fn dup(&self) -> DupGroup {
        self.dup
    }

    /// The key of a checkout with these fields, under the feature's
    /// grouping.
    pub(crate) fn key(&self, f: KeyFields<'_>) -> InstanceKey {
        let (mut h, dup) = (self.hasher, self.dup); // a copy: the prefix stays
        let mut field = |s: &str| {
            h.write_usize(s.len());
            h.write(s.as_bytes());
        };
        if dup.is_by_handle() {
            field(f.handle);
        } else {
            let m = dup.mask();
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
        }
        let out = h.finish128();
        InstanceKey {
            lo: out.h1,
            hi: out.h2,
        }
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
