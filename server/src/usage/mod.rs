//! Usage reporting (docs/usage.md): the report log, the daily usage
//! history in SQLite, and the compliance report.
//!
//! The loops do nothing new for it: the usage events are the debug log's
//! license events ([`crate::debuglog::Event::License`]), which already go
//! over the log's bounded channel to the `tally-log` thread (with NOLOG,
//! the events NOLOG drops from the debug log still go, marked, when usage
//! reporting is on). There a `Sink` writes each one to the report log
//! (`REPORTLOG`, `--report-log`) and applies it to the [`day::Aggregator`]
//! (memory only); once a second it hands the rows that changed to the
//! `tally-usage` thread, which writes them to `usage.sqlite` in one
//! transaction ([`db`]). No lock is shared with the loops.
//!
//! At start (when the debug log starts serving, after journal recovery and
//! before any loop runs) the sink goes on with today's rows from the
//! database and, when the report log is appended to (`+path`), with
//! today's lines of the report log (each figure the larger of the two, the
//! users and hosts the union: the report log has every event written
//! before a `kill -9`, the database those of the last batch), then seeds
//! what is in use from the engine (licenses recovered from the journal
//! count) and writes `INUSE` lines.

pub mod day;
pub mod db;
pub mod history;
pub mod report;
pub mod reportlog;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Sender};
use tally_core::engine::{Engine, HolderBuf, PoolId};

use crate::debuglog::{Action, LogTarget};
use day::{day_of, Aggregator, Change, UsageEvent, DAY_MS};

/// How often the changed rows go to the database, in ms.
pub const BATCH_EVERY_MS: u64 = 1000;

/// What usage reporting does (`server::Config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageConfig {
    /// The report log (`None`: none).
    pub report_log: Option<LogTarget>,
    /// The history's file (`None`: no history: no state dir in use).
    pub db: Option<PathBuf>,
    /// Days of history kept.
    pub retention_days: u32,
}

impl UsageConfig {
    /// Whether there is anything to do: the loops send the events NOLOG
    /// drops only then.
    pub fn is_on(&self) -> bool {
        self.report_log.is_some() || self.db.is_some()
    }
}

/// A message to the `tally-usage` thread.
enum Msg {
    /// Rows to write, in one transaction.
    Batch(Vec<day::Row>),
    /// Delete the days before this one.
    Prune(u64),
    /// Answer once everything before is written.
    Sync(Sender<()>),
}

/// The `tally-log` thread's usage consumer.
pub(crate) struct Sink {
    config: UsageConfig,
    report: Option<BufWriter<File>>,
    agg: Aggregator,
    db: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    last_batch_ms: u64,
    stamp: (u64, [u8; 19]),
    /// Each feature's version in the license file (the highest its pools
    /// serve), for the report log's `version=`.
    versions: std::collections::HashMap<String, String>,
    /// A message for the debug log (the writer writes it).
    pub(crate) notes: Vec<String>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn open_report_log(target: &LogTarget, append: bool) -> io::Result<Option<BufWriter<File>>> {
    let LogTarget::File { path, .. } = target else {
        return Ok(None);
    };
    let mut o = OpenOptions::new();
    o.create(true);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    let f = o.open(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot open report log {}: {e}", path.display()),
        )
    })?;
    Ok(Some(BufWriter::new(f)))
}

impl Sink {
    /// A sink that does nothing until [`Sink::start`].
    pub(crate) fn new(config: UsageConfig, now: u64) -> Sink {
        Sink {
            config,
            report: None,
            agg: Aggregator::new(now),
            db: None,
            thread: None,
            last_batch_ms: now,
            stamp: (0, [0; 19]),
            versions: Default::default(),
            notes: Vec::new(),
        }
    }

