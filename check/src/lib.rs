//! A linearizability checker for one feature's license count.
//!
//! A cluster of tallyd (docs/replication.md) must behave as one server
//! that never hands out more seats than the license has, through leader
//! kills and partitions. A black-box test records every request it sent
//! and every reply it read, with the times; this crate decides whether
//! *some* order of those operations (a linearization) is a correct
//! sequential run of one server:
//!
//! - each operation takes effect at one instant between the moment its
//!   request was sent and the moment its reply was read;
//! - at every instant at most `limit` handles hold a seat;
//! - every reply is the one the sequential server would give at that
//!   instant.
//!
//! # The model
//!
//! One feature with a count `limit`. The state is the set of handles
//! holding a seat (tally's instance identity is the handle by default; a
//! handle holds at most one seat). Operations ([`Op`]):
//!
//! | kind | reply ([`Outcome`]) | legal at its instant when | effect |
//! |---|---|---|---|
//! | checkout | granted | the handle holds a seat (a renewal), or fewer than `limit` are out | the handle holds a seat |
//! | checkout | denied | the handle holds none and `limit` are out ([`Denials::Strict`]) | none |
//! | checkin | released | the handle holds a seat | it holds none |
//! | checkin | not held | the handle holds none | none |
//! | expiry | released | the handle holds a seat | it holds none |
//! | either | unknown | always | any of the above, or nothing |
//!
//! **Denials.** `DENIED ALL_IN_USE` is checked both ways by default
//! ([`Denials::Strict`]): a denial is legal only at an instant when every
//! seat was out, so a denial while the history shows a free seat
//! throughout the request is reported, as an over-grant is (a user was
//! refused a license that was there). Only that denial reason belongs in a
//! history: a request refused for another reason, or answered with `ERR`
//! (`ERR NOT_LEADER`, `ERR NO_LEADER`), did nothing and is left out. A
//! server that may deny with seats free by design (a seat freed by a
//! release not yet committed) is checked with [`Denials::Unchecked`],
//! which leaves denials out and checks the grants only.
//!
//! **Unknown results.** A request without a reply (a timeout, a connection
//! broken by a `kill -9`) may have taken effect at any instant after it was
//! sent, even after the client gave up (its response time is treated as
//! never), or not at all, and its reply is whatever the state gave: the
//! checker linearizes it only where that helps. A test that knows a time
//! by which it has taken effect or never will says so
//! ([`Op::settled_by`]; for a request to a leader that was killed: once a
//! later leader has answered anything); it must, for a history with more
//! than a few of them, or a failing history is too costly to search
//! (below).
//!
//! **Expiries** are observed, not requested: the server releases an
//! instance by itself at its deadline. Record one as an [`Kind::Expiry`]
//! from the earliest time it may have happened (the deadline, less any
//! clock skew the test allows) to the time it was seen (a STATUS poll, a
//! log line, a checkout that found the seat free). An expiry never
//! observed need not be recorded as long as nothing depends on it; one
//! that something depends on (a later grant of its seat) must be, or the
//! history fails: a release the recorder did not see is a release the
//! checker cannot assume.
//!
//! **Times** are any unit on one clock for the whole history (a test's
//! `Instant` as ns is right; several machines' wall clocks are not). Two
//! operations are ordered only if one's reply was read strictly before
//! the other's request was sent; equal times are concurrent.
//!
//! # The search
//!
//! Wing and Gong's algorithm with Lowe's memoisation, as Porcupine does it
//! (<https://github.com/anishathalye/porcupine>): the calls and returns in
//! one list by time; take the first call that can take effect in the
//! current state, lift it and its return out of the list, start again from
//! the head; on meeting a return whose operation is not yet taken,
//! backtrack. A pair (set of operations taken, state) is searched at most
//! once. The search is bounded ([`Checker::max_steps`], by default
//! [`DEFAULT_MAX_STEPS`]): past it the verdict is [`Verdict::GaveUp`],
//! never a guess. The cost grows with how many operations overlap at once;
//! an unknown result without a settle time overlaps everything after it.
//! Measured with `examples/long.rs` (8 clients, 3 seats, about 4
//! operations overlapping; release build, a shared 2-core machine at load
//! 8): 5,000 operations with 2 % unknown results, settled, check in 19 ms
//! (linearizable) and 77 ms (an over-grant halfway, named by the prefix
//! search); 20,000 with 1 % in 0.23 s and 1.0 s. Unsettled, the same
//! linearizable history takes 25 ms but the failing one gives up after
//! 5,000,000 steps (4 s): proving that *no* order exists has to try the
//! unknowns' effects in every combination.
//!
//! A failing history is searched again on prefixes (binary search over
//! the responses) to name the first operation by whose response no
//! linearization exists ([`Violation::op`]): the history of everything
//! answered by then, with what was still in flight as maybe-taken, has no
//! linearization, and the history one response earlier has one.
//!
//! # Example
//!
//! Two clients, one seat: both granted at overlapping times is an
//! over-grant, whatever the order.
//!
//! ```
//! use tally_check::{Checker, History, Op, Outcome};
//!
//! let h = History::from_ops(
//!     1,
//!     [
//!         Op::checkout(1, "a", 0, 10, Outcome::Granted),
//!         Op::checkout(2, "b", 5, 15, Outcome::Granted),
//!     ],
//! )?;
//! let v = Checker::new().check(&h);
//! assert!(v.is_violation());
//!
//! // With the first checked in before the second was asked, it is legal.
//! let h = History::from_ops(
//!     1,
//!     [
//!         Op::checkout(1, "a", 0, 10, Outcome::Granted),
//!         Op::checkin(1, "a", 11, 12, Outcome::Released),
//!         Op::checkout(2, "b", 13, 15, Outcome::Granted),
//!     ],
//! )?;
//! assert!(Checker::new().check(&h).is_linearizable());
//! # Ok::<(), tally_check::HistoryError>(())
//! ```
//!
//! A test's client threads record into one [`Recorder`] (one monotonic
//! clock, one list). The `tally-check` command checks a history in the text form
//! ([`history`] module docs): `tally-check FILE` prints the verdict and
//! exits 0 (linearizable), 1 (not) or 2 (gave up, or a bad file).

pub mod history;
mod recorder;
mod search;

pub use history::{History, HistoryError, Kind, Op, Outcome};
pub use recorder::Recorder;
pub use search::{Checker, Denials, Verdict, Violation, DEFAULT_MAX_STEPS};
