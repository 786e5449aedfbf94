//! The protocol client: a plain blocking [`TcpStream`] with timeouts, a few
//! request lines out, as many reply lines back.
//!
//! Requests are pipelined (protocol v1 answers in request order), so
//! `AUTH <token>` and the admin request travel together. Each server of the
//! list is tried in order; a server that cannot be reached or does not
//! answer is skipped, and the error of the last one is returned when none
//! answered. A server that answers `ERR ...` *has* answered: its reply is
//! returned as is.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::addr::ServerAddr;
use super::CtlError;

/// Default connect / read / write timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest reply line read, in bytes (a STATUS of a very large license file
/// stays far below; the limit only stops a runaway peer).
pub const MAX_REPLY_BYTES: u64 = 64 * 1024 * 1024;

/// Longest protocol field, in bytes (`MAX_FIELD_BYTES` in docs/protocol.md).
pub const MAX_FIELD_BYTES: usize = 255;

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

/// One server: connect, send every request, read one line per request.
fn exchange_one(
    server: &ServerAddr,
    requests: &[String],
    timeout: Duration,
) -> Result<Vec<String>, CtlError> {
    let mut stream = connect(server, timeout)?;
    let io_err = |source| CtlError::Write {
        addr: server.clone(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    let _ = stream.set_nodelay(true);
    let mut batch = String::new();
    for r in requests {
        batch.push_str(r);
        batch.push('\n');
    }
    stream.write_all(batch.as_bytes()).map_err(io_err)?;
    let mut reader = BufReader::new(stream);
    let mut replies = Vec::with_capacity(requests.len());
    for _ in requests {
        replies.push(read_line(&mut reader, server)?);
    }
    Ok(replies)
}

/// Connects to the first address `server` resolves to that accepts.
fn connect(server: &ServerAddr, timeout: Duration) -> Result<TcpStream, CtlError> {
    let addrs: Vec<SocketAddr> = (server.host.as_str(), server.port)
        .to_socket_addrs()
        .map_err(|source| CtlError::Resolve {
            addr: server.clone(),
            source,
        })?
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(CtlError::Connect {
        addr: server.clone(),
        source: last,
    })
}

/// Reads one reply line (without its LF / CRLF).
fn read_line(reader: &mut impl BufRead, server: &ServerAddr) -> Result<String, CtlError> {
    let mut buf = Vec::new();
    let n = reader
        .take(MAX_REPLY_BYTES)
        .read_until(b'\n', &mut buf)
        .map_err(|source| CtlError::Read {
            addr: server.clone(),
            source,
        })?;
    if n == 0 || buf.last() != Some(&b'\n') {
        return Err(CtlError::Read {
            addr: server.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before a whole reply line",
            ),
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|e| CtlError::BadReply {
        addr: server.clone(),
        reply: String::from_utf8_lossy(e.as_bytes())
            .chars()
            .take(200)
            .collect(),
        why: "not UTF-8".to_string(),
    })
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
/// non-empty, at most [`MAX_FIELD_BYTES`], printable, no spaces. This is
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

    #[test]
    fn reads_lines_and_detects_truncation() {
        let s = ServerAddr::default_local();
        let mut r = std::io::Cursor::new(b"OK a\r\nOK b".to_vec());
        assert_eq!(read_line(&mut r, &s).ok().as_deref(), Some("OK a"));
        assert!(matches!(read_line(&mut r, &s), Err(CtlError::Read { .. })));
    }
}
