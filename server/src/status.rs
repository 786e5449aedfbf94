//! The STATUS reply: one line of JSON describing the server and every pool.
//!
//! `tallyd` builds a [`Status`] from an engine snapshot; tally-client
//! (`tallyctl`'s `lmstat -a`, `status`) reads it with its own types, checked
//! against these by `server/tests/client_contract.rs`. A feature served
//! by several pools (INCREMENT lines) appears once per pool, in file order;
//! lmstat-style output sums them per feature. Field names are part of the
//! protocol (docs/protocol.md): new fields may be added, none renamed.
//!
//! A server of millions of holders is read in parts ([`HolderPaging`]):
//! `holders_limit=0` is a summary built from the pools' counters without
//! scanning the checkout table ([`Status::summary`]); `holders_limit=n`
//! with `holders_after=` pages through each pool's holders by a cursor
//! ([`HolderCursor`]), so a client that pages holds one page at a time.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tally_core::engine::{Engine, FeatureSnapshot, HolderSnapshot, PoolId, PoolSnapshot, Snapshot};
use tally_core::license::{Expiry, PoolKind};

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
    /// `holders_limit=` of the request, when it gave one (absent
    /// otherwise): each entry lists at most this many holders, and one with
    /// more has `holders_next`. 0: a summary, no holder listed.
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
    /// With `holders_limit=`: the `holders_after=` of this pool's next
    /// page of holders, absent when `holders` ends the list. In a summary
    /// (`holders_limit=0`) it is present whenever `in_use` is not 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holders_next: Option<HolderCursor>,
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
                features.push(pool_status(f, p, p.holders.iter()));
            }
        }
        Status::of(server, features)
    }

    fn of(server: ServerInfo, features: Vec<FeatureStatus>) -> Status {
        Status {
            server,
            features,
            queue: Vec::new(),
            handles_hidden: false,
            from: 0,
            next: None,
            holders_limit: None,
        }
    }

    /// The reply to a STATUS request: `feature`, `from`, `limit` as
    /// [`Status::page`] applies them, `holders` as [`HolderPaging`] says,
    /// with the queued checkouts `queue`. Old requests (no
    /// `holders_limit=`) get exactly what `from_snapshot` + `page` give.
    /// Only the entries of the page are converted, and of their holders
    /// only the page's.
    pub fn for_request(
        engine: &Engine,
        server: ServerInfo,
        mut queue: Vec<crate::queue::QueuedStatus>,
        feature: Option<&str>,
        from: usize,
        limit: Option<usize>,
        holders: HolderPaging,
    ) -> Status {
        let now = server.now_ms;
        if holders.limit == Some(0) {
            let mut s = Status::summary(engine, server);
            s.queue = queue;
            s.page(feature, from, limit);
            return s;
        }
        if let Some(name) = feature {
            queue.retain(|q| q.names.feature == name);
        }
        let snapshot = engine.snapshot(now);
        let pools: Vec<(&FeatureSnapshot, &PoolSnapshot)> = snapshot
            .features
            .iter()
            .filter(|f| feature.map_or(true, |n| f.name == n))
            .flat_map(|f| f.pools.iter().map(move |p| (f, p)))
            .collect();
        let total = pools.len();
        let from = from.min(total);
        let end = limit.map_or(total, |l| from.saturating_add(l).min(total));
        let features = pools[from..end]
            .iter()
            .map(|&(f, p)| match holders.limit {
                None => pool_status(f, p, p.holders.iter()),
                Some(n) => {
                    let (page, next) = holder_page(&p.holders, holders.after, n);
                    let mut s = pool_status(f, p, page.into_iter());
                    s.holders_next = next;
                    s
                }
            })
            .collect();
        let mut s = Status::of(server, features);
        s.queue = queue;
        s.from = from;
        s.next = (end < total).then_some(end);
        s.holders_limit = holders.limit;
        s
    }

    /// Every pool's counts and terms, no holder listed (`holders_limit=0`),
    /// from the pools' counters: no scan of the checkout table, so it costs
    /// the same with ten million holders as with none. `in_use` is the
    /// pool's admission counter: it may count a checkout in flight, and
    /// licenses a `SUITE_RESERVED` suite keeps for its holders (the full
    /// form counts those nowhere); `suite_in_use` is not reported (0), the
    /// suite's own licenses being in `in_use` already.
    pub fn summary(engine: &Engine, server: ServerInfo) -> Status {
        let now = server.now_ms;
        // Pools grouped by feature, features in their engine order (first
        // appearance in the file), as the snapshot lists them.
        let mut by_feature: Vec<Vec<u32>> = vec![Vec::new(); engine.feature_count()];
        for p in 0..engine.pool_count() {
            let Some((line, _, _)) = engine.pool_line(PoolId(p as u32)) else {
                continue;
            };
            if let Some(fid) = engine.feature_id(&line.feature) {
                if let Some(list) = by_feature.get_mut(fid.0 as usize) {
                    list.push(p as u32);
                }
            }
        }
        let mut features = Vec::new();
        for (fid, pools) in by_feature.iter().enumerate() {
            let Some(id) = engine.feature_id_at(fid) else {
                continue;
            };
            for &p in pools {
                let Some((line, in_use, _)) = engine.pool_line(PoolId(p)) else {
                    continue;
                };
                let in_use = u32::try_from(in_use).unwrap_or(u32::MAX);
                let startup = line.is_startup();
                let counted = line.count.filter(|_| !startup);
                let end_ms = match line.expiry {
                    Expiry::Permanent => u64::MAX,
                    Expiry::On(d) => d.end_ms(),
                };
                features.push(FeatureStatus {
                    name: engine.feature_name(id).to_string(),
                    vendor: engine.feature_vendor(id).to_string(),
                    version: line.version.to_string(),
                    kind: kind_name(line.kind),
                    line: line.line,
                    expiry: line.expiry.flexlm(),
                    expired: now >= end_ms,
                    startup,
                    total: line.count,
                    in_use,
                    overdraft: counted.map_or(0, |t| in_use.saturating_sub(t)),
                    overdraft_limit: line.overdraft,
                    over_limit: counted.map_or(0, |t| {
                        in_use.saturating_sub(t.saturating_add(line.overdraft))
                    }),
                    dup_group: engine.dup_group(id).to_string(),
                    package: line.package.as_ref().map(|c| c.package.clone()),
                    suite_in_use: 0,
                    holders: Vec::new(),
                    holders_next: (in_use > 0).then_some(HolderCursor::START),
                });
            }
        }
        let mut s = Status::of(server, features);
        s.holders_limit = Some(0);
        s
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

fn kind_name(kind: PoolKind) -> String {
    match kind {
        PoolKind::Feature => "FEATURE",
        PoolKind::Increment => "INCREMENT",
    }
    .to_string()
}

/// One pool's entry, listing `holders`.
fn pool_status<'a>(
    f: &FeatureSnapshot,
    p: &PoolSnapshot,
    holders: impl Iterator<Item = &'a HolderSnapshot>,
) -> FeatureStatus {
    // A counted pool's in_use is the sum of the holders listed, so the two
    // always agree (the pool's own counter may also count checkouts in
    // flight while the table was scanned). A page of holders sums the
    // pool's whole list (`p.holders`), not the page.
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
    FeatureStatus {
        name: f.name.clone(),
        vendor: f.vendor.clone(),
        version: p.version.to_string(),
        kind: kind_name(p.kind),
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
        holders: holders
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
        holders_next: None,
    }
}

