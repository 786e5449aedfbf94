//! Wire protocol v1: one request per line, one reply line per request.
//!
//! [`parse`] turns one line (without its LF) into a [`Command`] borrowing
//! from the line (no allocation on success); errors carry the reply code and
//! a text naming the offending field. The full protocol is in
//! `docs/protocol.md`.

use std::fmt;
use std::net::IpAddr;

use tally_core::engine::{Reason, MAX_COUNT_PER_CHECKOUT, MAX_LINGER_MS};
use tally_core::license::Version;

use crate::status::Status;

/// Longest request line accepted, in bytes, not counting the LF.
pub const MAX_LINE_BYTES: usize = 4096;

/// Longest single field, in bytes.
pub const MAX_FIELD_BYTES: usize = 255;

/// A parsed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `CHECKOUT <feature> <user> <host> <handle> [options]`.
    Checkout(Checkout<'a>),
    /// `CHECKIN <feature> <handle> [user=<u> host=<h>]`.
    Checkin {
        /// Feature name.
        feature: &'a str,
        /// Client handle.
        handle: &'a str,
        /// `user=` and `host=`: the holder's names, for a check-in from a
        /// connection that did not check the license out.
        holder: Option<(&'a str, &'a str)>,
    },
    /// `STATUS [feature] [from=<n>] [limit=<n>]`.
    Status(StatusQuery<'a>),
    /// `PING`.
    Ping,
    /// `QUIT`.
    Quit,
    /// `AUTH <token>`.
    Auth(&'a str),
    /// `REMOVE <feature> <user> <host> <display>`; the display is matched
    /// as lmstat shows it ([`remove_display_matches`]).
    Remove {
        /// Feature name.
        feature: &'a str,
        /// User name.
        user: &'a str,
        /// Host name.
        host: &'a str,
        /// Display.
        display: &'a str,
    },
    /// `REMOVE_HANDLE <feature> <ticket>`.
    RemoveHandle {
        /// Feature name.
        feature: &'a str,
        /// Numeric license handle from STATUS / lmstat.
        ticket: u64,
    },
    /// `REREAD`.
    Reread,
    /// `DOWN`.
    Down,
    /// `REOPEN_LOG`: reopen the debug log file (after logrotate).
    ReopenLog,
}

impl Command<'_> {
    /// True for requests only an admin may make.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Command::Remove { .. }
                | Command::RemoveHandle { .. }
                | Command::Reread
                | Command::Down
                | Command::ReopenLog
        )
    }
}

/// What a STATUS asks for: one feature or all, and a page of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusQuery<'a> {
    /// Only this feature (its pools), if given.
    pub feature: Option<&'a str>,
    /// Skip this many features (in license-file order).
    pub from: usize,
    /// At most this many features (`None`: all that follow).
    pub limit: Option<usize>,
}

/// Whether `REMOVE`'s `display` field names a holder whose display is
/// `held` on host `host`: the same display, or, for a holder that sent no
/// display, its host. lmstat prints the host in the display column of such
/// a holder (`bob pc2 pc2`), and lmremove takes the words lmstat printed; a
/// protocol field cannot be empty, so this is the only way to name it.
pub fn remove_display_matches(held: &str, host: &str, display: &str) -> bool {
    held == display || (held.is_empty() && host == display)
}

/// The fields of a CHECKOUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkout<'a> {
    /// Feature name.
    pub feature: &'a str,
    /// User name.
    pub user: &'a str,
    /// Host name.
    pub host: &'a str,
    /// Client handle.
    pub handle: &'a str,
    /// `display=`, or `""`.
    pub display: &'a str,
    /// `version=`, scaled as [`Version::scaled`].
    pub version: Option<u64>,
    /// `count=` (default 1).
    pub count: u32,
    /// `linger=` in ms (default 0).
    pub linger_ms: u64,
    /// `wait=` in ms (default 0).
    pub wait_ms: u64,
}

/// Error codes of `ERR` replies: every one is sent (see [`Reply::code`]),
/// and `docs/protocol.md` lists exactly these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrCode {
    /// Empty line.
    EmptyRequest,
    /// First word is not a command.
    UnknownCommand,
    /// A required field is absent.
    MissingField,
    /// A field is empty, malformed, repeated or unknown.
    BadField,
    /// The line is not UTF-8.
    BadUtf8,
    /// The line is longer than [`MAX_LINE_BYTES`].
    LineTooLong,
    /// CHECKIN / REMOVE_HANDLE of something not held.
    NotHeld,
    /// CHECKIN / REMOVE of an unknown feature.
    NoSuchFeature,
    /// CHECKIN of a license that another user or host holds, from a
    /// connection that did not check it out.
    NotHolder,
    /// Admin request from a non-loopback peer without AUTH.
    Forbidden,
    /// AUTH failed.
    AuthFailed,
    /// REREAD could not read the license file.
    RereadFailed,
}

impl ErrCode {
    /// Every code, in the order `docs/protocol.md` lists them.
    pub const ALL: [ErrCode; 12] = [
        ErrCode::EmptyRequest,
        ErrCode::UnknownCommand,
        ErrCode::MissingField,
        ErrCode::BadField,
        ErrCode::BadUtf8,
        ErrCode::LineTooLong,
        ErrCode::NotHeld,
        ErrCode::NoSuchFeature,
        ErrCode::NotHolder,
        ErrCode::Forbidden,
        ErrCode::AuthFailed,
        ErrCode::RereadFailed,
    ];

