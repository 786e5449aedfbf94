//! The report tallyd uploads until the compliance report (issue 15's
//! usage history, another branch) is wired in: the period and the STATUS
//! JSON of the moment (the same document STATUS and `/api/v1/status`
//! give), marked `"standin": true` so an endpoint can tell it apart.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Period, ReportSource};
use crate::shared::Shared;
use crate::status::{ServerInfo, Status};

/// A source that reads the server's state at each upload (off the loops:
/// an engine snapshot, as the HTTP thread takes one).
pub(crate) fn source(shared: Arc<Shared>) -> ReportSource {
    ReportSource::new(move |period| report(&shared, period))
}

fn report(shared: &Shared, period: &Period) -> io::Result<Vec<u8>> {
    let now = shared.now();
    let (_, gen) = shared.generation.load();
    let snapshot = gen.engine.snapshot(now);
    let facts = &gen.facts;
    let info = ServerInfo {
        name: "tallyd".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        host: facts.host.clone(),
        port: facts.port,
        license_file: facts.license_file.clone(),
        vendors: facts.vendors.clone(),
        started_ms: facts.started_ms,
        now_ms: now,
        connections: shared.connections.load(Ordering::Relaxed),
        log_dropped: shared.log.dropped(),
    };
    let status = Status::from_snapshot(&snapshot, info);
    serde_json::to_vec(&serde_json::json!({
        "standin": true,
        "period": period,
        "status": status,
    }))
    .map_err(io::Error::other)
}
