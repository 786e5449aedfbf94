//! The daily usage summaries, computed from usage events: pure code, time
//! as an argument (no clock, no I/O), so a scripted day is a unit test.
//!
//! An [`Aggregator`] keeps, per feature, what is in use now (seeded from
//! the engine's counts at start, so licenses recovered from the journal
//! count) and the summary of the current UTC day ([`DaySummary`]). Every
//! event changes the in-use figure and the day's counters at once, so the
//! peak is exact (not sampled). [`Aggregator::advance`] closes the day at
//! UTC midnight: the intervals at full use are split there, and the next
//! day opens with the in-use figure of the moment as its first peak.
//! [`Aggregator::take`] hands out the rows changed since the last call
//! (the usage thread writes them to SQLite, one transaction per batch).
//!
//! Invariants: `peak_in_use >= in_use` of the current day at every
//! moment; `full_use_ms` of a day is at most [`DAY_MS`]; a day's rows
//! once handed out with a later day's are never changed again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::debuglog::{Cause, OutKind};

/// A UTC day, in ms.
pub const DAY_MS: u64 = 86_400_000;

/// Unknown feature names (denials of features the license file does not
/// have) tracked per day; the denials of any more are counted under
/// [`OTHER_FEATURES`], so a client inventing names cannot grow the
/// history without bound.
pub const MAX_UNKNOWN_FEATURES: usize = 256;

/// The row that counts denials of unknown features past
/// [`MAX_UNKNOWN_FEATURES`].
pub const OTHER_FEATURES: &str = "(other unknown features)";

/// The UTC day number (days since 1970-01-01) of a Unix ms.
pub fn day_of(ms: u64) -> u64 {
    ms / DAY_MS
}

/// `YYYY-MM-DD` of a UTC day number.
pub fn day_text(day: u64) -> String {
    chrono::DateTime::from_timestamp((day * (DAY_MS / 1000)) as i64, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The UTC day number of `YYYY-MM-DD` (exactly: `2026-1-1` is not one).
pub fn parse_day(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let shaped = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shaped {
        return None;
    }
    let d = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let secs = d.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
    u64::try_from(secs).ok().map(|s| s * 1000 / DAY_MS)
}

/// What one usage event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// Licenses went out (or a held one was renewed).
    Grant {
        /// New, renewal, untracked (startup, uncounted), reconciled.
        kind: OutKind,
        /// Beyond the pool's count.
        overdraft: bool,
        /// Licenses.
        count: u32,
    },
    /// Licenses came back.
    Release {
        /// How.
        cause: Cause,
        /// Licenses.
        count: u32,
    },
    /// A checkout was refused, for this reason (`Reason::name`).
    Denial {
        /// The reason's wire name (`ALL_IN_USE`).
        reason: &'a str,
    },
}

/// One usage event, as the aggregator reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageEvent<'a> {
    /// Unix ms.
    pub at_ms: u64,
    /// The feature's name.
    pub feature: &'a str,
    /// Whether the license file has the feature (false: a denial of an
    /// unknown name).
    pub known: bool,
    /// Who.
    pub user: &'a str,
    /// From where.
    pub host: &'a str,
    /// What happened.
    pub change: Change<'a>,
}

/// One feature's summary of one UTC day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySummary {
    /// Licenses in the file (the last figure of the day; `None`: uncounted
    /// or not in the file).
    pub licensed: Option<u64>,
    /// Most licenses in use at one moment.
    pub peak_in_use: u64,
    /// Grants of new licenses (renewals not included).
    pub checkouts: u64,
    /// Renewals of a license the holder had.
    pub renewals: u64,
    /// Denials, by reason (`ALL_IN_USE`, ...).
    pub denials: BTreeMap<String, u64>,
    /// Most licenses in use beyond `licensed` at one moment.
    pub overdraft_peak: u64,
    /// Grants that went beyond the pool's count.
    pub overdraft_grants: u64,
    /// Time with every license in use (in use >= licensed), in ms.
    pub full_use_ms: u64,
    /// Distinct users granted a license that day.
    pub distinct_users: u64,
    /// Distinct hosts granted a license that day.
    pub distinct_hosts: u64,
}