    /// The code as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrCode::EmptyRequest => "EMPTY_REQUEST",
            ErrCode::UnknownCommand => "UNKNOWN_COMMAND",
            ErrCode::MissingField => "MISSING_FIELD",
            ErrCode::BadField => "BAD_FIELD",
            ErrCode::BadUtf8 => "BAD_UTF8",
            ErrCode::LineTooLong => "LINE_TOO_LONG",
            ErrCode::NotHeld => "NOT_HELD",
            ErrCode::NoSuchFeature => "NO_SUCH_FEATURE",
            ErrCode::NotHolder => "NOT_HOLDER",
            ErrCode::Forbidden => "FORBIDDEN",
            ErrCode::AuthFailed => "AUTH_FAILED",
            ErrCode::RereadFailed => "REREAD_FAILED",
        }
    }
}

/// One reply line, as the server sends it. [`Reply::write_to`] formats
/// every line tallyd writes (its LF included); nothing else in the server
/// writes protocol text.
#[derive(Debug, Clone, Copy)]
pub enum Reply<'a> {
    /// `OK <feature> <handle> <deadline>`: a CHECKOUT granted (deadline 0:
    /// held until check-in).
    Granted {
        /// Feature, as asked for.
        feature: &'a str,
        /// Client handle.
        handle: &'a str,
        /// Unix ms, or 0.
        deadline: u64,
    },
    /// `DENIED <feature> <handle> <REASON> <code> <text>`.
    Denied {
        /// Feature, as asked for.
        feature: &'a str,
        /// Client handle.
        handle: &'a str,
        /// Why.
        reason: Reason,
    },
    /// `OK <feature> <handle>`: a CHECKIN done.
    CheckedIn {
        /// Feature, as asked for.
        feature: &'a str,
        /// Client handle.
        handle: &'a str,
    },
    /// `OK <json>`: the STATUS reply.
    Status(&'a Status),
    /// `OK {"error":"<text>"}`: a STATUS that could not be built.
    StatusFailed(&'a str),
    /// `PONG`.
    Pong,
    /// `BYE` (QUIT).
    Bye,
    /// `OK AUTH`.
    Authed,
    /// `OK REMOVED <n>`.
    Removed(usize),
    /// `OK REREAD <pools> <diagnostics>`.
    Reread {
        /// Pools served from the new file.
        pools: usize,
        /// Its lines skipped.
        diagnostics: usize,
    },
    /// `OK REOPEN_LOG`.
    LogReopened,
    /// `OK DOWN`.
    Down,
    /// `ERR <code> <text>`: a request that could not be parsed.
    Malformed(&'a ProtoError),
    /// `ERR LINE_TOO_LONG`: a line past [`MAX_LINE_BYTES`] without a LF
    /// (the connection closes).
    LineTooLong,
    /// `ERR FORBIDDEN`: an admin request from a remote peer without AUTH.
    Forbidden {
        /// The peer.
        peer: IpAddr,
    },
    /// `ERR AUTH_FAILED`.
    AuthFailed {
        /// Whether the server has an admin token at all.
        token_configured: bool,
        /// `Some(n)`: the `n`-th failure, after which the connection closes.
        closing_after: Option<u32>,
    },
    /// `ERR NOT_HELD`: the handle holds no license of the feature.
    NotHeld {
        /// Feature.
        feature: &'a str,
        /// Client handle.
        handle: &'a str,
    },
    /// `ERR NOT_HELD`: under DUP_GROUP, no use by this handle on this
    /// connection.
    NoUseHere {
        /// Feature.
        feature: &'a str,
        /// Client handle.
        handle: &'a str,
        /// The feature's DUP_GROUP, as the license file spells it.
        dup_group: &'a str,
    },
    /// `ERR NOT_HELD`: REMOVE_HANDLE of a ticket nobody holds.
    NoSuchTicket {
        /// Feature.
        feature: &'a str,
        /// The numeric license handle asked for.
        ticket: u64,
    },
    /// `ERR NOT_HOLDER`: a CHECKIN from someone else than the holder.
    NotHolder {
        /// Feature.
        feature: &'a str,
        /// Client handle.
        handle: &'a str,
    },
    /// `ERR NO_SUCH_FEATURE`.
    NoSuchFeature {
        /// The name asked for.
        feature: &'a str,
    },
    /// `ERR REREAD_FAILED another reread is in progress`.
    RereadBusy,
    /// `ERR REREAD_FAILED <why>`: a file could not be read.
    RereadFailed(&'a str),
}

impl Reply<'_> {
    /// The `ERR` code of an error reply (`None` for the others).
    pub fn code(&self) -> Option<ErrCode> {
        Some(match self {
            Reply::Malformed(e) => e.code,
            Reply::LineTooLong => ErrCode::LineTooLong,
            Reply::Forbidden { .. } => ErrCode::Forbidden,
            Reply::AuthFailed { .. } => ErrCode::AuthFailed,
            Reply::NotHeld { .. } | Reply::NoUseHere { .. } | Reply::NoSuchTicket { .. } => {
                ErrCode::NotHeld
            }
            Reply::NotHolder { .. } => ErrCode::NotHolder,
            Reply::NoSuchFeature { .. } => ErrCode::NoSuchFeature,
            Reply::RereadBusy | Reply::RereadFailed(_) => ErrCode::RereadFailed,
            _ => return None,
        })
    }

    /// Writes the line and its LF.
    pub fn write_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match *self {
            Reply::Granted {
                feature,
                handle,
                deadline,
            } => writeln!(out, "OK {feature} {handle} {deadline}"),
            Reply::Denied {
                feature,
                handle,
                reason,
            } => writeln!(
                out,
                "DENIED {feature} {handle} {} {} {}",
                reason.name(),
                reason.flexlm_code(),
                reason.full_text()
            ),
            Reply::CheckedIn { feature, handle } => writeln!(out, "OK {feature} {handle}"),
            Reply::Status(status) => match serde_json::to_string(status) {
                Ok(json) => writeln!(out, "OK {json}"),
                Err(e) => Reply::StatusFailed(&e.to_string()).write_to(out),
            },
            Reply::StatusFailed(e) => writeln!(out, "OK {{\"error\":\"{e}\"}}"),
            Reply::Pong => out.write_str("PONG\n"),
            Reply::Bye => out.write_str("BYE\n"),
            Reply::Authed => out.write_str("OK AUTH\n"),
            Reply::Removed(n) => writeln!(out, "OK REMOVED {n}"),
            Reply::Reread { pools, diagnostics } => {
                writeln!(out, "OK REREAD {pools} {diagnostics}")
            }
            Reply::LogReopened => out.write_str("OK REOPEN_LOG\n"),
            Reply::Down => out.write_str("OK DOWN\n"),
            Reply::Malformed(e) => writeln!(out, "{e}"),
            Reply::LineTooLong => writeln!(
                out,
                "ERR LINE_TOO_LONG request is longer than {MAX_LINE_BYTES} bytes without a newline; closing"
            ),
            Reply::Forbidden { peer } => writeln!(
                out,
                "ERR FORBIDDEN admin requests from {peer} need AUTH <token> first"
            ),
            Reply::AuthFailed {
                token_configured,
                closing_after,
            } => {
                let why = if token_configured {
                    "wrong admin token"
                } else {
                    "this server has no admin token (start tallyd with --admin-token-file)"
                };
                match closing_after {
                    Some(n) => writeln!(
                        out,
                        "ERR AUTH_FAILED {why}; {n} failures, closing the connection"
                    ),
                    None => writeln!(out, "ERR AUTH_FAILED {why}"),
                }
            }
            Reply::NotHeld { feature, handle } => writeln!(
                out,
                "ERR NOT_HELD handle {handle} holds no license of {feature}"
            ),
            Reply::NoUseHere {
                feature,
                handle,
                dup_group,
            } => writeln!(
                out,
                "ERR NOT_HELD handle {handle} has no use of {feature} on this connection (under DUP_GROUP={dup_group} a use is checked in by the connection that checked it out)"
            ),
            Reply::NoSuchTicket { feature, ticket } => writeln!(
                out,
                "ERR NOT_HELD no license of {feature} has handle {ticket}"
            ),
            Reply::NotHolder { feature, handle } => writeln!(
                out,
                "ERR NOT_HOLDER the license of {feature} with handle {handle} is held by another user or host; only its holder may check it in"
            ),
            Reply::NoSuchFeature { feature } => writeln!(
                out,
                "ERR NO_SUCH_FEATURE the license file has no feature \"{feature}\""
            ),
            Reply::RereadBusy => out.write_str("ERR REREAD_FAILED another reread is in progress\n"),
            Reply::RereadFailed(why) => writeln!(out, "ERR REREAD_FAILED {why}"),
        }
    }

    /// Appends the line (and its LF) to a byte buffer.
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        if let Reply::Status(status) = self {
            // Straight into the buffer: a large STATUS is tens of MB.
            let start = out.len();
            out.extend_from_slice(b"OK ");
            match serde_json::to_writer(&mut *out, status) {
                Ok(()) => out.push(b'\n'),
                Err(e) => {
                    out.truncate(start);
                    Reply::StatusFailed(&e.to_string()).write_bytes(out);
                }
            }
            return;
        }
        let mut s = String::new();
        let _ = self.write_to(&mut s);
        out.extend_from_slice(s.as_bytes());
    }
}

