//! `tallyctl cache verify FILE` and `tallyctl cache show FILE [--json]`:
//! the offline cache file ([`crate::cache`]) and its side file
//! ([`crate::offline::log`]) from the command line.
//!
//! `verify` prints `FILE: valid: ...` and exits 0, or prints the first
//! problem as `FILE: [SECTION] line N: what is wrong` (side file:
//! `SIDEFILE: line N: ...`) and exits 1; a file that cannot be read at all
//! (missing, permissions) exits 2. A torn last record of the side file is
//! not a problem (it is what a crash mid-append leaves; the library drops
//! it) and is mentioned in a note.
//!
//! `show` prints the pools with their cached counts, what is held offline,
//! each pool's grace end and what is left of it at now (the highest of now
//! and the highest time the side file recorded), and every offline
//! admission; `--json` prints the same as one JSON object. It changes
//! neither file. Exit status as `verify`'s.
//!
//! `salvage` repairs a damaged side file ([`offline::salvage`]): every
//! intact record (each line has its own CRC) goes into a new side file,
//! the damaged one is kept as `FILE.admissions.damaged-<time>`, and it
//! prints `FILE.admissions: salvaged: kept N records, dropped line L
//! (what), ...; the damaged file is kept as ...` (exit 0); a side file
//! that is not damaged, or missing, is left alone (exit 0).

use std::path::Path;

use serde::Serialize;

use super::args::CacheCommand;
use super::print;
use crate::cache::{self, Cache, CacheError};
use crate::grace::rfc3339;
use crate::offline::{
    self, log, pool_graces, side_file_path, Entry, Ledger, OfflineError, PoolGrace,
};

/// Runs `cache verify` / `cache show` at `now_ms`; returns the exit status.
pub fn run(cmd: &CacheCommand, now_ms: u64) -> i32 {
    match cmd {
        CacheCommand::Verify { file } => verify(file),
        CacheCommand::Show { file, json } => show(file, *json, now_ms),
        CacheCommand::Salvage { file } => salvage(file, now_ms),
    }
}

/// The command that repairs the damaged side file of `cache`, for
/// messages.
pub fn salvage_hint(cache: &Path) -> String {
    format!(
        "run `tallyctl cache salvage {}` (keeps every intact record, sets the damaged \
         side file aside; nothing is deleted)",
        cache.display()
    )
}

fn salvage(file: &Path, now_ms: u64) -> i32 {
    let side = side_file_path(file);
    let stamp = i64::try_from(now_ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || now_ms.to_string(),
            |t| t.format("%Y%m%dT%H%M%SZ").to_string(),
        );
    match offline::salvage(file, &stamp) {
        Ok(Some(s)) => {
            let dropped: Vec<String> = s
                .dropped
                .iter()
                .map(|(n, what)| format!("dropped line {n} ({what})"))
                .collect();
            print(&format!(
                "{}: salvaged: kept {}, {}; the damaged file is kept as {}\n",
                side.display(),
                super::counted(s.kept as u64, "record", "records"),
                dropped.join(", "),
                s.damaged.display()
            ));
            0
        }
        Ok(None) if side.exists() => {
            print(&format!(
                "{}: not damaged: nothing to salvage\n",
                side.display()
            ));
            0
        }
        Ok(None) => {
            print(&format!(
                "{}: no side file: nothing to salvage\n",
                side.display()
            ));
            0
        }
        Err(e) => {
            print(&format!("{e}\n"));
            status(&e)
        }
    }
}

/// Exit status for a failure.
fn status(e: &OfflineError) -> i32 {
    match e {
        OfflineError::Io { .. } | OfflineError::Cache(CacheError::Io { .. }) => 2,
        _ => 1,
    }
}

fn verify(file: &Path) -> i32 {
    let cache = match cache::read(file) {
        Ok(c) => c,
        Err(e) => {
            let e = OfflineError::Cache(e);
            print(&format!("{e}\n"));
            return status(&e);
        }
    };
    let features = cache.features().len();
    let mut out = format!(
        "{}: valid: {}, {}, stamp {}, last contact {}\n",
        file.display(),
        super::counted(features as u64, "feature", "features"),
        super::counted(cache.pools.len() as u64, "pool", "pools"),
        cache.stamp,
        rfc3339(cache.last_contact_ms)
    );
    let side = side_file_path(file);
    if side.exists() {
        match log::read(&side) {
            Ok(contents) => {
                let ledger = Ledger::replay(&contents.records);
                out.push_str(&format!(
                    "{}: valid: {}, {} pending\n",
                    side.display(),
                    super::counted(contents.records.len() as u64, "record", "records"),
                    ledger.pending().len()
                ));
                if let Some(n) = contents.torn_line {
                    out.push_str(&format!(
                        "{}: note: line {n} is a torn last record (a crash mid-append); it is \
                         dropped\n",
                        side.display()
                    ));
                }
            }
            Err(e) => {
                print(&out);
                print(&format!("{e}\n"));
                return status(&e);
            }
        }
    }
    print(&out);
    0
}

