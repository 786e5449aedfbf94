//! REREAD's loop glue: the pause of every loop around `cmd::reread`'s
//! migration, the publication of the new engine, and each loop's adoption
//! of it (its connections' ids mapped across).
//!
//! The rereading loop takes `Shared::rereading` (a second REREAD meanwhile
//! is refused), prepares the new engine, raises `pause` and waits at a
//! barrier of every loop; the others park there (`wait_out_reread`). It
//! then moves the instances, publishes engine, options and id map, and
//! releases the barrier. Each loop drops its old wheel and maps its
//! connections' ids before answering anything more.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};

use bytes::BytesMut;
use tally_core::engine::InstanceId;

use super::{Loop, Worker};
use crate::cmd::{self, Held};
use crate::protocol::Reply;
use crate::shared::{lock, vendors_of};
use crate::timers::Timer;

/// Runs a REREAD asked for on `w`'s loop; its reply goes into `out`.
pub(super) fn run(w: &mut Worker, out: &mut BytesMut, now: u64) {
    let shared = w.ctx.shared.clone();
    let Ok(_only_one) = shared.rereading.try_lock() else {
        let _ = Reply::RereadBusy.write_to(out);
        return;
    };
    let p = match cmd::reread::prepare(&w.ctx, now) {
        Ok(p) => p,
        Err(e) => {
            let _ = Reply::RereadFailed(&e).write_to(out);
            return;
        }
    };
    let barrier = Arc::new(Barrier::new(shared.workers));
    *lock(&shared.pause_barrier) = Some(barrier.clone());
    shared.pause.store(true, Ordering::SeqCst);
    shared.wake_all();
    barrier.wait(); // every other loop is parked

    // Ids of the old engine must never reach the new one: a new wheel,
    // armed for every instance moved across.
    w.timers.remap_lingers(|_| None);
    let (remap, removed) = cmd::reread::migrate(&mut w.ctx, &p, now, &mut w.fx);
    let kept = remap.len();
    *lock(&shared.remap) = Arc::new(remap);
    *lock(&shared.engine) = p.engine.clone();
    *lock(&shared.server_options) = p.opts.clone();
    {
        let mut facts = lock(&shared.facts);
        facts.license_file = p.licenses.source.clone();
        facts.vendors = vendors_of(&p.licenses);
    }
    w.log.switch_engine(p.engine.clone());
    w.ctx.engine = p.engine.clone();
    w.ctx.opts = p.opts.clone();
    shared.engine_gen.fetch_add(1, Ordering::SeqCst);
    shared.pause.store(false, Ordering::SeqCst);
    cmd::reread::report(&p, kept, removed, now, out, &mut w.fx);
    // The wheel's timers and the log lines, before the others go on.
    w.carry_common();
    // Let the others go on. `engine_gen` stays behind the shared one until
    // this loop has mapped its connections' ids (see `Loop::on_conn_event`).
    barrier.wait();
}

impl Loop {
    /// Another loop is rereading: park at its barrier, then adopt the new
    /// engine. Our timers point at old ids; the rereader re-armed every
    /// lingering instance in its own wheel, so ours are dropped.
    pub(super) fn wait_out_reread(&mut self) {
        let barrier = lock(&self.w.ctx.shared.pause_barrier).clone();
        if let Some(b) = barrier {
            b.wait(); // the rereader now moves the instances
            b.wait(); // done
            self.w.timers.remap_lingers(|_| None);
            self.adopt_engine();
        }
    }

    /// Switches to the shared engine and maps every connection's held ids.
    pub(super) fn adopt_engine(&mut self) {
        let shared = self.w.ctx.shared.clone();
        let remap = lock(&shared.remap).clone();
        for (_, c) in self.conns.iter_mut() {
            let held = &mut c.session.held;
            let mut moved: HashMap<InstanceId, Held> = HashMap::with_capacity(held.len());
            for (old, h) in held.drain() {
                let Some(&(id, feature)) = remap.get(&old) else {
                    continue;
                };
                // A new DUP_GROUP may have merged two instances into one.
                moved
                    .entry(id)
                    .and_modify(|m| m.handles.extend(h.handles.iter().cloned()))
                    .or_insert(Held { id, feature, ..h });
            }
            *held = moved;
        }
        self.w.ctx.engine = shared.current_engine();
        self.w.ctx.opts = lock(&shared.server_options).clone();
        self.w.ctx.engine_gen = shared.engine_gen.load(Ordering::SeqCst);
        self.arm_idle_all(self.w.now());
    }

    /// Arms an idle check for every connection (a reread turned TIMEOUTs on).
    fn arm_idle_all(&mut self, now: u64) {
        if let Some(shortest) = self.w.ctx.opts.shortest_timeout_ms() {
            for (key, c) in self.conns.iter_mut() {
                let due = now.max(c.session.last_seen) + shortest;
                let timer = Timer::idle(key, c.session.serial);
                if let Some(old) = c.idle_timer.replace(self.w.timers.arm(timer, due)) {
                    self.w.timers.cancel(old);
                }
            }
        }
    }
}
