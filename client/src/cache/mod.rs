//! The offline cache file: a CRC-protected INI snapshot of the license
//! picture, in the shape of seed 001's `mps-wsxica_mps-wsxica.ini`, from
//! which [`crate::offline`] admits sessions when no server answers.
//!
//! ```text
//! [LSD]
//! Version=1
//! LicModel=1
//! LSName=lic1
//! LSPort=27000
//! ProdName=TALLY
//! ProdFeatName=CLIENT
//! Stamp=7f3a...
//! LastContact=1776848880000
//! CRC=...
//! SubSectionCount=1
//! [PLD_POOL_NODE_0]
//! PLD=MPS_ENT_CCU
//! HasMaxLicenseCount=0
//! CRC=...
//! SubSectionCount=1
//! [PLD_POOL_LIC_NODE_0_0]
//! NumLic=1000
//! ...
//! CRC=...
//! ```
//!
//! Every key, and the line and CRC rules, are described in docs/client.md
//! ("Offline cache"; the code is `cache/ini.rs` and `cache/format.rs`).
//! Reading ([`read`], [`Cache::parse`]) is strict: a file that is empty,
//! cut off, edited (a value changed under its old CRC), missing a section,
//! with a wrong SubSectionCount, a line without `=`, an unknown key or
//! bytes that are not UTF-8 is refused with a [`CacheError::Corrupt`]
//! naming the file, section and line, and nothing of it is used.
//!
//! Writing ([`store`]) is atomic: a temporary file in the same directory,
//! fsync, rename over the old file, fsync of the directory; a crash leaves
//! either the old file or the new one. [`store`] writes only when the
//! picture's terms changed (or the file is missing or unreadable), so an
//! unchanged picture costs one read.

mod format;
mod ini;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tally_core::clock::Millis;

use crate::picture::{Picture, PictureError, PoolTerms};

pub use format::{FORMAT_VERSION, LIC_MODEL_CONCURRENT, UNCOUNTED};

/// 1970-01-01 as a Windows FILETIME, in ms since 1601-01-01 UTC.
pub const FILETIME_UNIX_EPOCH_MS: u64 = 11_644_473_600_000;

/// FILETIME ticks (100 ns) per millisecond.
pub const FILETIME_TICKS_PER_MS: u64 = 10_000;

/// Default `ProdName=`: the program keeping the cache.
pub const DEFAULT_PROD_NAME: &str = "TALLY";

/// Default `ProdFeatName=`: its edition.
pub const DEFAULT_PROD_FEAT_NAME: &str = "CLIENT";

/// Unix ms as `LicExpTime` (100 ns ticks since 1601-01-01 UTC, seed 001's
/// unit: its `128615905200000000` is 2008-07-27 00:02:00 UTC, the evening
/// of 2008-07-26 in America). `None` past [`crate::picture::MAX_EXPIRY_MS`].
pub fn filetime_from_unix_ms(ms: u64) -> Option<u64> {
    ms.checked_add(FILETIME_UNIX_EPOCH_MS)?
        .checked_mul(FILETIME_TICKS_PER_MS)
}

/// A `LicExpTime` as Unix ms: it must be a whole millisecond, not before
/// 1970.
pub fn unix_ms_from_filetime(ticks: u64) -> Result<u64, String> {
    if ticks % FILETIME_TICKS_PER_MS != 0 {
        return Err(format!("LicExpTime {ticks} is not a whole millisecond"));
    }
    (ticks / FILETIME_TICKS_PER_MS)
        .checked_sub(FILETIME_UNIX_EPOCH_MS)
        .ok_or_else(|| format!("LicExpTime {ticks} is before 1970"))
}

/// What one cache file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    /// `ProdName`: the program that keeps the cache.
    pub prod_name: String,
    /// `ProdFeatName`: its edition.
    pub prod_feat_name: String,
    /// `LSName`: the server's host name, from the picture.
    pub server: String,
    /// `LSPort`: the server's port.
    pub port: u16,
    /// `Stamp`: the picture's version stamp.
    pub stamp: String,
    /// `LastContact`: when the picture was fetched, Unix ms (later contacts
    /// that found it unchanged are in the side file, see
    /// [`crate::offline`]).
    pub last_contact_ms: Millis,
    /// The pools, grouped by feature (see [`Cache::features`]); each with
    /// `gp_hours` set to the grace it gets ([`crate::grace::grace_hours`]).
    pub pools: Vec<PoolTerms>,
}

