//! STATUS: the reply is built off the loop (`status_thread.rs`); the
//! command says what to build it from.

use super::{Ctx, Effects, Session};
use crate::protocol::StatusQuery;
use crate::status_thread::Job;

/// Leaves the STATUS job in `fx` (the network layer hands it to the
/// status thread and parks the connection until the reply is back).
pub(crate) fn status(cx: &mut Ctx, s: &Session, q: &StatusQuery<'_>, now: u64, fx: &mut Effects) {
    let info = cx.shared.server_info(&cx.gen.get().facts, now);
    fx.status = Some(Job {
        loop_index: cx.index,
        conn: s.key,
        serial: s.serial,
        engine: cx.engine.clone(),
        info,
        queue: cx.shared.queues.snapshot(),
        query: q.into(),
        hide_handles: !s.is_admin(),
        picture: false,
        report: None,
    });
}