/// How a STATUS lists holders (`holders_limit=`, `holders_after=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HolderPaging {
    /// At most this many holders per entry; `None`: all (the old reply);
    /// `Some(0)`: none, a summary from the pools' counters.
    pub limit: Option<usize>,
    /// Only holders after this one in paging order.
    pub after: Option<HolderCursor>,
}

/// A position in a pool's holders in paging order: by first checkout
/// (`since_ms`), then by a key the server derives from the instance with
/// a secret of its process (so a cursor reveals no ticket to a peer
/// without AUTH). Written `<since_ms>.<key>`; `0.0` is before every
/// holder. A holder's place never changes while it is held (its
/// `since_ms` is its first checkout), so paging from `0.0` through each
/// `holders_next` lists every holder held throughout exactly once; one
/// checked out meanwhile is listed if its place is after the cursor (a new
/// checkout's `since_ms` is the latest, so normally it is). A cursor is
/// only valid with the server process that gave it: after a restart the
/// keys differ, and paging should start again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HolderCursor {
    /// First checkout of the last holder listed, Unix ms.
    pub since_ms: u64,
    /// Its paging key.
    pub key: u64,
}

impl HolderCursor {
    /// Before every holder.
    pub const START: HolderCursor = HolderCursor {
        since_ms: 0,
        key: 0,
    };

    /// The cursor of a holder.
    pub fn of(h: &HolderSnapshot) -> HolderCursor {
        static SECRET: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
        let key = SECRET
            .get_or_init(std::collections::hash_map::RandomState::new)
            .hash_one(h.ticket);
        HolderCursor {
            since_ms: h.since_ms,
            // 0 is START's: never a holder's key.
            key: key.max(1),
        }
    }
}

impl std::fmt::Display for HolderCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.since_ms, self.key)
    }
}

impl std::str::FromStr for HolderCursor {
    type Err = ();
    fn from_str(s: &str) -> Result<HolderCursor, ()> {
        let (a, b) = s.split_once('.').ok_or(())?;
        let digits = |t: &str| -> Result<u64, ()> {
            if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
                return Err(());
            }
            t.parse().map_err(|_| ())
        };
        Ok(HolderCursor {
            since_ms: digits(a)?,
            key: digits(b)?,
        })
    }
}

impl Serialize for HolderCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HolderCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<HolderCursor, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|()| serde::de::Error::custom("not a holder cursor (<since_ms>.<key>)"))
    }
}

/// The first `limit` holders of `all` after `after`, in paging order, and
/// the cursor of the next page if any remain. Memory: the page, not the
/// list (a bounded selection over `all`).
fn holder_page(
    all: &[HolderSnapshot],
    after: Option<HolderCursor>,
    limit: usize,
) -> (Vec<&HolderSnapshot>, Option<HolderCursor>) {
    let after = after.unwrap_or(HolderCursor::START);
    // A max-heap of the `limit + 1` smallest cursors after `after`: the
    // extra one says whether a next page exists.
    let mut heap: std::collections::BinaryHeap<(HolderCursor, usize)> =
        std::collections::BinaryHeap::with_capacity(limit.saturating_add(1).min(all.len()));
    let keep = limit.saturating_add(1);
    for (i, h) in all.iter().enumerate() {
        let c = HolderCursor::of(h);
        if c <= after {
            continue;
        }
        if heap.len() < keep {
            heap.push((c, i));
        } else if heap.peek().is_some_and(|&(top, _)| c < top) {
            heap.pop();
            heap.push((c, i));
        }
    }
    let mut picked = heap.into_sorted_vec();
    let more = picked.len() > limit;
    picked.truncate(limit);
    let next = more.then(|| picked.last().map_or(after, |&(c, _)| c));
    let mut page: Vec<&HolderSnapshot> = picked.into_iter().map(|(_, i)| &all[i]).collect();
    // Within the page, the order of the whole list (first checkout, then
    // ticket): a page that holds every holder lists them as the old reply.
    page.sort_by_key(|h| (h.since_ms, h.ticket));
    (page, next)
}
