use super::*;
use crate::picture::sample;

/// The last contact: 2026-04-22 09:08:00 UTC.
const CONTACT: Millis = 1_776_848_880_000;

fn pools() -> Vec<PoolTerms> {
    crate::cache::Cache::from_picture(&sample(), &Default::default(), CONTACT).pools
}

fn ask(feature: &str) -> Ask<'_> {
    Ask {
        feature,
        version: None,
        count: 1,
    }
}

fn hours(h: u64) -> Millis {
    CONTACT + h * MS_PER_HOUR
}

#[test]
fn product_grace_ends_exactly_720_hours_after_the_last_contact() {
    let pools = pools();
    let held = vec![0; pools.len()];
    let end = hours(720);
    assert_eq!(
        decide(&pools, &held, CONTACT, end - 1, &ask("MPM_ADV_RC")),
        Decision::Admit {
            pool: 3,
            grace_ends_ms: end
        }
    );
    let refused = decide(&pools, &held, CONTACT, end, &ask("MPM_ADV_RC"));
    assert_eq!(
        refused,
        Decision::Refuse(Refusal::GraceEnded {
            feature: "MPM_ADV_RC".to_string(),
            ended_ms: end,
            hours: 720
        })
    );
    let Decision::Refuse(r) = refused else {
        unreachable!()
    };
    assert_eq!(r.code(), "GRACE_ENDED");
    assert_eq!(
        r.to_string(),
        "offline grace of MPM_ADV_RC ended at 2026-05-22T09:08:00Z (720 h after the last \
         contact with the license server)"
    );
    assert!(matches!(
        decide(&pools, &held, CONTACT, end + 1, &ask("MPM_ADV_RC")),
        Decision::Refuse(Refusal::GraceEnded { .. })
    ));
}

#[test]
fn startup_grace_ends_exactly_96_hours_after_the_last_contact() {
    let pools = pools();
    let held = vec![0; pools.len()];
    let end = hours(96);
    assert!(matches!(
        decide(&pools, &held, CONTACT, end - 1, &ask("CITRIX")),
        Decision::Admit { pool: 0, grace_ends_ms } if grace_ends_ms == end
    ));
    assert_eq!(
        decide(&pools, &held, CONTACT, end, &ask("CITRIX")),
        Decision::Refuse(Refusal::GraceEnded {
            feature: "CITRIX".to_string(),
            ended_ms: end,
            hours: 96
        })
    );
    // The product pools are still in grace then.
    assert!(matches!(
        decide(&pools, &held, CONTACT, end, &ask("MPM_ADV_RC")),
        Decision::Admit { .. }
    ));
}

#[test]
fn default_grace_depends_on_the_license_type() {
    let mut p = pools()[0].clone();
    p.gp_hours = None;
    assert_eq!(grace_hours(&p), STARTUP_GRACE_HOURS);
    p.lt = Some("Retail".to_string());
    assert_eq!(grace_hours(&p), DEFAULT_GRACE_HOURS);
    p.lt = None;
    assert_eq!(grace_hours(&p), DEFAULT_GRACE_HOURS);
    p.gp_hours = Some(12);
    assert_eq!(grace_hours(&p), 12);
}

