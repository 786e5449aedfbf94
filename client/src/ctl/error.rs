//! What can go wrong in tallyctl, with the FlexLM error code and exit status
//! each failure maps to.
//!
//! Exit statuses (lmutil's convention for transport failures is 256 + the
//! negative FlexLM code, so exporters that map `exit status 241` keep
//! working):
//!
//! | status | when |
//! |---|---|
//! | 0 | success (for `lmstat`: a status report was printed) |
//! | 1 | the server answered `ERR ...` (e.g. `ERR FORBIDDEN`), or an admin request did nothing |
//! | 2 | bad command line: a bad `PORT@HOST`, a bad field, an unreadable token file |
//! | 239 | cannot write to the server (-17) |
//! | 240 | connected, but no reply could be read: timeout, connection closed (-16) |
//! | 241 | cannot connect to any server (-15), as lmutil |
//! | 242 | a host name does not resolve (-14) |
//! | 244 | the reply is not what the protocol says (-12) |
//!
//! `check-license` has its own statuses (0 clean, 1 lines rejected, 2 file
//! unreadable); see [`super::check_license`].

use std::io;

use super::addr::ServerAddr;

/// A tallyctl failure.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// A `-c` / environment value is not a `PORT@HOST` list.
    #[error("bad license server address {value:?} (from {origin}): {why}")]
    BadAddress {
        /// The offending entry or value.
        value: String,
        /// `-c` or the environment variable's name.
        origin: String,
        /// What is wrong.
        why: String,
    },
    /// A command-line value cannot be sent as a protocol field.
    #[error("bad {what} {value:?}: {why}")]
    BadField {
        /// Which argument (`feature`, `user`, ...).
        what: String,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// The admin token file cannot be read or holds no usable token.
    #[error("admin token file {path}: {why}")]
    TokenFile {
        /// The path given.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The server's host name does not resolve.
    #[error("{addr}: cannot resolve host name: {source}")]
    Resolve {
        /// The server tried.
        addr: ServerAddr,
        /// The resolver's error.
        source: io::Error,
    },
    /// No TCP connection could be made.
    #[error("{addr}: cannot connect: {source}")]
    Connect {
        /// The server tried.
        addr: ServerAddr,
        /// The socket error.
        source: io::Error,
    },
    /// The request could not be sent.
    #[error("{addr}: cannot send the request: {source}")]
    Write {
        /// The server.
        addr: ServerAddr,
        /// The socket error.
        source: io::Error,
    },
    /// No reply arrived (timeout, reset, or the server closed the connection).
    #[error("{addr}: no reply: {source}")]
    Read {
        /// The server.
        addr: ServerAddr,
        /// The socket error (`UnexpectedEof` when the server closed).
        source: io::Error,
    },
    /// The server answered `ERR <CODE> <text>`.
    #[error("{addr}: {reply}")]
    Server {
        /// The server.
        addr: ServerAddr,
        /// The whole reply line, e.g. `ERR FORBIDDEN admin requests need AUTH`.
        reply: String,
    },
    /// No server of the list answered (the library's
    /// [`crate::ClientError::NoServer`]: every server and what happened).
    #[error("{why}")]
    Unreachable {
        /// `no license server answered (...)`.
        why: String,
    },
    /// The reply does not follow the protocol.
    #[error("{addr}: unexpected reply ({why}): {reply:?}")]
    BadReply {
        /// The server.
        addr: ServerAddr,
        /// The reply line (possibly cut short).
        reply: String,
        /// What was expected.
        why: String,
    },
}

impl CtlError {
    /// The process exit status for this failure (table in the module docs).
    pub fn exit_code(&self) -> i32 {
        match self {
            CtlError::Server { .. } => 1,
            CtlError::BadAddress { .. }
            | CtlError::BadField { .. }
            | CtlError::TokenFile { .. } => 2,
            other => other.flexlm_code().map_or(1, |code| 256 + code),
        }
    }

    /// The FlexLM error code this failure corresponds to, if any.
    pub fn flexlm_code(&self) -> Option<i32> {
        match self {
            CtlError::Resolve { .. } => Some(-14),
            CtlError::Connect { .. } | CtlError::Unreachable { .. } => Some(-15),
            CtlError::Read { .. } => Some(-16),
            CtlError::Write { .. } => Some(-17),
            CtlError::BadReply { .. } => Some(-12),
            _ => None,
        }
    }

    /// The text lmutil prints after `Error getting status: `, e.g.
    /// `Cannot connect to license server system. (-15,570:111 "Connection refused")`.
    /// The minor numbers other than 570 (which lmutil prints for connect
    /// failures) are tally's own, fixed per call site as FlexLM's are.
    pub fn lmstat_text(&self) -> String {
        match self {
            CtlError::Resolve { source, .. } => format!(
                "Cannot find SERVER hostname in network database. (-14,7:{})",
                errno_part(source)
            ),
            CtlError::Connect { source, .. } => format!(
                "Cannot connect to license server system. (-15,570:{})",
                errno_part(source)
            ),
            CtlError::Read { source, .. } => format!(
                "Cannot read data from license server system. (-16,287:{})",
                errno_part(source)
            ),
            CtlError::Write { source, .. } => format!(
                "Cannot write data to license server system. (-17,56:{})",
                errno_part(source)
            ),
            CtlError::BadReply { .. } => {
                "Invalid returned data from license server system. (-12,16)".to_string()
            }
            CtlError::Server { reply, .. } => reply.clone(),
            other => other.to_string(),
        }
    }
}

/// `111 "Connection refused"`: the OS error number and its text, as lmutil
/// prints them after the minor code. Errors without a number (a connect
/// timeout, an early EOF) get the Linux number of the same condition.
fn errno_part(e: &io::Error) -> String {
    let code = e.raw_os_error().unwrap_or(match e.kind() {
        io::ErrorKind::TimedOut => 110,
        io::ErrorKind::WouldBlock => 11,
        io::ErrorKind::ConnectionRefused => 111,
        io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof => 104,
        _ => 0,
    });
    let full = e.to_string();
    let text = match full.rfind(" (os error ") {
        Some(i) => &full[..i],
        None => full.as_str(),
    };
    let mut chars = text.chars();
    let text: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("{code} \"{text}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_refused_reads_like_lmutil() {
        let e = CtlError::Connect {
            addr: ServerAddr::default_local(),
            source: io::Error::from_raw_os_error(111),
        };
        assert_eq!(
            e.lmstat_text(),
            "Cannot connect to license server system. (-15,570:111 \"Connection refused\")"
        );
        assert_eq!(e.exit_code(), 241);
    }

    #[test]
    fn timeout_without_errno_gets_linux_number() {
        let e = io::Error::new(io::ErrorKind::TimedOut, "connection timed out");
        assert_eq!(errno_part(&e), "110 \"Connection timed out\"");
    }
}
