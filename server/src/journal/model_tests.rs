//! A model of the fuzzy snapshot, against a real engine and the journal's
//! own record, [`Kept`], [`Scan`] and [`State`] code: several "loops"
//! mutate the engine and buffer records, send them (with a marker when a
//! round asks) in any interleaving, the journal thread takes them in
//! channel order, marks and scans at any point in between, and then
//! recovery (the newest whole snapshot, then every segment from its
//! generation) must equal the engine's lingering instances: for every
//! instance whose records were all taken (acknowledged) at the crash,
//! and, once every loop has sent and everything was taken, for all.
//!
//! A REREAD (`cmd::reread::migrate`, as tallyd runs it) moves every
//! holder into a new engine from another license text, with new ids: the
//! loops send what they buffered, the id map and the new engine go down the
//! channel, and the journal thread, on taking it, remaps [`Kept`], lets a
//! snapshot of the old engine that is being scanned finish (it reads the
//! long names it was given at its mark; commit 0b6b943) and writes the new
//! engine's snapshot as a generation of its own. Recovery is checked after
//! every step, and between that old snapshot and the new one, by names
//! (user, handle), as a restart re-keys instances into its engine: the
//! full names, deadlines and counts must be the live ones.
//!
//! An instance is renewed only by the loop that owns its key (as a
//! connection's renewals are its loop's); check-ins and expiries come from
//! any loop, so a release can overtake a grant or renewal record of
//! another loop, which is the case the tombstones of [`super::kept::Recent`]
//! are for. (Two loops renewing one instance at once may leave the
//! earlier deadline: see the module docs.)

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use proptest::prelude::*;
use tally_core::engine::{
    Engine, EngineConfig, Expired, GrantKind, Names, Request, Restore, BORROWED,
};
use tally_core::license::parse_str;

use super::files::snapshot_frames;
use super::kept::Kept;
use super::record::{self, Instance, Record, TAG_OUT};
use super::scan::Scan;
use super::state::State;

const LOOPS: usize = 3;
const KEYS: u8 = 10;
const T0: u64 = 1_700_000_000_000;

/// The license texts a REREAD switches between: F's pool moves (another
/// feature before it) and its count changes, so that ids are renumbered.
const LICENSES: [&str; 3] = [
    "FEATURE F v 1.0 permanent 6\n",
    "FEATURE A v 1.0 permanent 2\nFEATURE F v 1.0 permanent 8\n",
    "FEATURE B v 1.0 permanent 1\nFEATURE A v 1.0 permanent 3\nFEATURE F v 1.0 permanent 7\n",
];

#[derive(Debug, Clone)]
enum Op {
    /// On the key's own loop; linger 0 = connection-bound.
    Checkout {
        key: u8,
        linger: u8,
    },
    Checkin {
        lp: u8,
        key: u8,
    },
    Expire {
        lp: u8,
        key: u8,
    },
    Tick(u16),
    /// A loop's end of round: its batch, then its marker if asked.
    Send(u8),
    /// The journal thread takes up to this many messages.
    Deliver(u8),
    /// The journal thread starts a marker round.
    Round,
    /// The journal thread takes the mark of a snapshot (new segment).
    Mark,
    /// The snapshot thread scans the engine and writes the snapshot.
    Scan,
    /// A license reread to this text of [`LICENSES`], on loop `lp`.
    Reread {
        lp: u8,
        lic: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..KEYS, 0..4u8).prop_map(|(key, linger)| Op::Checkout { key, linger }),
        2 => (0..LOOPS as u8, 0..KEYS).prop_map(|(lp, key)| Op::Checkin { lp, key }),
        1 => (0..LOOPS as u8, 0..KEYS).prop_map(|(lp, key)| Op::Expire { lp, key }),
        1 => (1..4000u16).prop_map(Op::Tick),
        4 => (0..LOOPS as u8).prop_map(Op::Send),
        3 => (1..5u8).prop_map(Op::Deliver),
        1 => Just(Op::Round),
        1 => Just(Op::Mark),
        1 => Just(Op::Scan),
        1 => (0..LOOPS as u8, 0..LICENSES.len() as u8).prop_map(|(lp, lic)| Op::Reread { lp, lic }),
    ]
}