impl fmt::Display for Reply<'_> {
    /// The line without its LF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::new();
        self.write_to(&mut line)?;
        f.write_str(line.trim_end_matches('\n'))
    }
}

/// A request that could not be parsed: the reply is `ERR <code> <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError {
    /// The code.
    pub code: ErrCode,
    /// What is wrong, naming the field.
    pub text: String,
}

impl ProtoError {
    fn new(code: ErrCode, text: impl Into<String>) -> ProtoError {
        ProtoError {
            code,
            text: text.into(),
        }
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ERR {} {}", self.code.as_str(), self.text)
    }
}

/// Parses one request line (without the LF; a trailing CR is dropped).
pub fn parse(line: &[u8]) -> Result<Command<'_>, ProtoError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE_BYTES {
        return Err(ProtoError::new(
            ErrCode::LineTooLong,
            format!("request is longer than {MAX_LINE_BYTES} bytes"),
        ));
    }
    let text = std::str::from_utf8(line).map_err(|e| {
        ProtoError::new(
            ErrCode::BadUtf8,
            format!(
                "request is not UTF-8 (bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    if text.is_empty() {
        return Err(ProtoError::new(ErrCode::EmptyRequest, "empty request line"));
    }
    let mut fields = Fields::new(text);
    let verb = fields.next_required("command")?;
    let cmd = if verb.eq_ignore_ascii_case("CHECKOUT") {
        Command::Checkout(parse_checkout(&mut fields)?)
    } else if verb.eq_ignore_ascii_case("CHECKIN") {
        parse_checkin(&mut fields)?
    } else if verb.eq_ignore_ascii_case("STATUS") {
        Command::Status(parse_status(&mut fields)?)
    } else if verb.eq_ignore_ascii_case("PING") {
        Command::Ping
    } else if verb.eq_ignore_ascii_case("QUIT") {
        Command::Quit
    } else if verb.eq_ignore_ascii_case("AUTH") {
        Command::Auth(fields.next_required("token")?)
    } else if verb.eq_ignore_ascii_case("REMOVE") {
        Command::Remove {
            feature: fields.next_required("feature")?,
            user: fields.next_required("user")?,
            host: fields.next_required("host")?,
            display: fields.next_required("display")?,
        }
    } else if verb.eq_ignore_ascii_case("REMOVE_HANDLE") {
        let feature = fields.next_required("feature")?;
        let t = fields.next_required("ticket")?;
        let ticket = t.parse().map_err(|_| {
            ProtoError::new(
                ErrCode::BadField,
                format!("ticket \"{t}\" is not a number (lmstat's license handle)"),
            )
        })?;
        Command::RemoveHandle { feature, ticket }
    } else if verb.eq_ignore_ascii_case("REREAD") {
        Command::Reread
    } else if verb.eq_ignore_ascii_case("DOWN") {
        Command::Down
    } else if verb.eq_ignore_ascii_case("REOPEN_LOG") {
        Command::ReopenLog
    } else {
        return Err(ProtoError::new(
            ErrCode::UnknownCommand,
            format!(
                "unknown command \"{}\" (expected CHECKOUT, CHECKIN, STATUS, PING, QUIT, AUTH, REMOVE, REMOVE_HANDLE, REREAD, REOPEN_LOG or DOWN)",
                printable(verb)
            ),
        ));
    };
    fields.expect_end(verb)?;
    Ok(cmd)
}

/// Splits `key=value` options, each key from `keys` at most once.
fn options<'a, const N: usize>(
    fields: &mut Fields<'a>,
    keys: [&str; N],
    mut positional: impl FnMut(&'a str) -> Result<(), ProtoError>,
) -> Result<[Option<&'a str>; N], ProtoError> {
    let mut out = [None; N];
    while let Some(opt) = fields.next()? {
        let Some((key, value)) = opt.split_once('=') else {
            positional(opt)?;
            continue;
        };
        let Some(slot) = keys.iter().position(|k| *k == key) else {
            let expected: Vec<String> = keys.iter().map(|k| format!("{k}=")).collect();
            return Err(ProtoError::new(
                ErrCode::BadField,
                format!(
                    "unknown option \"{}\" (expected {})",
                    printable(key),
                    expected.join(", ")
                ),
            ));
        };
        if value.is_empty() {
            return Err(ProtoError::new(
                ErrCode::BadField,
                format!("option {key}= has no value"),
            ));
        }
        if out[slot].replace(value).is_some() {
            return Err(ProtoError::new(
                ErrCode::BadField,
                format!("option {key}= given twice"),
            ));
        }
    }
    Ok(out)
}

fn parse_checkin<'a>(fields: &mut Fields<'a>) -> Result<Command<'a>, ProtoError> {
    let feature = fields.next_required("feature")?;
    let handle = fields.next_required("handle")?;
    let [user, host] = options(fields, ["user", "host"], |extra| {
        Err(ProtoError::new(
            ErrCode::BadField,
            format!(
                "unexpected \"{}\" after the handle (expected user= host=)",
                printable(extra)
            ),
        ))
    })?;
    let holder = match (user, host) {
        (Some(u), Some(h)) => Some((u, h)),
        (None, None) => None,
        _ => {
            return Err(ProtoError::new(
                ErrCode::MissingField,
                "user= and host= go together",
            ))
        }
    };
    Ok(Command::Checkin {
        feature,
        handle,
        holder,
    })
}

