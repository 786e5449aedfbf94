//! tallyd: the tally license server.
//!
//! `tallyd` with no arguments serves the embedded demo license on
//! 127.0.0.1:27000 and logs to stderr. See `docs/operations.md`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tally_core::license::signature::VendorKey;
use tally_core::license::LicenseSet;
use tally_server::debuglog::LogTarget;
use tally_server::demo::{DEMO_LICENSE, DEMO_SOURCE};
use tally_server::journal::{Durability, JournalError, DEFAULT_STATE_DIR};
use tally_server::options::PolicyConfig;
use tally_server::server::{Config, Server, ServerError};
use tally_server::upload::{Backoff, Timeouts, UploadConfig};

/// Port used when neither --port nor the license's SERVER line gives one.
const DEFAULT_PORT: u16 = 27000;

/// Exit status when the state dir's journal or snapshot is damaged (or in
/// another format version): a restart would meet the same files, so a
/// supervisor should not restart on it (`RestartPreventExitStatus=65`).
/// sysexits' `EX_DATAERR`.
const EXIT_DAMAGED_STATE: u8 = 65;

/// Why tallyd stopped: the exit status and the message for stderr.
struct Failure {
    status: u8,
    message: String,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure { status: 1, message }
    }
}

/// tally license server: FlexLM-compatible license files, lmgrd-style log.
#[derive(Debug, Parser)]
#[command(name = "tallyd", version, about, long_about = None)]
struct Args {
    /// License file (FlexLM syntax). Without it, the embedded demo license.
    #[arg(short = 'c', value_name = "LICENSE_FILE")]
    license: Option<PathBuf>,

    /// Debug log file, appended to across restarts (`+FILE`, lmgrd's
    /// spelling of append, is accepted too). Reopened on SIGHUP and
    /// `tallyctl reopen-log`, for logrotate. Default: standard error.
    #[arg(short = 'l', value_name = "[+]LOG_FILE")]
    log: Option<String>,

    /// Truncate the debug log file at start, as lmgrd does with `-l FILE`.
    #[arg(long)]
    truncate_log: bool,

    /// When a grant is durable: `sync` (its record is on disk, synced in a
    /// group with others, before the reply), `async` (written at once,
    /// synced every 100 ms), `off` (no journal: a restart loses every
    /// checkout).
    #[arg(long, value_enum, default_value_t = Durability::Sync)]
    durability: Durability,

    /// Directory of the journal and snapshots (default /var/lib/tally; the
    /// embedded demo uses $XDG_STATE_HOME/tally-demo-TAG or
    /// /tmp/tallyd-demo-UID-TAG, TAG naming this binary). One tallyd per
    /// directory.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// Journal KiB after which a snapshot is taken (in the background) and
    /// older journal files deleted; or, if the last snapshot is bigger, as
    /// many bytes of journal as it has (so millions held are not
    /// snapshotted again at every KIB); also taken every 10 minutes.
    #[arg(long, value_name = "KIB", default_value_t = tally_server::journal::SNAPSHOT_EVERY_BYTES / 1024,
          value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every_kib: u64,

    /// Start even though the journal is damaged (other than a torn tail,
    /// which is always cut): restore every intact record around the damage
    /// and move each damaged file to STATE_DIR/damaged/. Without it tallyd
    /// refuses to start (exit status 65) and says what is damaged.
    #[arg(long)]
    salvage_journal: bool,

    /// FlexLM options file (docs/options-file.md). Default: the
    /// `OPTIONS=` path on the license file's VENDOR line, if any.
    #[arg(long = "options", value_name = "OPTIONS_FILE")]
    options: Option<PathBuf>,

    /// Smallest TIMEOUT/TIMEOUTALL honoured, in seconds. FlexLM's (and the
    /// default) is 900; lower it only for tests.
    #[arg(long, value_name = "SECS", default_value_t = tally_core::options::FLEXLM_MIN_TIMEOUT_SECS)]
    min_timeout: u64,

    /// TCP port (default: the SERVER line's port, else 27000).
    #[arg(long)]
    port: Option<u16>,

    /// Address to listen on. The default, 127.0.0.1, serves this machine
    /// only; use 0.0.0.0 (or a specific address) to serve a farm.
    #[arg(long, value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    listen: IpAddr,

    /// Event-loop threads (default: the number of cores).
    #[arg(long)]
    workers: Option<usize>,

    /// File holding the token that lets non-loopback peers make admin
    /// requests (`AUTH <token>`). Without it, admin is loopback-only.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,

    /// Host name reported in status (default: the SERVER line's host, or
    /// this machine's name).
    #[arg(long)]
    host_name: Option<String>,

