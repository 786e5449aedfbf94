//! The `/metrics` endpoint of `tallyd --http ADDR:PORT` (Prometheus /
//! OpenMetrics text format), and the loops' counters it reads.
//!
//! Counting costs the loops almost nothing: each loop owns one
//! [`LoopCounters`] (in [`Shared::metrics`], one cache line apart from
//! the next loop's), which only that loop writes, with a plain relaxed load
//! and store (no read-modify-write, no lock, no allocation). A scrape sums
//! every loop's counters with relaxed loads, so a figure may lag a request
//! or two behind, never more. The gauges (licenses issued, in use,
//! overdraft, queued, expiry) are read at scrape time from the pools'
//! counters (no holder copied) and the queue, on the HTTP thread.
//!
//! The HTTP side that serves it is `http.rs`.

mod histogram;
mod recent;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tally_core::engine::{BorrowRefusal, Reason};
use tally_core::license::Expiry;

use crate::shared::Shared;
use histogram::Figures;
pub(crate) use histogram::Histogram;
use recent::MinuteRing;
pub(crate) use recent::Recent;

pub(crate) use crate::debuglog::Cause;

/// Every cause, in [`LoopCounters::checkins`]' order, with its label.
const CAUSES: [(Cause, &str); 7] = [
    (Cause::Checkin, Cause::Checkin.name()),
    (Cause::LingerExpiry, Cause::LingerExpiry.name()),
    (Cause::IdleTimeout, Cause::IdleTimeout.name()),
    (Cause::Disconnect, Cause::Disconnect.name()),
    (Cause::Remove, Cause::Remove.name()),
    (Cause::BorrowExpiry, Cause::BorrowExpiry.name()),
    (Cause::BorrowReturn, Cause::BorrowReturn.name()),
];

/// Every denial reason, in [`LoopCounters::denials`]' order (labelled with
/// [`Reason::name`], as on the wire).
const REASONS: [Reason; 15] = [
    Reason::NoSuchFeature,
    Reason::AllInUse,
    Reason::VersionTooHigh,
    Reason::Expired,
    Reason::NotYetStarted,
    Reason::BadRequest(""),
    Reason::TableFull,
    Reason::Excluded,
    Reason::NotIncluded,
    Reason::OverMax,
    Reason::CountTooHigh,
    Reason::NotHolder,
    Reason::ReservedForOthers { line: 0 },
    Reason::Borrow(BorrowRefusal::NotBorrowable),
    Reason::Borrow(BorrowRefusal::TooLong { max_hours: 0 }),
];

fn reason_index(r: &Reason) -> usize {
    match r {
        Reason::NoSuchFeature => 0,
        Reason::AllInUse => 1,
        Reason::VersionTooHigh => 2,
        Reason::Expired => 3,
        Reason::NotYetStarted => 4,
        Reason::BadRequest(_) => 5,
        Reason::TableFull => 6,
        Reason::Excluded => 7,
        Reason::NotIncluded => 8,
        Reason::OverMax => 9,
        Reason::CountTooHigh => 10,
        Reason::NotHolder => 11,
        Reason::ReservedForOthers { .. } => 12,
        Reason::Borrow(BorrowRefusal::TooLong { .. }) => 14,
        Reason::Borrow(_) => 13,
    }
}

/// One loop's counters: written by that loop only, read by scrapes.
/// Aligned to its own cache lines so two loops never write the same one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct LoopCounters {
    /// Grants of a new instance (startup and uncounted grants included).
    checkouts: AtomicU64,
    /// Grants that renewed an instance the holder had.
    renewals: AtomicU64,
    /// Releases, by [`Cause`].
    checkins: [AtomicU64; CAUSES.len()],
    /// Denials, by [`Reason`].
    denials: [AtomicU64; REASONS.len()],
    /// Denials per minute, for the status page's last hour and day.
    recent_denials: MinuteRing,
    /// Each request's time in the loop (see [`LoopCounters::answered`]).
    request_latency: Histogram,
    /// How late linger expiries ran: now - deadline, at expiry.
    linger_lateness: Histogram,
}

/// Adds one to a counter only the calling loop writes: a load and a store,
/// no locked instruction.
#[inline]
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

impl LoopCounters {
    /// A grant: a renewal or a new checkout.
    #[inline]
    pub(crate) fn granted(&self, renewal: bool) {
        bump(if renewal {
            &self.renewals
        } else {
            &self.checkouts
        });
    }

