//! Protocol v1 as a client sees it: the limits a request must keep, the
//! field rule, and the replies, parsed into [`Reply`].
//!
//! This is the client's own reading of `docs/protocol.md`, the contract
//! between the two sides: tally-client does not link the server. The server
//! side's tests check that the two agree (the field rule, the limits and
//! the STATUS JSON; `server/tests/client_contract.rs`).
//!
//! A reply is one line; [`Reply::parse`] reads it:
//!
//! | line | [`Reply`] |
//! |---|---|
//! | `OK <rest>` (or `OK`) | [`Reply::Ok`] |
//! | `DENIED <feature> <handle> <REASON> <code> <text...>` | [`Reply::Denied`] |
//! | `ERR <CODE> <text>` | [`Reply::Err`] |
//! | `PONG` | [`Reply::Pong`] |
//! | `BYE` | [`Reply::Bye`] |
//! | anything else | [`Reply::Other`] |

use std::fmt;

/// Longest request line, in bytes, not counting the LF (`MAX_LINE_BYTES`
/// in docs/protocol.md). The server answers a longer one
/// `ERR LINE_TOO_LONG` and closes the connection.
pub const MAX_LINE_BYTES: usize = 4096;

/// Longest field of a request, in bytes (`MAX_FIELD_BYTES`).
pub const MAX_FIELD_BYTES: usize = 255;

/// Why a value cannot be sent as one protocol field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldFault {
    /// Empty.
    Empty,
    /// Longer than [`MAX_FIELD_BYTES`].
    TooLong,
    /// Holds a space (the field separator).
    Space,
    /// Holds a control character (below U+0020, U+007F, or a C1 control).
    Control(char),
}

impl fmt::Display for FieldFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldFault::Empty => f.write_str("is empty"),
            FieldFault::TooLong => write!(f, "is longer than {MAX_FIELD_BYTES} bytes"),
            FieldFault::Space => f.write_str("contains a space (the field separator)"),
            FieldFault::Control(c) => write!(f, "contains the control character {c:?}"),
        }
    }
}

/// The protocol's field rule: `None` when `value` can be sent as one field
/// (1 to [`MAX_FIELD_BYTES`] bytes, no space, no control character; other
/// Unicode, bidirectional controls included, is carried as is). A value
/// that passes cannot smuggle a second request line.
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

/// The `ERR` codes of docs/protocol.md ("Errors"), and [`ErrCode::Other`]
/// for a code this client does not know (a newer server's).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrCode {
    /// `EMPTY_REQUEST`: the line was empty.
    EmptyRequest,
    /// `UNKNOWN_COMMAND`: the first word is not a command.
    UnknownCommand,
    /// `MISSING_FIELD`: a required field is absent.
    MissingField,
    /// `BAD_FIELD`: an empty field, an unknown or repeated option, a bad
    /// number, a control character, a field over 255 bytes.
    BadField,
    /// `BAD_UTF8`: the line is not UTF-8.
    BadUtf8,
    /// `LINE_TOO_LONG`: more than [`MAX_LINE_BYTES`]; the server closes the
    /// connection after this reply.
    LineTooLong,
    /// `NOT_HELD`: CHECKIN / REMOVE_HANDLE of something not held.
    NotHeld,
    /// `NO_SUCH_FEATURE`: CHECKIN of a feature the license file lacks.
    NoSuchFeature,
    /// `NOT_HOLDER`: CHECKIN of a license held by another user or host.
    NotHolder,
    /// `FORBIDDEN`: an admin request from a remote peer without AUTH.
    Forbidden,
    /// `AUTH_FAILED`: wrong token, or no token configured.
    AuthFailed,
    /// `REREAD_FAILED`: the license or options file cannot be read, or
    /// another reread is running.
    RereadFailed,
    /// `UPLOAD_OFF`: UPLOAD / UPLOAD_STATUS to a server started without
    /// `--upload-url`.
    UploadOff,
    /// A code not in the list above, as sent.
    Other(String),
}

