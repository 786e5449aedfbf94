//! `lmstat` text, as FlexLM's `lmutil lmstat` prints it: pure functions from
//! a [`Status`] (and the time) to the exact bytes.
//!
//! The layout follows real captures kept as fixtures by the Prometheus
//! exporter mjtrangoni/flexlm_exporter (`collector/fixtures/`), and every
//! line that exporter parses matches its regexes (`collector/regexp.go`;
//! `client/tests/ctl_exporter_regexes.rs` checks them):
//!
//! - **Header.** lmutil prints `lmutil - Copyright (c) 1989-YYYY Flexera.
//!   All Rights Reserved.`. tally is not Flexera, so the first line is
//!   [`COPYRIGHT`], same shape, our name. No exporter regex reads that line
//!   (`regexp.go` has no pattern for it; the version regex matches the
//!   *second* line of `lmstat -v`), so nothing depends on the wording.
//! - **Server names.** `License server status:`, `License file(s) on`, the
//!   server line, `Vendor daemon status (on ...)` and every holder's
//!   `(HOST/PORT TICKET)` use the host and port the server reports in its
//!   STATUS reply (FlexLM prints its SERVER line's name, not what was typed
//!   after `-c`). The exporter keys servers by the first label of the
//!   `License server status:` hosts and then looks up the server line's
//!   host in that map (`lmstat.go` 224-235), so both must be the same name;
//!   taking both from the reply makes that hold by construction. The address
//!   dialled is only the fallback when the reply has an empty host / port 0.
//! - **Versions.** The server and vendor lines print `v` + the leading
//!   digits and dots of the server's version (`0.1.0-dev` gives `v0.1.0`),
//!   because the exporter wants `v[\d.]+` at the end of the line. Holder
//!   lines print the pool's version with characters outside `[A-Za-z0-9_.]`
//!   replaced by `_` (the exporter wants `\(v[\w.]+\)`).
//! - **Vendor lines** are right-justified in 10 columns (`  LMCOMSOL`,
//!   `       MLM`, `    armlmd`, `     ptc_d` in the fixtures), with at least
//!   one leading space.
//! - **Usage per feature.** A feature served by several pools (INCREMENT
//!   lines) gets one `Users of` line: the totals are summed and, when any
//!   pool is uncounted, the line is `(Uncounted, node-locked)`. The detail
//!   block follows once per pool that has holders (as app6 repeats the
//!   quoted line per pool). "In use" is the **sum of the holder lines
//!   printed**, not the reply's `in_use`, so the invariant "in use = sum of
//!   the counts below" holds by construction (the two agree whenever the
//!   server's snapshot is consistent). The one exception is a package
//!   suite's own feature: its licenses are taken by its components'
//!   holders (listed under the components), so its "in use" adds the
//!   reply's `suite_in_use` to the holder lines it has.
//! - **Expiry.** `permanent` prints as 11.19 does,
//!   `permanent(no expiration date)`; dates as FlexLM writes them
//!   (`31-dec-2026`). In `lmstat -i` a permanent pool prints `permanent`,
//!   which the exporter's first `-i` regex accepts and reads as "never".
//! - **Uncounted pools** print `  uncounted nodelocked license` as their type
//!   line. FlexLM adds `locked to <hostid>`; STATUS does not carry the
//!   pool's HOSTID, so that part is left out.
//! - **Holder lines** `    user host display (vVER) (HOST/PORT TICKET), start
//!   Ddd M/D H:MM`, then `, N licenses` when N > 1, then
//!   `  (linger: A / B)` when the instance lingers. **A is the seconds left
//!   until it is checked in** (deadline minus the server's `now_ms`), **B
//!   the linger it was checked out with**, both rounded up to whole
//!   seconds. FlexLM's fixture line `(linger: 885098 / 1340160)` is
//!   consistent with that reading (B a 15.5-day linger, A what is left of
//!   it); Flexera documents no definition, so this is our best reading. An
//!   instance with a linger but no deadline prints A = B.
//! - **Empty display** prints the holder's host in its place (FlexLM clients
//!   send the host as display when there is no terminal, and the exporter's
//!   user regex needs a non-empty display field).
//! - **Overdraft** adds nothing: no capture shows how FlexLM marks it.
//! - **Queued checkouts** (`wait=`) follow a feature's holders as
//!   `    user host display (vVER) (HOST/PORT), start Ddd M/D H:MM  (queued
//!   for N license[s])`: no ticket, and a tail the exporter's user regex
//!   does not accept, so they are never counted as users.
//! - **Text.** Names are printed as ASCII: any other character, and any
//!   space or control character in a name, becomes `?`. No line ends in a
//!   space.
//! - **Times** are the `now` and time zone passed in (the caller's local
//!   time): `Flexible License Manager status on Tue 4/22/2025 11:08`, holders
//!   `start Tue 4/22 9:05` (no zero padding except minutes).

