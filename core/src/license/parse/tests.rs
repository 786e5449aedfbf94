use proptest::prelude::*;

use super::*;
use crate::license::model::Expiry;

fn parse(text: &str) -> LicenseSet {
    parse_raw("test.lic", text)
}

/// Parses `text`, asserting it has no diagnostics and exactly one pool.
fn one_pool(text: &str) -> PoolLine {
    let set = parse(text);
    assert_eq!(set.diagnostics, [], "unexpected diagnostics");
    assert_eq!(set.pools.len(), 1);
    set.pools.into_iter().next().unwrap()
}

/// Parses `text`, asserting exactly one diagnostic, and returns it.
fn one_diagnostic(text: &str) -> Diagnostic {
    let set = parse(text);
    assert_eq!(set.diagnostics.len(), 1, "{:?}", set.diagnostics);
    set.diagnostics.into_iter().next().unwrap()
}

#[test]
fn minimal_feature() {
    let p = one_pool("FEATURE f v 1.0 31-dec-2026 10");
    assert_eq!(p.kind, PoolKind::Feature);
    assert_eq!(p.feature, "f");
    assert_eq!(p.vendor, "v");
    assert_eq!(p.version.as_str(), "1.0");
    assert_eq!(
        p.expiry,
        Expiry::On(Date {
            year: 2026,
            month: 12,
            day: 31
        })
    );
    assert_eq!(p.count, Some(10));
    assert_eq!(p.dup_group, DupGroup::by_handle());
    assert_eq!(p.overdraft, 0);
    assert_eq!(p.line, 1);
    assert!(p.other.is_empty());
}

#[test]
fn record_keywords_are_case_insensitive() {
    let set = parse("feature a v 1 permanent 1\nIncrement b v 1 permanent 1\nuse_server\n");
    assert_eq!(set.diagnostics, []);
    assert_eq!(set.pools[0].kind, PoolKind::Feature);
    assert_eq!(set.pools[1].kind, PoolKind::Increment);
    assert!(set.use_server);
}

#[test]
fn uncounted_and_zero_count_are_none() {
    assert_eq!(one_pool("FEATURE f v 1 permanent uncounted").count, None);
    assert_eq!(one_pool("FEATURE f v 1 permanent UNCOUNTED").count, None);
    assert_eq!(one_pool("FEATURE f v 1 permanent 0").count, None);
}

#[test]
fn known_keywords_are_typed_unknown_kept_in_order() {
    let p = one_pool(
        "INCREMENT f v 2.5 permanent 4 ck=12 HOSTID=\"ETHER=a b\" ISSUER=ACME \
         issued=1-jan-2020 START=2-Jan-2020 NOTICE=\"Licensed to Acme, Inc.\" \
         SIGN=\"AB CD\" TS_OK SUPERSEDE BORROW=168",
    );
    assert_eq!(p.hostid.as_deref(), Some("ETHER=a b"));
    assert_eq!(p.issuer.as_deref(), Some("ACME"));
    assert_eq!(
        p.issued,
        Some(Date {
            year: 2020,
            month: 1,
            day: 1
        })
    );
    assert_eq!(
        p.start,
        Some(Date {
            year: 2020,
            month: 1,
            day: 2
        })
    );
    assert_eq!(p.notice.as_deref(), Some("Licensed to Acme, Inc."));
    assert_eq!(p.sign.as_deref(), Some("AB CD"));
    assert_eq!(p.supersede.as_deref(), Some(""));
    let other: Vec<(&str, &str)> = p
        .other
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(other, [("ck", "12"), ("TS_OK", ""), ("BORROW", "168")]);
}

#[test]
fn hostid_keeps_everything_after_the_first_equals() {
    assert_eq!(
        one_pool("FEATURE f v 1 permanent 1 HOSTID=ID=123")
            .hostid
            .as_deref(),
        Some("ID=123")
    );
    assert_eq!(
        one_pool("FEATURE f v 1 permanent 1 HOSTID=ANY")
            .hostid
            .as_deref(),
        Some("ANY")
    );
}

#[test]
fn supersede_with_a_list() {
    let p = one_pool("FEATURE f v 1 permanent 1 SUPERSEDE=\"f1 f2\"");
    assert_eq!(p.supersede.as_deref(), Some("f1 f2"));
}

