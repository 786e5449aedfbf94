//! Vendor-signed license files: an Ed25519 signature on each FEATURE,
//! INCREMENT, PACKAGE and UPGRADE line, in a `TALLY_SIG=` keyword.
//!
//! A vendor who embeds tally keeps a key pair; `tallyctl license sign`
//! adds `TALLY_SIG=<128 hex digits>` to each of those lines, and a tallyd
//! started with `--vendor-key PUB` serves only the lines whose signature
//! verifies ([`parse_str_verified`]). FlexLM's parser and tally's (without a
//! key) keep `TALLY_SIG=` as an attribute they do not interpret; FlexLM's
//! own `SIGN=`/`SIGN2=` values are signed like any other keyword and kept
//! as they are (their scheme is FlexNet's and not checked here).
//!
//! **What is signed** (the *canonical form* of a record): the
//! text `tally-sig-v1`, a line feed, then the record's words as written
//! (quotes kept, record keyword and `key=` names in the case written), in
//! their order, every `TALLY_SIG=` word left out, joined by single spaces,
//! with every run of blanks inside a word (inside quotes) read as one space.
//! Continuation lines are joined first (as the parser joins them: the `\`, the blanks
//! around it and the next line's leading blanks read as one space). So
//! re-wrapping a line at its blanks, re-indenting it, changing its line
//! endings or moving the `TALLY_SIG=` keyword keeps the signature valid;
//! changing, adding, removing or moving any other word (a count, a date, a
//! keyword's place) breaks it.
//!
//! SERVER, VENDOR and USE_SERVER lines are not signed: a customer edits them
//! (host names, ports, paths) and they grant nothing.
//!
//! **Key files** are text: a header line, then the 32-byte key as 64 hex
//! digits; blank lines and lines starting with `#` are skipped.
//!
//! ```text
//! tally-vendor-public-key v1
//! 3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c
//! ```
//!
//! The private key file says `tally-vendor-private-key v1` and holds the
//! Ed25519 seed. Nothing here does I/O or draws random numbers: callers read
//! the files and give [`VendorSigningKey::from_seed`] its 32 random bytes.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::lexer::{records, Record, Word};
use super::model::{Diagnostic, LicenseSet};

/// The keyword holding a line's signature.
pub const SIG_KEYWORD: &str = "TALLY_SIG";

/// The first line of a public key file.
pub const PUBLIC_KEY_HEADER: &str = "tally-vendor-public-key v1";

/// The first line of a private key file.
pub const PRIVATE_KEY_HEADER: &str = "tally-vendor-private-key v1";

/// What the canonical form starts with (names the scheme's version).
const DOMAIN: &str = "tally-sig-v1\n";

/// The record keywords whose lines are signed.
const SIGNED_KEYWORDS: [&str; 4] = ["FEATURE", "INCREMENT", "PACKAGE", "UPGRADE"];

/// A key file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The first line is not the expected header.
    #[error("not a {expected:?} file (its first line should be {header:?})")]
    Header {
        /// `public key` or `private key`.
        expected: &'static str,
        /// The header that was expected.
        header: &'static str,
    },
    /// The key line is not 64 hex digits.
    #[error("the key line should be 64 hex digits (a 32-byte key)")]
    Digits,
    /// The bytes are not an Ed25519 public key.
    #[error("the key is not a valid Ed25519 public key")]
    Invalid,
}

/// A vendor's public key: what tallyd checks lines with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorKey(VerifyingKey);

impl VendorKey {
    /// Reads a public key file's text ([`PUBLIC_KEY_HEADER`], 64 hex digits).
    pub fn from_text(text: &str) -> Result<VendorKey, KeyError> {
        let bytes = key_bytes(text, "public key", PUBLIC_KEY_HEADER)?;
        VerifyingKey::from_bytes(&bytes)
            .map(VendorKey)
            .map_err(|_| KeyError::Invalid)
    }

