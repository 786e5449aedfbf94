//! `tallyctl`: status and administration of a tally license server, and a
//! drop-in `lmutil` for tools that parse `lmstat`.
//!
//! # Usage
//!
//! ```text
//! tallyctl lmstat -a [-c PORT@HOST]       FlexLM's lmstat -a report
//! tallyctl lmstat [-f [FEATURE]] [-A] [-S VENDOR] [-c ...]
//! tallyctl lmstat -i [FEATURE] [-c ...]   feature table (one row per pool)
//! tallyctl lmstat -v                      lmstat version line
//! tallyctl status [--json [--pretty]]     short table, or the STATUS JSON
//! tallyctl remove FEATURE USER HOST DISPLAY
//! tallyctl remove --handle TICKET FEATURE
//! tallyctl borrow return FEATURE USER HOST [DISPLAY]   end borrows early
//! tallyctl reread                         reload the license file
//! tallyctl down                           shut the server down
//! tallyctl reopen-log                     reopen the debug log (logrotate)
//! tallyctl ping                           does it answer?
//! tallyctl hostid                         this machine's host ID
//! tallyctl check-license FILE [--json]    parse a license file, list problems
//! tallyctl agent checkout FEATURE --user U --host H --handle X [--linger SECS]
//!          [--version V] --cache FILE     check out through the library
//! tallyctl agent run FEATURE --user U --host H --handle X --linger SECS
//!          [--renew-every SECS] [--for SECS]   run seed 002's agent
//! tallyctl cache verify FILE              check an offline cache file
//! tallyctl cache show FILE [--json]       its pools, grace left, offline admissions
//! tallyctl report [--from D] [--to D] [--format json|csv]   the compliance report
//! tallyctl report upload                  ask the server to upload the report now
//! tallyctl report status [--json]         the last upload attempt and its code
//! tallyctl report export --out FILE [--report JSON] an export file for a manual upload
//! tallyctl report verify FILE             check an export file (0 intact, 1 damaged, 2 unreadable)
//! ```
//!
//! Options for every command that talks to a server: `-c PORT@HOST` (also
//! `--server`; several separated by `:` are tried in order), `--timeout
//! SECS` (connect and read, default 5; `lmstat -t SECS` too), and
//! `--admin-token-file FILE` (sends `AUTH <token>` before `remove`, `reread`,
//! `down`; needed only from a non-loopback address). Without `-c` the server
//! comes from `TALLY_LICENSE_FILE`, then `LM_LICENSE_FILE`, then
//! `27000@localhost`; values are lists of `PORT@HOST` entries (IPv6 hosts
//! as `PORT@[::1]`) and license files, whose SERVER lines are read, as
//! lmutil does (see [`addr`]).
//!
//! **As lmutil.** Link or copy the binary as `lmutil` and point an exporter
//! at it: `lmutil lmstat -c 27000@lic1 -a`, `lmutil lmstat -v`, `lmutil
//! lmstat -c 27000@lic1 -i` work as with FlexLM, options in any order. Named
//! `lmstat`, `lmremove`, `lmreread`, `lmdown` or `lmhostid` it runs that
//! tool ([`args`]). What the text looks like and why is in [`lmstat`].
//!
//! **Exit status**: 0 on success; `lmstat` exits 0 whenever it printed a
//! report and, when no server answered, prints lmutil's `Error getting
//! status: Cannot connect to license server system. (-15,570:111
//! "Connection refused")` and exits 241 as lmutil does; an `ERR ...` reply
//! (e.g. `ERR FORBIDDEN`) is printed and exits 1; a bad command line exits
//! 2. Full table in [`error`]; `check-license` exits 0 / 1 / 2 (clean /
//! lines rejected / unreadable), and so has `cache verify` (0 valid, 1
//! damaged, 2 unreadable; see [`cache`]), and so has `license sign` (0 all
//! signed, 1 some lines not signed, 2 unreadable; see [`license`]).
//!
//! `remove` exits 1 when nothing matched. DISPLAY is the display as lmstat
//! prints it: a holder that sent no display is named by its host there
//! (`lmstat` shows `bob pc2 pc2`, so `remove F bob pc2 pc2` removes it).
//!
//! **For tests only**: the environment variable `TALLYCTL_NOW`, an RFC 3339
//! time such as `2026-04-22T11:08:00+02:00`, replaces the clock and the
//! local time zone (every time is printed in that offset), so output can be
//! compared byte for byte.

