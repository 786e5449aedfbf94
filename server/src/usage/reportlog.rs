//! The report log's lines: written by the usage sink, read back at start
//! to rebuild today's summaries (docs/usage.md, "The report log").
//!
//! One event per line, fields separated by one space:
//!
//! ```text
//! 2026-12-03T14:05:06.123Z OUT feature=F version=1.0 user=alice host=pc1 display="" handle=h1 count=1 kind=new
//! 2026-12-03T14:05:07.000Z OUT feature=F version=1.0 user=bob host=pc2 display=:0 handle=h2 count=1 kind=new overdraft=1
//! 2026-12-03T14:06:00.000Z IN feature=F version=1.0 user=alice host=pc1 display="" handle=h1 count=1 cause=linger_expiry
//! 2026-12-03T14:06:01.000Z DENIED feature=F version=1.0 user=carol host=pc3 display="" handle=h3 count=1 reason=ALL_IN_USE
//! 2026-12-03T00:00:00.000Z INUSE feature=F licensed=10 in_use=3 at=midnight
//! ```
//!
//! A value that is empty or holds a byte other than printable ASCII
//! (`!`..`~`) or holds `"` or `\` is written in double quotes, with `\"`,
//! `\\` and `\xHH` for those bytes; any other value is written as is.
//! `INUSE` lines say what was in use of a feature and how many licenses
//! it has (`licensed=uncounted` for an uncounted one): at start
//! (`at=start`), after a REREAD (`at=reread`) and at every UTC midnight
//! (`at=midnight`), so the lines of one day are enough to rebuild that
//! day's summary.

use std::io::Write;

use super::day::{Change, DAY_MS};
use crate::debuglog::{Cause, OutKind};

/// Writes `2026-12-03T14:05:06.123Z` for a Unix ms. `cache` keeps the
/// text up to the seconds of one Unix second (a date conversion per line
/// would cost more than the rest of the line).
pub(crate) fn write_stamp(out: &mut impl Write, cache: &mut (u64, [u8; 19]), at_ms: u64) {
    let second = at_ms / 1000;
    if cache.0 != second || cache.1[0] == 0 {
        let t = chrono::DateTime::from_timestamp(second as i64, 0).unwrap_or_default();
        let mut text = [0u8; 19];
        let _ = write!(&mut text[..], "{}", t.format("%Y-%m-%dT%H:%M:%S"));
        *cache = (second, text);
    }
    let ms = at_ms % 1000;
    // Written as bytes: a `write!` per field cost more than the rest of
    // the line (bench/run --only reportlog).
    let tail = [
        b'.',
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ];
    let _ = out.write_all(&cache.1);
    let _ = out.write_all(&tail);
}

/// Writes ` key=value`, quoting the value if it must be.
pub(crate) fn write_field(out: &mut impl Write, key: &str, value: &str) {
    let _ = out.write_all(b" ");
    let _ = out.write_all(key.as_bytes());
    let _ = out.write_all(b"=");
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if plain {
        let _ = out.write_all(value.as_bytes());
        return;
    }
    let _ = out.write_all(b"\"");
    for b in value.bytes() {
        let _ = match b {
            b'"' => out.write_all(b"\\\""),
            b'\\' => out.write_all(b"\\\\"),
            b' ' => out.write_all(b" "),
            b if b.is_ascii_graphic() => out.write_all(&[b]),
            b => write!(out, "\\x{b:02x}"),
        };
    }
    let _ = out.write_all(b"\"");
}

/// One line read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    /// OUT / IN / DENIED.
    Event {
        /// Unix ms.
        at_ms: u64,
        /// The feature.
        feature: String,
        /// Who.
        user: String,
        /// From where.
        host: String,
        /// What (reasons as their wire names).
        change: OwnedChange,
    },
    /// INUSE.
    InUse {
        /// Unix ms.
        at_ms: u64,
        /// The feature.
        feature: String,
        /// Licenses (`None`: uncounted).
        licensed: Option<u64>,
        /// In use.
        in_use: u64,
        /// Written at a start (`at=start`), not at midnight or a REREAD.
        start: bool,
    },
}

/// [`Change`] with its reason owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OwnedChange {
    /// OUT.
    Grant {
        /// Its kind.
        kind: OutKind,
        /// Beyond the count.
        overdraft: bool,
        /// Licenses.
        count: u32,
    },
    /// IN.
    Release {
        /// How.
        cause: Cause,
        /// Licenses.
        count: u32,
    },
    /// DENIED.
    Denial {
        /// The reason's wire name.
        reason: String,
    },
}

impl OwnedChange {
    /// As the aggregator takes it.
    pub(crate) fn as_change(&self) -> Change<'_> {
        match self {
            OwnedChange::Grant {
                kind,
                overdraft,
                count,
            } => Change::Grant {
                kind: *kind,
                overdraft: *overdraft,
                count: *count,
            },
            OwnedChange::Release { cause, count } => Change::Release {
                cause: *cause,
                count: *count,
            },
            OwnedChange::Denial { reason } => Change::Denial { reason },
        }
    }
}

/// Parses `2026-12-03T14:05:06.123Z`.
fn parse_stamp(s: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    u64::try_from(t.timestamp_millis()).ok()
}

