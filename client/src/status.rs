//! The STATUS reply's JSON, as a client reads it (`Reply::Ok` of a
//! `STATUS` request): one line describing the server and every pool.
//!
//! These are the field names of docs/protocol.md ("STATUS"), which are
//! stable: new fields may be added (unknown ones are ignored here), none
//! renamed. A feature served by several pools (INCREMENT lines) appears once
//! per pool, in file order. The types serialize back to the same JSON, so a
//! client can pass a status on. tally-server builds the same JSON from its
//! own types; `server/tests/client_contract.rs` checks that the two agree.

use serde::{Deserialize, Serialize};

/// The whole STATUS reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// About the server.
    pub server: ServerInfo,
    /// One entry per pool (FEATURE/INCREMENT line), in license-file order.
    pub features: Vec<FeatureStatus>,
    /// Queued checkouts (`wait=`), oldest first; absent from older servers.
    #[serde(default)]
    pub queue: Vec<QueuedStatus>,
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
    /// The request's `holders_limit=`, when it gave one (absent
    /// otherwise): each entry lists at most this many holders, and one with
    /// more has `holders_next`; 0: a summary, no holder listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holders_limit: Option<usize>,
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
    /// Of `in_use`, beyond `total + overdraft_limit` (reconciled offline
    /// use, or a REREAD that shrank the pool); 0 from older servers.
    #[serde(default)]
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
    /// With `holders_limit=`: the `holders_after=` cursor of this pool's
    /// next page of holders (`<since_ms>.<key>`), absent when `holders`
    /// ends the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holders_next: Option<String>,
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

/// A queued request as shown in STATUS (`queue`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedStatus {
    /// Feature.
    pub feature: String,
    /// User.
    pub user: String,
    /// Host.
    pub host: String,
    /// Display.
    pub display: String,
    /// Client handle.
    pub handle: String,
    /// Licenses asked for.
    pub count: u32,
    /// When it was queued, Unix ms.
    pub since_ms: u64,
    /// When it gives up, Unix ms.
    pub deadline_ms: u64,
}

/// For `skip_serializing_if`.
fn is_zero(n: &u32) -> bool {
    *n == 0
}