pub mod addr;
pub mod agent;
pub mod args;
pub mod cache;
pub mod check_license;
pub mod client;
pub mod error;
pub mod hostid;
pub mod license;
pub mod lmstat;
pub mod names;
pub mod report;
pub mod table;
pub mod upload;

use std::ffi::OsString;
use std::io::Write;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Local};
use clap::Parser;

pub use addr::ServerAddr;
pub use error::CtlError;

use args::{BorrowAction, Cli, Command, LmstatArgs, RemoveArgs};
use client::{exchange, expect_ok, field, not_ok};
use lmstat::{FeatureSelection, LmstatOptions};

use crate::status::{FeatureStatus, Status};

/// Environment variable that fixes "now" and the time zone (tests only).
pub const ENV_NOW: &str = "TALLYCTL_NOW";

/// The whole program: parses `args` (including the program name) and runs
/// the command; returns the exit status.
pub fn main_from(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args::normalize(args)) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tallyctl: {e}");
            e.exit_code()
        }
    }
}

/// "Now" and the time zone output is printed in.
#[derive(Debug, Clone, Copy)]
enum Now {
    /// The clock, local time zone.
    Local(DateTime<Local>),
    /// From [`ENV_NOW`].
    Fixed(DateTime<FixedOffset>),
}

impl Now {
    fn get() -> Result<Now, CtlError> {
        match std::env::var(ENV_NOW) {
            Ok(v) => DateTime::parse_from_rfc3339(&v)
                .map(Now::Fixed)
                .map_err(|e| CtlError::BadField {
                    what: ENV_NOW.to_string(),
                    value: v,
                    why: format!("not an RFC 3339 time: {e}"),
                }),
            Err(_) => Ok(Now::Local(Local::now())),
        }
    }

    /// Unix milliseconds (0 before 1970).
    fn unix_ms(self) -> u64 {
        let ms = match self {
            Now::Local(t) => t.timestamp_millis(),
            Now::Fixed(t) => t.timestamp_millis(),
        };
        u64::try_from(ms).unwrap_or(0)
    }
}

/// `1 pool`, `2 pools`: a count and its noun (the debug log's rule).
pub(crate) fn counted(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Writes `s` to stdout; a closed pipe (`tallyctl lmstat -a | head`) is not
/// an error.
pub(crate) fn print(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes()).and_then(|()| out.flush());
}

/// Seconds as a timeout.
fn timeout(secs: f64) -> Result<Duration, CtlError> {
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(CtlError::BadField {
            what: "timeout".to_string(),
            value: secs.to_string(),
            why: "must be a positive number of seconds".to_string(),
        }),
    }
}