    /// The vendor's public key file (`tallyctl license keygen`): serve only
    /// the FEATURE, INCREMENT, PACKAGE and UPGRADE lines whose `TALLY_SIG=`
    /// verifies with it; the others are refused, each named file:line, at
    /// start and at every REREAD.
    #[arg(long, value_name = "PUB")]
    vendor_key: Option<PathBuf>,
    /// Serve the status page at http://ADDR:PORT/, Prometheus metrics at
    /// /metrics and the STATUS JSON at /api/v1/status (read-only; off
    /// unless given). Suggested: 127.0.0.1:27080, or 0.0.0.0:27080 for
    /// a Prometheus on another machine. See docs/operations.md.
    #[arg(long, value_name = "ADDR:PORT")]
    http: Option<SocketAddr>,

    /// Upload the compliance report to this HTTPS endpoint (docs/usage.md,
    /// "Upload"): a first time --upload-delay after start, then once a day,
    /// and on `tallyctl report upload`. Off unless given; plain http:// is
    /// refused.
    #[arg(long, value_name = "https://HOST[:PORT][/PATH]")]
    upload_url: Option<String>,

    /// Trust the CA certificate(s) in this PEM file for the upload endpoint
    /// instead of the bundled Mozilla roots (a private endpoint, tests).
    #[arg(long, value_name = "PEM_FILE", requires = "upload_url")]
    upload_ca: Option<PathBuf>,

    /// The first upload's delay after start (`600`, `10m`, `250ms`, `1h`; a
    /// bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    upload_delay: Duration,

    /// The uploader log (default: log_uploader.log beside the -l debug log
    /// file, else in the state directory). Appended to.
    #[arg(long, value_name = "FILE", requires = "upload_url")]
    upload_log: Option<PathBuf>,

    /// Attempts per upload before it waits for the next day.
    #[arg(long, value_name = "N", default_value_t = tally_server::upload::DEFAULT_ATTEMPTS,
          value_parser = clap::value_parser!(u32).range(1..))]
    upload_attempts: u32,

    /// The waits between attempts: BASE:MAX, doubling from BASE up to MAX,
    /// each with jitter (`30s:1h`).
    #[arg(long, value_name = "BASE:MAX", default_value = "30s:1h", value_parser = parse_backoff)]
    upload_backoff: Backoff,

    /// The longest one upload request may take (TLS handshake, body and
    /// reply); the TCP connect gets at most 10 s of it.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    upload_timeout: Duration,

    /// Report log: one line per usage event (docs/usage.md). `+FILE`
    /// appends across restarts (and lets a restart rebuild today's usage
    /// summary from it), `FILE` truncates at start. Reopened with the
    /// debug log. Wins over the options file's `REPORTLOG`.
    #[arg(long, value_name = "[+]FILE")]
    report_log: Option<String>,

    /// Days of daily usage history kept in STATE_DIR/usage.sqlite.
    #[arg(long, value_name = "DAYS", default_value_t = tally_server::usage::db::DEFAULT_RETENTION_DAYS,
          value_parser = clap::value_parser!(u32).range(1..))]
    usage_retention_days: u32,
}

/// `600`, `250ms`, `30s`, `10m`, `1h`, `1d`: a bare number is seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (600, 250ms, 30s, 10m, 1h, 1d)"))?;
    let ms = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: unit {unit:?} is not ms, s, m, h or d")),
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// `BASE:MAX`, two durations, BASE not above MAX and not zero.
fn parse_backoff(s: &str) -> Result<Backoff, String> {
    let (b, m) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not BASE:MAX (30s:1h)"))?;
    let (base, max) = (parse_duration(b)?, parse_duration(m)?);
    if base.is_zero() || base > max {
        return Err(format!("{s:?}: BASE must be above 0 and not above MAX"));
    }
    Ok(Backoff { base, max })
}

fn machine_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn load_licenses(
    path: Option<&PathBuf>,
    vendor_key: Option<&VendorKey>,
) -> Result<LicenseSet, String> {
    let set = tally_server::server::load_licenses(path.map(PathBuf::as_path), vendor_key)?;
    for d in &set.diagnostics {
        eprintln!("tallyd: warning: {d} (line skipped)");
    }
    for w in &set.warnings {
        eprintln!("tallyd: warning: {w}");
    }
    for w in tally_server::names::feature_name_warnings(&set) {
        eprintln!("tallyd: {w}");
    }
    for u in tally_core::engine::unservable(&set) {
        eprintln!("tallyd: warning: {u}");
    }
    Ok(set)
}

