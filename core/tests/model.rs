//! The engine against a plain reference model.
//!
//! Random sequences of checkout (new, renewal, return with linger 1 s),
//! check-in and clock advances run on the real [`Engine`] + [`Lingers`] and
//! on a `BTreeMap` model that applies the rules naively. After every step
//! the grants, denials, pool counts, holders (with since and deadline) and
//! the exact set of releases (with their deadlines) must agree.
//!
//! The second property runs the same operations under an options file
//! ([`OPTIONS`]); the model applies EXCLUDE, MAX and RESERVE by counting
//! its own instances, with no counters of its own to get wrong.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tally_core::engine::{Engine, EngineConfig, GrantKind, Lingers, Reason, Request};
use tally_core::license::parse_str;
use tally_core::options;

const START: u64 = 1_700_000_000_000;

/// F: one pool of 2. G: INCREMENT 1.0 of 1 and INCREMENT 2.0 of 1.
const LICENSE: &str = "\
FEATURE F VENDOR 1.0 permanent 2
INCREMENT G VENDOR 1.0 permanent 1
INCREMENT G VENDOR 2.0 permanent 1
";

/// Rules for the second property. F: carl has 1 of the 2 licenses
/// reserved, ann may hold 1. G: carl may not use it, ann and bob together
/// may hold 2.
const OPTIONS: &str = "\
GROUP eng ann bob
EXCLUDE G USER carl
MAX 1 F USER ann
MAX 2 G GROUP eng
RESERVE 1 F USER carl
";

/// Options-file line of the RESERVE rule.
const RESERVE_LINE: u32 = 5;

const USERS: [&str; 3] = ["ann", "bob", "carl"];

/// (count, version scaled) per pool, per feature, in file order.
fn model_pools(feature: &str) -> Vec<(usize, u32, u64)> {
    match feature {
        "F" => vec![(0, 2, 1_000_000_000)],
        _ => vec![(1, 1, 1_000_000_000), (2, 1, 2_000_000_000)],
    }
}

#[derive(Debug, Clone)]
enum Op {
    Checkout {
        feature: &'static str,
        user: usize,
        handle: u8,
        linger_ms: u64,
        want_v2: bool,
    },
    Checkin {
        feature: &'static str,
        handle: u8,
    },
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let feature = prop_oneof![Just("F"), Just("G")];
    let linger = prop_oneof![Just(0u64), Just(1000u64), 1u64..20_000];
    prop_oneof![
        4 => (feature.clone(), 0..USERS.len(), 0u8..5, linger, any::<bool>()).prop_map(|(feature, user, handle, linger_ms, want_v2)| {
            Op::Checkout { feature, user, handle, linger_ms, want_v2 }
        }),
        1 => (feature, 0u8..5).prop_map(|(feature, handle)| Op::Checkin { feature, handle }),
        2 => prop_oneof![0u64..50, 0u64..5_000, Just(1000u64)].prop_map(Op::Advance),
    ]
}

/// One held instance in the model.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    pool: usize,
    user: &'static str,
    /// Charged to carl's reservation (options only).
    reserved: bool,
    since: u64,
    deadline: Option<u64>,
}

#[derive(Debug, Default)]
struct Model {
    /// (feature, handle) -> instance.
    held: BTreeMap<(&'static str, String), Held>,
    /// Apply [`OPTIONS`].
    rules: bool,
}

impl Model {
    fn in_use(&self, pool: usize) -> u32 {
        self.held.values().filter(|h| h.pool == pool).count() as u32
    }

    /// Instances of `feature` held by any of `users`.
    fn held_by(&self, feature: &str, users: &[&str]) -> usize {
        self.held
            .iter()
            .filter(|((f, _), h)| *f == feature && users.contains(&h.user))
            .count()
    }

    fn checkout(
        &mut self,
        feature: &'static str,
        user: &'static str,
        handle: &str,
        linger: u64,
        want: u64,
        now: u64,
    ) -> Result<(GrantKind, usize, Option<u64>), Reason> {
        let deadline = (linger > 0).then_some(now + linger);
        let pools = model_pools(feature);
        if !pools.iter().any(|p| p.2 >= want) {
            return Err(Reason::VersionTooHigh);
        }
        if self.rules && feature == "G" && user == "carl" {
            return Err(Reason::Excluded);
        }
        if let Some(h) = self.held.get_mut(&(feature, handle.to_string())) {
            // Only the holder renews (the model's hosts are all one).
            if h.user != user {
                return Err(Reason::NotHolder);
            }
            h.deadline = deadline;
            return Ok((GrantKind::Renewed, h.pool, deadline));
        }
        if self.rules {
            let over = match (feature, user) {
                ("F", "ann") => self.held_by("F", &["ann"]) >= 1,
                ("G", "ann" | "bob") => self.held_by("G", &["ann", "bob"]) >= 2,
                _ => false,
            };
            if over {
                return Err(Reason::OverMax);
            }
        }
        for (pool, count, version) in pools {
            if version < want || self.in_use(pool) >= count {
                continue;
            }
            let mut reserved = false;
            if self.rules && feature == "F" {
                // 1 of 2 reserved for carl: the rest is the general part.
                let res_used = self.held.values().any(|h| h.pool == pool && h.reserved);
                let general_used = self
                    .held
                    .values()
                    .filter(|h| h.pool == pool && !h.reserved)
                    .count();
                if user == "carl" && !res_used {
                    reserved = true;
                } else if general_used >= 1 {
                    return Err(if res_used {
                        Reason::AllInUse
                    } else {
                        Reason::ReservedForOthers { line: RESERVE_LINE }
                    });
                }
            }
            self.held.insert(
                (feature, handle.to_string()),
                Held {
                    pool,
                    user,
                    reserved,
                    since: now,
                    deadline,
                },
            );
            return Ok((GrantKind::New, pool, deadline));
        }
        Err(Reason::AllInUse)
    }

