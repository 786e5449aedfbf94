//! `tallyctl check-license FILE [--json]`: parse a license file the way
//! tallyd will, and say what it makes of every line, and of the options
//! file the license names.
//!
//! Human output (stdout): one line per pool, `line N: KEYWORD FEATURE VENDOR
//! VERSION EXPIRY COUNT [OVERDRAFT=n] [START=date] ... [BORROW=hours]`
//! (the hours a borrow may last, 168 for a bare `BORROW`; JSON
//! `"borrow_hours"`, absent when the line is not borrowable), with `  EXPIRED`
//! or `  NOT YET STARTED` after a pool that serves nothing today; then every
//! diagnostic as `file:line:column: message`, every warning (feature names
//! the protocol cannot carry or that hold bidirectional controls, and
//! lines tally serves less of than they say: a count that saturates, more
//! licenses than checkouts the table holds, [`tally_core::engine::unservable`]),
//! the
//! options file's diagnostics and warnings, and a summary. `--json` prints
//! one JSON object:
//!
//! ```json
//! {"pools":[{"line":5,"keyword":"INCREMENT","feature":"F","vendor":"V",
//!   "version":"1.0","expiry":"permanent","count":5,"dup_group":"NONE",
//!   "hostid":null,"overdraft":0,"start":null,"state":"active"}],
//!  "diagnostics":[{"line":7,"column":3,"message":"..."}],
//!  "warnings":[{"line":9,"column":null,"message":"..."}],
//!  "options":{"path":"/etc/tally/citrix.opt","rules":4,
//!   "diagnostics":[...],"warnings":[...]}}
//! ```
//!
//! A file with PACKAGE, UPGRADE or SUPERSEDE lines lists the pools they
//! made (each PACKAGE component as a pool of its own, marked `PACKAGE p`,
//! `SUITE p` or `SUITE_RESERVED p` in the human listing and `"package":"p","suite":bool` in the
//! JSON; the pools a SUPERSEDE removed are not listed), then one line per
//! such line saying what it became (`line N: PACKAGE -> ...`; JSON
//! `"applied":[{"keyword","line","summary"}]`). What they could not do (a
//! PACKAGE nothing enables, an UPGRADE of more than there is) is a warning.
//! These keys are absent from the JSON of a file without such lines.
//!
//! **Signatures** (`--vendor-key PUB`, docs/license-file.md): with the
//! vendor's public key the file is read as `tallyd --vendor-key` reads it
//! (a line whose `TALLY_SIG=` is missing or does not verify is a
//! diagnostic and makes no pool), and every FEATURE, INCREMENT, PACKAGE and
//! UPGRADE line gets a line `line N: KEYWORD name: signature valid` (or
//! `missing`, `bad (why)`); without a key, a file with some `TALLY_SIG=`
//! lists each line as `not checked (signed|unsigned; no --vendor-key)`. The
//! JSON has them as `"signatures":[{"line","keyword","name","status",
//! "signed","reason"}]` (`reason` only when bad), absent when not listed.
//!
//! `count` is `null` for an uncounted pool, `hostid` and `start` `null` when
//! the line has none; `state` is `active`, `expired` or `not_started` (at
//! the time of the check: the clock, or `TALLYCTL_NOW`). `options` is `null`
//! when the license names no options file (the first `VENDOR` line's
//! `OPTIONS=`, relative to the license file's directory, as tallyd finds
//! it). Exit status: [`EXIT_CLEAN`] (0) when every line of both files
//! loaded, [`EXIT_REJECTED`] (1) when some lines were rejected
//! (diagnostics), [`EXIT_UNREADABLE`] (2) when the license file or the
//! options file it names cannot be read, is not UTF-8 or is larger than
//! [`crate::source::MAX_SOURCE_FILE_BYTES`] (tallyd would not start).
//! Warnings and expired pools do not change the status.

use std::path::Path;

use serde::Serialize;
use tally_core::license::{Applied, Diagnostic, Expiry, LicenseSet, PoolLine};
use tally_core::options::OptionsFile;

