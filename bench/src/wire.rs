//! The two wire protocols the load generator speaks, and the requests of
//! each target, prebuilt as bytes so the timed loop formats nothing.
//!
//! - **tally**: protocol v1 (docs/protocol.md), one text line per request.
//! - **redis-lua**: a Redis counting semaphore, one hash per feature: the
//!   Lua script [`SEMAPHORE_LUA`] (loaded once with `SCRIPT LOAD`, called
//!   with `EVALSHA`) grants if the handle already holds (a renewal: it
//!   stores the new deadline) or if `HLEN < limit`; release is `HDEL`.
//! - **redis-set**: a plain `SET handle feature`, the ceiling of any
//!   request/response server on this machine.
//!
//! tally's side of a [`Conn`] is tally-client's [`Connection`], the one
//! protocol client, on its allocation-free path (`send_raw`, `read_kind`).
//! RESP is written by hand: the generator needs five commands and a reply
//! classifier, and must own its socket to pipeline exactly.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tally_client::{Connection, ReplyKind, Timeouts};

/// What a server is asked to do, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// tallyd, protocol v1.
    Tally,
    /// Redis with the Lua counting semaphore (EVALSHA).
    RedisLua,
    /// Redis with plain `SET` (no semaphore: the ceiling).
    RedisSet,
}

impl Target {
    /// Every target, in report order.
    pub const ALL: [Target; 3] = [Target::Tally, Target::RedisLua, Target::RedisSet];

    /// Name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::Tally => "tally",
            Target::RedisLua => "redis-lua",
            Target::RedisSet => "redis-set",
        }
    }

    /// Parses a name from [`Target::name`].
    pub fn parse(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == s)
    }

    /// True for the two Redis targets.
    pub fn is_redis(self) -> bool {
        self != Target::Tally
    }
}

/// The semaphore script. `KEYS[1]` = feature hash, `ARGV` = handle, limit,
/// deadline (ms). Returns 1 (granted or renewed) or 0 (all in use).
pub const SEMAPHORE_LUA: &str = "\
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then \
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1 end \
if redis.call('HLEN', KEYS[1]) < tonumber(ARGV[2]) then \
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1 end \
return 0";

/// How a reply is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Granted, released, stored.
    Ok,
    /// Refused for want of a license.
    Denied,
    /// Anything else (a protocol error, a release of nothing held).
    Err,
}

impl From<ReplyKind> for Outcome {
    /// A tally reply's kind ([`ReplyKind::of`]) as the generator counts it.
    fn from(kind: ReplyKind) -> Outcome {
        match kind {
            ReplyKind::Ok => Outcome::Ok,
            ReplyKind::Denied => Outcome::Denied,
            ReplyKind::Err => Outcome::Err,
        }
    }
}

/// What a request does, target-independently.
#[derive(Debug, Clone, Copy)]
pub enum Op<'a> {
    /// Take (or renew) one license of `feature` for `handle`, held for
    /// `linger_s` seconds after this request (0: until check-in).
    Acquire {
        /// Feature (tally) or hash key (Redis).
        feature: &'a str,
        /// Client handle.
        handle: &'a str,
        /// Linger in seconds.
        linger_s: u32,
    },
    /// Give it back.
    Release {
        /// Feature or hash key.
        feature: &'a str,
        /// Client handle.
        handle: &'a str,
    },
}

/// Everything needed to encode requests for one target.
#[derive(Debug, Clone)]
pub struct Encoder {
    /// The target.
    pub target: Target,
    /// SHA1 of the loaded semaphore script (redis-lua).
    pub sha: String,
    /// The semaphore's limit (licenses per feature) for redis-lua.
    pub limit: u64,
}