    /// A denial for `reason` at `now` (Unix ms).
    #[inline]
    pub(crate) fn denied(&self, reason: &Reason, now: u64) {
        bump(&self.denials[reason_index(reason)]);
        self.recent_denials.count(now);
    }

    /// `n` requests were answered in a round of the loop that took `ns`
    /// nanoseconds from its wake-up to its end (replies written, the
    /// journal batch sent): each is counted at that, an upper bound of its
    /// own time in the loop (a reply that waits for the journal's fsync
    /// waits beyond it: `tally_journal_fsync_seconds`).
    #[inline]
    pub(crate) fn answered(&self, ns: u64, n: u64) {
        self.request_latency.record_n(ns, n);
    }

    /// A linger due at `deadline` (Unix ms) expired at `now_us` (Unix µs).
    #[inline]
    pub(crate) fn linger_expired(&self, now_us: u64, deadline: Option<u64>) {
        if let Some(d) = deadline {
            self.linger_lateness.record(
                now_us
                    .saturating_sub(d.saturating_mul(1_000))
                    .saturating_mul(1_000),
            );
        }
    }

    /// A license came back for `cause`.
    #[inline]
    pub(crate) fn released(&self, cause: Cause) {
        bump(&self.checkins[cause as usize]);
    }
}

/// Every loop's counters, summed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) checkouts: u64,
    pub(crate) renewals: u64,
    pub(crate) checkins: [u64; CAUSES.len()],
    pub(crate) denials: [u64; REASONS.len()],
}

/// Sums the loops' counters.
pub(crate) fn totals(loops: &[LoopCounters]) -> Totals {
    let mut t = Totals::default();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    for l in loops {
        t.checkouts += load(&l.checkouts);
        t.renewals += load(&l.renewals);
        for (s, c) in t.checkins.iter_mut().zip(&l.checkins) {
            *s += load(c);
        }
        for (s, c) in t.denials.iter_mut().zip(&l.denials) {
            *s += load(c);
        }
    }
    t
}

/// Every loop's denials in the hour and the day before `now` (Unix ms).
pub(crate) fn recent_denials(loops: &[LoopCounters], now: u64) -> Recent {
    let mut sum = Recent::default();
    for l in loops {
        l.recent_denials.add_to(now, &mut sum);
    }
    sum
}

