//! Memory follows what is held: huge counts build small engines, the table
//! grows with the instances out (and keeps its high-water mark), same-key
//! checkouts racing across a level boundary make one instance, and no
//! count wraps past `u32::MAX`.

use super::tests::{engine, line};
use super::*;
use crate::license::parse_str;
use crate::options;

const NOW: Millis = 1_700_000_000_000;

/// What "a few MB" means for an engine that holds nothing yet.
const SMALL_TABLE_BYTES: usize = 4 << 20;

fn req<'a>(handle: &'a str) -> Request<'a> {
    Request::new("F", "user", "host", handle)
}

fn pool(e: &Engine) -> PoolSnapshot {
    e.snapshot(NOW).features[0].pools[0].clone()
}

/// Before: the table was sized at twice count + overdraft, so each of these
/// asked for hundreds of GB up front and aborted the process.
#[test]
fn a_pool_of_u32_max_seats_starts_in_a_few_mb() {
    let files = [
        "INCREMENT F V 1.0 permanent 4294967295\n",
        "INCREMENT F V 1.0 permanent 5 OVERDRAFT=4294967295\n",
        "INCREMENT F V 1.0 permanent 4294967295 VENDOR_STRING=\";ODP=4294967295\"\n",
        "INCREMENT F V 1.0 permanent 4294967295\nINCREMENT F V 2.0 permanent 4294967295\n",
    ];
    for text in files {
        let set = parse_str("huge.lic", text);
        assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
        let opts = options::parse_str("o.opt", "MAX 3 F USER user\n");
        for e in [
            Engine::new(&set, EngineConfig::default()),
            Engine::with_options(&set, &opts, EngineConfig::default()),
        ] {
            assert!(
                e.table_bytes() < SMALL_TABLE_BYTES,
                "{text:?}: {} bytes",
                e.table_bytes()
            );
            assert_eq!(e.table_slots(), 2 * table::INITIAL_INSTANCES);
            let g = e.checkout(&req("a"), NOW).expect("granted");
            assert_eq!(g.kind, GrantKind::New);
            assert_eq!(pool(&e).in_use, 1);
        }
    }
}

#[test]
fn the_table_grows_with_what_is_held_and_keeps_its_high_water_mark() {
    const HELD: usize = 30_000; // several times what level 0 holds
    let e = engine(vec![line("F", "1.0", Some(u32::MAX))]);
    let start = (e.table_slots(), e.table_bytes());
    let handles: Vec<String> = (0..HELD).map(|i| format!("g{i}")).collect();
    let ids: Vec<InstanceId> = handles
        .iter()
        .map(|h| e.checkout(&req(h), NOW).expect("granted").id.unwrap())
        .collect();
    let grown = (e.table_slots(), e.table_bytes());
    assert!(
        grown.0 > HELD && grown.0 > start.0,
        "{start:?} -> {grown:?}"
    );
    assert!(grown.0 <= 5 * HELD, "{grown:?} slots for {HELD}");
    // Bytes per slot as before: levels are the same buckets.
    assert!(
        grown.1 / grown.0 <= start.1 / start.0 + 1,
        "{start:?} -> {grown:?}"
    );
    let p = pool(&e);
    assert_eq!((p.in_use as usize, p.holders.len()), (HELD, HELD));
    // Every instance is found by key and by id, renewed, then checked in.
    for (h, id) in handles.iter().zip(&ids) {
        assert_eq!(
            e.find(
                e.feature_id("F").unwrap(),
                &Names::new("F", "user", "host", h)
            ),
            Some(*id)
        );
        let again = e.checkout(&req(h), NOW + 1).unwrap();
        assert_eq!((again.kind, again.id), (GrantKind::Renewed, Some(*id)));
    }
    for (h, id) in handles.iter().zip(&ids) {
        let r = e.checkin("F", "user", "host", "", h).unwrap();
        assert_eq!(r.id, *id);
        assert!(!e.is_live(*id));
    }
    let p = pool(&e);
    assert_eq!((p.in_use, p.holders.len()), (0, 0));
    // A high-water mark: nothing is freed, and the same load again fits
    // in what is there.
    assert_eq!((e.table_slots(), e.table_bytes()), grown);
    for h in &handles {
        e.checkout(&req(h), NOW).expect("granted");
    }
    assert_eq!(e.table_slots(), grown.0, "no growth for a load it held");
}

