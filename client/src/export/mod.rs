//! The report export file (`tallyctl report export --out FILE`), for sites
//! without internet access: one self-describing text file that holds the
//! compliance report and a manifest naming each part's size and SHA-256,
//! to be carried to the endpoint by hand; [`verify`] checks it.
//!
//! # Format (version 1)
//!
//! ```text
//! tally-export 1\n
//! manifest <bytes> <sha256 of those bytes>\n
//! <the manifest: JSON, <bytes> bytes>\n
//! part <name> <bytes>\n
//! <the part: <bytes> bytes, as they are>\n
//! ... (one `part` per manifest entry, in its order)
//! end\n
//! ```
//!
//! The manifest is `{"format": "tally-export", "version": 1, "created":
//! "<RFC 3339 UTC>", "host": "<the exporting machine>", "upload_type":
//! "CTX_UPLOAD_TYPE_COMPLIANCE", "parts": [{"name": "report.json", "size":
//! N, "sha256": "<hex>"}]}`. Sizes are byte counts, digests lower-case hex;
//! part names are 1 to 64 of `A-Z a-z 0-9 . _ -`. Every part's bytes are
//! kept exactly (the report is the JSON as the server built it), so the
//! SHA-256 of `report.json` is the one the upload protocol's manifest
//! names. A flipped byte anywhere is found: in a part by its SHA-256, in
//! the manifest by the manifest line's, in the framing by the structure.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The first line of every export file, version included.
pub const MAGIC: &str = "tally-export 1";

/// The format version this code writes and reads.
pub const VERSION: u32 = 1;

/// The name of the report's part.
pub const REPORT_PART: &str = "report.json";

/// The most bytes a part or the manifest may declare (1 GiB).
pub const MAX_PART_BYTES: u64 = 1 << 30;

/// The export file's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `tally-export`.
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// When the file was made, RFC 3339 UTC.
    pub created: String,
    /// The machine that made it.
    pub host: String,
    /// Always `CTX_UPLOAD_TYPE_COMPLIANCE`.
    pub upload_type: String,
    /// The parts, in file order.
    pub parts: Vec<PartEntry>,
}

/// One part as the manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartEntry {
    /// Its name.
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

/// A verified export: its manifest and parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The manifest.
    pub manifest: Manifest,
    /// The parts: (name, bytes), in file order.
    pub parts: Vec<(String, Vec<u8>)>,
}

impl Export {
    /// The bytes of part `name`.
    pub fn part(&self, name: &str) -> Option<&[u8]> {
        self.parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }
}

/// What is wrong with an export file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The first line is not [`MAGIC`].
    #[error("not a tally export file (the first line is not {MAGIC:?})")]
    NotAnExport,
    /// The framing is broken at byte `offset`.
    #[error("damaged at byte {offset}: {why}")]
    Structure {
        /// Where.
        offset: usize,
        /// What was expected.
        why: String,
    },
    /// The manifest's bytes do not have the SHA-256 its line names.
    #[error("the manifest's SHA-256 does not match (expected {expected}, found {found})")]
    ManifestDigest {
        /// From the manifest line.
        expected: String,
        /// Of the bytes.
        found: String,
    },
    /// The manifest is not valid (JSON, format, version, names).
    #[error("the manifest is not valid: {0}")]
    Manifest(String),
    /// A part's bytes do not have the SHA-256 the manifest names.
    #[error("part {name}: SHA-256 does not match (expected {expected}, found {found})")]
    PartDigest {
        /// The part.
        name: String,
        /// From the manifest.
        expected: String,
        /// Of the bytes.
        found: String,
    },
}

/// The SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut s = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Makes an export file of `report` (the part [`REPORT_PART`]), made on
/// `host` at `created` (RFC 3339).
pub fn export(report: &[u8], host: &str, created: &str) -> Vec<u8> {
    let manifest = Manifest {
        format: "tally-export".into(),
        version: VERSION,
        created: created.into(),
        host: host.into(),
        upload_type: "CTX_UPLOAD_TYPE_COMPLIANCE".into(),
        parts: vec![PartEntry {
            name: REPORT_PART.into(),
            size: report.len() as u64,
            sha256: sha256_hex(report),
        }],
    };
    // A derived Serialize of strings and numbers cannot fail.
    let m = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    let mut out = Vec::with_capacity(m.len() + report.len() + 256);
    out.extend_from_slice(format!("{MAGIC}\nmanifest {} {}\n", m.len(), sha256_hex(&m)).as_bytes());
    out.extend_from_slice(&m);
    out.extend_from_slice(format!("\npart {REPORT_PART} {}\n", report.len()).as_bytes());
    out.extend_from_slice(report);
    out.extend_from_slice(b"\nend\n");
    out
}