/// A buffered record and the key it is of.
type Rec = (u8, Vec<u8>);

enum Msg {
    Batch(Vec<Rec>),
    Marker {
        from: usize,
        epoch: u64,
    },
    /// Old id -> new id, and the new engine.
    Remap(HashMap<u64, u64>, Arc<Engine>),
}

/// Key `k`'s names; some are too long for the table's copy.
fn user(k: u8) -> String {
    if k % 4 == 0 {
        format!("{k}-{}", "u".repeat(120))
    } else {
        format!("u{k}")
    }
}

fn handle(k: u8) -> String {
    format!("k{k}")
}

struct World {
    /// The loops' engine.
    engine: Arc<Engine>,
    /// The journal thread's: the loops' until it takes a reread's map.
    journal_engine: Arc<Engine>,
    now: u64,
    bufs: Vec<Vec<Rec>>,
    epoch: u64,
    answered: Vec<u64>,
    chan: VecDeque<Msg>,
    kept: Kept,
    gen: u64,
    /// (generation, records).
    segments: Vec<(u64, Vec<Vec<u8>>)>,
    /// (generation, frames) of whole snapshots.
    snapshots: Vec<(u64, Vec<u8>)>,
    marked: Option<(u64, Scan)>,
    /// Recovery checks failed inside a step (a crash mid-REREAD).
    failed: Option<String>,
}

impl World {
    fn new() -> World {
        let lic = parse_str("model", LICENSES[0]);
        let engine = Arc::new(Engine::new(&lic, EngineConfig::default()));
        let kept = Kept::default();
        let first = snapshot_frames(&Scan::at_mark(&engine, &kept, T0));
        World {
            journal_engine: engine.clone(),
            engine,
            now: T0,
            bufs: vec![Vec::new(); LOOPS],
            epoch: 0,
            answered: vec![0; LOOPS],
            chan: VecDeque::new(),
            kept,
            gen: 1,
            segments: vec![(1, Vec::new())],
            snapshots: vec![(1, first)],
            marked: None,
            failed: None,
        }
    }

    fn step(&mut self, op: &Op) {
        let now = self.now;
        match *op {
            Op::Checkout { key, linger } => {
                let (u, h) = (user(key), handle(key));
                let mut req = Request::new("F", &u, "pc", &h);
                req.linger_ms = u64::from(linger) * 1000;
                let Ok(g) = self.engine.checkout(&req, now) else {
                    return;
                };
                let Some(id) = g.id else { return };
                if g.deadline.is_some() || g.kind == GrantKind::Renewed {
                    let mut p = Vec::new();
                    record::encode_instance(
                        &mut p,
                        TAG_OUT,
                        &Instance {
                            id: id.to_bits(),
                            at_ms: now,
                            linger_ms: req.linger_ms,
                            deadline_ms: g.deadline,
                            count: g.count,
                            version: 0,
                            renewed: g.kind == GrantKind::Renewed,
                            names: req.names,
                        },
                    );
                    self.bufs[usize::from(key) % LOOPS].push((key, p));
                }
            }
            Op::Checkin { lp, key } => {
                let (u, h) = (user(key), handle(key));
                if let Ok(r) = self.engine.checkin("F", &u, "pc", "", &h) {
                    if r.deadline.is_some() {
                        self.release(lp, key, r.id.to_bits());
                    }
                }
            }
            Op::Expire { lp, key } => {
                let (u, h) = (user(key), handle(key));
                let fid = self.engine.feature_id("F").expect("F");
                let names = Names::new("F", u.as_str(), "pc", h.as_str());
                if let Some(id) = self.engine.find(fid, &names) {
                    if let Expired::Released(r) = self.engine.expire(id, now) {
                        self.release(lp, key, r.id.to_bits());
                    }
                }
            }
            Op::Tick(ms) => self.now += u64::from(ms),
            Op::Send(lp) => self.send(usize::from(lp)),
            Op::Deliver(n) => {
                for _ in 0..n {
                    self.deliver_one();
                }
            }
            Op::Round => {
                if self.kept.recent.wants_round() {
                    self.epoch += 1;
                    self.kept.recent.start_round(self.epoch, LOOPS);
                }
            }
            Op::Mark => {
                if self.marked.is_none() {
                    self.gen += 1;
                    self.kept.prune(&self.journal_engine, now);
                    self.segments.push((self.gen, Vec::new()));
                    let scan = Scan::at_mark(&self.journal_engine, &self.kept, now);
                    self.marked = Some((self.gen, scan));
                }
            }
            Op::Scan => self.finish_scan(),
            Op::Reread { lp, lic } => self.reread(usize::from(lp), usize::from(lic)),
        }
    }

