//! Black-box tests of PACKAGE, UPGRADE and SUPERSEDE lines: the real
//! `tallyd` on a free loopback port (docs/license-file.md).

mod common;

use common::Tallyd;

/// The pools of `feature` in a STATUS reply.
fn pools(status: &serde_json::Value, feature: &str) -> Vec<serde_json::Value> {
    status["features"]
        .as_array()
        .expect("features")
        .iter()
        .filter(|f| f["name"] == feature)
        .cloned()
        .collect()
}

/// Licenses of `feature` in the file (all its pools).
fn total(status: &serde_json::Value, feature: &str) -> u64 {
    pools(status, feature)
        .iter()
        .map(|p| p["total"].as_u64().expect("counted"))
        .sum()
}

const DENIED: &str = "ALL_IN_USE -4 Licensed number of users already reached.";

const SUITE: &str = "\
SERVER this_host ANY 27000
VENDOR xilinxd
PACKAGE Design_Suite xilinxd 2025.1 COMPONENTS=\"Synth Sim\" OPTIONS=SUITE
INCREMENT Design_Suite xilinxd 2025.1 permanent 2
";

#[test]
fn a_suite_denies_a_third_user_although_the_component_has_licenses_left() {
    let t = Tallyd::start(SUITE, &[]);
    let mut c = t.connect();
    assert_eq!(c.req("CHECKOUT Synth u1 h1 a"), "OK Synth a 0");
    assert_eq!(c.req("CHECKOUT Sim u2 h2 b"), "OK Sim b 0");
    // u1 again, on another component: shares u1's suite license.
    assert_eq!(c.req("CHECKOUT Sim u1 h1 c"), "OK Sim c 0");
    assert_eq!(
        c.req("CHECKOUT Synth u3 h3 d"),
        format!("DENIED Synth d {DENIED}")
    );
    let s = c.status();
    let synth = &pools(&s, "Synth")[0];
    assert_eq!(
        (synth["total"].as_u64(), synth["in_use"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(synth["package"], "Design_Suite");
    let suite = &pools(&s, "Design_Suite")[0];
    assert_eq!(suite["in_use"], 2, "one suite license per user");
    assert_eq!(suite["suite_in_use"], 2);
    assert!(suite.get("package").is_none());
    // u2's last component goes back, and its suite license with it.
    assert_eq!(c.req("CHECKIN Sim b"), "OK Sim b");
    assert_eq!(c.in_use("Design_Suite"), 1);
    assert_eq!(c.req("CHECKOUT Synth u3 h3 d"), "OK Synth d 0");
    assert_eq!(c.in_use("Design_Suite"), 2);
    // u1 still holds Sim: checking Synth in keeps u1's suite license.
    assert_eq!(c.req("CHECKIN Synth a"), "OK Synth a");
    assert_eq!(c.in_use("Design_Suite"), 2);
    assert_eq!(c.req("CHECKIN Sim c"), "OK Sim c");
    assert_eq!(c.in_use("Design_Suite"), 1);
}

#[test]
fn a_suite_keeps_its_count_through_a_reread() {
    let t = Tallyd::start(SUITE, &[]);
    let mut c = t.connect();
    assert_eq!(c.req("CHECKOUT Synth u1 h1 a"), "OK Synth a 0");
    assert_eq!(c.req("CHECKOUT Sim u2 h2 b"), "OK Sim b 0");
    assert_eq!(c.req("REREAD"), "OK REREAD 3 0");
    assert_eq!(c.in_use("Design_Suite"), 2);
    assert_eq!(
        c.req("CHECKOUT Sim u3 h3 d"),
        format!("DENIED Sim d {DENIED}")
    );
    assert_eq!(c.req("CHECKIN Synth a"), "OK Synth a");
    assert_eq!(c.req("CHECKOUT Sim u3 h3 d"), "OK Sim d 0");
}

#[test]
fn a_non_suite_package_serves_its_components_instead_of_itself() {
    let license = "\
SERVER this_host ANY 27000
VENDOR actlmgrd
PACKAGE LIBERO actlmgrd 2025.06 COMPONENTS=\"SYNPLIFY:2025.06:2 DESIGNER\"
INCREMENT LIBERO actlmgrd 2025.06 permanent 1
INCREMENT LIBERO actlmgrd 2025.06 permanent 2
";
    let t = Tallyd::start(license, &[]);
    let mut c = t.connect();
    let s = c.status();
    assert_eq!(total(&s, "SYNPLIFY"), 6, "2 x (1 + 2)");
    assert_eq!(total(&s, "DESIGNER"), 3);
    assert!(pools(&s, "LIBERO").is_empty());
    assert!(c
        .req("CHECKOUT LIBERO u h x")
        .starts_with("DENIED LIBERO x NO_SUCH_FEATURE -5 "));
    for i in 0..3 {
        assert_eq!(
            c.req(&format!("CHECKOUT DESIGNER u{i} h d{i}")),
            format!("OK DESIGNER d{i} 0")
        );
    }
    assert_eq!(
        c.req("CHECKOUT DESIGNER u9 h d9"),
        format!("DENIED DESIGNER d9 {DENIED}")
    );
    assert_eq!(c.req("CHECKOUT SYNPLIFY u9 h s9"), "OK SYNPLIFY s9 0");
}

#[test]
fn an_upgrade_moves_licenses_to_the_new_version() {
    let license = "\
SERVER this_host ANY 27000
VENDOR sampled
INCREMENT f1 sampled 1.000 permanent 5
UPGRADE f1 sampled 1.000 2.000 permanent 2
";
    let t = Tallyd::start(license, &[]);
    let mut c = t.connect();
    let s = c.status();
    let p = pools(&s, "f1");
    let shape: Vec<_> = p
        .iter()
        .map(|p| (p["version"].as_str(), p["total"].as_u64()))
        .collect();
    assert_eq!(shape, [(Some("1.000"), Some(3)), (Some("2.000"), Some(2))]);
    assert_eq!(c.req("CHECKOUT f1 u1 h new1 version=2.0"), "OK f1 new1 0");
    assert_eq!(c.req("CHECKOUT f1 u2 h new2 version=2.0"), "OK f1 new2 0");
    assert_eq!(
        c.req("CHECKOUT f1 u3 h new3 version=2.0"),
        format!("DENIED f1 new3 {DENIED}")
    );
    for i in 0..3 {
        assert_eq!(
            c.req(&format!("CHECKOUT f1 o{i} h old{i} version=1.0")),
            format!("OK f1 old{i} 0")
        );
    }
    assert_eq!(
        c.req("CHECKOUT f1 o9 h old9"),
        format!("DENIED f1 old9 {DENIED}")
    );
    assert_eq!(
        c.in_use("f1"),
        5,
        "five licenses in all, none counted twice"
    );
}

const RENEWAL: &str = "\
SERVER this_host ANY 27000
VENDOR sampled
INCREMENT f sampled 1.0 permanent 10 ISSUED=1-jan-2024
INCREMENT f sampled 1.0 permanent 3 ISSUED=1-jan-2025
";

#[test]
fn a_supersede_line_replaces_the_earlier_one() {
    let license = RENEWAL.replace(" 3 ISSUED", " 3 SUPERSEDE ISSUED");
    let t = Tallyd::start(&license, &[]);
    let mut c = t.connect();
    assert_eq!(total(&c.status(), "f"), 3, "the old line's 10 are gone");
    for i in 0..3 {
        assert_eq!(
            c.req(&format!("CHECKOUT f u{i} h x{i}")),
            format!("OK f x{i} 0")
        );
    }
    assert_eq!(c.req("CHECKOUT f u h x9"), format!("DENIED f x9 {DENIED}"));
}

#[test]
fn a_reread_applies_a_new_supersede() {
    let t = Tallyd::start(RENEWAL, &[]);
    let mut c = t.connect();
    assert_eq!(
        total(&c.status(), "f"),
        13,
        "without SUPERSEDE the lines add up"
    );
    for i in 0..4 {
        assert_eq!(
            c.req(&format!("CHECKOUT f u{i} h x{i}")),
            format!("OK f x{i} 0")
        );
    }
    let renewed = RENEWAL.replace(" 3 ISSUED", " 3 SUPERSEDE ISSUED");
    std::fs::write(t.license_path(), renewed).expect("rewrite license");
    assert_eq!(c.req("REREAD"), "OK REREAD 1 0");
    let s = c.status();
    assert_eq!(total(&s, "f"), 3);
    assert_eq!(c.in_use("f"), 4, "what is held stays held, and drains");
    assert_eq!(c.req("CHECKOUT f u h x9"), format!("DENIED f x9 {DENIED}"));
    assert_eq!(c.req("CHECKIN f x0"), "OK f x0");
    assert_eq!(c.req("CHECKIN f x1"), "OK f x1");
    assert_eq!(c.req("CHECKOUT f u h x9"), "OK f x9 0");
}

const PACKAGE: &str = "\
SERVER this_host ANY 27000
VENDOR microchip
PACKAGE Libero microchip 1.0 COMPONENTS=\"Synplify ModelSim:1.0:2\"
INCREMENT Libero microchip 1.0 permanent 2
";

const RESERVED: &str = "RESERVED -4 Licensed number of users already reached \
                        (the free licenses are reserved for others). \
                        (RESERVE on line 1 of the options file)";

#[test]
fn reserve_on_a_package_name_reserves_licenses_of_each_component() {
    let dir = common::Scratch::new("pkgopts");
    let opts = dir.path("t.opt");
    std::fs::write(&opts, "RESERVE 1 Libero USER ann\n").expect("write options");
    let arg = opts.display().to_string();
    let t = Tallyd::start(PACKAGE, &["--options", arg.as_str()]);
    let mut c = t.connect();
    // Synplify: 2 licenses, 1 for ann; ModelSim: 4, 1 for ann.
    assert_eq!(c.req("CHECKOUT Synplify bob h1 a"), "OK Synplify a 0");
    assert_eq!(
        c.req("CHECKOUT Synplify cy h2 b"),
        format!("DENIED Synplify b {RESERVED}")
    );
    for (i, h) in ["c", "d", "e"].iter().enumerate() {
        assert_eq!(
            c.req(&format!("CHECKOUT ModelSim u{i} h{i} {h}")),
            format!("OK ModelSim {h} 0")
        );
    }
    assert_eq!(
        c.req("CHECKOUT ModelSim cy h2 f"),
        format!("DENIED ModelSim f {RESERVED}")
    );
    assert_eq!(c.req("CHECKOUT Synplify ann h9 g"), "OK Synplify g 0");
    assert_eq!(c.req("CHECKOUT ModelSim ann h9 h"), "OK ModelSim h 0");
    assert_eq!(c.in_use("Synplify"), 2);
    assert_eq!(c.in_use("ModelSim"), 4);
}

const SUITE_RESERVED: &str = "\
SERVER this_host ANY 27000
VENDOR xilinxd
PACKAGE Kit xilinxd 1.0 COMPONENTS=\"Edit View\" OPTIONS=SUITE_RESERVED
INCREMENT Kit xilinxd 1.0 permanent 2
";

#[test]
fn a_suite_reserved_package_keeps_the_other_components_for_their_holder() {
    let t = Tallyd::start(SUITE_RESERVED, &[]);
    let mut c = t.connect();
    // A takes Edit: one View is kept for A.
    assert_eq!(c.req("CHECKOUT Edit A hA a1"), "OK Edit a1 0");
    // B takes the other View (and keeps an Edit).
    assert_eq!(c.req("CHECKOUT View B hB b1"), "OK View b1 0");
    // B's second View: the last one is A's.
    assert_eq!(
        c.req("CHECKOUT View B hB b2"),
        format!("DENIED View b2 {DENIED}")
    );
    // A's own View takes it.
    assert_eq!(c.req("CHECKOUT View A hA a2"), "OK View a2 0");
    assert_eq!(c.req("CHECKIN Edit a1"), "OK Edit a1");
    assert_eq!(c.req("CHECKIN View a2"), "OK View a2");
    // A has checked everything in: nothing is kept for A any more.
    assert_eq!(c.req("CHECKOUT View B hB b2"), "OK View b2 0");
    assert_eq!(c.in_use("Kit"), 1, "B's suite license only");
}
