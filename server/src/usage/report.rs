//! The compliance report: the usage history of a period of UTC days, per
//! feature per day and in total, with the server's facts (docs/usage.md,
//! "The report"). A plain function of the database: REPORT, `tallyctl
//! report` and the upload build the same JSON.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::day::{day_of, day_text, parse_day, DaySummary};
use super::db;

/// The report's format version (`schema`).
pub const REPORT_SCHEMA: u32 = 1;

/// Days in a period whose start is not given: the 30 days ending with
/// `to`.
pub const DEFAULT_PERIOD_DAYS: u64 = 30;

/// The server the report is of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportServer {
    /// `tallyd`.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its host name (as STATUS says).
    pub host: String,
    /// The license file it serves.
    pub license_file: String,
    /// Its host id, if known (`None`: tallyd does not read one yet).
    pub hostid: Option<String>,
}

/// One day of one feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayReport {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Its figures.
    #[serde(flatten)]
    pub summary: DaySummary,
}

/// One feature over the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureReport {
    /// The feature.
    pub feature: String,
    /// Over the whole period: `licensed` of its last day, the highest
    /// peaks, the sums of the counts and times, and the users and hosts
    /// distinct over the period (not the sum of each day's).
    pub totals: DaySummary,
    /// Each day with a row, in order.
    pub days: Vec<DayReport>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_SCHEMA`].
    pub schema: u32,
    /// The server.
    pub server: ReportServer,
    /// When it was built (Unix ms).
    pub generated_ms: u64,
    /// First day (`YYYY-MM-DD`, UTC).
    pub from: String,
    /// Last day, included.
    pub to: String,
    /// Every feature with a row in the period, by name.
    pub features: Vec<FeatureReport>,
}

/// The period `from..=to` as `YYYY-MM-DD`: `to` defaults to today (UTC,
/// of `now_ms`), `from` to [`DEFAULT_PERIOD_DAYS`] days ending with `to`.
pub fn period(
    from: Option<&str>,
    to: Option<&str>,
    now_ms: u64,
) -> Result<(String, String), String> {
    let day = |s: &str, what: &str| {
        parse_day(s).ok_or_else(|| format!("{what}={s} is not a date (YYYY-MM-DD)"))
    };
    let to = match to {
        Some(t) => day(t, "to")?,
        None => day_of(now_ms),
    };
    let from = match from {
        Some(f) => day(f, "from")?,
        None => to.saturating_sub(DEFAULT_PERIOD_DAYS - 1),
    };
    if from > to {
        return Err(format!(
            "from={} is after to={}",
            day_text(from),
            day_text(to)
        ));
    }
    Ok((day_text(from), day_text(to)))
}

/// Builds the report of the days `from..=to` (`YYYY-MM-DD`) from the
/// history.
pub fn build_report(
    db: &Connection,
    from: &str,
    to: &str,
    server: ReportServer,
    generated_ms: u64,
) -> rusqlite::Result<Report> {
    let mut by_feature: BTreeMap<String, Vec<DayReport>> = BTreeMap::new();
    for row in db::read_days(db, from, to)? {
        by_feature.entry(row.feature).or_default().push(DayReport {
            day: row.day,
            summary: row.summary,
        });
    }
    let distinct = db::distinct_by_feature(db, from, to)?;
    let mut features = Vec::with_capacity(by_feature.len());
    for (feature, days) in by_feature {
        let mut t = DaySummary::default();
        for d in &days {
            let s = &d.summary;
            t.licensed = s.licensed;
            t.peak_in_use = t.peak_in_use.max(s.peak_in_use);
            t.checkouts += s.checkouts;
            t.renewals += s.renewals;
            for (reason, n) in &s.denials {
                *t.denials.entry(reason.clone()).or_default() += n;
            }
            t.overdraft_peak = t.overdraft_peak.max(s.overdraft_peak);
            t.overdraft_grants += s.overdraft_grants;
            t.full_use_ms += s.full_use_ms;
        }
        (t.distinct_users, t.distinct_hosts) = distinct.get(&feature).copied().unwrap_or((0, 0));
        features.push(FeatureReport {
            feature,
            totals: t,
            days,
        });
    }
    Ok(Report {
        schema: REPORT_SCHEMA,
        server,
        generated_ms,
        from: from.to_string(),
        to: to.to_string(),
        features,
    })
}
