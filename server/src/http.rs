//! `tallyd --http ADDR:PORT`: the read-only HTTP side, on a runtime of
//! its own, never touching a loop: `GET /` (the status page, `web/`), `GET
//! /metrics` (`metrics/`), `GET /api/v1/status` (the STATUS JSON, paged
//! with `?from=N&limit=N`) and `GET /api/v1/features/<name>` (that
//! feature's pools), with handles and tickets hidden as for a remote peer
//! without AUTH; 404 for another path, 405 for another method, 400 for a
//! bad page number or a request hyper cannot parse, 431 for a header past
//! [`MAX_HEADER_BYTES`] (or [`MAX_HEADERS`] header fields), 408 for one not
//! whole within [`HEADER_DEADLINE`], 503 when [`MAX_CONNECTIONS`] are open.
//!
//! HTTP/1 is hyper's (`hyper::server::conn::http1`, one request per
//! connection: keep-alive off), on a tokio runtime of [`WORKERS`] threads
//! plus the `tally-http` thread that accepts; a connection is a task, not
//! a thread. Bounded against hostile or broken clients, so the license
//! port never feels them: at most [`MAX_CONNECTIONS`] open (a semaphore;
//! one more gets a 503 written without waiting, and is closed); each has
//! [`HEADER_DEADLINE`] from accept for its header and
//! [`CONNECTION_DEADLINE`] for everything, then is dropped; an accept
//! error (EMFILE, say) is retried after [`ACCEPT_RETRY`], never ending
//! the accept loop. Answering runs inline on the worker that polls the
//! connection (a whole scrape takes about 2 ms, docs/benchmarks.md; a
//! large server's page or STATUS takes longer, and then holds that worker
//! only: inline keeps the thread count fixed, where `spawn_blocking` would
//! start threads).
//! After a response (hyper's, or the 408) the connection's write side is
//! shut and what the client still sends is read and dropped, for up to
//! 2 s, before it is closed, so that the client reads the response rather
//! than a reset.
//!
//! Two responses are not hyper's: the 503 past the cap (no request is read
//! for it) and the 408, which this module writes when the header deadline
//! passes before hyper had a request (hyper's own `header_read_timeout`
//! closes the connection without a response, so it is left off).

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, sleep_until, timeout_at, Instant, Sleep};

use crate::metrics::{render, to_text_004, OPENMETRICS, TEXT_004};
use crate::shared::Shared;
use crate::status::Status;
use crate::web::UsageHistory;

/// Worker threads of the HTTP side's runtime (`tally-http-N`); with the
/// accepting thread (`tally-http`) its whole thread count, never more.
pub const WORKERS: usize = 4;

/// Connections open at once; one more is answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 32;

/// Longest request header read, bytes (request line included): hyper's
/// read buffer and header size limit.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Most header fields in a request.
pub const MAX_HEADERS: usize = 64;

/// Time a client has to send its whole request header, from accept.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);

/// Time a connection may stay open at all, from accept (header, response
/// written to a client that reads slowly, the drain after it).
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

/// After a response, how long and how much is read (and dropped) of what
/// the client still sends (the rest of a huge header, a body), so that
/// closing does not reset the connection before the client read the
/// response.
const DRAIN_TIME: Duration = Duration::from_secs(2);
const DRAIN_BYTES: usize = 4 << 20;

/// How long the accept loop waits before trying again after an accept
/// error (out of file descriptors, say).
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The response past [`MAX_CONNECTIONS`], written without reading a request.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\
Cache-Control: no-store\r\nConnection: close\r\n\r\nbusy\n";

/// The response when no request header came within [`HEADER_DEADLINE`].
const TOO_SLOW: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\n\
Cache-Control: no-store\r\nConnection: close\r\n\r\nrequest header too slow\n";

/// What the HTTP side serves besides the shared state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extras {
    /// Daily peaks for the status page's charts (`Config::usage_history`).
    pub(crate) history: Option<UsageHistory>,
}

/// The running HTTP side: the accepting thread, which owns the runtime.
pub(crate) struct HttpThread {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
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

/// What every connection's task reads.
#[derive(Debug)]
struct Ctx {
    shared: Arc<Shared>,
    extras: Extras,
}

impl HttpThread {
    /// Binds `addr` and serves `shared` on a runtime of its own.
    pub(crate) fn start(
        addr: SocketAddr,
        shared: Arc<Shared>,
        extras: Extras,
    ) -> io::Result<HttpThread> {
        let next = AtomicUsize::new(0);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name_fn(move || format!("tally-http-{}", next.fetch_add(1, Ordering::Relaxed)))
            .enable_io()
            .enable_time()
            .build()?;
        let listener = std::net::TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let listener = {
            let _in = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let ctx = Arc::new(Ctx { shared, extras });
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("tally-http".into())
            .spawn(move || {
                runtime.block_on(accept(listener, ctx, stopped));
                // Dropping the runtime ends every connection's task at its
                // next await (one being answered is answered first).
                drop(runtime);
            })?;
        Ok(HttpThread {
            stop: Some(stop),
            thread: Some(thread),
            addr: bound,
        })
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, drops the open connections and the runtime, and
    /// joins its threads.
    pub(crate) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The accept loop: a task per connection, at most [`MAX_CONNECTIONS`]
/// open, until `stop` fires (or its sender is dropped).
async fn accept(listener: TcpListener, ctx: Arc<Ctx>, mut stop: oneshot::Receiver<()>) {
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => {
                    // EMFILE, ENOBUFS, a connection reset before accept:
                    // wait a little rather than spin, never give up.
                    tokio::select! {
                        _ = &mut stop => return,
                        () = sleep(ACCEPT_RETRY) => continue,
                    }
                }
            },
        };
        match open.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(serve(stream, ctx.clone(), permit));
            }
            Err(_) => {
                // Whatever the socket takes now (all of it: nothing was
                // written before), then closed.
                let _ = stream.try_write(BUSY);
            }
        }
    }
}

