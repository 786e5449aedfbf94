//! The servers under test: a private tallyd and a private redis-server, each
//! on a free loopback port, optionally pinned to one core with `taskset`,
//! stopped (killed and reaped) when dropped.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::wire::{Conn, SEMAPHORE_LUA};

/// Feature every load scenario uses.
pub const FEATURE: &str = "F";
/// Count=1 feature of the expiry scenario.
pub const EXPIRY_FEATURE: &str = "EXP";
/// The startup feature of the logon storm (vendor string `LT=SYS`).
pub const STARTUP_FEATURE: &str = "CITRIX";
/// The product feature of the logon storm.
pub const PRODUCT_FEATURE: &str = "MPM";

/// Licenses of the startup and the product feature (logon storm).
pub const STORM_SEATS: u64 = 10_000;

/// The bench license, with `seats` licenses of [`FEATURE`].
pub fn bench_license(seats: u64) -> String {
    format!(
        "INCREMENT {FEATURE} BENCH 1.0 permanent {seats}\n\
         INCREMENT {EXPIRY_FEATURE} BENCH 1.0 permanent 1\n\
         INCREMENT {STARTUP_FEATURE} BENCH 1.0 permanent {STORM_SEATS} VENDOR_STRING=\";LT=SYS;GP=96\"\n\
         INCREMENT {PRODUCT_FEATURE} BENCH 1.0 permanent {STORM_SEATS}\n"
    )
}

/// Every license [`bench_license`] serves: what tallyd preallocates for.
pub fn bench_license_total(seats: u64) -> u64 {
    seats + 1 + 2 * STORM_SEATS
}

/// A running server process: killed, reaped and its scratch dir removed
/// on drop.
#[derive(Debug)]
pub struct Running {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Running {
    /// Its process id (taskset execs, so this is the server itself).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident set size in bytes, from /proc/PID/status.
    pub fn rss_bytes(&self) -> Result<u64, String> {
        rss_bytes(self.pid())
    }

    /// Its scratch directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// VmRSS of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("{path}: no VmRSS line"))
}

/// A free loopback TCP port (bound, then released).
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

/// How servers are placed on cores.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Core the servers run on (`taskset -c`), if pinning.
    pub server_core: Option<usize>,
}

impl Placement {
    fn command(&self, bin: &Path) -> Command {
        match self.server_core {
            Some(core) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(core.to_string()).arg(bin);
                c
            }
            None => Command::new(bin),
        }
    }
}

/// True if `taskset` runs here.
pub fn have_taskset() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Options for a private tallyd.
#[derive(Debug, Clone)]
pub struct TallydSpec {
    /// The tallyd binary.
    pub bin: PathBuf,
    /// Licenses of [`FEATURE`].
    pub seats: u64,
    /// Event-loop threads.
    pub workers: usize,
    /// Extra arguments (e.g. `--durability sync --state-dir {dir}`; the
    /// text `{dir}` is replaced by the server's scratch directory).
    pub extra: Vec<String>,
}

/// The tallyd next to the running binary.
pub fn default_tallyd() -> Result<PathBuf, String> {
    std::env::current_exe()
        .map(|p| p.with_file_name("tallyd"))
        .map_err(|e| format!("where am I: {e}"))
}

fn scratch(kind: &str) -> Result<PathBuf, String> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tally-bench-{kind}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Starts tallyd on [`bench_license`] on a free loopback port; waits until
/// it serves.
pub fn start_tallyd(spec: &TallydSpec, place: &Placement) -> Result<Running, String> {
    start_tallyd_licensed(spec, &bench_license(spec.seats), place)
}