use super::names::feature_name_warnings;
use crate::source::{read_options, read_text, SourceKind, MAX_SOURCE_FILE_BYTES};
use tally_core::engine::unservable;
use tally_core::license::parse_str;
use tally_core::license::signature::{
    check_signatures, parse_str_verified, LineSignature, SigStatus,
};

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
    /// Lines that loaded but deserve a word (feature names, lines served
    /// less than they say).
    pub warnings: Vec<WarningReport>,
    /// The options file the license names, if any.
    pub options: Option<OptionsReport>,
    /// What each PACKAGE, UPGRADE and SUPERSEDE line did (absent if none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<AppliedReport>,
    /// Each FEATURE/INCREMENT/PACKAGE/UPGRADE line's tally signature, with
    /// `--vendor-key` or when some line has a `TALLY_SIG=` (absent
    /// otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureReport>,
}

/// One line's tally signature (`TALLY_SIG=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureReport {
    /// 1-based line the record starts on.
    pub line: u32,
    /// `FEATURE`, `INCREMENT`, `PACKAGE` or `UPGRADE`.
    pub keyword: String,
    /// The feature or package it names.
    pub name: String,
    /// `valid`, `missing`, `bad` or `not checked` (no `--vendor-key`).
    pub status: String,
    /// Whether the line has a `TALLY_SIG=`.
    pub signed: bool,
    /// Why a `bad` one is bad (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<&LineSignature> for SignatureReport {
    fn from(s: &LineSignature) -> SignatureReport {
        SignatureReport {
            line: s.line,
            keyword: s.keyword.clone(),
            name: s.name.clone(),
            status: s.status.word().to_string(),
            signed: s.has_sig,
            reason: match &s.status {
                SigStatus::Bad(why) => Some(why.clone()),
                _ => None,
            },
        }
    }
}

/// The signature lines worth listing: all of them with a key, and without
/// one only if some line is signed (a file nobody signed says nothing).
fn listed(sigs: Vec<LineSignature>, key_given: bool) -> Vec<LineSignature> {
    if key_given || sigs.iter().any(|s| s.has_sig) {
        sigs
    } else {
        Vec::new()
    }
}

/// What one PACKAGE, UPGRADE or SUPERSEDE line did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedReport {
    /// `PACKAGE`, `UPGRADE` or `SUPERSEDE`.
    pub keyword: String,
    /// 1-based line.
    pub line: u32,
    /// What it became.
    pub summary: String,
}

impl From<&Applied> for AppliedReport {
    fn from(a: &Applied) -> AppliedReport {
        AppliedReport {
            keyword: a.keyword.to_string(),
            line: a.line,
            summary: a.summary.clone(),
        }
    }
}

/// A warning: a line that loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WarningReport {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, when known.
    pub column: Option<u32>,
    /// What is wrong.
    pub message: String,
}

/// The options file named by the license's VENDOR line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OptionsReport {
    /// Where it is.
    pub path: String,
    /// Rules (INCLUDE, EXCLUDE, RESERVE, MAX) that loaded.
    pub rules: usize,
    /// One entry per rejected line.
    pub diagnostics: Vec<DiagnosticReport>,
    /// Lines that loaded but look wrong (a name starting with `#`).
    pub warnings: Vec<DiagnosticReport>,
}

/// Whether a pool serves at the time of the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolState {
    /// Serves checkouts.
    Active,
    /// Past its expiry date: serves nothing.
    Expired,
    /// Before its `START=` date: serves nothing yet.
    NotStarted,
}

