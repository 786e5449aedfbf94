//! The commands' one door to DUP_GROUP use counts. The counts live with
//! each shared instance in the engine (tally-core's `engine/uses.rs`, a
//! lock per bucket of 16 slots, never one for the whole server); the
//! engine does not know connections, so the session says which uses are
//! its own (`Held::handles`). A use begins with a checkout ([`checkout`]),
//! one ends by CHECKIN ([`check_in`]), all of a connection's end with its
//! close or idle TIMEOUT ([`end`]). Across a REREAD the counts move with
//! `Engine::restore_uses` (`cmd/reread.rs`).

use tally_core::engine::{
    Counted, Denial, Ended, FeatureId, Grant, HolderBuf, InstanceId, Release, Request, Use,
};

use super::{Ctx, Effects, Held, Session};

/// A checkout of `feature` (`req`'s, looked up) by session `s`; a new
/// instance keeps `holder` (built and left there if `None`). For a
/// DUP_GROUP feature the checkout is a use of the shared instance, counted
/// by the engine with the checkout unless it renews this connection's own
/// use by this handle (the [`Counted`] beside the grant says what was
/// counted; `Grant::schedule` is the instance's deadline to arm). Any
/// other feature's checkout counts nothing (no `Counted`).
pub(super) fn checkout(
    cx: &Ctx,
    s: &Session,
    feature: FeatureId,
    req: &Request<'_>,
    holder: &mut Option<HolderBuf>,
    now: u64,
) -> Result<(Grant, Option<Counted>), Denial> {
    let held = &s.held;
    let ip = Some(s.peer.ip());
    cx.engine
        .checkout_use_of(feature, req, holder, ip, now, |id| {
            held.get(&id)
                .and_then(|h| h.use_of(req.names.handle))
                .map(bound_or_lingering)
        })
}

/// A session's note of its use (bound or not) as the engine's [`Use`].
fn bound_or_lingering(bound: bool) -> Use {
    if bound {
        Use::Bound
    } else {
        Use::Lingering
    }
}

/// A CHECKIN by `handle` of its use of shared instance `id` (`bound`:
/// whether that use was). If other uses or a promise keep the license out,
/// the instance's new deadline gets a timer.
pub(super) fn check_in(
    cx: &Ctx,
    id: InstanceId,
    handle: &str,
    bound: bool,
    now: u64,
    fx: &mut Effects,
) -> Ended {
    let ended = cx.engine.check_in_use(id, handle, bound, now);
    if let Ended::Kept {
        schedule: Some(d), ..
    } = ended
    {
        fx.lingers.push((id, d));
    }
    ended
}

/// Ends all of a connection's uses of `h` (it closed, or went idle past
/// TIMEOUT) and returns what was checked in: for a DUP_GROUP feature, the
/// license if that was its last use and no promise keeps it; otherwise
/// the instance if it was held until check-in.
pub(super) fn end(cx: &Ctx, h: &Held, now: u64, fx: &mut Effects) -> Option<Release> {
    if !cx.grouped(h.feature) {
        return cx.engine.release_if_unlingered(h.id);
    }
    match cx.engine.end_uses(h.id, h.uses(), h.bound(), now) {
        Ended::Kept { schedule, .. } => {
            // No bound use left: the latest promise holds it.
            if let Some(d) = schedule {
                fx.lingers.push((h.id, d));
            }
            None
        }
        Ended::Last(r) => r,
    }
}
