//! `tallyctl check-license FILE [--json]`: parse a license file the way
//! tallyd will, and say what it makes of every line.
//!
//! Human output (stdout): one line per pool, `line N: KEYWORD FEATURE VENDOR
//! VERSION EXPIRY COUNT`, then every diagnostic as `file:line:column:
//! message`, then every line tally serves less of than it says (a count
//! that saturates, more licenses than checkouts the table holds:
//! [`tally_core::engine::unservable`]) as `file:line: warning: FEATURE:
//! message`, then a summary. `--json` prints one JSON object:
//!
//! ```json
//! {"pools":[{"line":5,"keyword":"INCREMENT","feature":"F","vendor":"V",
//!   "version":"1.0","expiry":"permanent","count":5,"dup_group":"NONE",
//!   "hostid":null}],
//!  "diagnostics":[{"line":7,"column":3,"message":"..."}],
//!  "warnings":[{"line":9,"feature":"G","message":"..."}]}
//! ```
//!
//! `warnings` is there only when there are some. `count` is `null` for an
//! uncounted pool, `hostid` `null` when the line has no `HOSTID=`. Exit
//! status: [`EXIT_CLEAN`] (0) when every line loaded,
//! [`EXIT_REJECTED`] (1) when some lines were rejected (diagnostics;
//! warnings alone do not change the status: those lines are served),
//! [`EXIT_UNREADABLE`] (2) when the file cannot be read or is not UTF-8.

use std::path::Path;

use serde::Serialize;
use tally_core::engine::unservable;
use tally_core::license::{parse_file, LicenseSet};

/// Every line loaded.
pub const EXIT_CLEAN: i32 = 0;
/// Some lines were rejected.
pub const EXIT_REJECTED: i32 = 1;
/// The file cannot be read.
pub const EXIT_UNREADABLE: i32 = 2;

/// The `--json` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// One entry per FEATURE/INCREMENT line that loaded, in file order.
    pub pools: Vec<PoolReport>,
    /// One entry per rejected line.
    pub diagnostics: Vec<DiagnosticReport>,
    /// One entry per line served less than it says (the key is left out
    /// when there is none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<WarningReport>,
}

/// A line tally serves less of than it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WarningReport {
    /// Line the record starts on.
    pub line: u32,
    /// Its feature.
    pub feature: String,
    /// What tally serves instead.
    pub message: String,
}

/// One pool in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolReport {
    /// Line the record starts on.
    pub line: u32,
    /// `FEATURE` or `INCREMENT`.
    pub keyword: String,
    /// Feature name.
    pub feature: String,
    /// Vendor daemon.
    pub vendor: String,
    /// Version as written.
    pub version: String,
    /// `permanent` or `31-dec-2026`.
    pub expiry: String,
    /// Licenses; `None` (JSON `null`) when uncounted.
    pub count: Option<u32>,
    /// Duplicate grouping (`NONE`, `UHD`, ...).
    pub dup_group: String,
    /// `HOSTID=` value, if any.
    pub hostid: Option<String>,
}

/// One diagnostic in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiagnosticReport {
    /// 1-based line of the offending token.
    pub line: u32,
    /// 1-based column of the offending token.
    pub column: u32,
    /// What is wrong.
    pub message: String,
}

impl Report {
    /// Builds the report of a parsed file.
    pub fn of(set: &LicenseSet) -> Report {
        Report {
            pools: set
                .pools
                .iter()
                .map(|p| PoolReport {
                    line: p.line,
                    keyword: p.kind.keyword().to_string(),
                    feature: p.feature.clone(),
                    vendor: p.vendor.clone(),
                    version: p.version.as_str().to_string(),
                    expiry: p.expiry.flexlm(),
                    count: p.count,
                    dup_group: p.dup_group.to_string(),
                    hostid: p.hostid.clone(),
                })
                .collect(),
            diagnostics: set
                .diagnostics
                .iter()
                .map(|d| DiagnosticReport {
                    line: d.line,
                    column: d.column,
                    message: d.message.clone(),
                })
                .collect(),
            warnings: unservable(set)
                .into_iter()
                .map(|u| WarningReport {
                    line: u.line,
                    feature: u.feature,
                    message: u.message,
                })
                .collect(),
        }
    }

    /// The exit status for this report.
    pub fn exit_code(&self) -> i32 {
        if self.diagnostics.is_empty() {
            EXIT_CLEAN
        } else {
            EXIT_REJECTED
        }
    }
}

/// The human-readable listing of `set`.
pub fn human(set: &LicenseSet) -> String {
    let mut out = String::new();
    for p in &set.pools {
        let count = p
            .count
            .map_or_else(|| "uncounted".to_string(), |n| n.to_string());
        out.push_str(&format!(
            "line {}: {} {} {} {} {} {}",
            p.line,
            p.kind.keyword(),
            p.feature,
            p.vendor,
            p.version,
            p.expiry.flexlm(),
            count
        ));
        if !p.dup_group.is_by_handle() {
            out.push_str(&format!(" DUP_GROUP={}", p.dup_group));
        }
        if let Some(h) = &p.hostid {
            out.push_str(&format!(" HOSTID={h}"));
        }
        out.push('\n');
    }
    for d in &set.diagnostics {
        out.push_str(&format!("{d}\n"));
    }
    for u in unservable(set) {
        let (file, line, feature) = (&u.source, u.line, &u.feature);
        out.push_str(&format!(
            "{file}:{line}: warning: {feature}: {}\n",
            u.message
        ));
    }
    let pools = set.pools.len();
    let diags = set.diagnostics.len();
    out.push_str(&format!(
        "{}: {pools} pool{}, {diags} line{} rejected\n",
        set.source,
        if pools == 1 { "" } else { "s" },
        if diags == 1 { "" } else { "s" },
    ));
    out
}

/// Runs `check-license`: prints the report and returns the exit status.
pub fn run(path: &Path, json: bool) -> i32 {
    let set = match parse_file(path) {
        Ok(set) => set,
        Err(e) => {
            eprintln!("tallyctl: {e}");
            return EXIT_UNREADABLE;
        }
    };
    let report = Report::of(&set);
    if json {
        match serde_json::to_string(&report) {
            Ok(s) => super::print(&format!("{s}\n")),
            Err(e) => {
                eprintln!("tallyctl: cannot write JSON: {e}");
                return EXIT_UNREADABLE;
            }
        }
    } else {
        super::print(&human(&set));
    }
    report.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::license::parse_str;

    #[test]
    fn report_shape() {
        let set = parse_str(
            "t.lic",
            "INCREMENT F1 V 1.0 permanent 5\nINCREMENT F2 V 1.0 31-dec-2026 uncounted HOSTID=ANY\nBOGUS x\n",
        );
        let r = Report::of(&set);
        assert_eq!(r.pools.len(), 2);
        assert_eq!(r.pools[0].count, Some(5));
        assert_eq!(r.pools[1].count, None);
        assert_eq!(r.pools[1].expiry, "31-dec-2026");
        assert_eq!(r.diagnostics.len(), 1);
        assert_eq!(r.exit_code(), EXIT_REJECTED);
        assert!(human(&set).contains("t.lic:3:1: "));
    }
}