/// `show --json`.
#[derive(Debug, Serialize)]
struct ShowJson<'a> {
    file: String,
    server: &'a str,
    port: u16,
    stamp: &'a str,
    prod_name: &'a str,
    prod_feat_name: &'a str,
    last_contact_ms: u64,
    /// The time grace is measured at.
    now_ms: u64,
    pools: Vec<PoolGrace>,
    admissions: &'a [Entry],
}

fn show(file: &Path, json: bool, now_ms: u64) -> i32 {
    let (cache, ledger) = match offline::Offline::inspect(file) {
        Ok(v) => v,
        Err(e) => {
            print(&format!("{e}\n"));
            return status(&e);
        }
    };
    let now = now_ms.max(ledger.high_ms);
    let graces = pool_graces(&cache, &ledger, now);
    let last_contact = ledger.last_contact_ms.unwrap_or(cache.last_contact_ms);
    if json {
        let out = ShowJson {
            file: file.display().to_string(),
            server: &cache.server,
            port: cache.port,
            stamp: &cache.stamp,
            prod_name: &cache.prod_name,
            prod_feat_name: &cache.prod_feat_name,
            last_contact_ms: last_contact,
            now_ms: now,
            pools: graces,
            admissions: &ledger.entries,
        };
        print(&format!(
            "{}\n",
            serde_json::to_string(&out).unwrap_or_default()
        ));
        return 0;
    }
    print(&show_text(
        file,
        &cache,
        &ledger,
        &graces,
        last_contact,
        now,
    ));
    0
}

fn show_text(
    file: &Path,
    cache: &Cache,
    ledger: &Ledger,
    graces: &[PoolGrace],
    last_contact: u64,
    now: u64,
) -> String {
    let mut out = format!(
        "{}: server {} port {}, stamp {}, {} {}\n\
         last contact {}; grace measured at {}\n\n",
        file.display(),
        cache.server,
        cache.port,
        cache.stamp,
        cache.prod_name,
        cache.prod_feat_name,
        rfc3339(last_contact),
        rfc3339(now)
    );
    out.push_str(&format!(
        "{:<20} {:<10} {:>9} {:>7} {:>6}  {:<20}  {}\n",
        "FEATURE", "VERSION", "LICENSES", "OFFLINE", "GRACE", "GRACE ENDS", "LEFT"
    ));
    for g in graces {
        let total = g
            .total
            .map_or_else(|| "uncounted".to_string(), |t| t.to_string());
        out.push_str(&format!(
            "{:<20} {:<10} {:>9} {:>7} {:>5}h  {:<20}  {}\n",
            g.feature,
            g.version,
            total,
            g.held,
            g.grace_hours,
            rfc3339(g.grace_ends_ms),
            left(g.grace_left_ms)
        ));
    }
    let pending = ledger.pending().len();
    out.push_str(&format!(
        "\n{} ({pending} not reconciled)\n",
        super::counted(
            ledger.entries.len() as u64,
            "offline admission",
            "offline admissions"
        )
    ));
    for e in &ledger.entries {
        let a = &e.admission;
        out.push_str(&format!(
            "  {} {} {}@{} handle {} count {} since {}",
            a.id,
            a.feature,
            a.user,
            a.host,
            a.handle,
            a.count,
            rfc3339(a.start_ms)
        ));
        if let Some(r) = e.released_ms {
            out.push_str(&format!(", ended {}", rfc3339(r)));
        }
        if let Some(r) = e.renewed_ms {
            out.push_str(&format!(", renewed {}", rfc3339(r)));
        }
        if e.reconciled {
            out.push_str(", reconciled");
        }
        if let Some(reason) = &e.rejected {
            out.push_str(&format!(", rejected {reason}"));
        }
        out.push('\n');
    }
    out
}

/// `12d 3h 4m`, or `ended`.
fn left(ms: u64) -> String {
    if ms == 0 {
        return "ended".to_string();
    }
    let m = ms / 60_000;
    let (d, h, m) = (m / (24 * 60), m / 60 % 24, m % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m")
    } else {
        format!("{h}h {m}m")
    }
}
