//! One upload attempt over HTTPS (ureq on rustls): start, chunks, finish.
//!
//! An attempt resumes the [`Session`] a failed one left (same uuid, the
//! next unacknowledged chunk): the endpoint is asked to start only when
//! there is none, or when it answers a chunk with 404 (it forgot the
//! uuid), then once per attempt. Every request has the connect and global
//! timeouts of [`Timeouts`], so a hanging endpoint ends the attempt with
//! [`Code::Timeout`].

use std::time::Duration;

use ureq::tls::{RootCerts, TlsConfig};
use ureq::Agent;

use super::pending::Job;
use super::result::{Code, Failure};
use super::ulog::reply_line;
use super::wire::{chunk_count, parse_upload_response, MAX_CHUNKS};

/// The largest reply body read from the endpoint, in bytes.
pub(crate) const MAX_REPLY_BYTES: u64 = 64 * 1024;

/// How long one request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The TCP connect.
    pub connect: Duration,
    /// The whole request, TLS handshake, body and reply included.
    pub request: Duration,
}

impl Default for Timeouts {
    /// 10 s to connect, 60 s per request.
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
        }
    }
}

/// An upload the endpoint has started: its uuid, the chunk size and the
/// next chunk to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// The endpoint's uuid for it.
    pub(crate) uuid: String,
    /// Bytes per chunk (`ChunkOptimal`, at most `ChunkMax`).
    pub(crate) chunk: u64,
    /// The first chunk not acknowledged yet.
    pub(crate) next: u64,
}

/// The HTTPS client: HTTPS only, the given roots, the timeouts; HTTP
/// statuses are read, not errors, and a redirect is not followed (its 3xx
/// is the status of the step).
pub(crate) fn agent(roots: RootCerts, t: Timeouts) -> Agent {
    let tls = TlsConfig::builder().root_certs(roots).build();
    Agent::config_builder()
        .https_only(true)
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(t.connect))
        .timeout_global(Some(t.request))
        .user_agent(concat!("tallyd/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .into()
}

/// One attempt to upload `job` to `base` (no trailing `/`), resuming and
/// updating `session`; each request and reply goes to `log` as a line.
pub(crate) fn attempt(
    agent: &Agent,
    base: &str,
    job: &Job,
    session: &mut Option<Session>,
    log: &mut dyn FnMut(String),
    go_on: &dyn Fn() -> bool,
) -> Result<(), Failure> {
    let size = job.report.len() as u64;
    let mut restarted = false;
    'start: loop {
        let s = match session.take() {
            Some(s) => {
                log(format!(
                    "Resuming upload {} at chunk {} of {}",
                    s.uuid,
                    s.next,
                    chunk_count(size, s.chunk)
                ));
                s
            }
            None => start(agent, base, job, log)?,
        };
        let count = chunk_count(size, s.chunk);
        let mut s = s;
        while s.next < count {
            if !go_on() {
                let next = s.next;
                *session = Some(s);
                return Err(Failure::new(
                    Code::Timeout,
                    format!("the attempt ran out of time (or tallyd is stopping) before chunk {next} of {count}; the next attempt resumes there"),
                ));
            }
            let from = (s.next * s.chunk) as usize;
            let to = (from as u64 + s.chunk).min(size) as usize;
            let url = format!("{base}/upload/{}/chunk/{}", s.uuid, s.next);
            let reply = agent
                .put(&url)
                .header("Content-Type", "application/octet-stream")
                .send(&job.report[from..to]);
            let (status, body) = match read(reply) {
                Ok(r) => r,
                Err(f) if f.code != Code::ConnectFailed => {
                    log(format!("PUT {url} ({} bytes) -> no reply", to - from));
                    *session = Some(s);
                    return Err(f);
                }
                Err(f) => {
                    *session = Some(s);
                    return Err(f);
                }
            };
            log(format!("PUT {url} ({} bytes) -> {status}", to - from));
            if status == 200 {
                s.next += 1;
                continue;
            }
            if !body.is_empty() {
                log(reply_line(&body));
            }
            if status == 404 && !restarted {
                log(format!(
                    "The endpoint does not know upload {}: starting again",
                    s.uuid
                ));
                restarted = true;
                continue 'start;
            }
            let chunk = s.next;
            *session = Some(s);
            return Err(Failure::new(
                Code::ChunkRejected,
                format!("chunk {chunk}: HTTP {status}"),
            ));
        }
        let url = format!("{base}/upload/{}/finish", s.uuid);
        let body = serde_json::json!({ "sha256": job.manifest.sha256 }).to_string();
        let reply = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.as_bytes());
        let (status, text) = match read(reply) {
            Ok(r) => r,
            Err(f) if f.code != Code::ConnectFailed => {
                log(format!("POST {url} -> no reply"));
                *session = Some(s);
                return Err(f);
            }
            Err(f) => {
                *session = Some(s);
                return Err(f);
            }
        };
        log(format!("POST {url} -> {status}"));
        if !text.is_empty() {
            log(reply_line(&text));
        }
        if status == 200 {
            return Ok(());
        }
        // Its chunks may all be there; a later attempt finishes again.
        *session = Some(s);
        return Err(Failure::new(
            Code::FinishRejected,
            format!("finish: HTTP {status}"),
        ));
    }
}