type Labels = Vec<(&'static str, String)>;

/// One feature's gauges, summed over its pools.
#[derive(Debug, Default)]
struct FeatureFigures {
    issued: Option<u64>,
    in_use: u64,
    overdraft: u64,
    queued: u64,
    reserved: u64,
}

/// The whole `/metrics` text at this moment. Every gauge comes from the
/// pools' counters ([`tally_core::engine::Engine::pools_snapshot`]): no
/// holder is copied or visited, so a scrape costs the same with ten
/// million holders as with none. `licenses_in_use` is the full STATUS's
/// figure with the holders' sum replaced by the pool's admission counter
/// ([`crate::status::counted_in_use`]), which may also count a checkout
/// in flight.
pub(crate) fn render(shared: &Shared) -> String {
    let now = shared.now();
    let (_, gen) = shared.generation.load();
    let snapshot = gen.engine.pools_snapshot(now);
    let info = shared.server_info(&gen.facts, now);
    let queue = shared.queues.snapshot();
    let connections = info.connections;
    let dropped = info.log_dropped;
    // Per feature, in license-file order.
    let mut order: Vec<&str> = Vec::new();
    let mut figures: HashMap<&str, FeatureFigures> = HashMap::new();
    for f in &snapshot.features {
        for p in &f.pools {
            let fig = figures.entry(f.name.as_str()).or_insert_with(|| {
                order.push(f.name.as_str());
                FeatureFigures::default()
            });
            if let Some(total) = p.count {
                fig.issued = Some(fig.issued.unwrap_or(0) + u64::from(total));
            }
            let (in_use, overdraft) = crate::status::counted_in_use(p);
            fig.in_use += u64::from(in_use);
            fig.overdraft += u64::from(overdraft);
            fig.reserved += u64::from(p.reserved_free) + u64::from(p.suite_kept);
        }
    }
    for q in &queue {
        if let Some(f) = figures.get_mut(q.names.feature.as_str()) {
            f.queued += 1;
        }
    }

    let mut reg = Registry::with_prefix("tally");
    let issued = Family::<Labels, Gauge>::default();
    let in_use = Family::<Labels, Gauge>::default();
    let overdraft = Family::<Labels, Gauge>::default();
    let queued = Family::<Labels, Gauge>::default();
    let reserved = Family::<Labels, Gauge>::default();
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for name in &order {
        let f = &figures[name];
        let l = vec![("feature", name.to_string())];
        if let Some(n) = f.issued {
            issued.get_or_create(&l).set(to_i64(n));
        }
        in_use.get_or_create(&l).set(to_i64(f.in_use));
        overdraft.get_or_create(&l).set(to_i64(f.overdraft));
        queued.get_or_create(&l).set(to_i64(f.queued));
        reserved.get_or_create(&l).set(to_i64(f.reserved));
    }
    let expiry = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for f in &snapshot.features {
        for p in &f.pools {
            if let Expiry::On(d) = p.expiry {
                let l = vec![("feature", f.name.clone()), ("line", p.line.to_string())];
                expiry.get_or_create(&l).set(d.end_ms() as f64 / 1000.0);
            }
        }
    }
    reg.register(
        "licenses_issued",
        "Licenses the license file grants per feature (counted pools, summed)",
        issued,
    );
    reg.register(
        "licenses_in_use",
        "Licenses checked out per feature",
        in_use,
    );
    reg.register(
        "licenses_overdraft",
        "Licenses checked out beyond the issued count (OVERDRAFT) per feature",
        overdraft,
    );
    reg.register(
        "queue_length",
        "Checkouts waiting in the queue (wait=) per feature",
        queued,
    );
    reg.register(
        "licenses_reserved",
        "Free licenses held back per feature: by RESERVE rules for those they name, or kept for a SUITE_RESERVED suite's holders",
        reserved,
    );
    reg.register(
        "license_expiry_timestamp_seconds",
        "When a pool (license-file line) of a feature expires, Unix seconds (permanent pools absent)",
        expiry,
    );

    let t = totals(&shared.metrics);
    let counter = |v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        c
    };
    reg.register(
        "checkouts",
        "Checkouts granted (new instances)",
        counter(t.checkouts),
    );
    reg.register(
        "renewals",
        "Checkouts that renewed an instance already held",
        counter(t.renewals),
    );
    let checkins = Family::<Labels, Counter>::default();
    for ((_, label), n) in CAUSES.iter().zip(t.checkins) {
        checkins
            .get_or_create(&vec![("cause", label.to_string())])
            .inc_by(n);
    }
    reg.register("checkins", "Licenses released, by cause", checkins);
    let denials = Family::<Labels, Counter>::default();
    for (r, n) in REASONS.iter().zip(t.denials) {
        denials
            .get_or_create(&vec![("reason", r.name().to_string())])
            .inc_by(n);
    }
    reg.register("denials", "Checkouts denied, by reason", denials);
    let conns = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
    conns.set(to_i64(connections));
    reg.register("connections", "Open client connections", conns);
    reg.register(
        "log_lines_dropped",
        "Debug-log events dropped because the log writer fell behind",
        counter(dropped),
    );
    reg.register(
        "log_lines_written",
        "Lines written to the debug log",
        counter(shared.log.written()),
    );
    if let Some(u) = shared.upload.get() {
        let st = u.status();
        // The last attempt's result code: 1 on its own label, 0 on the
        // others, so an alert can match on `code!="CTX_UPLOADER_SUCCESS"`.
        let last = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
        if let Some(a) = &st.last {
            for c in crate::upload::Code::ALL {
                last.get_or_create(&vec![("code", c.as_str())])
                    .set(i64::from(c == a.code));
            }
        }
        reg.register(
            "upload_last_result",
            "The last report upload attempt's result code (1 on it)",
            last,
        );
        let at = Gauge::<i64>::default();
        at.set(st.last.as_ref().map_or(0, |a| to_i64(a.finished)));
        reg.register(
            "upload_last_attempt_timestamp_seconds",
            "When the last report upload attempt finished, Unix seconds (0: none yet)",
            at,
        );
        let ok = Gauge::<i64>::default();
        ok.set(st.last_success.map_or(0, to_i64));
        reg.register(
            "upload_last_success_timestamp_seconds",
            "When a report upload last succeeded, Unix seconds (0: never since start)",
            ok,
        );
        let pending = Gauge::<i64>::default();
        pending.set(to_i64(st.pending as u64));
        reg.register(
            "upload_pending_reports",
            "Reports waiting in upload/pending for an upload",
            pending,
        );
    }
    reg.register(
        "request_latency_seconds",
        "Time of each request in its event loop: from the wake-up that read it to the end of that round (replies written)",
        Figures::of(shared.metrics.iter().map(|l| &l.request_latency)),
    );
    reg.register(
        "linger_expiry_lateness_seconds",
        "How late linger expiries ran: the time at expiry minus the deadline (the server clock's ms)",
        Figures::of(shared.metrics.iter().map(|l| &l.linger_lateness)),
    );
    if let Some(j) = shared.journal.figures.get() {
        reg.register(
            "journal_fsync_seconds",
            "Journal segment syncs (sync mode: one per group commit; async: the periodic sync)",
            Figures::of([&j.fsync]),
        );
        let bytes = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        bytes.set(to_i64(j.segment_bytes.load(Ordering::Relaxed)));
        reg.register(
            "journal_bytes",
            "Size of the journal's current segment (records since the last snapshot)",
            bytes,
        );
        let at = Gauge::<f64, AtomicU64>::default();
        at.set(j.last_snapshot_ms.load(Ordering::Relaxed) as f64 / 1000.0);
        reg.register(
            "journal_last_snapshot_timestamp_seconds",
            "When the journal's last snapshot was written whole, Unix seconds",
            at,
        );
    }
    // A gauge of 1, not OpenMetrics' `info` type: Prometheus' own text
    // parser (promtool's) does not know that type.
    let build = Family::<Labels, Gauge>::default();
    build
        .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
        .set(1);
    reg.register("build_info", "tallyd's build (always 1)", build);
    let mut out = String::new();
    if encode(&mut out, &reg).is_err() {
        out.clear();
        let _ = writeln!(out, "# EOF");
    }
    out
}