/// Runs a parsed command line.
fn run(cli: Cli) -> Result<i32, CtlError> {
    let servers = || {
        addr::discover(
            cli.server.as_deref(),
            |n| std::env::var(n).ok(),
            &mut |note| eprintln!("tallyctl: note: {note}"),
        )
        .map_err(CtlError::from)
    };
    let wait = timeout(cli.timeout)?;
    match &cli.command {
        Command::Lmstat(a) => run_lmstat(a, servers, wait),
        Command::Status { json, pretty } => {
            let (server, reply) = request(&servers()?, "STATUS".to_string(), None, wait)?;
            let body = expect_ok(&server, &reply)?;
            if *json {
                let text = if *pretty {
                    serde_json::from_str::<serde_json::Value>(body)
                        .and_then(|v| serde_json::to_string_pretty(&v))
                        .map_err(|e| bad_json(&server, body, &e))?
                } else {
                    body.to_string()
                };
                print(&format!("{text}\n"));
            } else {
                let status = parse_status(&server, body)?;
                let table = match Now::get()? {
                    Now::Local(now) => table::status_table(&status, &now),
                    Now::Fixed(now) => table::status_table(&status, &now),
                };
                print(&table);
            }
            Ok(0)
        }
        Command::Remove(r) => run_remove(r, &servers()?, &cli, wait),
        Command::Borrow {
            action:
                BorrowAction::Return {
                    feature,
                    user,
                    host,
                    display,
                },
        } => {
            let names = (
                feature.as_str(),
                user.as_str(),
                host.as_str(),
                display.as_deref(),
            );
            run_borrow_return(names, &servers()?, &cli, wait)
        }
        Command::Reread => {
            let (server, reply) = request(&servers()?, "REREAD".to_string(), token(&cli)?, wait)?;
            let rest = expect_ok(&server, &reply)?;
            let mut words = rest.split(' ');
            let number = |w: Option<&str>| w.and_then(|w| w.parse::<u64>().ok());
            match (words.next(), number(words.next()), number(words.next())) {
                (Some("REREAD"), Some(pools), Some(diags)) => {
                    print(&format!(
                        "{server}: license file reread: {}, {} rejected\n",
                        counted(pools, "pool", "pools"),
                        counted(diags, "line", "lines")
                    ));
                    Ok(0)
                }
                _ => Err(not_ok(&server, &reply, "OK REREAD <pools> <diagnostics>")),
            }
        }
        Command::ReopenLog => {
            let (server, reply) =
                request(&servers()?, "REOPEN_LOG".to_string(), token(&cli)?, wait)?;
            if expect_ok(&server, &reply)? != "REOPEN_LOG" {
                return Err(not_ok(&server, &reply, "OK REOPEN_LOG"));
            }
            print(&format!("{server}: debug log reopened\n"));
            Ok(0)
        }
        Command::Down { .. } => {
            let (server, reply) = request(&servers()?, "DOWN".to_string(), token(&cli)?, wait)?;
            if expect_ok(&server, &reply)? != "DOWN" {
                return Err(not_ok(&server, &reply, "OK DOWN"));
            }
            print(&format!("{server}: license server is shutting down\n"));
            Ok(0)
        }
        Command::Ping => {
            let started = Instant::now();
            let (server, reply) = request(&servers()?, "PING".to_string(), None, wait)?;
            if reply != "PONG" {
                return Err(not_ok(&server, &reply, "PONG"));
            }
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            print(&format!("PONG from {server} in {ms:.1} ms\n"));
            Ok(0)
        }
        Command::Hostid => {
            let id = hostid::hostid_from(std::path::Path::new(hostid::SYS_CLASS_NET));
            print(&hostid::hostid_line(&id));
            Ok(0)
        }
        Command::CheckLicense {
            file,
            json,
            vendor_key,
        } => Ok(check_license::run(
            file,
            *json,
            vendor_key.as_deref(),
            Now::get()?.unix_ms(),
        )),
        Command::License(l) => Ok(license::run(l)),
        Command::Agent(a) => agent::run(a, servers()?, wait),
        Command::Cache(c) => Ok(cache::run(c, Now::get()?.unix_ms())),
        Command::Report(r) => match &r.command {
            None => run_report(&r.print, servers, wait),
            Some(cmd) => upload::run(cmd, &cli, servers, wait),
        },
    }
}

/// `lmstat`: every failure to get a status is printed lmutil's way on
/// stdout (that is where exporters read it) and exits 256 + code.
fn run_lmstat(
    a: &LmstatArgs,
    servers: impl Fn() -> Result<Vec<ServerAddr>, CtlError>,
    wait: Duration,
) -> Result<i32, CtlError> {
    if a.version {
        print(&lmstat::lmstat_v());
        return Ok(0);
    }
    let wait = match a.timeout {
        Some(t) => timeout(t)?,
        None => wait,
    };
    let servers = servers()?;
    let now = Now::get()?;
    // Pools only (`-i`, plain lmstat): the summary, which costs the server
    // nothing per holder; otherwise a page of holders per pool, the rest
    // fetched as it is printed. A server without holder paging (ERR
    // BAD_FIELD) is asked the old way, all at once.
    let pools_only =
        a.info.is_some() || !(a.feature.is_some() || a.all || a.active || a.vendor.is_some());
    let first = if pools_only {
        "STATUS holders_limit=0".to_string()
    } else {
        format!("STATUS holders_limit={}", lmstat_page())
    };
    let fetched = request(&servers, first, None, wait)
        .and_then(|(server, reply)| {
            if reply.starts_with("ERR BAD_FIELD") {
                request(&[server], "STATUS".to_string(), None, wait)
            } else {
                Ok((server, reply))
            }
        })
        .and_then(|(server, reply)| {
            let body = expect_ok(&server, &reply)?;
            Ok((parse_status(&server, body)?, server))
        });
    let (status, server) = match fetched {
        Ok(v) => v,
        Err(e) => {
            let text = e.lmstat_text();
            print(&match now {
                Now::Local(now) => lmstat::lmstat_error(&text, &now),
                Now::Fixed(now) => lmstat::lmstat_error(&text, &now),
            });
            return Ok(e.exit_code());
        }
    };
    if let Some(feature) = &a.info {
        print(&lmstat::lmstat_i(&status, feature.as_deref()));
        return Ok(0);
    }
    // `-S [VENDOR]` lists that vendor daemon's features and users, as
    // FlexLM's does, without `-a`.
    let features = match (&a.feature, a.all || a.active || a.vendor.is_some()) {
        (Some(Some(f)), _) => FeatureSelection::One(f.clone()),
        (Some(None), _) | (None, true) => FeatureSelection::All,
        (None, false) => FeatureSelection::None,
    };
    let options = LmstatOptions {
        features,
        active_only: a.active,
        vendor: a.vendor.clone().flatten(),
    };
    // Written as it comes: a pool of millions of holders is printed page
    // by page, never held whole.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut write = |line: &str| {
        // A closed pipe (`lmstat -a | head`) is not an error; the rest is
        // still fetched and dropped, as a whole report would be.
        let _ = out.write_all(line.as_bytes());
    };
    let mut more = |pool: &FeatureStatus, index: usize, after: &str| {
        holder_page(&server, pool, index, after, wait)
    };
    let done = match now {
        Now::Local(now) => {
            lmstat::lmstat_report_paged(&status, &server, &now, &options, &mut more, &mut write)
        }
        Now::Fixed(now) => {
            lmstat::lmstat_report_paged(&status, &server, &now, &options, &mut more, &mut write)
        }
    };
    let _ = out.flush();
    done.map(|()| 0)
}

