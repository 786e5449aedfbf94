//! CHECKIN. Only the holder checks a license in: the connection that
//! checked it out (a connection-bound or DUP_GROUP use it lists), one that
//! has checked out as the holder's user@host, or one that names them
//! (`user=` `host=`, a client that reconnected), or an admin (a local
//! peer, or one after AUTH: it could REMOVE the license anyway). Anyone
//! else is `ERR NOT_HOLDER`, and the license stays out.

use bytes::BytesMut;
use tally_core::engine::{CheckinError, Ended, Names};

use super::{auth, uses, Ctx, Effects, Session};
use crate::journal;
use crate::protocol::Reply;

/// Answers `CHECKIN feature handle [user= host=]` into `out`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn checkin(
    cx: &mut Ctx,
    s: &mut Session,
    feature: &str,
    handle: &str,
    named: Option<(&str, &str)>,
    now: u64,
    out: &mut BytesMut,
    fx: &mut Effects,
) {
    // Under DUP_GROUP the handle names one of this connection's uses of a
    // shared instance: that use ends, and the license goes back with the
    // last use (`uses.rs`). A live instance, not one this connection still
    // lists after it expired or was removed.
    let feature_id = cx.engine.feature_id(feature);
    let fid = feature_id.filter(|&f| cx.grouped(f));
    let engine = &cx.engine;
    let use_of = fid.and_then(|fid| {
        s.held
            .iter_mut()
            .find(|(_, h)| h.feature == fid && h.has_handle(handle) && engine.is_live(h.id))
            .map(|(&id, h)| {
                let bound = h.use_of(handle).unwrap_or(false);
                h.handles.retain(|(u, _)| &**u != handle);
                (id, bound, !h.handles.is_empty())
            })
    });
    if let Some((id, bound, more_here)) = use_of {
        if !more_here {
            s.held.remove(&id);
        }
        match uses::check_in(cx, id, handle, bound, now, fx) {
            Ended::Kept { promised, .. } => {
                if let Some(j) = cx.journal.as_mut() {
                    // The latest promise left, for a restart. A renewal
                    // record of an id the journal has only moves its
                    // deadline (the journal has it whenever a promise was
                    // made).
                    let batch = j.out(&journal::Instance {
                        id: id.to_bits(),
                        at_ms: now,
                        linger_ms: 0,
                        deadline_ms: promised,
                        count: 0,
                        version: 0,
                        renewed: true,
                        names: Names {
                            feature,
                            user: "",
                            host: "",
                            display: "",
                            handle,
                        },
                    });
                    fx.gate(batch);
                }
                let _ = Reply::CheckedIn { feature, handle }.write_to(out);
            }
            Ended::Last(Some(r)) => {
                let batch = cx.released(&r, crate::metrics::Cause::Checkin, now, fx);
                fx.gate(batch);
                let _ = Reply::CheckedIn { feature, handle }.write_to(out);
            }
            Ended::Last(None) => {
                let _ = Reply::NotHeld { feature, handle }.write_to(out);
            }
        }
        return;
    }
    if fid.is_some() {
        // A DUP_GROUP instance is keyed by names, not by the handle: a use
        // is checked in by the connection that has it, never by naming a
        // handle or a holder from elsewhere.
        return not_checked_in(cx, feature, handle, true, CheckinError::NotHeld, out);
    }
    // By handle; then whether the requester is the holder (the cheap
    // answers first: the holder's names are read only when needed).
    let Some(fid) = feature_id else {
        return not_checked_in(cx, feature, handle, false, CheckinError::NoSuchFeature, out);
    };
    let Some(id) = cx.engine.find_by_handle(fid, handle) else {
        return not_checked_in(cx, feature, handle, false, CheckinError::NotHeld, out);
    };
    // An admin may check in anything (it could REMOVE it anyway).
    let is_holder = s.is_admin()
        || s.held.contains_key(&id)
        || cx.engine.holder(id).is_some_and(|holder| {
            s.checked_out_as(&holder) || named.is_some_and(|(u, h)| holder.is_user_host(u, h))
        });
    if !is_holder {
        let _ = Reply::NotHolder { feature, handle }.write_to(out);
        auth::not_holder(cx, s, now, "CHECKIN", feature, handle, fx);
        return;
    }
    match cx.engine.release(id) {
        Some(r) => {
            s.held.remove(&r.id);
            let batch = cx.released(&r, crate::metrics::Cause::Checkin, now, fx);
            fx.gate(batch);
            let _ = Reply::CheckedIn { feature, handle }.write_to(out);
        }
        None => not_checked_in(cx, feature, handle, false, CheckinError::NotHeld, out),
    }
}

/// The reply to a CHECKIN that found nothing to check in.
fn not_checked_in(
    cx: &Ctx,
    feature: &str,
    handle: &str,
    grouped: bool,
    e: CheckinError,
    out: &mut BytesMut,
) {
    let reply = match e {
        CheckinError::NoSuchFeature => Reply::NoSuchFeature { feature },
        // A startup or uncounted grant holds nothing and was already checked
        // in (seed 002 logs its IN at once): the client checks in what it
        // checked out, so that is OK.
        CheckinError::NotHeld
            if cx
                .engine
                .feature_id(feature)
                .is_some_and(|f| !cx.engine.holds_instances(f)) =>
        {
            Reply::CheckedIn { feature, handle }
        }
        // Under DUP_GROUP the instance is keyed by the names, not the
        // handle: a use is checked in on its own connection.
        CheckinError::NotHeld if grouped => {
            let dup = cx
                .engine
                .feature_id(feature)
                .map(|f| cx.engine.dup_group(f).to_string())
                .unwrap_or_default();
            let _ = Reply::NoUseHere {
                feature,
                handle,
                dup_group: &dup,
            }
            .write_to(out);
            return;
        }
        CheckinError::NotHeld => Reply::NotHeld { feature, handle },
    };
    let _ = reply.write_to(out);
}