    /// The snapshot thread ends its scan now and the snapshot is durable.
    fn finish_scan(&mut self) {
        if let Some((gen, mut scan)) = self.marked.take() {
            scan.now = self.now;
            self.snapshots.push((gen, snapshot_frames(&scan)));
        }
    }

    /// `net/reread.rs` and `cmd::reread::migrate`: every other loop parks
    /// after its round (its batch sent), the rereading loop moves every
    /// holder into the new engine and sends its batch, then the id map.
    fn reread(&mut self, lp: usize, lic: usize) {
        for other in (0..LOOPS).filter(|&o| o != lp) {
            self.send(other);
        }
        let now = self.now;
        let lic = parse_str("model", LICENSES[lic]);
        let new = Arc::new(Engine::new(&lic, EngineConfig::default()));
        let mut remap = HashMap::new();
        for f in self.engine.snapshot(now).features {
            for pool in f.pools {
                for h in pool.holders {
                    let r = Restore {
                        names: Names {
                            feature: &f.name,
                            user: &h.user,
                            host: &h.host,
                            display: &h.display,
                            handle: &h.handle,
                        },
                        count: h.count,
                        version: pool.version.scaled(),
                        since_ms: h.since_ms,
                        linger_ms: h.linger_ms | if h.borrowed { BORROWED } else { 0 },
                        deadline_ms: h.deadline_ms,
                        identity: Some(h.identity),
                    };
                    let id = new
                        .restore_uses(&r, self.engine.uses(h.id).as_ref())
                        .expect("F is in every license text");
                    remap.insert(h.id.to_bits(), id.to_bits());
                }
            }
        }
        self.engine = new.clone();
        self.send(lp);
        self.chan.push_back(Msg::Remap(remap, new));
    }

    fn release(&mut self, lp: u8, key: u8, id: u64) {
        let mut p = Vec::new();
        record::encode_in(&mut p, id, self.now);
        self.bufs[usize::from(lp)].push((key, p));
    }

    fn send(&mut self, lp: usize) {
        let batch = std::mem::take(&mut self.bufs[lp]);
        if !batch.is_empty() {
            self.chan.push_back(Msg::Batch(batch));
        }
        if self.answered[lp] != self.epoch {
            self.answered[lp] = self.epoch;
            self.chan.push_back(Msg::Marker {
                from: lp,
                epoch: self.epoch,
            });
        }
    }

    fn deliver_one(&mut self) {
        match self.chan.pop_front() {
            Some(Msg::Batch(records)) => {
                for (_, p) in records {
                    let rec = record::decode(&p).expect("decodes");
                    self.kept.apply(&rec, &p);
                    self.segments.last_mut().expect("a segment").1.push(p);
                }
            }
            Some(Msg::Marker { from, epoch }) => self.kept.recent.marker(from, epoch),
            Some(Msg::Remap(map, engine)) => {
                // `Writer::run`: remap, switch engines, then `rewrite`,
                // which first waits for a running scan of the old engine.
                self.kept.remap(&map);
                self.journal_engine = engine;
                if self.marked.is_some() {
                    self.finish_scan();
                    // A crash once that snapshot is durable, before the
                    // new engine's: recovery is of the old ids.
                    if let Err(e) = self.check(&self.unacknowledged()) {
                        self.failed
                            .get_or_insert(format!("after the old scan: {e}"));
                    }
                }
                self.gen += 1;
                self.kept.prune(&self.journal_engine, self.now);
                let scan = Scan::at_mark(&self.journal_engine, &self.kept, self.now);
                self.snapshots.push((self.gen, snapshot_frames(&scan)));
                self.segments.push((self.gen, Vec::new()));
            }
            None => {}
        }
    }

