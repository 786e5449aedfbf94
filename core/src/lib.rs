//! tally-core: the license core of the tally floating-license server.
//!
//! The crate does no I/O and starts no threads: it parses text, keeps the
//! counts and tells its caller what is due; time comes in as an argument.
//! A front end (tallyd, or yours) owns the sockets, the files and the clock.
//! Embedding it, end to end:
//!
//! ```
//! use tally_core::engine::{Engine, EngineConfig, GrantKind, Lingers, Reason, Request};
//! use tally_core::{Clock, ManualClock};
//!
//! // The caller reads the file; the core parses text (file:line:col diagnostics).
//! let text = "SERVER this_host ANY 27000\n\
//!             VENDOR CITRIX\n\
//!             FEATURE CITRIX_DESKTOP CITRIX 1.0 permanent 2 SIGN=0\n";
//! let licenses = tally_core::license::parse_str("citrix.lic", text);
//! assert!(licenses.diagnostics.is_empty(), "{:?}", licenses.diagnostics);
//!
//! // One engine shared by every thread (`&self`); one `Lingers` per thread.
//! let clock = ManualClock::new(1_700_000_000_000);
//! let engine = Engine::new(&licenses, EngineConfig::default());
//! let mut lingers = Lingers::new(clock.now_ms());
//! let in_use = |now| engine.snapshot(now).features[0].pools[0].in_use;
//!
//! // Check out with a 60 s linger and arm its timer; a second user takes the other seat.
//! let mut ann = Request::new("CITRIX_DESKTOP", "ann", "ws1", "h-ann");
//! ann.linger_ms = 60_000;
//! let grant = engine.checkout(&ann, clock.now_ms()).unwrap();
//! lingers.track(&grant);
//! let bob = Request::new("CITRIX_DESKTOP", "bob", "ws2", "h-bob");
//! engine.checkout(&bob, clock.now_ms()).unwrap();
//! let eve = Request::new("CITRIX_DESKTOP", "eve", "ws3", "h-eve");
//! let denial = engine.checkout(&eve, clock.now_ms()).unwrap_err();
//! assert_eq!((denial.reason, denial.reason.flexlm_code()), (Reason::AllInUse, -4));
//! assert_eq!(in_use(clock.now_ms()), 2);
//!
//! // Renew: the same handle again moves the deadline and takes nothing.
//! clock.advance(30_000);
//! let renewed = engine.checkout(&ann, clock.now_ms()).unwrap();
//! assert_eq!((renewed.kind, renewed.id), (GrantKind::Renewed, grant.id));
//! lingers.track(&renewed); // arms a timer only if the deadline moved earlier
//!
//! // Expire: at ann's first deadline her timer finds the renewal and re-arms.
//! clock.advance(30_000);
//! assert_eq!(lingers.expire(&engine, clock.now_ms(), |_| {}), 0);
//! // A front end sleeps until `next_deadline` (a wheel slot at or before the
//! // deadline), drains what is due, and again, until the wheel is empty.
//! let mut released = Vec::new();
//! while let Some(at) = lingers.next_deadline() {
//!     clock.set(at);
//!     lingers.expire(&engine, clock.now_ms(), |r| released.push(r));
//! }
//! assert_eq!(Some(clock.now_ms()), renewed.deadline); // on time, to the ms
//! assert_eq!((released.len(), released[0].id), (1, grant.id.unwrap()));
//! assert_eq!(in_use(clock.now_ms()), 1);
//! assert!(engine.checkout(&eve, clock.now_ms()).is_ok()); // ann's seat came back
//!
//! // Check in by the holder's names (display "" here).
//! let back = engine.checkin("CITRIX_DESKTOP", "bob", "ws2", "", "h-bob").unwrap();
//! assert_eq!((back.count, in_use(clock.now_ms())), (1, 1));
//! ```
//!
//! `core/examples/ndjson.rs` puts this behind a socket: a newline-delimited
//! JSON front end over `std::net` in one screen.
//!
//! Where next:
//!
//! - [`license`] parses FlexLM license text into typed pools, with
//!   file:line:col diagnostics.
//! - [`options`] parses FlexLM options text (INCLUDE, EXCLUDE, MAX,
//!   RESERVE, LINGER, TIMEOUT, groups).
//! - [`engine`] is the checkout table: sharded, lock-free on the checkout,
//!   check-in and expiry paths (but for a DUP_GROUP feature's counted uses,
//!   under a lock per bucket of slots), exact in its counts; [`engine::Lingers`]
//!   drives linger expiry from a wheel.
//! - [`wheel`] is the hierarchical timer wheel (ticks, no clock).
//! - [`sync`] holds what a front end's event loops share: the published
//!   generation ([`sync::Published`]) and the pause a REREAD needs
//!   ([`sync::Pause`]).
//! - [`clock`] is the only place time comes from; every engine call takes
//!   `now` as an argument.
//! - [`watermark`] is a "done up to n" mark one thread publishes and others
//!   read (tallyd's journal uses it for what is on disk).
//!
//! See `docs/architecture.md` for how tallyd drives it.

// missing_docs, missing_debug_implementations, unreachable_pub: [workspace.lints]
#![deny(unsafe_code)] // allowed on `engine::table` alone (its levels' pointers)

pub mod clock;
pub mod engine;
pub mod license;
pub mod options;
pub mod sync;
pub mod watermark;
pub mod wheel;

pub use clock::{Clock, ManualClock, Millis, SystemClock};
