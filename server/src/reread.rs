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

use crate::cmd::reread::Files;
use crate::shared::Shared;

/// Reads the files a REREAD compiles (`cmd::reread::prepare`): the license
/// file, and the options file it or `--options` names. The error text (for
/// `ERR REREAD_FAILED`) if either cannot be read, or the license file has
/// nothing to serve (as at start).
pub(crate) fn read_files(shared: &Shared) -> Result<Files, String> {
    let licenses =
        crate::server::load_licenses(shared.license_path.as_deref(), shared.vendor_key.as_ref())?;
    // The options file is reread with the license file; if it cannot be
    // read, nothing changes.
    let options_path = crate::options::locate(
        shared.policy.explicit.as_deref(),
        &licenses,
        shared.license_path.as_deref(),
    );
    let options = crate::options::load(options_path.as_deref()).map_err(|e| e.to_string())?;
    Ok(Files {
        licenses,
        options_path,
        options,
    })
}

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