#[test]
fn a_pool_admits_up_to_its_count_then_the_next_pool_takes_over() {
    let pools = pools();
    let mut held = vec![0; pools.len()];
    // MPM_ADV_RC: 2 licenses.
    held[3] = 1;
    let two = Ask {
        count: 2,
        ..ask("MPM_ADV_RC")
    };
    assert_eq!(
        decide(&pools, &held, CONTACT, hours(1), &two),
        Decision::Refuse(Refusal::PoolFull {
            feature: "MPM_ADV_RC".to_string(),
            total: 2,
            held: 1,
            asked: 2
        })
    );
    assert!(matches!(
        decide(&pools, &held, CONTACT, hours(1), &ask("MPM_ADV_RC")),
        Decision::Admit { pool: 3, .. }
    ));
    // MPS_ENT_CCU: its first pool (1000) expired on 2026-07-26, the second
    // (50) is permanent: it admits; when full, the refusal says full.
    let late = 1_785_024_000_000;
    let contact = late - MS_PER_HOUR;
    assert!(matches!(
        decide(&pools, &held, contact, late, &ask("MPS_ENT_CCU")),
        Decision::Admit { pool: 2, .. }
    ));
    held[2] = 50;
    assert!(matches!(
        decide(&pools, &held, contact, late, &ask("MPS_ENT_CCU")),
        Decision::Refuse(Refusal::PoolFull { total: 50, .. })
    ));
    held[2] = 0;
    held[1] = 1000;
    assert!(matches!(
        decide(&pools, &held, CONTACT, hours(1), &ask("MPS_ENT_CCU")),
        Decision::Admit { pool: 2, .. }
    ));
}

#[test]
fn uncounted_expired_unknown_and_version() {
    let pools = pools();
    let held = vec![u32::MAX; pools.len()];
    assert!(matches!(
        decide(&pools, &held, CONTACT, hours(1), &ask("FREEBIE")),
        Decision::Admit { pool: 4, .. }
    ));
    assert_eq!(
        decide(&pools, &held, CONTACT, hours(1), &ask("NOPE")),
        Decision::Refuse(Refusal::NoSuchFeature {
            feature: "NOPE".to_string()
        })
    );
    let v2 = Ask {
        version: Some("2.0"),
        ..ask("MPM_ADV_RC")
    };
    assert!(matches!(
        decide(&pools, &held, CONTACT, hours(1), &v2),
        Decision::Refuse(Refusal::Version { .. })
    ));
    let mut only_first = pools.clone();
    only_first.truncate(2);
    let held = vec![0; 2];
    let expired = 1_785_024_000_000;
    assert_eq!(
        decide(
            &only_first,
            &held,
            expired - 1,
            expired,
            &ask("MPS_ENT_CCU")
        ),
        Decision::Refuse(Refusal::Expired {
            feature: "MPS_ENT_CCU".to_string(),
            expired_ms: expired
        })
    );
    // Starts 2026-01-01.
    let before = 1_767_225_599_999;
    assert!(matches!(
        decide(&only_first, &held, before, before, &ask("MPS_ENT_CCU")),
        Decision::Refuse(Refusal::NotStarted { .. })
    ));
    assert!(matches!(
        decide(&only_first, &held, before, before + 1, &ask("MPS_ENT_CCU")),
        Decision::Admit { .. }
    ));
}

#[test]
fn refusal_names_the_latest_grace_end() {
    let mut pools = pools();
    pools[1].gp_hours = Some(10);
    pools[2].gp_hours = Some(20);
    let held = vec![0; pools.len()];
    assert_eq!(
        decide(&pools, &held, CONTACT, hours(30), &ask("MPS_ENT_CCU")),
        Decision::Refuse(Refusal::GraceEnded {
            feature: "MPS_ENT_CCU".to_string(),
            ended_ms: hours(20),
            hours: 20
        })
    );
}

#[test]
fn a_clock_moved_backwards_does_not_extend_grace() {
    let clock = tally_core::clock::ManualClock::new(hours(720));
    let mut high = HighWater::new(CONTACT);
    use tally_core::clock::Clock;
    let pools = pools();
    let held = vec![0; pools.len()];
    let now = high.observe(clock.now_ms());
    assert!(matches!(
        decide(&pools, &held, CONTACT, now, &ask("MPM_ADV_RC")),
        Decision::Refuse(Refusal::GraceEnded { .. })
    ));
    clock.set(hours(1));
    let now = high.observe(clock.now_ms());
    assert_eq!(now, hours(720));
    assert!(matches!(
        decide(&pools, &held, CONTACT, now, &ask("MPM_ADV_RC")),
        Decision::Refuse(Refusal::GraceEnded { .. })
    ));
}
