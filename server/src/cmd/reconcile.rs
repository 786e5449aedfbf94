//! RECONCILE: a session a client admitted offline becomes a checkout.
//!
//! The session is recorded as it happened ([`Engine::reconcile`]): since
//! its `start=`, lingering `linger=` from now (offline sessions are
//! lingering ones: they outlive the connection that reports them, so a
//! client may report them and go; it keeps one by renewing it with a
//! CHECKOUT of the same handle, as any lingering license), admitted whatever
//! the pool's count. Licenses beyond the count are overdraft: the reply
//! says `OK OVERDRAFT`, the debug log gets an `OVERDRAFT:` line, STATUS
//! counts them; new checkouts are refused while the pool is beyond its
//! `count + overdraft` (nobody is dropped).
//!
//! Idempotent by admission id (`id=`): every id reconciled is remembered
//! ([`Seen`], shared by the loops, and the journal's RECONCILE records,
//! restored at start), and a second RECONCILE of it is `OK DUPLICATE`,
//! counting nothing. An id whose RECONCILE was denied is not remembered (it
//! counted nothing). The same id for another feature or handle is not a
//! retry: `ERR BAD_FIELD id=<id> was reconciled for <feature> <handle>`
//! and a `RECONCILE refused:` debug-log line, nothing counted.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::BytesMut;
use tally_core::engine::{Engine, GrantKind, HolderBuf, Names, Request};

use super::{Ctx, Effects, Session};
use crate::debuglog::{Action, FeatureRef, OutKind};
use crate::journal;
use crate::protocol::{self, Reply, RECONCILE_DEFAULT_LINGER_MS};

/// The admission ids reconciled (and being reconciled), with the feature
/// and handle they were for. One lock, taken twice per RECONCILE (rare:
/// a client's reconnection after an outage), never by any other request.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    ids: Mutex<SeenIds>,
}

/// Admission id -> (feature, handle).
type SeenIds = HashMap<Box<str>, (Box<str>, Box<str>)>;

impl Seen {
    fn lock(&self) -> std::sync::MutexGuard<'_, SeenIds> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims `id` for (feature, handle).
    fn claim(&self, id: &str, feature: &str, handle: &str) -> Claim {
        let mut ids = self.lock();
        match ids.get(id) {
            Some((f, h)) if &**f == feature && &**h == handle => Claim::Duplicate,
            Some((f, h)) => Claim::Mismatch {
                feature: f.to_string(),
                handle: h.to_string(),
            },
            None => {
                ids.insert(id.into(), (feature.into(), handle.into()));
                Claim::New
            }
        }
    }

    /// Forgets `id` (its RECONCILE was denied).
    fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Remembers the ids recovered from the journal: (id, feature, handle).
    pub(crate) fn load(&self, ids: Vec<(String, String, String)>) {
        let mut seen = self.lock();
        for (id, feature, handle) in ids {
            seen.insert(id.into(), (feature.into(), handle.into()));
        }
    }

