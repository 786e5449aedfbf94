//! DUP_GROUP uses against a plain reference model.
//!
//! Random sequences of checkouts (bound or lingering, by ann or bob, on one
//! of three connections, with one of three handles), connection closes,
//! CHECKINs and clock advances run on the real [`Engine`] (counting uses
//! with [`Engine::checkout_use`], [`Engine::end_uses`] and
//! [`Engine::check_in_use`], as a server does) + [`Lingers`], and on a
//! model that keeps the list of uses and promises and applies the rules of
//! `engine/uses.rs` naively: the license is held while a bound use lives or
//! a promise is ahead. After every step the grants, denials, what each end
//! did, the holder, its deadline and the latest promise must agree.

use std::collections::HashMap;

use proptest::prelude::*;
use tally_core::engine::{Ended, Engine, EngineConfig, GrantKind, InstanceId, Lingers, Reason};
use tally_core::engine::{Request, Use};
use tally_core::license::parse_str;

const START: u64 = 1_700_000_000_000;

/// One license, shared by a user's handles on a host.
const LICENSE: &str = "FEATURE D VENDOR 1.0 permanent 1 DUP_GROUP=UH\n";

const USERS: [&str; 2] = ["ann", "bob"];
const CONNS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Checkout {
        conn: usize,
        user: usize,
        handle: u8,
        linger_ms: u64,
    },
    Close(usize),
    Checkin {
        conn: usize,
        handle: u8,
    },
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let linger = prop_oneof![Just(0u64), Just(0u64), 1u64..40];
    prop_oneof![
        5 => (0..CONNS, 0..USERS.len(), 0u8..3, linger).prop_map(|(conn, user, handle, linger_ms)| {
            Op::Checkout { conn, user, handle, linger_ms }
        }),
        1 => (0..CONNS).prop_map(Op::Close),
        2 => (0..CONNS, 0u8..3).prop_map(|(conn, handle)| Op::Checkin { conn, handle }),
        2 => prop_oneof![0u64..5, 0u64..50].prop_map(Op::Advance),
    ]
}

/// The shared instance in the model.
#[derive(Debug, Default)]
struct Inst {
    user: &'static str,
    /// (connection, handle, bound).
    uses: Vec<(usize, String, bool)>,
    /// Per handle, the latest deadline an OK promised it.
    promises: Vec<(String, u64)>,
}

impl Inst {
    fn latest(&self, now: u64) -> Option<u64> {
        self.promises.iter().map(|p| p.1).filter(|&d| d > now).max()
    }

    /// Held at `now`: a bound use lives, or a promise is ahead.
    fn held(&self, now: u64) -> bool {
        self.uses.iter().any(|u| u.2) || self.latest(now).is_some()
    }

    /// The instance's deadline in the engine: none while a bound use
    /// lives, else the latest promise.
    fn deadline(&self, now: u64) -> Option<u64> {
        if self.uses.iter().any(|u| u.2) {
            None
        } else {
            self.latest(now)
        }
    }
}

/// What the model expects of a checkout: kind, this use's deadline, the
/// latest promise, whether the use is new.
type Granted = (GrantKind, Option<u64>, Option<u64>, bool);

#[derive(Debug, Default)]
struct Model {
    inst: Option<Inst>,
}

impl Model {
    fn checkout(
        &mut self,
        conn: usize,
        user: &'static str,
        handle: &str,
        linger: u64,
        now: u64,
    ) -> Result<Granted, Reason> {
        let deadline = (linger > 0).then_some(now + linger);
        let (kind, inst) = match &mut self.inst {
            Some(i) if i.user != user => return Err(Reason::AllInUse),
            Some(i) => (GrantKind::Renewed, i),
            None => (
                GrantKind::New,
                self.inst.insert(Inst {
                    user,
                    ..Inst::default()
                }),
            ),
        };
        let bound = deadline.is_none();
        let new_use = match inst.uses.iter_mut().find(|u| u.0 == conn && u.1 == handle) {
            Some(u) => {
                u.2 = bound;
                false
            }
            None => {
                inst.uses.push((conn, handle.to_string(), bound));
                true
            }
        };
        inst.promises.retain(|p| p.0 != handle);
        if let Some(d) = deadline {
            inst.promises.push((handle.to_string(), d));
        }
        Ok((kind, deadline, inst.latest(now), new_use))
    }

    /// Drops the instance if it is no longer held at `now`.
    fn settle(&mut self, now: u64) {
        if self.inst.as_ref().is_some_and(|i| !i.held(now)) {
            self.inst = None;
        }
    }
}

/// A connection's uses, as a server keeps them: per instance, its handles
/// and whether each use is bound.
type Conn = HashMap<InstanceId, Vec<(String, bool)>>;

