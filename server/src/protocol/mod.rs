//! Wire protocol v1: one request per line, one reply line per request.
//!
//! [`parse`] turns one line (without its LF) into a [`Command`] borrowing
//! from the line (no allocation on success); errors carry the reply code and
//! a text naming the offending field. The full protocol is in
//! `docs/protocol.md`. Every line the server sends is a [`Reply`]
//! (`reply.rs`).

use std::fmt;

use tally_core::engine::{Names, MAX_COUNT_PER_CHECKOUT, MAX_LINGER_MS};
use tally_core::license::Version;

mod reconcile;
mod reply;

use reconcile::parse_reconcile;
pub use reconcile::{Reconcile, RECONCILE_DEFAULT_LINGER_MS};
pub use reply::{ErrCode, Reply};

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
    /// `STATUS [feature] [from=<n>] [limit=<n>] [holders_limit=<n>]
    /// [holders_after=<cursor>]`.
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
    /// `BORROW_RETURN <feature> <user> <host> [display]`: an admin ends
    /// the holder's borrows of the feature early (the display is matched as
    /// REMOVE's; without it, any display).
    BorrowReturn {
        /// Feature name.
        feature: &'a str,
        /// User name.
        user: &'a str,
        /// Host name.
        host: &'a str,
        /// Display, if given.
        display: Option<&'a str>,
    },
    /// `REREAD`.
    Reread,
    /// `DOWN`.
    Down,
    /// `REOPEN_LOG`: reopen the debug log file (after logrotate).
    ReopenLog,
    /// `PICTURE`: the license picture (what a client's offline cache holds).
    Picture,
    /// `UPLOAD`: upload the compliance report now (`--upload-url`).
    Upload,
    /// `UPLOAD_STATUS`: the uploader's last attempt and what comes next.
    UploadStatus,
    /// `RECONCILE <feature> <user> <host> <handle> start=<ms> id=<id> ...`:
    /// a session a client admitted offline.
    Reconcile(Reconcile<'a>),
    /// `REPORT [from=YYYY-MM-DD] [to=YYYY-MM-DD]`: the compliance report
    /// (docs/usage.md).
    Report(ReportQuery<'a>),
}

/// What a REPORT asks for: a period of UTC days, each end a checked
/// `YYYY-MM-DD` (defaults: docs/usage.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportQuery<'a> {
    /// `from=`: the first day.
    pub from: Option<&'a str>,
    /// `to=`: the last day, included.
    pub to: Option<&'a str>,
}

