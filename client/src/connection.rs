//! [`Connection`]: one blocking TCP connection to a tally server, speaking
//! protocol v1 (docs/protocol.md).
//!
//! - **Blocking std::net**, with a timeout on connect, on every read and on
//!   every write ([`Timeouts`]): no call waits forever.
//! - **Framing**: a request is one line of at most
//!   [`MAX_LINE_BYTES`] without a line feed
//!   in it ([`Connection::send_line`] refuses anything else, so a value
//!   cannot smuggle a second request); a reply is one line, read up to its
//!   LF (a CR before it dropped), of at most [`MAX_REPLY_BYTES`] (a STATUS
//!   of a large license file is long; the limit stops a runaway peer).
//! - **Typed replies**: [`Connection::request`] returns a
//!   [`Reply`]; [`Connection::read_line`] the line itself.
//! - **Pipelining**: the server answers in request order, so requests may
//!   be sent together ([`Connection::send_lines`], one write) and their
//!   replies read after.
//! - **The load generator's path** ([`Connection::send_raw`],
//!   [`Connection::read_kind`]): bytes out as given, replies classified in
//!   place ([`ReplyKind`]). After the first replies nothing allocates: the
//!   read buffer, the line buffer and the write buffer are reused, and a
//!   reply line is a slice of the line buffer.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::proto::{Reply, ReplyKind, MAX_LINE_BYTES};

/// Default connect, read and write timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest reply line read, in bytes, without its line end (64 MiB).
pub const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// Size of the read buffer, bytes: many pipelined replies per `read`.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How long each kind of call may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the TCP connection (per address the name resolves to).
    pub connect: Duration,
    /// Each read of a reply.
    pub read: Duration,
    /// Each write of a request.
    pub write: Duration,
}

impl Timeouts {
    /// The same timeout for everything (must not be zero).
    pub fn all(timeout: Duration) -> Timeouts {
        Timeouts {
            connect: timeout,
            read: timeout,
            write: timeout,
        }
    }
}

impl Default for Timeouts {
    /// [`DEFAULT_TIMEOUT`] for everything.
    fn default() -> Timeouts {
        Timeouts::all(DEFAULT_TIMEOUT)
    }
}

/// What can go wrong talking to a server. `server` names it as the caller
/// did (`27000@lic1`, or the socket address).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host name does not resolve.
    #[error("{server}: cannot resolve host name: {source}")]
    Resolve {
        /// The server.
        server: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// No TCP connection could be made (to any address of the name).
    #[error("{server}: cannot connect: {source}")]
    Connect {
        /// The server.
        server: String,
        /// The socket error of the last address tried.
        source: io::Error,
    },
    /// A request could not be sent (or the socket could not be set up).
    #[error("{server}: cannot send the request: {source}")]
    Write {
        /// The server.
        server: String,
        /// The socket error.
        source: io::Error,
    },
    /// No whole reply line arrived: a timeout, a reset, or the server
    /// closed the connection (`UnexpectedEof`).
    #[error("{server}: no reply: {source}")]
    Read {
        /// The server.
        server: String,
        /// The socket error.
        source: io::Error,
    },
    /// A reply line longer than the connection's limit.
    #[error("{server}: reply line longer than {limit} bytes")]
    ReplyTooLong {
        /// The server.
        server: String,
        /// The limit, bytes ([`MAX_REPLY_BYTES`] unless set).
        limit: usize,
    },
    /// A reply line that is not UTF-8.
    #[error("{server}: reply is not UTF-8: {reply:?}")]
    NotUtf8 {
        /// The server.
        server: String,
        /// The line, invalid bytes replaced, cut to 200 characters.
        reply: String,
    },
    /// The request is not one protocol line: it holds a line end, or is
    /// longer than [`MAX_LINE_BYTES`]. Nothing was sent.
    #[error("request {line:?} cannot be sent: {why}")]
    BadRequest {
        /// The request, cut to 200 characters.
        line: String,
        /// What is wrong.
        why: &'static str,
    },
}

