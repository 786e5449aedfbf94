//! Reconciliation: a session a client admitted while no server answered
//! (offline grace), turned into a real checkout once one does.
//!
//! Unlike a checkout, a reconciliation records what already happened: it
//! is admitted whatever the pool's count, its overdraft allowance and the
//! options file's rules, and its instance's first checkout is the time the
//! client admitted it. Licenses beyond the pool's count are *overdraft*
//! (shown by [`Snapshot`](super::Snapshot) as such); a pool pushed past its
//! `count + overdraft` refuses new checkouts until it drains below that
//! again, exactly as after a REREAD that shrank it. Nobody is dropped.
//!
//! The pool's counter is the only count: [`Pool::force`](super::pool) adds
//! the licenses, a check-in takes them back, so overdraft is counted
//! exactly whatever the mix of checkouts and reconciliations.

use super::table::{Claim, Fields, Lookup, MAX_DEADLINE, NO_DEADLINE};
use super::{deadline_out, Denial, Engine, FeatureId, Grant, GrantKind, PoolId, Reason, Request};
use crate::clock::Millis;
use crate::license::PoolLine;

/// What [`Engine::reconcile`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// The grant: `kind` is [`GrantKind::New`] for a new instance,
    /// [`GrantKind::Renewed`] when the key already held one (nothing was
    /// counted: its deadline is kept), or `Startup` / `Uncounted` (nothing
    /// held). `overdraft` is set when the pool is beyond its count after it.
    pub grant: Grant,
    /// Licenses of the pool out after it (its admission counter).
    pub in_use: u64,
    /// The pool's count (0 for an uncounted pool).
    pub total: u32,
    /// The pool's `count + overdraft`: beyond it, new checkouts are denied.
    pub limit: u32,
    /// Of this reconciliation's licenses, those beyond the pool's count
    /// (0..=count asked; 0 for a renewal).
    pub excess: u32,
}

impl Reconciled {
    /// Licenses of the pool beyond its count after this reconciliation.
    pub fn pool_overdraft(&self) -> u64 {
        self.in_use.saturating_sub(u64::from(self.total))
    }
}