    /// The server can serve (recovery done, no loop running yet): goes on
    /// with today's figures, seeds what is in use from `engine`, opens the
    /// report log and the database, starts the `tally-usage` thread.
    pub(crate) fn start(&mut self, engine: &Engine, now: u64) -> io::Result<()> {
        self.agg = Aggregator::new(now);
        let today = day::day_text(day_of(now));
        let mut conn = None;
        if let Some(path) = &self.config.db {
            let c = db::open_for_writing(path).map_err(|e| {
                io::Error::other(format!("cannot open usage history {}: {e}", path.display()))
            })?;
            match db::read_today(&c, &today) {
                Ok(rows) => rows.into_iter().for_each(|r| self.agg.merge(r)),
                Err(e) => self
                    .notes
                    .push(format!("Usage history: today's rows not read: {e}")),
            }
            if let Err(e) = db::prune(&c, self.first_kept(now)) {
                self.notes
                    .push(format!("Usage history: old days not deleted: {e}"));
            }
            conn = Some(c);
        }
        if let Some(LogTarget::File { path, append }) = &self.config.report_log {
            if *append {
                if let Ok(f) = File::open(path) {
                    for r in rebuild_day(io::BufReader::new(f), day_of(now)) {
                        self.agg.merge(r);
                    }
                }
            }
        }
        if let Some(target) = &self.config.report_log {
            let append = matches!(target, LogTarget::File { append: true, .. });
            self.report = open_report_log(target, append)?;
        }
        self.seed(engine, now, "start");
        if let Some(c) = conn {
            let (tx, rx) = unbounded::<Msg>();
            let thread = std::thread::Builder::new()
                .name("tally-usage".into())
                .spawn(move || write_history(c, rx))?;
            self.db = Some(tx);
            self.thread = Some(thread);
        }
        self.last_batch_ms = now;
        self.batch(now);
        self.flush_report();
        Ok(())
    }

    fn first_kept(&self, now: u64) -> u64 {
        day_of(now).saturating_sub(u64::from(self.config.retention_days.max(1)) - 1)
    }

    /// Every feature of `engine`: its licensed count, and (at start) what
    /// is in use; then an `INUSE` line each.
    fn seed(&mut self, engine: &Engine, now: u64, at: &str) {
        let in_use = at == "start";
        self.versions.clear();
        let features = feature_counts(engine);
        if !in_use {
            // A feature the new file no longer has is licensed no more
            // (and, once nothing of it is in use, not carried into the
            // next day).
            let names: std::collections::HashSet<&str> = features.iter().map(|f| f.name).collect();
            for (name, licensed, _) in self.agg.live() {
                if licensed.is_some() && !names.contains(name.as_str()) {
                    self.agg.set_licensed(&name, None, now);
                }
            }
        }
        for f in &features {
            if let Some(v) = f.version {
                self.versions.insert(f.name.to_string(), v.to_string());
            }
            if in_use {
                self.agg.seed(f.name, f.counted, f.used, now);
            } else {
                self.agg.set_licensed(f.name, f.counted, now);
            }
        }
        self.write_in_use(now, at);
    }

    /// A REREAD: the licensed counts of the new file.
    pub(crate) fn engine(&mut self, engine: &Engine, now: u64) {
        self.seed(engine, now, "reread");
    }

    fn write_in_use(&mut self, at_ms: u64, at: &str) {
        let Some(out) = self.report.as_mut() else {
            return;
        };
        for (feature, licensed, in_use) in self.agg.live() {
            reportlog::write_stamp(out, &mut self.stamp, at_ms);
            let _ = out.write_all(b" INUSE");
            reportlog::write_field(out, "feature", &feature);
            match licensed {
                Some(n) => reportlog::write_field(out, "licensed", itoa(n).as_str()),
                None => reportlog::write_field(out, "licensed", "uncounted"),
            }
            reportlog::write_field(out, "in_use", itoa(in_use).as_str());
            reportlog::write_field(out, "at", at);
            let _ = out.write_all(b"\n");
        }
    }

    /// Time is `now`: a UTC midnight passed writes the new day's `INUSE`
    /// lines (stamped at midnight) and prunes old days.
    fn advance(&mut self, now: u64) {
        let before = self.agg.day();
        if day_of(now) > before {
            self.agg.advance(now);
            self.write_in_use(self.agg.day() * DAY_MS, "midnight");
            let first = self.first_kept(now);
            if let Some(db) = &self.db {
                let _ = db.send(Msg::Prune(first));
            }
        }
    }