/// A row handed to the writer: the day's summary as of the batch, and
/// the users and hosts first seen that day since the last batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The UTC day number.
    pub day: u64,
    /// The feature.
    pub feature: String,
    /// Its summary so far.
    pub summary: DaySummary,
    /// Users first seen this day since the last batch.
    pub new_users: Vec<String>,
    /// Hosts first seen this day since the last batch.
    pub new_hosts: Vec<String>,
}

/// One feature's day read back (from the database or the report log),
/// with its users and hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRecord {
    /// The feature.
    pub feature: String,
    /// Its summary.
    pub summary: DaySummary,
    /// Users counted.
    pub users: Vec<String>,
    /// Hosts counted.
    pub hosts: Vec<String>,
}

/// One feature now.
#[derive(Debug, Default)]
struct Live {
    in_use: u64,
    licensed: Option<u64>,
    /// Overdraft licenses out, as the overdraft grants say (never more
    /// than what is in use beyond `licensed`).
    over: u64,
    /// Since when every license is in use, if it is.
    full_since: Option<u64>,
    day: DaySummary,
    users: BTreeSet<String>,
    hosts: BTreeSet<String>,
    new_users: Vec<String>,
    new_hosts: Vec<String>,
    /// Changed since the last [`Aggregator::take`].
    dirty: bool,
}

impl Live {
    fn is_full(&self) -> bool {
        matches!(self.licensed, Some(n) if n > 0 && self.in_use >= n)
    }

    /// The in-use figure or the licensed count changed at `now`: the
    /// peaks and the interval at full use follow.
    fn changed(&mut self, now: u64) {
        self.dirty = true;
        // Each loop hands its events over after its request, so a grant on
        // one loop of a license another loop's check-in just freed may come
        // before that check-in: `in_use` is then one above the truth for a
        // moment. Without an overdraft grant the truth is never above the
        // licensed count, so the peaks are taken at most up to it (plus
        // the overdraft licenses out); no overdraft that never happened.
        let seen = match self.licensed {
            Some(n) => {
                self.over = self.over.min(self.in_use.saturating_sub(n));
                self.in_use.min(n + self.over)
            }
            None => self.in_use,
        };
        self.day.peak_in_use = self.day.peak_in_use.max(seen);
        if let Some(n) = self.licensed {
            self.day.overdraft_peak = self.day.overdraft_peak.max(seen.saturating_sub(n));
        }
        match (self.full_since, self.is_full()) {
            (None, true) => self.full_since = Some(now),
            (Some(since), false) => {
                self.day.full_use_ms += now.saturating_sub(since);
                self.full_since = None;
            }
            _ => {}
        }
    }

    fn saw(&mut self, user: &str, host: &str) {
        if !self.users.contains(user) {
            self.users.insert(user.to_string());
            self.new_users.push(user.to_string());
            self.day.distinct_users = self.users.len() as u64;
        }
        if !self.hosts.contains(host) {
            self.hosts.insert(host.to_string());
            self.new_hosts.push(host.to_string());
            self.day.distinct_hosts = self.hosts.len() as u64;
        }
    }

    /// The day's summary with the open interval at full use counted up
    /// to `now`.
    fn summary_at(&self, now: u64) -> DaySummary {
        let mut s = self.day.clone();
        if let Some(since) = self.full_since {
            s.full_use_ms += now.saturating_sub(since);
        }
        s.licensed = self.licensed;
        s
    }

    fn row(&mut self, day: u64, feature: &str, now: u64) -> Row {
        self.dirty = false;
        Row {
            day,
            feature: feature.to_string(),
            summary: self.summary_at(now),
            new_users: std::mem::take(&mut self.new_users),
            new_hosts: std::mem::take(&mut self.new_hosts),
        }
    }

    /// Opens the next day at `midnight`: what is in use now is its first
    /// peak; an interval at full use goes on from midnight.
    fn next_day(&mut self, midnight: u64) {
        self.day = DaySummary::default();
        self.users.clear();
        self.hosts.clear();
        self.new_users.clear();
        self.new_hosts.clear();
        if self.full_since.is_some() {
            self.full_since = Some(midnight);
        }
        self.changed(midnight);
    }
}

