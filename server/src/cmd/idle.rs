//! Idle TIMEOUT (`TIMEOUT feature secs`, `TIMEOUTALL secs`): a connection
//! that sent no request for that long has its licenses of those features
//! checked in, logged `(INACTIVE)` as lmgrd does. The loop's idle timer
//! (`timers.rs`) says when to look; [`check`] decides.

use super::{Ctx, Effects, Session};

/// Shortest re-check interval of an idle connection, in ms.
const RECHECK_MIN_MS: u64 = 1000;

/// The idle check of session `s` at `now`: checks in its licenses of the
/// features whose TIMEOUT its idle time reached, and returns when to look
/// again (`None`: no feature has a TIMEOUT).
pub(crate) fn check(cx: &mut Ctx, s: &mut Session, now: u64, fx: &mut Effects) -> Option<u64> {
    let shortest = cx.opts.shortest_timeout_ms()?;
    let idle = now.saturating_sub(s.last_seen);
    let cx_ref = &mut *cx;
    s.held
        .retain(|_, h| match cx_ref.opts.timeout_ms(h.feature) {
            Some(t) if idle >= t => {
                let r = if cx_ref.grouped(h.feature) {
                    // A use ends as on a close: promises stay.
                    cx_ref.end_uses(h, now, fx)
                } else {
                    cx_ref.engine.release(h.id)
                };
                if let Some(r) = r {
                    cx_ref.released(&r, crate::metrics::Cause::IdleTimeout, now, fx);
                }
                false
            }
            _ => true,
        });
    Some(
        s.last_seen
            .saturating_add(shortest)
            .max(now + RECHECK_MIN_MS),
    )
}
