//! A scripted HTTPS upload endpoint on loopback for the upload tests:
//! std's TcpListener + rustls' ServerConnection, a CA and a certificate for
//! 127.0.0.1 made with rcgen, HTTP/1.1 with Content-Length bodies and
//! keep-alive. It speaks the protocol of docs/usage.md ("Upload") and
//! records every request; its state ([`State`]) outlives a stop, so a test
//! can stop it mid-upload and start it again on the same port with what it
//! had (or with nothing).
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA and a server certificate it signed, for 127.0.0.1 and localhost.
pub(crate) struct Pki {
    /// The CA certificate, PEM (what `--upload-ca` reads).
    pub(crate) ca_pem: String,
    config: Arc<rustls::ServerConfig>,
}

impl Pki {
    /// Makes a fresh CA and server certificate.
    pub(crate) fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tally test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        Pki {
            ca_pem: ca.pem(),
            config: Arc::new(config),
        }
    }

    /// Writes the CA's PEM to `path`.
    pub(crate) fn write_ca(&self, path: &Path) {
        std::fs::write(path, &self.ca_pem).unwrap();
    }
}

/// Which step of the protocol a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Start,
    Chunk,
    Finish,
}

/// One request the endpoint answered (or refused).
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) content_type: String,
    pub(crate) body: Vec<u8>,
    pub(crate) status: u16,
}

/// What the endpoint knows and how it behaves; shared across restarts.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Every request, in order.
    pub(crate) seen: Vec<Seen>,
    /// The body of a start's 200 reply; `{uuid}` is replaced by the new
    /// upload's uuid. Default: seed 000's reply with ChunkMax 10485760 and
    /// ChunkOptimal 262144.
    pub(crate) start_reply: Option<String>,
    /// Statuses to answer instead of the real reply, popped by the first
    /// request of their step.
    pub(crate) fail: VecDeque<(Step, u16)>,
    /// After answering this chunk index with 200, stop listening (a
    /// restart mid-upload).
    pub(crate) stop_after_chunk: Option<u64>,
    /// Uploads started: uuid -> chunks by index.
    pub(crate) uploads: HashMap<String, HashMap<u64, Vec<u8>>>,
    /// Finished uploads: (uuid, the whole report, the finish's body).
    pub(crate) finished: Vec<(String, Vec<u8>, String)>,
    pub(crate) next_uuid: u64,
}

impl State {
    /// The lengths of the chunks received for `uuid`, by index.
    pub(crate) fn chunk_lengths(&self, uuid: &str) -> Vec<usize> {
        let chunks = &self.uploads[uuid];
        let mut idx: Vec<&u64> = chunks.keys().collect();
        idx.sort();
        idx.iter().map(|i| chunks[i].len()).collect()
    }

    /// How many requests were of `step`.
    pub(crate) fn count(&self, step: Step) -> usize {
        self.seen
            .iter()
            .filter(|s| step_of(&s.method, &s.path) == Some(step))
            .count()
    }
}

/// A running endpoint.
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    pub(crate) state: Arc<Mutex<State>>,
    stopped: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    config: Arc<rustls::ServerConfig>,
}

impl Endpoint {
    /// Starts an endpoint on a free loopback port with a fresh state.
    pub(crate) fn start(pki: &Pki) -> Endpoint {
        Endpoint::start_at(pki, "127.0.0.1:0".parse().unwrap(), Arc::default())
    }

    /// Starts an endpoint at `addr` with `state`.
    pub(crate) fn start_at(pki: &Pki, addr: SocketAddr, state: Arc<Mutex<State>>) -> Endpoint {
        let listener = bind_retrying(addr);
        let addr = listener.local_addr().unwrap();
        let stopped = Arc::new(AtomicBool::new(false));
        let config = pki.config.clone();
        let accept = {
            let (state, stopped, config) = (state.clone(), stopped.clone(), config.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, stopped, config) = (state.clone(), stopped.clone(), config.clone());
                    std::thread::spawn(move || serve(conn, config, state, stopped));
                }
            })
        };
        Endpoint {
            addr,
            state,
            stopped,
            accept: Some(accept),
            config,
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Waits until the endpoint stopped listening (by itself, after
    /// `stop_after_chunk`, or by [`Endpoint::stop`]).
    pub(crate) fn wait_stopped(&mut self) {
        if let Some(t) = self.accept.take() {
            t.join().unwrap();
        }
    }

    /// Stops listening; open connections are closed at their next request.
    pub(crate) fn stop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        self.wait_stopped();
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.stop();
        }
    }
}