/// The OpenMetrics content type, served to a scraper that asks for it
/// (Prometheus does, in its `Accept`).
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus' older text format, served otherwise (curl, `promtool check
/// metrics`, older scrapers).
pub(crate) const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The same exposition in Prometheus' text format 0.0.4: it differs from
/// OpenMetrics (what prometheus-client writes) in what this module uses
/// only by a counter's HELP and TYPE naming the sample (`x_total`), not the
/// family (`x`), and by having no `# EOF`.
pub(crate) fn to_text_004(om: &str) -> String {
    let counters: Vec<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len() + 16 * counters.len());
    for line in om.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(&name).then_some((p, name, tail))
        });
        match meta {
            Some((p, name, tail)) => {
                let _ = writeln!(out, "{p}{name}_total {tail}");
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_indexed_in_order_and_named_apart() {
        for (i, r) in REASONS.iter().enumerate() {
            assert_eq!(reason_index(r), i, "{r:?}");
        }
        let mut names: Vec<_> = REASONS.iter().map(Reason::name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REASONS.len());
        for (i, (c, _)) in CAUSES.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }

    #[test]
    fn text_004_names_counters_by_their_samples() {
        let om = "# HELP tally_checkouts Grants.\n# TYPE tally_checkouts counter\n\
                  tally_checkouts_total 3\n# HELP tally_connections Open.\n\
                  # TYPE tally_connections gauge\ntally_connections 2\n# EOF\n";
        assert_eq!(
            to_text_004(om),
            "# HELP tally_checkouts_total Grants.\n# TYPE tally_checkouts_total counter\n\
             tally_checkouts_total 3\n# HELP tally_connections Open.\n\
             # TYPE tally_connections gauge\ntally_connections 2\n"
        );
    }

    #[test]
    fn totals_sum_every_loop() {
        let loops: Vec<LoopCounters> = (0..3).map(|_| LoopCounters::default()).collect();
        loops[0].granted(false);
        loops[1].granted(false);
        loops[2].granted(true);
        loops[1].denied(&Reason::AllInUse, 0);
        loops[2].denied(&Reason::ReservedForOthers { line: 7 }, 0);
        loops[0].released(Cause::Disconnect);
        loops[2].released(Cause::Disconnect);
        let t = totals(&loops);
        assert_eq!((t.checkouts, t.renewals), (2, 1));
        assert_eq!(t.denials[1], 1);
        assert_eq!(t.denials[12], 1);
        assert_eq!(t.checkins[Cause::Disconnect as usize], 2);
        assert_eq!(t.checkins.iter().sum::<u64>(), 2);
    }
}