    /// The key file's text.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_KEY_HEADER}\n{}\n", hex(self.0.as_bytes()))
    }
}

/// A vendor's private key: what `tallyctl license sign` signs with. Its
/// `Debug` shows the public half only.
#[derive(Clone)]
pub struct VendorSigningKey(SigningKey);

impl std::fmt::Debug for VendorSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("VendorSigningKey")
            .field(&self.public())
            .finish()
    }
}

impl VendorSigningKey {
    /// The key of a 32-byte seed (which must be random for a real key).
    pub fn from_seed(seed: [u8; 32]) -> VendorSigningKey {
        VendorSigningKey(SigningKey::from_bytes(&seed))
    }

    /// Reads a private key file's text ([`PRIVATE_KEY_HEADER`], 64 hex digits).
    pub fn from_text(text: &str) -> Result<VendorSigningKey, KeyError> {
        key_bytes(text, "private key", PRIVATE_KEY_HEADER).map(VendorSigningKey::from_seed)
    }

    /// The private key file's text.
    pub fn to_text(&self) -> String {
        format!(
            "{PRIVATE_KEY_HEADER}\n# Keep this file secret: it signs license files.\n{}\n",
            hex(self.0.as_bytes())
        )
    }

    /// Its public key.
    pub fn public(&self) -> VendorKey {
        VendorKey(self.0.verifying_key())
    }
}

fn key_bytes(
    text: &str,
    expected: &'static str,
    header: &'static str,
) -> Result<[u8; 32], KeyError> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    if lines.next() != Some(header) {
        return Err(KeyError::Header { expected, header });
    }
    let digits = lines.next().ok_or(KeyError::Digits)?;
    if lines.next().is_some() {
        return Err(KeyError::Digits);
    }
    unhex(digits)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or(KeyError::Digits)
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of an even number of hex digits (either case).
fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A line's signature, as checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigStatus {
    /// The signature verifies with the vendor key.
    Valid,
    /// The line has no `TALLY_SIG=`.
    Missing,
    /// It has one that does not verify (or is not 128 hex digits, or there
    /// are two); the reason.
    Bad(String),
    /// No vendor key was given: nothing was checked.
    NotChecked,
}

impl SigStatus {
    /// `valid`, `missing`, `bad` or `not checked`.
    pub fn word(&self) -> &'static str {
        match self {
            SigStatus::Valid => "valid",
            SigStatus::Missing => "missing",
            SigStatus::Bad(_) => "bad",
            SigStatus::NotChecked => "not checked",
        }
    }
}

/// The signature of one FEATURE/INCREMENT/PACKAGE/UPGRADE record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineSignature {
    /// 1-based line the record starts on (the `line` of its pool).
    pub line: u32,
    /// Where its `TALLY_SIG=` word is (the record keyword when it has
    /// none): 1-based physical line and character column.
    pub at: (u32, u32),
    /// The record keyword, upper case.
    pub keyword: String,
    /// The feature (or package) it names, if any.
    pub name: String,
    /// Whether the line has a `TALLY_SIG=` (checked or not).
    pub has_sig: bool,
    /// What the check found.
    pub status: SigStatus,
}

/// The record keyword (upper case) if `record` is a line that is signed.
fn signed_keyword(record: &Record) -> Option<(String, &[Word])> {
    let words = record.words.as_ref().ok()?;
    let head = words.first().filter(|w| w.is_bare())?;
    let keyword = head.text.to_ascii_uppercase();
    SIGNED_KEYWORDS
        .contains(&keyword.as_str())
        .then_some((keyword, words.as_slice()))
}

fn is_sig(word: &Word) -> bool {
    word.key()
        .is_some_and(|k| k.eq_ignore_ascii_case(SIG_KEYWORD))
}

/// The bytes signed for a record's words (see the module docs).
pub(crate) fn canonical(words: &[Word]) -> String {
    let mut out = String::from(DOMAIN);
    for (i, word) in words.iter().filter(|w| !is_sig(w)).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&word.raw.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    out
}

