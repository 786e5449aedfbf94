//! The search: Wing and Gong's, with Lowe's memoisation, as Porcupine
//! does it (see the crate docs for the model and the rules).

use std::collections::HashSet;
use std::fmt;

use crate::history::{History, Kind, Op, Outcome};

/// Search steps after which [`Checker::check`] gives up, by default.
pub const DEFAULT_MAX_STEPS: u64 = 5_000_000;

/// How `DENIED ALL_IN_USE` replies are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Denials {
    /// A denial must have a linearization point where every seat was out
    /// and its handle held none (a denial with a free seat is a bug: a
    /// license that could have been granted was not). The default.
    #[default]
    Strict,
    /// Denials are not checked (left out of the history): for a server
    /// that may refuse with seats free, by design, for a while.
    Unchecked,
}

/// The answer of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some order agrees with every reply and keeps the count within the
    /// limit. `order` is one: the indices of the operations that took
    /// effect, in that order (an operation with an unknown result is
    /// listed only if it is needed, or chosen, to have taken effect).
    Linearizable {
        /// A witness linearization (history indices).
        order: Vec<usize>,
    },
    /// No order does.
    Violation(Violation),
    /// The search took more steps than it may; nothing is known.
    GaveUp {
        /// Steps taken by the search that gave up.
        steps: u64,
    },
}

impl Verdict {
    /// Whether the history was found linearizable.
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable { .. })
    }

    /// Whether the history was found not linearizable.
    pub fn is_violation(&self) -> bool {
        matches!(self, Verdict::Violation(_))
    }
}

/// Where a history stops being linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The first operation, in order of response, by whose response no
    /// order exists: the history of everything answered up to then (with
    /// whatever was still in flight as maybe-taken-effect) has no
    /// linearization, and the history up to the response before it has
    /// one. `None`: more handles were held at the start than the limit.
    pub op: Option<usize>,
    /// False if a search of a shorter prefix gave up, so that `op` is only
    /// an upper bound (the whole history is still known to fail).
    pub exact: bool,
    /// The operation and the rule, in words.
    pub described: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.described)?;
        if !self.exact {
            f.write_str(" (or earlier: a shorter prefix's search gave up)")?;
        }
        Ok(())
    }
}

/// The checker: its bound and its rule for denials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checker {
    max_steps: u64,
    denials: Denials,
}

impl Default for Checker {
    fn default() -> Checker {
        Checker::new()
    }
}

/// One operation as the search sees it.
#[derive(Debug, Clone, Copy)]
struct Prepared {
    orig: usize,
    kind: Kind,
    outcome: Outcome,
    handle: usize,
    invoked: u64,
    responded: u64,
    settled: Option<u64>,
}

impl Prepared {
    fn known(&self) -> bool {
        self.outcome != Outcome::Unknown
    }
}

/// A set of small integers (handles held; operations linearized).
type Bits = Vec<u64>;

fn get(b: &[u64], i: usize) -> bool {
    b[i / 64] >> (i % 64) & 1 == 1
}

fn flip(b: &mut [u64], i: usize) {
    b[i / 64] ^= 1 << (i % 64);
}

fn count(b: &[u64]) -> u64 {
    b.iter().map(|w| u64::from(w.count_ones())).sum()
}

enum Searched {
    Found(Vec<usize>),
    None,
    GaveUp(u64),
}

const NIL: usize = usize::MAX;

impl Checker {
    /// [`DEFAULT_MAX_STEPS`], [`Denials::Strict`].
    pub fn new() -> Checker {
        Checker {
            max_steps: DEFAULT_MAX_STEPS,
            denials: Denials::Strict,
        }
    }

    /// At most `steps` steps per search (a failing history is searched
    /// again, for its first failing prefix, at most about log2(n) times).
    pub fn max_steps(mut self, steps: u64) -> Checker {
        self.max_steps = steps.max(1);
        self
    }

    /// The rule for denials.
    pub fn denials(mut self, denials: Denials) -> Checker {
        self.denials = denials;
        self
    }

