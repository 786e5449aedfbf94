//! `GET /` of `tallyd --http`: the status page, served whole (HTML, inline
//! CSS and SVG, no script, nothing loaded from elsewhere; it reloads itself
//! every [`REFRESH_SECS`] with a `<meta http-equiv="refresh">`), readable
//! on a phone (viewport meta, fluid layout, tables scroll sideways).
//! A large server's page shows [`PAGE_POOLS`] license-file lines at a time
//! (`?from=N&limit=N`, as `/api/v1/status`), with links to the others.
//!
//! Built on the HTTP thread from what `/api/v1/status` serves (STATUS,
//! handles hidden: the HTTP side has no AUTH), the loops' denial counts
//! (`metrics/recent.rs`), the journal's mode, and the daily peaks of a
//! [`UsageHistory`] when the server has one. Every text that comes from a
//! license file, a client or the file system goes through `escape`.

mod chart;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::NaiveDate;
use tally_core::license::Expiry;

use crate::http::Extras;
use crate::metrics::{recent_denials, Recent};
use crate::shared::Shared;
use crate::status::{FeatureStatus, Status};

/// Seconds between the page's reloads of itself.
pub const REFRESH_SECS: u32 = 10;

/// Pools (license-file lines) on one page unless `?limit=` says otherwise;
/// `?from=N` pages on, as STATUS's `from=`.
pub const PAGE_POOLS: usize = 500;

/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;

/// One day of a feature's usage history: its peak in use, and the count
/// the license file granted that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyPeak {
    /// The day (UTC).
    pub day: NaiveDate,
    /// Most licenses in use at once that day.
    pub peak: u32,
    /// Licenses the file granted that day.
    pub licensed: u32,
}

/// Where the status page's charts come from: called with a feature's name
/// and a number of days `n`, it returns that feature's daily peaks of the
/// last `n` days ending today (UTC), oldest first; days it has nothing
/// for may be left out. Called on the HTTP thread, twice per feature per
/// page (30 and 90 days), never on a loop.
#[derive(Clone)]
pub struct UsageHistory(Arc<DailyPeaksFn>);

/// What a [`UsageHistory`] calls: (feature, days) -> daily peaks.
pub type DailyPeaksFn = dyn Fn(&str, u32) -> Vec<DailyPeak> + Send + Sync;

impl UsageHistory {
    /// A history that asks `f`.
    pub fn new(f: impl Fn(&str, u32) -> Vec<DailyPeak> + Send + Sync + 'static) -> UsageHistory {
        UsageHistory(Arc::new(f))
    }

    /// `feature`'s daily peaks of the last `days` days.
    pub fn daily_peaks(&self, feature: &str, days: u32) -> Vec<DailyPeak> {
        (self.0)(feature, days)
    }
}

impl std::fmt::Debug for UsageHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UsageHistory(..)")
    }
}

/// What the page shows, gathered at one moment.
#[derive(Debug)]
pub(crate) struct PageData<'a> {
    /// STATUS, handles hidden, paged (`from`, `next`).
    pub(crate) status: Status,
    /// Pools in all, before paging.
    pub(crate) total: usize,
    /// Pools a page holds.
    pub(crate) limit: usize,
    /// For each entry of `status.features`: when its pool expires (the end
    /// of its last day, Unix ms), `None` if permanent.
    pub(crate) ends_ms: Vec<Option<u64>>,
    /// Denials in the last hour and day.
    pub(crate) denials: Recent,
    /// The journal's mode and directory, as shown.
    pub(crate) journal: String,
    /// The charts' source, if any.
    pub(crate) history: Option<&'a UsageHistory>,
}