fn check_state(engine: &Engine, model: &Model, now: u64) -> Result<(), TestCaseError> {
    let snap = engine.snapshot(now);
    let p = &snap.features[0].pools[0];
    let got: Vec<_> = p
        .holders
        .iter()
        .map(|h| (h.user.clone(), h.deadline_ms))
        .collect();
    let want: Vec<_> = model
        .inst
        .iter()
        .map(|i| (i.user.to_string(), i.deadline(now)))
        .collect();
    prop_assert_eq!(got, want, "holder at +{}", now - START);
    prop_assert_eq!(p.in_use, model.inst.iter().count() as u32);
    if let (Some(h), Some(i)) = (p.holders.first(), &model.inst) {
        let uses = engine.uses(h.id).expect("counted");
        let bound = i.uses.iter().filter(|u| u.2).count() as u32;
        prop_assert_eq!((uses.count(), uses.bound()), (i.uses.len() as u32, bound));
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let licenses = parse_str("model", LICENSE);
    prop_assert!(
        licenses.diagnostics.is_empty(),
        "{:?}",
        licenses.diagnostics
    );
    let engine = Engine::new(&licenses, EngineConfig::default());
    let mut lingers = Lingers::new(START);
    let mut conns: Vec<Conn> = vec![Conn::new(); CONNS];
    let mut model = Model::default();
    let mut now = START;
    for op in ops {
        match op {
            Op::Checkout {
                conn,
                user,
                handle,
                linger_ms,
            } => {
                let h = format!("h{handle}");
                let user = USERS[user];
                let mut req = Request::new("D", user, "pc", &h);
                req.linger_ms = linger_ms;
                let held = &conns[conn];
                let got = engine.checkout_use(&req, None, now, |id| {
                    let uses = held.get(&id)?;
                    let (_, bound) = uses.iter().find(|u| u.0 == h)?;
                    Some(if *bound { Use::Bound } else { Use::Lingering })
                });
                if let Ok((g, _)) = &got {
                    lingers.track(g);
                    let uses = conns[conn].entry(g.id.expect("counted")).or_default();
                    let bound = g.deadline.is_none();
                    match uses.iter_mut().find(|u| u.0 == h) {
                        Some(u) => u.1 = bound,
                        None => uses.push((h.clone(), bound)),
                    }
                }
                let got = got
                    .map(|(g, c)| {
                        let c = c.expect("a counted use");
                        (g.kind, g.deadline, c.promised, c.new_use)
                    })
                    .map_err(|d| d.reason);
                let want = model.checkout(conn, user, &h, linger_ms, now);
                prop_assert_eq!(got, want);
            }
            Op::Close(conn) => {
                for (id, uses) in conns[conn].drain() {
                    let n = uses.len() as u32;
                    let bound = uses.iter().filter(|u| u.1).count() as u32;
                    let was_live = engine.is_live(id);
                    let ended = engine.end_uses(id, n, bound, now);
                    if let Ended::Kept {
                        schedule: Some(d), ..
                    } = ended
                    {
                        lingers.arm(id, d);
                    }
                    if !was_live {
                        // An instance gone before: nothing to check in.
                        prop_assert!(!matches!(ended, Ended::Last(Some(_))), "{:?}", ended);
                        continue;
                    }
                    let i = model.inst.as_mut().expect("the live instance");
                    let had_bound = i.uses.iter().any(|u| u.2);
                    i.uses.retain(|u| u.0 != conn);
                    let last = i.uses.is_empty() && i.latest(now).is_none();
                    match ended {
                        Ended::Kept { promised, .. } => {
                            prop_assert!(!last, "kept after the last use");
                            prop_assert_eq!(promised, i.latest(now));
                        }
                        // Held until check-in: the end checks it in; else
                        // its deadline has passed and the expiry does.
                        Ended::Last(r) => {
                            prop_assert!(last, "checked in with uses left");
                            prop_assert_eq!(r.is_some(), had_bound);
                        }
                    }
                }
            }
            Op::Checkin { conn, handle } => {
                let h = format!("h{handle}");
                // The connection's live use by this handle, as a server
                // finds it.
                let found = conns[conn]
                    .iter_mut()
                    .find(|(id, u)| engine.is_live(**id) && u.iter().any(|u| u.0 == h));
                let Some((&id, uses)) = found else {
                    let model_has = model
                        .inst
                        .as_ref()
                        .is_some_and(|i| i.uses.iter().any(|u| u.0 == conn && u.1 == h));
                    prop_assert!(!model_has, "the model has the use");
                    continue;
                };
                let bound = uses.iter().find(|u| u.0 == h).is_some_and(|u| u.1);
                uses.retain(|u| u.0 != h);
                let ended = engine.check_in_use(id, &h, bound, now);
                if let Ended::Kept {
                    schedule: Some(d), ..
                } = ended
                {
                    lingers.arm(id, d);
                }
                let i = model.inst.as_mut().expect("a live instance");
                i.uses.retain(|u| !(u.0 == conn && u.1 == h));
                i.promises.retain(|p| p.0 != h);
                let last = i.uses.is_empty() && i.latest(now).is_none();
                match ended {
                    Ended::Kept { promised, .. } => {
                        prop_assert!(!last, "kept after the last use");
                        prop_assert_eq!(promised, i.latest(now));
                    }
                    Ended::Last(r) => {
                        prop_assert!(last, "checked in with uses left");
                        prop_assert!(r.is_some(), "a CHECKIN checks it in");
                    }
                }
            }
            Op::Advance(ms) => now += ms,
        }
        lingers.expire(&engine, now, |_| {});
        model.settle(now);
        check_state(&engine, &model, now)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn uses_match_reference_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}