/// The signature status of every FEATURE, INCREMENT, PACKAGE and UPGRADE
/// record of `text` (with `key`; every one [`SigStatus::NotChecked`] without).
/// Records the lexer cannot split (an unterminated quote) are not listed:
/// the parser rejects them anyway.
pub fn check_signatures(key: Option<&VendorKey>, text: &str) -> Vec<LineSignature> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    records(text)
        .iter()
        .filter_map(|record| {
            let (keyword, words) = signed_keyword(record)?;
            let sigs: Vec<&Word> = words.iter().filter(|w| is_sig(w)).collect();
            let pos = sigs.first().unwrap_or(&&words[0]).pos;
            let status = match (key, sigs.as_slice()) {
                (None, _) => SigStatus::NotChecked,
                (Some(_), []) => SigStatus::Missing,
                (Some(key), [sig]) => verify(key, words, sig.value()),
                (Some(_), _) => SigStatus::Bad(format!("{} {SIG_KEYWORD}= keywords", sigs.len())),
            };
            Some(LineSignature {
                line: record.line,
                at: (pos.line, pos.column),
                keyword,
                name: words.get(1).map_or(String::new(), |w| w.text.clone()),
                has_sig: !sigs.is_empty(),
                status,
            })
        })
        .collect()
}

fn verify(key: &VendorKey, words: &[Word], value: &str) -> SigStatus {
    let Some(bytes) = unhex(value).and_then(|b| <[u8; 64]>::try_from(b).ok()) else {
        return SigStatus::Bad(format!(
            "{SIG_KEYWORD}= is not 128 hex digits (an Ed25519 signature)"
        ));
    };
    let signature = Signature::from_bytes(&bytes);
    match key.0.verify_strict(canonical(words).as_bytes(), &signature) {
        Ok(()) => SigStatus::Valid,
        Err(_) => SigStatus::Bad(
            "the signature does not match this line and the vendor key \
             (the line was changed after signing, or signed with another key)"
                .to_string(),
        ),
    }
}

/// What [`sign`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The text with a `TALLY_SIG=` on every signed line (an old one
    /// replaced); everything else as it was.
    pub text: String,
    /// Lines signed (1-based record starts).
    pub lines: Vec<u32>,
    /// Records of a signed kind left unsigned, with why (a `\` at the end of
    /// the file, an old `TALLY_SIG=` that cannot be taken out).
    pub skipped: Vec<(u32, String)>,
}

/// Signs every FEATURE, INCREMENT, PACKAGE and UPGRADE record of `text`
/// with `key`: appends ` TALLY_SIG=<hex>` to the record's last physical line,
/// after removing any `TALLY_SIG=` it had. Other lines, comments, line
/// endings and the layout of the signed lines are kept.
pub fn sign(key: &VendorSigningKey, text: &str) -> Signed {
    let (bom, body) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    };
    let mut lines: Vec<String> = body.split_inclusive('\n').map(str::to_string).collect();
    let mut signed = Vec::new();
    let mut skipped = Vec::new();
    for record in records(body) {
        let Some((_, words)) = signed_keyword(&record) else {
            continue;
        };
        if record.dangling.is_some() {
            skipped.push((
                record.line,
                "the \\ at the end of the file continues it past the end".to_string(),
            ));
            continue;
        }
        // Right to left, so that each removal leaves the columns of the
        // words before it as they were.
        // On failure the lines touched are put back as they were.
        let old: Vec<&Word> = words.iter().filter(|w| is_sig(w)).collect();
        let saved: Vec<(usize, String)> = old
            .iter()
            .filter_map(|w| {
                let i = w.pos.line as usize - 1;
                lines.get(i).map(|l| (i, l.clone()))
            })
            .collect();
        if let Err(why) = old
            .iter()
            .rev()
            .try_for_each(|w| remove_word(&mut lines, w))
        {
            for (i, line) in saved.into_iter().rev() {
                lines[i] = line;
            }
            skipped.push((record.line, why));
            continue;
        }
        let sig = key.0.sign(canonical(words).as_bytes());
        let index = record.end_line as usize - 1;
        if let Some(line) = lines.get_mut(index) {
            let ending = if line.ends_with("\r\n") {
                "\r\n"
            } else if line.ends_with('\n') {
                "\n"
            } else {
                ""
            };
            let content = line.trim_end().to_string();
            let gap = if content.is_empty() { "" } else { " " };
            *line = format!(
                "{content}{gap}{SIG_KEYWORD}={}{ending}",
                hex(&sig.to_bytes())
            );
            signed.push(record.line);
        }
    }
    Signed {
        text: format!("{bom}{}", lines.concat()),
        lines: signed,
        skipped,
    }
}

