//! The usage history: `usage.sqlite` in the state dir (schema in
//! docs/usage.md). Written only by the usage thread, one transaction per
//! batch, in WAL mode so readers (REPORT, `sqlite3`, pandas) never wait
//! for it nor it for them.

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::day::{day_text, DayRecord, DaySummary, Row};

/// The file's name in the state dir.
pub const DB_FILE: &str = "usage.sqlite";

/// The schema's version (`meta.schema_version`).
pub const SCHEMA_VERSION: u32 = 1;

/// Default retention of daily rows, in days (`--usage-retention-days`).
pub const DEFAULT_RETENTION_DAYS: u32 = 400;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS usage_daily (
    day              TEXT    NOT NULL,
    feature          TEXT    NOT NULL,
    licensed         INTEGER,
    peak_in_use      INTEGER NOT NULL,
    checkouts        INTEGER NOT NULL,
    renewals         INTEGER NOT NULL,
    denials          INTEGER NOT NULL,
    overdraft_peak   INTEGER NOT NULL,
    overdraft_grants INTEGER NOT NULL,
    full_use_ms      INTEGER NOT NULL,
    distinct_users   INTEGER NOT NULL,
    distinct_hosts   INTEGER NOT NULL,
    PRIMARY KEY (day, feature)
);
CREATE TABLE IF NOT EXISTS usage_denials (
    day     TEXT    NOT NULL,
    feature TEXT    NOT NULL,
    reason  TEXT    NOT NULL,
    count   INTEGER NOT NULL,
    PRIMARY KEY (day, feature, reason)
);
CREATE TABLE IF NOT EXISTS usage_users (
    day     TEXT NOT NULL,
    feature TEXT NOT NULL,
    user    TEXT NOT NULL,
    PRIMARY KEY (day, feature, user)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage_hosts (
    day     TEXT NOT NULL,
    feature TEXT NOT NULL,
    host    TEXT NOT NULL,
    PRIMARY KEY (day, feature, host)
) WITHOUT ROWID;
";

/// Opens (creating if need be) the history for writing: WAL mode, the
/// schema, its version checked.
pub fn open_for_writing(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    // WAL with synchronous=NORMAL: a committed batch survives a crash of
    // tallyd (kill -9); a power loss may lose the last batches.
    c.pragma_update(None, "synchronous", "NORMAL")?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    c.execute_batch(SCHEMA)?;
    let version: Option<String> = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match version {
        None => {
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )?;
        }
        Some(v) if v == SCHEMA_VERSION.to_string() => {}
        Some(v) => {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "{}: schema version {v}, this tallyd writes {SCHEMA_VERSION}",
                path.display()
            )))
        }
    }
    Ok(c)
}

/// Opens the history read-only (REPORT).
pub fn open_for_reading(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(c)
}

/// Writes one batch of rows in one transaction.
pub fn write_batch(c: &mut Connection, rows: &[Row]) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let mut daily = tx.prepare_cached(
            "INSERT OR REPLACE INTO usage_daily (day, feature, licensed, peak_in_use, checkouts,
                 renewals, denials, overdraft_peak, overdraft_grants, full_use_ms,
                 distinct_users, distinct_hosts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        let mut denial = tx.prepare_cached(
            "INSERT OR REPLACE INTO usage_denials (day, feature, reason, count) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut user = tx.prepare_cached(
            "INSERT OR IGNORE INTO usage_users (day, feature, user) VALUES (?1, ?2, ?3)",
        )?;
        let mut host = tx.prepare_cached(
            "INSERT OR IGNORE INTO usage_hosts (day, feature, host) VALUES (?1, ?2, ?3)",
        )?;
        for r in rows {
            let day = day_text(r.day);
            let s = &r.summary;
            let denials: u64 = s.denials.values().sum();
            daily.execute(params![
                day,
                r.feature,
                s.licensed.map(to_i64),
                to_i64(s.peak_in_use),
                to_i64(s.checkouts),
                to_i64(s.renewals),
                to_i64(denials),
                to_i64(s.overdraft_peak),
                to_i64(s.overdraft_grants),
                to_i64(s.full_use_ms),
                to_i64(s.distinct_users),
                to_i64(s.distinct_hosts),
            ])?;
            for (reason, n) in &s.denials {
                denial.execute(params![day, r.feature, reason, to_i64(*n)])?;
            }
            for u in &r.new_users {
                user.execute(params![day, r.feature, u])?;
            }
            for h in &r.new_hosts {
                host.execute(params![day, r.feature, h])?;
            }
        }
    }
    tx.commit()
}