#[test]
fn sign2_fills_sign_only_when_sign_is_absent() {
    let p = one_pool("FEATURE f v 1 permanent 1 SIGN2=\"22\"");
    assert_eq!(p.sign.as_deref(), Some("22"));
    let p = one_pool("FEATURE f v 1 permanent 1 SIGN2=22 SIGN=11");
    assert_eq!(p.sign.as_deref(), Some("11"));
    assert_eq!(p.other, [("SIGN2".to_string(), "22".to_string())]);
}

#[test]
fn dup_group_keyword_beats_vendor_string() {
    let vs = "VENDOR_STRING=\";LT=Retail;DUP_GROUP=HV\"";
    let p = one_pool(&format!("FEATURE f v 1 permanent 1 {vs}"));
    assert_eq!(p.dup_group.mask(), DupGroup::HOST | DupGroup::VENDOR);
    let p = one_pool(&format!("FEATURE f v 1 permanent 1 {vs} DUP_GROUP=UHD"));
    assert_eq!(p.dup_group.to_string(), "UHD");
    let p = one_pool("FEATURE f v 1 permanent 1 dup_group=site");
    assert_eq!(p.dup_group.mask(), DupGroup::VENDOR);
}

#[test]
fn overdraft_from_keyword_or_odp_percent() {
    let odp = "VENDOR_STRING=\";ODP=15\"";
    assert_eq!(
        one_pool(&format!("FEATURE f v 1 permanent 10 {odp}")).overdraft,
        1
    );
    assert_eq!(
        one_pool(&format!("FEATURE f v 1 permanent 100 {odp}")).overdraft,
        15
    );
    assert_eq!(
        one_pool(&format!("FEATURE f v 1 permanent 100 {odp} OVERDRAFT=3")).overdraft,
        3
    );
    assert_eq!(
        one_pool(&format!("FEATURE f v 1 permanent uncounted {odp}")).overdraft,
        0
    );
    assert_eq!(
        one_pool("FEATURE f v 1 permanent 4294967295 VENDOR_STRING=ODP=200").overdraft,
        u32::MAX
    );
}

#[test]
fn server_line_forms() {
    let set = parse(
        "SERVER this_host ANY 27000\nSERVER h2 ID=123 PORT=27001\nserver h3 0800200055327 \
         PRIMARY_IS_MASTER\nSERVER h4 \"INTERNET=10.0.0.1\" port=1 HEARTBEAT_INTERVAL=30",
    );
    assert_eq!(set.diagnostics, []);
    let s = &set.servers;
    assert_eq!(
        (s[0].host.as_str(), s[0].hostid.as_str(), s[0].port),
        ("this_host", "ANY", Some(27000))
    );
    assert_eq!((s[1].hostid.as_str(), s[1].port), ("ID=123", Some(27001)));
    assert_eq!(s[2].port, None);
    assert_eq!(
        s[2].other,
        [("PRIMARY_IS_MASTER".to_string(), String::new())]
    );
    assert_eq!(
        (s[3].hostid.as_str(), s[3].port),
        ("INTERNET=10.0.0.1", Some(1))
    );
    assert_eq!(s[3].line, 4);
}

#[test]
fn server_errors() {
    let d = one_diagnostic("SERVER h");
    assert_eq!(
        d.message,
        "SERVER line needs 2 fields (host hostid), found 1"
    );
    assert_eq!((d.line, d.column), (1, 1));
    let d = one_diagnostic("SERVER h PORT=1");
    assert_eq!(
        d.message,
        "SERVER line needs 2 fields (host hostid), found 1"
    );
    let d = one_diagnostic("SERVER h ANY 99999");
    assert_eq!(
        d.message,
        "SERVER h: bad port \"99999\" (expected a number from 0 to 65535)"
    );
    assert_eq!(d.column, 14);
    let d = one_diagnostic("SERVER h ANY PORT=x");
    assert_eq!(d.column, 19);
}

#[test]
fn vendor_line_forms() {
    let set = parse(
        "VENDOR CITRIX\nDAEMON adskflex /opt/adskflex /opt/adsk.opt 2080\n\
         VENDOR snps PORT=27021 OPTIONS=/o.opt\nvendor x /bin/x 27100 EXTRA",
    );
    assert_eq!(set.diagnostics, []);
    let v = &set.vendors;
    assert_eq!(v[0].name, "CITRIX");
    assert_eq!(
        (
            v[0].daemon_path.as_deref(),
            v[0].options_path.as_deref(),
            v[0].port
        ),
        (None, None, None)
    );
    assert_eq!(
        (
            v[1].daemon_path.as_deref(),
            v[1].options_path.as_deref(),
            v[1].port
        ),
        (Some("/opt/adskflex"), Some("/opt/adsk.opt"), Some(2080))
    );
    assert_eq!(
        (
            v[2].daemon_path.as_deref(),
            v[2].options_path.as_deref(),
            v[2].port
        ),
        (None, Some("/o.opt"), Some(27021))
    );
    assert_eq!(
        (
            v[3].daemon_path.as_deref(),
            v[3].options_path.as_deref(),
            v[3].port
        ),
        (Some("/bin/x"), Some("EXTRA"), Some(27100))
    );
    let d = one_diagnostic("DAEMON");
    assert_eq!(d.message, "DAEMON line needs a vendor daemon name");
}