    /// How many ids are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// What [`Seen::claim`] found.
#[derive(Debug, PartialEq, Eq)]
enum Claim {
    /// Not seen before: claimed.
    New,
    /// Seen for the same feature and handle: a retry.
    Duplicate,
    /// Seen for another feature or handle: not this session's id.
    Mismatch {
        /// The feature it was reconciled for.
        feature: String,
        /// The handle it was reconciled for.
        handle: String,
    },
}

/// Answers a RECONCILE into `out`.
pub(crate) fn reconcile(
    cx: &mut Ctx,
    s: &mut Session,
    r: &protocol::Reconcile<'_>,
    now: u64,
    out: &mut BytesMut,
    fx: &mut Effects,
) {
    match cx.shared.reconciled.claim(r.id, r.feature, r.handle) {
        Claim::New => {}
        Claim::Duplicate => {
            let _ = Reply::ReconcileDuplicate {
                feature: r.feature,
                handle: r.handle,
            }
            .write_to(out);
            return;
        }
        Claim::Mismatch { feature, handle } => {
            // Not a retry: two sessions share an id (a client bug, or ids
            // copied with a side file). Nothing counted; said, and logged.
            let vendor = cx
                .engine
                .feature_id(&feature)
                .map_or("lmgrd", |f| vendor(&cx.engine, f));
            let line = format!(
                "RECONCILE refused: id={} was reconciled for \"{feature}\" [{handle}], \
                 not \"{}\" {}@{} [{}]",
                r.id, r.feature, r.user, r.host, r.handle
            );
            fx.line(now, vendor, line);
            let e = protocol::ProtoError {
                code: protocol::ErrCode::BadField,
                text: format!("id={} was reconciled for {feature} {handle}", r.id),
            };
            let _ = Reply::Malformed(&e).write_to(out);
            return;
        }
    }
    let linger_ms = r.linger_ms.unwrap_or_else(|| {
        match cx
            .engine
            .feature_id(r.feature)
            .map(|fid| cx.opts.default_linger_ms(fid))
        {
            Some(l) if l > 0 => l,
            _ => RECONCILE_DEFAULT_LINGER_MS,
        }
    });
    let names = Names {
        feature: r.feature,
        user: r.user,
        host: r.host,
        display: r.display,
        handle: r.handle,
    };
    let req = Request {
        names,
        version: r.version,
        count: r.count,
        linger_ms,
    };
    let holder = HolderBuf::new(r.user, r.host, r.display, r.handle);
    let done = match cx.engine.reconcile(&req, r.start_ms, now) {
        Ok(done) => done,
        Err(d) => {
            cx.shared.reconciled.forget(r.id);
            let f = match cx.engine.feature_id(r.feature) {
                Some(id) => FeatureRef::Id(id),
                None => FeatureRef::Name(r.feature.into()),
            };
            cx.log_license(now, Action::Denied(d.reason), f, || holder, r.count, fx);
            let _ = Reply::Denied {
                feature: r.feature,
                handle: r.handle,
                reason: d.reason,
            }
            .write_to(out);
            return;
        }
    };
    let g = done.grant;
    if g.id.is_some() {
        s.remember_identity(r.user, r.host);
    }
    if let (Some(id), Some(at)) = (g.id, g.schedule) {
        fx.lingers.push((id, at));
    }
    let f = FeatureRef::Id(g.feature);
    if g.kind != GrantKind::Renewed {
        let kind = match g.kind {
            GrantKind::Startup | GrantKind::Uncounted => OutKind::Untracked,
            _ => OutKind::Reconciled,
        };
        let action = if g.overdraft {
            Action::OutOverdraft(kind)
        } else {
            Action::Out(kind)
        };
        cx.log_license(now, action, f.clone(), || holder, g.count, fx);
    }
    if g.kind == GrantKind::Startup {
        cx.log_license(now, Action::InBalance, f, || holder, g.count, fx);
    }
    if done.excess > 0 {
        fx.line(now, vendor(&cx.engine, g.feature), overdraft_line(r, &done));
    }
    let deadline = g.deadline.unwrap_or(0);
    let _ = if done.excess > 0 {
        Reply::ReconciledOverdraft {
            feature: r.feature,
            handle: r.handle,
            deadline,
            excess: done.excess,
        }
    } else {
        Reply::Reconciled {
            feature: r.feature,
            handle: r.handle,
            deadline,
        }
    }
    .write_to(out);
    // Durability: the instance (since its start, so a restart keeps it),
    // then the id; the reply waits for both in sync mode.
    if let Some(j) = cx.journal.as_mut() {
        let mut instance = 0;
        if let (Some(id), GrantKind::New) = (g.id, g.kind) {
            instance = id.to_bits();
            let batch = j.out(&journal::Instance {
                id: instance,
                at_ms: r.start_ms.min(now),
                linger_ms,
                deadline_ms: g.deadline,
                count: g.count,
                version: r.version.unwrap_or(0),
                renewed: false,
                names,
            });
            fx.gate(batch);
        } else if let (Some(id), GrantKind::Renewed) = (g.id, g.kind) {
            instance = id.to_bits();
        }
        let batch = j.reconcile(&journal::record::Reconciled {
            instance,
            at_ms: now,
            id: r.id,
            feature: r.feature,
            handle: r.handle,
        });
        fx.gate(batch);
    }
}

fn vendor(engine: &Engine, f: tally_core::engine::FeatureId) -> &str {
    engine.feature_vendor(f)
}

/// The debug-log line of a reconciliation beyond the count:
/// `OVERDRAFT: "F" user@host [handle]  (reconciled offline use, 5 over 50)`
/// (`N over C`: the pool's licenses beyond its count `C` now), with
/// `, beyond OVERDRAFT=n` when it is also past the line's allowance.
pub(crate) fn overdraft_line(
    r: &protocol::Reconcile<'_>,
    done: &tally_core::engine::Reconciled,
) -> String {
    let over = done.pool_overdraft();
    let allowance = done.limit.saturating_sub(done.total);
    let beyond = if done.in_use > u64::from(done.limit) && allowance > 0 {
        format!(", beyond OVERDRAFT={allowance}")
    } else {
        String::new()
    };
    format!(
        "OVERDRAFT: \"{}\" {}@{} [{}]  (reconciled offline use, {over} over {}{beyond})",
        r.feature, r.user, r.host, r.handle, done.total
    )
}