/// Deletes the rows of days before `first_kept` (a UTC day number).
pub fn prune(c: &Connection, first_kept: u64) -> rusqlite::Result<usize> {
    let day = day_text(first_kept);
    let mut n = 0;
    for table in ["usage_daily", "usage_denials", "usage_users", "usage_hosts"] {
        n += c.execute(&format!("DELETE FROM {table} WHERE day < ?1"), [&day])?;
    }
    Ok(n)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// One feature's row of one day, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDay {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// The feature.
    pub feature: String,
    /// Its summary (denials by reason included).
    pub summary: DaySummary,
}

/// `feature`'s days from `from` (`YYYY-MM-DD`) on, oldest first: the day,
/// its peak in use and its licensed count (the status page's charts).
pub fn daily_peaks(
    c: &Connection,
    feature: &str,
    from: &str,
) -> rusqlite::Result<Vec<(String, u64, Option<u64>)>> {
    let mut q = c.prepare_cached(
        "SELECT day, peak_in_use, licensed FROM usage_daily
         WHERE feature = ?1 AND day >= ?2 ORDER BY day",
    )?;
    let rows = q.query_map([feature, from], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

/// The rows of the days `from..=to` (`YYYY-MM-DD`), by day then feature.
pub fn read_days(c: &Connection, from: &str, to: &str) -> rusqlite::Result<Vec<StoredDay>> {
    let mut q = c.prepare(
        "SELECT day, feature, licensed, peak_in_use, checkouts, renewals, overdraft_peak,
                overdraft_grants, full_use_ms, distinct_users, distinct_hosts
         FROM usage_daily WHERE day >= ?1 AND day <= ?2 ORDER BY day, feature",
    )?;
    let mut rows: Vec<StoredDay> = q
        .query_map([from, to], |r| {
            Ok(StoredDay {
                day: r.get(0)?,
                feature: r.get(1)?,
                summary: DaySummary {
                    licensed: r.get::<_, Option<i64>>(2)?.map(to_u64),
                    peak_in_use: to_u64(r.get(3)?),
                    checkouts: to_u64(r.get(4)?),
                    renewals: to_u64(r.get(5)?),
                    denials: Default::default(),
                    overdraft_peak: to_u64(r.get(6)?),
                    overdraft_grants: to_u64(r.get(7)?),
                    full_use_ms: to_u64(r.get(8)?),
                    distinct_users: to_u64(r.get(9)?),
                    distinct_hosts: to_u64(r.get(10)?),
                },
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut d = c.prepare(
        "SELECT day, feature, reason, count FROM usage_denials
         WHERE day >= ?1 AND day <= ?2 ORDER BY day, feature, reason",
    )?;
    let denials = d.query_map([from, to], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            to_u64(r.get(3)?),
        ))
    })?;
    // Rows are sorted by (day, feature), as the query orders them.
    for x in denials {
        let (day, feature, reason, n) = x?;
        let at = rows.binary_search_by(|r| {
            (r.day.as_str(), r.feature.as_str()).cmp(&(day.as_str(), feature.as_str()))
        });
        if let Ok(i) = at {
            rows[i].summary.denials.insert(reason, n);
        }
    }
    Ok(rows)
}

/// Distinct users and hosts of every feature over the days `from..=to`:
/// feature → (users, hosts), in two scans of the period.
pub fn distinct_by_feature(
    c: &Connection,
    from: &str,
    to: &str,
) -> rusqlite::Result<std::collections::HashMap<String, (u64, u64)>> {
    let mut out: std::collections::HashMap<String, (u64, u64)> = Default::default();
    for (table, column, hosts) in [
        ("usage_users", "user", false),
        ("usage_hosts", "host", true),
    ] {
        let mut q = c.prepare(&format!(
            "SELECT feature, COUNT(DISTINCT {column}) FROM {table}
             WHERE day >= ?1 AND day <= ?2 GROUP BY feature"
        ))?;
        let counts = q.query_map([from, to], |r| {
            Ok((r.get::<_, String>(0)?, to_u64(r.get::<_, i64>(1)?)))
        })?;
        for x in counts {
            let (feature, n) = x?;
            let e = out.entry(feature).or_default();
            if hosts {
                e.1 = n;
            } else {
                e.0 = n;
            }
        }
    }
    Ok(out)
}

/// Distinct users and hosts of `feature` over the days `from..=to`.
pub fn distinct_over(
    c: &Connection,
    feature: &str,
    from: &str,
    to: &str,
) -> rusqlite::Result<(u64, u64)> {
    let count = |table: &str, column: &str| -> rusqlite::Result<u64> {
        c.query_row(
            &format!(
                "SELECT COUNT(DISTINCT {column}) FROM {table} WHERE feature = ?1 AND day >= ?2 AND day <= ?3"
            ),
            [feature, from, to],
            |r| r.get::<_, i64>(0).map(to_u64),
        )
    };
    Ok((count("usage_users", "user")?, count("usage_hosts", "host")?))
}

/// Today's rows (the day `day`) with their users and hosts, to go on from
/// at start.
pub fn read_today(c: &Connection, day: &str) -> rusqlite::Result<Vec<DayRecord>> {
    let rows = read_days(c, day, day)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let list = |sql: &str| -> rusqlite::Result<Vec<String>> {
            let mut q = c.prepare(sql)?;
            let v = q
                .query_map([day, r.feature.as_str()], |x| x.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(v)
        };
        let users = list("SELECT user FROM usage_users WHERE day = ?1 AND feature = ?2")?;
        let hosts = list("SELECT host FROM usage_hosts WHERE day = ?1 AND feature = ?2")?;
        out.push(DayRecord {
            feature: r.feature,
            summary: r.summary,
            users,
            hosts,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::day::parse_day;

    fn row(day: &str, feature: &str, peak: u64, users: &[&str]) -> Row {
        Row {
            day: parse_day(day).unwrap(),
            feature: feature.into(),
            summary: DaySummary {
                licensed: Some(5),
                peak_in_use: peak,
                checkouts: 2,
                denials: [("ALL_IN_USE".to_string(), 3)].into(),
                distinct_users: users.len() as u64,
                distinct_hosts: 1,
                ..DaySummary::default()
            },
            new_users: users.iter().map(|u| u.to_string()).collect(),
            new_hosts: vec!["pc1".into()],
        }
    }

    #[test]
    fn batches_read_back_and_old_days_are_pruned() {
        let dir = std::env::temp_dir().join(format!("tally-usage-db-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(DB_FILE);
        let mut c = open_for_writing(&path).unwrap();
        write_batch(
            &mut c,
            &[
                row("2026-01-01", "F", 1, &["old"]),
                row("2026-12-02", "F", 4, &["alice", "bob"]),
                row("2026-12-03", "F", 2, &["alice", "carol"]),
            ],
        )
        .unwrap();
        // A later batch of the same day replaces its row, adds its users.
        write_batch(&mut c, &[row("2026-12-03", "F", 3, &["dave"])]).unwrap();
        let r = open_for_reading(&path).unwrap();
        let days = read_days(&r, "2026-12-01", "2026-12-31").unwrap();
        let peaks: Vec<(&str, u64)> = days
            .iter()
            .map(|d| (d.day.as_str(), d.summary.peak_in_use))
            .collect();
        assert_eq!(peaks, [("2026-12-02", 4), ("2026-12-03", 3)]);
        assert_eq!(days[0].summary.denials.get("ALL_IN_USE"), Some(&3));
        assert_eq!(
            distinct_over(&r, "F", "2026-12-01", "2026-12-31").unwrap(),
            (4, 1)
        );
        let all = distinct_by_feature(&r, "2026-12-01", "2026-12-31").unwrap();
        assert_eq!(all.get("F"), Some(&(4, 1)));
        assert_eq!(all.len(), 1);
        let today = read_today(&r, "2026-12-03").unwrap();
        assert_eq!(today[0].users, ["alice", "carol", "dave"]);
        assert_eq!(prune(&c, parse_day("2026-12-01").unwrap()).unwrap(), 4);
        assert!(read_days(&r, "2000-01-01", "2026-11-30")
            .unwrap()
            .is_empty());
        // Reopening finds the schema version it wrote.
        drop(c);
        assert!(open_for_writing(&path).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