#[test]
fn package_and_upgrade_are_kept() {
    let set = parse(
        "PACKAGE suite acme 1.0 COMPONENTS=\"a b:2.0 c\" OPTIONS=SUITE\n\
         PACKAGE bare acme SUITE_DUP_GROUP=U\n\
         UPGRADE f acme 1.0 2.0 permanent 5 SIGN=\"X Y\"\n",
    );
    assert_eq!(set.diagnostics, []);
    let p = &set.packages[0];
    assert_eq!((p.name.as_str(), p.vendor.as_str()), ("suite", "acme"));
    assert_eq!(p.version.as_deref(), Some("1.0"));
    assert_eq!(p.components.as_deref(), Some("a b:2.0 c"));
    assert_eq!(p.other, [("OPTIONS".to_string(), "SUITE".to_string())]);
    assert_eq!(set.packages[1].version, None);
    assert_eq!(set.packages[1].line, 2);
    let u = &set.upgrades[0];
    assert_eq!(
        (
            u.feature.as_str(),
            u.from_version.as_str(),
            u.to_version.as_str()
        ),
        ("f", "1.0", "2.0")
    );
    assert_eq!(u.rest, ["permanent", "5", "SIGN=\"X Y\""]);
    assert_eq!(u.line, 3);
}

#[test]
fn upgrade_errors() {
    let d = one_diagnostic("UPGRADE f acme 1.0 2.0 permanent");
    assert!(d.message.starts_with("UPGRADE line needs 6 fields"), "{d}");
    assert!(d.message.ends_with("found 5"), "{d}");
    let d = one_diagnostic("UPGRADE f acme 1.0 2.x permanent 1");
    assert_eq!(d.column, 20);
}

#[test]
fn missing_fields() {
    let d = one_diagnostic("  FEATURE f v 1.0");
    assert_eq!(
        d.message,
        "FEATURE line needs 5 fields (name vendor version expiry count), found 3"
    );
    assert_eq!((d.line, d.column, d.record_line), (1, 3, 1));
    let d = one_diagnostic("INCREMENT f v 1.0 permanent SIGN=1");
    assert!(d.message.ends_with("found 4"), "{d}");
    let d = one_diagnostic("PACKAGE p");
    assert_eq!(
        d.message,
        "PACKAGE line needs at least 2 fields (name vendor), found 1"
    );
}

#[test]
fn bad_values_name_the_token_and_column() {
    let d = one_diagnostic("INCREMENT MPM_ADV_RC CITRIX 2008.0801 31-feb-2026 5");
    assert_eq!(
        d.message,
        "INCREMENT MPM_ADV_RC: bad expiry date \"31-feb-2026\" (day 31 does not exist in February)"
    );
    assert_eq!((d.line, d.column), (1, 39));
    let d = one_diagnostic("FEATURE f v 1.0 permanent -3");
    assert_eq!(
        d.message,
        "FEATURE f: bad license count \"-3\" (expected a positive whole number, \"uncounted\" or 0)"
    );
    assert_eq!(d.column, 27);
    let d = one_diagnostic("FEATURE f v v1 permanent 1");
    assert!(
        d.message.starts_with("FEATURE f: bad version \"v1\""),
        "{d}"
    );
    assert_eq!(d.column, 13);
    let d = one_diagnostic("FEATURE f v 1 permanent 1 ISSUED=31-apr-2020");
    assert_eq!(
        d.message,
        "FEATURE f: bad ISSUED date \"31-apr-2020\" (day 31 does not exist in April)"
    );
    assert_eq!(d.column, 34);
    let d = one_diagnostic("FEATURE f v 1 permanent 1 START=1-jan-0");
    assert!(
        d.message.contains("year 0 (permanent) is not allowed"),
        "{d}"
    );
    let d = one_diagnostic("FEATURE f v 1 permanent 1 DUP_GROUP=UX");
    assert!(
        d.message.starts_with("FEATURE f: bad DUP_GROUP \"UX\""),
        "{d}"
    );
    assert_eq!(d.column, 37);
    let d = one_diagnostic("FEATURE f v 1 permanent 1 OVERDRAFT=-1");
    assert_eq!(
        d.message,
        "FEATURE f: bad OVERDRAFT \"-1\" (expected a whole number)"
    );
    let d = one_diagnostic("FEATURE f v 1 permanent 1 VENDOR_STRING=\";GP=x\"");
    assert_eq!(
        d.message,
        "FEATURE f: bad VENDOR_STRING field GP=\"x\" (expected whole hours)"
    );
    assert_eq!(d.column, 41);
}