/// The page of `shared` now: pools `from..from + limit` (default
/// [`PAGE_POOLS`]).
pub(crate) fn page(shared: &Shared, extras: &Extras, from: usize, limit: Option<usize>) -> String {
    // The page's pools with their holders (one table visit, holders of
    // other pools not copied), and every pool's terms for the expiries.
    let now = shared.now();
    let (_, gen) = shared.generation.load();
    let snapshot = gen.engine.pools_snapshot(now);
    let total = snapshot.features.iter().map(|f| f.pools.len()).sum();
    let limit = limit.unwrap_or(PAGE_POOLS).max(1);
    let mut status = Status::for_request(
        &gen.engine,
        shared.server_info(&gen.facts, now),
        shared.queues.snapshot(),
        None,
        from,
        Some(limit),
        crate::status::HolderPaging::default(),
    );
    status.hide_handles();
    // By (feature, line): one pass each way, for servers of 100,000 features.
    let ends: HashMap<(&str, u32), u64> = snapshot
        .features
        .iter()
        .flat_map(|f| f.pools.iter().map(move |p| (f.name.as_str(), p)))
        .filter_map(|(name, p)| match p.expiry {
            Expiry::On(d) => Some(((name, p.line), d.end_ms())),
            Expiry::Permanent => None,
        })
        .collect();
    let ends_ms = status
        .features
        .iter()
        .map(|p| ends.get(&(p.name.as_str(), p.line)).copied())
        .collect();
    let j = &shared.journal;
    let journal = match j.mode {
        crate::journal::Durability::Off => {
            "off (no journal: a restart loses every checkout)".into()
        }
        mode => format!("{mode}, in {}", j.dir.display()),
    };
    let data = PageData {
        total,
        limit,
        denials: recent_denials(&shared.metrics, status.server.now_ms),
        status,
        ends_ms,
        journal,
        history: extras.history.as_ref(),
    };
    render(&data)
}

/// `s` with `&`, `<`, `>`, `"` and `'` written as entities: safe as HTML
/// text and inside a quoted attribute.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A Unix-ms time as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// A span of milliseconds as `3d 4h`, `2h 5m`, `7m 3s` or `12s`.
fn span(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match () {
        _ if d > 0 => format!("{d}d {h}h"),
        _ if h > 0 => format!("{h}h {m}m"),
        _ if m > 0 => format!("{m}m {s}s"),
        _ => format!("{s}s"),
    }
}

