//! Starts the real `tallyd` binary on a free port and talks to it.
//!
//! Shared by tally-server's tests (`mod common;`) and tally-client's
//! (`#[path = "../../server/tests/common/mod.rs"] mod common;`): see
//! [`tallyd_bin`] for how the binary is found in each.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest a test waits for one reply before failing (generous: CI is slow).
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The `tallyd` binary to run.
///
/// In tally-server's own tests Cargo built it and names it
/// (`CARGO_BIN_EXE_tallyd`). Elsewhere (tally-client's tests run `tallyctl`
/// against a real server) Cargo does not build another package's binaries
/// for a test, so the first call runs `cargo build -p tally-server --bin
/// tallyd` once for this test process, into the target directory and with
/// the profile this test binary was built with (taken from its own path,
/// `<target>/[<triple>/]<profile>/deps/<test>`), and returns
/// `<target>/[<triple>/]<profile>/tallyd`. Building every time (a no-op
/// when nothing changed) means a stale tallyd is never tested.
pub(crate) fn tallyd_bin() -> PathBuf {
    if let Some(bin) = option_env!("CARGO_BIN_EXE_tallyd") {
        return PathBuf::from(bin);
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_tallyd).clone()
}

/// Builds tallyd next to the running test binary ([`tallyd_bin`]).
fn build_tallyd() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in <target>/<profile>/deps");
    let dir_name = out_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a profile directory");
    // Cargo names a profile's directory after it, except `dev` (`debug`).
    let profile = if dir_name == "debug" { "dev" } else { dir_name };
    let above = out_dir.parent().expect("a target directory");
    // With `--target <triple>` the profile directory is one level down.
    let (target_dir, triple) = if above.join("CACHEDIR.TAG").exists() {
        (above, None)
    } else {
        let triple = above.file_name().and_then(|n| n.to_str());
        (above.parent().expect("a target directory"), triple)
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "tally-server", "--bin", "tallyd"])
        .args(["--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if let Some(triple) = triple {
        cmd.args(["--target", triple]);
    }
    let status = cmd.status().expect("run cargo build for tallyd");
    assert!(
        status.success(),
        "cargo build -p tally-server --bin tallyd: {status}"
    );
    let bin = out_dir.join(format!("tallyd{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "no tallyd at {}", bin.display());
    bin
}

/// A scratch directory removed on drop.
pub(crate) struct Scratch(pub PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "tally-test-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            name
        ));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running tallyd.
pub(crate) struct Tallyd {
    child: Child,
    pub addr: SocketAddr,
    pub license: PathBuf,
    pub log: PathBuf,
    pub scratch: Scratch,
}

impl Tallyd {
    /// Starts tallyd on `license_text` (written to a file), on 127.0.0.1 and
    /// a free port, logging to a file, with `extra` arguments.
    /// Its journal goes to a state directory of its own inside the scratch
    /// directory (unless `extra` names one).
    pub(crate) fn start(license_text: &str, extra: &[&str]) -> Tallyd {
        let scratch = Scratch::new("tallyd");
        let state = scratch.path("state");
        Tallyd::start_in(scratch, license_text, extra, &state, &[])
    }

    /// Starts tallyd with its journal in `state` (a directory the test owns,
    /// to restart a server on the same state).
    pub(crate) fn start_with_state(license_text: &str, extra: &[&str], state: &Path) -> Tallyd {
        Tallyd::start_in(Scratch::new("tallyd"), license_text, extra, state, &[])
    }

    /// [`Tallyd::start_with_state`] with environment variables set for it.
    pub(crate) fn start_with_env(
        license_text: &str,
        extra: &[&str],
        state: &Path,
        env: &[(&str, &str)],
    ) -> Tallyd {
        Tallyd::start_in(Scratch::new("tallyd"), license_text, extra, state, env)
    }

    /// [`Tallyd::start`] with its open-file limit (RLIMIT_NOFILE) set to
    /// `nofile` in the child before it runs.
    pub(crate) fn start_with_nofile(license_text: &str, extra: &[&str], nofile: u64) -> Tallyd {
        let scratch = Scratch::new("tallyd");
        let state = scratch.path("state");
        Tallyd::start_full(scratch, license_text, extra, &state, &[], Some(nofile))
    }

    fn start_in(
        scratch: Scratch,
        license_text: &str,
        extra: &[&str],
        state: &Path,
        env: &[(&str, &str)],
    ) -> Tallyd {
        Tallyd::start_full(scratch, license_text, extra, state, env, None)
    }

    fn start_full(
        scratch: Scratch,
        license_text: &str,
        extra: &[&str],
        state: &Path,
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Tallyd {
        let license = scratch.path("license.lic");
        std::fs::write(&license, license_text).expect("write license");
        let log = scratch.path("debug.log");
        let log_arg = format!("+{}", log.display());
        let mut cmd = Command::new(tallyd_bin());
        cmd.envs(env.iter().copied())
            .arg("-c")
            .arg(&license)
            .args(["-l", &log_arg, "--port", "0"]);
        if !extra.contains(&"--workers") {
            cmd.args(["--workers", "2"]);
        }
        if !extra.contains(&"--state-dir") {
            cmd.arg("--state-dir").arg(state);
        }
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // Safety: setrlimit is async-signal-safe; nothing else runs
            // between fork and exec here.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tallyd");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("tallyd exited before listening")
                .expect("read tallyd stderr");
            if let Some(rest) = line.strip_prefix("tallyd: serving ") {
                let a = rest.rsplit(" on ").next().expect("address");
                break a.parse().expect("socket address");
            }
        };
        // Keep draining stderr so tallyd never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Tallyd {
            child,
            addr,
            license,
            log,
            scratch,
        }
    }

    pub(crate) fn connect(&self) -> Client {
        Client::new(TcpStream::connect(self.addr).expect("connect to tallyd"))
    }

    /// Connects from a given local address (e.g. 127.0.0.2).
    pub(crate) fn connect_from(&self, local: &str) -> Client {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let local: SocketAddr = format!("{local}:0").parse().expect("local addr");
        sock.bind(&local.into()).expect("bind local address");
        sock.connect(&self.addr.into()).expect("connect");
        Client::new(sock.into())
    }

    /// The debug log's lines with the `HH:MM:SS ` prefix removed.
    pub(crate) fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                l.trim_start()
                    .split_once(' ')
                    .map_or("", |(_, rest)| rest)
                    .to_string()
            })
            .collect()
    }

    /// Waits for the process to exit (after DOWN), up to `limit`.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The process id (to send signals).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL (a crash) and reaps it.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn license_path(&self) -> &Path {
        &self.license
    }
}

