//! tally-client: the client side of tally.
//!
//! - [`Connection`]: one blocking connection to a server (timeouts on
//!   connect, read and write; request lines checked; replies typed;
//!   pipelining; an allocation-free path for load generators).
//! - [`proto`]: protocol v1 as a client reads it: the limits, the field
//!   rule, and replies parsed into [`proto::Reply`] (`OK`, `DENIED`, `ERR
//!   CODE text`, ...).
//! - [`status`]: the STATUS reply's JSON.
//! - [`ctl`]: `tallyctl` / `lmutil`: lmstat-compatible status, admin
//!   requests, `check-license`, `hostid`.
//!
//! The crate does not link the server: it speaks the protocol of
//! `docs/protocol.md`, which is the contract between the two sides.
#![forbid(unsafe_code)]
// missing_docs, missing_debug_implementations, unreachable_pub: [workspace.lints]

pub mod connection;
pub mod ctl;
pub mod proto;
pub mod source;
pub mod status;

pub use connection::{Connection, Error, Timeouts, DEFAULT_TIMEOUT, MAX_REPLY_BYTES};
pub use proto::{Denial, ErrCode, Reply, ReplyKind};
