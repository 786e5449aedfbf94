//! tallyctl's lmstat output against the regexes of the Prometheus exporter
//! mjtrangoni/flexlm_exporter (commit f39c915af7085b262a1de889e41116bcefbd9949,
//! `collector/regexp.go` lines 7-51). The patterns below are copied verbatim
//! from that file (Go RE2; the Rust `regex` crate reads them the same way).
//!
//! Needs the dev-dependency `regex = "1"`.

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::DateTime;
use regex::Regex;
use tally_client::ctl::lmstat::{lmstat_a, lmstat_i, lmstat_v};
use tally_client::ctl::ServerAddr;
use tally_client::status::Status;

// collector/regexp.go lines 7-8.
const VERSION: &str = r"^lmstat (?P<version>v[\d\.]+) build (?P<build>\d+) (?P<arch>[\w]+)";
// Lines 9-10.
const SERVERS: &str = r"^License server status: (?P<servers>[\w,.@\-]+)";
// Lines 11-13.
const SERVER_STATUS: &str = concat!(
    r"(?P<fqdn>[\w\.\-]+): license server (?P<status>\w+)(?P<master>\s",
    r"\(MASTER\))? (?P<version>v[\d\.]+)$"
);
// Lines 14-15.
const VENDOR_STATUS: &str = r"^\s+(?P<vendor>\w+): (?P<status>UP|DOWN) (?P<version>v[\d\.]+)$";
// Lines 16-18.
const FEATURE_USAGE: &str = concat!(
    r"^Users of (?P<name>.*):\s+\(Total of (?P<issued>\d+) \w+ issued\;\s+",
    r"Total of (?P<used>\d+) \w+ in use\)$"
);
// Lines 19-23.
const USAGE_USER: &str = concat!(
    r"^\s+(?P<user>[\w[:print:]]+) [\w\-\.]+ [[:print:]]+ (?P<ver>\(v[\w\.]+\)) \([\w\-\.]+\/\d+ ",
    r"\d+\)\, start (?P<since>\w+ \d+\/\d+ \d+\:\d+)(\,\s(?P<licenses>\d+)\s\w+|)",
    r"(\s+\(linger\:\s\d+\s\/\s\d+\))?",
    r"(\,\s+PID\:\s+\d+\s?)?$"
);
// Lines 37-38.
const NODE_LOCKED: &str = r"^Users of (?P<name>.*):\s+\(Uncounted, node-locked\)$";
// Lines 39-40.
const FEATURE_TYPE: &str = r"^\s+(?P<type>floating|uncounted nodelocked|nodelocked) license";
// Lines 42-44.
const FEATURE_EXP: &str = concat!(
    r"^(?P<feature>[[:graph:]]+)\s+(?P<version>[\d\.]+)\s+",
    r"(?P<licenses>\d+)\s+(?P<expires>[\w\-]+)\s+(?P<vendor>\w+)$"
);
// Lines 50-51.
const TIME: &str = r"^\w+ (?P<month>\d+)/(?P<day>\d+) (?P<time>\d+:\d+)$";

/// A feature as the exporter sees it: name, (issued, used) from its `Users
/// of` line (`None` when uncounted), and the sum of its holder lines.
type Usage = (String, Option<(u64, u64)>, u64);

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"))
}

fn status() -> Status {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/status_mixed.json");
    let text = std::fs::read_to_string(path).expect("fixture");
    serde_json::from_str(&text).expect("fixture parses")
}

fn report(status: &Status) -> String {
    let now = DateTime::parse_from_rfc3339("2026-04-22T11:08:00+02:00").expect("time");
    let dialled = ServerAddr {
        port: 27000,
        host: "localhost".to_string(),
    };
    lmstat_a(status, &dialled, &now)
}

#[test]
fn lmstat_v_matches_version_regex() {
    let version = re(VERSION);
    let text = lmstat_v();
    let caps = text
        .lines()
        .find_map(|l| version.captures(l))
        .expect("a version line");
    assert_eq!(&caps["version"], concat!("v", env!("CARGO_PKG_VERSION")));
}