impl Drop for Tallyd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One protocol connection: tally-client's [`tally_client::Connection`],
/// with a test's manners (panics instead of errors, [`REPLY_TIMEOUT`]).
/// Lines are sent as given, unchecked, so tests can send what a client
/// library would refuse.
pub(crate) struct Client {
    conn: tally_client::Connection,
}

impl Client {
    pub(crate) fn new(stream: TcpStream) -> Client {
        let conn = tally_client::Connection::from_stream(
            stream,
            tally_client::Timeouts::all(REPLY_TIMEOUT),
        )
        .expect("set up the connection");
        Client { conn }
    }

    /// Sends one request line, returns the reply line (without LF).
    pub(crate) fn req(&mut self, line: &str) -> String {
        self.send(format!("{line}\n").as_bytes());
        self.read_line()
            .unwrap_or_else(|| panic!("no reply to {line:?}"))
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.conn.send_raw(bytes).expect("send");
    }

    /// The next reply line, or `None` at end of stream.
    pub(crate) fn read_line(&mut self) -> Option<String> {
        match self.conn.read_raw_line() {
            Ok(line) => line.map(|l| String::from_utf8(l.to_vec()).expect("a UTF-8 reply")),
            Err(e) => panic!("reading a reply: {e}"),
        }
    }

    /// True if the server closed the connection (EOF).
    pub(crate) fn is_closed(&mut self) -> bool {
        self.conn.is_closed()
    }

    /// The STATUS JSON.
    pub(crate) fn status(&mut self) -> serde_json::Value {
        let r = self.req("STATUS");
        let json = r
            .strip_prefix("OK ")
            .unwrap_or_else(|| panic!("STATUS: {r}"));
        serde_json::from_str(json).expect("STATUS is JSON")
    }

    /// in_use of the first pool of `feature`.
    pub(crate) fn in_use(&mut self, feature: &str) -> u64 {
        let s = self.status();
        s["features"]
            .as_array()
            .expect("features")
            .iter()
            .filter(|f| f["name"] == feature)
            .map(|f| f["in_use"].as_u64().expect("in_use"))
            .sum()
    }

    /// Handles holding `feature`, sorted.
    pub(crate) fn holders(&mut self, feature: &str) -> Vec<String> {
        let s = self.status();
        let mut v: Vec<String> = s["features"]
            .as_array()
            .expect("features")
            .iter()
            .filter(|f| f["name"] == feature)
            .flat_map(|f| f["holders"].as_array().cloned().unwrap_or_default())
            .map(|h| h["handle"].as_str().unwrap_or("").to_string())
            .collect();
        v.sort();
        v
    }
}

/// Polls `cond` every 10 ms until it holds or `limit` passes.
pub(crate) fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}
