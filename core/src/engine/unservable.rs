//! License lines tally serves less of than they say: [`unservable`].
//!
//! A pool counts its licenses in 32 bits, so `count + overdraft` is
//! saturated at [`u32::MAX`] (an `OVERDRAFT=4294967295`, or an `ODP`
//! percentage of a huge count, would pass it); and the checkout table
//! holds at most [`MAX_HOLDERS`] instances at once, however many licenses
//! there are (each checkout may take up to
//! [`MAX_COUNT_PER_CHECKOUT`](super::MAX_COUNT_PER_CHECKOUT) of them).
//! Neither is an error: the line is served, up to those limits. Both are
//! reported, naming the line, by `tallyctl check-license` and in tallyd's
//! log at start, so that no license goes missing without a word.

use crate::license::{LicenseSet, PoolLine};

/// Most instances (separate checkouts) an engine's table can hold at once
/// when its pools can grant more than a few thousand: every slot of every
/// level (see `table.rs`, "Levels").
pub const MAX_HOLDERS: u64 = super::table::MAX_INSTANCES;

/// One license line tally serves less of than it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unservable {
    /// The license file ([`LicenseSet::source`]).
    pub source: String,
    /// 1-based line the record starts on.
    pub line: u32,
    /// The line's feature.
    pub feature: String,
    /// What tally serves instead, in words.
    pub message: String,
}

impl std::fmt::Display for Unservable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.source, self.line, self.feature, self.message
        )
    }
}

/// The lines of `set` tally cannot serve as written, in file order (one
/// entry per problem). Uncounted and startup lines hold nothing and are
/// never listed.
pub fn unservable(set: &LicenseSet) -> Vec<Unservable> {
    let mut out = Vec::new();
    for pool in &set.pools {
        let Some(count) = pool.count.filter(|_| !pool.is_startup()) else {
            continue;
        };
        let mut report = |message: String| {
            out.push(Unservable {
                source: set.source.clone(),
                line: pool.line,
                feature: pool.feature.clone(),
                message,
            })
        };
        let max = u64::from(u32::MAX);
        if let Some(asked) = odp_overdraft(pool, count).filter(|&n| n > max) {
            report(format!(
                "ODP={}% of {count} licenses is an overdraft of {asked}, more than \
                 {max}: the overdraft is {}",
                pool.vendor_string
                    .as_ref()
                    .and_then(|v| v.overdraft_percent)
                    .unwrap_or(0),
                pool.overdraft
            ));
        }
        let total = u64::from(count) + u64::from(pool.overdraft);
        if total > max {
            report(format!(
                "{count} licenses and an overdraft of {} make {total}, more than one \
                 pool counts ({max}): at most {max} are served at once",
                pool.overdraft
            ));
        }
        if total.min(max) > MAX_HOLDERS {
            report(format!(
                "{} licenses, but at most {MAX_HOLDERS} checkouts are held at once \
                 (the checkout table's limit); checkouts of several licenses each \
                 can take them all",
                total.min(max)
            ));
        }
    }
    out
}

/// The overdraft an `ODP` percentage asks for, unsaturated, when it is
/// what set the line's overdraft (no `OVERDRAFT=` overrode it: the parser
/// then stored the percentage's value, saturated).
fn odp_overdraft(pool: &PoolLine, count: u32) -> Option<u64> {
    let percent = pool.vendor_string.as_ref()?.overdraft_percent?;
    let asked = u64::from(count) * u64::from(percent) / 100;
    (u64::from(pool.overdraft) == asked.min(u64::from(u32::MAX))).then_some(asked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::license::parse_str;

    fn lines(text: &str) -> Vec<String> {
        let set = parse_str("t.lic", text);
        assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
        unservable(&set).iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn ordinary_lines_are_served_as_written() {
        let text = "INCREMENT A V 1.0 permanent 100\n\
                    INCREMENT B V 1.0 permanent 5 OVERDRAFT=10\n\
                    INCREMENT C V 1.0 permanent 1000 VENDOR_STRING=\";ODP=50\"\n\
                    INCREMENT D V 1.0 permanent uncounted\n\
                    INCREMENT E V 1.0 permanent 4294967295 VENDOR_STRING=;LT=SYS\n\
                    INCREMENT F V 1.0 permanent 2000000000 OVERDRAFT=2000000000\n";
        assert_eq!(lines(text), Vec::<String>::new());
    }

    #[test]
    fn a_saturated_overdraft_names_its_line() {
        let got = lines(
            "INCREMENT A V 1.0 permanent 10\n\
             INCREMENT F V 1.0 permanent 5 OVERDRAFT=4294967295\n",
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with(
                "t.lic:2: F: 5 licenses and an overdraft of 4294967295 make 4294967300"
            ),
            "{got:?}"
        );
        assert!(got[0].contains("at most 4294967295 are served at once"));
        assert!(got[1].starts_with("t.lic:2: F: 4294967295 licenses, but at most"));
    }

    #[test]
    fn a_huge_odp_names_its_line() {
        let got = lines("FEATURE G V 1.0 permanent 4000000000 VENDOR_STRING=\";ODP=200\"\n");
        assert!(
            got[0].starts_with(
                "t.lic:1: G: ODP=200% of 4000000000 licenses is an overdraft of 8000000000, \
                 more than 4294967295: the overdraft is 4294967295"
            ),
            "{got:?}"
        );
        assert!(got[1].contains("make 8294967295"), "{got:?}");
        // An OVERDRAFT= that overrides the percentage is what counts.
        let got =
            lines("FEATURE G V 1.0 permanent 4000000000 VENDOR_STRING=\";ODP=200\" OVERDRAFT=7\n");
        assert_eq!(got, Vec::<String>::new());
    }

    #[test]
    fn more_licenses_than_the_table_holds_checkouts() {
        let got = lines("INCREMENT F V 1.0 permanent 4294967295\n");
        assert_eq!(
            got,
            [format!(
                "t.lic:1: F: 4294967295 licenses, but at most {MAX_HOLDERS} checkouts are held \
                 at once (the checkout table's limit); checkouts of several licenses each can \
                 take them all"
            )]
        );
        assert!(MAX_HOLDERS < u64::from(u32::MAX));
        assert!(MAX_HOLDERS > u64::from(u32::MAX) - 10_000);
    }
}