/// Holders per pool in each page `lmstat` asks for (`holders_limit=`),
/// unless `TALLYCTL_LMSTAT_PAGE` says otherwise.
const LMSTAT_PAGE: usize = 50_000;

/// [`LMSTAT_PAGE`], or `TALLYCTL_LMSTAT_PAGE` when it is a number from 1.
fn lmstat_page() -> usize {
    std::env::var("TALLYCTL_LMSTAT_PAGE")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(LMSTAT_PAGE)
}

/// The page of `pool`'s holders after `after`: `STATUS <feature>
/// from=<index> limit=1 holders_limit=.. holders_after=..`, checked to be
/// the same pool (a REREAD in between would shift the entries).
fn holder_page(
    server: &ServerAddr,
    pool: &FeatureStatus,
    index: usize,
    after: &str,
    wait: Duration,
) -> Result<lmstat::HolderPage, CtlError> {
    let line = format!(
        "STATUS {} from={index} limit=1 holders_limit={} holders_after={after}",
        pool.name,
        lmstat_page()
    );
    let (server, reply) = request(std::slice::from_ref(server), line, None, wait)?;
    let body = expect_ok(&server, &reply)?;
    let mut status = parse_status(&server, body)?;
    match status.features.pop() {
        Some(p) if p.name == pool.name && p.line == pool.line && status.features.is_empty() => {
            Ok((p.holders, p.holders_next))
        }
        _ => Err(CtlError::BadReply {
            addr: server.clone(),
            reply: body.chars().take(200).collect(),
            why: format!(
                "expected the pool of {} on line {} (did the license file change while paging?)",
                pool.name, pool.line
            ),
        }),
    }
}

/// `borrow return FEATURE USER HOST [DISPLAY]`: BORROW_RETURN. Exits 1
/// when the holder had no borrow of the feature.
fn run_borrow_return(
    (feature, user, host, display): (&str, &str, &str, Option<&str>),
    servers: &[ServerAddr],
    cli: &Cli,
    wait: Duration,
) -> Result<i32, CtlError> {
    let (f, u, h) = (
        field("feature", feature)?,
        field("user", user)?,
        field("host", host)?,
    );
    let mut line = format!("BORROW_RETURN {f} {u} {h}");
    if let Some(d) = display {
        line.push(' ');
        line.push_str(field("display", d)?);
    }
    let (server, reply) = request(servers, line, token(cli)?, wait)?;
    let rest = expect_ok(&server, &reply)?;
    let n: u64 = match rest.strip_prefix("RETURNED ").map(str::parse) {
        Some(Ok(n)) => n,
        _ => return Err(not_ok(&server, &reply, "OK RETURNED <n>")),
    };
    if n == 0 {
        eprintln!("tallyctl: {server}: nothing returned: {u}@{h} has no borrow of {f}");
        return Ok(1);
    }
    print(&format!(
        "{server}: returned {n} borrowed license{} of {f} held by {u}@{h}\n",
        if n == 1 { "" } else { "s" }
    ));
    Ok(0)
}

