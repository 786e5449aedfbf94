//! The command layer: what each request means, without I/O (REREAD is
//! given the files read: [`reread::Files`]).
//!
//! [`answer`] parses one request line and runs its command (one file per
//! request kind: [`checkout`], [`checkin`], [`remove`], [`status`],
//! [`reread`], [`auth`], [`picture`], [`reconcile`], [`upload`], [`report`]; PING, QUIT, REOPEN_LOG and DOWN are a line each
//! here). A command reads and changes the engine and the connection's
//! [`Session`], writes its reply into the connection's output buffer with
//! [`Reply`], and leaves everything else it wants done in [`Effects`]:
//! debug-log events, timers to arm, a wake-up of the queue's loops, the
//! journal batch its reply must wait for, closing the connection, a STATUS
//! to build off the loop, a shutdown. The network layer (`net/`) carries
//! them out after each command. Commands take `now` as an argument and
//! touch no socket, no clock and no thread, so they are unit-tested with a
//! manual clock (`cmd/tests.rs`).
//!
//! Journal records are written into the loop's [`LoopJournal`] (a buffer:
//! the loop sends one batch per turn), so a command's cost stays flat.
//!
//! Hot path (CHECKOUT, CHECKIN): no allocation beyond what the engine and
//! the log event need; the effects buffer is the loop's, reused.

pub(crate) mod auth;
pub(crate) mod checkin;
pub(crate) mod checkout;
pub(crate) mod idle;
pub(crate) mod picture;
pub(crate) mod reconcile;
pub(crate) mod remove;
pub(crate) mod report;
pub(crate) mod reread;
mod session;
pub(crate) mod status;
#[cfg(test)]
mod tests;
pub(crate) mod upload;
mod uses;

use std::sync::Arc;

use bytes::BytesMut;
use tally_core::engine::{Engine, FeatureId, HolderBuf, InstanceId, Release};
use tally_core::sync::Reader;

use crate::auth::FailureLog;
use crate::debuglog::{Action, Event, FeatureRef};
use crate::journal::LoopJournal;
use crate::metrics::{Cause, LoopCounters};
use crate::options::ServerOptions;
use crate::protocol::{self, Command, ErrCode, Reply};
use crate::shared::{Generation, Shared};
use crate::status_thread;

pub(crate) use session::{Held, Session};

/// What a loop serves requests from: its engine and options (its copy of
/// the published generation, replaced by a REREAD), the shared state, its
/// end of the journal.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The loop's index.
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    /// This loop's reader of `Shared::generation`: the generation it is on.
    pub(crate) gen: Reader<Generation>,
    /// `gen`'s engine, copied out (one dereference on the request path).
    pub(crate) engine: Arc<Engine>,
    /// `gen`'s options-file settings for `engine`, copied out.
    pub(crate) opts: Arc<ServerOptions>,
    /// This loop's end of the journal (`None` when durability is off).
    pub(crate) journal: Option<LoopJournal>,
    /// Rate limit of the debug log's lines about failed admin attempts.
    pub(crate) admin_failures: FailureLog,
}

/// What commands leave for the network layer to do, in one buffer the
/// loop owns and reuses (cleared as it is carried out, so no allocation in
/// the steady state).
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Debug-log events, in order (license events and free-form lines).
    pub(crate) log: Vec<Event>,
    /// Linger timers to arm: (instance, deadline in Unix ms).
    pub(crate) lingers: Vec<(InstanceId, u64)>,
    /// Queue-wait deadlines to arm: (deadline, waiter's sequence).
    pub(crate) waits: Vec<(u64, u64)>,
    /// Wake every loop: a license came back while somebody waits.
    pub(crate) wake_queues: bool,
    /// The reply waits for this journal batch (sync durability).
    pub(crate) gate: Option<u64>,
    /// Close the connection once its replies are written.
    pub(crate) close: bool,
    /// A STATUS to build off the loop; the connection waits for it.
    pub(crate) status: Option<status_thread::Job>,
    /// REREAD was asked for (`net/reread.rs` runs it with `cmd::reread`).
    pub(crate) reread: bool,
    /// Reopen the debug log (and wait until it is), before the reply goes.
    pub(crate) reopen_log: bool,
    /// DOWN: write the reply, then stop the server.
    pub(crate) shutdown: bool,
}