/// One connection: one request, one response, by hyper, within the
/// deadlines; `_permit` is its place under [`MAX_CONNECTIONS`].
async fn serve(stream: TcpStream, ctx: Arc<Ctx>, _permit: OwnedSemaphorePermit) {
    let accepted = Instant::now();
    let asked = Arc::new(AtomicBool::new(false));
    let service = {
        let asked = asked.clone();
        service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            asked.store(true, Ordering::Relaxed);
            let r = answer(&ctx.shared, &ctx.extras, &request_of(&req));
            std::future::ready(Ok::<_, Infallible>(to_hyper(r)))
        })
    };
    let mut conn = http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(Lingering::new(stream)), service);
    tokio::select! {
        _ = &mut conn => return,
        () = sleep_until(accepted + HEADER_DEADLINE) => {}
    }
    let until = accepted + CONNECTION_DEADLINE;
    if asked.load(Ordering::Relaxed) {
        let _ = timeout_at(until, conn).await;
    } else {
        // No request yet: the 408 is ours (see the module's doc).
        let mut io = conn.into_parts().io.into_inner();
        let _ = io.stream.try_write(TOO_SLOW);
        let _ = timeout_at(until, poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx))).await;
    }
}

/// The parts of a hyper request that [`answer`] reads.
fn request_of<B>(req: &hyper::Request<B>) -> Request {
    let openmetrics =
        req.headers().get_all(ACCEPT).iter().any(|v| {
            String::from_utf8_lossy(v.as_bytes()).contains("application/openmetrics-text")
        });
    Request {
        method: req.method().as_str().to_string(),
        target: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string()),
        openmetrics,
    }
}

/// `r` as a hyper response (the connection closes after it).
fn to_hyper(r: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(r.body)));
    *out.status_mut() = StatusCode::from_u16(r.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = out.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(r.kind));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(CONNECTION, HeaderValue::from_static("close"));
    out
}

/// A connection whose shutdown lingers: it shuts the write side, then
/// reads and drops what the client still sends until the client closes,
/// for at most [`DRAIN_TIME`] and [`DRAIN_BYTES`] (a close with unread
/// bytes would send a reset, which can cost the client the response).
#[derive(Debug)]
struct Lingering {
    stream: TcpStream,
    drain: Option<Drain>,
}

/// Where a [`Lingering`] shutdown is.
#[derive(Debug)]
struct Drain {
    shut: bool,
    left: usize,
    until: Pin<Box<Sleep>>,
}

impl Lingering {
    fn new(stream: TcpStream) -> Lingering {
        Lingering {
            stream,
            drain: None,
        }
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, b)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let d = this.drain.get_or_insert_with(|| Drain {
            shut: false,
            left: DRAIN_BYTES,
            until: Box::pin(sleep(DRAIN_TIME)),
        });
        if !d.shut {
            if ready!(Pin::new(&mut this.stream).poll_shutdown(cx)).is_err() {
                return Poll::Ready(Ok(()));
            }
            d.shut = true;
        }
        let mut chunk = [0u8; 8192];
        loop {
            if d.left == 0 || d.until.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut chunk);
            match ready!(Pin::new(&mut this.stream).poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => {
                    d.left = d.left.saturating_sub(buf.filled().len());
                }
                // The client closed, or the connection failed: done.
                _ => return Poll::Ready(Ok(())),
            }
        }
    }
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
    // Only the page's pools' holders are read (one table visit), not a
    // snapshot of every holder.
    let now = shared.now();
    let (_, gen) = shared.generation.load();
    let info = shared.server_info(&gen.facts, now);
    let mut status = Status::for_request(
        &gen.engine,
        info,
        shared.queues.snapshot(),
        feature,
        from,
        limit,
        crate::status::HolderPaging::default(),
    );
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
    fn a_request_gives_its_method_target_and_openmetrics_wish() {
        let req = hyper::Request::builder()
            .method("GET")
            .uri("/api/v1/status?from=2")
            .header("accept", "text/plain")
            .header("accept", "application/openmetrics-text;version=1.0.0")
            .body(())
            .unwrap();
        assert_eq!(
            request_of(&req),
            Request {
                method: "GET".into(),
                target: "/api/v1/status?from=2".into(),
                openmetrics: true,
            }
        );
        let req = hyper::Request::builder()
            .method("POST")
            .uri("http://tally:8080/metrics")
            .body(())
            .unwrap();
        assert_eq!(
            request_of(&req),
            Request {
                method: "POST".into(),
                target: "/metrics".into(),
                openmetrics: false,
            }
        );
    }

    #[test]
    fn a_response_keeps_its_code_kind_and_body_and_closes() {
        let r = to_hyper(Response::text(405, "only GET\n"));
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(r.headers()[CONNECTION], "close");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    }
}
