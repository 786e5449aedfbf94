//! Reread support: features a new license file drops while licenses of
//! theirs are out.
//!
//! Nothing held is revoked by a reread. For each feature of the old engine
//! that the new file lacks and that still has holders, a *retired* pool
//! (count 0, keyword [`RETIRED_KEYWORD`]) is added to the new license set,
//! so the instances move across, stay held and counted, and drain (check-in,
//! linger expiry, disconnect). New checkouts and renewals of it are denied
//! `NO_SUCH_FEATURE`.

use tally_core::engine::{Snapshot, RETIRED_KEYWORD};
use tally_core::license::{LicenseSet, PoolLine};

/// Adds a retired pool to `licenses` for every feature of `old` it lacks
/// that has holders. Returns how many were added.
pub fn keep_removed_features(licenses: &mut LicenseSet, old: &Snapshot) -> usize {
    let mut added = 0;
    for f in &old.features {
        let held = f.pools.iter().any(|p| !p.holders.is_empty());
        if !held || licenses.pools.iter().any(|p| p.feature == f.name) {
            continue;
        }
        // One pool of the highest version held, so every instance fits.
        let Some(version) = f
            .pools
            .iter()
            .filter(|p| !p.holders.is_empty())
            .map(|p| p.version.clone())
            .max()
        else {
            continue;
        };
        let mut line = PoolLine::new(&f.name, &f.vendor, version, Some(0));
        line.dup_group = f.dup_group;
        line.other
            .push((RETIRED_KEYWORD.to_string(), String::new()));
        licenses.pools.push(line);
        added += 1;
    }
    added
}