impl From<Error> for io::Error {
    /// The socket error itself for the I/O variants; `InvalidData` with the
    /// message for the others.
    fn from(e: Error) -> io::Error {
        match e {
            Error::Resolve { source, .. }
            | Error::Connect { source, .. }
            | Error::Write { source, .. }
            | Error::Read { source, .. } => source,
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        }
    }
}

/// One connection to a tally server ([module docs](self)).
///
/// ```no_run
/// use tally_client::{Connection, Reply, Timeouts};
///
/// # fn main() -> Result<(), tally_client::Error> {
/// let mut c = Connection::connect("localhost", 27000, Timeouts::default())?;
/// match c.request("CHECKOUT MPM_ADV_RC alice pc1 ec26edf8 linger=1814400")? {
///     Reply::Ok(rest) => println!("granted: {rest}"),
///     Reply::Denied(d) => println!("denied: {} ({})", d.reason, d.flexlm_code),
///     other => println!("unexpected: {other:?}"),
/// }
/// // Pipelined: two requests in one write, then both replies.
/// c.send_lines(&["PING", "CHECKIN MPM_ADV_RC ec26edf8"])?;
/// assert_eq!(c.read_reply()?, Reply::Pong);
/// assert!(c.read_reply()?.is_ok());
/// # Ok(())
/// # }
/// ```
pub struct Connection {
    reader: BufReader<TcpStream>,
    server: String,
    /// The last line read (with its line end until trimmed).
    line: Vec<u8>,
    /// Requests being written ([`Connection::send_line`]).
    out: Vec<u8>,
    max_reply: usize,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .field("peer", &self.reader.get_ref().peer_addr().ok())
            .field("buffered", &self.reader.buffer().len())
            .finish()
    }
}

