//! `tallyd --http ADDR:PORT`: the read-only HTTP side, on threads of its
//! own, never touching a loop: `GET /` (the status page, `web/`), `GET
//! /metrics` (`metrics/`), `GET /api/v1/status` (the STATUS JSON, paged
//! with `?from=N&limit=N`) and `GET /api/v1/features/<name>` (that
//! feature's pools), with handles and tickets hidden as for a remote peer
//! without AUTH; 404 for another path, 405 for another method, 400 for a
//! bad page number or a request httparse cannot read, 431 for a header
//! past [`MAX_HEADER_BYTES`], 408 for one not whole within
//! [`HEADER_DEADLINE`], 503 when [`MAX_CONNECTIONS`] are open. After its
//! response a connection is read (and dropped) for up to 2 s until the
//! client closes, so that the client reads the response rather than a
//! reset.
//!
//! Bounded against hostile or broken clients, so the license port never
//! feels them: one accept thread and [`WORKERS`] threads (never more),
//! at most [`MAX_CONNECTIONS`] connections open (being served or waiting
//! for a worker); each connection gets one request (its header read with
//! a deadline and a size limit, parsed by httparse) and one response, then
//! is closed. (tiny_http, used before, starts a thread per connection,
//! buffers a header line of any length and has no read timeout: an idle
//! client held a thread forever, and an accept error such as EMFILE ended
//! its accept thread for good.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::metrics::{render, status_now, to_text_004, OPENMETRICS, TEXT_004};
use crate::shared::Shared;
use crate::status::Status;
use crate::web::UsageHistory;

/// Threads answering requests.
pub const WORKERS: usize = 4;

/// Connections open at once (being served, or accepted and waiting for a
/// worker); one more is answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 32;

/// Longest request header read, bytes (request line included).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Time a client has to send its whole request header, from accept.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);

/// Longest a response's write may block on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// After a response, how long and how much the worker reads and drops of
/// what the client still sends (the rest of a huge header, a body), so
/// that closing does not reset the connection before the client read the
/// response.
const DRAIN_TIME: Duration = Duration::from_secs(2);
const DRAIN_BYTES: usize = 4 << 20;

/// How long the accept thread waits before trying again after an accept
/// error (out of file descriptors, say).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Headers httparse is given room for.
const MAX_HEADERS: usize = 64;

/// What the HTTP side serves besides the shared state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extras {
    /// Daily peaks for the status page's charts (`Config::usage_history`).
    pub(crate) history: Option<UsageHistory>,
}

/// The running HTTP side: its accept thread and workers.
pub(crate) struct HttpThread {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    addr: SocketAddr,
}

impl std::fmt::Debug for HttpThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpThread")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// What one request carries that answering it needs.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    target: String,
    openmetrics: bool,
}

/// One response: a status, its content type and body.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) code: u16,
    pub(crate) kind: &'static str,
    pub(crate) body: Vec<u8>,
}

impl Response {
    fn text(code: u16, body: &str) -> Response {
        Response {
            code,
            kind: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }
}

impl HttpThread {
    /// Binds `addr` and serves `shared` on threads of their own.
    pub(crate) fn start(
        addr: SocketAddr,
        shared: Arc<Shared>,
        extras: Extras,
    ) -> std::io::Result<HttpThread> {
        let listener = TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = crossbeam_channel::bounded::<TcpStream>(MAX_CONNECTIONS);
        let extras = Arc::new(extras);
        let mut threads = Vec::with_capacity(WORKERS + 1);
        for i in 0..WORKERS {
            let (rx, shared, extras, open) =
                (rx.clone(), shared.clone(), extras.clone(), open.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("tally-http-{i}"))
                    .spawn(move || serve(&rx, &shared, &extras, &open))?,
            );
        }
        let stop_flag = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("tally-http".into())
                .spawn(move || accept(&listener, &tx, &open, &stop_flag))?,
        );
        Ok(HttpThread {
            stop,
            threads,
            addr: bound,
        })
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the threads (a worker finishes the request it is on first).
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept thread out of its blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The accept thread: hands connections to the workers, at most
/// [`MAX_CONNECTIONS`] open; drops the channel (ending the workers) when
/// stopped.
fn accept(listener: &TcpListener, tx: &Sender<TcpStream>, open: &AtomicUsize, stop: &AtomicBool) {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(_) if stop.load(Ordering::SeqCst) => return,
            Err(_) => {
                // EMFILE, ENOBUFS, a connection reset before accept: wait
                // a little rather than spin, never give up.
                std::thread::sleep(ACCEPT_RETRY);
                continue;
            }
        };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            refuse(stream);
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(stream) {
            Ok(()) => {}
            Err(TrySendError::Full(s)) | Err(TrySendError::Disconnected(s)) => {
                open.fetch_sub(1, Ordering::Relaxed);
                refuse(s);
            }
        }
    }
}

/// A 503 written without waiting (whatever the socket takes), then closed.
fn refuse(stream: TcpStream) {
    if stream.set_nonblocking(true).is_ok() {
        let mut s = &stream;
        let _ = s.write_all(&head(503, "text/plain; charset=utf-8", 5));
        let _ = s.write_all(b"busy\n");
    }
}

