//! The STATUS reply: one line of JSON describing the server and every pool.
//!
//! `tallyd` builds a [`Status`] from an engine snapshot; tally-client
//! (`tallyctl`'s `lmstat -a`, `status`) reads it with its own types, checked
//! against these by `server/tests/client_contract.rs`. A feature served
//! by several pools (INCREMENT lines) appears once per pool, in file order;
//! lmstat-style output sums them per feature. Field names are part of the
//! protocol (docs/protocol.md): new fields may be added, none renamed.

use serde::{Deserialize, Serialize};
use tally_core::engine::Snapshot;
use tally_core::license::PoolKind;

/// The whole STATUS reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// About the server.
    pub server: ServerInfo,
    /// One entry per pool (FEATURE/INCREMENT line), in license-file order.
    pub features: Vec<FeatureStatus>,
    /// Queued checkouts (`wait=`), oldest first; absent from older servers.
    #[serde(default)]
    pub queue: Vec<crate::queue::QueuedStatus>,
    /// Handles and tickets are blanked (`""`, 0): the asker is a remote
    /// peer without AUTH.
    #[serde(default)]
    pub handles_hidden: bool,
    /// Entries of `features` before this page (`from=`).
    #[serde(default)]
    pub from: usize,
    /// `from=` of the next page, or `null` when this one is the last.
    #[serde(default)]
    pub next: Option<usize>,
}

/// About the server process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Always `tallyd`.
    pub name: String,
    /// tallyd's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The host name the server reports (SERVER line, else the machine's).
    pub host: String,
    /// The TCP port it listens on.
    pub port: u16,
    /// The license file (path, or `<embedded demo>`).
    pub license_file: String,
    /// Vendor daemon names served, in file order.
    pub vendors: Vec<String>,
    /// When the server started, Unix ms.
    pub started_ms: u64,
    /// When this status was taken, Unix ms.
    pub now_ms: u64,
    /// Open client connections.
    pub connections: u64,
    /// Debug-log lines dropped because the writer fell behind.
    pub log_dropped: u64,
}

/// One pool of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureStatus {
    /// Feature name.
    pub name: String,
    /// Vendor daemon.
    pub vendor: String,
    /// Highest version this pool serves, as written in the file.
    pub version: String,
    /// `FEATURE` or `INCREMENT`.
    pub kind: String,
    /// Line of the license file.
    pub line: u32,
    /// `permanent` or a date like `31-dec-2026`.
    pub expiry: String,
    /// The pool has expired.
    pub expired: bool,
    /// A Citrix startup license (`LT=SYS`): checked out and in at once.
    pub startup: bool,
    /// Licenses in the file; `null` when uncounted.
    pub total: Option<u32>,
    /// Licenses out now.
    pub in_use: u32,
    /// Of those, beyond `total` (overdraft licenses).
    pub overdraft: u32,
    /// Overdraft allowed beyond `total`.
    pub overdraft_limit: u32,
    /// Of `in_use`, beyond `total + overdraft_limit`: only reconciled
    /// offline use (RECONCILE) or a REREAD that shrank the pool gets there;
    /// new checkouts are denied meanwhile.
    pub over_limit: u32,
    /// Duplicate grouping (`NONE` = by handle, `UHD`, ...).
    pub dup_group: String,
    /// The PACKAGE whose component this pool is (absent if none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// For a package suite's own feature: the licenses its components'
    /// holders took (one per holder), counted in `in_use` but not in
    /// `holders` (absent when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub suite_in_use: u32,
    /// Who holds licenses of this pool.
    pub holders: Vec<HolderStatus>,
}

