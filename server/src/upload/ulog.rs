//! The uploader log (`log_uploader.log`): every attempt's start and finish
//! time, the endpoint's replies and a result line (see `result.rs`).
//!
//! Lines are appended, each write opening the file anew (`O_APPEND`), so a
//! logrotate that moves the file needs no signal: the next line goes to a
//! new file at the configured path. Only the uploader thread writes it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The longest endpoint reply copied into the log, in characters.
pub(crate) const MAX_LOGGED_REPLY_CHARS: usize = 2048;

/// The uploader log at one path.
#[derive(Debug, Clone)]
pub(crate) struct UploaderLog {
    path: PathBuf,
}

impl UploaderLog {
    /// A log at `path` (created at the first line; its directory must exist).
    pub(crate) fn new(path: PathBuf) -> UploaderLog {
        UploaderLog { path }
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `lines`, one `\n` after each. A failure is returned for the
    /// caller to report once; the upload goes on without its log.
    pub(crate) fn write(&self, lines: &[String]) -> io::Result<()> {
        let mut text = String::new();
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?
            .write_all(text.as_bytes())
    }
}

/// `Start time UTC={2023-03-09T12:25:05Z} LOCAL={03/09/2023 21:25:05}`,
/// as seed 000's `Finish time` line (`what` is `Start` or `Finish`).
pub(crate) fn time_line(what: &str, unix_ms: u64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(unix_ms as i64).unwrap_or_default();
    format!(
        "{what} time UTC={{{}}} LOCAL={{{}}}",
        t.format("%Y-%m-%dT%H:%M:%SZ"),
        t.with_timezone(&chrono::Local).format("%m/%d/%Y %H:%M:%S")
    )
}

/// An endpoint's reply body as one log line: control characters turned
/// into spaces, cut at [`MAX_LOGGED_REPLY_CHARS`].
pub(crate) fn reply_line(body: &str) -> String {
    let mut out: String = body
        .trim()
        .chars()
        .take(MAX_LOGGED_REPLY_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.trim().chars().count() > MAX_LOGGED_REPLY_CHARS {
        out.push_str(" [cut]");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_lines_have_seed_000s_shape() {
        let l = time_line("Finish", 1_678_364_711_000);
        let re = regex::Regex::new(
            r"^Finish time UTC=\{2023-03-09T12:25:11Z\} LOCAL=\{\d\d/\d\d/\d{4} \d\d:\d\d:\d\d\}$",
        )
        .unwrap();
        assert!(re.is_match(&l), "{l}");
    }

    #[test]
    fn replies_are_one_line_and_bounded() {
        assert_eq!(reply_line(" <a>\r\n<b> \n"), "<a>  <b>");
        let long = "x".repeat(MAX_LOGGED_REPLY_CHARS + 10);
        let l = reply_line(&long);
        assert!(l.ends_with(" [cut]"));
        assert_eq!(l.len(), MAX_LOGGED_REPLY_CHARS + 6);
    }

    #[test]
    fn lines_are_appended() {
        let dir = std::env::temp_dir().join(format!("tally-ulog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = UploaderLog::new(dir.join("log_uploader.log"));
        let _ = std::fs::remove_file(log.path());
        log.write(&["a".into()]).unwrap();
        log.write(&["b".into(), "c".into()]).unwrap();
        assert_eq!(std::fs::read_to_string(log.path()).unwrap(), "a\nb\nc\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