/// Threads check out the same handles in the same order, so most
/// checkouts race a twin, while the table publishes two new levels under
/// them: still one instance, and one license, per handle.
#[test]
fn one_handle_racing_across_level_boundaries_takes_one_license() {
    const HANDLES: usize = 30_000;
    const THREADS: usize = 4;
    let e = engine(vec![line("F", "1.0", Some(u32::MAX))]);
    let handles: Vec<String> = (0..HANDLES).map(|i| format!("r{i}")).collect();
    let per_thread: Vec<Vec<InstanceId>> = std::thread::scope(|s| {
        let joins: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    handles
                        .iter()
                        .map(|h| e.checkout(&req(h), NOW).expect("granted").id.unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        joins.into_iter().map(|j| j.join().unwrap()).collect()
    });
    assert!(
        e.table_slots() > 3 * 2 * table::INITIAL_INSTANCES,
        "two levels published: {}",
        e.table_slots()
    );
    for i in 0..HANDLES {
        let first = per_thread[0][i];
        assert!(
            per_thread.iter().all(|ids| ids[i] == first),
            "handle {i}: {:?}",
            per_thread.iter().map(|ids| ids[i]).collect::<Vec<_>>()
        );
    }
    let p = pool(&e);
    assert_eq!((p.in_use as usize, p.holders.len()), (HANDLES, HANDLES));
}

fn restored(handle: &str, count: u32) -> Restore<'_> {
    Restore {
        names: Names {
            feature: "F",
            user: "user",
            host: "host",
            display: "",
            handle,
        },
        count,
        version: 0,
        since_ms: NOW,
        linger_ms: 0,
        deadline_ms: None,
        identity: None,
    }
}

/// A REREAD that folds two full pools of `u32::MAX` licenses into one
/// forces both pools' instances into it. Before, the 32-bit counter wrapped
/// to `u32::MAX - 1` and the next checkout was granted: over the limit.
#[test]
fn forced_restores_past_u32_max_never_wrap_the_pool_count() {
    let e = engine(vec![line("F", "1.0", Some(u32::MAX))]);
    e.restore(&restored("a", u32::MAX)).unwrap();
    e.restore(&restored("b", u32::MAX)).unwrap();
    assert_eq!(pool(&e).in_use, u32::MAX, "shown saturated");
    assert_eq!(
        e.checkout(&req("c"), NOW).unwrap_err().reason,
        Reason::AllInUse
    );
    e.checkin("F", "user", "host", "", "a").unwrap();
    assert_eq!(
        e.checkout(&req("c"), NOW).unwrap_err().reason,
        Reason::AllInUse,
        "still at the limit"
    );
    e.checkin("F", "user", "host", "", "b").unwrap();
    assert_eq!(pool(&e).in_use, 0);
    assert!(e.checkout(&req("c"), NOW).is_ok());
}

/// The same for a MAX counter, which spans the feature's pools: before, it
/// wrapped and let the user past MAX in the second pool.
#[test]
fn forced_restores_past_u32_max_never_wrap_a_max_counter() {
    let set = parse_str(
        "t.lic",
        "INCREMENT F V 1.0 permanent 4294967295\nINCREMENT F V 1.0 permanent 10\n",
    );
    let opts = options::parse_str("o.opt", "MAX 4294967295 F USER user\n");
    assert!(opts.diagnostics.is_empty(), "{:?}", opts.diagnostics);
    let e = Engine::with_options(&set, &opts, EngineConfig::default());
    e.restore(&restored("a", u32::MAX)).unwrap();
    e.restore(&restored("b", u32::MAX)).unwrap();
    assert_eq!(
        e.checkout(&req("c"), NOW).unwrap_err().reason,
        Reason::OverMax
    );
    e.checkin("F", "user", "host", "", "a").unwrap();
    assert_eq!(
        e.checkout(&req("c"), NOW).unwrap_err().reason,
        Reason::OverMax
    );
    e.checkin("F", "user", "host", "", "b").unwrap();
    assert!(e.checkout(&req("c"), NOW).is_ok());
}

/// Recovery builds the engine with [`EngineConfig::restoring`] for what the
/// journal holds: its first level then takes every restored instance, and
/// no level is published while they come back (each would be another
/// allocation, and another level for every lookup to search). The sizes
/// include the fullest first level that sizing makes (49,152 instances:
/// 65,536 slots, three quarters full) and a few seeds.
#[test]
fn an_engine_sized_for_its_restores_restores_them_in_one_level() {
    let set = parse_str("t.lic", "INCREMENT F V 1.0 permanent 4294967295\n");
    for n in [9_000, 49_152, 49_153, 100_000] {
        for seed in [(1, 10), (0x5eed, 0xfeed), (7, 7)] {
            let config = EngineConfig {
                seed,
                ..EngineConfig::default()
            }
            .restoring(n);
            let e = Engine::new(&set, config);
            let slots = e.table_slots();
            assert!(slots <= 3 * n, "{n}: {slots} slots");
            for i in 0..n {
                let h = format!("r{i}");
                e.restore_within_count(&restored(&h, 1))
                    .unwrap_or_else(|why| panic!("{n}, {seed:?}: restore {i}: {why:?}"));
            }
            assert_eq!(e.table_slots(), slots, "{n}, {seed:?}: the table grew");
            assert_eq!(pool(&e).in_use as usize, n);
        }
    }
    // Unsized, the same restores publish levels.
    let e = Engine::new(&set, EngineConfig::default());
    let slots = e.table_slots();
    for i in 0..9_000 {
        e.restore_within_count(&restored(&format!("r{i}"), 1))
            .unwrap();
    }
    assert!(e.table_slots() > slots);
}
