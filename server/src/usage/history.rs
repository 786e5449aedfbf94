//! The status page's charts from the usage history: a feature's daily
//! peaks of the last days, read from `usage.sqlite` on the HTTP thread
//! (read-only, one connection kept between pages), never on a loop.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use rusqlite::Connection;
use tally_core::clock::Clock;

use super::day::{day_of, day_text};
use super::db;
use crate::web::{DailyPeak, UsageHistory};

/// The page's [`UsageHistory`] of the database at `path`, with "today" from
/// `clock`. A database that cannot be read gives no points (the chart then
/// says it has none); the next page tries again.
pub fn page_history(path: PathBuf, clock: Arc<dyn Clock>) -> UsageHistory {
    let conn: Mutex<Option<Connection>> = Mutex::new(None);
    UsageHistory::new(move |feature, days| {
        let today = day_of(clock.now_ms());
        let from = day_text(today.saturating_sub(u64::from(days.max(1)) - 1));
        let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
        if conn.is_none() {
            *conn = db::open_for_reading(&path).ok();
        }
        let Some(c) = conn.as_ref() else {
            return Vec::new();
        };
        match db::daily_peaks(c, feature, &from) {
            Ok(rows) => rows
                .into_iter()
                .filter_map(|(day, peak, licensed)| {
                    Some(DailyPeak {
                        day: NaiveDate::parse_from_str(&day, "%Y-%m-%d").ok()?,
                        peak: u32::try_from(peak).unwrap_or(u32::MAX),
                        licensed: licensed.map_or(0, |l| u32::try_from(l).unwrap_or(u32::MAX)),
                    })
                })
                .collect(),
            Err(_) => {
                // Reopened at the next call (a replaced or damaged file).
                *conn = None;
                Vec::new()
            }
        }
    })
}