use std::fmt;

use chrono::{DateTime, TimeZone};

use super::addr::ServerAddr;
use crate::status::{FeatureStatus, HolderStatus, Status};

/// First line of every lmstat report (lmutil's copyright line, our name).
pub const COPYRIGHT: &str = "tallyctl - Copyright (c) 2026 tally authors. All Rights Reserved.";

/// The build number `lmstat -v` prints (lmutil prints its build; tally has
/// none, the exporter only needs digits).
pub const BUILD: u32 = 0;

/// Width vendor names are right-justified to in `Vendor daemon status`.
const VENDOR_WIDTH: usize = 10;

/// Which features the usage section shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FeatureSelection {
    /// No `Feature usage info:` section (plain `lmstat`).
    #[default]
    None,
    /// Every feature (`-a`, or `-f` without a name).
    All,
    /// One feature (`-f NAME`).
    One(String),
}

/// What an lmstat report includes, from lmstat's options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LmstatOptions {
    /// `-a` / `-f [NAME]`.
    pub features: FeatureSelection,
    /// `-A`: only features with something in use.
    pub active_only: bool,
    /// `-S VENDOR`: only that vendor's features.
    pub vendor: Option<String>,
}

impl LmstatOptions {
    /// What `lmstat -a` shows.
    pub fn all() -> LmstatOptions {
        LmstatOptions {
            features: FeatureSelection::All,
            ..LmstatOptions::default()
        }
    }
}

/// `lmstat -a`: the whole report.
pub fn lmstat_a<Tz: TimeZone>(status: &Status, server: &ServerAddr, now: &DateTime<Tz>) -> String
where
    Tz::Offset: fmt::Display,
{
    lmstat_report(status, server, now, &LmstatOptions::all())
}

/// An lmstat report with the sections `options` selects.
pub fn lmstat_report<Tz: TimeZone>(
    status: &Status,
    server: &ServerAddr,
    now: &DateTime<Tz>,
    options: &LmstatOptions,
) -> String
where
    Tz::Offset: fmt::Display,
{
    let mut text = String::new();
    let done: Result<(), std::convert::Infallible> = lmstat_report_paged(
        status,
        server,
        now,
        options,
        &mut |_, _, _| Ok((Vec::new(), None)),
        &mut |line| text.push_str(line),
    );
    match done {
        Ok(()) => text,
    }
}

/// A further page of one pool's holders, and the cursor of the page after
/// it (`None`: the list is at its end).
pub type HolderPage = (Vec<HolderStatus>, Option<String>);