/// Starts tallyd serving the license text `license` (`spec.seats` unused)
/// on a free loopback port; waits until it serves.
pub fn start_tallyd_licensed(
    spec: &TallydSpec,
    license: &str,
    place: &Placement,
) -> Result<Running, String> {
    let dir = scratch("tallyd")?;
    let lic = dir.join("bench.lic");
    std::fs::write(&lic, license).map_err(|e| format!("{}: {e}", lic.display()))?;
    let mut cmd = place.command(&spec.bin);
    cmd.arg("-c")
        .arg(&lic)
        .arg("-l")
        .arg(dir.join("debug.log"))
        .args(["--port", "0", "--workers", &spec.workers.to_string()]);
    // A state directory for extra arguments that want one ({dir}/state).
    let state = dir.join("state");
    std::fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;
    let dir_s = dir.display().to_string();
    for a in &spec.extra {
        cmd.arg(a.replace("{dir}", &dir_s));
    }
    // Never the shared default state dir (/var/lib/tally): a journal of its
    // own that goes with the scratch directory.
    if !spec.extra.iter().any(|a| a == "--state-dir") {
        cmd.arg("--state-dir").arg(&state);
    }
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {}: {e} (build it: cargo build --release -p tally-server)",
                spec.bin.display()
            )
        })?;
    let Some(stderr) = child.stderr.take() else {
        return Err("tallyd: no stderr pipe".into());
    };
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let addr = loop {
        let Some(line) = lines.next() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "tallyd exited before listening: {}",
                seen.join(" | ")
            ));
        };
        let line = line.map_err(|e| format!("tallyd stderr: {e}"))?;
        if let Some(rest) = line.strip_prefix("tallyd: serving ") {
            match rest.rsplit(" on ").next().and_then(|a| a.parse().ok()) {
                Some(a) => break a,
                None => return Err(format!("cannot parse tallyd's address in {line:?}")),
            }
        }
        seen.push(line);
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(Running { child, addr, dir })
}

/// Why Redis rows are skipped, with the way to get them.
pub fn redis_missing_message() -> String {
    "redis-server not found: Redis rows skipped. Install it with \
     `sudo apt-get install -y redis-server` (Debian package redis-server) \
     or put redis-server on PATH, then run bench/run again"
        .to_string()
}

/// The redis-server binary on PATH, if any.
pub fn find_redis() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// A private redis-server with the semaphore script loaded.
#[derive(Debug)]
pub struct Redis {
    /// The process.
    pub server: Running,
    /// SHA1 of [`SEMAPHORE_LUA`] as Redis reports it.
    pub sha: String,
}

/// Starts `redis-server` on a free loopback port, no persistence, and
/// loads the semaphore script. `maxclients` bounds its connections.
pub fn start_redis(bin: &Path, place: &Placement, maxclients: usize) -> Result<Redis, String> {
    let dir = scratch("redis")?;
    let port = free_port()?;
    let mut cmd = place.command(bin);
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        // Bound to 127.0.0.1 anyway; protected mode would refuse the idle
        // scenario's connections from 127.0.0.2 and up.
        "--protected-mode",
        "no",
        "--maxclients",
        &maxclients.to_string(),
        "--dir",
    ])
    .arg(&dir)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let server = Running { child, addr, dir };
    let t0 = Instant::now();
    let mut conn = loop {
        match Conn::connect(addr, true) {
            Ok(c) => break c,
            Err(e) if t0.elapsed() > Duration::from_secs(10) => {
                return Err(format!(
                    "redis-server on {addr} did not answer in 10 s: {e}"
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let sha = conn
        .command(&["SCRIPT", "LOAD", SEMAPHORE_LUA])
        .map_err(|e| format!("SCRIPT LOAD: {e}"))?;
    if sha.len() != 40 {
        return Err(format!("SCRIPT LOAD answered {sha:?}"));
    }
    Ok(Redis { server, sha })
}

impl Redis {
    /// Empties the data set (scripts stay loaded).
    pub fn flush(&self) -> Result<(), String> {
        let mut c = Conn::connect(self.server.addr, true).map_err(|e| e.to_string())?;
        c.command(&["FLUSHALL"])
            .map(|_| ())
            .map_err(|e| format!("FLUSHALL: {e}"))
    }
}
