//! A tallyd with `--http 127.0.0.1:0` (both ports read from its stderr),
//! and a plain HTTP/1.0 GET: for the tests of the HTTP side
//! (`web_page.rs`, `http_input.rs`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use crate::common::{tallyd_bin, Client, Scratch, REPLY_TIMEOUT};

/// A running tallyd with its HTTP side, killed when dropped.
pub(crate) struct Served {
    child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) http: SocketAddr,
    _scratch: Scratch,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts tallyd on `license` with two loops and `--http`.
    pub(crate) fn start(name: &str, license: &str) -> Served {
        Served::start_seeded(name, license, |_| {})
    }

    /// [`Served::start`], with `seed` given the state directory first (to
    /// put a usage history there, say).
    #[allow(dead_code)] // not every test that includes this module seeds
    pub(crate) fn start_seeded(
        name: &str,
        license: &str,
        seed: impl FnOnce(&std::path::Path),
    ) -> Served {
        Served::start_full(name, license, seed, None, &[])
    }

    /// [`Served::start`] with an options file's text and more arguments.
    #[allow(dead_code)] // not every test that includes this module needs them
    pub(crate) fn start_with(
        name: &str,
        license: &str,
        options: Option<&str>,
        extra: &[&str],
    ) -> Served {
        Served::start_full(name, license, |_| {}, options, extra)
    }

    fn start_full(
        name: &str,
        license: &str,
        seed: impl FnOnce(&std::path::Path),
        options: Option<&str>,
        extra: &[&str],
    ) -> Served {
        let scratch = Scratch::new(name);
        std::fs::create_dir_all(scratch.path("state")).expect("create the state dir");
        seed(&scratch.path("state"));
        let lic = scratch.path("license.lic");
        std::fs::write(&lic, license).expect("write license");
        let mut more: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        if let Some(text) = options {
            let opt = scratch.path("tally.opt");
            std::fs::write(&opt, text).expect("write options");
            more.extend(["--options".to_string(), opt.display().to_string()]);
        }
        let mut child = Command::new(tallyd_bin())
            .arg("-c")
            .arg(&lic)
            .arg("-l")
            .arg(scratch.path("debug.log"))
            .arg("--state-dir")
            .arg(scratch.path("state"))
            .args(["--port", "0", "--workers", "2", "--http", "127.0.0.1:0"])
            .args(&more)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tallyd");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let (mut addr, mut http) = (None, None);
        while addr.is_none() || http.is_none() {
            let line = lines
                .next()
                .expect("tallyd exited before listening")
                .expect("read tallyd stderr");
            if let Some(rest) = line.strip_prefix("tallyd: serving ") {
                let a = rest.rsplit(" on ").next().expect("address");
                addr = Some(a.parse().expect("socket address"));
            }
            if let Some(rest) = line.strip_prefix("tallyd: metrics on http://") {
                let a = rest.strip_suffix("/metrics").expect("the /metrics URL");
                http = Some(a.parse().expect("socket address"));
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Served {
            child,
            addr: addr.expect("license port"),
            http: http.expect("HTTP port"),
            _scratch: scratch,
        }
    }

    /// tallyd's threads of the HTTP side now, by name (`tally-http*`;
    /// Linux: `/proc/PID/task/*/comm`).
    #[allow(dead_code)] // not every test that includes this module counts them
    pub(crate) fn http_threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .expect("/proc/PID/task")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("tally-http"))
            .count()
    }

    /// A protocol client on the license port.
    pub(crate) fn connect(&self) -> Client {
        Client::new(TcpStream::connect(self.addr).expect("connect to tallyd"))
    }
}

/// Sends `request` (raw bytes) and reads the response to its end: (status
/// code, body). `None` if the server closed without a status line.
#[allow(dead_code)] // not every test that includes this module uses it
pub(crate) fn exchange(addr: SocketAddr, request: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).expect("connect to the HTTP port");
    s.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
    // Written by a thread of its own: the server may answer before it read
    // all of a large request, and a failed write is not the test's
    // concern, the answer is.
    let mut w = s.try_clone().expect("clone the stream");
    let request = request.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&request);
    });
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let _ = writer.join();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// One HTTP/1.0 GET of `path`: (status code, body).
#[allow(dead_code)] // not every test that includes this module uses it
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.0\r\nHost: tally\r\n\r\n");
    exchange(addr, req.as_bytes()).expect("a response")
}