fn parse_status<'a>(fields: &mut Fields<'a>) -> Result<StatusQuery<'a>, ProtoError> {
    let mut feature = None;
    let [from, limit] = options(fields, ["from", "limit"], |name| {
        if feature.replace(name).is_some() {
            return Err(ProtoError::new(
                ErrCode::BadField,
                "STATUS names at most one feature",
            ));
        }
        Ok(())
    })?;
    let number = |key: &str, v: Option<&str>| -> Result<Option<usize>, ProtoError> {
        v.map(|v| {
            v.parse::<usize>().map_err(|_| {
                ProtoError::new(
                    ErrCode::BadField,
                    format!("{key}=\"{}\" is not a whole number", printable(v)),
                )
            })
        })
        .transpose()
    };
    let limit = number("limit", limit)?;
    if limit == Some(0) {
        return Err(ProtoError::new(
            ErrCode::BadField,
            "limit= must be at least 1",
        ));
    }
    Ok(StatusQuery {
        feature,
        from: number("from", from)?.unwrap_or(0),
        limit,
    })
}

fn parse_checkout<'a>(fields: &mut Fields<'a>) -> Result<Checkout<'a>, ProtoError> {
    let mut c = Checkout {
        feature: fields.next_required("feature")?,
        user: fields.next_required("user")?,
        host: fields.next_required("host")?,
        handle: fields.next_required("handle")?,
        display: "",
        version: None,
        count: 1,
        linger_ms: 0,
        wait_ms: 0,
    };
    let mut seen = [false; 5];
    while let Some(opt) = fields.next()? {
        let Some((key, value)) = opt.split_once('=') else {
            return Err(ProtoError::new(
                ErrCode::BadField,
                format!(
                    "unexpected field \"{}\" (options are key=value: version=, count=, linger=, display=, wait=)",
                    printable(opt)
                ),
            ));
        };
        let slot = match key {
            "version" => 0,
            "count" => 1,
            "linger" => 2,
            "display" => 3,
            "wait" => 4,
            _ => {
                return Err(ProtoError::new(
                    ErrCode::BadField,
                    format!(
                    "unknown option \"{}\" (expected version=, count=, linger=, display=, wait=)",
                    printable(key)
                ),
                ))
            }
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(ProtoError::new(
                ErrCode::BadField,
                format!("option {key}= given twice"),
            ));
        }
        if value.is_empty() {
            return Err(ProtoError::new(
                ErrCode::BadField,
                format!("option {key}= has no value"),
            ));
        }
        match slot {
            0 => {
                c.version = Some(Version::scaled_of(value).ok_or_else(|| {
                    ProtoError::new(
                        ErrCode::BadField,
                        format!(
                            "version=\"{}\" is not a version number (like 1.0)",
                            printable(value)
                        ),
                    )
                })?)
            }
            1 => c.count = parse_count(value)?,
            2 => {
                c.linger_ms = seconds_to_ms(value).ok_or_else(|| bad_number("linger", value))?;
                if c.linger_ms > MAX_LINGER_MS {
                    return Err(ProtoError::new(
                        ErrCode::BadField,
                        format!("linger={value} is longer than 100 years"),
                    ));
                }
            }
            3 => c.display = value,
            _ => {
                c.wait_ms = seconds_to_ms(value).ok_or_else(|| bad_number("wait", value))?;
                if c.wait_ms > crate::queue::MAX_WAIT_MS {
                    return Err(ProtoError::new(
                        ErrCode::BadField,
                        format!(
                            "wait={value} is longer than the {} s maximum",
                            crate::queue::MAX_WAIT_MS / 1000
                        ),
                    ));
                }
            }
        }
    }
    Ok(c)
}