impl Effects {
    /// The reply waits for `batch` too.
    pub(crate) fn gate(&mut self, batch: Option<u64>) {
        if let Some(b) = batch {
            self.gate = Some(self.gate.map_or(b, |g| g.max(b)));
        }
    }

    /// A debug-log line for `(daemon)`.
    pub(crate) fn line(&mut self, at_ms: u64, daemon: &str, text: String) {
        self.log.push(Event::Line {
            at_ms,
            daemon: daemon.into(),
            text,
        });
    }
}

/// Tries a queued CHECKOUT (its line as received) again, into `out`
/// (`give_up`: its wait ran out, so a full pool now denies). True if it was
/// answered: then the session waits no more.
pub(crate) fn answer_waiter(
    cx: &mut Ctx,
    s: &mut Session,
    line: &[u8],
    now: u64,
    give_up: bool,
    out: &mut BytesMut,
    fx: &mut Effects,
) -> bool {
    let answered = match protocol::parse(line) {
        Ok(Command::Checkout(c)) => {
            checkout::checkout(cx, s, &c, line, now, Some(give_up), out, fx)
        }
        _ => true, // it was a CHECKOUT when it was queued
    };
    if answered {
        s.waiting = None;
    }
    answered
}

/// Answers one request line (without its LF) into `out`.
pub(crate) fn answer(
    cx: &mut Ctx,
    s: &mut Session,
    line: &[u8],
    now: u64,
    out: &mut BytesMut,
    fx: &mut Effects,
) {
    // Test hook, debug builds only: lets a black-box test make a loop
    // panic (see `server::exit_after_loop_panic`).
    #[cfg(debug_assertions)]
    if line == b"DEBUG_PANIC" && std::env::var_os("TALLYD_DEBUG_PANIC").is_some() {
        panic!("DEBUG_PANIC requested by {}", s.peer);
    }
    s.last_seen = now;
    let cmd = match protocol::parse(line) {
        Ok(c) => c,
        Err(e) => {
            let _ = Reply::Malformed(&e).write_to(out);
            if e.code == ErrCode::LineTooLong {
                fx.close = true;
            }
            return;
        }
    };
    if cmd.is_admin() && !s.is_admin() {
        return auth::forbidden(cx, s, line, now, out, fx);
    }
    match cmd {
        Command::Checkout(c) => {
            checkout::checkout(cx, s, &c, line, now, None, out, fx);
        }
        Command::Checkin {
            feature,
            handle,
            holder,
        } => checkin::checkin(cx, s, feature, handle, holder, now, out, fx),
        Command::Status(q) => status::status(cx, s, &q, now, fx),
        Command::Picture => picture::picture(cx, s, now, fx),
        Command::Reconcile(r) => reconcile::reconcile(cx, s, &r, now, out, fx),
        Command::Report(q) => report::report(cx, s, &q, now, out, fx),
        Command::Ping => {
            let _ = Reply::Pong.write_to(out);
        }
        Command::Quit => {
            let _ = Reply::Bye.write_to(out);
            fx.close = true;
        }
        Command::Auth(token) => auth::auth(cx, s, token, now, out, fx),
        Command::Remove {
            feature,
            user,
            host,
            display,
        } => remove::remove(
            cx,
            feature,
            remove::Pick::Names {
                user,
                host,
                display,
            },
            now,
            out,
            fx,
        ),
        Command::RemoveHandle { feature, ticket } => {
            remove::remove(cx, feature, remove::Pick::Ticket(ticket), now, out, fx)
        }
        Command::BorrowReturn {
            feature,
            user,
            host,
            display,
        } => remove::remove(
            cx,
            feature,
            remove::Pick::Borrowed {
                user,
                host,
                display,
            },
            now,
            out,
            fx,
        ),
        // The reply is written when the reread is done (`net/reread.rs`).
        Command::Reread => fx.reread = true,
        Command::ReopenLog => {
            fx.reopen_log = true;
            let _ = Reply::LogReopened.write_to(out);
        }
        Command::Upload => upload::upload(cx, s, now, out, fx),
        Command::UploadStatus => upload::status(cx, out),
        Command::Down => {
            let _ = Reply::Down.write_to(out);
            fx.line(
                now,
                "lmgrd",
                format!("SERVER shutdown requested by {}", s.peer),
            );
            fx.close = true;
            fx.shutdown = true;
        }
    }
}