#[test]
fn unknown_record_keywords() {
    let d = one_diagnostic("FEATUR f v 1 permanent 1");
    assert_eq!(
        d.message,
        "unknown record keyword \"FEATUR\" (did you mean FEATURE?)"
    );
    assert_eq!((d.line, d.column), (1, 1));
    let d = one_diagnostic("hello world");
    assert_eq!(d.message, "unknown record keyword \"hello\"");
    let d = one_diagnostic("KEY=value");
    assert_eq!(d.message, "unknown record keyword \"KEY=value\"");
    let d = one_diagnostic("incremnt f v 1 permanent 1");
    assert!(d.message.ends_with("(did you mean INCREMENT?)"), "{d}");
}

#[test]
fn unterminated_quote_skips_only_its_record() {
    let set = parse("FEATURE f v 1 permanent 1 NOTICE=\"oops\nFEATURE g v 1 permanent 1\n");
    assert_eq!(set.pools.len(), 1);
    assert_eq!(set.pools[0].feature, "g");
    let d = &set.diagnostics[0];
    assert!(d.message.starts_with("unterminated quoted string"), "{d}");
    assert_eq!((d.line, d.column), (1, 34));
}

#[test]
fn errors_on_continuation_lines_report_the_physical_line() {
    let text = "# header\nINCREMENT f v 1.0 \\\n    permanent \\\n    5 ISSUED=32-jan-2020";
    let d = one_diagnostic(text);
    assert_eq!((d.record_line, d.line, d.column), (2, 4, 14));
    assert_eq!(d.file, "test.lic");
    assert_eq!(d.to_string(), format!("test.lic:4:14: {}", d.message));
}

#[test]
fn continued_quoted_sign_and_crlf() {
    let text = "FEATURE f v 1 permanent 1 \\\r\n\tSIGN=\"0000 1111 \\\r\n\t2222 3333\"\r\n";
    let p = one_pool(text);
    assert_eq!(p.sign.as_deref(), Some("0000 1111 2222 3333"));
}

#[test]
fn byte_order_mark_is_ignored() {
    let set = parse("\u{feff}USE_SERVER\n");
    assert_eq!(set.diagnostics, []);
    assert!(set.use_server);
}

#[test]
fn good_lines_load_around_bad_ones() {
    let set =
        parse("FEATURE a v 1 permanent 1\nBOGUS\nFEATURE b v 1 permanent x\nFEATURE c v 1 0 2\n");
    let names: Vec<&str> = set.pools.iter().map(|p| p.feature.as_str()).collect();
    assert_eq!(names, ["a", "c"]);
    let lines: Vec<u32> = set.diagnostics.iter().map(|d| d.line).collect();
    assert_eq!(lines, [2, 3]);
}

#[test]
fn edit_distance_basics() {
    assert_eq!(edit_distance("FEATUR", "FEATURE"), 1);
    assert_eq!(edit_distance("", "ABC"), 3);
    assert_eq!(edit_distance("VENDER", "VENDOR"), 1);
    assert_eq!(closest_keyword("SERVE"), Some("SERVER"));
    assert_eq!(closest_keyword("XYZZY"), None);
}