/// Every feature's use now and its summary of the current UTC day.
#[derive(Debug)]
pub struct Aggregator {
    /// The current UTC day.
    day: u64,
    /// The latest time seen (events from several loops may come a ms out
    /// of order: time never goes back).
    now: u64,
    features: HashMap<String, Live>,
    /// Unknown feature names seen today.
    unknown: usize,
    /// Rows of days closed since the last [`Aggregator::take`].
    closed: Vec<Row>,
}

impl Aggregator {
    /// An aggregator whose day is the one of `now`.
    pub fn new(now: u64) -> Aggregator {
        Aggregator {
            day: day_of(now),
            now,
            features: HashMap::new(),
            unknown: 0,
            closed: Vec::new(),
        }
    }

    /// The current UTC day.
    pub fn day(&self) -> u64 {
        self.day
    }

    /// What is in use of `feature` now.
    pub fn in_use(&self, feature: &str) -> u64 {
        self.features.get(feature).map_or(0, |l| l.in_use)
    }

    /// Today's summary of `feature` as of `now` (`None`: nothing known).
    pub fn today(&self, feature: &str) -> Option<DaySummary> {
        self.features.get(feature).map(|l| l.summary_at(self.now))
    }

    /// Goes on with today's summary of `feature` from `s` (read back at
    /// start from the database or the report log): each figure becomes
    /// the larger of the two, the users and hosts the union. Call before
    /// [`Aggregator::seed`].
    pub fn merge(&mut self, r: DayRecord) {
        let DayRecord {
            feature,
            summary: s,
            users,
            hosts,
        } = r;
        let live = self.features.entry(feature.to_string()).or_default();
        let d = &mut live.day;
        if live.licensed.is_none() {
            live.licensed = s.licensed;
        }
        d.peak_in_use = d.peak_in_use.max(s.peak_in_use);
        d.checkouts = d.checkouts.max(s.checkouts);
        d.renewals = d.renewals.max(s.renewals);
        for (reason, n) in s.denials {
            let mine = d.denials.entry(reason).or_default();
            *mine = (*mine).max(n);
        }
        d.overdraft_peak = d.overdraft_peak.max(s.overdraft_peak);
        d.overdraft_grants = d.overdraft_grants.max(s.overdraft_grants);
        d.full_use_ms = d.full_use_ms.max(s.full_use_ms);
        for u in users {
            if live.users.insert(u.clone()) {
                live.new_users.push(u);
            }
        }
        for h in hosts {
            if live.hosts.insert(h.clone()) {
                live.new_hosts.push(h);
            }
        }
        d.distinct_users = live.users.len() as u64;
        d.distinct_hosts = live.hosts.len() as u64;
        live.dirty = true;
        // An interval at full use open when tallyd stopped is not counted
        // on (it starts again at the seed if still full).
        live.full_since = None;
    }

    /// Every feature's (name, licensed, in use), by name.
    pub fn live(&self) -> Vec<(String, Option<u64>, u64)> {
        let mut v: Vec<_> = self
            .features
            .iter()
            .map(|(n, l)| (n.clone(), l.licensed, l.in_use))
            .collect();
        v.sort();
        v
    }

    /// Today's summaries as of the latest time seen, with their users and
    /// hosts, by name.
    pub fn export(&self) -> Vec<DayRecord> {
        let mut v: Vec<_> = self
            .features
            .iter()
            .map(|(n, l)| DayRecord {
                feature: n.clone(),
                summary: l.summary_at(self.now),
                users: l.users.iter().cloned().collect(),
                hosts: l.hosts.iter().cloned().collect(),
            })
            .collect();
        v.sort_by(|a, b| a.feature.cmp(&b.feature));
        v
    }

