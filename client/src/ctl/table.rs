//! `tallyctl status`: a short human table of the STATUS reply (one row per
//! pool, its holders indented below). Not a stable format: scripts should
//! use `status --json` or `lmstat -a`.

use std::fmt;

use chrono::{DateTime, TimeZone};

use super::lmstat::{name, text};
use crate::status::Status;

/// The table for `status`, times in `now`'s time zone.
pub fn status_table<Tz: TimeZone>(status: &Status, now: &DateTime<Tz>) -> String
where
    Tz::Offset: fmt::Display,
{
    let s = &status.server;
    let mut out = format!(
        "{} {} on {}, port {}, license file {}\nvendors {}; up {}; {} connection{}; {} log line{} dropped\n\n",
        name(&s.name),
        name(&s.version),
        name(&s.host),
        s.port,
        text(&s.license_file),
        if s.vendors.is_empty() {
            "-".to_string()
        } else {
            s.vendors.iter().map(|v| name(v)).collect::<Vec<_>>().join(",")
        },
        duration(s.now_ms.saturating_sub(s.started_ms) / 1000),
        s.connections,
        if s.connections == 1 { "" } else { "s" },
        s.log_dropped,
        if s.log_dropped == 1 { "" } else { "s" },
    );
    let mut rows = vec![[
        "FEATURE".to_string(),
        "VERSION".to_string(),
        "VENDOR".to_string(),
        "EXPIRY".to_string(),
        "TOTAL".to_string(),
        "IN USE".to_string(),
        "LINE".to_string(),
        "NOTE".to_string(),
    ]];
    for f in &status.features {
        let mut note = Vec::new();
        if f.expired {
            note.push("expired".to_string());
        }
        if f.startup {
            note.push("startup".to_string());
        }
        if f.overdraft_limit > 0 {
            note.push(format!("overdraft {}/{}", f.overdraft, f.overdraft_limit));
        }
        if f.dup_group != "NONE" {
            note.push(format!("DUP_GROUP={}", name(&f.dup_group)));
        }
        rows.push([
            name(&f.name),
            name(&f.version),
            name(&f.vendor),
            name(&f.expiry),
            f.total
                .map_or_else(|| "uncounted".to_string(), |n| n.to_string()),
            f.in_use.to_string(),
            f.line.to_string(),
            note.join(", "),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, (cell, w)) in row.iter().zip(widths).enumerate() {
            // Numbers (TOTAL, IN USE, LINE) right-aligned.
            if (4..=6).contains(&c) {
                line.push_str(&format!("{cell:>w$}  "));
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if i == 0 {
            continue;
        }
        for h in &status.features[i - 1].holders {
            let mut line = format!(
                "    {}@{} display={} ticket={} count={} since {}",
                name(&h.user),
                name(&h.host),
                if h.display.is_empty() {
                    "-".to_string()
                } else {
                    name(&h.display)
                },
                h.ticket,
                h.count,
                time(now, h.since_ms)
            );
            if h.linger_ms > 0 {
                line.push_str(&format!(" linger {}", duration(h.linger_ms.div_ceil(1000))));
            }
            match h.deadline_ms {
                Some(d) => line.push_str(&format!(" until {}", time(now, d))),
                None => line.push_str(" until check-in"),
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// `2026-04-22 11:08:05` in `now`'s time zone.
fn time<Tz: TimeZone>(now: &DateTime<Tz>, ms: u64) -> String
where
    Tz::Offset: fmt::Display,
{
    i64::try_from(ms)
        .ok()
        .and_then(|ms| now.timezone().timestamp_millis_opt(ms).single())
        .map_or_else(
            || "?".to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
        )
}

/// `2d 3h 4m`, `5m 6s`, `7s`.
fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(7), "7s");
        assert_eq!(duration(366), "6m 6s");
        assert_eq!(duration(1_814_400), "21d 0h 0m");
    }
}
