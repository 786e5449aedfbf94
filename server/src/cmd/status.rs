//! STATUS: the reply is built off the loop (`status_thread.rs`); the
//! command says what to build it from.

use std::sync::atomic::Ordering;

use super::{Ctx, Effects, Session};
use crate::protocol::StatusQuery;
use crate::status::ServerInfo;
use crate::status_thread::Job;

/// Leaves the STATUS job in `fx` (the network layer hands it to the
/// status thread and parks the connection until the reply is back).
pub(crate) fn status(cx: &mut Ctx, s: &Session, q: &StatusQuery<'_>, now: u64, fx: &mut Effects) {
    let facts = cx.gen.get().facts.clone();
    let info = ServerInfo {
        name: "tallyd".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        host: facts.host,
        port: facts.port,
        license_file: facts.license_file,
        vendors: facts.vendors,
        started_ms: facts.started_ms,
        now_ms: now,
        connections: cx.shared.connections.load(Ordering::Relaxed),
        log_dropped: cx.shared.log.dropped(),
    };
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
