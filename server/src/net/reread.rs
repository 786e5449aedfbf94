//! REREAD's loop glue: the pause of every loop around `cmd::reread`'s
//! migration, and each loop's adoption of the generation it publishes.
//!
//! The rereading loop reads the files (`crate::reread::read_files`;
//! nothing changes if that fails) and prepares the new engine
//! (`cmd::reread::prepare`), then asks every other loop to pause
//! ([`Pause::request`](tally_core::sync::Pause::request): a second REREAD
//! meanwhile is refused) and waits at most [`PAUSE_BUDGET_MS`] for them to
//! park. If one does not, the REREAD fails (`ERR REREAD_FAILED loop N did
//! not pause within 5000 ms`) and nothing changes. Otherwise it moves the
//! instances, publishes the new [`Generation`] (engine, options, id map,
//! facts) and lets the loops go on.
//!
//! Every loop, the rereading one included, then adopts the generation
//! itself ([`Loop::adopt_generation`]) before it answers anything more: it
//! maps its own connections' held ids and its own linger timers with the
//! generation's id map, so no id of the old engine reaches the new one and
//! nobody re-arms timers on another loop's behalf.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tally_core::sync::{Parked, PauseError};

use super::{Loop, Worker};
use crate::cmd;
use crate::protocol::Reply;
use crate::shared::{vendors_of, Facts, Generation};
use crate::timers::Timer;

/// How long a REREAD waits for every other loop to park, in ms. A loop
/// parks at its next wake, which the rereader brings about at once, so
/// only a loop stuck in one long turn (or dead) takes this long; the
/// REREAD then fails rather than hang the server.
pub(crate) const PAUSE_BUDGET_MS: u64 = 5_000;

/// Longest a parked loop waits before it looks at the shutdown flag.
const PARK_WAIT: Duration = Duration::from_millis(100);

/// Runs a REREAD asked for on `w`'s loop; its reply goes into `out`.
pub(super) fn run(w: &mut Worker, out: &mut BytesMut, now: u64) {
    let shared = w.ctx.shared.clone();
    let p = match crate::reread::read_files(&shared) {
        Ok(files) => cmd::reread::prepare(&w.ctx, files, now),
        Err(e) => {
            let _ = Reply::RereadFailed(&e).write_to(out);
            return;
        }
    };
    let request = match shared.pause.request(Some(w.ctx.index)) {
        Ok(r) => r,
        Err(_) => {
            let _ = Reply::RereadBusy.write_to(out);
            return;
        }
    };
    shared.wake_all();
    let paused = match request.wait_acks(&*shared.clock, PAUSE_BUDGET_MS) {
        Ok(paused) => paused,
        Err(e @ PauseError::NotPaused { .. }) => {
            let _ = Reply::RereadFailed(&e.to_string()).write_to(out);
            return;
        }
        Err(PauseError::Busy) => unreachable!("only a request is busy"),
    };
    // Every other loop is parked; this one is on the latest generation (a
    // loop that runs has adopted every generation published so far).
    debug_assert_eq!(w.ctx.gen.version(), shared.generation.version());
    let (remap, removed) = cmd::reread::migrate(&mut w.ctx, &p, now, &mut w.fx);
    let kept = remap.len();
    let facts = Facts {
        license_file: p.licenses.source.clone(),
        vendors: vendors_of(&p.licenses),
        ..w.ctx.gen.get().facts.clone()
    };
    shared.generation.publish(Arc::new(Generation {
        engine: p.engine.clone(),
        opts: p.opts.clone(),
        remap,
        facts,
    }));
    w.log.switch_engine(p.engine.clone());
    // The others go on and adopt it; this loop does when it is back in
    // `Loop::on_conn_event`, before it answers anything more.
    paused.release();
    cmd::reread::report(&p, kept, removed, now, out, &mut w.fx);
}

impl Loop {
    /// Another loop asked for a pause: park until it is over, then adopt
    /// what it published. False if the server is shutting down meanwhile:
    /// then the loop stops waiting and must touch no engine again.
    pub(super) fn wait_out_reread(&mut self) -> bool {
        // Its events name the old engine's ids: before the rereading loop
        // switches the writer to the new one.
        self.w.log.hand_over();
        let shared = self.w.ctx.shared.clone();
        loop {
            match shared.pause.park(self.w.ctx.index, PARK_WAIT) {
                Parked::NotRequested => return true,
                Parked::Resumed => break,
                Parked::StillPaused if shared.shutdown.load(Ordering::SeqCst) => return false,
                Parked::StillPaused => {}
            }
        }
        self.adopt_generation();
        true
    }

    /// Takes the latest generation, if a new one was published: every
    /// connection's held ids and every linger timer of this loop are moved
    /// to the new engine's ids (those the new engine refused are dropped),
    /// and the idle checks are armed afresh for the new options.
    pub(super) fn adopt_generation(&mut self) {
        let shared = self.w.ctx.shared.clone();
        let before = self.w.ctx.gen.version();
        if !self.w.ctx.gen.refresh(&shared.generation) {
            return;
        }
        // One generation at a time (`Pause::park`): the map is from ours.
        debug_assert_eq!(self.w.ctx.gen.version(), before + 1);
        let gen = self.w.ctx.gen.get().clone();
        let remap = &gen.remap;
        for (_, c) in self.conns.iter_mut() {
            c.session.adopt(remap);
        }
        self.w
            .timers
            .remap_lingers(|old| remap.get(&old).map(|&(new, _)| new));
        self.w.ctx.engine = gen.engine.clone();
        self.w.ctx.opts = gen.opts.clone();
        // Its waiters may fit in the new pools.
        shared.queues.retry_on(self.w.ctx.index);
        self.arm_idle_all(self.w.now());
    }

    /// Arms an idle check for every connection from the new options (a
    /// reread may have turned TIMEOUTs on, off or shorter).
    fn arm_idle_all(&mut self, now: u64) {
        let shortest = self.w.ctx.opts.shortest_timeout_ms();
        for (key, c) in self.conns.iter_mut() {
            if let Some(old) = c.idle_timer.take() {
                self.w.timers.cancel(old);
            }
            if let Some(shortest) = shortest {
                let due = now.max(c.session.last_seen) + shortest;
                let timer = Timer::idle(key, c.session.serial);
                c.idle_timer = Some(self.w.timers.arm(timer, due));
            }
        }
    }
}