/// One held instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderStatus {
    /// User name.
    pub user: String,
    /// Host name.
    pub host: String,
    /// Display.
    pub display: String,
    /// The client's handle string.
    pub handle: String,
    /// Numeric license handle (lmstat's number after `server/port`; give it
    /// to `REMOVE_HANDLE`).
    pub ticket: u64,
    /// Licenses held.
    pub count: u32,
    /// First checkout, Unix ms.
    pub since_ms: u64,
    /// Linger of the latest checkout, ms (0 = none).
    pub linger_ms: u64,
    /// When it will be checked in, Unix ms; `null` = held until check-in or
    /// disconnect.
    pub deadline_ms: Option<u64>,
    /// A borrowed license (`borrow=`): the borrow's end, Unix ms (its
    /// `deadline_ms`). Absent for every other holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub borrowed_until_ms: Option<u64>,
}

impl Status {
    /// Builds the reply from an engine snapshot and server facts.
    pub fn from_snapshot(snapshot: &Snapshot, server: ServerInfo) -> Status {
        let mut features = Vec::new();
        for f in &snapshot.features {
            for p in &f.pools {
                // A counted pool's in_use is the sum of the holders listed,
                // so the two always agree (the pool's own counter may also
                // count checkouts in flight while the table was scanned).
                let consistent = match p.count {
                    Some(total) if !p.startup => {
                        let held: u32 = p
                            .holders
                            .iter()
                            .fold(0u32, |n, h| n.saturating_add(h.count));
                        (held, held.saturating_sub(total))
                    }
                    _ => (p.in_use, p.overdraft),
                };
                features.push(FeatureStatus {
                    name: f.name.clone(),
                    vendor: f.vendor.clone(),
                    version: p.version.to_string(),
                    kind: match p.kind {
                        PoolKind::Feature => "FEATURE",
                        PoolKind::Increment => "INCREMENT",
                    }
                    .to_string(),
                    line: p.line,
                    expiry: p.expiry.flexlm(),
                    expired: p.expired,
                    startup: p.startup,
                    total: p.count,
                    in_use: consistent.0.saturating_add(p.suite_in_use),
                    overdraft: consistent.1,
                    overdraft_limit: p.overdraft_limit,
                    over_limit: match p.count {
                        Some(total) if !p.startup => consistent
                            .0
                            .saturating_sub(total.saturating_add(p.overdraft_limit)),
                        _ => 0,
                    },
                    dup_group: f.dup_group.to_string(),
                    package: p.package.clone(),
                    suite_in_use: p.suite_in_use,
                    holders: p
                        .holders
                        .iter()
                        .map(|h| HolderStatus {
                            user: h.user.clone(),
                            host: h.host.clone(),
                            display: h.display.clone(),
                            handle: h.handle.clone(),
                            ticket: h.ticket,
                            count: h.count,
                            since_ms: h.since_ms,
                            linger_ms: h.linger_ms,
                            deadline_ms: h.deadline_ms,
                            borrowed_until_ms: h.deadline_ms.filter(|_| h.borrowed),
                        })
                        .collect(),
                });
            }
        }
        Status {
            server,
            features,
            queue: Vec::new(),
            handles_hidden: false,
            from: 0,
            next: None,
        }
    }

    /// Keeps only the pools of `feature` (if given), then entries
    /// `from..from + limit` of those, and says where the next page starts.
    pub fn page(&mut self, feature: Option<&str>, from: usize, limit: Option<usize>) {
        if let Some(name) = feature {
            self.features.retain(|f| f.name == name);
            self.queue.retain(|q| q.names.feature == name);
        }
        let total = self.features.len();
        let from = from.min(total);
        let end = limit.map_or(total, |l| from.saturating_add(l).min(total));
        self.features.truncate(end);
        self.features.drain(..from);
        self.from = from;
        self.next = (end < total).then_some(end);
    }

    /// Blanks every handle and ticket (for a remote peer without AUTH:
    /// a handle is what lets its holder renew or check in).
    pub fn hide_handles(&mut self) {
        for h in self.features.iter_mut().flat_map(|f| &mut f.holders) {
            h.handle.clear();
            h.ticket = 0;
        }
        for q in &mut self.queue {
            q.names.handle.clear();
        }
        self.handles_hidden = true;
    }
}

/// For `skip_serializing_if`.
fn is_zero(n: &u32) -> bool {
    *n == 0
}