impl Command<'_> {
    /// True for requests only an admin may make.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Command::Remove { .. }
                | Command::RemoveHandle { .. }
                | Command::BorrowReturn { .. }
                | Command::Reread
                | Command::Down
                | Command::ReopenLog
                | Command::Upload
                | Command::UploadStatus
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
    /// `holders_limit=` and `holders_after=`: which holders each entry
    /// lists (default: all).
    pub holders: crate::status::HolderPaging,
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
    /// The feature, user, host and handle fields, and `display=` (or
    /// `""`).
    pub names: Names<&'a str>,
    /// `version=`, scaled as [`Version::scaled`].
    pub version: Option<u64>,
    /// `count=` (default 1).
    pub count: u32,
    /// `linger=` in ms (default 0).
    pub linger_ms: u64,
    /// `wait=` in ms (default 0).
    pub wait_ms: u64,
    /// `borrow=` in hours: a borrow (`Engine::borrow`) rather than a
    /// checkout; `None` without it.
    pub borrow_hours: Option<u32>,
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
    } else if verb.eq_ignore_ascii_case("BORROW_RETURN") {
        Command::BorrowReturn {
            feature: fields.next_required("feature")?,
            user: fields.next_required("user")?,
            host: fields.next_required("host")?,
            display: fields.next()?,
        }
    } else if verb.eq_ignore_ascii_case("REREAD") {
        Command::Reread
    } else if verb.eq_ignore_ascii_case("DOWN") {
        Command::Down
    } else if verb.eq_ignore_ascii_case("REOPEN_LOG") {
        Command::ReopenLog
    } else if verb.eq_ignore_ascii_case("UPLOAD") {
        Command::Upload
    } else if verb.eq_ignore_ascii_case("UPLOAD_STATUS") {
        Command::UploadStatus
    } else if verb.eq_ignore_ascii_case("PICTURE") {
        Command::Picture
    } else if verb.eq_ignore_ascii_case("RECONCILE") {
        Command::Reconcile(parse_reconcile(&mut fields)?)
    } else if verb.eq_ignore_ascii_case("REPORT") {
        Command::Report(parse_report(&mut fields)?)
    } else {
        return Err(ProtoError::new(
            ErrCode::UnknownCommand,
            format!(
                "unknown command \"{}\" (expected CHECKOUT, CHECKIN, STATUS, PING, QUIT, AUTH, REMOVE, REMOVE_HANDLE, BORROW_RETURN, REREAD, REOPEN_LOG, DOWN, UPLOAD, UPLOAD_STATUS, PICTURE, RECONCILE or REPORT)",
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

fn parse_report<'a>(fields: &mut Fields<'a>) -> Result<ReportQuery<'a>, ProtoError> {
    let [from, to] = options(fields, ["from", "to"], |word| {
        Err(ProtoError::new(
            ErrCode::BadField,
            format!(
                "REPORT takes from=YYYY-MM-DD and to=YYYY-MM-DD, not \"{}\"",
                printable(word)
            ),
        ))
    })?;
    for (key, v) in [("from", from), ("to", to)] {
        if let Some(v) = v {
            if crate::usage::day::parse_day(v).is_none() {
                return Err(ProtoError::new(
                    ErrCode::BadField,
                    format!("{key}=\"{}\" is not a date (YYYY-MM-DD)", printable(v)),
                ));
            }
        }
    }
    if let (Some(f), Some(t)) = (from, to) {
        if crate::usage::day::parse_day(f) > crate::usage::day::parse_day(t) {
            return Err(ProtoError::new(
                ErrCode::BadField,
                format!("from={f} is after to={t}"),
            ));
        }
    }
    Ok(ReportQuery { from, to })
}

fn parse_status<'a>(fields: &mut Fields<'a>) -> Result<StatusQuery<'a>, ProtoError> {
    let mut feature = None;
    let [from, limit, holders_limit, holders_after] = options(
        fields,
        ["from", "limit", "holders_limit", "holders_after"],
        |name| {
            if feature.replace(name).is_some() {
                return Err(ProtoError::new(
                    ErrCode::BadField,
                    "STATUS names at most one feature",
                ));
            }
            Ok(())
        },
    )?;
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
    let after = holders_after
        .map(|v| {
            v.parse::<crate::status::HolderCursor>().map_err(|()| {
                ProtoError::new(
                    ErrCode::BadField,
                    format!(
                        "holders_after=\"{}\" is not a holder cursor (<since_ms>.<key>, from holders_next)",
                        printable(v)
                    ),
                )
            })
        })
        .transpose()?;
    let holders_limit = number("holders_limit", holders_limit)?;
    if after.is_some() && holders_limit.is_none() {
        return Err(ProtoError::new(
            ErrCode::BadField,
            "holders_after= needs holders_limit=",
        ));
    }
    Ok(StatusQuery {
        feature,
        from: number("from", from)?.unwrap_or(0),
        limit,
        holders: crate::status::HolderPaging {
            limit: holders_limit,
            after,
        },
    })
}

fn parse_checkout<'a>(fields: &mut Fields<'a>) -> Result<Checkout<'a>, ProtoError> {
    let mut c = Checkout {
        // In the line's order (a struct expression evaluates its fields as
        // written).
        names: Names {
            feature: fields.next_required("feature")?,
            user: fields.next_required("user")?,
            host: fields.next_required("host")?,
            handle: fields.next_required("handle")?,
            display: "",
        },
        version: None,
        count: 1,
        linger_ms: 0,
        wait_ms: 0,
        borrow_hours: None,
    };
    let mut seen = [false; 6];
    while let Some(opt) = fields.next()? {
        let Some((key, value)) = opt.split_once('=') else {
            return Err(ProtoError::new(
                ErrCode::BadField,
                format!(
                    "unexpected field \"{}\" (options are key=value: version=, count=, linger=, display=, wait=, borrow=)",
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
            "borrow" => 5,
            _ => {
                return Err(ProtoError::new(
                    ErrCode::BadField,
                    format!(
                    "unknown option \"{}\" (expected version=, count=, linger=, display=, wait=, borrow=)",
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
            3 => c.names.display = value,
            5 => c.borrow_hours = Some(parse_borrow_hours(value)?),
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

/// Longest borrow a request may name: 100 years, in hours (a line's own
/// `BORROW=` limit is what refuses less).
pub const MAX_BORROW_HOURS: u32 = 100 * 365 * 24;

/// `borrow=`: hours, a whole number in 1..=[`MAX_BORROW_HOURS`].
fn parse_borrow_hours(value: &str) -> Result<u32, ProtoError> {
    match value.parse::<u32>() {
        Ok(h)
            if (1..=MAX_BORROW_HOURS).contains(&h) && value.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(h)
        }
        _ => Err(ProtoError::new(
            ErrCode::BadField,
            format!(
                "borrow=\"{}\" is not a whole number of hours (1..={MAX_BORROW_HOURS})",
                printable(value)
            ),
        )),
    }
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
mod tests;
