//! The compliance report's upload (issue 15) against a real HTTPS endpoint
//! on loopback (`upload_endpoint`): chunk sizes, retries with backoff,
//! refused connections, bad replies, resuming after the endpoint restarts,
//! a hanging endpoint, a certificate not trusted, reports kept on disk
//! across a restart, and the uploader log's lines and codes for each.

mod upload_endpoint;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_core::clock::SystemClock;
use tally_server::upload::{
    sha256_hex, Backoff, ReportSource, Timeouts, UploadConfig, UploadHandle, UploadStatus, Uploader,
};
use upload_endpoint::{Endpoint, Hanging, Pki, State, Step};

/// Longest a test waits for the uploader to get somewhere (CI is slow).
const PATIENCE: Duration = Duration::from_secs(60);

/// A scratch directory, removed when the test ends.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(tag: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("tally-upload-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

/// A report of `n` bytes of JSON.
fn report(n: usize) -> Vec<u8> {
    let mut r = br#"{"report":"test","pad":""#.to_vec();
    while r.len() + 2 < n {
        r.push(b'a' + (r.len() % 26) as u8);
    }
    r.extend_from_slice(br#""}"#);
    r.truncate(n);
    r
}

/// A config for `url` with test-small waits: first upload at once, no
/// second one, backoff 20-100 ms.
fn config(dir: &Path, url: &str, ca: Option<&Path>, attempts: u32) -> UploadConfig {
    let mut c = UploadConfig::new(url, dir.join("log_uploader.log"), dir, "testhost".into());
    c.ca = ca.map(Path::to_path_buf);
    c.first_delay = Duration::ZERO;
    c.every = Duration::from_secs(3600);
    c.backoff = Backoff {
        base: Duration::from_millis(20),
        max: Duration::from_millis(100),
    };
    c.attempts = attempts;
    c.timeouts = Timeouts {
        connect: Duration::from_secs(5),
        request: Duration::from_secs(10),
    };
    c
}

fn start(c: UploadConfig, bytes: Vec<u8>) -> Uploader {
    Uploader::start(c, ReportSource::fixed(bytes), Arc::new(SystemClock)).unwrap()
}

/// Waits until `done(status)` (the uploader runs on its own thread).
fn wait_for(h: &UploadHandle, what: &str, done: impl Fn(&UploadStatus) -> bool) -> UploadStatus {
    let t0 = Instant::now();
    loop {
        let s = h.status();
        if done(&s) {
            return s;
        }
        assert!(t0.elapsed() < PATIENCE, "waiting for {what}: {s:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `n` attempts have finished and no upload runs.
fn settled(h: &UploadHandle, n: u64) -> UploadStatus {
    wait_for(h, &format!("{n} attempts"), |s| {
        s.attempts >= n && !s.running
    })
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("log_uploader.log")).unwrap_or_default()
}

/// The `<Code>` of every result line, in order.
fn codes(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("<UploaderResult><Code>")?;
            Some(rest[..rest.find('<')?].to_string())
        })
        .collect()
}

fn pending(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("upload/pending"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn endpoint_with(pki: &Pki, f: impl FnOnce(&mut State)) -> Endpoint {
    let e = Endpoint::start(pki);
    f(&mut e.state.lock().unwrap());
    e
}

#[test]
fn chunks_are_chunk_optimal_bytes_and_the_log_says_success() {
    let pki = Pki::new();
    let dir = scratch("chunks");
    pki.write_ca(&dir.join("ca.pem"));
    let e = endpoint_with(&pki, |s| {
        s.start_reply = Some("<UploadResponse><uuid>{uuid}</uuid><ChunkMax>300</ChunkMax><ChunkOptimal>128</ChunkOptimal></UploadResponse>".into());
    });
    let body = report(1000);
    let u = start(
        config(&dir, &e.url(), Some(&dir.join("ca.pem")), 3),
        body.clone(),
    );
    let s = settled(&u.handle(), 1);
    u.join();
    let last = s.last.unwrap();
    assert_eq!(
        last.code.as_str(),
        "CTX_UPLOADER_SUCCESS",
        "{}",
        log_of(&dir)
    );
    let st = e.state.lock().unwrap();
    assert_eq!(
        st.chunk_lengths("test-0001"),
        [128, 128, 128, 128, 128, 128, 128, 104]
    );
    assert!(st
        .seen
        .iter()
        .filter(|r| r.method == "PUT")
        .all(|r| r.content_type == "application/octet-stream"));
    // The start's manifest and the finish's SHA-256.
    let start: serde_json::Value = serde_json::from_slice(&st.seen[0].body).unwrap();
    assert_eq!(start["UploadType"], "CTX_UPLOAD_TYPE_COMPLIANCE");
    assert_eq!(start["size"], 1000);
    assert_eq!(start["sha256"], sha256_hex(&body));
    assert_eq!(start["server"], "testhost");
    assert_eq!(start["report_id"], last.report_id.as_str());
    assert!(start["period"]["from"].is_string() && start["period"]["to"].is_string());
    assert_eq!(st.finished.len(), 1);
    assert_eq!(st.finished[0].1, body, "the chunks make the report");
    let fin: serde_json::Value = serde_json::from_str(&st.finished[0].2).unwrap();
    assert_eq!(fin["sha256"], sha256_hex(&body));
    // The log: start and finish times, the reply, the result line last.
    let log = log_of(&dir);
    assert_eq!(codes(&log), ["CTX_UPLOADER_SUCCESS"]);
    let re = regex::Regex::new(r"(?m)^Start time UTC=\{\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\} LOCAL=\{\d\d/\d\d/\d{4} \d\d:\d\d:\d\d\}$").unwrap();
    assert!(re.is_match(&log), "{log}");
    assert!(
        log.contains("<UploadResponse><uuid>test-0001</uuid><ChunkMax>300</ChunkMax>"),
        "{log}"
    );
    assert!(log.contains("chunks of 128 bytes"), "{log}");
    assert!(
        log.contains("/upload/test-0001/chunk/7 (104 bytes) -> 200"),
        "{log}"
    );
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines[lines.len() - 1].starts_with("Finish time UTC={"),
        "{log}"
    );
    let re = regex::Regex::new(r"^<UploaderResult><Code>CTX_UPLOADER_SUCCESS</Code><Msg></Msg><t>\d+</t><UploadType>CTX_UPLOAD_TYPE_COMPLIANCE</UploadType></UploaderResult>$").unwrap();
    assert!(re.is_match(lines[lines.len() - 2]), "{log}");
    assert!(pending(&dir).is_empty(), "{:?}", pending(&dir));
}

#[test]
fn chunk_optimal_above_chunk_max_sends_chunk_max() {
    let pki = Pki::new();
    let dir = scratch("chunkmax");
    pki.write_ca(&dir.join("ca.pem"));
    let e = endpoint_with(&pki, |s| {
        s.start_reply = Some("<UploadResponse><uuid>{uuid}</uuid><ChunkMax>300</ChunkMax><ChunkOptimal>5000</ChunkOptimal></UploadResponse>".into());
    });
    let u = start(
        config(&dir, &e.url(), Some(&dir.join("ca.pem")), 3),
        report(1000),
    );
    let s = settled(&u.handle(), 1);
    u.join();
    assert_eq!(s.last.unwrap().code.as_str(), "CTX_UPLOADER_SUCCESS");
    assert_eq!(
        e.state.lock().unwrap().chunk_lengths("test-0001"),
        [300, 300, 300, 100]
    );
}

#[test]
fn a_500_is_retried_with_backoff_then_succeeds() {
    let pki = Pki::new();
    let dir = scratch("500");
    pki.write_ca(&dir.join("ca.pem"));
    let e = endpoint_with(&pki, |s| {
        s.fail.extend([(Step::Start, 500), (Step::Start, 503)]);
    });
    let u = start(
        config(&dir, &e.url(), Some(&dir.join("ca.pem")), 5),
        report(500),
    );
    let s = settled(&u.handle(), 3);
    u.join();
    let log = log_of(&dir);
    assert_eq!(
        codes(&log),
        [
            "CTX_UPLOADER_HTTP_STATUS",
            "CTX_UPLOADER_HTTP_STATUS",
            "CTX_UPLOADER_SUCCESS"
        ],
        "{log}"
    );
    assert!(log.contains("<Msg>start: HTTP 500</Msg>"), "{log}");
    assert!(log.contains("<Msg>start: HTTP 503</Msg>"), "{log}");
    assert!(log.contains("scripted 500"), "the reply is logged: {log}");
    assert_eq!(log.matches("Next attempt in ").count(), 2, "{log}");
    assert!(log.contains("attempt 3 of 5"), "{log}");
    assert_eq!(s.attempts, 3);
    assert!(s.last_success.is_some());
    assert_eq!(e.state.lock().unwrap().count(Step::Start), 3);
}

#[test]
fn a_rejected_chunk_is_resent_on_the_same_upload() {
    let pki = Pki::new();
    let dir = scratch("chunk500");
    pki.write_ca(&dir.join("ca.pem"));
    let e = endpoint_with(&pki, |s| {
        s.start_reply = Some(
            "<UploadResponse><uuid>{uuid}</uuid><ChunkMax>100</ChunkMax></UploadResponse>".into(),
        );
        s.fail.push_back((Step::Chunk, 500));
    });
    let body = report(250);
    let u = start(
        config(&dir, &e.url(), Some(&dir.join("ca.pem")), 3),
        body.clone(),
    );
    settled(&u.handle(), 2);
    u.join();
    let log = log_of(&dir);
    assert_eq!(
        codes(&log),
        ["CTX_UPLOADER_CHUNK_REJECTED", "CTX_UPLOADER_SUCCESS"],
        "{log}"
    );
    assert!(log.contains("<Msg>chunk 0: HTTP 500</Msg>"), "{log}");
    assert!(
        log.contains("Resuming upload test-0001 at chunk 0 of 3"),
        "{log}"
    );
    let st = e.state.lock().unwrap();
    assert_eq!(st.count(Step::Start), 1, "one upload, resumed");
    assert_eq!(st.finished[0].1, body);
}

#[test]
fn connection_refused_backs_off_keeps_the_report_and_a_restart_sends_it() {
    let pki = Pki::new();
    let dir = scratch("refused");
    pki.write_ca(&dir.join("ca.pem"));
    // A free port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let first = report(300);
    let u = start(
        config(
            &dir,
            &format!("https://{port}"),
            Some(&dir.join("ca.pem")),
            3,
        ),
        first.clone(),
    );
    let s = settled(&u.handle(), 3);
    u.join();
    let log = log_of(&dir);
    assert_eq!(codes(&log), ["CTX_UPLOADER_CONNECT_FAILED"; 3], "{log}");
    assert_eq!(log.matches("Next attempt in ").count(), 2, "{log}");
    assert!(log.contains("Giving up for now"), "{log}");
    assert_eq!(s.pending, 1);
    let id = s.last.unwrap().report_id;
    assert_eq!(
        pending(&dir),
        [format!("{id}.json"), format!("{id}.manifest.json")]
    );

    // tallyd restarts with the endpoint up: the kept report goes first.
    let e = Endpoint::start_at(&pki, port, Arc::default());
    let second = report(200);
    let u = start(
        config(&dir, &e.url(), Some(&dir.join("ca.pem")), 3),
        second.clone(),
    );
    let s = settled(&u.handle(), 2);
    u.join();
    assert_eq!(s.pending, 0);
    let st = e.state.lock().unwrap();
    let sent: Vec<&Vec<u8>> = st.finished.iter().map(|f| &f.1).collect();
    assert_eq!(sent, [&first, &second]);
    assert!(pending(&dir).is_empty(), "{:?}", pending(&dir));
    assert_eq!(
        codes(&log_of(&dir))[3..],
        ["CTX_UPLOADER_SUCCESS", "CTX_UPLOADER_SUCCESS"]
    );
}

#[test]
fn a_reply_without_chunk_max_is_a_bad_reply() {
    let pki = Pki::new();
    let dir = scratch("nochunkmax");
    pki.write_ca(&dir.join("ca.pem"));
    let e = endpoint_with(&pki, |s| {
        s.start_reply = Some(
            "<UploadResponse><uuid>{uuid}</uuid><ChunkOptimal>128</ChunkOptimal></UploadResponse>"
                .into(),
        );
    });
    let u = start(
        config(&dir, &e.url(), Some(&dir.join("ca.pem")), 1),
        report(300),
    );
    let s = settled(&u.handle(), 1);
    u.join();
    let last = s.last.unwrap();
    assert_eq!(last.code.as_str(), "CTX_UPLOADER_BAD_REPLY");
    assert!(last.msg.contains("no <ChunkMax>"), "{}", last.msg);
    let log = log_of(&dir);
    assert!(
        log.contains(
            "<Code>CTX_UPLOADER_BAD_REPLY</Code><Msg>start reply: no &lt;ChunkMax&gt;</Msg>"
        ),
        "{log}"
    );
    assert_eq!(e.state.lock().unwrap().count(Step::Chunk), 0);
    assert_eq!(s.pending, 1);
}

/// `<ChunkMax>1</ChunkMax>` for a 20,000-byte report would be 20,000 PUTs:
/// a bad reply, nothing sent.
#[test]
fn a_chunk_max_making_too_many_chunks_is_a_bad_reply() {
    let pki = Pki::new();
    let dir = scratch("tinychunks");
    pki.write_ca(&dir.join("ca.pem"));
    let e = endpoint_with(&pki, |s| {
        s.start_reply = Some(
            "<UploadResponse><uuid>{uuid}</uuid><ChunkMax>1</ChunkMax></UploadResponse>".into(),
        );
    });
    let u = start(
        config(&dir, &e.url(), Some(&dir.join("ca.pem")), 1),
        report(20_000),
    );
    let s = settled(&u.handle(), 1);
    u.join();
    let last = s.last.unwrap();
    assert_eq!(last.code.as_str(), "CTX_UPLOADER_BAD_REPLY");
    assert!(last.msg.contains("make 20000 chunks"), "{}", last.msg);
    assert_eq!(e.state.lock().unwrap().count(Step::Chunk), 0);
    assert_eq!(s.pending, 1);
}

/// The endpoint goes down after acknowledging chunk 2 and comes back on
/// the same port with what it had: the upload resumes at chunk 3 on the
/// same uuid, and every chunk arrives once.
#[test]
fn an_endpoint_restart_mid_upload_resumes_at_the_next_chunk() {
    let pki = Pki::new();
    let dir = scratch("resume");
    pki.write_ca(&dir.join("ca.pem"));
    let mut e = endpoint_with(&pki, |s| {
        s.start_reply = Some("<UploadResponse><uuid>{uuid}</uuid><ChunkMax>100</ChunkMax><ChunkOptimal>100</ChunkOptimal></UploadResponse>".into());
        s.stop_after_chunk = Some(2);
    });
    let (addr, state) = (e.addr, e.state.clone());
    let body = report(550);
    let mut c = config(&dir, &e.url(), Some(&dir.join("ca.pem")), 50);
    c.backoff = Backoff {
        base: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let u = start(c, body.clone());
    e.wait_stopped();
    let h = u.handle();
    wait_for(&h, "a failed attempt", |s| s.attempts >= 1);
    let e2 = Endpoint::start_at(&pki, addr, state);
    let s = wait_for(&h, "a success", |s| s.last_success.is_some());
    u.join();
    let log = log_of(&dir);
    let c = codes(&log);
    assert_eq!(
        c.last().map(String::as_str),
        Some("CTX_UPLOADER_SUCCESS"),
        "{log}"
    );
    assert!(
        c[..c.len() - 1].iter().all(|c| c != "CTX_UPLOADER_SUCCESS"),
        "{log}"
    );
    assert!(
        log.contains("Resuming upload test-0001 at chunk 3 of 6"),
        "{log}"
    );
    let st = e2.state.lock().unwrap();
    assert_eq!(st.count(Step::Start), 1, "{log}");
    let chunk_puts: Vec<&str> = st
        .seen
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        chunk_puts,
        (0..6)
            .map(|i| format!("/upload/test-0001/chunk/{i}"))
            .collect::<Vec<_>>(),
        "{log}"
    );
    assert_eq!(st.finished[0].1, body);
    assert_eq!(s.pending, 0);
}

/// The endpoint comes back having lost its uploads: the chunk gets 404 and
/// the upload starts again from chunk 0.
#[test]
fn an_endpoint_that_forgot_the_upload_gets_it_again_from_the_start() {
    let pki = Pki::new();
    let dir = scratch("forgot");
    pki.write_ca(&dir.join("ca.pem"));
    let reply = "<UploadResponse><uuid>{uuid}</uuid><ChunkMax>100</ChunkMax></UploadResponse>";
    let mut e = endpoint_with(&pki, |s| {
        s.start_reply = Some(reply.into());
        s.stop_after_chunk = Some(1);
    });
    let addr = e.addr;
    let body = report(350);
    let mut c = config(&dir, &e.url(), Some(&dir.join("ca.pem")), 50);
    c.backoff = Backoff {
        base: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    let u = start(c, body.clone());
    e.wait_stopped();
    let h = u.handle();
    wait_for(&h, "a failed attempt", |s| s.attempts >= 1);
    let fresh = State {
        start_reply: Some(reply.into()),
        ..State::default()
    };
    let e2 = Endpoint::start_at(&pki, addr, Arc::new(std::sync::Mutex::new(fresh)));
    wait_for(&h, "a success", |s| s.last_success.is_some());
    u.join();
    let log = log_of(&dir);
    assert!(
        log.contains("The endpoint does not know upload test-0001: starting again"),
        "{log}"
    );
    let st = e2.state.lock().unwrap();
    assert_eq!(st.count(Step::Start), 1);
    assert_eq!(st.chunk_lengths("test-0001"), [100, 100, 100, 50]);
    assert_eq!(st.finished[0].1, body);
}

#[test]
fn a_hanging_endpoint_ends_the_attempt_with_a_timeout() {
    let dir = scratch("hang");
    let pki = Pki::new();
    pki.write_ca(&dir.join("ca.pem"));
    let hang = Hanging::start();
    let mut c = config(&dir, &hang.url(), Some(&dir.join("ca.pem")), 1);
    c.timeouts = Timeouts {
        connect: Duration::from_secs(5),
        request: Duration::from_millis(300),
    };
    let u = start(c, report(100));
    let s = settled(&u.handle(), 1);
    u.join();
    assert_eq!(
        s.last.unwrap().code.as_str(),
        "CTX_UPLOADER_TIMEOUT",
        "{}",
        log_of(&dir)
    );
    assert!(hang.accepted() >= 1);
    let log = log_of(&dir);
    assert_eq!(codes(&log), ["CTX_UPLOADER_TIMEOUT"]);
    assert!(
        log.contains(&format!("POST {}/upload/start -> no reply", hang.url())),
        "{log}"
    );
}

#[test]
fn a_certificate_from_another_ca_is_a_tls_failure() {
    let dir = scratch("tls");
    let pki = Pki::new();
    Pki::new().write_ca(&dir.join("other-ca.pem"));
    let e = Endpoint::start(&pki);
    let u = start(
        config(&dir, &e.url(), Some(&dir.join("other-ca.pem")), 1),
        report(100),
    );
    let s = settled(&u.handle(), 1);
    u.join();
    let last = s.last.unwrap();
    assert_eq!(
        last.code.as_str(),
        "CTX_UPLOADER_TLS_FAILED",
        "{}",
        last.msg
    );
    assert_eq!(e.state.lock().unwrap().seen.len(), 0);
}

#[test]
fn a_failed_finish_is_finished_again_without_resending() {
    let pki = Pki::new();
    let dir = scratch("finish");
    pki.write_ca(&dir.join("ca.pem"));
    let e = endpoint_with(&pki, |s| s.fail.push_back((Step::Finish, 500)));
    let u = start(
        config(&dir, &e.url(), Some(&dir.join("ca.pem")), 3),
        report(100),
    );
    settled(&u.handle(), 2);
    u.join();
    let log = log_of(&dir);
    assert_eq!(
        codes(&log),
        ["CTX_UPLOADER_FINISH_REJECTED", "CTX_UPLOADER_SUCCESS"],
        "{log}"
    );
    let st = e.state.lock().unwrap();
    assert_eq!(
        (
            st.count(Step::Start),
            st.count(Step::Chunk),
            st.count(Step::Finish)
        ),
        (1, 1, 2)
    );
}

#[test]
fn an_upload_can_be_asked_for_now() {
    let pki = Pki::new();
    let dir = scratch("now");
    pki.write_ca(&dir.join("ca.pem"));
    let e = Endpoint::start(&pki);
    let mut c = config(&dir, &e.url(), Some(&dir.join("ca.pem")), 1);
    c.first_delay = Duration::from_secs(3600);
    let u = start(c, report(100));
    let h = u.handle();
    assert!(h.status().next.is_some());
    assert_eq!(h.status().attempts, 0);
    assert_eq!(h.request(), tally_server::upload::Requested::Started);
    let s = settled(&h, 1);
    assert_eq!(s.last.unwrap().code.as_str(), "CTX_UPLOADER_SUCCESS");
    u.join();
    assert_eq!(e.state.lock().unwrap().finished.len(), 1);
}

#[test]
fn plain_http_and_bad_ca_files_are_refused_at_start() {
    let dir = scratch("refuse");
    let c = config(&dir, "http://127.0.0.1:1", None, 1);
    let e = Uploader::start(c, ReportSource::fixed(vec![]), Arc::new(SystemClock)).unwrap_err();
    assert!(e.to_string().contains("plain http is refused"), "{e}");
    std::fs::write(dir.join("empty.pem"), "not a pem").unwrap();
    let c = config(&dir, "https://127.0.0.1:1", Some(&dir.join("empty.pem")), 1);
    let e = Uploader::start(c, ReportSource::fixed(vec![]), Arc::new(SystemClock)).unwrap_err();
    assert!(e.to_string().contains("no PEM certificate"), "{e}");
}

#[test]
fn a_redirect_is_not_followed() {
    let pki = Pki::new();
    let dir = scratch("redirect");
    pki.write_ca(&dir.join("ca.pem"));
    let e = endpoint_with(&pki, |s| s.fail.push_back((Step::Start, 302)));
    let u = start(
        config(&dir, &e.url(), Some(&dir.join("ca.pem")), 1),
        report(100),
    );
    let s = settled(&u.handle(), 1);
    u.join();
    let last = s.last.unwrap();
    assert_eq!(last.code.as_str(), "CTX_UPLOADER_HTTP_STATUS");
    assert_eq!(last.msg, "start: HTTP 302");
    assert_eq!(e.state.lock().unwrap().seen.len(), 1);
}
