//! tally-client: the client side of tally.
//!
//! - [`addr`]: where the servers are: `PORT@HOST` lists, license files,
//!   `TALLY_LICENSE_FILE` / `LM_LICENSE_FILE` ([`ServerAddr`]).
//! - [`Client`]: the library: a server list with failover, checkout /
//!   renew / return / check-in, the startup license, reconnection to the
//!   same instance, typed denials ([`ClientError::Denied`]), timeouts.
//! - [`agent`]: [`Agent`], seed 002's lifecycle (startup license, product
//!   license with a linger, renewal every linger / 84, return on
//!   shutdown) on an explicit clock.
//! - [`Connection`]: one blocking connection to a server (timeouts on
//!   connect, read and write; request lines checked; replies typed;
//!   pipelining; an allocation-free path for load generators).
//! - [`proto`]: protocol v1 as a client reads it: the limits, the field
//!   rule, and replies parsed into [`proto::Reply`] (`OK`, `DENIED`, `ERR
//!   CODE text`, ...).
//! - [`status`]: the STATUS reply's JSON.
//! - [`picture`]: the PICTURE reply's JSON (the license picture).
//! - [`cache`]: the offline cache file (seed 001's CRC'd INI snapshot of
//!   the picture); [`grace`]: the offline grace rules; [`offline`]: both
//!   together with the side file of offline admissions; [`join`]: online
//!   and offline together (the cache refreshed on contact, offline
//!   admissions reconciled).
//! - [`export`]: the report export file (`tallyctl report export` /
//!   `verify`): a manifest with each part's SHA-256, and the parts.
//! - [`ctl`]: `tallyctl` / `lmutil`: lmstat-compatible status, admin
//!   requests, `check-license`, `hostid`.
//!
//! The crate does not link the server: it speaks the protocol of
//! `docs/protocol.md`, which is the contract between the two sides.
#![forbid(unsafe_code)]
// missing_docs, missing_debug_implementations, unreachable_pub: [workspace.lints]

pub mod addr;
pub mod agent;
pub mod cache;
pub mod client;
pub mod connection;
pub mod ctl;
pub mod export;
pub mod grace;
pub mod join;
pub mod offline;
pub mod picture;
pub mod proto;
pub mod source;
pub mod status;

pub use addr::{AddrError, ServerAddr};
pub use agent::{Agent, AgentConfig};
pub use client::{Checkout, Client, ClientError, Grant, Reconciled};
pub use connection::{Connection, Error, Timeouts, DEFAULT_TIMEOUT, MAX_REPLY_BYTES};
pub use proto::{Denial, ErrCode, Reply, ReplyKind};