    /// `feature` has `licensed` licenses and `in_use` of them out at `now`
    /// (the engine's counts at start or after a REREAD).
    pub fn seed(&mut self, feature: &str, licensed: Option<u64>, in_use: u64, now: u64) {
        self.advance(now);
        let now = self.now;
        let live = self.features.entry(feature.to_string()).or_default();
        live.licensed = licensed;
        live.in_use = in_use;
        // Beyond the count at start: overdraft licenses (recovered).
        live.over = licensed.map_or(0, |n| in_use.saturating_sub(n));
        live.changed(now);
    }

    /// The license file now says `licensed` for `feature` (a REREAD); what
    /// is in use stays.
    pub fn set_licensed(&mut self, feature: &str, licensed: Option<u64>, now: u64) {
        self.advance(now);
        let now = self.now;
        let live = self.features.entry(feature.to_string()).or_default();
        if live.licensed != licensed {
            live.licensed = licensed;
            live.changed(now);
        }
    }

    /// tallyd stopped at the latest time seen (the last line of a report
    /// log read back at start): intervals at full use end there, not
    /// when it starts again.
    pub fn stopped(&mut self) {
        let now = self.now;
        for live in self.features.values_mut() {
            if let Some(since) = live.full_since.take() {
                live.day.full_use_ms += now.saturating_sub(since);
            }
        }
    }

    /// Applies one event.
    pub fn apply(&mut self, e: &UsageEvent<'_>) {
        self.advance(e.at_ms);
        let now = self.now;
        let name = if e.known || self.features.contains_key(e.feature) {
            e.feature
        } else if self.unknown < MAX_UNKNOWN_FEATURES {
            self.unknown += 1;
            e.feature
        } else {
            OTHER_FEATURES
        };
        let live = match self.features.get_mut(name) {
            Some(l) => l,
            None => self.features.entry(name.to_string()).or_default(),
        };
        live.dirty = true;
        match e.change {
            Change::Grant {
                kind,
                overdraft,
                count,
            } => {
                live.saw(e.user, e.host);
                match kind {
                    OutKind::Renewal => live.day.renewals += 1,
                    OutKind::New | OutKind::Reconciled | OutKind::Borrow => {
                        live.day.checkouts += 1;
                        live.in_use += u64::from(count);
                    }
                    OutKind::Untracked => live.day.checkouts += 1,
                }
                if overdraft && kind != OutKind::Renewal {
                    live.day.overdraft_grants += 1;
                    if kind != OutKind::Untracked {
                        live.over += u64::from(count);
                    }
                }
                live.changed(now);
            }
            Change::Release { count, .. } => {
                live.in_use = live.in_use.saturating_sub(u64::from(count));
                live.changed(now);
            }
            Change::Denial { reason } => match live.day.denials.get_mut(reason) {
                Some(n) => *n += 1,
                None => {
                    live.day.denials.insert(reason.to_string(), 1);
                }
            },
        }
    }

    /// Time is `now`: closes every UTC day that ended before it.
    pub fn advance(&mut self, now: u64) {
        self.now = self.now.max(now);
        while day_of(self.now) > self.day {
            let midnight = (self.day + 1) * DAY_MS;
            let day = self.day;
            for (name, live) in &mut self.features {
                let row = live.row(day, name, midnight);
                self.closed.push(row);
                live.next_day(midnight);
            }
            self.day += 1;
            self.unknown = 0;
            // A feature with nothing in use and nothing licensed (an
            // unknown name) is not carried into the new day.
            self.features
                .retain(|_, l| l.in_use > 0 || l.licensed.is_some());
        }
    }

    /// The rows changed since the last call: the days closed since, then
    /// today's changed rows as of `now`.
    pub fn take(&mut self, now: u64) -> Vec<Row> {
        self.advance(now);
        let mut rows = std::mem::take(&mut self.closed);
        let (day, now) = (self.day, self.now);
        let mut names: Vec<&String> = self
            .features
            .iter()
            .filter(|(_, l)| l.dirty || l.full_since.is_some())
            .map(|(n, _)| n)
            .collect();
        names.sort();
        let names: Vec<String> = names.into_iter().cloned().collect();
        for name in names {
            if let Some(live) = self.features.get_mut(&name) {
                rows.push(live.row(day, &name, now));
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests;
