//! AUTH, admin rights, and the refusals that are logged and counted: a
//! failed AUTH, an admin request without rights (FORBIDDEN), a request
//! refused NOT_HOLDER.

use bytes::BytesMut;

use super::session::MAX_NOT_HOLDER;
use super::{Ctx, Effects, Session};
use crate::auth::{Logged, MAX_AUTH_FAILURES};
use crate::protocol::Reply;

/// An admin request from a peer without admin rights: refused, logged.
pub(crate) fn forbidden(
    cx: &mut Ctx,
    s: &Session,
    line: &[u8],
    now: u64,
    out: &mut BytesMut,
    fx: &mut Effects,
) {
    let verb = line.split(|&b| b == b' ').next().unwrap_or_default();
    admin_failure(
        cx,
        now,
        format_args!(
            "{} refused: {} is not authenticated (AUTH <token> first)",
            String::from_utf8_lossy(verb),
            s.peer
        ),
        fx,
    );
    let _ = Reply::Forbidden { peer: s.peer.ip() }.write_to(out);
}

/// AUTH: a match grants admin rights to the connection; a failure takes
/// them away (even after an earlier success), is logged, and the
/// connection is closed after [`MAX_AUTH_FAILURES`] of them.
pub(crate) fn auth(
    cx: &mut Ctx,
    s: &mut Session,
    token: &str,
    now: u64,
    out: &mut BytesMut,
    fx: &mut Effects,
) {
    let configured = cx.shared.admin_token.is_some();
    let matched = cx
        .shared
        .admin_token
        .as_ref()
        .is_some_and(|t| crate::auth::token_matches(t.as_bytes(), token.as_bytes()));
    if matched {
        s.authed = true;
        let _ = Reply::Authed.write_to(out);
        return;
    }
    s.authed = false;
    s.auth_failures += 1;
    let n = s.auth_failures;
    let closing = refused(
        cx,
        now,
        n,
        MAX_AUTH_FAILURES,
        format_args!("AUTH failed from {} (attempt {n}", s.peer),
        fx,
    );
    let _ = Reply::AuthFailed {
        token_configured: configured,
        closing_after: closing.then_some(n),
    }
    .write_to(out);
    if closing {
        fx.close = true;
    }
}

/// Counts a NOT_HOLDER refusal; logs it (rate-limited) and closes the
/// connection at [`MAX_NOT_HOLDER`] (after the reply already written).
pub(crate) fn not_holder(
    cx: &mut Ctx,
    s: &mut Session,
    now: u64,
    verb: &str,
    feature: &str,
    handle: &str,
    fx: &mut Effects,
) {
    s.not_holder += 1;
    let n = s.not_holder;
    let closing = refused(
        cx,
        now,
        n,
        MAX_NOT_HOLDER,
        format_args!(
            "{verb} {feature} {handle} from {} refused: not the holder (refusal {n}",
            s.peer
        ),
        fx,
    );
    if closing {
        fx.close = true;
    }
}

/// Logs the `n`-th refusal on a connection (`what` up to "(attempt n"),
/// rate-limited; true when `n` reaches `max` and the connection closes.
fn refused(
    cx: &mut Ctx,
    now: u64,
    n: u32,
    max: u32,
    what: std::fmt::Arguments<'_>,
    fx: &mut Effects,
) -> bool {
    let closing = n >= max;
    let end = if closing {
        " on this connection; closing it)"
    } else {
        " on this connection)"
    };
    admin_failure(cx, now, format_args!("{what}{end}"), fx);
    closing
}

/// Writes a failed admin attempt to the debug log, within its rate limit.
fn admin_failure(cx: &mut Ctx, now: u64, what: std::fmt::Arguments<'_>, fx: &mut Effects) {
    match cx.admin_failures.failure(now) {
        Logged::Write { suppressed } => {
            if suppressed > 0 {
                fx.line(
                    now,
                    "lmgrd",
                    format!("{suppressed} more failed admin attempts were not logged"),
                );
            }
            fx.line(now, "lmgrd", what.to_string());
        }
        Logged::Suppressed => {}
    }
}
