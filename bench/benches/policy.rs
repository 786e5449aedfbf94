//! Policy cost: checkout + check-in with a realistic options file (hundreds
//! of rules) against the same license without one, in the same run.
//!
//! `cargo bench -p tally-bench --bench policy`
//!
//! - `none`: no options file.
//! - `rules_elsewhere`: the options file is loaded, but no rule names the
//!   feature checked out (one `None` test per checkout).
//! - `include_exclude`: the feature has INCLUDE (groups) and EXCLUDE
//!   (user, host group) rules: the requester's names are interned (hash
//!   lookups) and the pool's entry for them read.
//! - `include_exclude_max_reserve`: the feature also has MAX (user and
//!   group) and RESERVE rules that apply to the requester: on top, two MAX
//!   counters, the general counter and the charge record, each taken at
//!   checkout and given back at check-in.

#![forbid(unsafe_code)]
// criterion_group! defines an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tally_core::engine::{Engine, EngineConfig, Request};
use tally_core::license::parse_str;
use tally_core::options;

const NOW: u64 = 1_700_000_000_000;
const FEATURES: usize = 50;
const GROUPS: usize = 20;
const USERS_PER_GROUP: usize = 20;
/// Licenses per feature: enough that no checkout is denied (52 features:
/// about the 100 000 licenses of the engine bench in all).
const LICENSES: u32 = 2_000;
const HANDLES: usize = 1024;

fn license() -> String {
    let mut s = String::from("VENDOR CITRIX\n");
    for f in 0..FEATURES {
        let _ = writeln!(s, "FEATURE f{f} CITRIX 1.0 permanent {LICENSES}");
    }
    // A feature no rule names, and one with access rules only.
    let _ = writeln!(s, "FEATURE free CITRIX 1.0 permanent {LICENSES}");
    let _ = writeln!(s, "FEATURE access CITRIX 1.0 permanent {LICENSES}");
    s
}

/// About 300 rules over 50 features, 20 groups of 20 users, 5 host groups.
fn options_text() -> String {
    let mut s = String::new();
    for g in 0..GROUPS {
        let members: Vec<String> = (0..USERS_PER_GROUP).map(|u| format!("u{g}_{u}")).collect();
        let _ = writeln!(s, "GROUP g{g} {}", members.join(" "));
    }
    for h in 0..5 {
        let _ = writeln!(s, "HOST_GROUP farm{h} node{h}a node{h}b node{h}c");
    }
    for f in 0..FEATURES {
        let _ = writeln!(s, "INCLUDE f{f} GROUP g{}", f % GROUPS);
        let _ = writeln!(s, "INCLUDE f{f} GROUP g{}", (f + 1) % GROUPS);
        let _ = writeln!(s, "EXCLUDE f{f} USER banned{f}");
        let _ = writeln!(s, "EXCLUDE f{f} HOST_GROUP farm{}", f % 5);
        let _ = writeln!(s, "MAX 50000 f{f} GROUP g{}", f % GROUPS);
        let _ = writeln!(s, "MAX 2000 f{f} USER u{}_0", f % GROUPS);
        let _ = writeln!(s, "RESERVE 10 f{f} GROUP g{}", (f + 2) % GROUPS);
    }
    s.push_str("INCLUDE access GROUP g0\nINCLUDE access GROUP g1\nEXCLUDE access USER banned0\n");
    s.push_str("EXCLUDE access HOST_GROUP farm0\n");
    s.push_str("TIMEOUTALL 3600\nNOLOG QUEUED\n");
    s
}

fn bench(c: &mut Criterion) {
    let lic = parse_str("bench.lic", &license());
    assert!(lic.diagnostics.is_empty());
    let opts = options::parse_str("bench.opt", &options_text());
    assert!(opts.diagnostics.is_empty(), "{:?}", opts.diagnostics);
    let rules = opts.rules.len();
    let plain = Engine::new(&lic, EngineConfig::default());
    let policed = Engine::with_options(&lic, &opts, EngineConfig::default());
    assert!(policed.policy_warnings().is_empty());
    let handles: Vec<String> = (0..HANDLES).map(|i| format!("{i:08x}")).collect();

    let mut g = c.benchmark_group(format!("policy_checkout_checkin/{rules}_rules"));
    g.throughput(Throughput::Elements(1));
    let cases: [(&str, &Engine, &str); 4] = [
        ("none", &plain, "f0"),
        ("rules_elsewhere", &policed, "free"),
        ("include_exclude", &policed, "access"),
        ("include_exclude_max_reserve", &policed, "f0"),
    ];
    for (name, engine, feature) in cases {
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                let h = &handles[i % HANDLES];
                i += 1;
                // u0_0: in g0 (INCLUDE, MAX group), with a MAX of its own.
                let req = Request::new(feature, "u0_0", "ws17", h);
                assert!(engine.checkout(black_box(&req), NOW).is_ok());
                assert!(engine.checkin(feature, "u0_0", "ws17", "", h).is_ok());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