    /// Recovery after a crash now: the newest whole snapshot, then every
    /// segment of its generation or later.
    fn recover(&self) -> State {
        let (gen, frames) = self.snapshots.last().expect("the first snapshot");
        let mut s = State::default();
        let scan = record::scan(frames, Some(0));
        assert_eq!(scan.frames.len() as u64, count_frames(frames));
        let mut ended = false;
        for (_, r) in scan.frames {
            let p = &frames[r];
            match record::decode(p).expect("decodes") {
                Record::End { instances, .. } => {
                    assert_eq!(instances as usize, s.live.len());
                    ended = true;
                }
                rec => s.apply(&rec, p),
            }
        }
        assert!(ended, "a whole snapshot ends with END");
        for (g, records) in &self.segments {
            if g >= gen {
                for p in records {
                    s.apply(&record::decode(p).expect("decodes"), p);
                }
            }
        }
        s
    }

    /// Keys with a record not yet taken by the journal thread.
    fn unacknowledged(&self) -> HashSet<u8> {
        let mut keys = HashSet::new();
        let batches = self
            .bufs
            .iter()
            .chain(self.chan.iter().filter_map(|m| match m {
                Msg::Batch(b) => Some(b),
                Msg::Marker { .. } | Msg::Remap(..) => None,
            }));
        for b in batches {
            keys.extend(b.iter().map(|(k, _)| *k));
        }
        keys
    }

    /// The engine's lingering instances: key -> (deadline, count, user,
    /// handle), the user being the full one the key was checked out with.
    fn live(&self) -> HashMap<u8, (u64, u32, String, String)> {
        let mut m = HashMap::new();
        self.engine.for_each_lingering(self.now, |l| {
            let h = l.holder.handle().to_string();
            let key: u8 = h[1..].parse().expect("k<n>");
            m.insert(key, (l.deadline_ms, l.count, user(key), h));
        });
        m
    }

    /// Recovery equals the live lingering instances, but for `except`'s
    /// keys. By names, as a restart re-keys them into its engine (the
    /// newest snapshot may be of the engine before a reread).
    fn check(&self, except: &HashSet<u8>) -> Result<(), TestCaseError> {
        let mut got = HashMap::new();
        for i in self.recover().instances() {
            let d = i.deadline_ms.expect("a lingering instance");
            let h = i.names.handle.to_string();
            let key: u8 = h[1..].parse().expect("k<n>");
            if except.contains(&key) {
                continue;
            }
            let v = (d, i.count, i.names.user.to_string(), h);
            prop_assert!(got.insert(key, v).is_none(), "key {} twice", key);
        }
        let mut want = self.live();
        want.retain(|k, _| !except.contains(k));
        prop_assert_eq!(got, want);
        Ok(())
    }
}

fn count_frames(frames: &[u8]) -> u64 {
    record::scan(frames, Some(0)).frames.len() as u64
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_and_replay_equal_the_live_lingering_set(ops in prop::collection::vec(op(), 1..120)) {
        let mut w = World::new();
        for op in &ops {
            w.step(op);
            if let Some(e) = w.failed.take() {
                return Err(TestCaseError::fail(e));
            }
            // A crash now: every instance whose records were all taken.
            let pending = w.unacknowledged();
            w.check(&pending)?;
        }
        // Every loop sends, the journal takes everything: all of them.
        for lp in 0..LOOPS {
            w.send(lp);
        }
        while !w.chan.is_empty() {
            w.deliver_one();
        }
        w.check(&HashSet::new())?;
        // And after one more snapshot, scanned at once.
        w.step(&Op::Scan);
        w.step(&Op::Mark);
        w.step(&Op::Scan);
        w.check(&HashSet::new())?;
    }
}