/// [`lmstat_report`] written as it goes, for a server too big for one
/// reply: `status` lists at most a page of holders per pool (a STATUS with
/// `holders_limit=`), and a pool with more (`holders_next`) has the rest
/// fetched page by page with `more(pool, index, cursor)`: `index` is the
/// pool's place among the entries of its feature (the `from=` of a
/// `STATUS <feature>`), `cursor` the `holders_after=`. Each line goes to
/// `write` (LF included) as soon as it is made, so the memory is one page.
///
/// For a pool read in pages the `Users of` line's "in use" is the reply's
/// `in_use` (the server's count when the first page was taken): the
/// holders printed after it come from later pages, and a check-out or
/// check-in in between makes the two differ by as much. Otherwise, as
/// [`lmstat_report`], it is the sum of the holder lines.
pub fn lmstat_report_paged<Tz: TimeZone, E>(
    status: &Status,
    server: &ServerAddr,
    now: &DateTime<Tz>,
    options: &LmstatOptions,
    more: &mut dyn FnMut(&FeatureStatus, usize, &str) -> Result<HolderPage, E>,
    write: &mut dyn FnMut(&str),
) -> Result<(), E>
where
    Tz::Offset: fmt::Display,
{
    let info = &status.server;
    let host = if info.host.is_empty() {
        name(&server.host)
    } else {
        name(&info.host)
    };
    let port = if info.port == 0 {
        server.port
    } else {
        info.port
    };
    let version = numeric_version(&info.version);

    let mut out = Lines::to(write);
    header(&mut out, now);
    out.push("[Detecting lmgrd processes...]");
    out.push(format!("License server status: {port}@{host}"));
    out.push(format!(
        "    License file(s) on {host}: {}:",
        text(&info.license_file)
    ));
    out.blank();
    out.push(format!("{host}: license server UP (MASTER) v{version}"));
    out.blank();
    out.push(format!("Vendor daemon status (on {host}):"));
    if !status.server.vendors.is_empty() {
        out.blank();
    }
    for vendor in &status.server.vendors {
        let vendor = name(vendor);
        out.push(format!(
            "{:>width$}: UP v{version}",
            vendor,
            width = VENDOR_WIDTH.max(vendor.len() + 1)
        ));
    }
    out.blank();
    if options.features == FeatureSelection::None {
        return Ok(());
    }
    out.push("Feature usage info:");
    out.blank();
    for (feature, pools) in group_by_feature(&status.features) {
        if let FeatureSelection::One(wanted) = &options.features {
            if feature.name != *wanted {
                continue;
            }
        }
        if let Some(vendor) = &options.vendor {
            if feature.vendor != *vendor {
                continue;
            }
        }
        let used: u64 = pools
            .iter()
            .map(|p| match p.holders_next {
                Some(_) => u64::from(p.in_use),
                None => {
                    p.holders.iter().map(|h| u64::from(h.count)).sum::<u64>()
                        + u64::from(p.suite_in_use)
                }
            })
            .sum();
        if options.active_only && used == 0 {
            continue;
        }
        let fname = name(&feature.name);
        if pools.iter().any(|p| p.total.is_none()) {
            out.push(format!("Users of {fname}:  (Uncounted, node-locked)"));
        } else {
            let issued: u64 = pools.iter().filter_map(|p| p.total).map(u64::from).sum();
            out.push(format!(
                "Users of {fname}:  (Total of {issued} {} issued;  Total of {used} {} in use)",
                licenses(issued),
                licenses(used)
            ));
        }
        out.blank();
        for (index, pool) in pools.iter().enumerate() {
            if pool.holders.is_empty() {
                continue;
            }
            out.push(format!(
                "  \"{fname}\" v{}, vendor: {}, expiry: {}",
                version_word(&pool.version),
                name(&pool.vendor),
                expiry_a(&pool.expiry)
            ));
            out.push(if pool.total.is_none() {
                "  uncounted nodelocked license"
            } else {
                "  floating license"
            });
            out.blank();
            for holder in &pool.holders {
                out.push(holder_line(holder, pool, &host, port, info.now_ms, now));
            }
            let mut cursor = pool.holders_next.clone();
            while let Some(after) = cursor {
                let (page, next) = more(pool, index, &after)?;
                for holder in &page {
                    out.push(holder_line(holder, pool, &host, port, info.now_ms, now));
                }
                // A page that moved nowhere ends it (never loop).
                cursor = next.filter(|n| *n != after && !page.is_empty());
            }
            out.blank();
        }
        let waiting: Vec<_> = status
            .queue
            .iter()
            .filter(|q| q.feature == feature.name)
            .collect();
        for q in &waiting {
            out.push(queued_line(q, feature, &host, port, now));
        }
        if !waiting.is_empty() {
            out.blank();
        }
    }
    Ok(())
}

/// A queued checkout (`wait=`): a holder line without a ticket, ending in
/// `  (queued for N license[s])`, so exporters that parse holder lines do
/// not count it as a user.
fn queued_line<Tz: TimeZone>(
    q: &crate::status::QueuedStatus,
    pool: &FeatureStatus,
    server_host: &str,
    port: u16,
    now: &DateTime<Tz>,
) -> String
where
    Tz::Offset: fmt::Display,
{
    let host = name(&q.host);
    let display = if q.display.is_empty() {
        host.clone()
    } else {
        name(&q.display)
    };
    let start = i64::try_from(q.since_ms)
        .ok()
        .and_then(|ms| now.timezone().timestamp_millis_opt(ms).single())
        .map_or_else(
            || "??? 0/0 0:00".to_string(),
            |t| t.format("%a %-m/%-d %-H:%M").to_string(),
        );
    format!(
        "    {} {host} {display} (v{}) ({server_host}/{port}), start {start}  (queued for {} {})",
        name(&q.user),
        version_word(&pool.version),
        q.count,
        licenses(u64::from(q.count))
    )
}

