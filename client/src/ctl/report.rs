//! `tallyctl report`: the compliance report (REPORT, docs/usage.md), as
//! the server's JSON or as CSV, one row per feature per day.
//!
//! The JSON is read as a `serde_json::Value`, not typed: tallyctl prints
//! the fields the schema names and passes any later ones through (JSON).

use std::fmt::Write as _;

use serde_json::Value;

use super::args::ReportPrintArgs;
use super::client::field;
use super::error::CtlError;

/// The CSV columns, in order (each a field of a day of the report, but
/// the last: `denials_by_reason`, `REASON:N` pairs joined with `;`).
pub const CSV_COLUMNS: [&str; 13] = [
    "day",
    "feature",
    "licensed",
    "peak_in_use",
    "checkouts",
    "renewals",
    "denials",
    "overdraft_peak",
    "overdraft_grants",
    "full_use_ms",
    "distinct_users",
    "distinct_hosts",
    "denials_by_reason",
];

/// The REPORT request line for `a`.
pub fn request_line(a: &ReportPrintArgs) -> Result<String, CtlError> {
    let mut line = String::from("REPORT");
    if let Some(f) = &a.from {
        let _ = write!(line, " from={}", field("--from", f)?);
    }
    if let Some(t) = &a.to {
        let _ = write!(line, " to={}", field("--to", t)?);
    }
    Ok(line)
}

/// A CSV cell: quoted (RFC 4180) if it holds a comma, a quote or a line
/// break.
fn cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn number(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The report as CSV: a header line ([`CSV_COLUMNS`]) and one row per
/// feature per day, by feature then day.
pub fn csv(report: &Value) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    let features = report.get("features").and_then(Value::as_array);
    for f in features.into_iter().flatten() {
        let name = f.get("feature").and_then(Value::as_str).unwrap_or("");
        let days = f.get("days").and_then(Value::as_array);
        for d in days.into_iter().flatten() {
            let denials = d.get("denials").and_then(Value::as_object);
            let total: u64 = denials
                .into_iter()
                .flatten()
                .filter_map(|(_, n)| n.as_u64())
                .sum();
            let by_reason: Vec<String> = denials
                .into_iter()
                .flatten()
                .map(|(r, n)| format!("{r}:{n}"))
                .collect();
            let row = [
                cell(d.get("day").and_then(Value::as_str).unwrap_or("")),
                cell(name),
                number(d, "licensed"),
                number(d, "peak_in_use"),
                number(d, "checkouts"),
                number(d, "renewals"),
                total.to_string(),
                number(d, "overdraft_peak"),
                number(d, "overdraft_grants"),
                number(d, "full_use_ms"),
                number(d, "distinct_users"),
                number(d, "distinct_hosts"),
                cell(&by_reason.join(";")),
            ];
            out.push_str(&row.join(","));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::ctl::args::{Cli, Command, ReportCommand, ReportFormat};

    #[test]
    fn report_prints_with_or_without_the_print_word() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Command::Report(r)) => r,
            other => panic!("{other:?}"),
        };
        let r = parse(&[
            "tallyctl",
            "report",
            "--format",
            "csv",
            "--from",
            "2026-12-01",
        ]);
        assert!(r.command.is_none());
        assert_eq!(r.print.format, ReportFormat::Csv);
        assert_eq!(request_line(&r.print).unwrap(), "REPORT from=2026-12-01");
        let r = parse(&["tallyctl", "report", "print", "--to", "2026-12-31"]);
        let Some(ReportCommand::Print(p)) = r.command else {
            panic!("{r:?}")
        };
        assert_eq!(
            (p.format, request_line(&p).unwrap()),
            (ReportFormat::Json, "REPORT to=2026-12-31".to_string())
        );
        assert!(Cli::try_parse_from(["tallyctl", "report", "--from", "x", "print"]).is_err());
        assert!(request_line(&ReportPrintArgs {
            from: Some("2026-12-01 PING".into()),
            to: None,
            format: ReportFormat::Json
        })
        .is_err());
    }

    #[test]
    fn one_row_per_feature_per_day() {
        let report: Value = serde_json::from_str(
            r#"{"schema":1,"features":[
              {"feature":"F,1","totals":{},"days":[
                {"day":"2026-12-02","licensed":null,"peak_in_use":2,"checkouts":3,"renewals":0,
                 "denials":{},"overdraft_peak":0,"overdraft_grants":0,"full_use_ms":0,
                 "distinct_users":1,"distinct_hosts":1},
                {"day":"2026-12-03","licensed":5,"peak_in_use":5,"checkouts":9,"renewals":4,
                 "denials":{"ALL_IN_USE":3,"EXPIRED":1},"overdraft_peak":0,"overdraft_grants":0,
                 "full_use_ms":60000,"distinct_users":4,"distinct_hosts":2}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            csv(&report),
            "day,feature,licensed,peak_in_use,checkouts,renewals,denials,overdraft_peak,overdraft_grants,full_use_ms,distinct_users,distinct_hosts,denials_by_reason\n\
             2026-12-02,\"F,1\",,2,3,0,0,0,0,0,1,1,\n\
             2026-12-03,\"F,1\",5,5,9,4,4,0,0,60000,4,2,ALL_IN_USE:3;EXPIRED:1\n"
        );
    }
}