const STYLE: &str = "\
:root{--use:#2b6cb0;--over:#dd6b20;--free:#e2e8f0;--lic:#c53030;--mute:#5a6472}
*{box-sizing:border-box}
body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;max-width:64rem;padding:.5rem 1rem;color:#1a202c}
h1{font-size:1.3rem;margin:.3rem 0}h2{font-size:1.1rem;margin:1.2rem 0 .4rem}
h3{font-size:1rem;margin:0 0 .3rem}
.ro{color:var(--mute);margin:0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem;margin:0}
dl.facts dt{color:var(--mute)}dl.facts dd{margin:0;overflow-wrap:anywhere}
.feature{border:1px solid var(--free);border-radius:6px;padding:.6rem;margin:.6rem 0}
.figures{margin:.2rem 0}.over{color:var(--over)}.expired{color:var(--lic)}
svg.bar{width:100%;height:1.1rem;display:block}
svg.bar .free{fill:var(--free)}svg.bar .use{fill:var(--use)}svg.bar .od{fill:var(--over)}
svg.bar .limit{stroke:#1a202c;stroke-width:.4}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.9rem;margin:.3rem 0}
th,td{text-align:left;padding:.15rem .5rem;border-bottom:1px solid var(--free);white-space:nowrap}
th{color:var(--mute);font-weight:normal}
.charts{display:flex;flex-wrap:wrap;gap:.5rem}
.charts figure{margin:0;flex:1 1 18rem}
.charts figcaption{color:var(--mute);font-size:.85rem}
svg.chart{width:100%;height:auto;font-size:8px}
svg.chart .plot{fill:#f7fafc}svg.chart .peak{fill:var(--use)}
svg.chart .licensed{fill:none;stroke:var(--lic);stroke-width:1}
.none{color:var(--mute)}
";

/// The whole page of `d`.
pub(crate) fn render(d: &PageData<'_>) -> String {
    let s = &d.status.server;
    let mut out = String::with_capacity(8192);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>tallyd on {host}</title><style>{STYLE}</style></head><body>\
         <header><h1>tallyd on {host}:{port}</h1>\
         <p class=\"ro\" id=\"read-only\">read-only: admin is tallyctl \
         (handles hidden; <code>tallyctl status</code> shows them)</p></header>",
        host = escape(&s.host),
        port = s.port,
    );
    server_facts(&mut out, d);
    let mut queued: HashMap<&str, usize> = HashMap::new();
    for q in &d.status.queue {
        *queued.entry(q.names.feature.as_str()).or_default() += 1;
    }
    let waiting = |name: &str| queued.get(name).copied().unwrap_or(0);
    out.push_str("<section id=\"features\"><h2>Features</h2>");
    if d.status.features.is_empty() {
        out.push_str("<p class=\"none\">no features served</p>");
    }
    pages(&mut out, d);
    // STATUS lists a feature's pools one after the other: one group each,
    // in one pass (a server may serve 100,000 features).
    let mut pools: Vec<(&FeatureStatus, Option<u64>)> = Vec::new();
    for (p, end) in d.status.features.iter().zip(&d.ends_ms) {
        if let Some(&(first, _)) = pools.first() {
            if first.name != p.name {
                feature(&mut out, d, &first.name, &pools, waiting(&first.name));
                pools.clear();
            }
        }
        pools.push((p, *end));
    }
    if let Some(&(first, _)) = pools.first() {
        feature(&mut out, d, &first.name, &pools, waiting(&first.name));
    }
    out.push_str("</section>");
    queue(&mut out, d);
    out.push_str("</body></html>\n");
    out
}

/// Which pools this page shows, with links to the others (relative: the
/// same page with another `?from=`), when there are more than one page.
fn pages(out: &mut String, d: &PageData<'_>) {
    let (from, shown, limit) = (d.status.from, d.status.features.len(), d.limit);
    if from == 0 && d.status.next.is_none() {
        return;
    }
    let _ = write!(
        out,
        "<p class=\"pages\">license-file lines {} to {} of {}",
        from + 1,
        from + shown,
        d.total
    );
    if from > 0 {
        let prev = from.saturating_sub(limit);
        let _ = write!(
            out,
            " · <a href=\"?from={prev}&amp;limit={limit}\">previous</a>"
        );
    }
    if let Some(next) = d.status.next {
        let _ = write!(
            out,
            " · <a href=\"?from={next}&amp;limit={limit}\">next</a>"
        );
    }
    out.push_str("</p>");
}

fn server_facts(out: &mut String, d: &PageData<'_>) {
    let s = &d.status.server;
    let fact = |out: &mut String, id: &str, k: &str, v: &str| {
        let _ = write!(out, "<dt>{k}</dt><dd id=\"{id}\">{v}</dd>");
    };
    out.push_str("<section id=\"server\"><h2>Server</h2><dl class=\"facts\">");
    fact(out, "version", "version", &escape(&s.version));
    fact(
        out,
        "uptime",
        "up",
        &format!(
            "{} (since {})",
            span(s.now_ms.saturating_sub(s.started_ms)),
            utc(s.started_ms)
        ),
    );
    fact(
        out,
        "license-file",
        "license file",
        &escape(&s.license_file),
    );
    fact(out, "vendors", "vendors", &escape(&s.vendors.join(", ")));
    fact(out, "journal", "journal", &escape(&d.journal));
    fact(
        out,
        "connections",
        "connections",
        &s.connections.to_string(),
    );
    fact(
        out,
        "denials",
        "denials",
        &format!(
            "<span id=\"denials-hour\">{}</span> in the last hour, \
             <span id=\"denials-day\">{}</span> in the last day",
            d.denials.hour, d.denials.day
        ),
    );
    fact(out, "queued", "queued", &d.status.queue.len().to_string());
    fact(out, "now", "as of", &utc(s.now_ms));
    out.push_str("</dl></section>");
}

/// One feature: its bar, its pools, its holders, its charts.
fn feature(
    out: &mut String,
    d: &PageData<'_>,
    name: &str,
    pools: &[(&FeatureStatus, Option<u64>)],
    queued: usize,
) {
    let now = d.status.server.now_ms;
    let counted: Vec<&FeatureStatus> = pools
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| p.total.is_some() && !p.expired)
        .collect();
    let total: u64 = counted
        .iter()
        .map(|p| u64::from(p.total.unwrap_or(0)))
        .sum();
    let limit: u64 = counted.iter().map(|p| u64::from(p.overdraft_limit)).sum();
    let in_use: u64 = pools.iter().map(|(p, _)| u64::from(p.in_use)).sum();
    let over: u64 = pools.iter().map(|(p, _)| u64::from(p.overdraft)).sum();
    let vendor = pools.first().map_or("", |(p, _)| p.vendor.as_str());
    let _ = write!(
        out,
        "<article class=\"feature\" data-feature=\"{n}\"><h3>{n} <small class=\"ro\">{v}</small></h3>",
        n = escape(name),
        v = escape(vendor),
    );
    if counted.is_empty() {
        let _ = write!(
            out,
            "<p class=\"figures\"><b class=\"in-use\">{in_use}</b> in use (uncounted)</p>"
        );
    } else {
        let _ = write!(
            out,
            "<p class=\"figures\"><b class=\"in-use\">{in_use}</b> of <b class=\"total\">{total}</b> in use"
        );
        if over > 0 {
            let _ = write!(out, ", <span class=\"over\">{over} overdraft</span>");
        }
        if queued > 0 {
            let _ = write!(out, ", {queued} queued");
        }
        out.push_str("</p>");
        bar(out, in_use, over, total, limit);
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"pools\"><tr><th>line</th><th>kind</th>\
         <th>version</th><th>licenses</th><th>in use</th><th>expires</th><th>days left</th></tr>",
    );
    for (p, end) in pools {
        let days = match end {
            None => "permanent".to_string(),
            Some(e) if *e <= now || p.expired => "<span class=\"expired\">expired</span>".into(),
            Some(e) => (e.saturating_sub(now)).div_ceil(DAY_MS).to_string(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"days-left\">{days}</td></tr>",
            p.line,
            escape(&p.kind),
            escape(&p.version),
            p.total.map_or_else(|| "uncounted".to_string(), |t| {
                if p.overdraft_limit > 0 {
                    format!("{t} + {} overdraft", p.overdraft_limit)
                } else {
                    t.to_string()
                }
            }),
            p.in_use,
            escape(&p.expiry),
        );
    }
    out.push_str("</table></div>");
    holders(out, now, pools);
    charts(out, d, name);
    out.push_str("</article>");
}

/// The in-use bar: in use within the count, overdraft beyond it, free, on
/// a scale of the count plus the overdraft allowed (or what is out, if
/// more).
fn bar(out: &mut String, in_use: u64, over: u64, total: u64, limit: u64) {
    let scale = (total + limit).max(in_use).max(1) as f64;
    let within = in_use.saturating_sub(over).min(total) as f64 / scale * 100.0;
    let od = (in_use as f64 / scale * 100.0 - within).max(0.0);
    let _ = write!(
        out,
        "<svg class=\"bar\" viewBox=\"0 0 100 4\" preserveAspectRatio=\"none\" role=\"img\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title>{in_use} of {total} in use</title>\
         <rect class=\"free\" x=\"0\" y=\"0\" width=\"100\" height=\"4\"/>\
         <rect class=\"use\" x=\"0\" y=\"0\" width=\"{within:.2}\" height=\"4\"/>\
         <rect class=\"od\" x=\"{within:.2}\" y=\"0\" width=\"{od:.2}\" height=\"4\"/>"
    );
    if limit > 0 {
        let at = total as f64 / scale * 100.0;
        let _ = write!(
            out,
            "<line class=\"limit\" x1=\"{at:.2}\" y1=\"0\" x2=\"{at:.2}\" y2=\"4\"/>"
        );
    }
    out.push_str("</svg>");
}

fn holders(out: &mut String, now: u64, pools: &[(&FeatureStatus, Option<u64>)]) {
    let all: Vec<_> = pools.iter().flat_map(|(p, _)| &p.holders).collect();
    if all.is_empty() {
        out.push_str("<p class=\"none\">no holders</p>");
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"holders\"><tr><th>user</th><th>host</th>\
         <th>display</th><th>handle</th><th>licenses</th><th>since</th><th>linger / borrow until</th></tr>",
    );
    for h in all {
        let linger = match h.deadline_ms {
            Some(t) if h.borrowed_until_ms.is_some() => {
                format!(
                    "borrowed until {} (in {})",
                    utc(t),
                    span(t.saturating_sub(now))
                )
            }
            Some(t) => format!("{} (in {})", utc(t), span(t.saturating_sub(now))),
            None if h.linger_ms > 0 => format!("linger {} after check-in", span(h.linger_ms)),
            None => "-".into(),
        };
        let handle = if h.handle.is_empty() {
            "<span class=\"none\">hidden</span>".to_string()
        } else {
            escape(&h.handle)
        };
        let _ = write!(
            out,
            "<tr class=\"holder\"><td class=\"user\">{}</td><td class=\"host\">{}</td><td>{}</td>\
             <td>{handle}</td><td>{}</td><td>{}</td><td class=\"linger\">{linger}</td></tr>",
            escape(&h.user),
            escape(&h.host),
            escape(&h.display),
            h.count,
            utc(h.since_ms),
        );
    }
    out.push_str("</table></div>");
}

fn charts(out: &mut String, d: &PageData<'_>, name: &str) {
    let Some(history) = d.history else {
        out.push_str(
            "<p class=\"none history\">no usage history: this server was started without \
             one, so there are no daily peaks to chart</p>",
        );
        return;
    };
    let today = chrono::DateTime::from_timestamp_millis(d.status.server.now_ms as i64)
        .unwrap_or_default()
        .date_naive();
    out.push_str("<div class=\"charts\">");
    for days in [30, 90] {
        let series = history.daily_peaks(name, days);
        let title = format!("{name}: daily peak in use against licensed, last {days} days");
        let _ = write!(
            out,
            "<figure>{}<figcaption>last {days} days: peak in use (bars) and licensed (line)</figcaption></figure>",
            chart::svg(&title, &series, days, today)
        );
    }
    out.push_str("</div>");
}

fn queue(out: &mut String, d: &PageData<'_>) {
    out.push_str("<section id=\"queue\"><h2>Queue</h2>");
    if d.status.queue.is_empty() {
        out.push_str("<p class=\"none\">nobody waits</p></section>");
        return;
    }
    let now = d.status.server.now_ms;
    out.push_str(
        "<div class=\"scroll\"><table><tr><th>feature</th><th>user</th><th>host</th>\
         <th>display</th><th>licenses</th><th>waiting</th><th>gives up</th></tr>",
    );
    for q in &d.status.queue {
        let n = &q.names;
        let _ = write!(
            out,
            "<tr class=\"waiter\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>in {}</td></tr>",
            escape(&n.feature),
            escape(&n.user),
            escape(&n.host),
            escape(&n.display),
            q.count,
            span(now.saturating_sub(q.since_ms)),
            span(q.deadline_ms.saturating_sub(now)),
        );
    }
    out.push_str("</table></div></section>");
}

#[cfg(test)]
mod tests;