/// What lmutil prints when no server answered: the header, then
/// `Error getting status: <error>`.
pub fn lmstat_error<Tz: TimeZone>(error: &str, now: &DateTime<Tz>) -> String
where
    Tz::Offset: fmt::Display,
{
    let mut out = Lines::default();
    header(&mut out, now);
    out.push("[Detecting lmgrd processes...]");
    out.push(format!("Error getting status: {}", text(error)));
    out.finish()
}

/// `lmstat -v`: the copyright line and `lmstat vX.Y.Z build N ARCH`, the
/// shape of lmutil's (`lmstat v11.14.0.1 build 188735 x64_lsb`).
pub fn lmstat_v() -> String {
    let arch = format!("{}_{}", std::env::consts::ARCH, std::env::consts::OS)
        .replace(|c: char| !(c.is_ascii_alphanumeric() || c == '_'), "_");
    format!(
        "{COPYRIGHT}\nlmstat v{} build {BUILD} {arch}\n",
        numeric_version(env!("CARGO_PKG_VERSION"))
    )
}

/// `lmstat -i [FEATURE]`: one row per pool, columns Feature, Version,
/// #licenses, Expires, Vendor, at the column positions of lmutil's table
/// (`collector/fixtures/lmstat_i_app1.txt`: 0, 32, 45, 57, 70 in rows).
/// lmutil's note says the table comes from the license file; tally's comes
/// from the server, and the note says so in the same three lines. An
/// uncounted pool prints `uncounted` in the #licenses column.
pub fn lmstat_i(status: &Status, feature: Option<&str>) -> String {
    let mut out = Lines::default();
    out.push("NOTE: tallyctl lmstat -i lists the pools the license server");
    out.push("      reports, one row per FEATURE/INCREMENT line.  For who");
    out.push("      holds what, use lmstat -a.");
    out.blank();
    out.push(format!(
        "{}{}{}{}Vendor",
        pad("Feature", 32),
        pad("Version", 12),
        pad("#licenses", 13),
        pad("Expires", 13)
    ));
    out.push(format!(
        "{}{}{}{}______",
        pad("_______", 32),
        pad("_________", 12),
        pad("_________", 13),
        pad("__________", 13)
    ));
    for pool in &status.features {
        if feature.is_some_and(|f| f != pool.name) {
            continue;
        }
        let count = pool
            .total
            .map_or_else(|| "uncounted".to_string(), |n| n.to_string());
        out.push(format!(
            "{}{}{}{}{}",
            pad(&name(&pool.name), 32),
            pad(&version_word(&pool.version), 13),
            pad(&count, 12),
            pad(&name(&pool.expiry), 13),
            name(&pool.vendor)
        ));
    }
    out.finish()
}

/// The copyright line, the date line and a blank line.
fn header<Tz: TimeZone>(out: &mut Lines, now: &DateTime<Tz>)
where
    Tz::Offset: fmt::Display,
{
    out.push(COPYRIGHT);
    out.push(format!(
        "Flexible License Manager status on {}",
        now.format("%a %-m/%-d/%Y %-H:%M")
    ));
    out.blank();
}

/// One holder line (see the module docs).
fn holder_line<Tz: TimeZone>(
    holder: &HolderStatus,
    pool: &FeatureStatus,
    server_host: &str,
    port: u16,
    server_now_ms: u64,
    now: &DateTime<Tz>,
) -> String
where
    Tz::Offset: fmt::Display,
{
    let host = name(&holder.host);
    let display = if holder.display.is_empty() {
        host.clone()
    } else {
        name(&holder.display)
    };
    let start = i64::try_from(holder.since_ms)
        .ok()
        .and_then(|ms| now.timezone().timestamp_millis_opt(ms).single())
        .map_or_else(
            || "??? 0/0 0:00".to_string(),
            |t| t.format("%a %-m/%-d %-H:%M").to_string(),
        );
    let mut line = format!(
        "    {} {host} {display} (v{}) ({server_host}/{port} {}), start {start}",
        name(&holder.user),
        version_word(&pool.version),
        holder.ticket
    );
    if holder.count > 1 {
        line.push_str(&format!(", {} licenses", holder.count));
    }
    if holder.linger_ms > 0 {
        let total = holder.linger_ms.div_ceil(1000);
        let left = holder
            .deadline_ms
            .map_or(total, |d| d.saturating_sub(server_now_ms).div_ceil(1000));
        line.push_str(&format!("  (linger: {left} / {total})"));
    }
    line
}

