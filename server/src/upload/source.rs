//! The report tallyd uploads: the compliance report of the usage history
//! (`usage::report::build_report`, the JSON `tallyctl report --format
//! json` prints), built at each upload on the uploader's thread.

use std::io;
use std::sync::Arc;

use super::{Period, ReportSource};
use crate::shared::Shared;
use crate::usage::report::{build_report, ReportServer};

/// A source that builds the report of the period asked for from the usage
/// history, after a flush of the log writer (which commits the usage
/// batch due). Without a history (`--durability off`) each upload fails
/// with `CTX_UPLOADER_REPORT_FAILED`, saying why.
pub(crate) fn source(shared: Arc<Shared>) -> ReportSource {
    ReportSource::new(move |period| report(&shared, period))
}

fn report(shared: &Shared, period: &Period) -> io::Result<Vec<u8>> {
    let Some(path) = &shared.usage_db else {
        return Err(io::Error::other(
            "no usage history: tallyd keeps one in its state dir, not with --durability off",
        ));
    };
    shared.log.flush_usage();
    let now = shared.now();
    let (_, gen) = shared.generation.load();
    let facts = &gen.facts;
    let server = ReportServer {
        name: "tallyd".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        host: facts.host.clone(),
        license_file: facts.license_file.clone(),
        hostid: None,
    };
    let db = crate::usage::db::open_for_reading(path)
        .map_err(|e| io::Error::other(format!("usage history {}: {e}", path.display())))?;
    let report = build_report(&db, &period.from, &period.to, server, now)
        .map_err(|e| io::Error::other(format!("usage history {}: {e}", path.display())))?;
    serde_json::to_vec(&report).map_err(io::Error::other)
}