impl Ctx {
    /// Whether `feature` shares instances between uses (DUP_GROUP).
    pub(crate) fn grouped(&self, feature: FeatureId) -> bool {
        !self.engine.dup_group(feature).is_by_handle()
    }

    /// Ends all of a connection's uses of `h` (see [`uses::end`]).
    pub(crate) fn end_uses(&self, h: &Held, now: u64, fx: &mut Effects) -> Option<Release> {
        uses::end(self, h, now, fx)
    }

    /// Queues a license event unless the options file's NOLOG drops it
    /// (`holder` is called only if it does not).
    pub(crate) fn log_license(
        &self,
        now: u64,
        action: Action,
        feature: FeatureRef,
        holder: impl FnOnce() -> HolderBuf,
        count: u32,
        fx: &mut Effects,
    ) {
        let nolog = &self.opts.nolog;
        let dropped = match action {
            Action::Out(_) | Action::OutOverdraft(_) => nolog.checkout,
            Action::In(_) | Action::InBalance => nolog.checkin,
            Action::Denied(_) => nolog.denied,
            _ => false,
        };
        // With usage reporting on, the report log and the history see
        // what NOLOG keeps out of the debug log.
        if !dropped || self.shared.usage_events {
            fx.log.push(Event::License {
                at_ms: now,
                action,
                feature,
                holder: holder(),
                count,
                debug: !dropped,
            });
        }
        if matches!(action, Action::In(_)) && self.shared.queues.released() {
            fx.wake_queues = true; // a waiter's loop may serve it now
        }
    }

    /// This loop's counters for `/metrics` (`metrics/`).
    #[inline]
    pub(crate) fn counters(&self) -> &LoopCounters {
        &self.shared.metrics[self.index]
    }

    /// What every check-in does once the engine has released `r` (CHECKIN,
    /// REMOVE, linger expiry, idle timeout, disconnect: its `cause`): count
    /// it, journal it if it lingered, log it (IN, or INACTIVE for an idle
    /// timeout) unless NOLOG says not to, and let the queue's loops look.
    /// Returns the journal batch a reply must wait for.
    pub(crate) fn released(
        &mut self,
        r: &Release,
        cause: Cause,
        now: u64,
        fx: &mut Effects,
    ) -> Option<u64> {
        // A borrowed license's linger expiry is its borrow's end, and its
        // check-in an early return.
        let cause = match (r.borrowed, cause) {
            (true, Cause::LingerExpiry) => Cause::BorrowExpiry,
            (true, Cause::Checkin) => Cause::BorrowReturn,
            (_, cause) => cause,
        };
        self.counters().released(cause);
        // A DUP_GROUP instance may be in the journal (a promise) while its
        // engine deadline is none (a bound use): its release always goes in.
        // Its counted uses need no forgetting: the engine keys them by the
        // instance's generation.
        let grouped = self.grouped(r.feature);
        let batch = match (self.journal.as_mut(), r.deadline) {
            (Some(j), Some(_)) => j.release(r.id.to_bits(), now),
            (Some(j), None) if grouped => j.release(r.id.to_bits(), now),
            _ => None,
        };
        self.log_license(
            now,
            Action::In(cause),
            FeatureRef::Id(r.feature),
            || r.holder,
            r.count,
            fx,
        );
        batch
    }

    /// A connection closed: it leaves the queue, and its uses end (its
    /// connection-bound licenses are checked in).
    pub(crate) fn closed(&mut self, s: &mut Session, now: u64, fx: &mut Effects) {
        if let Some((feature, seq)) = s.waiting.take() {
            self.shared.queues.remove(&feature, seq);
        }
        for (_, h) in s.held.drain() {
            if let Some(r) = self.end_uses(&h, now, fx) {
                self.released(&r, Cause::Disconnect, now, fx);
            }
        }
    }
}
