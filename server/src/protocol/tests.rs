//! The parser's unit tests.

use super::*;

fn err(line: &str) -> ErrCode {
    parse(line.as_bytes()).unwrap_err().code
}

#[test]
fn checkout_with_all_options() {
    let c = parse(b"CHECKOUT MPM_ADV_RC USER15 GENE-VM-2K3 ec26edf8 version=1.0 count=2 linger=1814400 display=console wait=0.5\r").unwrap();
    let Command::Checkout(c) = c else { panic!() };
    assert_eq!(
        (
            c.names.feature,
            c.names.user,
            c.names.host,
            c.names.handle,
            c.names.display
        ),
        ("MPM_ADV_RC", "USER15", "GENE-VM-2K3", "ec26edf8", "console")
    );
    assert_eq!(c.version, Some(1_000_000_000));
    assert_eq!((c.count, c.linger_ms, c.wait_ms), (2, 1_814_400_000, 500));
}

#[test]
fn minimal_requests() {
    assert_eq!(parse(b"ping").unwrap(), Command::Ping);
    assert_eq!(
        parse(b"STATUS").unwrap(),
        Command::Status(StatusQuery::default())
    );
    assert_eq!(
        parse(b"STATUS F1 from=2 limit=10").unwrap(),
        Command::Status(StatusQuery {
            feature: Some("F1"),
            from: 2,
            limit: Some(10),
            holders: Default::default(),
        })
    );
    assert_eq!(
        parse(b"STATUS F1 holders_limit=0").unwrap(),
        Command::Status(StatusQuery {
            feature: Some("F1"),
            holders: crate::status::HolderPaging {
                limit: Some(0),
                after: None
            },
            ..StatusQuery::default()
        })
    );
    assert_eq!(
        parse(b"STATUS holders_after=1700000000000.42 holders_limit=500").unwrap(),
        Command::Status(StatusQuery {
            holders: crate::status::HolderPaging {
                limit: Some(500),
                after: Some(crate::status::HolderCursor {
                    since_ms: 1_700_000_000_000,
                    key: 42
                })
            },
            ..StatusQuery::default()
        })
    );
    assert_eq!(
        parse(b"CHECKIN F h").unwrap(),
        Command::Checkin {
            feature: "F",
            handle: "h",
            holder: None
        }
    );
    assert_eq!(
        parse(b"CHECKIN F h host=pc1 user=alice").unwrap(),
        Command::Checkin {
            feature: "F",
            handle: "h",
            holder: Some(("alice", "pc1"))
        }
    );
    for bad in [
        &b"CHECKIN F h user=alice"[..],
        b"CHECKIN F h extra",
        b"STATUS F G",
        b"STATUS limit=x",
        b"STATUS from=1 from=2",
        b"STATUS limit=0",
        b"STATUS holders_limit=-1",
        b"STATUS holders_limit=1 holders_after=12",
        b"STATUS holders_limit=1 holders_after=1.x",
        b"STATUS holders_limit=1 holders_after=.1",
        b"STATUS holders_after=1.1",
    ] {
        assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(
        parse(b"REMOVE_HANDLE F 17").unwrap(),
        Command::RemoveHandle {
            feature: "F",
            ticket: 17
        }
    );
    assert!(parse(b"DOWN").unwrap().is_admin());
    assert!(!parse(b"PING").unwrap().is_admin());
}

#[test]
fn malformed_requests_name_the_problem() {
    let cases: &[(&str, ErrCode, &str)] = &[
        ("", ErrCode::EmptyRequest, "empty"),
        ("FROB", ErrCode::UnknownCommand, "FROB"),
        ("CHECKOUT F u", ErrCode::MissingField, "host"),
        ("CHECKOUT F u h", ErrCode::MissingField, "handle"),
        ("CHECKOUT F  u h x", ErrCode::BadField, "field 3 is empty"),
        ("CHECKOUT F u h x count=abc", ErrCode::BadField, "count"),
        (
            "CHECKOUT F u h x count=0",
            ErrCode::BadField,
            "out of range",
        ),
        ("CHECKOUT F u h x linger=-1", ErrCode::BadField, "linger"),
        (
            "CHECKOUT F u h x linger=1.2345",
            ErrCode::BadField,
            "linger",
        ),
        (
            "CHECKOUT F u h x color=red",
            ErrCode::BadField,
            "unknown option",
        ),
        (
            "CHECKOUT F u h x count=1 count=2",
            ErrCode::BadField,
            "twice",
        ),
        ("CHECKOUT F u h x bare", ErrCode::BadField, "key=value"),
        ("CHECKOUT F u h x version=1.x", ErrCode::BadField, "version"),
        ("CHECKOUT F u h x display=", ErrCode::BadField, "no value"),
        ("CHECKIN F", ErrCode::MissingField, "handle"),
        ("CHECKIN F h extra", ErrCode::BadField, "unexpected"),
        ("PING now", ErrCode::BadField, "unexpected"),
        ("REMOVE_HANDLE F x", ErrCode::BadField, "not a number"),
        ("CHECKOUT F u\th x", ErrCode::BadField, "control"),
    ];
    for (line, code, needle) in cases {
        let e = parse(line.as_bytes()).unwrap_err();
        assert_eq!(e.code, *code, "{line:?}: {e}");
        assert!(e.text.contains(needle), "{line:?}: {e}");
    }
}

#[test]
fn limits() {
    let long = "x".repeat(MAX_FIELD_BYTES + 1);
    assert_eq!(err(&format!("CHECKIN F {long}")), ErrCode::BadField);
    let line = "P".repeat(MAX_LINE_BYTES + 1);
    assert_eq!(err(&line), ErrCode::LineTooLong);
    assert_eq!(parse(b"CHECKIN F \xff").unwrap_err().code, ErrCode::BadUtf8);
}

/// Issue 12: `count=4294967296` was answered "is not a number of seconds".
#[test]
fn count_errors_say_what_a_count_is() {
    for value in ["4294967296", "99999999999999999999999", "0"] {
        let e = parse(format!("CHECKOUT F u h x count={value}").as_bytes()).unwrap_err();
        assert_eq!(e.code, ErrCode::BadField, "{e}");
        assert!(
            e.text.contains("out of range") && e.text.contains("number of licenses"),
            "{value}: {e}"
        );
        assert!(!e.text.contains("seconds"), "{value}: {e}");
    }
    let e = parse(b"CHECKOUT F u h x count=+1").unwrap_err();
    assert!(e.text.contains("not a whole number of licenses"), "{e}");
    let e = parse(b"CHECKOUT F u h x count=1.5").unwrap_err();
    assert!(e.text.contains("not a whole number of licenses"), "{e}");
}

#[test]
fn field_rule_is_the_parsers() {
    assert_eq!(field_fault("MPM_ADV_RC"), None);
    assert_eq!(field_fault(""), Some(FieldFault::Empty));
    assert_eq!(field_fault("a b"), Some(FieldFault::Space));
    assert_eq!(field_fault("a\u{1}"), Some(FieldFault::Control('\u{1}')));
    let long = "x".repeat(MAX_FIELD_BYTES + 1);
    assert_eq!(field_fault(&long), Some(FieldFault::TooLong));
    assert!(field_fault(&long[1..]).is_none());
    // Bidirectional controls are format characters, not control ones:
    // the protocol carries them.
    assert_eq!(field_fault("abc\u{202e}"), None);
    assert!(parse("CHECKIN F\u{202e} h".as_bytes()).is_ok());
}

/// Issue 12 item 13: `REMOVE F bob pc2 pc2` matched nothing for a
/// holder with no display although lmstat shows it as `bob pc2 pc2`.
#[test]
fn remove_matches_the_display_lmstat_shows() {
    assert!(remove_display_matches("console", "pc2", "console"));
    assert!(remove_display_matches("", "pc2", "pc2"));
    assert!(!remove_display_matches("", "pc2", "pc3"));
    assert!(!remove_display_matches("console", "pc2", "pc2"));
}

#[test]
fn seconds_parse_exactly() {
    assert_eq!(seconds_to_ms("1"), Some(1000));
    assert_eq!(seconds_to_ms("0.5"), Some(500));
    assert_eq!(seconds_to_ms("1.001"), Some(1001));
    assert_eq!(seconds_to_ms(".5"), None);
    assert_eq!(seconds_to_ms("1."), None);
    assert_eq!(seconds_to_ms("1e3"), None);
    assert_eq!(seconds_to_ms("99999999999999999999"), None);
}

#[test]
fn report_takes_a_checked_period() {
    assert_eq!(
        parse(b"REPORT").unwrap(),
        Command::Report(ReportQuery::default())
    );
    assert_eq!(
        parse(b"report to=2026-12-31 from=2026-10-01").unwrap(),
        Command::Report(ReportQuery {
            from: Some("2026-10-01"),
            to: Some("2026-12-31"),
        })
    );
    assert!(!Command::Report(ReportQuery::default()).is_admin());
    for bad in [
        "REPORT from=2026-1-1",
        "REPORT to=2026-02-30",
        "REPORT from=2026-12-02 to=2026-12-01",
        "REPORT 2026-12-01",
        "REPORT from=2026-12-01 from=2026-12-02",
    ] {
        assert_eq!(err(bad), ErrCode::BadField, "{bad}");
    }
}
