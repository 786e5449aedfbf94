//! How long a check of a long history takes: a sequential run of `N`
//! operations of 8 clients (one handle each) on 3 seats, instants 100
//! apart, each request sent up to `W` before its instant and answered up
//! to `W` after (so about 2W/100 operations overlap), `U` per cent of
//! replies lost; with `I` = 1, `limit + 1` fresh handles granted halfway
//! through and never checked in (an over-grant); with `S` = 1, each unknown
//! result settled by `W` after its instant ([`Op::settled_by`]).
//!
//! `cargo run --release -p tally-check --example long -- [N] [W] [U] [I] [S]`

use std::time::Instant;

use tally_check::{Checker, History, Kind, Op, Outcome, Verdict};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(5000) as usize;
    let w = args.get(1).copied().unwrap_or(200);
    let unknown = args.get(2).copied().unwrap_or(2);
    let settle = args.get(4) == Some(&1);
    let (limit, clients) = (3usize, 8u64);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    let mut held: Vec<u64> = Vec::new();
    let mut last_resp = vec![0u64; clients as usize];
    let mut ops = Vec::new();
    for i in 0..n {
        let t = 1000 + 100 * i as u64;
        let c = rand(clients);
        let has = held.contains(&c);
        let (kind, mut outcome) = if rand(2) == 0 {
            if has || held.len() < limit {
                if !has {
                    held.push(c);
                }
                (Kind::Checkout, Outcome::Granted)
            } else {
                (Kind::Checkout, Outcome::Denied)
            }
        } else if has {
            held.retain(|&h| h != c);
            (Kind::Checkin, Outcome::Released)
        } else {
            (Kind::Checkin, Outcome::NotHeld)
        };
        if rand(100) < unknown {
            outcome = Outcome::Unknown;
        }
        // A client's requests one after the other.
        let invoked = t
            .saturating_sub(rand(w + 1))
            .max(last_resp[c as usize] + 1)
            .min(t);
        let responded = t + rand(w + 1).min(99);
        last_resp[c as usize] = responded;
        let mut op = Op::new(
            c as u32,
            kind,
            &format!("h{c}"),
            invoked,
            responded,
            outcome,
        );
        if outcome == Outcome::Unknown && settle {
            op = op.settled_by(t + w);
        }
        ops.push(op);
    }
    if args.get(3) == Some(&1) {
        // An over-grant in the middle: two more handles granted at one
        // instant while the seats are full, never checked in.
        let mid = ops.len() / 2;
        let t = ops[mid].responded + 1;
        for j in 0..=limit {
            ops.push(Op::checkout(
                100 + j as u32,
                &format!("x{j}"),
                t,
                t + 1,
                Outcome::Granted,
            ));
        }
    }
    let h = History::from_ops(limit as u32, ops).unwrap();
    let started = Instant::now();
    let v = Checker::new().check(&h);
    let took = started.elapsed();
    let what = match &v {
        Verdict::Linearizable { order } => format!("linearizable ({} took effect)", order.len()),
        Verdict::Violation(v) => format!("violation: {v}"),
        Verdict::GaveUp { steps } => format!("gave up after {steps} steps"),
    };
    println!(
        "{n} ops, W={w}, {unknown}% unknown: {what} in {:.1} ms",
        took.as_secs_f64() * 1e3
    );
}
