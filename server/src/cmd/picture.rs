//! PICTURE: the reply is built off the loop, like STATUS
//! (`status_thread.rs`): it has an entry per license line, and a license
//! file may have a hundred thousand of them. The command says what to build
//! it from.

use super::{Ctx, Effects, Session};
use crate::status::ServerInfo;
use crate::status_thread::{Job, OwnedQuery};

/// Leaves the PICTURE job in `fx` (the network layer hands it to the
/// status thread and parks the connection until the reply is back).
pub(crate) fn picture(cx: &mut Ctx, s: &Session, now: u64, fx: &mut Effects) {
    let facts = cx.gen.get().facts.clone();
    let info = ServerInfo {
        name: "tallyd".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        host: facts.host,
        port: facts.port,
        license_file: facts.license_file,
        vendors: Vec::new(),
        started_ms: facts.started_ms,
        now_ms: now,
        connections: 0,
        log_dropped: 0,
    };
    fx.status = Some(Job {
        loop_index: cx.index,
        conn: s.key,
        serial: s.serial,
        engine: cx.engine.clone(),
        info,
        queue: Vec::new(),
        query: OwnedQuery::default(),
        hide_handles: false,
        picture: true,
        report: None,
    });
}