/// `count=`: the number of licenses, a whole number in
/// 1..=[`MAX_COUNT_PER_CHECKOUT`]. Digits too many for any count are out of
/// range like any other large count, not "not a number".
fn parse_count(value: &str) -> Result<u32, ProtoError> {
    let range = || {
        ProtoError::new(
            ErrCode::BadField,
            format!(
                "count={} is out of range: the number of licenses must be 1..={MAX_COUNT_PER_CHECKOUT}",
                printable(value)
            ),
        )
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProtoError::new(
            ErrCode::BadField,
            format!(
                "count=\"{}\" is not a whole number of licenses (1..={MAX_COUNT_PER_CHECKOUT})",
                printable(value)
            ),
        ));
    }
    match value.parse::<u32>() {
        Ok(n) if (1..=MAX_COUNT_PER_CHECKOUT).contains(&n) => Ok(n),
        _ => Err(range()),
    }
}

fn bad_number(key: &str, value: &str) -> ProtoError {
    ProtoError::new(
        ErrCode::BadField,
        format!(
            "{key}=\"{}\" is not a number of seconds (like 30 or 0.5)",
            printable(value)
        ),
    )
}

/// `"30"`, `"0.5"`, `"1.250"` seconds -> ms. At most 3 decimals.
fn seconds_to_ms(text: &str) -> Option<u64> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() || frac.len() > 3 || (text.contains('.') && frac.is_empty()) {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = int.parse().ok()?;
    let mut ms = 0u64;
    for i in 0..3 {
        ms = ms * 10 + frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
    }
    secs.checked_mul(1000)?.checked_add(ms)
}

/// A field for an error message: at most 64 chars, control chars escaped.
fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_default).collect();
    if s.chars().count() > 64 {
        out.push_str("...");
    }
    out
}

/// Why a value cannot be sent as one protocol field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldFault {
    /// Empty.
    Empty,
    /// Longer than [`MAX_FIELD_BYTES`].
    TooLong,
    /// Holds a space (the field separator).
    Space,
    /// Holds a control character.
    Control(char),
}