impl PoolState {
    /// The state of `pool` at `now_ms` (Unix ms), as the engine decides it.
    pub fn of(pool: &PoolLine, now_ms: u64) -> PoolState {
        if pool.expiry.is_expired(now_ms) {
            PoolState::Expired
        } else if pool.start.is_some_and(|d| now_ms < d.start_ms()) {
            PoolState::NotStarted
        } else {
            PoolState::Active
        }
    }
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
    /// Licenses allowed beyond `count` (`OVERDRAFT=`, or `ODP` percent).
    pub overdraft: u32,
    /// `START=` date, if any.
    pub start: Option<String>,
    /// Whether it serves at the time of the check.
    pub state: PoolState,
    /// The PACKAGE this pool is a component of (absent if none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// For a package component: whether the package is a suite (absent
    /// otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suite: Option<bool>,
    /// The most hours a license may be borrowed (`BORROW[=hours]`; absent
    /// when the line is not borrowable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub borrow_hours: Option<u32>,
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

fn diagnostic_reports(list: &[Diagnostic]) -> Vec<DiagnosticReport> {
    list.iter()
        .map(|d| DiagnosticReport {
            line: d.line,
            column: d.column,
            message: d.message.clone(),
        })
        .collect()
}

impl Report {
    /// Builds the report of a parsed file at `now_ms` (Unix ms), with the
    /// options file it names (`None` when it names none).
    pub fn of(set: &LicenseSet, options: Option<(&Path, &OptionsFile)>, now_ms: u64) -> Report {
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
                    overdraft: p.overdraft,
                    start: p.start.map(|d| d.flexlm()),
                    state: PoolState::of(p, now_ms),
                    package: p.package.as_ref().map(|c| c.package.clone()),
                    suite: p.package.as_ref().map(|c| c.suite),
                    borrow_hours: p.borrow_hours(),
                })
                .collect(),
            diagnostics: diagnostic_reports(&set.diagnostics),
            warnings: feature_name_warnings(set)
                .into_iter()
                .map(|w| WarningReport {
                    line: w.line,
                    column: None,
                    message: w.message,
                })
                .chain(unservable(set).into_iter().map(|u| WarningReport {
                    line: u.line,
                    column: None,
                    message: format!("{}: {}", u.feature, u.message),
                }))
                .chain(set.warnings.iter().map(|w| WarningReport {
                    line: w.line,
                    column: Some(w.column),
                    message: w.message.clone(),
                }))
                .collect(),
            applied: set.applied.iter().map(AppliedReport::from).collect(),
            signatures: Vec::new(),
            options: options.map(|(path, o)| OptionsReport {
                path: path.display().to_string(),
                rules: o.rules.len(),
                diagnostics: diagnostic_reports(&o.diagnostics),
                warnings: diagnostic_reports(&o.warnings),
            }),
        }
    }

    /// The exit status for this report.
    pub fn exit_code(&self) -> i32 {
        let options_rejected = self
            .options
            .as_ref()
            .is_some_and(|o| !o.diagnostics.is_empty());
        if self.diagnostics.is_empty() && !options_rejected {
            EXIT_CLEAN
        } else {
            EXIT_REJECTED
        }
    }
}