    /// One license event (`name`: its feature's name; `known`: the license
    /// file has it).
    pub(crate) fn event(
        &mut self,
        at_ms: u64,
        action: Action,
        name: &str,
        known: bool,
        h: &HolderBuf,
        count: u32,
    ) {
        let (word, change) = match action {
            Action::Out(kind) => (
                "OUT",
                Change::Grant {
                    kind,
                    overdraft: false,
                    count,
                },
            ),
            Action::OutOverdraft(kind) => (
                "OUT",
                Change::Grant {
                    kind,
                    overdraft: true,
                    count,
                },
            ),
            Action::In(cause) => ("IN", Change::Release { cause, count }),
            Action::Denied(r) => ("DENIED", Change::Denial { reason: r.name() }),
            Action::InBalance | Action::Removing | Action::Queued => return,
        };
        self.advance(at_ms);
        self.agg.apply(&UsageEvent {
            at_ms,
            feature: name,
            known,
            user: h.user(),
            host: h.host(),
            change,
        });
        let Some(out) = self.report.as_mut() else {
            return;
        };
        reportlog::write_stamp(out, &mut self.stamp, at_ms);
        let _ = out.write_all(b" ");
        let _ = out.write_all(word.as_bytes());
        reportlog::write_field(out, "feature", name);
        let version = self.versions.get(name).map_or("", String::as_str);
        reportlog::write_field(out, "version", version);
        reportlog::write_field(out, "user", h.user());
        reportlog::write_field(out, "host", h.host());
        reportlog::write_field(out, "display", h.display());
        reportlog::write_field(out, "handle", h.handle());
        reportlog::write_field(out, "count", itoa(u64::from(count)).as_str());
        match change {
            Change::Grant {
                kind, overdraft, ..
            } => {
                reportlog::write_field(out, "kind", kind.name());
                if overdraft {
                    reportlog::write_field(out, "overdraft", "1");
                }
            }
            Change::Release { cause, .. } => reportlog::write_field(out, "cause", cause.name()),
            Change::Denial { reason } => reportlog::write_field(out, "reason", reason),
        }
        let _ = out.write_all(b"\n");
    }

    /// After each drain of the channel and once a second: the report log
    /// is flushed, and the changed rows go to the database once a second.
    pub(crate) fn tick(&mut self, now: u64) {
        self.advance(now);
        if now >= self.last_batch_ms + BATCH_EVERY_MS {
            self.batch(now);
        }
        self.flush_report();
    }

    fn flush_report(&mut self) {
        if let Some(out) = self.report.as_mut() {
            let _ = out.flush();
        }
    }

    fn batch(&mut self, now: u64) {
        self.last_batch_ms = now;
        let rows = self.agg.take(now);
        if let (Some(db), false) = (&self.db, rows.is_empty()) {
            let _ = db.send(Msg::Batch(rows));
        }
    }

    /// Everything so far is in the report log (a flush of the debug log:
    /// nothing waits for the database).
    pub(crate) fn flush(&mut self, now: u64) {
        self.advance(now);
        self.flush_report();
    }

    /// Everything so far is in the report log and committed to the
    /// database (REPORT, the upload, shutdown).
    pub(crate) fn sync(&mut self, now: u64) {
        self.advance(now);
        self.batch(now);
        self.flush_report();
        if let Some(db) = &self.db {
            let (tx, rx) = bounded(1);
            if db.send(Msg::Sync(tx)).is_ok() {
                let _ = rx.recv_timeout(std::time::Duration::from_secs(10));
            }
        }
    }

    /// Reopens the report log (appending), with the debug log.
    pub(crate) fn reopen(&mut self) {
        self.flush_report();
        if let Some(target) = &self.config.report_log {
            match open_report_log(target, true) {
                Ok(out) => self.report = out,
                Err(e) => self.notes.push(format!("Report log not reopened: {e}")),
            }
        }
    }