/// `remove` / `remove --handle`.
fn run_remove(
    r: &RemoveArgs,
    servers: &[ServerAddr],
    cli: &Cli,
    wait: Duration,
) -> Result<i32, CtlError> {
    let feature = field("feature", &r.feature)?;
    let (line, what) = match (r.handle, &r.user, &r.host, &r.display) {
        (Some(ticket), ..) => (
            format!("REMOVE_HANDLE {feature} {ticket}"),
            format!("ticket {ticket} of {feature}"),
        ),
        (None, Some(u), Some(h), Some(d)) => {
            let (u, h, d) = (field("user", u)?, field("host", h)?, field("display", d)?);
            (
                format!("REMOVE {feature} {u} {h} {d}"),
                format!("{feature} held by {u}@{h} display {d}"),
            )
        }
        _ => {
            return Err(CtlError::BadField {
                what: "arguments".to_string(),
                value: String::new(),
                why: "give FEATURE USER HOST DISPLAY, or --handle TICKET FEATURE".to_string(),
            })
        }
    };
    let (server, reply) = request(servers, line, token(cli)?, wait)?;
    let rest = expect_ok(&server, &reply)?;
    let n: u64 = match rest.strip_prefix("REMOVED ").map(str::parse) {
        Some(Ok(n)) => n,
        _ => return Err(not_ok(&server, &reply, "OK REMOVED <n>")),
    };
    if n == 0 {
        eprintln!("tallyctl: {server}: nothing removed: no instance of {what}");
        return Ok(1);
    }
    print(&format!(
        "{server}: removed {n} instance{} of {what}\n",
        if n == 1 { "" } else { "s" }
    ));
    Ok(0)
}

/// Sends `line` (after `AUTH <token>` when a token is given) to the first
/// server that answers; returns that server and the reply to `line`. A
/// refused AUTH is the error.
fn request(
    servers: &[ServerAddr],
    line: String,
    token: Option<String>,
    wait: Duration,
) -> Result<(ServerAddr, String), CtlError> {
    let mut lines = Vec::with_capacity(2);
    if let Some(t) = &token {
        lines.push(format!("AUTH {t}"));
    }
    lines.push(line);
    let (server, mut replies) = exchange(servers, &lines, wait)?;
    let last = replies.pop().unwrap_or_default();
    if let Some(auth) = replies.first() {
        if auth != "OK AUTH" {
            return Err(not_ok(&server, auth, "OK AUTH"));
        }
    }
    Ok((server, last))
}

/// The admin token from `--admin-token-file`, if given.
fn token(cli: &Cli) -> Result<Option<String>, CtlError> {
    let Some(path) = &cli.admin_token_file else {
        return Ok(None);
    };
    let bad = |why: String| CtlError::TokenFile {
        path: path.display().to_string(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let t = text.trim();
    field("token", t).map_err(|_| bad("must hold one token, without spaces".to_string()))?;
    Ok(Some(t.to_string()))
}

/// Prints a REPORT reply's JSON as asked; `{"error": ...}` is an error.
/// `report [print]`: asks the server for the report and prints it.
fn run_report(
    print: &args::ReportPrintArgs,
    servers: impl Fn() -> Result<Vec<ServerAddr>, CtlError>,
    wait: Duration,
) -> Result<i32, CtlError> {
    let (server, body) = fetch_report(print, servers, wait)?;
    print_report(&server, &body, print.format)
}

/// The REPORT JSON for `print`'s period, from the first server that
/// answers (also what `report export` exports).
pub fn fetch_report(
    print: &args::ReportPrintArgs,
    servers: impl Fn() -> Result<Vec<ServerAddr>, CtlError>,
    wait: Duration,
) -> Result<(ServerAddr, String), CtlError> {
    let line = report::request_line(print)?;
    let (server, reply) = request(&servers()?, line, None, wait)?;
    let body = expect_ok(&server, &reply)?.to_string();
    Ok((server, body))
}

fn print_report(
    server: &ServerAddr,
    body: &str,
    format: args::ReportFormat,
) -> Result<i32, CtlError> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| bad_json(server, body, &e))?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        // The server's refusal, as an `ERR` reply is (exit status 1).
        return Err(CtlError::Server {
            addr: server.clone(),
            reply: format!("the server could not build the report: {e}"),
        });
    }
    match format {
        args::ReportFormat::Json => print(&format!("{body}\n")),
        args::ReportFormat::Csv => print(&report::csv(&v)),
    }
    Ok(0)
}

/// Parses the JSON after `OK `.
fn parse_status(server: &ServerAddr, body: &str) -> Result<Status, CtlError> {
    serde_json::from_str(body).map_err(|e| bad_json(server, body, &e))
}

/// A STATUS body that is not the JSON the protocol describes.
fn bad_json(server: &ServerAddr, body: &str, e: &serde_json::Error) -> CtlError {
    CtlError::BadReply {
        addr: server.clone(),
        reply: body.chars().take(200).collect(),
        why: format!("STATUS JSON: {e}"),
    }
}
