//! `tallyctl report print | upload | status | export | verify` (print:
//! [`super::report`]): the compliance
//! report's upload (tallyd `--upload-url`, the UPLOAD and UPLOAD_STATUS
//! requests) and its export file for a manual upload ([`crate::export`]).
//!
//! `export` asks the server for the report (REPORT, as `tallyctl report`
//! does), or exports a saved report's JSON (`--report FILE`).
//!
//! Exit statuses: `upload` and `status` as the other admin commands (0, 1
//! on an `ERR` reply such as `ERR UPLOAD_OFF`, 24x when no server
//! answers); `export` 0 written, 2 unreadable input or unwritable output;
//! `verify` 0 intact, 1 damaged (the message names what: a part whose
//! SHA-256 does not match, the manifest, the framing), 2 unreadable.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use super::addr::ServerAddr;
use super::args::{Cli, ReportCommand, ReportFormat, ReportPrintArgs};
use super::error::CtlError;
use super::{expect_ok, fetch_report, not_ok, print, request, token};
use crate::export;

/// Runs one `report` subcommand.
pub fn run(
    cmd: &ReportCommand,
    cli: &Cli,
    servers: impl Fn() -> Result<Vec<ServerAddr>, CtlError>,
    wait: Duration,
) -> Result<i32, CtlError> {
    match cmd {
        ReportCommand::Upload => {
            let (server, reply) = request(&servers()?, "UPLOAD".into(), token(cli)?, wait)?;
            let text = match expect_ok(&server, &reply)? {
                "UPLOAD STARTED" => "report upload started",
                "UPLOAD RUNNING" => "a report upload is already running",
                _ => {
                    return Err(not_ok(
                        &server,
                        &reply,
                        "OK UPLOAD STARTED | OK UPLOAD RUNNING",
                    ))
                }
            };
            print(&format!(
                "{server}: {text} (`tallyctl report status` for its result)\n"
            ));
            Ok(0)
        }
        ReportCommand::Status { json } => {
            let (server, reply) = request(&servers()?, "UPLOAD_STATUS".into(), token(cli)?, wait)?;
            let body = expect_ok(&server, &reply)?
                .strip_prefix("UPLOAD_STATUS ")
                .ok_or_else(|| not_ok(&server, &reply, "OK UPLOAD_STATUS <json>"))?;
            if *json {
                print(&format!("{body}\n"));
                return Ok(0);
            }
            let v: serde_json::Value = serde_json::from_str(body)
                .map_err(|_| not_ok(&server, &reply, "OK UPLOAD_STATUS <json>"))?;
            print(&status_text(&v));
            Ok(0)
        }
        ReportCommand::Export {
            out,
            report: Some(report),
            ..
        } => Ok(match std::fs::read(report) {
            Ok(bytes) => write_export(out, &bytes, &report.display().to_string()),
            Err(e) => {
                eprintln!("tallyctl: cannot read {}: {e}", report.display());
                2
            }
        }),
        ReportCommand::Export {
            out,
            report: None,
            from,
            to,
        } => {
            let period = ReportPrintArgs {
                from: from.clone(),
                to: to.clone(),
                format: ReportFormat::Json,
            };
            let (server, body) = fetch_report(&period, servers, wait)?;
            if let Some(e) = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            {
                return Err(CtlError::Server {
                    addr: server,
                    reply: format!("the server could not build the report: {e}"),
                });
            }
            Ok(write_export(
                out,
                body.as_bytes(),
                &format!("{server}'s report"),
            ))
        }
        ReportCommand::Verify { file } => Ok(verify_file(file)),
        ReportCommand::Print(p) => super::run_report(p, servers, wait),
    }
}

/// `2026-12-03 14:05:06 UTC` for Unix seconds.
fn utc(v: &serde_json::Value) -> Option<String> {
    let t = chrono::DateTime::from_timestamp(v.as_i64()?, 0)?;
    Some(t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// The status as a few lines.
pub fn status_text(v: &serde_json::Value) -> String {
    let mut s = format!(
        "Upload to {}\n",
        v["url"].as_str().unwrap_or("(unknown endpoint)")
    );
    match v.get("last").filter(|l| !l.is_null()) {
        Some(l) => {
            s.push_str(&format!(
                "  last attempt:  {} to {}: {}\n",
                utc(&l["started"]).unwrap_or_default(),
                utc(&l["finished"]).unwrap_or_default(),
                l["code"].as_str().unwrap_or("?")
            ));
            if let Some(m) = l["msg"].as_str().filter(|m| !m.is_empty()) {
                s.push_str(&format!("  message:       {m}\n"));
            }
            s.push_str(&format!(
                "  report:        {}\n",
                l["report_id"].as_str().unwrap_or("?")
            ));
        }
        None => s.push_str("  last attempt:  none yet\n"),
    }
    s.push_str(&format!(
        "  last success:  {}\n",
        utc(&v["last_success"]).unwrap_or_else(|| "never".into())
    ));
    let next = if v["running"] == true {
        "running now".to_string()
    } else {
        utc(&v["next"]).unwrap_or_else(|| "-".into())
    };
    s.push_str(&format!("  next attempt:  {next}\n"));
    s.push_str(&format!(
        "  waiting:       {} report(s)\n  log:           {}\n",
        v["pending"].as_u64().unwrap_or(0),
        v["log"].as_str().unwrap_or("?")
    ));
    s
}

fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Writes the export of `bytes` (the report's JSON, from `what`) to `out`.
fn write_export(out: &Path, bytes: &[u8], what: &str) -> i32 {
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(bytes) {
        eprintln!("tallyctl: {what} is not the report's JSON: {e}");
        return 2;
    }
    let created = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let file = export::export(bytes, &machine_name(), &created);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .and_then(|mut f| f.write_all(&file).and_then(|()| f.sync_all()));
    match written {
        Ok(()) => {
            print(&format!(
                "{}: report.json ({} bytes, SHA-256 {})\n",
                out.display(),
                bytes.len(),
                export::sha256_hex(bytes)
            ));
            0
        }
        Err(e) => {
            eprintln!("tallyctl: cannot write {}: {e}", out.display());
            2
        }
    }
}

fn verify_file(file: &Path) -> i32 {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tallyctl: cannot read {}: {e}", file.display());
            return 2;
        }
    };
    match export::verify(&bytes) {
        Ok(e) => {
            let m = &e.manifest;
            print(&format!(
                "{}: intact: made on {} at {}\n",
                file.display(),
                m.host,
                m.created
            ));
            for p in &m.parts {
                print(&format!(
                    "  {} ({} bytes, SHA-256 {})\n",
                    p.name, p.size, p.sha256
                ));
            }
            0
        }
        Err(e) => {
            print(&format!("{}: damaged: {e}\n", file.display()));
            1
        }
    }
}