/// Finds and reads the options file (`--options`, else the VENDOR line's).
fn load_options(args: &Args, licenses: &LicenseSet) -> Result<PolicyConfig, String> {
    let path =
        tally_server::options::locate(args.options.as_deref(), licenses, args.license.as_deref());
    let loaded = match tally_server::options::load(path.as_deref()) {
        Ok(Some(o)) => {
            for d in &o.diagnostics {
                eprintln!("tallyd: warning: {d} (options line skipped)");
            }
            for w in &o.warnings {
                eprintln!("tallyd: warning: {w}");
            }
            path.map(|p| (p, o))
        }
        Ok(None) => None,
        Err(e) => return Err(e.to_string()),
    };
    Ok(PolicyConfig {
        explicit: args.options.clone(),
        loaded,
        min_timeout_secs: args.min_timeout,
    })
}

/// The embedded demo's state directory: per user, so a demo never needs
/// root and two users' demos do not collide, and per build of tallyd (a
/// checksum of the binary's path and the demo license), so two checkouts of
/// the repository on one machine never restore each other's journal.
fn demo_state_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let tag = demo_tag(exe.as_os_str().as_encoded_bytes(), DEMO_LICENSE);
    match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join(format!("tally-demo-{tag}")),
        // Safety: getuid has no preconditions and cannot fail.
        None => {
            std::env::temp_dir().join(format!("tallyd-demo-{}-{tag}", unsafe { libc::getuid() }))
        }
    }
}

/// Eight hex digits naming one tallyd binary and demo license (CRC-32C:
/// stable across builds and toolchains, unlike `DefaultHasher`).
fn demo_tag(exe_path: &[u8], license: &str) -> String {
    let crc = crc32c::crc32c_append(crc32c::crc32c(exe_path), license.as_bytes());
    format!("{crc:08x}")
}