/// Pools grouped by (feature, vendor), in order of first appearance.
fn group_by_feature(pools: &[FeatureStatus]) -> Vec<(&FeatureStatus, Vec<&FeatureStatus>)> {
    let mut groups: Vec<(&FeatureStatus, Vec<&FeatureStatus>)> = Vec::new();
    for pool in pools {
        match groups
            .iter_mut()
            .find(|(first, _)| first.name == pool.name && first.vendor == pool.vendor)
        {
            Some((_, members)) => members.push(pool),
            None => groups.push((pool, vec![pool])),
        }
    }
    groups
}

/// `license` for 1, `licenses` otherwise (FlexLM's count lines).
fn licenses(n: u64) -> &'static str {
    if n == 1 {
        "license"
    } else {
        "licenses"
    }
}

/// The expiry as `lmstat -a` prints it.
fn expiry_a(expiry: &str) -> String {
    if expiry.eq_ignore_ascii_case("permanent") {
        "permanent(no expiration date)".to_string()
    } else {
        name(expiry)
    }
}

/// A name as one ASCII word: anything but a visible ASCII character becomes
/// `?`; an empty name is `?`.
pub(crate) fn name(s: &str) -> String {
    if s.is_empty() {
        return "?".to_string();
    }
    s.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// Free text (a path, an error) as ASCII: spaces kept, other non-visible or
/// non-ASCII characters become `?`, trailing spaces dropped.
pub(crate) fn text(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    t.trim_end().to_string()
}

/// `0.1.0` from `0.1.0-dev`: the leading digits and dots, `0` if none.
fn numeric_version(v: &str) -> String {
    let digits: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let digits = digits.trim_end_matches('.');
    if digits.is_empty() {
        "0".to_string()
    } else {
        digits.to_string()
    }
}

/// A version as `[A-Za-z0-9_.]+` (other characters become `_`).
fn version_word(v: &str) -> String {
    if v.is_empty() {
        return "0".to_string();
    }
    v.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `s` left-justified in `width` columns, always followed by at least one
/// space.
fn pad(s: &str, width: usize) -> String {
    format!("{s:<w$}", w = width.max(s.len() + 1))
}

/// Output lines, joined with LF and ending in LF; trailing spaces are never
/// written (each line is trimmed at the end). Kept, or (`Lines::to`)
/// written out one by one.
#[derive(Default)]
struct Lines<'w> {
    kept: Vec<String>,
    write: Option<&'w mut dyn FnMut(&str)>,
}

impl<'w> Lines<'w> {
    /// Lines written to `write` as they come, each with its LF.
    fn to(write: &'w mut dyn FnMut(&str)) -> Lines<'w> {
        Lines {
            kept: Vec::new(),
            write: Some(write),
        }
    }

    fn push(&mut self, line: impl Into<String>) {
        let line: String = line.into();
        let line = line.trim_end();
        match &mut self.write {
            Some(w) => {
                let mut l = String::with_capacity(line.len() + 1);
                l.push_str(line);
                l.push('\n');
                w(&l);
            }
            None => self.kept.push(line.to_string()),
        }
    }

    fn blank(&mut self) {
        self.push(String::new());
    }

    fn finish(self) -> String {
        let mut s = self.kept.join("\n");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_ascii_words() {
        assert_eq!(name("jürgen"), "j?rgen");
        assert_eq!(name("a b"), "a?b");
        assert_eq!(name(""), "?");
        assert_eq!(
            text("C:\\Program Files\\lic.dat  "),
            "C:\\Program Files\\lic.dat"
        );
    }

    #[test]
    fn versions_fit_the_exporter() {
        assert_eq!(numeric_version("0.1.0-dev"), "0.1.0");
        assert_eq!(numeric_version("dev"), "0");
        assert_eq!(version_word("2024.0501"), "2024.0501");
        assert_eq!(version_word("1.0-beta"), "1.0_beta");
    }

    #[test]
    fn pad_keeps_a_space() {
        assert_eq!(pad("ab", 4), "ab  ");
        assert_eq!(pad("abcd", 4), "abcd ");
    }

    #[test]
    fn plural() {
        assert_eq!(licenses(0), "licenses");
        assert_eq!(licenses(1), "license");
        assert_eq!(licenses(2), "licenses");
    }
}