/// A reader over the file's bytes that knows its offset.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn broken(&self, why: impl Into<String>) -> VerifyError {
        VerifyError::Structure {
            offset: self.at,
            why: why.into(),
        }
    }

    /// One header line (ASCII, at most 256 bytes), without its LF.
    fn line(&mut self, what: &str) -> Result<&'a str, VerifyError> {
        let rest = &self.bytes[self.at..];
        let end = rest
            .iter()
            .take(257)
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.broken(format!("expected {what}")))?;
        let line = std::str::from_utf8(&rest[..end])
            .ok()
            .filter(|l| l.is_ascii())
            .ok_or_else(|| self.broken(format!("expected {what}")))?;
        self.at += end + 1;
        Ok(line)
    }

    /// `n` bytes then a LF.
    fn block(&mut self, n: u64, what: &str) -> Result<&'a [u8], VerifyError> {
        let n = usize::try_from(n).map_err(|_| self.broken("size out of range"))?;
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e < self.bytes.len() && self.bytes[e] == b'\n')
            .ok_or_else(|| self.broken(format!("{what} is cut short or longer than it says")))?;
        let b = &self.bytes[self.at..end];
        self.at = end + 1;
        Ok(b)
    }
}

fn size(word: Option<&str>, c: &Cursor<'_>) -> Result<u64, VerifyError> {
    word.filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| w.parse().ok())
        .filter(|&n| n <= MAX_PART_BYTES)
        .ok_or_else(|| c.broken("a size is not a number of bytes up to 1 GiB"))
}

/// Checks an export file: its framing, the manifest's SHA-256, and each
/// part's size and SHA-256; the first thing wrong is the error.
pub fn verify(bytes: &[u8]) -> Result<Export, VerifyError> {
    let mut c = Cursor { bytes, at: 0 };
    if c.line("the header").ok() != Some(MAGIC) {
        return Err(VerifyError::NotAnExport);
    }
    let line = c.line("the manifest line")?;
    let mut w = line.split(' ');
    if w.next() != Some("manifest") {
        return Err(c.broken("expected `manifest <bytes> <sha256>`"));
    }
    let len = size(w.next(), &c)?;
    let digest = w.next().unwrap_or("").to_string();
    if w.next().is_some() {
        return Err(c.broken("expected `manifest <bytes> <sha256>`"));
    }
    let m = c.block(len, "the manifest")?;
    let found = sha256_hex(m);
    if found != digest {
        return Err(VerifyError::ManifestDigest {
            expected: digest,
            found,
        });
    }
    let manifest: Manifest =
        serde_json::from_slice(m).map_err(|e| VerifyError::Manifest(e.to_string()))?;
    if manifest.format != "tally-export" || manifest.version != VERSION {
        return Err(VerifyError::Manifest(format!(
            "format {:?} version {} (this tallyctl reads tally-export {VERSION})",
            manifest.format, manifest.version
        )));
    }
    if let Some(p) = manifest.parts.iter().find(|p| !valid_name(&p.name)) {
        return Err(VerifyError::Manifest(format!("bad part name {:?}", p.name)));
    }
    // An export is of a report: a file without one is not intact, however
    // well framed.
    if !manifest.parts.iter().any(|p| p.name == REPORT_PART) {
        return Err(VerifyError::Manifest(format!("no {REPORT_PART} part")));
    }
    let mut parts = Vec::with_capacity(manifest.parts.len());
    for entry in &manifest.parts {
        let line = c.line(&format!("part {}", entry.name))?;
        let mut w = line.split(' ');
        if w.next() != Some("part") || w.next() != Some(entry.name.as_str()) {
            return Err(c.broken(format!("expected `part {} <bytes>`", entry.name)));
        }
        let n = size(w.next(), &c)?;
        if n != entry.size || w.next().is_some() {
            return Err(c.broken(format!(
                "part {} is {n} bytes here, {} in the manifest",
                entry.name, entry.size
            )));
        }
        let b = c.block(n, &format!("part {}", entry.name))?;
        let found = sha256_hex(b);
        if found != entry.sha256 {
            return Err(VerifyError::PartDigest {
                name: entry.name.clone(),
                expected: entry.sha256.clone(),
                found,
            });
        }
        parts.push((entry.name.clone(), b.to_vec()));
    }
    if c.line("end")? != "end" || c.at != bytes.len() {
        return Err(c.broken("expected `end` and nothing after it"));
    }
    Ok(Export { manifest, parts })
}

#[cfg(test)]
mod tests;