impl Connection {
    /// Connects to `host`:`port` (a name, an IPv4 or an IPv6 address
    /// without brackets), trying each address the name resolves to in
    /// turn. Errors name the server `PORT@HOST`.
    pub fn connect(host: &str, port: u16, timeouts: Timeouts) -> Result<Connection, Error> {
        let server = if host.contains(':') {
            format!("{port}@[{host}]")
        } else {
            format!("{port}@{host}")
        };
        let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(source) => return Err(Error::Resolve { server, source }),
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeouts.connect) {
                Ok(s) => return Connection::with_name(s, server, timeouts),
                Err(e) => last = e,
            }
        }
        Err(Error::Connect {
            server,
            source: last,
        })
    }

    /// Connects to one socket address.
    pub fn connect_addr(addr: SocketAddr, timeouts: Timeouts) -> Result<Connection, Error> {
        let server = addr.to_string();
        match TcpStream::connect_timeout(&addr, timeouts.connect) {
            Ok(s) => Connection::with_name(s, server, timeouts),
            Err(source) => Err(Error::Connect { server, source }),
        }
    }

    /// Wraps a connected stream (one bound to a chosen local address, say),
    /// setting its read and write timeouts and `TCP_NODELAY`.
    pub fn from_stream(stream: TcpStream, timeouts: Timeouts) -> Result<Connection, Error> {
        let server = stream
            .peer_addr()
            .map_or_else(|_| "(unconnected)".to_string(), |a| a.to_string());
        Connection::with_name(stream, server, timeouts)
    }

    fn with_name(s: TcpStream, server: String, t: Timeouts) -> Result<Connection, Error> {
        let set = s
            .set_read_timeout(Some(t.read))
            .and_then(|()| s.set_write_timeout(Some(t.write)));
        if let Err(source) = set {
            return Err(Error::Write { server, source });
        }
        // Requests are small and each is waited for: never hold one back.
        let _ = s.set_nodelay(true);
        Ok(Connection {
            reader: BufReader::with_capacity(READ_BUFFER_BYTES, s),
            server,
            line: Vec::with_capacity(256),
            out: Vec::with_capacity(256),
            max_reply: MAX_REPLY_BYTES,
        })
    }

    /// Sets the longest reply line accepted (default [`MAX_REPLY_BYTES`]).
    pub fn set_max_reply_bytes(&mut self, limit: usize) {
        self.max_reply = limit;
    }

    /// The server as errors name it.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The socket (for its addresses, `shutdown`, `try_clone`). Reading
    /// from it directly would skip what this connection has buffered.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Sends one request line (the LF is added): refused with
    /// [`Error::BadRequest`], and nothing sent, if it holds a CR or LF or
    /// is longer than [`MAX_LINE_BYTES`].
    pub fn send_line(&mut self, line: &str) -> Result<(), Error> {
        self.send_lines(&[line])
    }

    /// Sends several request lines in one write (pipelining): each is
    /// checked as by [`Connection::send_line`] before anything is sent.
    pub fn send_lines(&mut self, lines: &[&str]) -> Result<(), Error> {
        for line in lines {
            check_line(line)?;
        }
        self.out.clear();
        for line in lines {
            self.out.extend_from_slice(line.as_bytes());
            self.out.push(b'\n');
        }
        let result = self.reader.get_ref().write_all(&self.out);
        result.map_err(|source| Error::Write {
            server: self.server.clone(),
            source,
        })
    }

    /// Sends `bytes` as they are: no framing, no checks (several requests
    /// with their LFs, or a deliberately bad line).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.reader
            .get_ref()
            .write_all(bytes)
            .map_err(|source| Error::Write {
                server: self.server.clone(),
                source,
            })
    }

    /// Reads the next line into the line buffer, line end removed. `false`
    /// at a clean end of stream (no byte of a new line).
    fn fill_line(&mut self) -> Result<bool, Error> {
        self.line.clear();
        let limit = u64::try_from(self.max_reply).unwrap_or(u64::MAX);
        let n = (&mut self.reader)
            .take(limit.saturating_add(1))
            .read_until(b'\n', &mut self.line)
            .map_err(|source| Error::Read {
                server: self.server.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(false);
        }
        if self.line.last() != Some(&b'\n') {
            if self.line.len() > self.max_reply {
                return Err(Error::ReplyTooLong {
                    server: self.server.clone(),
                    limit: self.max_reply,
                });
            }
            return Err(self.closed());
        }
        self.line.pop();
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        Ok(true)
    }

    fn closed(&self) -> Error {
        Error::Read {
            server: self.server.clone(),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a whole reply line",
            ),
        }
    }

    /// The next reply line as bytes, without its line end, borrowed from
    /// the connection's buffer; `None` when the server closed the
    /// connection before another line began.
    pub fn read_raw_line(&mut self) -> Result<Option<&[u8]>, Error> {
        Ok(self.fill_line()?.then_some(self.line.as_slice()))
    }

    /// The next reply line, without its line end. The server closing the
    /// connection first is [`Error::Read`] (`UnexpectedEof`).
    pub fn read_line(&mut self) -> Result<&str, Error> {
        if !self.fill_line()? {
            return Err(self.closed());
        }
        std::str::from_utf8(&self.line).map_err(|_| Error::NotUtf8 {
            server: self.server.clone(),
            reply: String::from_utf8_lossy(&self.line)
                .chars()
                .take(200)
                .collect(),
        })
    }

    /// The next reply, parsed.
    pub fn read_reply(&mut self) -> Result<Reply, Error> {
        self.read_line().map(Reply::parse)
    }

    /// Sends `line` and reads its reply (earlier pipelined replies must
    /// have been read).
    pub fn request(&mut self, line: &str) -> Result<Reply, Error> {
        self.send_line(line)?;
        self.read_reply()
    }

    /// The next reply, classified without allocating (the load generator's
    /// path). The server closing the connection is [`Error::Read`].
    pub fn read_kind(&mut self) -> Result<ReplyKind, Error> {
        if !self.fill_line()? {
            return Err(self.closed());
        }
        Ok(ReplyKind::of(&self.line))
    }

    /// True if the server closed the connection and every byte it sent has
    /// been read; false if a byte is waiting, or none came within the read
    /// timeout. Consumes nothing.
    pub fn is_closed(&mut self) -> bool {
        matches!(self.reader.fill_buf(), Ok(b) if b.is_empty())
    }
}