/// `ProdName` and `ProdFeatName` of a cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `ProdName`.
    pub prod_name: String,
    /// `ProdFeatName`.
    pub prod_feat_name: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            prod_name: DEFAULT_PROD_NAME.to_string(),
            prod_feat_name: DEFAULT_PROD_FEAT_NAME.to_string(),
        }
    }
}

/// A cache file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// It cannot be read or written.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// It is damaged or edited: refused.
    #[error("{}: [{section}] line {line}: {what}", file.display())]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// The section the problem is in (or the one expected there).
        section: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// The picture holds a value the file cannot carry (nothing written).
    #[error("{}: not written: {source}", file.display())]
    Picture {
        /// The file.
        file: PathBuf,
        /// What is wrong with the picture.
        source: PictureError,
    },
}

impl Cache {
    /// The cache of `picture`, fetched at `now`: pools grouped by feature,
    /// `gp_hours` resolved to the grace each pool gets, `in_use` left out.
    pub fn from_picture(picture: &Picture, identity: &Identity, now: Millis) -> Cache {
        let mut cache = Cache {
            prod_name: identity.prod_name.clone(),
            prod_feat_name: identity.prod_feat_name.clone(),
            server: picture.server.clone(),
            port: picture.port,
            stamp: picture.stamp.clone(),
            last_contact_ms: now,
            pools: picture.pools.iter().map(|p| p.terms.clone()).collect(),
        };
        let grouped: Vec<PoolTerms> = cache
            .features()
            .into_iter()
            .flat_map(|(_, pools)| pools.into_iter().cloned())
            .collect();
        cache.pools = grouped;
        for p in &mut cache.pools {
            p.gp_hours = Some(crate::grace::grace_hours(p));
        }
        cache
    }

    /// Parses a cache file's bytes; `file` names it in errors.
    pub fn parse(bytes: &[u8], file: &Path) -> Result<Cache, CacheError> {
        format::decode(bytes).map_err(|f| CacheError::Corrupt {
            file: file.to_path_buf(),
            section: f.section,
            line: f.line,
            what: f.what,
        })
    }

    /// The same license terms as `other` (everything but `LastContact`).
    pub fn same_terms(&self, other: &Cache) -> bool {
        Cache {
            last_contact_ms: other.last_contact_ms,
            ..self.clone()
        } == *other
    }

    /// Checks that every value can be written (see
    /// [`Picture::validate`]).
    fn validate(&self) -> Result<(), PictureError> {
        let picture = Picture {
            stamp: self.stamp.clone(),
            server: self.server.clone(),
            port: self.port,
            now_ms: None,
            pools: Vec::new(),
        };
        picture.validate()?;
        for (what, v) in [
            ("prod_name", &self.prod_name),
            ("prod_feat_name", &self.prod_feat_name),
        ] {
            if v.is_empty() || v.chars().any(char::is_control) {
                return Err(PictureError::BadValue {
                    what: what.to_string(),
                    why: "must be non-empty, without control characters".to_string(),
                });
            }
        }
        for (i, p) in self.pools.iter().enumerate() {
            p.validate(i)?;
        }
        Ok(())
    }
}

/// Reads and checks the cache file at `path`.
pub fn read(path: &Path) -> Result<Cache, CacheError> {
    let bytes = fs::read(path).map_err(|source| io_error(path, source))?;
    Cache::parse(&bytes, path)
}

/// What [`store`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The file was (re)written.
    Written,
    /// The file already held these terms; nothing written.
    Unchanged,
}

/// Writes the cache of `picture` (fetched at `now`) to `path` when its
/// terms differ from the file's, or the file is missing or unusable.
pub fn store(
    path: &Path,
    picture: &Picture,
    identity: &Identity,
    now: Millis,
) -> Result<Stored, CacheError> {
    let cache = Cache::from_picture(picture, identity, now);
    if read(path).is_ok_and(|old| old.same_terms(&cache)) {
        return Ok(Stored::Unchanged);
    }
    write(path, &cache)?;
    Ok(Stored::Written)
}

/// Writes `cache` to `path` atomically: a temporary file in the same
/// directory, fsync, rename, fsync of the directory.
pub fn write(path: &Path, cache: &Cache) -> Result<(), CacheError> {
    cache.validate().map_err(|source| CacheError::Picture {
        file: path.to_path_buf(),
        source,
    })?;
    let text = cache.to_text();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "cache".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|source| io_error(path, source))
}

/// fsyncs a directory so a rename or a new file in it survives a power
/// loss.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn io_error(path: &Path, source: io::Error) -> CacheError {
    CacheError::Io {
        file: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests;