fn start(
    agent: &Agent,
    base: &str,
    job: &Job,
    log: &mut dyn FnMut(String),
) -> Result<Session, Failure> {
    let url = format!("{base}/upload/start");
    let manifest = serde_json::to_vec(&job.manifest)
        .map_err(|e| Failure::new(Code::ReportFailed, e.to_string()))?;
    let reply = agent
        .post(&url)
        .header("Content-Type", "application/json")
        .send(&manifest[..]);
    let (status, body) = read(reply).inspect_err(|f| {
        if f.code != Code::ConnectFailed {
            log(format!("POST {url} -> no reply"));
        }
    })?;
    log(format!("POST {url} -> {status}"));
    if !body.is_empty() {
        log(reply_line(&body));
    }
    if status != 200 {
        return Err(Failure::new(
            Code::HttpStatus,
            format!("start: HTTP {status}"),
        ));
    }
    let r = parse_upload_response(&body)
        .map_err(|why| Failure::new(Code::BadReply, format!("start reply: {why}")))?;
    let chunk = r.chunk_size();
    let count = chunk_count(job.report.len() as u64, chunk);
    if count > MAX_CHUNKS {
        return Err(Failure::new(
            Code::BadReply,
            format!(
                "start reply: chunks of {chunk} bytes make {count} chunks of a {}-byte report (at most {MAX_CHUNKS})",
                job.report.len()
            ),
        ));
    }
    log(format!(
        "Upload {}: ChunkMax {} ChunkOptimal {} -> chunks of {chunk} bytes",
        r.uuid,
        r.chunk_max,
        r.chunk_optimal
            .map_or_else(|| "(none)".to_string(), |o| o.to_string())
    ));
    Ok(Session {
        uuid: r.uuid,
        chunk,
        next: 0,
    })
}

/// The status and body of a reply, or the failure of the request.
fn read(
    reply: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, String), Failure> {
    let mut r = reply.map_err(classify)?;
    let status = r.status().as_u16();
    let bytes = r
        .body_mut()
        .with_config()
        .limit(MAX_REPLY_BYTES)
        .read_to_vec()
        .map_err(classify)?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Which [`Code`] a ureq error is.
pub(crate) fn classify(e: ureq::Error) -> Failure {
    use std::io::ErrorKind;
    let code = match &e {
        ureq::Error::Timeout(_) => Code::Timeout,
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => Code::ConnectFailed,
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => Code::TlsFailed,
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Code::Timeout,
            ErrorKind::ConnectionRefused
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::AddrNotAvailable => Code::ConnectFailed,
            // rustls reports a failed handshake as InvalidData.
            ErrorKind::InvalidData if is_tls(io) => Code::TlsFailed,
            _ => Code::ConnectionLost,
        },
        _ => Code::ConnectionLost,
    };
    Failure::new(code, e.to_string())
}

fn is_tls(io: &std::io::Error) -> bool {
    io.get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>())
}