/// A worker: one request and one response per connection, until the
/// accept thread ends.
fn serve(rx: &Receiver<TcpStream>, shared: &Shared, extras: &Extras, open: &AtomicUsize) {
    for stream in rx.iter() {
        let response = match read_request(&stream) {
            Ok(req) => answer(shared, extras, &req),
            Err(r) => r,
        };
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let mut s = &stream;
        let _ = s
            .write_all(&head(response.code, response.kind, response.body.len()))
            .and_then(|()| s.write_all(&response.body));
        let _ = stream.shutdown(std::net::Shutdown::Write);
        drain(&stream);
        open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads and drops what the client still sends, until it closes, for at
/// most [`DRAIN_TIME`] and [`DRAIN_BYTES`].
fn drain(mut stream: &TcpStream) {
    let until = Instant::now() + DRAIN_TIME;
    let mut chunk = [0u8; 8192];
    let mut left = DRAIN_BYTES;
    while left > 0 {
        let wait = until.saturating_duration_since(Instant::now());
        if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// The status line and headers of a response of `len` bytes.
fn head(code: u16, kind: &str, len: usize) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {len}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// Reads one request header from `stream` within [`HEADER_DEADLINE`] and
/// [`MAX_HEADER_BYTES`]; the error is the response to send instead.
fn read_request(mut stream: &TcpStream) -> Result<Request, Response> {
    let deadline = Instant::now() + HEADER_DEADLINE;
    let mut buf = vec![0u8; MAX_HEADER_BYTES];
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(Response::text(408, "request header too slow\n"));
        }
        let n = match stream.read(&mut buf[len..]) {
            Ok(0) => return Err(Response::text(400, "request header cut short\n")),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Response::text(408, "request header too slow\n")),
        };
        len += n;
        match parse(&buf[..len]) {
            Ok(Some(req)) => return Ok(req),
            Ok(None) if len == buf.len() => {
                return Err(Response::text(431, "request header too large\n"))
            }
            Ok(None) => {}
            Err(()) => return Err(Response::text(400, "bad request\n")),
        }
    }
}

/// The request in `bytes` if its header is whole (`None`: not yet).
fn parse(bytes: &[u8]) -> Result<Option<Request>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    }
    let openmetrics = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("accept")
            && String::from_utf8_lossy(h.value).contains("application/openmetrics-text")
    });
    Ok(Some(Request {
        method: req.method.unwrap_or("").to_string(),
        target: req.path.unwrap_or("").to_string(),
        openmetrics,
    }))
}

/// The response to one request.
fn answer(shared: &Shared, extras: &Extras, req: &Request) -> Response {
    let url = req.target.as_str();
    let path = url.split('?').next().unwrap_or("");
    let get = req.method == "GET";
    match path {
        "/metrics" if get => {
            let om = render(shared);
            let (body, kind) = if req.openmetrics {
                (om, OPENMETRICS)
            } else {
                (to_text_004(&om), TEXT_004)
            };
            Response {
                code: 200,
                kind,
                body: body.into_bytes(),
            }
        }
        "/" if get => match page_query(url) {
            Some((from, limit)) => Response {
                code: 200,
                kind: "text/html; charset=utf-8",
                body: crate::web::page(shared, extras, from, limit).into_bytes(),
            },
            None => Response::text(400, "bad query: from=N, limit=N\n"),
        },
        "/" | "/metrics" => Response::text(405, "only GET\n"),
        "/api/v1/status" if get => match page_query(url) {
            Some((from, limit)) => json(status_page(shared, None, from, limit)),
            None => Response::text(400, "bad query: from=N, limit=N\n"),
        },
        p if get && p.starts_with("/api/v1/features/") => {
            let name = &p["/api/v1/features/".len()..];
            let status = status_page(shared, Some(name), 0, None);
            if status.features.is_empty() {
                Response::text(404, "no such feature\n")
            } else {
                json(status)
            }
        }
        p if p.starts_with("/api/v1/") => Response::text(405, "only GET\n"),
        _ => Response::text(404, "not found: tallyd serves /, /metrics and /api/v1/\n"),
    }
}

/// STATUS, paged as the STATUS request's `feature=` / `from=` / `limit=`
/// page it, handles and tickets hidden (the HTTP side has no AUTH).
pub(crate) fn status_page(
    shared: &Shared,
    feature: Option<&str>,
    from: usize,
    limit: Option<usize>,
) -> Status {
    let (mut status, _) = status_now(shared);
    status.page(feature, from, limit);
    status.hide_handles();
    status
}

/// `from=` and `limit=` of a `/api/v1/status` URL (other keys ignored);
/// `None` if one is not a number.
fn page_query(url: &str) -> Option<(usize, Option<usize>)> {
    let (mut from, mut limit) = (0, None);
    for pair in url.split_once('?').map_or("", |(_, q)| q).split('&') {
        match pair.split_once('=') {
            Some(("from", v)) => from = v.parse().ok()?,
            Some(("limit", v)) => limit = Some(v.parse().ok()?),
            _ => {}
        }
    }
    Some((from, limit))
}

/// A 200 with `status` as JSON.
fn json(status: Status) -> Response {
    Response {
        code: 200,
        kind: "application/json",
        body: serde_json::to_vec(&status).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_queries_are_read_and_bad_numbers_refused() {
        assert_eq!(page_query("/api/v1/status"), Some((0, None)));
        assert_eq!(
            page_query("/api/v1/status?from=5&limit=2&x=y"),
            Some((5, Some(2)))
        );
        assert_eq!(page_query("/api/v1/status?limit=-1"), None);
        assert_eq!(page_query("/api/v1/status?from=a"), None);
    }

    #[test]
    fn a_header_is_read_once_whole_and_garbage_refused() {
        let whole =
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text\r\n\r\n";
        assert_eq!(parse(&whole[..20]), Ok(None));
        assert_eq!(
            parse(whole),
            Ok(Some(Request {
                method: "GET".into(),
                target: "/metrics".into(),
                openmetrics: true,
            }))
        );
        assert_eq!(parse(b"\x00\x01\x02garbage\r\n\r\n"), Err(()));
    }
}