impl ErrCode {
    /// Every code this client knows, in the order of docs/protocol.md.
    pub const KNOWN: [ErrCode; 13] = [
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
        ErrCode::UploadOff,
    ];

    /// The code as sent on the wire (`BAD_FIELD`).
    pub fn as_str(&self) -> &str {
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
            ErrCode::UploadOff => "UPLOAD_OFF",
            ErrCode::Other(code) => code,
        }
    }

    /// Reads a code as sent; an unknown one is [`ErrCode::Other`].
    pub fn parse(code: &str) -> ErrCode {
        ErrCode::KNOWN
            .into_iter()
            .find(|known| known.as_str() == code)
            .unwrap_or_else(|| ErrCode::Other(code.to_string()))
    }
}

impl fmt::Display for ErrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CHECKOUT's denial: `DENIED <feature> <handle> <REASON> <flexlm-code>
/// <text...>` (the reasons are docs/protocol.md's table; they are kept as
/// text, since a denial is a value the caller shows or matches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The feature asked for.
    pub feature: String,
    /// The handle it was asked for.
    pub handle: String,
    /// `ALL_IN_USE`, `NO_SUCH_FEATURE`, ...
    pub reason: String,
    /// FlexLM's error code (`-4`); 0 if the server sent none that parses.
    pub flexlm_code: i32,
    /// The human text (may be empty).
    pub text: String,
}

/// One reply line, parsed ([module docs](self) for the mapping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK <rest>`: `rest` is everything after `OK ` (empty for a bare
    /// `OK`), e.g. `F h 0` for a CHECKOUT, the JSON for STATUS.
    Ok(String),
    /// A CHECKOUT was denied.
    Denied(Denial),
    /// `ERR <CODE> <text>`.
    Err {
        /// The code.
        code: ErrCode,
        /// The text after the code (may be empty).
        text: String,
    },
    /// `PONG`, PING's answer.
    Pong,
    /// `BYE`, QUIT's answer.
    Bye,
    /// A line the protocol does not describe, as received.
    Other(String),
}

impl Reply {
    /// Parses one reply line (without its line end).
    pub fn parse(line: &str) -> Reply {
        if line == "OK" {
            return Reply::Ok(String::new());
        }
        if let Some(rest) = line.strip_prefix("OK ") {
            return Reply::Ok(rest.to_string());
        }
        if line == "PONG" {
            return Reply::Pong;
        }
        if line == "BYE" {
            return Reply::Bye;
        }
        if let Some(rest) = line.strip_prefix("ERR ") {
            let (code, text) = rest.split_once(' ').unwrap_or((rest, ""));
            if !code.is_empty() {
                return Reply::Err {
                    code: ErrCode::parse(code),
                    text: text.to_string(),
                };
            }
        }
        if let Some(rest) = line.strip_prefix("DENIED ") {
            let mut words = rest.splitn(5, ' ');
            if let (Some(feature), Some(handle), Some(reason), Some(code)) =
                (words.next(), words.next(), words.next(), words.next())
            {
                return Reply::Denied(Denial {
                    feature: feature.to_string(),
                    handle: handle.to_string(),
                    reason: reason.to_string(),
                    flexlm_code: code.parse().unwrap_or(0),
                    text: words.next().unwrap_or("").to_string(),
                });
            }
        }
        Reply::Other(line.to_string())
    }

    /// True for [`Reply::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Reply::Ok(_))
    }
}

/// How a reply counts, read from its first bytes without allocating: what a
/// load generator needs per reply ([`crate::Connection::read_kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// `OK ...` (or `OK`) or `PONG`.
    Ok,
    /// `DENIED ...`.
    Denied,
    /// Anything else (`ERR ...`, `BYE`, a line the protocol lacks).
    Err,
}