/// Words that make up license-like text, including the awkward ones.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("FEATURE".to_string()),
        Just("INCREMENT".to_string()),
        Just("SERVER".to_string()),
        Just("VENDOR".to_string()),
        Just("PACKAGE".to_string()),
        Just("UPGRADE".to_string()),
        Just("USE_SERVER".to_string()),
        Just("\\\n".to_string()),
        Just("\\\r\n".to_string()),
        Just("\n".to_string()),
        Just("\"".to_string()),
        Just("=".to_string()),
        Just("#".to_string()),
        Just(" ".to_string()),
        Just("\t".to_string()),
        Just("VENDOR_STRING=\";ODP=50;GP=9;DUP_GROUP=U".to_string()),
        Just("OVERDRAFT=".to_string()),
        Just("31-feb-2026".to_string()),
        Just("2038.0101".to_string()),
        Just("4294967295".to_string()),
        "[a-zA-Z0-9_.;,-]{0,8}",
        any::<char>().prop_map(String::from),
    ]
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(chars in prop::collection::vec(any::<char>(), 0..300)) {
        let text: String = chars.into_iter().collect();
        let set = parse_str("p.lic", &text);
        prop_assert!(set.diagnostics.iter().all(|d| d.line >= 1 && d.column >= 1));
    }

    #[test]
    fn never_panics_on_license_like_text(parts in prop::collection::vec(fragment(), 0..40)) {
        let text = parts.join(" ");
        let set = parse_str("p.lic", &text);
        let lines = u32::try_from(text.split('\n').count()).unwrap_or(u32::MAX);
        for d in &set.diagnostics {
            prop_assert!(d.record_line >= 1 && d.record_line <= d.line && d.line <= lines);
            prop_assert!(d.column >= 1);
        }
        for p in &set.pools {
            prop_assert!(p.line >= 1 && p.line <= lines);
        }
    }
}

/// Issue 12 item 11: a `\` that joins the next record is reported, and the
/// swallowed feature is named (before, one MATLAB pool loaded and SIMULINK
/// vanished without a word).
#[test]
fn continuation_swallowing_the_next_record_is_rejected_naming_both() {
    let text = "INCREMENT MATLAB MLM 49 01-jan-2099 150 252446F5A5CB \\\n\
                INCREMENT SIMULINK MLM 49 01-jan-2099 150 BA43E5DA5E64 \\\n";
    let set = parse(text);
    assert_eq!(set.pools.len(), 0, "{:?}", set.pools);
    assert_eq!(set.diagnostics.len(), 1, "{:?}", set.diagnostics);
    let d = &set.diagnostics[0];
    assert_eq!((d.line, d.column, d.record_line), (2, 1, 1), "{d}");
    assert!(d.message.contains("INCREMENT SIMULINK"), "{d}");
    assert!(d.message.contains("INCREMENT MATLAB"), "{d}");
    assert!(d.message.contains("line 1"), "{d}");
    // Other record kinds too: a VENDOR line swallowing a FEATURE line.
    let d = one_diagnostic("VENDOR CITRIX \\\nFEATURE f CITRIX 1.0 permanent 1\n");
    assert_eq!((d.line, d.column), (2, 1), "{d}");
    assert!(d.message.contains("FEATURE f"), "{d}");
}

#[test]
fn backslash_at_end_of_file_is_reported() {
    for text in [
        "FEATURE f v 1.0 permanent 1 \\",
        "FEATURE f v 1.0 permanent 1 \\\n",
    ] {
        let d = one_diagnostic(text);
        assert_eq!((d.line, d.column), (1, 29), "{text:?}: {d}");
        assert!(d.message.contains("end of the file"), "{d}");
    }
    // A continuation onto a real last line is fine.
    one_pool("FEATURE f v 1.0 permanent 1 \\\n  SIGN=00\n");
}

#[test]
fn stray_positional_tokens_are_rejected_with_their_position() {
    let cases = [
        ("FEATURE f v 1.0 permanent 5 7\n", 29, "\"7\""),
        ("FEATURE f v 1.0 permanent 5 # note\n", 29, "comment"),
        (
            "FEATURE f v 1.0 permanent 5 SIGN=00 31-dec-2026\n",
            37,
            "31-dec-2026",
        ),
        ("FEATURE f v 1.0 permanent 5 INCREMENT g\n", 29, "INCREMENT"),
    ];
    for (text, column, needle) in cases {
        let d = one_diagnostic(text);
        assert_eq!((d.line, d.column), (1, column), "{text:?}: {d}");
        assert!(d.message.contains(needle), "{text:?}: {d}");
        assert!(d.message.starts_with("FEATURE f: unexpected word"), "{d}");
    }
    // What FlexLM accepts stays accepted: an old key, flags, a quoted
    // old-style vendor string.
    let p = one_pool("FEATURE f v 1.0 permanent 5 0E75D6C8DF00 TS_OK SUPERSEDE \"old vs\"\n");
    assert_eq!(p.other.len(), 3, "{:?}", p.other);
    // A key is only the first word after the count.
    let d = one_diagnostic("FEATURE f v 1.0 permanent 5 TS_OK 0E75D6C8DF00\n");
    assert_eq!(d.column, 35, "{d}");
}