fn resp(out: &mut Vec<u8>, args: &[&[u8]]) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "*{}\r\n", args.len());
    for a in args {
        let _ = write!(out, "${}\r\n", a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

impl Encoder {
    /// Appends the bytes of `op` to `out`.
    pub fn encode(&self, op: Op<'_>, out: &mut Vec<u8>) {
        match (self.target, op) {
            (
                Target::Tally,
                Op::Acquire {
                    feature,
                    handle,
                    linger_s,
                },
            ) => {
                let _ = write!(out, "CHECKOUT {feature} u h {handle}");
                if linger_s > 0 {
                    let _ = write!(out, " linger={linger_s}");
                }
                out.push(b'\n');
            }
            (Target::Tally, Op::Release { feature, handle }) => {
                let _ = writeln!(out, "CHECKIN {feature} {handle}");
            }
            (
                Target::RedisLua,
                Op::Acquire {
                    feature,
                    handle,
                    linger_s,
                },
            ) => {
                // The deadline is a constant per request: the script
                // stores whatever it is given, as a client would.
                let limit = self.limit.to_string();
                let deadline = (u64::from(linger_s) * 1000).to_string();
                resp(
                    out,
                    &[
                        b"EVALSHA",
                        self.sha.as_bytes(),
                        b"1",
                        feature.as_bytes(),
                        handle.as_bytes(),
                        limit.as_bytes(),
                        deadline.as_bytes(),
                    ],
                );
            }
            (Target::RedisLua, Op::Release { feature, handle }) => {
                resp(out, &[b"HDEL", feature.as_bytes(), handle.as_bytes()]);
            }
            (
                Target::RedisSet,
                Op::Acquire {
                    feature, handle, ..
                },
            )
            | (Target::RedisSet, Op::Release { feature, handle }) => {
                // One key per handle: never the semaphore's hash key.
                resp(out, &[b"SET", handle.as_bytes(), feature.as_bytes()]);
            }
        }
    }
}

/// One client connection, either protocol.
#[derive(Debug)]
pub enum Conn {
    /// tallyd, through tally-client.
    Tally(Connection),
    /// Redis.
    Resp(RespConn),
}

/// Connection timeout and read timeout: nothing waits longer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

impl Conn {
    /// Connects to `addr`, speaking RESP if `resp`.
    pub fn connect(addr: SocketAddr, resp: bool) -> std::io::Result<Conn> {
        if resp {
            let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
            Ok(Conn::Resp(RespConn::from_stream(s)?))
        } else {
            Ok(Conn::Tally(Connection::connect_addr(
                addr,
                Timeouts::all(IO_TIMEOUT),
            )?))
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Tally(c) => Ok(c.send_raw(bytes)?),
            Conn::Resp(c) => c.writer.write_all(bytes),
        }
    }

    /// Reads one reply and classifies it.
    pub fn outcome(&mut self) -> std::io::Result<Outcome> {
        match self {
            Conn::Tally(c) => Ok(Outcome::from(c.read_kind()?)),
            Conn::Resp(c) => c.outcome(),
        }
    }

    /// Sends one text line (tally) and returns the reply line.
    pub fn request_line(&mut self, line: &str) -> std::io::Result<String> {
        match self {
            Conn::Tally(c) => {
                c.send_line(line)?;
                Ok(c.read_line()?.to_string())
            }
            Conn::Resp(_) => Err(std::io::Error::other("a text request to a Redis server")),
        }
    }

    /// Sends one RESP command and returns its reply: the text of a simple
    /// string, integer or error, or the body of a bulk string.
    pub fn command(&mut self, args: &[&str]) -> std::io::Result<String> {
        match self {
            Conn::Resp(c) => c.command(args),
            Conn::Tally(_) => Err(std::io::Error::other("a RESP command to tallyd")),
        }
    }
}

/// A Redis connection (RESP).
#[derive(Debug)]
pub struct RespConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: Vec<u8>,
}

impl RespConn {
    /// Wraps a connected stream.
    pub fn from_stream(s: TcpStream) -> std::io::Result<RespConn> {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        Ok(RespConn {
            writer: s.try_clone()?,
            reader: BufReader::with_capacity(64 * 1024, s),
            line: Vec::with_capacity(256),
        })
    }

    fn read_line(&mut self) -> std::io::Result<()> {
        self.line.clear();
        if self.reader.read_until(b'\n', &mut self.line)? == 0 {
            return Err(std::io::Error::other("server closed the connection"));
        }
        while matches!(self.line.last(), Some(b'\n' | b'\r')) {
            self.line.pop();
        }
        Ok(())
    }

    /// Reads one reply and classifies it.
    pub fn outcome(&mut self) -> std::io::Result<Outcome> {
        self.read_line()?;
        match self.line.first() {
            Some(b'+') => Ok(Outcome::Ok),
            Some(b':') => Ok(match &self.line[1..] {
                b"1" => Outcome::Ok,
                // EVALSHA's 0 is "all in use"; HDEL's 0 is "not held",
                // an error for a release; the caller knows which.
                _ => Outcome::Denied,
            }),
            Some(b'$') => {
                self.skip_bulk()?;
                Ok(Outcome::Ok)
            }
            _ => Ok(Outcome::Err),
        }
    }

    fn skip_bulk(&mut self) -> std::io::Result<()> {
        let n: i64 = std::str::from_utf8(&self.line[1..])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("bad RESP bulk length"))?;
        if n >= 0 {
            let mut buf = vec![0u8; n as usize + 2];
            std::io::Read::read_exact(&mut self.reader, &mut buf)?;
        }
        Ok(())
    }

    /// Sends one RESP command and returns its reply: the text of a simple
    /// string, integer or error, or the body of a bulk string.
    pub fn command(&mut self, args: &[&str]) -> std::io::Result<String> {
        let mut out = Vec::new();
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        resp(&mut out, &a);
        self.writer.write_all(&out)?;
        self.read_line()?;
        match self.line.first() {
            Some(b'$') => {
                let n: i64 = std::str::from_utf8(&self.line[1..])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| std::io::Error::other("bad RESP bulk length"))?;
                if n < 0 {
                    return Ok(String::new());
                }
                let mut buf = vec![0u8; n as usize + 2];
                std::io::Read::read_exact(&mut self.reader, &mut buf)?;
                buf.truncate(n as usize);
                Ok(String::from_utf8_lossy(&buf).into_owned())
            }
            Some(b'-') => Err(std::io::Error::other(format!(
                "redis: {}",
                String::from_utf8_lossy(&self.line[1..])
            ))),
            _ => Ok(String::from_utf8_lossy(self.line.get(1..).unwrap_or(&[])).into_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_each_target() {
        let mut out = Vec::new();
        let acq = Op::Acquire {
            feature: "F",
            handle: "h1",
            linger_s: 60,
        };
        let rel = Op::Release {
            feature: "F",
            handle: "h1",
        };
        let tally = Encoder {
            target: Target::Tally,
            sha: String::new(),
            limit: 5,
        };
        tally.encode(acq, &mut out);
        tally.encode(rel, &mut out);
        assert_eq!(out, b"CHECKOUT F u h h1 linger=60\nCHECKIN F h1\n");
        out.clear();
        let lua = Encoder {
            target: Target::RedisLua,
            sha: "abc".into(),
            limit: 5,
        };
        lua.encode(acq, &mut out);
        assert_eq!(
            out,
            b"*7\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n1\r\n$1\r\nF\r\n$2\r\nh1\r\n$1\r\n5\r\n$5\r\n60000\r\n"
        );
        out.clear();
        lua.encode(rel, &mut out);
        assert_eq!(out, b"*3\r\n$4\r\nHDEL\r\n$1\r\nF\r\n$2\r\nh1\r\n");
        assert_eq!(Target::parse("redis-set"), Some(Target::RedisSet));
    }
}