impl Engine {
    /// Records a session admitted offline as a checkout: since `since`
    /// (clamped to `now`), with `req.linger_ms` from `now` (0: held until
    /// check-in). Charged to the first pool serving the request (version,
    /// dates, not retired) that has room under its `count + overdraft`,
    /// else forced into the first serving pool beyond it. The options
    /// file's INCLUDE / EXCLUDE / MAX rules are not applied (the use
    /// happened); its counters take the licenses. If the key already holds
    /// an instance, nothing is counted and the instance is left as it is.
    ///
    /// Denied only when no pool could ever hold it: no such feature, no
    /// pool of the version, every pool expired or not yet started, a
    /// handle held by another user or host ([`Reason::NotHolder`]), a
    /// malformed request, or a full table.
    pub fn reconcile(
        &self,
        req: &Request<'_>,
        since: Millis,
        now: Millis,
    ) -> Result<Reconciled, Denial> {
        req.validate()?;
        let fid = *self
            .by_name
            .get(req.names.feature)
            .ok_or(Reason::NoSuchFeature)?;
        let feature = &self.features[fid as usize];
        let mut eligible = self.eligible(feature, req, None, now)?;
        let first = eligible.clone().next().ok_or(Reason::NoSuchFeature)?;
        let done = |grant: Grant, in_use: u64, excess: u32| {
            let pool = &self.pools[grant.pool.0 as usize];
            Reconciled {
                grant,
                in_use,
                total: pool.count,
                limit: pool.limit,
                excess,
            }
        };
        if let Some(p) = eligible
            .clone()
            .find(|&p| self.pools[p as usize].startup || !self.pools[p as usize].counted)
        {
            let pool = &self.pools[p as usize];
            let grant = Grant {
                id: None,
                kind: if pool.startup {
                    GrantKind::Startup
                } else {
                    GrantKind::Uncounted
                },
                feature: FeatureId(fid),
                pool: PoolId(p),
                count: req.count,
                deadline: None,
                schedule: None,
                overdraft: false,
                previous_deadline: None,
            };
            return Ok(done(grant, pool.in_use(), 0));
        }
        let key = feature.key.key(req.key_fields());
        let deadline = if req.linger_ms == 0 {
            NO_DEADLINE
        } else {
            now.saturating_add(req.linger_ms).min(MAX_DEADLINE)
        };
        let existing = |found: &super::table::Found<'_>| -> Result<Reconciled, Denial> {
            self.check_holder(feature, found, req)?;
            let pool = &self.pools[found.pool as usize];
            let current = self.table.deadline_of(found.id).unwrap_or(NO_DEADLINE);
            let grant = Grant {
                id: Some(found.id),
                kind: GrantKind::Renewed,
                feature: FeatureId(fid),
                pool: PoolId(found.pool),
                count: found.count,
                deadline: deadline_out(current),
                schedule: None,
                overdraft: false,
                previous_deadline: deadline_out(current),
            };
            Ok(done(grant, pool.in_use(), 0))
        };
        loop {
            if let Lookup::Live(found) = self.table.lookup(key) {
                return existing(&found);
            }
            match self.table.claim(key) {
                Claim::Owned(c) => {
                    let (p, in_use) = match eligible
                        .find_map(|p| self.pools[p as usize].reserve(req.count).map(|u| (p, u)))
                    {
                        Some(charged) => charged,
                        None => (first, self.pools[first as usize].force(req.count)),
                    };
                    if let Some(policy) = self.policy.as_deref() {
                        let who = policy.who(
                            fid,
                            req.names.user,
                            req.names.host,
                            req.names.display,
                            None,
                        );
                        policy.record(c.charge(), policy.force(p, &who, req.count));
                    }
                    if let (true, Some(cell)) = (self.shares(fid), c.uses()) {
                        // Not counted, as a restored instance: its linger
                        // holds it (see `Engine::restore`).
                        self.first_use(cell, c.gen(), req.names.handle, None, false);
                    }
                    let holder = super::HolderBuf::new(
                        req.names.user,
                        req.names.host,
                        req.names.display,
                        req.names.handle,
                    );
                    let id = self.table.publish(
                        c,
                        &Fields {
                            pool: p,
                            count: req.count,
                            since: since.min(now),
                            linger: req.linger_ms,
                            deadline,
                            holder: &holder,
                        },
                    );
                    let pool = &self.pools[p as usize];
                    let over = in_use.saturating_sub(u64::from(pool.count));
                    let grant = Grant {
                        id: Some(id),
                        kind: GrantKind::New,
                        feature: FeatureId(fid),
                        pool: PoolId(p),
                        count: req.count,
                        deadline: deadline_out(deadline),
                        schedule: deadline_out(deadline),
                        overdraft: over > 0,
                        previous_deadline: None,
                    };
                    let excess = over.min(u64::from(req.count)) as u32;
                    return Ok(done(grant, in_use, excess));
                }
                Claim::Exists(found) => return existing(&found),
                Claim::Retry => {}
                Claim::Full => return Err(Reason::TableFull.into()),
            }
        }
    }

    /// Number of pools (license lines), retired ones included.
    pub fn pool_count(&self) -> usize {
        self.pools.len()
    }

    /// The license line of pool `p` (with the options file's
    /// `MAX_OVERDRAFT` applied to its `overdraft`), the licenses it has
    /// out now, and whether it is retired (kept after a REREAD only for
    /// the instances still out: see [`super::RETIRED_KEYWORD`]).
    pub fn pool_line(&self, p: PoolId) -> Option<(&PoolLine, u64, bool)> {
        let pool = self.pools.get(p.0 as usize)?;
        Some((&pool.line, pool.in_use(), pool.retired))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::engine::{Engine, EngineConfig, GrantKind, Reason, Request};
    use crate::license::parse_str;

    const NOW: u64 = 1_700_000_000_000;

    fn engine(text: &str) -> Engine {
        Engine::new(&parse_str("t.lic", text), EngineConfig::default())
    }

    fn in_use(e: &Engine) -> (u32, u32) {
        let s = e.snapshot(NOW);
        let p = &s.features[0].pools[0];
        (p.in_use, p.overdraft)
    }

    #[test]
    fn seed_001_fifty_forty_five_ten() {
        let e = engine("FEATURE F V 1.0 permanent 50\n");
        let names: Vec<String> = (0..55).map(|i| format!("h{i}")).collect();
        for h in &names[..45] {
            e.checkout(&Request::new("F", "u", "pc", h), NOW).unwrap();
        }
        let mut excess = 0;
        for (i, h) in names[45..].iter().enumerate() {
            let mut r = Request::new("F", "u", "pc", h);
            r.linger_ms = 60_000;
            let got = e.reconcile(&r, NOW - 1000, NOW).unwrap();
            assert_eq!(got.grant.kind, GrantKind::New);
            assert_eq!(got.grant.overdraft, i >= 5, "{i}");
            assert_eq!(got.pool_overdraft(), (i as u64 + 1).saturating_sub(5));
            excess += got.excess;
        }
        assert_eq!(excess, 5);
        assert_eq!(in_use(&e), (55, 5));
        // Since is the admission's, the deadline from now.
        let s = e.snapshot(NOW);
        let h = s.features[0].pools[0]
            .holders
            .iter()
            .find(|h| h.handle == "h50")
            .unwrap();
        assert_eq!(
            (h.since_ms, h.deadline_ms),
            (NOW - 1000, Some(NOW + 60_000))
        );
        // New checkouts are denied while over; a renewal is not.
        let new = Request::new("F", "v", "pc", "new");
        assert_eq!(e.checkout(&new, NOW).unwrap_err().reason, Reason::AllInUse);
        assert!(e.checkout(&Request::new("F", "u", "pc", "h0"), NOW).is_ok());
        // Back under the count: admitted again.
        for h in &names[..6] {
            e.checkin("F", "u", "pc", "", h).unwrap();
        }
        assert_eq!(in_use(&e), (49, 0));
        assert!(e.checkout(&new, NOW).is_ok());
    }

    #[test]
    fn the_same_key_is_counted_once_and_kept() {
        let e = engine("FEATURE F V 1.0 permanent 1\n");
        let mut r = Request::new("F", "u", "pc", "a");
        r.linger_ms = 5_000;
        let first = e.reconcile(&r, NOW, NOW).unwrap();
        r.linger_ms = 1_000;
        let again = e.reconcile(&r, NOW, NOW + 10).unwrap();
        assert_eq!(again.grant.kind, GrantKind::Renewed);
        assert_eq!(again.grant.id, first.grant.id);
        assert_eq!(again.grant.deadline, Some(NOW + 5_000));
        assert_eq!(in_use(&e), (1, 0));
        // Another user naming the handle is not its holder.
        let other = Request::new("F", "x", "pc", "a");
        assert_eq!(
            e.reconcile(&other, NOW, NOW).unwrap_err().reason,
            Reason::NotHolder
        );
    }

    #[test]
    fn beyond_the_overdraft_allowance_too() {
        let e = engine("FEATURE F V 1.0 permanent 2 OVERDRAFT=1\n");
        let mut got = Vec::new();
        for h in ["a", "b", "c", "d"] {
            let r = Request::new("F", "u", "pc", h);
            got.push(e.reconcile(&r, NOW, NOW).unwrap());
        }
        assert_eq!(
            got.iter().map(|g| g.excess).collect::<Vec<_>>(),
            [0, 0, 1, 1]
        );
        assert_eq!((got[3].in_use, got[3].limit), (4, 3));
        assert_eq!(in_use(&e), (4, 2));
        let new = Request::new("F", "v", "pc", "n");
        assert!(e.checkout(&new, NOW).is_err());
        e.checkin("F", "u", "pc", "", "a").unwrap();
        assert!(e.checkout(&new, NOW).is_err(), "3 out of 3 allowed");
        e.checkin("F", "u", "pc", "", "b").unwrap();
        assert!(e.checkout(&new, NOW).unwrap().overdraft);
    }

    #[test]
    fn what_no_pool_could_hold_is_denied() {
        let e = engine(
            "FEATURE F V 1.0 1-jan-2000 5\nFEATURE S V 1.0 permanent 5 VENDOR_STRING=LT=SYS\n",
        );
        let r = Request::new("F", "u", "pc", "a");
        assert_eq!(
            e.reconcile(&r, NOW, NOW).unwrap_err().reason,
            Reason::Expired
        );
        let r = Request::new("NOPE", "u", "pc", "a");
        assert_eq!(
            e.reconcile(&r, NOW, NOW).unwrap_err().reason,
            Reason::NoSuchFeature
        );
        let s = Request::new("S", "u", "pc", "a");
        let got = e.reconcile(&s, NOW, NOW).unwrap();
        assert_eq!((got.grant.kind, got.grant.id), (GrantKind::Startup, None));
    }
}
