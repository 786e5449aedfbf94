//! The commands' one door to DUP_GROUP use counts (`crate::uses`): a use
//! begins ([`begin`]), one ends by CHECKIN ([`check_in`]), all of a
//! connection's end ([`end`]), a checked-in instance is forgotten
//! ([`forget`]), and a reread moves the counts ([`remap`]). Every call into
//! [`crate::uses::Uses`] is in this file.

use std::collections::HashMap;

use tally_core::engine::{Denial, Engine, FeatureId, Grant, InstanceId, Release, Request};

use super::{Ctx, Effects, Held, Session};
use crate::uses::{Ended, Granted, Kept};

/// A checkout of a grouped feature: a new use is counted with the checkout,
/// under the uses' lock (`uses.rs`), unless this connection's use by this
/// handle is being renewed. A deadline promised to another use is kept.
pub(super) fn begin(
    cx: &Ctx,
    s: &Session,
    req: &Request<'_>,
    now: u64,
) -> (Result<Grant, Denial>, Option<Kept>) {
    let held = &s.held;
    let engine = &cx.engine;
    let peer = s.peer.ip();
    let (mut result, k) = cx.shared.uses.begin(
        req.handle,
        now,
        || engine.checkout_from(req, Some(peer), now),
        |r: &Result<Grant, Denial>| {
            let g = r.as_ref().ok()?;
            let id = g.id?;
            Some(Granted {
                id,
                was: held.get(&id).and_then(|h| h.use_of(req.handle)),
                deadline: g.deadline,
                previous: g.previous_deadline,
            })
        },
        |id, d| engine.reschedule(id, d),
    );
    if let (Some(k), Ok(g)) = (k, result.as_mut()) {
        // A timer for the engine's deadline now (the reply still says what
        // this use was promised).
        g.schedule = k.engine;
    }
    (result, k)
}

/// A CHECKIN by `handle` of its use of `id` (`bound`: whether that use
/// was). `promised` gets the latest promise left, for the journal.
pub(super) fn check_in(
    cx: &Ctx,
    id: InstanceId,
    handle: &str,
    bound: bool,
    now: u64,
    fx: &mut Effects,
    promised: impl FnOnce(Option<u64>),
) -> Ended<Option<Release>> {
    let engine = &cx.engine;
    let lingers = &mut fx.lingers;
    cx.shared.uses.check_in(
        id,
        handle,
        bound,
        now,
        || engine.release(id),
        |d| {
            // Another use's promise, or none while a bound use lives,
            // replaces this handle's.
            if engine.reschedule(id, d) {
                if let Some(d) = d {
                    lingers.push((id, d));
                }
            }
        },
        promised,
    )
}

/// Ends all of a connection's uses of `h`, and if no other use of it goes
/// on (always, unless DUP_GROUP shares it), checks it in with `checkin`.
pub(super) fn end(
    cx: &Ctx,
    h: &Held,
    now: u64,
    fx: &mut Effects,
    checkin: impl FnOnce(&Engine) -> Option<Release>,
) -> Option<Release> {
    let engine = &cx.engine;
    if engine.dup_group(h.feature).is_by_handle() {
        return checkin(engine);
    }
    let lingers = &mut fx.lingers;
    let ended = cx.shared.uses.end(
        h.id,
        h.uses(),
        h.bound(),
        now,
        || checkin(engine),
        |d| {
            // No bound use left: the latest promise holds it.
            if engine.reschedule(h.id, d) {
                if let Some(d) = d {
                    lingers.push((h.id, d));
                }
            }
        },
    );
    match ended {
        Ended::Kept => None,
        Ended::Last(r) => r,
    }
}

/// A grouped instance was checked in: its count goes.
pub(super) fn forget(cx: &Ctx, id: InstanceId) {
    cx.shared.uses.forget(id);
}

/// After a reread: the counts follow their instances to `engine`'s ids.
pub(super) fn remap(
    cx: &Ctx,
    engine: &Engine,
    moved: &HashMap<InstanceId, (InstanceId, FeatureId)>,
) {
    cx.shared
        .uses
        .remap(moved, |f| !engine.dup_group(f).is_by_handle());
}
