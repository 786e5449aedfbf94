//! `tallyctl license keygen --out PREFIX` and `tallyctl license sign --key
//! FILE in.lic > out.lic`: a vendor's key pair and signed license files
//! ([`tally_core::license::signature`]; docs/license-file.md, "Signed
//! license files").
//!
//! `keygen` writes `PREFIX.key` (the private key, created with mode 0600)
//! and `PREFIX.pub` (the public key tallyd's `--vendor-key` reads); it never
//! overwrites a file. The 32-byte seed comes from `/dev/urandom`.
//!
//! `sign` prints the license file with a `TALLY_SIG=` on every FEATURE,
//! INCREMENT, PACKAGE and UPGRADE line (an old one replaced) and says on
//! stderr how many lines it signed, and which lines tallyd will reject
//! anyway (the parser's diagnostics). Exit status: 0 when every such line
//! is signed, 1 when some could not be (named on stderr), 2 when a file
//! cannot be read or written.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tally_core::license::signature::{sign, VendorKey, VendorSigningKey};

use super::args::LicenseCommand;
use crate::source::{read_text, SourceKind, MAX_SOURCE_FILE_BYTES};

/// Every line signed / the key pair written.
pub const EXIT_OK: i32 = 0;
/// Some lines could not be signed.
pub const EXIT_UNSIGNED: i32 = 1;
/// A file cannot be read or written.
pub const EXIT_IO: i32 = 2;

/// Largest key file read, in bytes (a key file is some 100).
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Runs a `license` subcommand; returns the exit status.
pub fn run(command: &LicenseCommand) -> i32 {
    let result = match command {
        LicenseCommand::Keygen { out } => keygen(out),
        LicenseCommand::Sign { key, file } => sign_file(key, file),
    };
    result.unwrap_or_else(|e| {
        eprintln!("tallyctl: {e}");
        EXIT_IO
    })
}

/// Reads a key file's text (at most [`MAX_KEY_FILE_BYTES`]).
fn key_text(path: &Path) -> Result<String, String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE_BYTES).read_to_string(&mut text))
        .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    Ok(text)
}

/// Reads a vendor public key file (`PREFIX.pub`); the message names it.
pub fn read_public_key(path: &Path) -> Result<VendorKey, String> {
    VendorKey::from_text(&key_text(path)?)
        .map_err(|e| format!("vendor key file {}: {e}", path.display()))
}

fn read_private_key(path: &Path) -> Result<VendorSigningKey, String> {
    VendorSigningKey::from_text(&key_text(path)?)
        .map_err(|e| format!("key file {}: {e}", path.display()))
}

/// `PREFIX` with `.ext` appended (`vendor` -> `vendor.key`).
fn with_suffix(prefix: &Path, ext: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

/// Creates `path` (never overwriting) with `mode` and writes `text`.
fn create(path: &Path, mode: u32, text: &str) -> Result<(), String> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn keygen(prefix: &Path) -> Result<i32, String> {
    let private = with_suffix(prefix, "key");
    let public = with_suffix(prefix, "pub");
    for p in [&private, &public] {
        if p.exists() {
            return Err(format!(
                "{} exists; tallyctl license keygen never overwrites a key",
                p.display()
            ));
        }
    }
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    let key = VendorSigningKey::from_seed(seed);
    create(&private, 0o600, &key.to_text())?;
    create(&public, 0o644, &key.public().to_text())?;
    eprintln!(
        "tallyctl: wrote {} (private: keep it secret) and {} (for tallyd --vendor-key)",
        private.display(),
        public.display()
    );
    Ok(EXIT_OK)
}

fn sign_file(key_path: &Path, file: &Path) -> Result<i32, String> {
    let key = read_private_key(key_path)?;
    let text =
        read_text(SourceKind::License, file, MAX_SOURCE_FILE_BYTES).map_err(|e| e.to_string())?;
    let signed = sign(&key, &text);
    let set = tally_core::license::parse_str(&file.display().to_string(), &signed.text);
    super::print(&signed.text);
    for d in &set.diagnostics {
        eprintln!("tallyctl: warning: {d} (tallyd rejects this line, signed or not)");
    }
    for (line, why) in &signed.skipped {
        eprintln!("tallyctl: {}:{line}: not signed: {why}", file.display());
    }
    eprintln!(
        "tallyctl: signed {} of {}",
        super::counted(signed.lines.len() as u64, "line", "lines"),
        file.display()
    );
    Ok(if signed.skipped.is_empty() {
        EXIT_OK
    } else {
        EXIT_UNSIGNED
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_appended_not_replaced() {
        assert_eq!(
            with_suffix(Path::new("/k/acme.v1"), "pub"),
            PathBuf::from("/k/acme.v1.pub")
        );
    }
}