    /// Releases every instance due at `now`: (feature, handle, deadline).
    fn expire(&mut self, now: u64) -> Vec<(String, String, u64)> {
        let due: Vec<_> = self
            .held
            .iter()
            .filter(|(_, h)| h.deadline.is_some_and(|d| d <= now))
            .map(|(k, h)| (k.clone(), h.deadline.unwrap_or(0)))
            .collect();
        due.into_iter()
            .map(|(k, d)| {
                self.held.remove(&k);
                (k.0.to_string(), k.1, d)
            })
            .collect()
    }
}

fn check_state(engine: &Engine, model: &Model, now: u64) -> Result<(), TestCaseError> {
    let snap = engine.snapshot(now);
    let mut pool_index = 0;
    for f in &snap.features {
        for p in &f.pools {
            prop_assert_eq!(
                p.in_use,
                model.in_use(pool_index),
                "in_use of pool {}",
                pool_index
            );
            let mut got: Vec<_> = p
                .holders
                .iter()
                .map(|h| (h.handle.clone(), h.since_ms, h.deadline_ms))
                .collect();
            got.sort();
            let mut want: Vec<_> = model
                .held
                .iter()
                .filter(|(_, h)| h.pool == pool_index)
                .map(|((_, handle), h)| (handle.clone(), h.since, h.deadline))
                .collect();
            want.sort();
            prop_assert_eq!(got, want, "holders of pool {}", pool_index);
            pool_index += 1;
        }
    }
    Ok(())
}

fn run(ops: Vec<Op>, rules: bool) -> Result<(), TestCaseError> {
    let licenses = parse_str("model", LICENSE);
    prop_assert!(
        licenses.diagnostics.is_empty(),
        "{:?}",
        licenses.diagnostics
    );
    let engine = if rules {
        let opts = options::parse_str("model.opt", OPTIONS);
        prop_assert!(opts.diagnostics.is_empty(), "{:?}", opts.diagnostics);
        Engine::with_options(&licenses, &opts, EngineConfig::default())
    } else {
        Engine::new(&licenses, EngineConfig::default())
    };
    let mut lingers = Lingers::new(START);
    let mut model = Model {
        rules,
        ..Model::default()
    };
    let mut now = START;
    for op in ops {
        match op {
            Op::Checkout {
                feature,
                user,
                handle,
                linger_ms,
                want_v2,
            } => {
                let h = format!("h{handle}");
                let user = USERS[user];
                let want = if want_v2 { 1_500_000_000 } else { 0 };
                let mut req = Request::new(feature, user, "host", &h);
                req.linger_ms = linger_ms;
                req.version = want_v2.then_some(want);
                let got = engine.checkout(&req, now);
                if let Ok(g) = &got {
                    lingers.track(g);
                }
                let want = model.checkout(feature, user, &h, linger_ms, want, now);
                let got_cmp = got
                    .map(|g| (g.kind, g.pool.0 as usize, g.deadline))
                    .map_err(|d| d.reason);
                prop_assert_eq!(got_cmp, want);
            }
            Op::Checkin { feature, handle } => {
                let h = format!("h{handle}");
                let got = engine.checkin(feature, "u", "host", "", &h).is_ok();
                let want = model.held.remove(&(feature, h)).is_some();
                prop_assert_eq!(got, want);
            }
            Op::Advance(ms) => {
                now += ms;
                let mut got = Vec::new();
                lingers.expire(&engine, now, |r| {
                    got.push((
                        engine.feature_name(r.feature).to_string(),
                        r.holder.handle().to_string(),
                        r.deadline.unwrap_or(0),
                    ));
                });
                got.sort();
                let mut want = model.expire(now);
                want.sort();
                prop_assert_eq!(got, want, "releases at {}", now - START);
            }
        }
        check_state(&engine, &model, now)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_reference_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, false)?;
    }

    #[test]
    fn engine_with_options_matches_reference_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, true)?;
    }
}
