//! tally-server: the network front end of tally.
//!
//! - [`protocol`]: wire protocol v1, parsing requests and writing replies.
//! - [`status`]: the STATUS reply's JSON, as `tallyd` builds it (tally-client
//!   reads it with its own types).
//! - [`server`]: `tallyd`'s boot and shutdown; its event loops (`net`)
//!   answer requests through the command layer (`cmd`).
//! - [`source`]: reading the license and options files (size-limited).
//! - [`debuglog`]: the lmgrd-format debug log, written off the loops.
//! - [`journal`]: the durability journal (group commit, snapshots, recovery).
//! - [`http`]: `tallyd --http`, its bounded server (limits) and routes;
//!   `metrics` (private): `/metrics` and the loops' counters; [`web`]: the
//!   status page (`/`) and its usage-history input.
//! - [`upload`]: `tallyd --upload-url`, the compliance report's daily
//!   HTTPS upload and the uploader log.
//! - [`usage`]: usage reporting: the report log, the daily usage history
//!   (SQLite), the compliance report (REPORT).
//!
//! See `docs/protocol.md` and `docs/operations.md`.
// missing_docs, missing_debug_implementations, unreachable_pub: [workspace.lints]

pub mod auth;
mod cmd;
pub mod debuglog;
pub mod demo;
pub mod http;
pub mod journal;
mod metrics;
pub mod names;
mod net;
pub mod options;
pub mod picture;
pub mod protocol;
pub mod queue;
pub mod reread;
pub mod server;
mod shared;
pub mod source;
pub mod status;
mod status_thread;
mod timers;
pub mod upload;
pub mod usage;
pub mod web;