/// Takes an old `TALLY_SIG=` word (and the blanks before it) out of its
/// physical line; it must be unquoted and on one line.
fn remove_word(lines: &mut [String], word: &Word) -> Result<(), String> {
    let cannot = || {
        format!(
            "its old {SIG_KEYWORD}= at column {} cannot be taken out (quoted or split across lines)",
            word.pos.column
        )
    };
    let line = lines
        .get_mut(word.pos.line as usize - 1)
        .ok_or_else(cannot)?;
    let chars: Vec<char> = line.chars().collect();
    let start = word.pos.column as usize - 1;
    let len = word.raw.chars().count();
    let found: String = chars
        .get(start..start + len)
        .ok_or_else(cannot)?
        .iter()
        .collect();
    if found != word.raw || word.raw.contains('"') {
        return Err(cannot());
    }
    let mut from = start;
    while from > 0
        && chars[from - 1].is_whitespace()
        && chars[..from - 1].iter().any(|c| !c.is_whitespace())
    {
        from -= 1;
    }
    *line = chars[..from].iter().chain(&chars[start + len..]).collect();
    Ok(())
}

/// [`super::parse_str`] for a tallyd with a vendor key: every FEATURE,
/// INCREMENT, PACKAGE and UPGRADE line whose signature is missing or does
/// not verify is refused (left out, and one [`Diagnostic`] at its line and
/// its `TALLY_SIG=` column, or its keyword's when it has none), before the
/// PACKAGE, UPGRADE and SUPERSEDE lines are applied: a refused line enables,
/// upgrades and supersedes nothing.
pub fn parse_str_verified(source: &str, text: &str, key: &VendorKey) -> LicenseSet {
    let mut set = super::parse::parse_raw(source, text);
    let refused: Vec<LineSignature> = check_signatures(Some(key), text)
        .into_iter()
        .filter(|s| s.status != SigStatus::Valid)
        .collect();
    let lines: std::collections::HashSet<u32> = refused.iter().map(|s| s.line).collect();
    let is_refused = |line: u32| lines.contains(&line);
    set.pools.retain(|p| !is_refused(p.line));
    set.packages.retain(|p| !is_refused(p.line));
    set.upgrades.retain(|u| !is_refused(u.line));
    for s in &refused {
        let why = match &s.status {
            SigStatus::Bad(why) => format!("bad tally signature: {why}"),
            _ => format!("no tally signature ({SIG_KEYWORD}=), and tallyd has a vendor key"),
        };
        // A line the parser already rejected is reported once, by it.
        if set.diagnostics.iter().any(|d| d.record_line == s.line) {
            continue;
        }
        set.diagnostics.push(Diagnostic {
            file: source.to_string(),
            line: s.at.0,
            column: s.at.1,
            message: format!("{} {}: {why}; refused", s.keyword, s.name),
            record_line: s.line,
        });
    }
    set.diagnostics.sort_by_key(|d| d.record_line);
    super::expand(&set)
}

#[cfg(test)]
mod tests;