/// Splits the fields after the event word: `key=value` pairs, values
/// unquoted. `None` for a malformed line.
fn fields(mut rest: &str) -> Option<Vec<(&str, String)>> {
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            return Some(out);
        }
        let (key, after) = rest.split_once('=')?;
        if let Some(q) = after.strip_prefix('"') {
            let mut value = Vec::new();
            let bytes = q.as_bytes();
            let mut i = 0;
            loop {
                match *bytes.get(i)? {
                    b'"' => break,
                    b'\\' => {
                        match *bytes.get(i + 1)? {
                            b'x' => {
                                let hex = q.get(i + 2..i + 4)?;
                                value.push(u8::from_str_radix(hex, 16).ok()?);
                                i += 2;
                            }
                            b => value.push(b),
                        }
                        i += 2;
                    }
                    b => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
            out.push((key, String::from_utf8_lossy(&value).into_owned()));
            rest = &q[i + 1..];
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            out.push((key, after[..end].to_string()));
            rest = &after[end..];
        }
    }
}

/// Reads one report log line (`None`: not one of ours, or malformed).
pub(crate) fn parse_line(line: &str) -> Option<Line> {
    let (stamp, rest) = line.split_once(' ')?;
    let at_ms = parse_stamp(stamp)?;
    let (word, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let f = fields(rest)?;
    let get = |k: &str| f.iter().find(|(key, _)| *key == k).map(|(_, v)| v.as_str());
    let feature = get("feature")?.to_string();
    if word == "INUSE" {
        let licensed = match get("licensed")? {
            "uncounted" => None,
            n => Some(n.parse().ok()?),
        };
        return Some(Line::InUse {
            at_ms,
            feature,
            licensed,
            in_use: get("in_use")?.parse().ok()?,
            start: get("at") == Some("start"),
        });
    }
    let count = get("count")?.parse().ok()?;
    let change = match word {
        "OUT" => OwnedChange::Grant {
            kind: OutKind::from_name(get("kind")?)?,
            overdraft: get("overdraft") == Some("1"),
            count,
        },
        "IN" => OwnedChange::Release {
            cause: Cause::from_name(get("cause")?)?,
            count,
        },
        "DENIED" => OwnedChange::Denial {
            reason: get("reason")?.to_string(),
        },
        _ => return None,
    };
    Some(Line::Event {
        at_ms,
        feature,
        user: get("user")?.to_string(),
        host: get("host")?.to_string(),
        change,
    })
}

/// The lines of the UTC day `day` read from a report log, in order, one
/// at a time: only lines stamped that day are parsed (a cheap prefix test
/// first, so a long log costs a scan, not its size in memory, and a busy
/// day is replayed without being held whole); lines that are not UTF-8 or
/// do not parse are skipped.
pub(crate) fn lines_of_day(log: impl std::io::BufRead, day: u64) -> impl Iterator<Item = Line> {
    let (from, to) = (day * DAY_MS, (day + 1) * DAY_MS);
    let prefix = super::day::day_text(day);
    log.split(b'\n')
        .map_while(Result::ok)
        .filter(move |l| l.starts_with(prefix.as_bytes()))
        .filter_map(|l| std::str::from_utf8(&l).ok().and_then(parse_line))
        .filter(move |l| {
            let at = match l {
                Line::Event { at_ms, .. } | Line::InUse { at_ms, .. } => *at_ms,
            };
            (from..to).contains(&at)
        })
}

/// Every line of `bytes` that parses.
#[cfg(test)]
fn read_back(bytes: &[u8]) -> std::io::Result<Vec<Line>> {
    let text = std::str::from_utf8(bytes).map_err(std::io::Error::other)?;
    Ok(text.lines().filter_map(parse_line).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_read_back() {
        let mut v = Vec::new();
        write_stamp(&mut v, &mut (0, [0; 19]), 1_796_306_706_123);
        v.extend_from_slice(b" DENIED");
        write_field(&mut v, "feature", "F");
        write_field(&mut v, "user", "a \"b\"\\c\u{1}");
        write_field(&mut v, "host", "pc1");
        write_field(&mut v, "display", "");
        write_field(&mut v, "handle", "h");
        write_field(&mut v, "count", "2");
        write_field(&mut v, "reason", "ALL_IN_USE");
        let text = String::from_utf8(v.clone()).unwrap();
        assert_eq!(
            text,
            "2026-12-03T14:05:06.123Z DENIED feature=F user=\"a \\\"b\\\"\\\\c\\x01\" host=pc1 display=\"\" handle=h count=2 reason=ALL_IN_USE"
        );
        assert_eq!(
            read_back(&v).unwrap(),
            [Line::Event {
                at_ms: 1_796_306_706_123,
                feature: "F".into(),
                user: "a \"b\"\\c\u{1}".into(),
                host: "pc1".into(),
                change: OwnedChange::Denial {
                    reason: "ALL_IN_USE".into()
                },
            }]
        );
    }

    #[test]
    fn every_kind_of_line_parses() {
        let text = "2026-12-03T00:00:00.000Z INUSE feature=F licensed=uncounted in_use=3 at=start\n\
                    2026-12-03T00:00:01.000Z OUT feature=F version=1.0 user=u host=h display=\"\" handle=1 count=2 kind=renewal overdraft=1\n\
                    2026-12-03T00:00:02.000Z IN feature=F version=1.0 user=u host=h display=\"\" handle=1 count=2 cause=idle_timeout\n\
                    garbage\n\
                    2026-12-04T00:00:00.000Z OUT feature=F version=1.0 user=u host=h display=\"\" handle=1 count=1 kind=bogus\n";
        let lines = read_back(text.as_bytes()).unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(matches!(
            lines[0],
            Line::InUse {
                licensed: None,
                in_use: 3,
                start: true,
                ..
            }
        ));
        assert!(matches!(
            &lines[1],
            Line::Event {
                change: OwnedChange::Grant {
                    kind: OutKind::Renewal,
                    overdraft: true,
                    count: 2
                },
                ..
            }
        ));
        assert!(matches!(
            &lines[2],
            Line::Event {
                change: OwnedChange::Release {
                    cause: Cause::IdleTimeout,
                    count: 2
                },
                ..
            }
        ));
    }
}