    /// Checks `history` (crate docs).
    pub fn check(&self, history: &History) -> Verdict {
        let limit = u64::from(history.limit());
        let handles = history.handles();
        let map: std::collections::HashMap<&str, usize> =
            handles.iter().enumerate().map(|(i, h)| (*h, i)).collect();
        let words = handles.len().div_ceil(64).max(1);
        let mut start: Bits = vec![0; words];
        for h in history.held() {
            flip(&mut start, map[h.as_str()]);
        }
        if count(&start) > limit {
            return Verdict::Violation(Violation {
                op: None,
                exact: true,
                described: format!(
                    "{} handles were held at the start, more than the limit of {}",
                    count(&start),
                    limit
                ),
            });
        }
        let ops: Vec<Prepared> = history
            .ops()
            .iter()
            .enumerate()
            .filter(|(_, o)| !(self.denials == Denials::Unchecked && o.outcome == Outcome::Denied))
            .map(|(i, o)| Prepared {
                orig: i,
                kind: o.kind,
                outcome: o.outcome,
                handle: map[o.handle.as_str()],
                invoked: o.invoked,
                responded: o.responded,
                settled: o.settled,
            })
            .collect();
        let all: Vec<(Prepared, bool)> = ops.iter().map(|p| (*p, p.known())).collect();
        match self.search(&all, limit, &start) {
            Searched::Found(order) => return Verdict::Linearizable { order },
            Searched::GaveUp(steps) => return Verdict::GaveUp { steps },
            Searched::None => {}
        }
        // The first failing prefix, by binary search over the known
        // responses (failing is monotone: a linearization of a longer
        // prefix, cut at a response, is one of the shorter).
        let mut ends: Vec<&Prepared> = ops.iter().filter(|p| p.known()).collect();
        ends.sort_by_key(|p| (p.responded, p.orig));
        let prefix = |k: usize| -> Vec<(Prepared, bool)> {
            let end = ends[k];
            let key = (end.responded, end.orig);
            ops.iter()
                .filter(|p| p.invoked <= end.responded)
                .map(|p| (*p, p.known() && (p.responded, p.orig) <= key))
                .collect()
        };
        let (mut lo, mut hi, mut exact) = (0, ends.len().saturating_sub(1), true);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.search(&prefix(mid), limit, &start) {
                Searched::None => hi = mid,
                Searched::Found(_) => lo = mid + 1,
                Searched::GaveUp(_) => {
                    exact = false;
                    break;
                }
            }
        }
        let op = ends.get(hi).map(|p| p.orig);
        let described = match op {
            Some(i) => describe(i, &history.ops()[i], history.limit()),
            None => "no order agrees with the replies".to_string(),
        };
        Verdict::Violation(Violation {
            op,
            exact,
            described,
        })
    }

    /// The state after `p` takes effect in `held`, if it can with its reply.
    /// Unknown outcomes only ever take effect (a no-op is the same as never
    /// having been linearized, which an unknown operation may).
    fn step(p: &Prepared, held: &[u64], limit: u64) -> Option<Bits> {
        let has = get(held, p.handle);
        let with = |on: bool| {
            let mut b = held.to_vec();
            if has != on {
                flip(&mut b, p.handle);
            }
            b
        };
        match (p.kind, p.outcome) {
            (Kind::Checkout, Outcome::Granted) if has => Some(held.to_vec()),
            (Kind::Checkout, Outcome::Granted) => (count(held) < limit).then(|| with(true)),
            (Kind::Checkout, Outcome::Denied) => {
                (!has && count(held) >= limit).then(|| held.to_vec())
            }
            (Kind::Checkout, Outcome::Unknown) => (!has && count(held) < limit).then(|| with(true)),
            (Kind::Checkin | Kind::Expiry, Outcome::Released)
            | (Kind::Checkin, Outcome::Unknown) => has.then(|| with(false)),
            (Kind::Checkin, Outcome::NotHeld) => (!has).then(|| held.to_vec()),
            _ => None,
        }
    }

    /// Wing and Gong's search over `ops` (each with whether it must be
    /// linearized: a known reply within the prefix). Call events, the
    /// return events of mandatory operations and the settle events of
    /// unknown ones that have one, in one list by time, calls before
    /// returns at equal times (intervals are closed: touching operations
    /// are concurrent). Walk it: a call whose operation can take effect now
    /// is taken out with its return (lifted) and the walk starts again from
    /// the head; reaching a return means the operation before it in the
    /// stack must be undone (backtrack); reaching a settle event means that
    /// operation never took effect (it is lifted too, as a forced step that
    /// a backtrack undoes on its way to the choice before). A (set of
    /// operations done, state) pair met before is not searched again.
    fn search(&self, ops: &[(Prepared, bool)], limit: u64, start: &[u64]) -> Searched {
        // Events: (time, 0 = call / 1 = return, op).
        let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (j, (p, mandatory)) in ops.iter().enumerate() {
            events.push((p.invoked, 0, j));
            if *mandatory {
                events.push((p.responded, 1, j));
            } else if let Some(t) = p.settled {
                events.push((t, 1, j));
            }
        }
        events.sort_unstable();
        // Node 0 is the head; node e + 1 is event e.
        let n = events.len() + 1;
        let mut next = vec![NIL; n];
        let mut prev = vec![NIL; n];
        let mut op_of = vec![NIL; n];
        let mut is_call = vec![false; n];
        let mut partner = vec![NIL; n];
        let mut call_node = vec![NIL; ops.len()];
        for (e, &(_, kind, j)) in events.iter().enumerate() {
            let node = e + 1;
            prev[node] = e;
            next[e] = node;
            op_of[node] = j;
            is_call[node] = kind == 0;
            if kind == 0 {
                call_node[j] = node;
            } else {
                partner[call_node[j]] = node;
            }
        }
        let unlink = |next: &mut [usize], prev: &mut [usize], x: usize| {
            next[prev[x]] = next[x];
            if next[x] != NIL {
                prev[next[x]] = prev[x];
            }
        };
        let relink = |next: &mut [usize], prev: &mut [usize], x: usize| {
            next[prev[x]] = x;
            if next[x] != NIL {
                prev[next[x]] = x;
            }
        };
        let mut remaining = ops.iter().filter(|(_, m)| *m).count();
        if remaining == 0 {
            return Searched::Found(Vec::new());
        }
        let mut state: Bits = start.to_vec();
        let mut linearized: Bits = vec![0; ops.len().div_ceil(64).max(1)];
        // (call node, state before, forced: a settle, not a choice)
        let mut stack: Vec<(usize, Bits, bool)> = Vec::new();
        let mut seen: HashSet<(Bits, Bits)> = HashSet::new();
        let mut steps = 0u64;
        let mut entry = next[0];
        loop {
            steps += 1;
            if steps > self.max_steps {
                return Searched::GaveUp(steps - 1);
            }
            let mut back = false;
            if entry == NIL {
                back = true;
            } else if is_call[entry] {
                let j = op_of[entry];
                if let Some(after) = Self::step(&ops[j].0, &state, limit) {
                    flip(&mut linearized, j);
                    if seen.insert((linearized.clone(), after.clone())) {
                        stack.push((entry, std::mem::replace(&mut state, after), false));
                        unlink(&mut next, &mut prev, entry);
                        if partner[entry] != NIL {
                            unlink(&mut next, &mut prev, partner[entry]);
                        }
                        if ops[j].1 {
                            remaining -= 1;
                            if remaining == 0 {
                                return Searched::Found(
                                    stack
                                        .iter()
                                        .filter(|&&(_, _, forced)| !forced)
                                        .map(|&(node, _, _)| ops[op_of[node]].0.orig)
                                        .collect(),
                                );
                            }
                        }
                        entry = next[0];
                        continue;
                    }
                    flip(&mut linearized, j);
                }
                entry = next[entry];
            } else if ops[op_of[entry]].1 {
                // A return of an operation not yet linearized.
                back = true;
            } else {
                // Its settle time: the unknown operation never took effect.
                let j = op_of[entry];
                let call = call_node[j];
                flip(&mut linearized, j);
                if seen.insert((linearized.clone(), state.clone())) {
                    stack.push((call, state.clone(), true));
                    unlink(&mut next, &mut prev, call);
                    unlink(&mut next, &mut prev, entry);
                    entry = next[entry];
                } else {
                    flip(&mut linearized, j);
                    back = true;
                }
            }
            if back {
                // Undo the forced steps, then the last choice, and try the
                // next call after it.
                loop {
                    let Some((node, before, forced)) = stack.pop() else {
                        return Searched::None;
                    };
                    let j = op_of[node];
                    flip(&mut linearized, j);
                    state = before;
                    if partner[node] != NIL {
                        relink(&mut next, &mut prev, partner[node]);
                    }
                    relink(&mut next, &mut prev, node);
                    if ops[j].1 {
                        remaining += 1;
                    }
                    if !forced {
                        entry = next[node];
                        break;
                    }
                }
            }
        }
    }
}

fn describe(i: usize, op: &Op, limit: u32) -> String {
    let reply = match (op.kind, op.outcome) {
        (Kind::Checkout, Outcome::Granted) => "granted",
        (Kind::Checkout, Outcome::Denied) => "denied (all in use)",
        (Kind::Checkin, Outcome::Released) => "checked in",
        (Kind::Checkin, Outcome::NotHeld) => "not held",
        (Kind::Expiry, _) => "expired",
        _ => "answered",
    };
    let what = match op.kind {
        Kind::Checkout => "checkout",
        Kind::Checkin => "check-in",
        Kind::Expiry => "expiry",
    };
    format!(
        "op {i} (client {}: {what} of {}, sent at {}, {reply} at {}): no order of the operations \
         answered by then keeps at most {limit} seats out and agrees with every reply",
        op.client, op.handle, op.invoked, op.responded
    )
}
