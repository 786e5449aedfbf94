//! tallyctl's use of the protocol client ([`crate::Connection`]): a few
//! request lines out, as many reply lines back, from the first server of a
//! list that answers.
//!
//! Requests are pipelined (protocol v1 answers in request order), so
//! `AUTH <token>` and the admin request travel together. Each server of the
//! list is tried in order; a server that cannot be reached or does not
//! answer is skipped, and the error of the last one is returned when none
//! answered. A server that answers `ERR ...` *has* answered: its reply is
//! returned as is.

use std::time::Duration;

use super::addr::ServerAddr;
use super::CtlError;
use crate::proto::MAX_FIELD_BYTES;
use crate::{Connection, Error, Timeouts};

/// Default connect / read / write timeout.
pub const DEFAULT_TIMEOUT: Duration = crate::DEFAULT_TIMEOUT;

/// Sends `requests` to the first server of `servers` that answers and
/// returns that server with one reply line per request (line ends removed).
pub fn exchange(
    servers: &[ServerAddr],
    requests: &[String],
    timeout: Duration,
) -> Result<(ServerAddr, Vec<String>), CtlError> {
    let mut last = None;
    for server in servers {
        match exchange_one(server, requests, timeout) {
            Ok(replies) => return Ok((server.clone(), replies)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| CtlError::BadAddress {
        value: String::new(),
        origin: "-c".to_string(),
        why: "no server to ask".to_string(),
    }))
}

/// One server: connect, send every request in one write, read one line
/// per request.
fn exchange_one(
    server: &ServerAddr,
    requests: &[String],
    timeout: Duration,
) -> Result<Vec<String>, CtlError> {
    let failed = |e| CtlError::from_client(server, e);
    let mut c =
        Connection::connect(&server.host, server.port, Timeouts::all(timeout)).map_err(failed)?;
    let lines: Vec<&str> = requests.iter().map(String::as_str).collect();
    c.send_lines(&lines).map_err(failed)?;
    let mut replies = Vec::with_capacity(requests.len());
    for _ in requests {
        replies.push(c.read_line().map_err(failed)?.to_string());
    }
    Ok(replies)
}

impl CtlError {
    /// The tallyctl error (and so exit status and lmstat text) for a
    /// failure of the protocol client talking to `server`.
    pub fn from_client(server: &ServerAddr, e: Error) -> CtlError {
        let addr = server.clone();
        match e {
            Error::Resolve { source, .. } => CtlError::Resolve { addr, source },
            Error::Connect { source, .. } => CtlError::Connect { addr, source },
            Error::Write { source, .. } => CtlError::Write { addr, source },
            Error::Read { source, .. } => CtlError::Read { addr, source },
            e @ Error::ReplyTooLong { .. } => CtlError::Read {
                addr,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            },
            Error::NotUtf8 { reply, .. } => CtlError::BadReply {
                addr,
                reply,
                why: "not UTF-8".to_string(),
            },
            Error::BadRequest { line, why } => CtlError::BadField {
                what: "request".to_string(),
                value: line,
                why: why.to_string(),
            },
        }
    }
}

/// `Ok(rest)` for a reply `OK rest` (or exactly `OK`), the server's error
/// for `ERR ...`, a protocol error for anything else.
pub fn expect_ok<'a>(server: &ServerAddr, reply: &'a str) -> Result<&'a str, CtlError> {
    if reply == "OK" {
        return Ok("");
    }
    if let Some(rest) = reply.strip_prefix("OK ") {
        return Ok(rest);
    }
    Err(not_ok(server, reply, "OK ..."))
}

/// The error for a reply that is not the expected one: the server's own
/// `ERR ...` text when it is one.
pub fn not_ok(server: &ServerAddr, reply: &str, expected: &str) -> CtlError {
    if reply.starts_with("ERR ") || reply == "ERR" {
        CtlError::Server {
            addr: server.clone(),
            reply: reply.to_string(),
        }
    } else {
        CtlError::BadReply {
            addr: server.clone(),
            reply: reply.chars().take(200).collect(),
            why: format!("expected {expected}"),
        }
    }
}

/// Checks that a command-line value can be sent as one protocol field:
/// non-empty, at most [`MAX_FIELD_BYTES`], printable, no white space (a
/// stricter rule than the protocol's [`crate::proto::field_fault`]: no tab
/// or no-break space either). This is
/// also what keeps a value from smuggling a second request line.
pub fn field<'a>(what: &str, value: &'a str) -> Result<&'a str, CtlError> {
    let bad = |why: &str| CtlError::BadField {
        what: what.to_string(),
        value: value.to_string(),
        why: why.to_string(),
    };
    if value.is_empty() {
        return Err(bad("it is empty"));
    }
    if value.len() > MAX_FIELD_BYTES {
        return Err(bad("it is longer than 255 bytes"));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("it contains a space or a control character"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_refuse_spaces_and_newlines() {
        assert!(field("feature", "F1").is_ok());
        assert!(field("feature", "").is_err());
        assert!(field("feature", "F1\nDOWN").is_err());
        assert!(field("user", "a b").is_err());
        assert!(field("user", &"x".repeat(256)).is_err());
    }

    #[test]
    fn ok_and_err_replies() {
        let s = ServerAddr::default_local();
        assert_eq!(expect_ok(&s, "OK REMOVED 2").ok(), Some("REMOVED 2"));
        let e = expect_ok(&s, "ERR FORBIDDEN admin requests need AUTH").unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e
            .to_string()
            .ends_with("ERR FORBIDDEN admin requests need AUTH"));
        assert_eq!(expect_ok(&s, "PONG").unwrap_err().exit_code(), 244);
    }
}
