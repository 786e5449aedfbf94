use crate::license::{parse_str, LicenseSet, PoolLine};

fn set(text: &str) -> LicenseSet {
    parse_str("t.lic", text)
}

/// (feature, version, count) of every pool, in order.
fn pools(s: &LicenseSet) -> Vec<(String, String, Option<u32>)> {
    s.pools
        .iter()
        .map(|p| (p.feature.clone(), p.version.to_string(), p.count))
        .collect()
}

fn p(f: &str, v: &str, c: u32) -> (String, String, Option<u32>) {
    (f.to_string(), v.to_string(), Some(c))
}

fn named<'a>(s: &'a LicenseSet, f: &str) -> Vec<&'a PoolLine> {
    s.pools.iter().filter(|p| p.feature == f).collect()
}

#[test]
fn the_guides_package_example() {
    let s = set("PACKAGE suite sampled 1.0 SIGN=2CBF44FCB9C1 \\\n  \
         COMPONENTS=\"apple:1.5:2 orange:3.0:4\"\n\
         FEATURE suite sampled 1.0 1-jan-2035 3 SIGN=321E78A17EC1 SN=123\n");
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(pools(&s), [p("apple", "1.5", 6), p("orange", "3.0", 12)]);
    let apple = named(&s, "apple")[0];
    assert_eq!(apple.expiry.flexlm(), "1-jan-2035");
    assert_eq!(apple.line, 3);
    let of = apple.package.as_ref().unwrap();
    assert_eq!(
        (of.package.as_str(), of.suite, of.package_line),
        ("suite", false, 1)
    );
    assert_eq!(s.applied.len(), 1);
    assert_eq!(s.applied[0].keyword, "PACKAGE");
    assert!(
        s.applied[0].summary.contains("apple 1.5 x6 (from line 3)"),
        "{:?}",
        s.applied
    );
}

