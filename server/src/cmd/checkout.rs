//! CHECKOUT: grant, renew, deny, or queue (`wait=`).
//!
//! The request's feature is looked up once ([`FeatureId`]); its names go
//! on whole ([`Names`]) to the engine, the journal and the queue; the
//! holder's text ([`HolderBuf`]) is built once, by the engine for a new
//! instance or here for a log line, and not at all when neither needs it.

use bytes::BytesMut;
use tally_core::engine::{
    Counted, Denial, FeatureId, Grant, GrantKind, HolderBuf, Names, Reason, Request, BORROWED,
};

use super::{auth, uses, Ctx, Effects, Held, Session};
use crate::debuglog::{Action, FeatureRef, OutKind};
use crate::journal;
use crate::protocol::{self, Reply};
use crate::queue::{QueuedStatus, Seat};

/// Answers a CHECKOUT into `out`, or queues it (`wait=`). `from_queue`: the
/// request is a queued one tried again (`Some(true)` when its wait ran
/// out). Returns false if it is (still) waiting, unanswered.
#[allow(clippy::too_many_arguments)]
pub(crate) fn checkout(
    cx: &mut Ctx,
    s: &mut Session,
    c: &protocol::Checkout<'_>,
    line: &[u8],
    now: u64,
    from_queue: Option<bool>,
    out: &mut BytesMut,
    fx: &mut Effects,
) -> bool {
    let names = &c.names;
    // The one lookup of the feature's name.
    let fid = cx.engine.feature_id(names.feature);
    // Nobody overtakes the queue for its first HOL_LIMIT_MS, except a
    // renewal (it takes nothing) and a request the engine denies anyway
    // (more than any pool has).
    let behind = from_queue.is_none()
        && cx.shared.queues.blocks(names.feature, now)
        && !fid.is_some_and(|f| cx.engine.never_grants(f, c.count))
        && fid.and_then(|f| cx.engine.find(f, names)).is_none();
    if behind && c.wait_ms > 0 {
        enqueue(cx, s, c, fid, line, now, fx);
        return false;
    }
    // The options file's LINGER is the default for checkouts without one.
    let linger_ms = match (c.linger_ms, fid) {
        (0, Some(f)) => cx.opts.default_linger_ms(f),
        (l, _) => l,
    };
    let req = Request {
        names: *names,
        version: c.version,
        count: c.count,
        linger_ms,
    };
    // The holder's text, once built (by the engine, for a new instance).
    let mut holder = None;
    // Under DUP_GROUP the checkout is a counted use (`uses.rs`).
    let result: Result<(Grant, Option<Counted>), Denial> = match (fid, c.borrow_hours) {
        _ if behind => Err(Reason::AllInUse.into()),
        // A borrow: a new instance held until the borrow's end.
        (Some(_), Some(hours)) => {
            let ip = Some(s.peer.ip());
            cx.engine.borrow(&req, hours, ip, now).map(|g| (g, None))
        }
        (Some(f), None) => uses::checkout(cx, s, f, &req, &mut holder, now),
        // As the engine denies it: a malformed request first.
        (None, _) => Err(req.validate().err().unwrap_or(Reason::NoSuchFeature).into()),
    };
    if let Err(d) = &result {
        let full = matches!(
            d.reason,
            Reason::AllInUse | Reason::ReservedForOthers { .. }
        );
        match from_queue {
            None if full && c.wait_ms > 0 => {
                enqueue(cx, s, c, fid, line, now, fx);
                return false;
            }
            Some(false) if full => return false, // keep waiting
            _ => {}
        }
    }
    match result {
        Ok((g, counted)) => {
            let holder = &mut holder;
            // A borrow's linger is its hours, marked in the journal too.
            let linger_ms = match c.borrow_hours {
                Some(h) if g.id.is_some() => (u64::from(h) * 3_600_000) | BORROWED,
                _ => linger_ms,
            };
            granted(cx, s, c, (&g, counted), holder, linger_ms, now, out, fx)
        }
        Err(d) => {
            let f = fid.map_or_else(|| FeatureRef::Name(names.feature.into()), FeatureRef::Id);
            let holder = || holder_text(&mut holder, names);
            cx.counters().denied(&d.reason, now);
            cx.log_license(now, Action::Denied(d.reason), f, holder, c.count, fx);
            if d.reason == Reason::NotHolder {
                auth::not_holder(cx, s, now, "CHECKOUT", names.feature, names.handle, fx);
            }
            let _ = Reply::Denied {
                feature: names.feature,
                handle: names.handle,
                reason: d.reason,
            }
            .write_to(out);
        }
    }
    true
}

/// The request's holder text: the one the engine built for a new
/// instance, else built now, once.
fn holder_text(holder: &mut Option<HolderBuf>, names: &Names<&str>) -> HolderBuf {
    *holder.get_or_insert_with(|| names.holder())
}

