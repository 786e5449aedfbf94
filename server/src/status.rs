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

use std::collections::BinaryHeap;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tally_core::engine::{
    Engine, FeatureSnapshot, HolderSnapshot, HolderView, PoolId, PoolSnapshot, Snapshot,
};
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
                let held = p
                    .holders
                    .iter()
                    .fold(0u32, |n, h| n.saturating_add(h.count));
                features.push(pool_status(f, p, held, p.holders.iter().map(holder_status)));
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
        // The pools' terms and counters, then one pass over the table that
        // keeps, of the page's pools only, their holders' sum and the
        // holders the page lists: memory for the page, not for every
        // holder (`snapshot` + `holder_page` over it gave the same answer).
        let snapshot = engine.pools_snapshot(now);
        let pools: Vec<(&FeatureSnapshot, &PoolSnapshot)> = snapshot
            .features
            .iter()
            .filter(|f| feature.map_or(true, |n| f.name == n))
            .flat_map(|f| f.pools.iter().map(move |p| (f, p)))
            .collect();
        let total = pools.len();
        let from = from.min(total);
        let end = limit.map_or(total, |l| from.saturating_add(l).min(total));
        let page = &pools[from..end];
        let mut slot_of: Vec<Option<usize>> = vec![None; engine.pool_count()];
        let mut acc: Vec<PoolHolders> = Vec::with_capacity(page.len());
        for (i, &(_, p)) in page.iter().enumerate() {
            if let Some(s) = slot_of.get_mut(p.id.0 as usize) {
                *s = Some(i);
            }
            acc.push(PoolHolders {
                held: 0,
                list: match holders.limit {
                    None => Listing::All(Vec::new()),
                    Some(n) => Listing::Page(HolderPage::new(holders.after, n, p.in_use)),
                },
            });
        }
        if !page.is_empty() {
            engine.for_each_holder(|h| {
                let Some(&Some(i)) = slot_of.get(h.pool.0 as usize) else {
                    return;
                };
                let a = &mut acc[i];
                a.held = a.held.saturating_add(h.count);
                match &mut a.list {
                    Listing::All(all) => all.push(*h),
                    Listing::Page(page) => page.offer(h),
                }
            });
        }
        let features = page
            .iter()
            .zip(acc)
            .map(|(&(f, p), a)| {
                let (list, next) = match a.list {
                    Listing::All(mut all) => {
                        all.sort_by_key(|h| (h.since_ms, h.ticket()));
                        (all, None)
                    }
                    Listing::Page(page) => page.finish(),
                };
                let mut s = pool_status(f, p, a.held, list.iter().map(view_status));
                s.holders_next = next;
                s
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

/// A pool's `in_use` and `overdraft` as the full STATUS reports them,
/// from the pool's counters instead of its holders: for a counted pool
/// the admission counter less the licenses kept for `SUITE_RESERVED`
/// holders (which the full form counts nowhere); it equals the full
/// form's figure whenever no checkout is in flight. No holder is read.
pub fn counted_in_use(p: &PoolSnapshot) -> (u32, u32) {
    match p.count {
        Some(total) if !p.startup => {
            let in_use = p.in_use.saturating_sub(p.suite_kept);
            let held = in_use.saturating_sub(p.suite_in_use);
            (in_use, held.saturating_sub(total))
        }
        _ => (p.in_use.saturating_add(p.suite_in_use), p.overdraft),
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

/// One pool's entry, listing `holders`; `held` is the sum of the counts
/// of all the pool's holders (not only those listed).
fn pool_status(
    f: &FeatureSnapshot,
    p: &PoolSnapshot,
    held: u32,
    holders: impl Iterator<Item = HolderStatus>,
) -> FeatureStatus {
    // A counted pool's in_use is the sum of the holders listed, so the two
    // always agree (the pool's own counter may also count checkouts in
    // flight while the table was scanned). A page of holders sums the
    // pool's whole list, not the page.
    let consistent = match p.count {
        Some(total) if !p.startup => (held, held.saturating_sub(total)),
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
        holders: holders.collect(),
        holders_next: None,
    }
}

fn holder_status(h: &HolderSnapshot) -> HolderStatus {
    HolderStatus {
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
    }
}

fn view_status(h: &HolderView) -> HolderStatus {
    HolderStatus {
        user: h.holder.user().to_string(),
        host: h.holder.host().to_string(),
        display: h.holder.display().to_string(),
        handle: h.holder.handle().to_string(),
        ticket: h.ticket(),
        count: h.count,
        since_ms: h.since_ms,
        linger_ms: h.linger_ms,
        deadline_ms: h.deadline_ms,
        borrowed_until_ms: h.deadline_ms.filter(|_| h.borrowed),
    }
}

/// What one table pass keeps of a pool of a STATUS page.
struct PoolHolders {
    /// The counts of all its holders, summed.
    held: u32,
    list: Listing,
}

enum Listing {
    /// No `holders_limit=`: every holder (the old reply).
    All(Vec<HolderView>),
    /// A page of them.
    Page(HolderPage),
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
        HolderCursor::at(h.since_ms, h.ticket)
    }

    /// The cursor of the holder of `ticket`, first checked out at
    /// `since_ms`.
    pub fn at(since_ms: u64, ticket: u64) -> HolderCursor {
        static SECRET: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
        let key = SECRET
            .get_or_init(std::collections::hash_map::RandomState::new)
            .hash_one(ticket);
        HolderCursor {
            since_ms,
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

/// The first `limit` holders of a pool after `after`, in paging order,
/// chosen as a table pass offers them one by one: a max-heap of the
/// `limit + 1` smallest cursors after `after` (the extra one says whether
/// a next page exists), so memory is the page's, not the pool's.
struct HolderPage {
    after: HolderCursor,
    limit: usize,
    heap: BinaryHeap<Ranked>,
}

/// A holder ranked by its cursor, then its ticket: the order of the whole
/// list among holders of one `since_ms` (so even equal cursors, a hash
/// collision, rank as the snapshot listed them).
struct Ranked(HolderCursor, HolderView);

impl Ranked {
    fn rank(&self) -> (HolderCursor, u64) {
        (self.0, self.1.ticket())
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Ranked) -> bool {
        self.rank() == other.rank()
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Ranked) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Ranked) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl HolderPage {
    /// A page of at most `limit` (at least 1) holders after `after`, of a
    /// pool that counts about `hint` licenses out (to size the heap).
    fn new(after: Option<HolderCursor>, limit: usize, hint: u32) -> HolderPage {
        let keep = limit.saturating_add(1);
        HolderPage {
            after: after.unwrap_or(HolderCursor::START),
            limit,
            heap: BinaryHeap::with_capacity(keep.min(hint as usize).min(1 << 16)),
        }
    }

    fn offer(&mut self, h: &HolderView) {
        // Cheap refusals first: the cursor's hash only when `since_ms`
        // leaves the holder a chance.
        if h.since_ms < self.after.since_ms {
            return;
        }
        let full = self.heap.len() > self.limit;
        if full
            && self
                .heap
                .peek()
                .is_some_and(|top| h.since_ms > top.0.since_ms)
        {
            return;
        }
        let c = HolderCursor::at(h.since_ms, h.ticket());
        if c <= self.after {
            return;
        }
        let r = Ranked(c, *h);
        if !full {
            self.heap.push(r);
        } else if self.heap.peek().is_some_and(|top| r < *top) {
            self.heap.pop();
            self.heap.push(r);
        }
    }

    /// The page, in the order of the whole list (first checkout, then
    /// ticket), and the cursor of the next page if any remain.
    fn finish(self) -> (Vec<HolderView>, Option<HolderCursor>) {
        let mut picked = self.heap.into_sorted_vec();
        let more = picked.len() > self.limit;
        picked.truncate(self.limit);
        let next = more.then(|| picked.last().map_or(self.after, |r| r.0));
        let mut page: Vec<HolderView> = picked.into_iter().map(|r| r.1).collect();
        // A page that holds every holder lists them as the old reply.
        page.sort_by_key(|h| (h.since_ms, h.ticket()));
        (page, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::engine::{EngineConfig, Request};
    use tally_core::license::parse_str;

    fn info(now: u64) -> ServerInfo {
        ServerInfo {
            name: "tallyd".into(),
            version: "0".into(),
            host: "h".into(),
            port: 1,
            license_file: "t".into(),
            vendors: vec!["v".into()],
            started_ms: 0,
            now_ms: now,
            connections: 0,
            log_dropped: 0,
        }
    }

    /// The reply as it was built before the table visit: a whole
    /// snapshot, then a page of it (the code this module had, kept here
    /// as the reference).
    fn old_reply(
        engine: &Engine,
        now: u64,
        feature: Option<&str>,
        from: usize,
        limit: Option<usize>,
        holders: HolderPaging,
    ) -> Status {
        fn old_page(
            all: &[HolderSnapshot],
            after: Option<HolderCursor>,
            limit: usize,
        ) -> (Vec<&HolderSnapshot>, Option<HolderCursor>) {
            let after = after.unwrap_or(HolderCursor::START);
            let mut heap = BinaryHeap::new();
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
            page.sort_by_key(|h| (h.since_ms, h.ticket));
            (page, next)
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
            .map(|&(f, p)| {
                let held = p
                    .holders
                    .iter()
                    .fold(0u32, |n, h| n.saturating_add(h.count));
                match holders.limit {
                    None => pool_status(f, p, held, p.holders.iter().map(holder_status)),
                    Some(n) => {
                        let (page, next) = old_page(&p.holders, holders.after, n);
                        let mut s = pool_status(f, p, held, page.into_iter().map(holder_status));
                        s.holders_next = next;
                        s
                    }
                }
            })
            .collect();
        let mut s = Status::of(info(now), features);
        s.from = from;
        s.next = (end < total).then_some(end);
        s.holders_limit = holders.limit;
        s
    }

    fn new_reply(
        engine: &Engine,
        now: u64,
        feature: Option<&str>,
        from: usize,
        limit: Option<usize>,
        holders: HolderPaging,
    ) -> Status {
        Status::for_request(engine, info(now), Vec::new(), feature, from, limit, holders)
    }

    /// Every page of every pool, both ways, until the cursors run out;
    /// returns how many holders the pages listed.
    fn compare_all_pages(engine: &Engine, now: u64, n: usize) -> usize {
        let mut listed = 0;
        for from in 0..4 {
            let mut after = None;
            loop {
                let paging = HolderPaging {
                    limit: Some(n),
                    after,
                };
                let old = old_reply(engine, now, None, from, Some(1), paging);
                let new = new_reply(engine, now, None, from, Some(1), paging);
                assert_eq!(new, old, "pool {from}, page after {after:?}, limit {n}");
                let Some(p) = new.features.first() else {
                    break;
                };
                listed += p.holders.len();
                match p.holders_next {
                    Some(c) => after = Some(c),
                    None => break,
                }
            }
        }
        listed
    }

    #[test]
    fn a_page_is_what_the_whole_snapshot_paged_gave_through_churn() {
        let lic = parse_str(
            "t",
            "FEATURE F v 1.0 permanent 300\n\
             INCREMENT F v 1.0 permanent 200\n\
             FEATURE G v 1.0 permanent 400\n\
             FEATURE H v 1.0 permanent 5\n",
        );
        let e = Engine::new(&lic, EngineConfig::default());
        let now = 1_000_000;
        let mut live: Vec<(String, String)> = Vec::new();
        let mut seed = 7u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for step in 0..1500u64 {
            let feature = ["F", "F", "G", "H"][(rand() % 4) as usize];
            let handle = format!("c{step}");
            let user = format!("u{}", rand() % 50);
            let mut r = Request::new(feature, &user, "host", &handle);
            r.count = 1 + (rand() % 3) as u32;
            r.linger_ms = rand() % 3 * 1000;
            // Many holders share a millisecond: ties on since_ms.
            if e.checkout(&r, now + step / 16).is_ok() {
                live.push((feature.to_string(), handle));
            }
            if rand() % 3 == 0 && !live.is_empty() {
                let (f, h) = live.swap_remove((rand() as usize) % live.len());
                let id = e.find_by_handle(e.feature_id(&f).unwrap(), &h).unwrap();
                e.release(id).unwrap();
            }
            if step % 500 == 499 {
                let t = now + step / 16;
                let mut total = 0;
                for n in [1, 7, 64, 1000] {
                    total = compare_all_pages(&e, t, n);
                }
                assert_eq!(total, live.len(), "every holder listed once");
                for (feature, from, limit) in [
                    (None, 0, None),
                    (Some("F"), 1, Some(1)),
                    (Some("G"), 0, None),
                    (None, 2, Some(5)),
                ] {
                    for holders in [
                        HolderPaging::default(),
                        HolderPaging {
                            limit: Some(3),
                            after: None,
                        },
                    ] {
                        assert_eq!(
                            new_reply(&e, t, feature, from, limit, holders),
                            old_reply(&e, t, feature, from, limit, holders),
                        );
                    }
                }
            }
        }
    }
}
