//! tally-core: the license core of the tally floating-license server.
//!
//! - [`license`] parses FlexLM license files into typed pools.
//! - [`engine`] is the checkout table: sharded, lock-free on the checkout,
//!   check-in and expiry paths, exact in its counts.
//! - [`wheel`] is the hierarchical timer wheel that releases lingering
//!   licenses at their deadline.
//! - [`sync`] holds what a front end's event loops share: the published
//!   generation ([`sync::Published`]) and the pause a REREAD needs
//!   ([`sync::Pause`]).
//! - [`clock`] is the only place time comes from; every engine call takes
//!   `now` as an argument.
//!
//! The crate does no I/O and starts no threads. See `docs/architecture.md`.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod clock;
pub mod engine;
pub mod license;
pub mod options;
pub mod sync;
pub mod watermark;
pub mod wheel;

pub use clock::{Clock, ManualClock, Millis, SystemClock};