/// A name for the listing: bidirectional and other invisible controls
/// escaped (`\u{202e}`), so the listing cannot be reordered by them.
fn shown(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_control() || super::names::is_bidi_control(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `n thing` / `n things`.
fn counted(n: usize, thing: &str) -> String {
    super::counted(n as u64, thing, &format!("{thing}s"))
}

/// The human-readable listing of `set` (and its options file) at `now_ms`.
pub fn human(set: &LicenseSet, options: Option<(&Path, &OptionsFile)>, now_ms: u64) -> String {
    human_signed(set, options, now_ms, &[])
}

/// [`human`] with a line per signature status after the pools and what
/// PACKAGE/UPGRADE/SUPERSEDE lines became: `line N: FEATURE f: signature
/// valid` (or `missing`, `bad (why)`, `not checked (signed|unsigned)`).
pub fn human_signed(
    set: &LicenseSet,
    options: Option<(&Path, &OptionsFile)>,
    now_ms: u64,
    sigs: &[LineSignature],
) -> String {
    let mut out = String::new();
    for p in &set.pools {
        let count = p
            .count
            .map_or_else(|| "uncounted".to_string(), |n| n.to_string());
        out.push_str(&format!(
            "line {}: {} {} {} {} {} {}",
            p.line,
            p.kind.keyword(),
            shown(&p.feature),
            p.vendor,
            p.version,
            p.expiry.flexlm(),
            count
        ));
        if p.overdraft > 0 {
            out.push_str(&format!(" OVERDRAFT={}", p.overdraft));
        }
        if let Some(start) = p.start {
            out.push_str(&format!(" START={}", start.flexlm()));
        }
        if !p.dup_group.is_by_handle() {
            out.push_str(&format!(" DUP_GROUP={}", p.dup_group));
        }
        if let Some(h) = &p.hostid {
            out.push_str(&format!(" HOSTID={h}"));
        }
        if let Some(h) = p.borrow_hours() {
            out.push_str(&format!(" BORROW={h}"));
        }
        if let Some(c) = &p.package {
            let kind = match (c.suite, c.suite_reserved) {
                (_, true) => "SUITE_RESERVED",
                (true, false) => "SUITE",
                (false, false) => "PACKAGE",
            };
            out.push_str(&format!(" ({kind} {})", shown(&c.package)));
        }
        match (PoolState::of(p, now_ms), p.expiry, p.start) {
            (PoolState::Expired, Expiry::On(d), _) => {
                out.push_str(&format!("  EXPIRED (on {}: serves nothing)", d.flexlm()))
            }
            (PoolState::NotStarted, _, Some(d)) => {
                out.push_str(&format!("  NOT YET STARTED (serves from {})", d.flexlm()))
            }
            _ => {}
        }
        out.push('\n');
    }
    for a in &set.applied {
        out.push_str(&format!(
            "line {}: {} -> {}\n",
            a.line,
            a.keyword,
            shown(&a.summary)
        ));
    }
    for s in sigs {
        let detail = match &s.status {
            SigStatus::Bad(why) => format!(" ({why})"),
            SigStatus::NotChecked if s.has_sig => " (signed; no --vendor-key)".to_string(),
            SigStatus::NotChecked => " (unsigned; no --vendor-key)".to_string(),
            _ => String::new(),
        };
        out.push_str(&format!(
            "line {}: {} {}: signature {}{detail}\n",
            s.line,
            s.keyword,
            shown(&s.name),
            s.status.word()
        ));
    }
    for d in &set.diagnostics {
        out.push_str(&format!("{d}\n"));
    }
    for w in &set.warnings {
        out.push_str(&format!("{w} (warning)\n"));
    }
    let warnings = feature_name_warnings(set);
    for w in &warnings {
        out.push_str(&format!("{w}\n"));
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
    let idle = set
        .pools
        .iter()
        .filter(|p| PoolState::of(p, now_ms) != PoolState::Active)
        .count();
    out.push_str(&format!(
        "{}: {}, {} rejected",
        set.source,
        counted(pools, "pool"),
        counted(diags, "line"),
    ));
    if idle > 0 {
        out.push_str(&format!(
            ", {} expired or not yet started",
            counted(idle, "pool")
        ));
    }
    let warned = warnings.len() + set.warnings.len();
    if warned > 0 {
        out.push_str(&format!(", {}", counted(warned, "warning")));
    }
    out.push('\n');
    if let Some((path, o)) = options {
        for d in &o.diagnostics {
            out.push_str(&format!("{d}\n"));
        }
        for w in &o.warnings {
            out.push_str(&format!("{w} (warning)\n"));
        }
        out.push_str(&format!(
            "{} (options file): {}, {} rejected{}\n",
            path.display(),
            counted(o.rules.len(), "rule"),
            counted(o.diagnostics.len(), "line"),
            if o.warnings.is_empty() {
                String::new()
            } else {
                format!(", {}", counted(o.warnings.len(), "warning"))
            }
        ));
    }
    out
}

/// Where tallyd finds the options file when started without `--options`
/// (its `options::locate`): the `OPTIONS=` path (or fourth field) of the
/// first VENDOR line that has one, relative to the license file's directory
/// when relative.
fn options_path(licenses: &LicenseSet, license_path: &Path) -> Option<std::path::PathBuf> {
    let named = licenses
        .vendors
        .iter()
        .find_map(|v| v.options_path.as_deref())?;
    let named = Path::new(named);
    Some(match license_path.parent() {
        Some(dir) if named.is_relative() => dir.join(named),
        _ => named.to_path_buf(),
    })
}

/// Runs `check-license` at `now_ms` (Unix ms): prints the report and
/// returns the exit status.
/// With `vendor_key` the file is parsed as `tallyd --vendor-key` does: a
/// line whose signature does not verify is rejected (a diagnostic, exit
/// status 1) and makes no pool.
pub fn run(path: &Path, json: bool, vendor_key: Option<&Path>, now_ms: u64) -> i32 {
    let key = match vendor_key.map(super::license::read_public_key).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("tallyctl: {e}");
            return EXIT_UNREADABLE;
        }
    };
    let text = match read_text(SourceKind::License, path, MAX_SOURCE_FILE_BYTES) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("tallyctl: {e}");
            return EXIT_UNREADABLE;
        }
    };
    let source = path.display().to_string();
    let set = match &key {
        Some(k) => parse_str_verified(&source, &text, k),
        None => parse_str(&source, &text),
    };
    let sigs = listed(check_signatures(key.as_ref(), &text), key.is_some());
    // The options file tallyd would read (without --options).
    let options_path = options_path(&set, path);
    let options = match options_path.as_deref().map(read_options).transpose() {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "tallyctl: {e} (named by the VENDOR line of {})",
                path.display()
            );
            return EXIT_UNREADABLE;
        }
    };
    let options = options_path.as_deref().zip(options.as_ref());
    let mut report = Report::of(&set, options, now_ms);
    report.signatures = sigs.iter().map(SignatureReport::from).collect();
    if json {
        match serde_json::to_string(&report) {
            Ok(s) => super::print(&format!("{s}\n")),
            Err(e) => {
                eprintln!("tallyctl: cannot write JSON: {e}");
                return EXIT_UNREADABLE;
            }
        }
    } else {
        super::print(&human_signed(&set, options, now_ms, &sigs));
    }
    report.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::license::parse_str;

    /// 1 July 2026, 00:00 UTC.
    const NOW: u64 = 1_782_864_000_000;

    #[test]
    fn report_shape() {
        let set = parse_str(
            "t.lic",
            "INCREMENT F1 V 1.0 permanent 5\nINCREMENT F2 V 1.0 31-dec-2026 uncounted HOSTID=ANY\nBOGUS x\n",
        );
        let r = Report::of(&set, None, NOW);
        assert_eq!(r.pools.len(), 2);
        assert_eq!(r.pools[0].count, Some(5));
        assert_eq!(r.pools[1].count, None);
        assert_eq!(r.pools[1].expiry, "31-dec-2026");
        assert_eq!(r.diagnostics.len(), 1);
        assert_eq!(r.exit_code(), EXIT_REJECTED);
        assert!(human(&set, None, NOW).contains("t.lic:3:1: "));
        assert!(human(&set, None, NOW).contains("2 pools, 1 line rejected"));
    }

    #[test]
    fn borrowable_lines_show_their_hours() {
        let set = parse_str(
            "t.lic",
            "INCREMENT A V 1.0 permanent 5 BORROW\n\
             INCREMENT B V 1.0 permanent 5 BORROW=24\n\
             INCREMENT C V 1.0 permanent 5\n",
        );
        let text = human(&set, None, NOW);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("permanent 5 BORROW=168"), "{text}");
        assert!(lines[1].ends_with("permanent 5 BORROW=24"), "{text}");
        assert!(lines[2].ends_with("permanent 5"), "{text}");
        let r = Report::of(&set, None, NOW);
        let hours: Vec<Option<u32>> = r.pools.iter().map(|p| p.borrow_hours).collect();
        assert_eq!(hours, [Some(168), Some(24), None]);
        let json = serde_json::to_string(&r.pools[2]).unwrap();
        assert!(!json.contains("borrow"), "{json}");
    }

    /// Issue 12 item 21: expired and not-yet-started pools were listed like
    /// any other, without their overdraft or START.
    #[test]
    fn expired_and_future_pools_are_flagged_with_overdraft_and_start() {
        let set = parse_str(
            "t.lic",
            "INCREMENT OLD V 1.0 31-dec-2020 5\n\
             INCREMENT LATER V 1.0 permanent 10 START=1-jan-2030 OVERDRAFT=2\n\
             INCREMENT NOW V 1.0 permanent 4 START=1-jan-2020\n",
        );
        let text = human(&set, None, NOW);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].ends_with("31-dec-2020 5  EXPIRED (on 31-dec-2020: serves nothing)"),
            "{text}"
        );
        assert!(
            lines[1].ends_with(
                "permanent 10 OVERDRAFT=2 START=1-jan-2030  NOT YET STARTED (serves from 1-jan-2030)"
            ),
            "{text}"
        );
        assert!(lines[2].ends_with("permanent 4 START=1-jan-2020"), "{text}");
        assert!(
            text.contains("2 pools expired or not yet started"),
            "{text}"
        );
        let r = Report::of(&set, None, NOW);
        let states: Vec<PoolState> = r.pools.iter().map(|p| p.state).collect();
        assert_eq!(
            states,
            [PoolState::Expired, PoolState::NotStarted, PoolState::Active]
        );
        assert_eq!(r.pools[1].overdraft, 2);
        assert_eq!(r.pools[1].start.as_deref(), Some("1-jan-2030"));
        assert_eq!(r.exit_code(), EXIT_CLEAN, "a warning, not a rejection");
        let json = serde_json::to_string(&r).unwrap_or_default();
        assert!(json.contains("\"state\":\"not_started\""), "{json}");
        assert!(
            !json.contains("applied") && !json.contains("package"),
            "{json}"
        );
    }

    #[test]
    fn a_suite_reserved_component_is_marked_so() {
        let set = parse_str(
            "t.lic",
            "PACKAGE R V 1.0 COMPONENTS=a OPTIONS=SUITE_RESERVED\n\
             FEATURE R V 1.0 permanent 2\n",
        );
        let text = human(&set, None, NOW);
        assert!(
            text.contains("line 2: FEATURE a V 1.0 permanent 2 (SUITE_RESERVED R)"),
            "{text}"
        );
        assert!(
            text.contains("line 1: PACKAGE -> reserved suite R: a 1.0 x2 (from line 2)"),
            "{text}"
        );
    }

    #[test]
    fn packages_upgrades_and_supersedes_say_what_they_became() {
        let set = parse_str(
            "t.lic",
            "PACKAGE S V 1.0 COMPONENTS=\"a b:2.0\" OPTIONS=SUITE\n\
             FEATURE S V 1.0 permanent 2\n\
             INCREMENT f V 1.0 permanent 5 ISSUED=1-jan-2024\n\
             INCREMENT f V 1.0 permanent 4 SUPERSEDE ISSUED=1-jan-2025\n\
             UPGRADE f V 1.0 2.0 permanent 6\n\
             PACKAGE P V COMPONENTS=x\n",
        );
        let text = human(&set, None, NOW);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0], "line 2: FEATURE a V 1.0 permanent 2 (SUITE S)",
            "{text}"
        );
        assert_eq!(
            lines[1], "line 2: FEATURE b V 2.0 permanent 2 (SUITE S)",
            "{text}"
        );
        assert_eq!(lines[2], "line 2: FEATURE S V 1.0 permanent 2", "{text}");
        assert_eq!(lines[3], "line 5: INCREMENT f V 2.0 permanent 4", "{text}");
        assert!(
            text.contains(
                "line 4: SUPERSEDE -> INCREMENT f supersedes line 3 (INCREMENT f 1.0, 5)"
            ),
            "{text}"
        );
        assert!(
            text.contains("line 5: UPGRADE -> f 2.0 x4 (from line 4, f 1.0, which keeps 0)"),
            "{text}"
        );
        assert!(
            text.contains(
                "line 1: PACKAGE -> suite S: a 1.0 x2 (from line 2), b 2.0 x2 (from line 2)"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "t.lic:5:1: UPGRADE f: upgrades 6 licenses but line 4 has 4; 4 upgraded (warning)"
            ),
            "{text}"
        );
        assert!(text.contains("t.lic:6:1: PACKAGE P: no FEATURE"), "{text}");
        assert!(
            text.contains("4 pools, 0 lines rejected, 2 warnings"),
            "{text}"
        );
        let r = Report::of(&set, None, NOW);
        assert_eq!(r.exit_code(), EXIT_CLEAN, "warnings, not rejections");
        assert_eq!(r.pools[0].package.as_deref(), Some("S"));
        assert_eq!(r.pools[0].suite, Some(true));
        assert_eq!(r.pools[2].package, None);
        assert_eq!(r.applied.len(), 3);
        assert_eq!(r.warnings.len(), 2);
        assert_eq!(r.warnings[0].column, Some(1));
    }
}
