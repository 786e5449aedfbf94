//! Admin authentication: the token, its comparison, and what a failed
//! attempt costs the one who made it.
//!
//! Admin requests (REMOVE, REREAD, DOWN, ...) come without AUTH only from
//! exactly 127.0.0.1 or ::1; any other peer sends `AUTH <token>` first. The
//! token is compared in constant time, in its length too (both sides are
//! padded to [`MAX_TOKEN_BYTES`] + 1 bytes). A failed AUTH ends a
//! connection's admin rights (even after an earlier success), and after
//! [`MAX_AUTH_FAILURES`] failures the connection is closed. Failed AUTHs and
//! refused admin requests go to the debug log, at most
//! [`FAILURE_LINES_PER_WINDOW`] lines per [`FAILURE_WINDOW_MS`] per loop,
//! then one line counting those not written.

use std::path::Path;

use crate::protocol::MAX_FIELD_BYTES;

/// Longest token: one protocol field.
pub const MAX_TOKEN_BYTES: usize = MAX_FIELD_BYTES;

/// Failed AUTHs after which a connection is closed.
pub const MAX_AUTH_FAILURES: u32 = 3;

/// Length of a window of failure logging, in ms.
pub const FAILURE_WINDOW_MS: u64 = 60_000;

/// Failure lines written per window and loop.
pub const FAILURE_LINES_PER_WINDOW: u32 = 10;

/// Why an admin token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("cannot read admin token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The token could never match an `AUTH <token>` request.
    #[error("admin token file {path}: {why}; no AUTH request could ever match it")]
    Unusable {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// A usable admin token read from a file, and a warning if the file is
/// readable by every user.
#[derive(Debug)]
pub struct Token {
    /// The token (the file's text without surrounding white space).
    pub token: String,
    /// Set when other users can read the file.
    pub warning: Option<String>,
}

/// Reads and checks the admin token file: one line, 1 to
/// [`MAX_TOKEN_BYTES`] bytes of UTF-8 with no space, tab or control byte
/// (an AUTH field cannot carry them).
pub fn read_token_file(path: &Path) -> Result<Token, TokenError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TokenError::Read {
        path: shown.clone(),
        source,
    })?;
    let unusable = |why: String| TokenError::Unusable {
        path: shown.clone(),
        why,
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| unusable(format!("not UTF-8 (byte {})", e.valid_up_to())))?;
    let token = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if token.is_empty() {
        return Err(unusable("it is empty".into()));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(unusable(format!(
            "the token is {} bytes, more than {MAX_TOKEN_BYTES}",
            token.len()
        )));
    }
    if let Some((at, c)) = token
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || c.is_control())
    {
        return Err(unusable(format!(
            "the token has {} at byte {at}",
            match c {
                ' ' => "a space".to_string(),
                '\0' => "a NUL byte".to_string(),
                c => format!("the character U+{:04X}", c as u32),
            }
        )));
    }
    Ok(Token {
        token: token.to_string(),
        warning: world_readable(path)
            .then(|| format!("admin token file {shown} is readable by every user (chmod 600 it)")),
    })
}

#[cfg(unix)]
fn world_readable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(not(unix))]
fn world_readable(_: &Path) -> bool {
    false
}

/// Compares a presented token with the configured one. Both are padded to
/// [`MAX_TOKEN_BYTES`] + 1 bytes and every byte is compared, so the time
/// taken says nothing of where they differ or of the token's length.
pub fn token_matches(configured: &[u8], presented: &[u8]) -> bool {
    const N: usize = MAX_TOKEN_BYTES + 1;
    let mut diff = u8::from(configured.len() != presented.len())
        | u8::from(configured.is_empty())
        | u8::from(configured.len() >= N)
        | u8::from(presented.len() >= N);
    for i in 0..N {
        let a = configured.get(i).copied().unwrap_or(0);
        let b = presented.get(i).copied().unwrap_or(0);
        diff |= a ^ b;
    }
    std::hint::black_box(diff) == 0
}

/// What the log limiter lets through for one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    /// Write this failure's line, first writing that `n` (if any) were not
    /// written in the window before.
    Write {
        /// Lines suppressed in the previous window.
        suppressed: u32,
    },
    /// Too many this window: counted, not written.
    Suppressed,
}

/// Rate limit of failure lines (one per loop; no lock).
#[derive(Debug, Default)]
pub struct FailureLog {
    window_start: u64,
    written: u32,
    suppressed: u32,
}

impl FailureLog {
    /// A failure at `now` (Unix ms): whether to write its line.
    pub fn failure(&mut self, now: u64) -> Logged {
        let mut carried = 0;
        if now.saturating_sub(self.window_start) >= FAILURE_WINDOW_MS {
            carried = std::mem::take(&mut self.suppressed);
            self.window_start = now;
            self.written = 0;
        }
        if self.written < FAILURE_LINES_PER_WINDOW {
            self.written += 1;
            Logged::Write {
                suppressed: carried,
            }
        } else {
            self.suppressed += 1;
            Logged::Suppressed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_content_and_length() {
        assert!(token_matches(b"s3cret", b"s3cret"));
        assert!(!token_matches(b"s3cret", b"s3cre"));
        assert!(!token_matches(b"s3cret", b"s3cret\0"));
        assert!(!token_matches(b"s3cret", b"S3cret"));
        assert!(!token_matches(b"", b""), "an empty token never matches");
        let long = vec![b'a'; MAX_TOKEN_BYTES + 1];
        assert!(!token_matches(&long, &long), "over-long tokens never match");
    }

    #[test]
    fn failure_lines_are_limited_per_window() {
        let mut f = FailureLog::default();
        let t0 = FAILURE_WINDOW_MS * 3;
        let mut written = 0;
        for i in 0..25 {
            if matches!(f.failure(t0 + i), Logged::Write { .. }) {
                written += 1;
            }
        }
        assert_eq!(written, FAILURE_LINES_PER_WINDOW);
        assert_eq!(
            f.failure(t0 + FAILURE_WINDOW_MS),
            Logged::Write { suppressed: 15 }
        );
    }

    fn token_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("tally-token-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn token_files_that_can_never_match_are_refused() {
        for (name, bytes, why) in [
            ("space", &b"two words\n"[..], "a space"),
            ("nul", &b"abc\0def"[..], "a NUL byte"),
            ("empty", &b" \n"[..], "empty"),
        ] {
            let p = token_file(name, bytes);
            let e = read_token_file(&p).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(&*p.to_string_lossy()), "{e}");
            let _ = std::fs::remove_file(p);
        }
        let p = token_file("long", &vec![b'x'; 256]);
        let e = read_token_file(&p).unwrap_err().to_string();
        assert!(e.contains("256 bytes"), "{e}");
        let _ = std::fs::remove_file(p);
        let p = token_file("ok", b"s3cret\n");
        assert_eq!(read_token_file(&p).unwrap().token, "s3cret");
        let _ = std::fs::remove_file(p);
    }

    #[cfg(unix)]
    #[test]
    fn a_world_readable_token_file_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let p = token_file("mode", b"s3cret");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_token_file(&p).unwrap().warning.is_some());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_token_file(&p).unwrap().warning.is_none());
        let _ = std::fs::remove_file(p);
    }
}