/// The start error, with what to do when the state directory cannot be
/// created for lack of permission (a non-root `tallyd -c FILE` and the
/// default `/var/lib/tally`).
fn start_error(e: ServerError, state_dir_given: bool) -> String {
    let denied = matches!(
        &e,
        ServerError::Journal(JournalError::Io { what: "create", source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied
    );
    if !denied {
        return e.to_string();
    }
    let what = if state_dir_given {
        "choose a directory this user can write with --state-dir DIR"
    } else {
        "run tallyd as a user that may create it (the tally user of \
         docs/operations.md), or give a directory this user can write with --state-dir DIR"
    };
    format!("{e}; {what}")
}

fn run(args: Args) -> Result<(), Failure> {
    tally_server::journal::set_snapshot_every_bytes(args.snapshot_every_kib.saturating_mul(1024));
    let vendor_key = args
        .vendor_key
        .as_deref()
        .map(tally_server::source::read_vendor_key)
        .transpose()?;
    let licenses = load_licenses(args.license.as_ref(), vendor_key.as_ref())?;
    let policy = load_options(&args, &licenses)?;
    // The options file's DEBUGLOG is used when -l is not given.
    let log_arg = args.log.clone().or_else(|| {
        policy.loaded.as_ref().and_then(|(_, o)| {
            o.debug_log
                .as_ref()
                .map(|d| format!("{}{}", if d.append { "+" } else { "" }, d.path))
        })
    });
    let server_line = licenses.servers.first();
    let port = args
        .port
        .or(server_line.and_then(|s| s.port))
        .unwrap_or(DEFAULT_PORT);
    let host_name =
        args.host_name
            .clone()
            .unwrap_or_else(|| match server_line.map(|s| s.host.as_str()) {
                Some(h) if !h.eq_ignore_ascii_case("this_host") && !h.is_empty() => h.to_string(),
                _ => machine_host_name(),
            });
    let admin_token = match &args.admin_token_file {
        Some(p) => {
            let t = tally_server::auth::read_token_file(p).map_err(|e| e.to_string())?;
            if let Some(w) = &t.warning {
                eprintln!("tallyd: warning: {w}");
            }
            Some(t.token)
        }
        None => None,
    };
    let state_dir = match (&args.state_dir, &args.license) {
        (Some(d), _) => d.clone(),
        (None, Some(_)) => PathBuf::from(DEFAULT_STATE_DIR),
        (None, None) => {
            let d = demo_state_dir();
            if args.durability != Durability::Off {
                eprintln!(
                    "tallyd: demo: journal in {} (--state-dir to choose another)",
                    d.display()
                );
            }
            d
        }
    };
    let log = match log_arg.as_deref().map(LogTarget::from_arg) {
        // -l appends across restarts unless --truncate-log; the options
        // file's DEBUGLOG says itself (`+path` appends).
        Some(LogTarget::File { path, append }) => LogTarget::File {
            path,
            append: if args.log.is_some() {
                !args.truncate_log
            } else {
                append
            },
        },
        other => other.unwrap_or(LogTarget::Stderr),
    };
    let upload = args.upload_url.as_deref().map(|url| {
        let log_path = args.upload_log.clone().unwrap_or_else(|| {
            let dir = match &log {
                LogTarget::File { path, .. } => path
                    .parent()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| state_dir.clone()),
                _ => state_dir.clone(),
            };
            dir.join(tally_server::upload::LOG_FILE_NAME)
        });
        let mut u = UploadConfig::new(url, log_path, &state_dir, host_name.clone());
        u.ca = args.upload_ca.clone();
        u.first_delay = args.upload_delay;
        u.attempts = args.upload_attempts;
        u.backoff = args.upload_backoff;
        u.timeouts = Timeouts {
            connect: args.upload_timeout.min(Duration::from_secs(10)),
            request: args.upload_timeout,
        };
        u
    });
    let config = Config {
        report_log: args.report_log.as_deref().map(LogTarget::from_arg),
        usage_retention_days: args.usage_retention_days,
        licenses,
        license_path: args.license.clone(),
        listen: SocketAddr::new(args.listen, port),
        workers: args
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        log,
        admin_token,
        host_name,
        policy,
        durability: args.durability,
        state_dir: state_dir.clone(),
        salvage_journal: args.salvage_journal,
        clock: Default::default(),
        vendor_key,
        http: args.http,
        usage_history: None,
        upload,
        upload_source: None,
    };
    let state_dir_given = args.state_dir.is_some();
    let server = Server::start(config).map_err(|e| Failure {
        status: match &e {
            ServerError::Journal(j) if j.is_damaged_state() => EXIT_DAMAGED_STATE,
            _ => 1,
        },
        message: start_error(e, state_dir_given),
    })?;
    // Installed before the "serving" line: whoever reads it may signal at
    // once, and SIGHUP's default action would end the process.
    let stop = server.shutdown_handle();
    let log = server.log_handle();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| Failure::from(format!("cannot install signal handlers: {e}")))?;
    let signal_handle = signals.handle();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig == signal_hook::consts::SIGHUP {
                log.reopen();
            } else {
                stop.shutdown();
                break;
            }
        }
    });
    if let Some(summary) = server.recovery_summary() {
        eprintln!("tallyd: {summary}");
    }
    eprintln!(
        "tallyd: serving {} on {}",
        args.license
            .as_ref()
            .map_or(DEMO_SOURCE.to_string(), |p| p.display().to_string()),
        server.local_addr()
    );
    if let Some(addr) = server.http_addr() {
        eprintln!("tallyd: metrics on http://{addr}/metrics");
    }
    if let Some(u) = server.upload_handle() {
        let s = u.status();
        eprintln!("tallyd: report upload to {} (log {})", s.url, s.log);
    }
    server.wait();
    signal_handle.close();
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("tallyd: {}", f.message);
            ExitCode::from(f.status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_durations_and_backoff_parse() {
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "m", "10x", "-1", "1.5s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_backoff("30s:1h"),
            Ok(Backoff {
                base: Duration::from_secs(30),
                max: Duration::from_secs(3600)
            })
        );
        for bad in ["30s", "0:1s", "2s:1s", "a:b"] {
            assert!(parse_backoff(bad).is_err(), "{bad}");
        }
    }

    /// Issue 12 item 21: every checkout's demo shared one state dir.
    #[test]
    fn demo_tags_differ_per_binary_and_license() {
        let a = demo_tag(b"/home/u/a/target/release/tallyd", DEMO_LICENSE);
        let b = demo_tag(b"/home/u/b/target/release/tallyd", DEMO_LICENSE);
        assert_ne!(a, b);
        assert_eq!(
            a,
            demo_tag(b"/home/u/a/target/release/tallyd", DEMO_LICENSE)
        );
        assert_ne!(
            a,
            demo_tag(
                b"/home/u/a/target/release/tallyd",
                "FEATURE x V 1 permanent 1\n"
            )
        );
        assert_eq!(a.len(), 8);
    }

    /// Issue 12 item 20: a non-root start that cannot create /var/lib/tally
    /// said only "Permission denied".
    #[test]
    fn permission_denied_on_the_state_dir_says_use_state_dir() {
        let denied = || {
            ServerError::Journal(JournalError::Io {
                what: "create",
                path: PathBuf::from(DEFAULT_STATE_DIR),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            })
        };
        let text = start_error(denied(), false);
        assert!(
            text.contains("/var/lib/tally") && text.contains("--state-dir"),
            "{text}"
        );
        assert!(text.contains("tally user"), "{text}");
        assert!(start_error(denied(), true).contains("--state-dir DIR"));
        let other = ServerError::Journal(JournalError::Locked {
            path: PathBuf::from("/x"),
        });
        assert!(!start_error(other, false).contains("tally user"));
    }
}