    /// Writes what is left and stops the `tally-usage` thread.
    pub(crate) fn stop(&mut self, now: u64) {
        self.sync(now);
        self.db = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A number's decimal text, without a `format!` per field.
fn itoa(n: u64) -> Digits {
    let mut d = Digits {
        buf: [0; 20],
        start: 20,
    };
    let mut n = n;
    loop {
        d.start -= 1;
        d.buf[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    d
}

struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

/// Today's summaries rebuilt from a report log: every line of the UTC
/// day `day`, replayed in order (`INUSE` lines seed what is in use, as
/// the start that wrote them did).
pub(crate) fn rebuild_day(log: impl io::BufRead, day: u64) -> Vec<day::DayRecord> {
    let mut lines = reportlog::lines_of_day(log, day).peekable();
    let Some(first) = lines.peek() else {
        return Vec::new();
    };
    let start = match first {
        reportlog::Line::Event { at_ms, .. } | reportlog::Line::InUse { at_ms, .. } => *at_ms,
    };
    let mut agg = Aggregator::new(start);
    let mut after_start = false;
    for l in lines {
        let is_start = matches!(l, reportlog::Line::InUse { start: true, .. });
        if is_start && !after_start {
            // A restart: tallyd stopped at the last line before it.
            agg.stopped();
        }
        after_start = is_start;
        match &l {
            reportlog::Line::InUse {
                at_ms,
                feature,
                licensed,
                in_use,
                ..
            } => agg.seed(feature, *licensed, *in_use, *at_ms),
            reportlog::Line::Event {
                at_ms,
                feature,
                user,
                host,
                change,
            } => agg.apply(&UsageEvent {
                at_ms: *at_ms,
                feature,
                // The license file's features have INUSE lines before
                // their events; any other name is capped as it was live
                // (MAX_UNKNOWN_FEATURES), not a row each.
                known: false,
                user,
                host,
                change: change.as_change(),
            }),
        }
    }
    agg.stopped();
    agg.export()
}

/// Rows of failed batches kept for the next one, at most (one per day and
/// feature; beyond, the oldest days' go).
const MAX_UNWRITTEN_ROWS: usize = 100_000;

/// The `tally-usage` thread: writes batches until the sink hangs up. A
/// batch that fails (the database busy past its timeout, a full disk) is
/// kept and written with the next one: rows replace their day's row, users
/// and hosts add up, so nothing of it is lost once a write succeeds.
fn write_history(c: rusqlite::Connection, rx: crossbeam_channel::Receiver<Msg>) {
    let mut h = History {
        c,
        unwritten: Vec::new(),
    };
    for msg in rx {
        match msg {
            Msg::Batch(rows) => {
                if let Err(e) = h.batch(rows) {
                    eprintln!(
                        "tallyd: usage history: {} rows not written yet (kept for the next batch): {e}",
                        h.unwritten.len()
                    );
                }
            }
            Msg::Prune(first) => {
                if let Err(e) = db::prune(&h.c, first) {
                    eprintln!("tallyd: usage history: old days not deleted: {e}");
                }
            }
            Msg::Sync(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// The database and the rows of failed batches.
struct History {
    c: rusqlite::Connection,
    unwritten: Vec<day::Row>,
}

impl History {
    /// Writes `rows` with what earlier failed batches left; on failure
    /// keeps them all (merged, at most [`MAX_UNWRITTEN_ROWS`]).
    fn batch(&mut self, rows: Vec<day::Row>) -> rusqlite::Result<()> {
        let rows = if self.unwritten.is_empty() {
            rows
        } else {
            let mut all = std::mem::take(&mut self.unwritten);
            all.extend(rows);
            merge_rows(all)
        };
        db::write_batch(&mut self.c, &rows).inspect_err(|_| {
            self.unwritten = rows;
            if self.unwritten.len() > MAX_UNWRITTEN_ROWS {
                let over = self.unwritten.len() - MAX_UNWRITTEN_ROWS;
                self.unwritten.drain(..over);
                eprintln!("tallyd: usage history: {over} unwritten rows dropped");
            }
        })
    }
}

/// One row per (day, feature), in the order of their first batch: the
/// latest summary, every user and host.
fn merge_rows(rows: Vec<day::Row>) -> Vec<day::Row> {
    let mut at: std::collections::HashMap<(u64, String), usize> = Default::default();
    let mut out: Vec<day::Row> = Vec::with_capacity(rows.len());
    for r in rows {
        match at.get(&(r.day, r.feature.clone())) {
            Some(&i) => {
                let o = &mut out[i];
                o.summary = r.summary;
                o.new_users.extend(r.new_users);
                o.new_hosts.extend(r.new_hosts);
            }
            None => {
                at.insert((r.day, r.feature.clone()), out.len());
                out.push(r);
            }
        }
    }
    out.sort_by_key(|r| r.day);
    out
}

/// One feature's figures for [`Sink::seed`], from the pools' counters.
struct FeatureCounts<'a> {
    name: &'a str,
    /// The highest version its pools serve (`None`: no pool).
    version: Option<&'a tally_core::license::Version>,
    /// Its pools' licensed counts summed (`None`: a pool is uncounted).
    counted: Option<u64>,
    /// Licenses out now, the pools' admission counters summed.
    used: u64,
}

/// Every feature of `engine` in its order (the file's), its pools' counts
/// and what they have out, read from the pools' counters: no copy of the
/// holders, so it costs the same with ten million out as with none (a
/// snapshot of the engine, which this replaced, took 35 s and most of the
/// peak memory of a restart with 10 M lingering).
fn feature_counts(engine: &Engine) -> Vec<FeatureCounts<'_>> {
    let mut out: Vec<FeatureCounts<'_>> = (0..engine.feature_count())
        .filter_map(|i| engine.feature_id_at(i))
        .map(|id| FeatureCounts {
            name: engine.feature_name(id),
            version: None,
            counted: Some(0),
            used: 0,
        })
        .collect();
    for p in 0..engine.pool_count() {
        let Some((line, in_use, _)) = engine.pool_line(PoolId(p as u32)) else {
            continue;
        };
        let Some(f) = engine
            .feature_id(&line.feature)
            .and_then(|id| out.get_mut(id.0 as usize))
        else {
            continue;
        };
        if f.version.map_or(true, |v| line.version >= *v) {
            f.version = Some(&line.version);
        }
        f.counted = f.counted.and_then(|n| line.count.map(|c| n + u64::from(c)));
        f.used += in_use;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counters' figures are the snapshot's (what `seed` read before):
    /// pools of one feature summed, an uncounted pool makes it uncounted,
    /// the highest version, features in file order.
    #[test]
    fn feature_counts_are_the_snapshots_figures() {
        use tally_core::engine::{EngineConfig, Request};
        let text = "FEATURE F V 1.0 permanent 3\n\
                    INCREMENT F V 2.0 permanent 4\n\
                    FEATURE U V 1.0 permanent uncounted\n\
                    FEATURE G V 1.5 permanent 2\n\
                    INCREMENT G V 1.0 permanent uncounted\n";
        let licenses = tally_core::license::parse_str("t.lic", text);
        let e = Engine::new(&licenses, EngineConfig::default());
        let now = 1_700_000_000_000;
        for h in ["a", "b", "c", "d", "e"] {
            e.checkout(&Request::new("F", "u", "pc", h), now).unwrap();
        }
        e.checkout(&Request::new("G", "u", "pc", "g"), now).unwrap();
        let got: Vec<_> = feature_counts(&e)
            .iter()
            .map(|f| {
                (
                    f.name.to_string(),
                    f.version.map(|v| v.to_string()),
                    f.counted,
                    f.used,
                )
            })
            .collect();
        let want: Vec<_> = e
            .snapshot(now)
            .features
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    f.pools
                        .iter()
                        .map(|p| &p.version)
                        .max()
                        .map(|v| v.to_string()),
                    f.pools
                        .iter()
                        .map(|p| p.count.map(u64::from))
                        .sum::<Option<u64>>(),
                    f.pools.iter().map(|p| u64::from(p.in_use)).sum::<u64>(),
                )
            })
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            got,
            [
                ("F".to_string(), Some("2.0".to_string()), Some(7), 5),
                ("U".to_string(), Some("1.0".to_string()), None, 0),
                // G's checkout is served by its uncounted pool: nothing counted.
                ("G".to_string(), Some("1.5".to_string()), None, 0),
            ]
        );
    }

    #[test]
    fn unwritten_rows_merge_with_the_next_batch() {
        let row = |day, f: &str, peak, user: &str| day::Row {
            day,
            feature: f.into(),
            summary: day::DaySummary {
                peak_in_use: peak,
                ..Default::default()
            },
            new_users: vec![user.into()],
            new_hosts: vec![],
        };
        let merged = merge_rows(vec![
            row(2, "F", 1, "a"),
            row(2, "G", 5, "g"),
            row(1, "F", 9, "old"),
            row(2, "F", 3, "b"),
        ]);
        let view: Vec<_> = merged
            .iter()
            .map(|r| {
                (
                    r.day,
                    r.feature.as_str(),
                    r.summary.peak_in_use,
                    r.new_users.clone(),
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                (1, "F", 9, vec!["old".to_string()]),
                (2, "F", 3, vec!["a".to_string(), "b".to_string()]),
                (2, "G", 5, vec!["g".to_string()]),
            ]
        );
    }

    #[test]
    fn a_failed_batch_is_written_with_the_next() {
        let dir = std::env::temp_dir().join(format!("tally-usage-retry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(db::DB_FILE);
        drop(db::open_for_writing(&path).unwrap());
        let row = |peak, user: &str| day::Row {
            day: day::parse_day("2026-12-03").unwrap(),
            feature: "F".into(),
            summary: day::DaySummary {
                peak_in_use: peak,
                ..Default::default()
            },
            new_users: vec![user.into()],
            new_hosts: vec![],
        };
        // A read-only connection: every write fails, as on a full disk.
        let mut h = History {
            c: db::open_for_reading(&path).unwrap(),
            unwritten: Vec::new(),
        };
        assert!(h.batch(vec![row(2, "alice")]).is_err());
        assert_eq!(h.unwritten.len(), 1);
        // Writable again: the next batch writes both.
        h.c = db::open_for_writing(&path).unwrap();
        h.batch(vec![row(3, "bob")]).unwrap();
        assert!(h.unwritten.is_empty());
        let today = db::read_today(&h.c, "2026-12-03").unwrap();
        assert_eq!(today.len(), 1);
        assert_eq!(today[0].summary.peak_in_use, 3);
        assert_eq!(today[0].users, ["alice", "bob"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_day_is_rebuilt_from_its_report_log_lines_across_a_restart() {
        let text = "\
2026-12-02T23:59:59.000Z OUT feature=F user=old host=h display=\"\" handle=o count=1 kind=new
2026-12-03T00:00:00.000Z INUSE feature=F licensed=2 in_use=1 at=midnight
2026-12-03T08:00:00.000Z OUT feature=F user=alice host=pc1 display=\"\" handle=a count=1 kind=new
2026-12-03T09:00:00.000Z DENIED feature=F user=bob host=pc2 display=\"\" handle=b count=1 reason=ALL_IN_USE
2026-12-03T10:00:00.000Z INUSE feature=F licensed=2 in_use=1 at=start
2026-12-03T10:30:00.000Z DENIED feature=F user=bob host=pc2 display=\"\" handle=b count=3 reason=COUNT_TOO_HIGH
";
        let day = day::parse_day("2026-12-03").unwrap();
        let rebuilt = rebuild_day(text.as_bytes(), day);
        assert_eq!(rebuilt.len(), 1);
        let r = &rebuilt[0];
        assert_eq!(r.feature, "F");
        assert_eq!(r.users, ["alice"]);
        let s = &r.summary;
        assert_eq!((s.peak_in_use, s.checkouts), (2, 1));
        assert_eq!(s.denials.values().sum::<u64>(), 2);
        // Full 08:00-09:00; the time tallyd was down is not counted.
        assert_eq!(s.full_use_ms, 3_600_000);
        assert!(rebuild_day(text.as_bytes(), day + 1).is_empty());
        // A line that is not UTF-8 is skipped, not the rest of the file.
        let mut bytes = b"2026-12-03T07:00:00.000Z OUT feature=\xff\n".to_vec();
        bytes.extend_from_slice(text.as_bytes());
        assert_eq!(rebuild_day(&bytes[..], day), rebuilt);
    }

    #[test]
    fn names_made_up_by_clients_stay_capped_when_a_day_is_rebuilt() {
        let mut text =
            String::from("2026-12-03T00:00:00.000Z INUSE feature=F licensed=2 in_use=0 at=start\n");
        for i in 0..day::MAX_UNKNOWN_FEATURES + 50 {
            text.push_str(&format!(
                "2026-12-03T01:00:00.000Z DENIED feature=X{i} user=u host=h display=\"\" handle=x count=1 reason=NO_SUCH_FEATURE\n"
            ));
        }
        text.push_str(
            "2026-12-03T02:00:00.000Z OUT feature=F user=a host=h display=\"\" handle=a count=1 kind=new\n",
        );
        let rebuilt = rebuild_day(text.as_bytes(), day::parse_day("2026-12-03").unwrap());
        // F, the first MAX_UNKNOWN_FEATURES names, and the row of the rest.
        assert_eq!(rebuilt.len(), day::MAX_UNKNOWN_FEATURES + 2);
        let f = rebuilt.iter().find(|r| r.feature == "F").unwrap();
        assert_eq!(f.summary.checkouts, 1);
        let other = rebuilt
            .iter()
            .find(|r| r.feature == day::OTHER_FEATURES)
            .unwrap();
        assert_eq!(other.summary.denials.values().sum::<u64>(), 50);
    }

    #[test]
    fn numbers_are_written_without_format() {
        assert_eq!(itoa(0).as_str(), "0");
        assert_eq!(itoa(u64::MAX).as_str(), "18446744073709551615");
    }
}