/// One request line: no line end inside, at most [`MAX_LINE_BYTES`].
fn check_line(line: &str) -> Result<(), Error> {
    let why = if line.len() > MAX_LINE_BYTES {
        "longer than the protocol's 4096 bytes"
    } else if line.contains(['\n', '\r']) {
        "it holds a line end"
    } else {
        return Ok(());
    };
    Err(Error::BadRequest {
        line: line.chars().take(200).collect(),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A peer on loopback that reads what it is sent and answers `script`
    /// once it has `expect` bytes, then closes.
    fn peer(
        expect: usize,
        script: &'static [u8],
    ) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut got = vec![0u8; expect];
            s.read_exact(&mut got).expect("read the requests");
            s.write_all(script).expect("answer");
            got
        });
        (addr, t)
    }

    fn timeouts() -> Timeouts {
        Timeouts::all(Duration::from_secs(20))
    }

    #[test]
    fn pipelined_requests_and_typed_replies() {
        let (addr, t) = peer(
            22,
            b"PONG\r\nOK F h 0\nDENIED F h ALL_IN_USE -4 Licensed number of users already reached.\n",
        );
        let mut c = Connection::connect_addr(addr, timeouts()).expect("connect");
        c.send_lines(&["PING", "CHECKOUT F u x h"]).expect("send");
        assert_eq!(c.read_reply().expect("reply"), Reply::Pong);
        assert_eq!(c.read_reply().expect("reply"), Reply::Ok("F h 0".into()));
        assert_eq!(c.read_kind().expect("reply"), ReplyKind::Denied);
        assert!(matches!(
            c.read_line(),
            Err(Error::Read { ref source, .. }) if source.kind() == io::ErrorKind::UnexpectedEof
        ));
        assert!(c.is_closed());
        assert_eq!(t.join().expect("peer"), b"PING\nCHECKOUT F u x h\n");
    }

    #[test]
    fn a_cut_reply_and_a_long_one_are_errors() {
        let (addr, _t) = peer(0, b"OK a\nOK b");
        let mut c = Connection::connect_addr(addr, timeouts()).expect("connect");
        assert_eq!(c.read_raw_line().expect("line"), Some(&b"OK a"[..]));
        assert!(matches!(c.read_raw_line(), Err(Error::Read { .. })));

        let (addr, _t) = peer(0, b"OK 123456789\nOK 12345678\n");
        let mut c = Connection::connect_addr(addr, timeouts()).expect("connect");
        c.set_max_reply_bytes(11);
        assert!(matches!(
            c.read_line(),
            Err(Error::ReplyTooLong { limit: 11, .. })
        ));
    }

    #[test]
    fn a_line_that_is_not_one_request_is_not_sent() {
        let (addr, t) = peer(5, b"");
        let mut c = Connection::connect_addr(addr, timeouts()).expect("connect");
        for bad in [
            "CHECKIN F h\nDOWN".to_string(),
            "P".repeat(MAX_LINE_BYTES + 1),
        ] {
            assert!(matches!(
                c.send_lines(&["PING", &bad]),
                Err(Error::BadRequest { .. })
            ));
        }
        c.send_line("PING").expect("send");
        assert_eq!(t.join().expect("peer"), b"PING\n");
    }

    #[test]
    fn a_server_nobody_listens_on() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let e = Connection::connect("127.0.0.1", port, timeouts()).unwrap_err();
        assert!(matches!(e, Error::Connect { .. }), "{e}");
        assert!(
            e.to_string().starts_with(&format!("{port}@127.0.0.1: ")),
            "{e}"
        );
    }
}