impl fmt::Display for FieldFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldFault::Empty => f.write_str("is empty (fields are separated by single spaces)"),
            FieldFault::TooLong => write!(f, "is longer than {MAX_FIELD_BYTES} bytes"),
            FieldFault::Space => f.write_str("contains a space (the field separator)"),
            FieldFault::Control(c) => write!(f, "contains the control character {c:?}"),
        }
    }
}

/// The protocol's rule for one field: `None` when `value` can be sent as a
/// field (a feature, user, host, handle ...), else why not. The parser
/// applies exactly this to every field it reads, so a feature name this
/// refuses can never be checked out.
pub fn field_fault(value: &str) -> Option<FieldFault> {
    if value.is_empty() {
        Some(FieldFault::Empty)
    } else if value.len() > MAX_FIELD_BYTES {
        Some(FieldFault::TooLong)
    } else if value.contains(' ') {
        Some(FieldFault::Space)
    } else {
        value
            .chars()
            .find(|c| c.is_control())
            .map(FieldFault::Control)
    }
}

/// Splits a line on single spaces, checking each field.
struct Fields<'a> {
    rest: Option<&'a str>,
    index: usize,
}

impl<'a> Fields<'a> {
    fn new(line: &'a str) -> Fields<'a> {
        Fields {
            rest: Some(line),
            index: 0,
        }
    }

    fn next(&mut self) -> Result<Option<&'a str>, ProtoError> {
        let Some(rest) = self.rest else {
            return Ok(None);
        };
        let (field, rest) = match rest.split_once(' ') {
            Some((f, r)) => (f, Some(r)),
            None => (rest, None),
        };
        self.rest = rest;
        self.index += 1;
        match field_fault(field) {
            None => Ok(Some(field)),
            Some(fault) => Err(ProtoError::new(
                ErrCode::BadField,
                format!("field {} {fault}", self.index),
            )),
        }
    }