#[test]
fn a_suite_keeps_its_enabling_line_and_ignores_num_lic() {
    let s = set(
        "PACKAGE suite sampled 1.0 COMPONENTS=\"comp1 comp2:2.0\" OPTIONS=SUITE\n\
         FEATURE suite sampled 1.0 permanent 5 DUP_GROUP=UH OVERDRAFT=1\n",
    );
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(
        pools(&s),
        [
            p("comp1", "1.0", 5),
            p("comp2", "2.0", 5),
            p("suite", "1.0", 5)
        ]
    );
    let c = named(&s, "comp1")[0];
    assert!(c.package.as_ref().unwrap().suite);
    assert_eq!(c.package.as_ref().unwrap().suite_dup.to_string(), "UHD");
    assert_eq!(c.dup_group.to_string(), "UH", "DUP_GROUP inherited");
    assert_eq!(c.overdraft, 1);
    assert!(named(&s, "suite")[0].package.is_none());

    let s = set(
        "PACKAGE s v COMPONENTS=\"a:1.0:3\" OPTIONS=SUITE_RESERVED\n\
         FEATURE s v 1.0 permanent 2 SUITE_DUP_GROUP=U\n",
    );
    assert_eq!(pools(&s), [p("a", "1.0", 2), p("s", "1.0", 2)]);
    assert_eq!(s.warnings.len(), 1, "num_lic with SUITE: {:?}", s.warnings);
    assert!(s.warnings[0].message.contains("num_lic is not allowed"));
    let a = named(&s, "a")[0].package.as_ref().unwrap();
    assert_eq!(a.suite_dup.to_string(), "U");
    assert!(a.suite && a.suite_reserved);
    assert!(
        s.applied
            .iter()
            .any(|x| x.summary == "reserved suite s: a 1.0 x2 (from line 2)"),
        "{:?}",
        s.applied
    );
    assert_eq!(a.package_version.to_string(), "1.0");
    let c = named(
        &set("PACKAGE s v COMPONENTS=c OPTIONS=SUITE
FEATURE s v 1.0 permanent 2
"),
        "c",
    )[0]
    .package
    .clone()
    .unwrap();
    assert!(c.suite && !c.suite_reserved);
}

#[test]
fn several_enabling_increments_add_up_and_inherit_their_own_fields() {
    let s = set("PACKAGE pk v COMPONENTS=\"a b:2.0:2\"\n\
         INCREMENT pk v 1.0 31-dec-2030 2 START=1-jan-2025 VENDOR_STRING=x\n\
         INCREMENT pk v 1.0 31-dec-2031 3 OVERDRAFT=1\n\
         FEATURE a v 1.0 permanent 1\n");
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(
        pools(&s),
        [
            p("a", "1.0", 2),
            p("b", "2.0", 4),
            p("a", "1.0", 3),
            p("b", "2.0", 6),
            p("a", "1.0", 1)
        ]
    );
    assert!(named(&s, "pk").is_empty(), "the enabling lines disappear");
    let b = named(&s, "b");
    assert_eq!(b[0].expiry.flexlm(), "31-dec-2030");
    assert!(b[0].start.is_some());
    assert_eq!(b[0].vendor_string.as_ref().unwrap().raw, "x");
    assert_eq!(b[1].overdraft, 2, "overdraft x num_lic");
}

#[test]
fn the_package_version_picks_the_enabling_line() {
    let s = set("PACKAGE pk v 2.0 COMPONENTS=a\n\
         FEATURE pk v 1.0 permanent 1\n\
         FEATURE pk v 2.00 permanent 4\n");
    assert_eq!(pools(&s), [p("pk", "1.0", 1), p("a", "2.00", 4)]);
}

#[test]
fn package_problems_are_warnings_with_the_line() {
    let s = set("FEATURE x v 1.0 permanent 1\n\
         PACKAGE lonely v COMPONENTS=\"a b\"\n");
    assert_eq!(pools(&s), [p("x", "1.0", 1)]);
    assert_eq!(s.warnings.len(), 1);
    assert_eq!(s.warnings[0].line, 2);
    assert!(s.warnings[0]
        .to_string()
        .starts_with("t.lic:2:1: PACKAGE lonely: no FEATURE"));

    let s = set(
        "PACKAGE pk v COMPONENTS=\"a a:2.0 b:x c:1.0:0 pk\" OPTIONS=SUITE\n\
         FEATURE pk v 1.0 permanent 2\n",
    );
    assert_eq!(pools(&s), [p("a", "1.0", 2), p("pk", "1.0", 2)]);
    let msgs: Vec<_> = s.warnings.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    assert!(msgs[0].contains("\"a:2.0\" is named twice"));
    assert!(msgs[1].contains("bad version"));
    assert!(msgs[2].contains("bad license count"));
    assert!(msgs[3].contains("the suite itself"));
    // Without SUITE a component may take the package's own name.
    let s = set("PACKAGE pk v COMPONENTS=\"pk:2.0 b\"\nFEATURE pk v 1.0 permanent 2\n");
    assert_eq!(pools(&s), [p("pk", "2.0", 2), p("b", "1.0", 2)]);
    assert!(s.warnings.is_empty());

    let s = set("PACKAGE pk v COMPONENTS=\"\"\nFEATURE pk v 1.0 permanent 2\n");
    assert_eq!(pools(&s), [p("pk", "1.0", 2)], "nothing to expand: kept");
    assert!(s.warnings[0].message.contains("no usable COMPONENTS"));

    let s =
        set("PACKAGE pk v COMPONENTS=a\nPACKAGE pk v COMPONENTS=b\nFEATURE pk v 1.0 permanent 2\n");
    assert_eq!(pools(&s), [p("a", "1.0", 2)]);
    assert!(s.warnings[0].message.contains("already defined at line 1"));
}

#[test]
fn a_package_supersedes_an_earlier_one() {
    let s = set("PACKAGE pk v COMPONENTS=a ISSUED=1-jan-2024\n\
         PACKAGE pk v COMPONENTS=b SUPERSEDE ISSUED=1-jan-2025\n\
         FEATURE pk v 1.0 permanent 2\n");
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(pools(&s), [p("b", "1.0", 2)]);
}

#[test]
fn upgrade_moves_licenses_to_the_new_version() {
    // The guide's example: three 1.0 licenses and two 2.0 ones.
    let s = set("INCREMENT f1 sampled 1.000 31-dec-2030 5 SIGN=\"x\"\n\
         UPGRADE f1 sampled 1.000 2.000 31-dec-2030 2 SIGN=\"y\"\n");
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(pools(&s), [p("f1", "1.000", 3), p("f1", "2.000", 2)]);
    assert_eq!(s.pools[1].line, 2);
    assert_eq!(s.pools[1].sign.as_deref(), Some("y"));
    assert_eq!(s.applied[0].keyword, "UPGRADE");

    // More than there are: capped, with a warning; the old line goes.
    let s = set("FEATURE f v 1.0 permanent 3\nUPGRADE f v 1.0 2.0 permanent 5\n");
    assert_eq!(pools(&s), [p("f", "2.0", 3)]);
    assert_eq!(s.warnings.len(), 1);
    assert!(s.warnings[0]
        .message
        .contains("upgrades 5 licenses but line 1 has 3"));
}

#[test]
fn upgrade_takes_the_closest_preceding_line_in_range() {
    let s = set("FEATURE f v 1.0 permanent 4\n\
         INCREMENT f v 1.5 permanent 4\n\
         INCREMENT f v 3.0 permanent 4\n\
         UPGRADE f v 1.0 2.0 permanent 1\n\
         INCREMENT f v 1.2 permanent 4\n");
    assert_eq!(
        pools(&s),
        [
            p("f", "1.0", 4),
            p("f", "1.5", 3),
            p("f", "2.0", 1),
            p("f", "3.0", 4),
            p("f", "1.2", 4)
        ]
    );
    let s = set("FEATURE f v 3.0 permanent 4\nUPGRADE f v 1.0 2.0 permanent 1\n");
    assert_eq!(pools(&s), [p("f", "3.0", 4)]);
    assert!(s.warnings[0].message.contains("nothing upgraded"));
    let s = set("UPGRADE f v 1.0 2.0 permanent 1\nFEATURE f v 1.0 permanent 4\n");
    assert_eq!(pools(&s), [p("f", "1.0", 4)], "only a preceding line");
    assert_eq!(s.warnings.len(), 1);
}

#[test]
fn supersede_removes_earlier_issued_lines() {
    let s = set("INCREMENT f1 v 1.0 permanent 1 ISSUED=1-jan-2008\n\
         INCREMENT f1 v 1.0 permanent 4 SUPERSEDE ISSUED=1-jan-2009\n\
         INCREMENT f1 v 1.0 permanent 3 SUPERSEDE ISSUED=1-jan-2009\n\
         INCREMENT f2 v 1.0 permanent 9 ISSUED=1-jan-2001\n");
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(
        pools(&s),
        [p("f1", "1.0", 4), p("f1", "1.0", 3), p("f2", "1.0", 9)]
    );
    assert_eq!(s.superseded.len(), 1);
    assert_eq!(s.superseded[0].line, 1);

    // A list names other features; a line without a date counts as older.
    let s = set("FEATURE f1 v 1.0 permanent 1 ISSUED=1-jan-2008\n\
         FEATURE f2 v 1.0 permanent 1\n\
         FEATURE f3 v 1.0 permanent 4 SUPERSEDE=\"f1 f2\" START=2-jan-2009\n\
         FEATURE f4 v 1.0 permanent 4 ISSUED=1-jan-2001\n");
    assert_eq!(pools(&s), [p("f3", "1.0", 4), p("f4", "1.0", 4)]);
    assert!(
        s.applied[0]
            .summary
            .contains("line 1 (FEATURE f1 1.0, 1), line 2"),
        "{:?}",
        s.applied
    );

    // A later line survives; SUPERSEDE without a date is a warning.
    let s = set("FEATURE f v 1.0 permanent 2 ISSUED=1-jan-2030\n\
         FEATURE f v 1.0 permanent 1 SUPERSEDE ISSUED=1-jan-2020\n\
         FEATURE g v 1.0 permanent 1 SUPERSEDE\n");
    assert_eq!(
        pools(&s),
        [p("f", "1.0", 2), p("f", "1.0", 1), p("g", "1.0", 1)]
    );
    assert_eq!(s.warnings.len(), 1);
    assert!(s.warnings[0].message.contains("without ISSUED="));
}

#[test]
fn superseded_enabling_lines_do_not_enable() {
    let s = set("PACKAGE pk v COMPONENTS=a\n\
         INCREMENT pk v 1.0 permanent 2 ISSUED=1-jan-2024\n\
         INCREMENT pk v 1.0 permanent 5 SUPERSEDE ISSUED=1-jan-2025\n");
    assert_eq!(pools(&s), [p("a", "1.0", 5)]);
}

#[test]
fn expand_runs_once() {
    let s = set("PACKAGE s v COMPONENTS=a OPTIONS=SUITE\nFEATURE s v 1.0 permanent 2\n");
    assert!(s.expanded);
    assert_eq!(crate::license::expand(&s), s);
    let raw = crate::license::parse::parse_raw(
        "t.lic",
        "PACKAGE s v COMPONENTS=a\nFEATURE s v 1.0 permanent 2\n",
    );
    assert!(!raw.expanded);
    assert_eq!(pools(&crate::license::expand(&raw)), [p("a", "1.0", 2)]);
}