impl ReplyKind {
    /// Classifies a reply line (without its line end), as [`Reply::parse`]
    /// would.
    pub fn of(line: &[u8]) -> ReplyKind {
        if line == b"OK" || line.starts_with(b"OK ") || line == b"PONG" {
            ReplyKind::Ok
        } else if line.starts_with(b"DENIED ") {
            ReplyKind::Denied
        } else {
            ReplyKind::Err
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_rule() {
        assert_eq!(field_fault("MPM_ADV_RC"), None);
        assert_eq!(field_fault(""), Some(FieldFault::Empty));
        assert_eq!(field_fault("a b"), Some(FieldFault::Space));
        assert_eq!(field_fault("F1\nDOWN"), Some(FieldFault::Control('\n')));
        assert_eq!(field_fault("a\u{7f}"), Some(FieldFault::Control('\u{7f}')));
        let long = "x".repeat(MAX_FIELD_BYTES + 1);
        assert_eq!(field_fault(&long), Some(FieldFault::TooLong));
        assert_eq!(field_fault(&long[1..]), None);
        // Bidirectional controls are format characters: carried.
        assert_eq!(field_fault("abc\u{202e}"), None);
    }

    #[test]
    fn replies_parse() {
        assert_eq!(Reply::parse("OK F h 0"), Reply::Ok("F h 0".into()));
        assert_eq!(Reply::parse("OK"), Reply::Ok(String::new()));
        assert_eq!(Reply::parse("PONG"), Reply::Pong);
        assert_eq!(Reply::parse("BYE"), Reply::Bye);
        assert_eq!(
            Reply::parse("ERR FORBIDDEN admin requests need AUTH"),
            Reply::Err {
                code: ErrCode::Forbidden,
                text: "admin requests need AUTH".into()
            }
        );
        assert_eq!(
            Reply::parse("ERR NEW_CODE"),
            Reply::Err {
                code: ErrCode::Other("NEW_CODE".into()),
                text: String::new()
            }
        );
        assert_eq!(
            Reply::parse("DENIED F h ALL_IN_USE -4 Licensed number of users already reached."),
            Reply::Denied(Denial {
                feature: "F".into(),
                handle: "h".into(),
                reason: "ALL_IN_USE".into(),
                flexlm_code: -4,
                text: "Licensed number of users already reached.".into(),
            })
        );
        for odd in ["OKAY", "ERR ", "DENIED F h", "QUEUED", ""] {
            assert_eq!(Reply::parse(odd), Reply::Other(odd.into()), "{odd:?}");
        }
    }

    #[test]
    fn every_known_code_round_trips() {
        for code in ErrCode::KNOWN {
            assert_eq!(ErrCode::parse(code.as_str()), code);
        }
    }

    /// The codes are docs/protocol.md's ("Errors"), all of them and no more.
    #[test]
    fn the_codes_are_the_documented_ones() {
        let doc = include_str!("../../docs/protocol.md");
        let table = doc.split("\n## Errors").nth(1).expect("an Errors section");
        let mut documented: Vec<&str> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let mut known: Vec<&str> = ErrCode::KNOWN.iter().map(ErrCode::as_str).collect();
        documented.sort_unstable();
        known.sort_unstable();
        assert_eq!(known, documented);
    }

    #[test]
    fn kinds() {
        assert_eq!(ReplyKind::of(b"OK F h 0"), ReplyKind::Ok);
        assert_eq!(ReplyKind::of(b"OK"), ReplyKind::Ok);
        assert_eq!(ReplyKind::of(b"OKAY"), ReplyKind::Err);
        assert_eq!(ReplyKind::of(b"PONG"), ReplyKind::Ok);
        assert_eq!(
            ReplyKind::of(b"DENIED F h ALL_IN_USE -4 x"),
            ReplyKind::Denied
        );
        assert_eq!(ReplyKind::of(b"ERR NOT_HELD x"), ReplyKind::Err);
    }
}
