//! The loop's side of the queue (`crate::queue`): trying the waiters that
//! sit on this loop, a wait running out, and the connections an answer
//! lets go on. What a waiter's answer is, is `cmd::answer_waiter`'s.

use super::conn::Reads;
use super::Loop;
use crate::cmd;
use crate::queue::Seat;

impl Loop {
    /// The queued checkout `seq` of connection `key` waited its time: out
    /// of the queue, tried once more and denied if the pool is still full.
    pub(super) fn wait_ran_out(&mut self, key: usize, seq: u64, now: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return; // closed since (its timers are cancelled then)
        };
        conn.wait_timer = None;
        let Some((feature, _)) = conn.session.waiting.as_ref().filter(|(_, s)| *s == seq) else {
            return; // answered already
        };
        if let Some(w) = self.w.ctx.shared.queues.remove(feature, seq) {
            self.answer_waiter(&w.seat, &w.line, now, true);
        }
    }

    /// Serves the queue heads that sit on this loop, and what the waiters
    /// answered meanwhile sent (see `queue.rs`).
    pub(super) fn serve_queue(&mut self, now: u64) {
        self.serve_ready();
        loop {
            let mut progress = false;
            let waiters = self.w.ctx.shared.queues.to_try_on(self.w.ctx.index, now);
            for (feature, w) in waiters {
                if self.answer_waiter(&w.seat, &w.line, now, false) {
                    self.w.ctx.shared.queues.remove(&feature, w.seq);
                    progress = true;
                }
            }
            // What the answered ones pipelined meanwhile (a CHECKIN may
            // free a license for the next waiter).
            self.serve_ready();
            if !progress {
                return;
            }
        }
    }

    /// Tries a waiter's checkout again (`give_up`: its wait ran out, so a
    /// full pool now denies). True if it was answered; then its connection
    /// is listed to go on with the lines it sent meanwhile.
    fn answer_waiter(&mut self, seat: &Seat, line: &[u8], now: u64, give_up: bool) -> bool {
        let Some(conn) = self
            .conns
            .get_mut(seat.conn)
            .filter(|c| c.session.serial == seat.serial)
        else {
            return true; // gone: nothing to answer
        };
        let w = &mut self.w;
        let reply_at = conn.wbuf.len();
        let (s, out) = (&mut conn.session, &mut conn.wbuf);
        let answered = cmd::answer_waiter(&mut w.ctx, s, line, now, give_up, out, &mut w.fx);
        w.carry_out(conn, reply_at, now);
        if answered {
            if let Some(t) = conn.wait_timer.take() {
                w.timers.cancel(t);
            }
            w.ready.push(seat.conn);
        }
        answered
    }

    /// Serves the connections listed ready: like any readiness, the lines
    /// sent meanwhile, a reread they did, a reply that waits for the
    /// journal, or the end.
    pub(super) fn serve_ready(&mut self) {
        while !self.w.ready.is_empty() {
            for key in std::mem::take(&mut self.w.ready) {
                self.on_conn_event(key, Reads::UntilWouldBlock);
            }
        }
    }
}