/// Binds `addr`, retrying a moment while the port is still taken (a
/// restart on the same port).
fn bind_retrying(addr: SocketAddr) -> TcpListener {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => return l,
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    }
}

fn step_of(method: &str, path: &str) -> Option<Step> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("POST", ["upload", "start"]) => Some(Step::Start),
        ("PUT", ["upload", _, "chunk", _]) => Some(Step::Chunk),
        ("POST", ["upload", _, "finish"]) => Some(Step::Finish),
        _ => None,
    }
}

fn serve(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    state: Arc<Mutex<State>>,
    stopped: Arc<AtomicBool>,
) {
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut stream = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    loop {
        // Request line and headers.
        let mut line = String::new();
        if stream.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let (method, path) = (
            words.next().unwrap_or("").to_string(),
            words.next().unwrap_or("").to_string(),
        );
        let (mut length, mut content_type) = (0usize, String::new());
        loop {
            let mut h = String::new();
            if stream.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "content-type" => content_type = v.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        if stopped.load(Ordering::SeqCst) {
            // Down: the connection closes unanswered.
            return;
        }
        let (status, reply, stop_now) = answer(&state, &method, &path, &content_type, body);
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: text/xml\r\n\r\n",
            reply.len()
        );
        let w = stream.get_mut();
        if w.write_all(head.as_bytes()).is_err() || w.write_all(reply.as_bytes()).is_err() {
            return;
        }
        let _ = w.flush();
        if stop_now {
            stopped.store(true, Ordering::SeqCst);
            w.conn.send_close_notify();
            let _ = w.flush();
            let addr = w.sock.local_addr().unwrap();
            let _ = TcpStream::connect(addr);
            return;
        }
    }
}

/// The reply to one request: (status, body, stop listening after it).
fn answer(
    state: &Mutex<State>,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String, bool) {
    let mut st = state.lock().unwrap();
    let step = step_of(method, path);
    let parts: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    let mut stop = false;
    let forced = step.and_then(|s| {
        let i = st.fail.iter().position(|(f, _)| *f == s)?;
        st.fail.remove(i).map(|(_, code)| code)
    });
    let (status, reply) = match (forced, step) {
        (Some(code), _) => (code, format!("scripted {code}")),
        (None, None) => (404, "no such path".to_string()),
        (None, Some(Step::Start)) => {
            st.next_uuid += 1;
            let uuid = format!("test-{:04}", st.next_uuid);
            st.uploads.insert(uuid.clone(), HashMap::new());
            let reply = st
                .start_reply
                .clone()
                .unwrap_or_else(|| {
                    "<?xml version='1.0' encoding='utf8'?>\n<UploadResponse><uuid>{uuid}</uuid><ChunkMax>10485760</ChunkMax><ChunkOptimal>262144</ChunkOptimal></UploadResponse>".into()
                })
                .replace("{uuid}", &uuid);
            (200, reply)
        }
        (None, Some(Step::Chunk)) => {
            let (uuid, index) = (
                parts[1].clone(),
                parts[3].parse::<u64>().unwrap_or(u64::MAX),
            );
            match st.uploads.get_mut(&uuid) {
                Some(chunks) => {
                    chunks.insert(index, body.clone());
                    stop = st.stop_after_chunk == Some(index);
                    if stop {
                        st.stop_after_chunk = None;
                    }
                    (200, String::new())
                }
                None => (404, "unknown upload".into()),
            }
        }
        (None, Some(Step::Finish)) => {
            let uuid = parts[1].clone();
            match st.uploads.get(&uuid) {
                Some(chunks) => {
                    let mut idx: Vec<&u64> = chunks.keys().collect();
                    idx.sort();
                    let whole: Vec<u8> = idx.iter().flat_map(|i| chunks[i].clone()).collect();
                    let text = String::from_utf8_lossy(&body).into_owned();
                    st.finished.push((uuid, whole, text));
                    (200, "<Finished/>".into())
                }
                None => (404, "unknown upload".into()),
            }
        }
    };
    st.seen.push(Seen {
        method: method.to_string(),
        path: path.to_string(),
        content_type: content_type.to_string(),
        body,
        status,
    });
    (status, reply, stop)
}

/// A loopback listener that accepts connections and never answers.
pub(crate) struct Hanging {
    pub(crate) addr: SocketAddr,
    held: Arc<AtomicUsize>,
}

impl Hanging {
    /// Starts one on a free port.
    pub(crate) fn start() -> Hanging {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(AtomicUsize::new(0));
        let count = held.clone();
        std::thread::spawn(move || {
            let mut conns = Vec::new();
            for c in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                conns.push(c);
            }
        });
        Hanging { addr, held }
    }

    /// `https://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}