#[test]
fn lmstat_a_parses_like_the_exporter() {
    let status = status();
    let text = report(&status);
    let (servers, server_status, vendor_status) =
        (re(SERVERS), re(SERVER_STATUS), re(VENDOR_STATUS));
    let (usage, node_locked, user, ftype, time) = (
        re(FEATURE_USAGE),
        re(NODE_LOCKED),
        re(USAGE_USER),
        re(FEATURE_TYPE),
        re(TIME),
    );

    // Servers: the exporter keys by the first label of each status entry and
    // then indexes that map with the server line's host (lmstat.go 224-235).
    let mut server_map: HashMap<String, bool> = HashMap::new();
    let mut vendors = Vec::new();
    let mut features: Vec<Usage> = Vec::new();
    let mut holder_lines = 0;
    for line in text.lines() {
        if let Some(c) = servers.captures(line) {
            for entry in c["servers"].split(',') {
                let host = entry.split('@').nth(1).expect("PORT@HOST").to_lowercase();
                let label = host.split('.').next().unwrap_or_default().to_string();
                server_map.insert(label, false);
            }
        } else if let Some(c) = server_status.captures(line) {
            let label = c["fqdn"]
                .split('.')
                .next()
                .unwrap_or_default()
                .to_lowercase();
            let up = server_map
                .get_mut(&label)
                .expect("server line host is in the status list");
            *up = &c["status"] == "UP";
            assert!(c.name("master").is_some());
            assert_eq!(&c["version"], "v0.1.0");
        } else if let Some(c) = vendor_status.captures(line) {
            assert_eq!(&c["status"], "UP");
            vendors.push(c["vendor"].to_string());
        } else if let Some(c) = usage.captures(line) {
            let n = |k: &str| c[k].parse::<u64>().expect("number");
            features.push((c["name"].to_string(), Some((n("issued"), n("used"))), 0));
        } else if let Some(c) = node_locked.captures(line) {
            features.push((c["name"].to_string(), None, 0));
        } else if ftype.is_match(line) {
            assert!(!features.is_empty());
        } else if let Some(c) = user.captures(line) {
            holder_lines += 1;
            assert!(time.is_match(&c["since"]), "start time {:?}", &c["since"]);
            let count = c
                .name("licenses")
                .map_or(1, |m| m.as_str().parse().expect("n"));
            features.last_mut().expect("a Users line first").2 += count;
        } else if line.starts_with("    ") && line.contains(", start ") {
            panic!("holder line the exporter does not match: {line:?}");
        } else if line.starts_with("Users of ") {
            panic!("usage line the exporter does not match: {line:?}");
        }
    }
    assert_eq!(server_map.get("lic1"), Some(&true));
    assert_eq!(vendors, status.server.vendors);
    assert_eq!(holder_lines, 7);
    let names: Vec<&str> = features.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "CITRIX",
            "MPM_ADV_RC",
            "MPS_ENT_CCU",
            "XD_NODE",
            "IDLE_FEATURE",
            "ONE_SEAT",
            "cfd_solver"
        ]
    );
    for (name, counts, summed) in &features {
        if let Some((_, used)) = counts {
            assert_eq!(used, summed, "{name}");
        }
    }
    assert_eq!(features[1].1, Some((15, 5)));
}

#[test]
fn lmstat_i_rows_match_the_expiry_regex() {
    let status = status();
    let exp = re(FEATURE_EXP);
    let rows: Vec<(String, String, String)> = lmstat_i(&status, None)
        .lines()
        .filter_map(|l| exp.captures(l))
        .map(|c| {
            (
                c["feature"].to_string(),
                c["licenses"].to_string(),
                c["expires"].to_string(),
            )
        })
        .collect();
    // Every counted pool gives a row; uncounted ones print `uncounted`,
    // which the exporter skips.
    let counted: Vec<_> = status
        .features
        .iter()
        .filter(|f| f.total.is_some())
        .collect();
    assert_eq!(rows.len(), counted.len());
    for (row, pool) in rows.iter().zip(counted) {
        assert_eq!(row.0, pool.name);
        assert_eq!(Some(row.1.parse().expect("n")), pool.total);
        assert_eq!(row.2, pool.expiry);
    }
}
