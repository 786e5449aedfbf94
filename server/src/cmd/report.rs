//! REPORT: the compliance report of a period of UTC days, built off the
//! loop from the usage history (`status_thread.rs`; docs/usage.md). Not
//! an admin request: like STATUS it says what is used, with users and
//! hosts only counted.

use super::{Ctx, Effects, Session};
use crate::protocol::{Reply, ReportQuery};
use crate::status_thread::{Job, ReportJob};
use crate::usage::report::period;

/// Leaves the REPORT job in `fx` (built by the status thread, as STATUS
/// is), or writes the error for a period that is not one.
pub(crate) fn report(
    cx: &mut Ctx,
    s: &Session,
    q: &ReportQuery<'_>,
    now: u64,
    out: &mut bytes::BytesMut,
    fx: &mut Effects,
) {
    let (from, to) = match period(q.from, q.to, now) {
        Ok(p) => p,
        Err(e) => {
            let _ = Reply::StatusFailed(&e).write_to(out);
            return;
        }
    };
    let info = cx.shared.server_info(&cx.gen.get().facts, now);
    fx.status = Some(Job {
        loop_index: cx.index,
        conn: s.key,
        serial: s.serial,
        engine: cx.engine.clone(),
        info,
        queue: Vec::new(),
        query: Default::default(),
        hide_handles: true,
        picture: false,
        report: Some(ReportJob {
            from,
            to,
            db: cx.shared.usage_db.clone(),
            log: cx.shared.log.clone(),
        }),
    });
}