/// A grant: its timer, its log lines, the session's note of it, the reply,
/// and its journal record.
#[allow(clippy::too_many_arguments)]
fn granted(
    cx: &mut Ctx,
    s: &mut Session,
    c: &protocol::Checkout<'_>,
    (g, counted): (&Grant, Option<Counted>),
    holder: &mut Option<HolderBuf>,
    linger_ms: u64,
    now: u64,
    out: &mut BytesMut,
    fx: &mut Effects,
) {
    if let (Some(id), Some(at)) = (g.id, g.schedule) {
        fx.lingers.push((id, at));
    }
    let names = &c.names;
    if g.id.is_some() {
        s.remember_identity(names.user, names.host);
    }
    cx.counters().granted(g.kind == GrantKind::Renewed);
    let kind = match g.kind {
        GrantKind::New => OutKind::New,
        GrantKind::Renewed => OutKind::Renewal,
        GrantKind::Startup | GrantKind::Uncounted => OutKind::Untracked,
    };
    let action = if g.overdraft {
        Action::OutOverdraft(kind)
    } else if linger_ms & BORROWED != 0 {
        Action::Out(OutKind::Borrow)
    } else {
        Action::Out(kind)
    };
    let f = FeatureRef::Id(g.feature);
    let text = || holder_text(holder, names);
    cx.log_license(now, action, f.clone(), text, g.count, fx);
    match g.kind {
        // Startup: out and at once in. Renewal: lmgrd logs the duplicate
        // instance's check-in (seed 002), which keeps OUT and IN lines
        // balanced for log parsers.
        GrantKind::Startup | GrantKind::Renewed => {
            let text = || holder_text(holder, names);
            cx.log_license(now, Action::InBalance, f, text, g.count, fx)
        }
        GrantKind::New | GrantKind::Uncounted => {}
    }
    // A use of a DUP_GROUP feature's shared instance, counted by the engine.
    let grouped = counted.is_some();
    if let Some(id) = g.id {
        match s.held.get_mut(&id) {
            // A further use of a shared instance (counted by `uses::checkout`),
            // or the same use renewed (bound, or lingering now).
            Some(h) if grouped => {
                let bound = g.deadline.is_none();
                match h.handles.iter_mut().find(|(u, _)| &**u == names.handle) {
                    Some(u) => u.1 = bound,
                    None => h.handles.push((names.handle.into(), bound)),
                }
            }
            Some(_) => {} // the same use, renewed
            None if linger_ms == 0 || grouped => {
                s.prune_held(&cx.engine);
                let handles = if grouped {
                    vec![(names.handle.into(), g.deadline.is_none())]
                } else {
                    Vec::new()
                };
                s.held.insert(
                    id,
                    Held {
                        id,
                        feature: g.feature,
                        handles,
                    },
                );
            }
            None => {}
        }
    }
    let _ = Reply::Granted {
        feature: names.feature,
        handle: names.handle,
        deadline: g.deadline.unwrap_or(0),
    }
    .write_to(out);
    // Durability: a lingering grant or any renewal is journaled; its reply
    // waits for the record in sync mode. Under DUP_GROUP the journal keeps
    // the latest promise (after a restart no bound use is left).
    let journal_deadline = counted.map_or(g.deadline, |c| c.promised);
    if let (Some(j), Some(id)) = (cx.journal.as_mut(), g.id) {
        if journal_deadline.is_some() || g.kind == GrantKind::Renewed {
            let batch = j.out(&journal::Instance {
                id: id.to_bits(),
                at_ms: now,
                linger_ms,
                deadline_ms: journal_deadline,
                count: g.count,
                version: c.version.unwrap_or(0),
                renewed: g.kind == GrantKind::Renewed,
                names: *names,
            });
            fx.gate(batch);
        }
    }
}

/// Queues a CHECKOUT with `wait=`: the connection answers nothing more
/// until it is served or its wait runs out.
fn enqueue(
    cx: &mut Ctx,
    s: &mut Session,
    c: &protocol::Checkout<'_>,
    fid: Option<FeatureId>,
    line: &[u8],
    now: u64,
    fx: &mut Effects,
) {
    let names = &c.names;
    let deadline = now.saturating_add(c.wait_ms);
    let seat = Seat {
        loop_index: cx.index,
        conn: s.key,
        serial: s.serial,
    };
    let entry = QueuedStatus {
        names: names.to_owned(),
        count: c.count,
        since_ms: now,
        deadline_ms: deadline,
    };
    let seq = cx.shared.queues.push(seat, line, entry);
    fx.waits.push((deadline, seq));
    s.waiting = Some((names.feature.to_string(), seq));
    if !cx.opts.nolog.queued {
        let f = fid.map_or_else(|| FeatureRef::Name(names.feature.into()), FeatureRef::Id);
        fx.log.push(crate::debuglog::Event::License {
            at_ms: now,
            action: Action::Queued,
            feature: f,
            holder: names.holder(),
            count: c.count,
            debug: true,
        });
    }
}
