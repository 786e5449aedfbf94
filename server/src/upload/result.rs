//! The uploader's result codes and the result line of seed 000's shape.

use std::fmt;

/// What one upload attempt came to: the `<Code>` of its result line.
///
/// Every code but [`Code::Success`] is a failure; the report stays in
/// `upload/pending/` and is tried again (with backoff within a cycle, at
/// the next cycle after that). docs/usage.md lists them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The endpoint acknowledged the start, every chunk and the finish.
    Success,
    /// No TCP connection: refused, unreachable, or the host name does not
    /// resolve.
    ConnectFailed,
    /// The TLS handshake failed (a certificate not trusted or not for this
    /// host, no common protocol version, ...).
    TlsFailed,
    /// A connect, read or write took longer than its timeout (a hanging
    /// endpoint ends here, never hangs the thread).
    Timeout,
    /// The connection broke mid-request or the reply was not HTTP.
    ConnectionLost,
    /// `POST /upload/start` was answered with a status other than 200.
    HttpStatus,
    /// The start reply was not seed 000's `<UploadResponse>` with a
    /// `<uuid>` and a non-zero `<ChunkMax>` (or the uuid is not safe in a
    /// URL path).
    BadReply,
    /// A `PUT /upload/<uuid>/chunk/<index>` was answered with a status
    /// other than 200 (a 404 starts the upload again once per attempt:
    /// the endpoint forgot the uuid).
    ChunkRejected,
    /// `POST /upload/<uuid>/finish` was answered with a status other than
    /// 200.
    FinishRejected,
    /// The report could not be built or kept on disk (nothing was sent).
    ReportFailed,
}

impl Code {
    /// The code as written in the uploader log and sent by
    /// `UPLOAD_STATUS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Success => "CTX_UPLOADER_SUCCESS",
            Code::ConnectFailed => "CTX_UPLOADER_CONNECT_FAILED",
            Code::TlsFailed => "CTX_UPLOADER_TLS_FAILED",
            Code::Timeout => "CTX_UPLOADER_TIMEOUT",
            Code::ConnectionLost => "CTX_UPLOADER_CONNECTION_LOST",
            Code::HttpStatus => "CTX_UPLOADER_HTTP_STATUS",
            Code::BadReply => "CTX_UPLOADER_BAD_REPLY",
            Code::ChunkRejected => "CTX_UPLOADER_CHUNK_REJECTED",
            Code::FinishRejected => "CTX_UPLOADER_FINISH_REJECTED",
            Code::ReportFailed => "CTX_UPLOADER_REPORT_FAILED",
        }
    }

    /// Every code, for the docs' table and tests.
    pub const ALL: [Code; 10] = [
        Code::Success,
        Code::ConnectFailed,
        Code::TlsFailed,
        Code::Timeout,
        Code::ConnectionLost,
        Code::HttpStatus,
        Code::BadReply,
        Code::ChunkRejected,
        Code::FinishRejected,
        Code::ReportFailed,
    ];
}

/// As its [`Code::as_str`] (`"CTX_UPLOADER_SUCCESS"`).
impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `<UploadType>` of every tally upload.
pub const UPLOAD_TYPE: &str = "CTX_UPLOAD_TYPE_COMPLIANCE";

/// A failed attempt: its code and what went wrong, for `<Msg>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The result code (never [`Code::Success`]).
    pub code: Code,
    /// What happened, in words (the step, the status, the cause).
    pub msg: String,
}

impl Failure {
    pub(crate) fn new(code: Code, msg: impl Into<String>) -> Failure {
        Failure {
            code,
            msg: msg.into(),
        }
    }
}

/// The result line: `<UploaderResult><Code>…</Code><Msg>…</Msg><t>UNIX</t>
/// <UploadType>CTX_UPLOAD_TYPE_COMPLIANCE</UploadType></UploaderResult>`
/// (one line; `msg` XML-escaped, line breaks turned into spaces).
pub fn result_line(code: Code, msg: &str, unix_secs: u64) -> String {
    format!(
        "<UploaderResult><Code>{code}</Code><Msg>{}</Msg><t>{unix_secs}</t><UploadType>{UPLOAD_TYPE}</UploadType></UploaderResult>",
        xml_escape(msg)
    )
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_line_is_seed_000s_shape() {
        assert_eq!(
            result_line(Code::Success, "", 1678364711),
            "<UploaderResult><Code>CTX_UPLOADER_SUCCESS</Code><Msg></Msg><t>1678364711</t><UploadType>CTX_UPLOAD_TYPE_COMPLIANCE</UploadType></UploaderResult>"
        );
    }

    #[test]
    fn msg_is_escaped_and_kept_on_one_line() {
        let l = result_line(Code::BadReply, "no <ChunkMax> & more\nline", 1);
        assert!(
            l.contains("<Msg>no &lt;ChunkMax&gt; &amp; more line</Msg>"),
            "{l}"
        );
        assert!(!l.contains('\n'));
    }

    #[test]
    fn codes_are_distinct() {
        let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
    }
}