    fn next_required(&mut self, name: &str) -> Result<&'a str, ProtoError> {
        self.next()?.ok_or_else(|| {
            ProtoError::new(
                ErrCode::MissingField,
                format!("missing field {} ({name})", self.index + 1),
            )
        })
    }

    fn expect_end(&mut self, verb: &str) -> Result<(), ProtoError> {
        match self.next()? {
            None => Ok(()),
            Some(extra) => Err(ProtoError::new(
                ErrCode::BadField,
                format!(
                    "unexpected field {} \"{}\" after {}",
                    self.index,
                    printable(extra),
                    verb.to_ascii_uppercase()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> ErrCode {
        parse(line.as_bytes()).unwrap_err().code
    }

    /// Every reply variant, byte for byte as tallyd has always sent it
    /// (the black-box tests and clients match these lines).
    #[test]
    fn every_reply_formats_its_line() {
        let proto = ProtoError::new(ErrCode::EmptyRequest, "empty request line");
        let status: Status = serde_json::from_str(
            r#"{"server":{"name":"tallyd","version":"0","host":"h","port":1,"license_file":"f",
            "vendors":[],"started_ms":0,"now_ms":0,"connections":0,"log_dropped":0},
            "features":[],"queue":[]}"#,
        )
        .unwrap();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let cases: Vec<(Reply<'_>, &str)> = vec![
            (
                Reply::Granted {
                    feature: "F",
                    handle: "h1",
                    deadline: 17,
                },
                "OK F h1 17",
            ),
            (
                Reply::Denied {
                    feature: "F",
                    handle: "h1",
                    reason: Reason::AllInUse,
                },
                "DENIED F h1 ALL_IN_USE -4 Licensed number of users already reached.",
            ),
            (
                Reply::CheckedIn {
                    feature: "F",
                    handle: "h1",
                },
                "OK F h1",
            ),
            (Reply::StatusFailed("boom"), r#"OK {"error":"boom"}"#),
            (Reply::Pong, "PONG"),
            (Reply::Bye, "BYE"),
            (Reply::Authed, "OK AUTH"),
            (Reply::Removed(3), "OK REMOVED 3"),
            (
                Reply::Reread {
                    pools: 4,
                    diagnostics: 1,
                },
                "OK REREAD 4 1",
            ),
            (Reply::LogReopened, "OK REOPEN_LOG"),
            (Reply::Down, "OK DOWN"),
            (Reply::Malformed(&proto), "ERR EMPTY_REQUEST empty request line"),
            (
                Reply::LineTooLong,
                "ERR LINE_TOO_LONG request is longer than 4096 bytes without a newline; closing",
            ),
            (
                Reply::Forbidden { peer: ip },
                "ERR FORBIDDEN admin requests from 10.0.0.7 need AUTH <token> first",
            ),
            (
                Reply::AuthFailed {
                    token_configured: true,
                    closing_after: None,
                },
                "ERR AUTH_FAILED wrong admin token",
            ),
            (
                Reply::AuthFailed {
                    token_configured: false,
                    closing_after: Some(3),
                },
                "ERR AUTH_FAILED this server has no admin token (start tallyd with --admin-token-file); 3 failures, closing the connection",
            ),
            (
                Reply::NotHeld {
                    feature: "F",
                    handle: "h1",
                },
                "ERR NOT_HELD handle h1 holds no license of F",
            ),
            (
                Reply::NoUseHere {
                    feature: "F",
                    handle: "h1",
                    dup_group: "UH",
                },
                "ERR NOT_HELD handle h1 has no use of F on this connection (under DUP_GROUP=UH a use is checked in by the connection that checked it out)",
            ),
            (
                Reply::NoSuchTicket {
                    feature: "F",
                    ticket: 9,
                },
                "ERR NOT_HELD no license of F has handle 9",
            ),
            (
                Reply::NotHolder {
                    feature: "F",
                    handle: "h1",
                },
                "ERR NOT_HOLDER the license of F with handle h1 is held by another user or host; only its holder may check it in",
            ),
            (
                Reply::NoSuchFeature { feature: "G" },
                r#"ERR NO_SUCH_FEATURE the license file has no feature "G""#,
            ),
            (
                Reply::RereadBusy,
                "ERR REREAD_FAILED another reread is in progress",
            ),
            (
                Reply::RereadFailed("lic.lic: no FEATURE"),
                "ERR REREAD_FAILED lic.lic: no FEATURE",
            ),
        ];
        let mut codes = Vec::new();
        for (reply, want) in &cases {
            let mut line = String::new();
            reply.write_to(&mut line).unwrap();
            assert_eq!(line, format!("{want}\n"));
            let mut bytes = Vec::new();
            reply.write_bytes(&mut bytes);
            assert_eq!(bytes, line.as_bytes());
            assert_eq!(reply.to_string(), *want);
            if let Some(code) = reply.code() {
                assert!(
                    want.starts_with(&format!("ERR {} ", code.as_str())),
                    "{want}"
                );
                codes.push(code);
            } else {
                assert!(!want.starts_with("ERR"), "{want}");
            }
        }
        // STATUS: the JSON after OK, on one line.
        let mut bytes = Vec::new();
        Reply::Status(&status).write_bytes(&mut bytes);
        assert!(bytes.starts_with(b"OK {\"server\":") && bytes.ends_with(b"}\n"));
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        let mut line = String::new();
        Reply::Status(&status).write_to(&mut line).unwrap();
        assert_eq!(line.as_bytes(), &bytes[..]);
        // Every code but the parser's own is sent by some reply above; the
        // parser's (EMPTY_REQUEST ... LINE_TOO_LONG) reach Malformed.
        for code in ErrCode::ALL {
            let by_reply = codes.contains(&code);
            let by_parser = matches!(
                code,
                ErrCode::EmptyRequest
                    | ErrCode::UnknownCommand
                    | ErrCode::MissingField
                    | ErrCode::BadField
                    | ErrCode::BadUtf8
                    | ErrCode::LineTooLong
            );
            assert!(by_reply || by_parser, "{code:?} is never sent");
        }
    }

    /// docs/protocol.md's table of codes lists exactly [`ErrCode::ALL`].
    #[test]
    fn documented_codes_are_the_sent_ones() {
        let doc = include_str!("../../docs/protocol.md");
        let table = &doc[doc.find("## Errors").unwrap()..];
        let documented: Vec<&str> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let sent: Vec<&str> = ErrCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(documented, sent);
    }

    #[test]
    fn checkout_with_all_options() {
        let c = parse(b"CHECKOUT MPM_ADV_RC USER15 GENE-VM-2K3 ec26edf8 version=1.0 count=2 linger=1814400 display=console wait=0.5\r").unwrap();
        let Command::Checkout(c) = c else { panic!() };
        assert_eq!(
            (c.feature, c.user, c.host, c.handle, c.display),
            ("MPM_ADV_RC", "USER15", "GENE-VM-2K3", "ec26edf8", "console")
        );
        assert_eq!(c.version, Some(1_000_000_000));
        assert_eq!((c.count, c.linger_ms, c.wait_ms), (2, 1_814_400_000, 500));
    }

    #[test]
    fn minimal_requests() {
        assert_eq!(parse(b"ping").unwrap(), Command::Ping);
        assert_eq!(
            parse(b"STATUS").unwrap(),
            Command::Status(StatusQuery::default())
        );
        assert_eq!(
            parse(b"STATUS F1 from=2 limit=10").unwrap(),
            Command::Status(StatusQuery {
                feature: Some("F1"),
                from: 2,
                limit: Some(10)
            })
        );
        assert_eq!(
            parse(b"CHECKIN F h").unwrap(),
            Command::Checkin {
                feature: "F",
                handle: "h",
                holder: None
            }
        );
        assert_eq!(
            parse(b"CHECKIN F h host=pc1 user=alice").unwrap(),
            Command::Checkin {
                feature: "F",
                handle: "h",
                holder: Some(("alice", "pc1"))
            }
        );
        for bad in [
            &b"CHECKIN F h user=alice"[..],
            b"CHECKIN F h extra",
            b"STATUS F G",
            b"STATUS limit=x",
            b"STATUS from=1 from=2",
            b"STATUS limit=0",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            parse(b"REMOVE_HANDLE F 17").unwrap(),
            Command::RemoveHandle {
                feature: "F",
                ticket: 17
            }
        );
        assert!(parse(b"DOWN").unwrap().is_admin());
        assert!(!parse(b"PING").unwrap().is_admin());
    }

    #[test]
    fn malformed_requests_name_the_problem() {
        let cases: &[(&str, ErrCode, &str)] = &[
            ("", ErrCode::EmptyRequest, "empty"),
            ("FROB", ErrCode::UnknownCommand, "FROB"),
            ("CHECKOUT F u", ErrCode::MissingField, "host"),
            ("CHECKOUT F u h", ErrCode::MissingField, "handle"),
            ("CHECKOUT F  u h x", ErrCode::BadField, "field 3 is empty"),
            ("CHECKOUT F u h x count=abc", ErrCode::BadField, "count"),
            (
                "CHECKOUT F u h x count=0",
                ErrCode::BadField,
                "out of range",
            ),
            ("CHECKOUT F u h x linger=-1", ErrCode::BadField, "linger"),
            (
                "CHECKOUT F u h x linger=1.2345",
                ErrCode::BadField,
                "linger",
            ),
            (
                "CHECKOUT F u h x color=red",
                ErrCode::BadField,
                "unknown option",
            ),
            (
                "CHECKOUT F u h x count=1 count=2",
                ErrCode::BadField,
                "twice",
            ),
            ("CHECKOUT F u h x bare", ErrCode::BadField, "key=value"),
            ("CHECKOUT F u h x version=1.x", ErrCode::BadField, "version"),
            ("CHECKOUT F u h x display=", ErrCode::BadField, "no value"),
            ("CHECKIN F", ErrCode::MissingField, "handle"),
            ("CHECKIN F h extra", ErrCode::BadField, "unexpected"),
            ("PING now", ErrCode::BadField, "unexpected"),
            ("REMOVE_HANDLE F x", ErrCode::BadField, "not a number"),
            ("CHECKOUT F u\th x", ErrCode::BadField, "control"),
        ];
        for (line, code, needle) in cases {
            let e = parse(line.as_bytes()).unwrap_err();
            assert_eq!(e.code, *code, "{line:?}: {e}");
            assert!(e.text.contains(needle), "{line:?}: {e}");
        }
    }

    #[test]
    fn limits() {
        let long = "x".repeat(MAX_FIELD_BYTES + 1);
        assert_eq!(err(&format!("CHECKIN F {long}")), ErrCode::BadField);
        let line = "P".repeat(MAX_LINE_BYTES + 1);
        assert_eq!(err(&line), ErrCode::LineTooLong);
        assert_eq!(parse(b"CHECKIN F \xff").unwrap_err().code, ErrCode::BadUtf8);
    }

    /// Issue 12: `count=4294967296` was answered "is not a number of seconds".
    #[test]
    fn count_errors_say_what_a_count_is() {
        for value in ["4294967296", "99999999999999999999999", "0"] {
            let e = parse(format!("CHECKOUT F u h x count={value}").as_bytes()).unwrap_err();
            assert_eq!(e.code, ErrCode::BadField, "{e}");
            assert!(
                e.text.contains("out of range") && e.text.contains("number of licenses"),
                "{value}: {e}"
            );
            assert!(!e.text.contains("seconds"), "{value}: {e}");
        }
        let e = parse(b"CHECKOUT F u h x count=+1").unwrap_err();
        assert!(e.text.contains("not a whole number of licenses"), "{e}");
        let e = parse(b"CHECKOUT F u h x count=1.5").unwrap_err();
        assert!(e.text.contains("not a whole number of licenses"), "{e}");
    }

    #[test]
    fn field_rule_is_the_parsers() {
        assert_eq!(field_fault("MPM_ADV_RC"), None);
        assert_eq!(field_fault(""), Some(FieldFault::Empty));
        assert_eq!(field_fault("a b"), Some(FieldFault::Space));
        assert_eq!(field_fault("a\u{1}"), Some(FieldFault::Control('\u{1}')));
        let long = "x".repeat(MAX_FIELD_BYTES + 1);
        assert_eq!(field_fault(&long), Some(FieldFault::TooLong));
        assert!(field_fault(&long[1..]).is_none());
        // Bidirectional controls are format characters, not control ones:
        // the protocol carries them.
        assert_eq!(field_fault("abc\u{202e}"), None);
        assert!(parse("CHECKIN F\u{202e} h".as_bytes()).is_ok());
    }

    /// Issue 12 item 13: `REMOVE F bob pc2 pc2` matched nothing for a
    /// holder with no display although lmstat shows it as `bob pc2 pc2`.
    #[test]
    fn remove_matches_the_display_lmstat_shows() {
        assert!(remove_display_matches("console", "pc2", "console"));
        assert!(remove_display_matches("", "pc2", "pc2"));
        assert!(!remove_display_matches("", "pc2", "pc3"));
        assert!(!remove_display_matches("console", "pc2", "pc2"));
    }

    #[test]
    fn seconds_parse_exactly() {
        assert_eq!(seconds_to_ms("1"), Some(1000));
        assert_eq!(seconds_to_ms("0.5"), Some(500));
        assert_eq!(seconds_to_ms("1.001"), Some(1001));
        assert_eq!(seconds_to_ms(".5"), None);
        assert_eq!(seconds_to_ms("1."), None);
        assert_eq!(seconds_to_ms("1e3"), None);
        assert_eq!(seconds_to_ms("99999999999999999999"), None);
    }
}
