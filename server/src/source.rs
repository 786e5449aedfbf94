//! Reading the license and options files: the only place either is read
//! from disk (the core parses text and does no I/O).
//!
//! Invariants:
//! - A file is read through `Read::take(limit + 1)`, so at most
//!   [`MAX_SOURCE_FILE_BYTES`] + 1 bytes are ever held, whatever the path
//!   names (`/dev/zero`, a FIFO that is fed forever, a runaway generator):
//!   more than the limit is refused with [`SourceFileError::TooLarge`]
//!   naming the file, never read to the end.
//! - A file that is not UTF-8 is refused with the byte offset, line and
//!   column of the first bad byte.
//! - Problems *inside* a file are not errors here: they are the parser's
//!   diagnostics (file:line:column).

use std::fmt;
use std::io::Read;
use std::path::Path;

use tally_core::license::signature::VendorKey;
use tally_core::license::LicenseSet;
use tally_core::options::OptionsFile;

/// Largest license or options file read, in bytes (16 MiB). A real license
/// file is a few KiB, and 16 MiB holds some 250,000 one-line FEATURE
/// records: the limit bounds what a wrong path can cost, not a real file.
pub const MAX_SOURCE_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Which file: named in every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A FlexLM license file.
    License,
    /// A FlexLM options file.
    Options,
    /// A vendor public key file (`--vendor-key`).
    VendorKey,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::License => "license file",
            SourceKind::Options => "options file",
            SourceKind::VendorKey => "vendor key file",
        })
    }
}

/// A license or options file that cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum SourceFileError {
    /// Opening or reading failed.
    #[error("cannot read {kind} {path}: {source}")]
    Read {
        /// Which file.
        kind: SourceKind,
        /// The path as given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// More than [`MAX_SOURCE_FILE_BYTES`].
    #[error(
        "{kind} {path} is larger than {limit} bytes ({} MiB), the most tally reads; \
         is this the right file?",
        limit / (1024 * 1024)
    )]
    TooLarge {
        /// Which file.
        kind: SourceKind,
        /// The path as given.
        path: String,
        /// The limit, bytes.
        limit: u64,
    },
    /// Not UTF-8 text.
    #[error(
        "{kind} {path} is not UTF-8 text: invalid byte at offset {offset} \
         (line {line}, column {column})"
    )]
    NotUtf8 {
        /// Which file.
        kind: SourceKind,
        /// The path as given.
        path: String,
        /// Byte offset of the first invalid byte.
        offset: usize,
        /// 1-based line of that byte.
        line: u32,
        /// 1-based column (in characters) of that byte.
        column: u32,
    },
}

/// Reads the text of `path`, at most `limit` bytes.
pub fn read_text(kind: SourceKind, path: &Path, limit: u64) -> Result<String, SourceFileError> {
    let shown = path.display().to_string();
    let read_err = |source| SourceFileError::Read {
        kind,
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > limit {
        return Err(SourceFileError::TooLarge {
            kind,
            path: shown,
            limit,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let (line, column) = line_and_column(e.as_bytes(), offset);
        SourceFileError::NotUtf8 {
            kind,
            path: shown.clone(),
            offset,
            line,
            column,
        }
    })
}

/// Reads and parses a license file ([`MAX_SOURCE_FILE_BYTES`] at most).
pub fn read_license(path: &Path) -> Result<LicenseSet, SourceFileError> {
    let text = read_text(SourceKind::License, path, MAX_SOURCE_FILE_BYTES)?;
    Ok(tally_core::license::parse_str(
        &path.display().to_string(),
        &text,
    ))
}

/// Reads and parses a license file as [`read_license`] does, refusing every
/// FEATURE, INCREMENT, PACKAGE and UPGRADE line whose `TALLY_SIG=` does not
/// verify with `key` ([`tally_core::license::signature::parse_str_verified`]).
pub fn read_license_verified(path: &Path, key: &VendorKey) -> Result<LicenseSet, SourceFileError> {
    let text = read_text(SourceKind::License, path, MAX_SOURCE_FILE_BYTES)?;
    Ok(tally_core::license::signature::parse_str_verified(
        &path.display().to_string(),
        &text,
        key,
    ))
}

/// Largest vendor key file read, in bytes (a key file is some 100).
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Reads a vendor public key file (`tallyctl license keygen`'s `.pub`);
/// the message names the file.
pub fn read_vendor_key(path: &Path) -> Result<VendorKey, String> {
    let text =
        read_text(SourceKind::VendorKey, path, MAX_KEY_FILE_BYTES).map_err(|e| e.to_string())?;
    VendorKey::from_text(&text).map_err(|e| format!("vendor key file {}: {e}", path.display()))
}

/// Reads and parses an options file ([`MAX_SOURCE_FILE_BYTES`] at most).
pub fn read_options(path: &Path) -> Result<OptionsFile, SourceFileError> {
    let text = read_text(SourceKind::Options, path, MAX_SOURCE_FILE_BYTES)?;
    Ok(tally_core::options::parse_str(
        &path.display().to_string(),
        &text,
    ))
}

/// 1-based line and character column of byte `offset` (which starts a
/// character or is the first invalid byte: everything before it is UTF-8).
fn line_and_column(bytes: &[u8], offset: usize) -> (u32, u32) {
    let valid = bytes
        .get(..offset)
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("");
    let line_start = valid.rfind('\n').map_or(0, |i| i + 1);
    let line = valid.matches('\n').count() + 1;
    let column = valid.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tally-source-{}-{name}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    }

    #[test]
    fn unreadable_and_not_utf8_files_are_named() {
        let dir = scratch("utf8");
        let missing = dir.join("missing.lic");
        let e = read_license(&missing).unwrap_err();
        assert!(matches!(e, SourceFileError::Read { .. }), "{e}");
        assert!(e.to_string().contains("license file"), "{e}");
        let bad = dir.join("bad.lic");
        std::fs::write(&bad, b"USE_SERVER\nFEATURE \xc3\xa9\xff x").unwrap();
        match read_license(&bad) {
            Err(SourceFileError::NotUtf8 {
                offset,
                line,
                column,
                ..
            }) => assert_eq!((offset, line, column), (21, 2, 10)),
            other => panic!("expected NotUtf8, got {other:?}"),
        }
        let good = dir.join("good.lic");
        std::fs::write(&good, "USE_SERVER\n").unwrap();
        let set = read_license(&good).unwrap();
        assert!(set.use_server);
        assert_eq!(set.source, good.display().to_string());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 12 item 9: `OPTIONS=/dev/zero` read until memory ran out.
    #[test]
    fn an_endless_file_is_refused_at_the_limit() {
        let e = read_options(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(e, SourceFileError::TooLarge { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("options file /dev/zero") && text.contains("16 MiB"),
            "{text}"
        );
        // Exactly the limit is read; one byte more is refused.
        let dir = scratch("limit");
        let path = dir.join("x.lic");
        std::fs::write(&path, "#".repeat(100)).unwrap();
        assert!(read_text(SourceKind::License, &path, 100).is_ok());
        let e = read_text(SourceKind::License, &path, 99).unwrap_err();
        assert!(
            matches!(e, SourceFileError::TooLarge { limit: 99, .. }),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
