use super::*;

fn p(text: &str) -> OptionsFile {
    parse_str("t.opt", text)
}

#[test]
fn every_rule_keyword_parses() {
    let f = p("\
# a comment
GROUP stars joe barbara
USER_GROUP stars susan
HOST_GROUP farm h1 h2
INCLUDE f1 USER bob
EXCLUDE f1 GROUP stars
INCLUDEALL HOST_GROUP farm
EXCLUDEALL DISPLAY tty9
RESERVE 2 f2 USER alice
MAX 3 f2:VERSION=2.0 GROUP stars
EXCLUDE f3 INTERNET 192.168.1.*
include f4 user carol
");
    assert!(f.diagnostics.is_empty(), "{:?}", f.diagnostics);
    assert_eq!(f.rules.len(), 8);
    assert_eq!(
        f.group("stars").unwrap().members,
        vec!["joe", "barbara", "susan"],
        "GROUP lines of one name are joined"
    );
    assert_eq!(f.host_group("farm").unwrap().members, vec!["h1", "h2"]);
    assert_eq!(f.rules[0].kind, RuleKind::Include);
    assert_eq!(f.rules[2].feature, None);
    assert_eq!(f.rules[4].kind, RuleKind::Reserve(2));
    let q = f.rules[5].feature.as_ref().unwrap();
    assert_eq!(q.name, "f2");
    assert_eq!(
        q.qualifier,
        Some(Qualifier {
            key: QualifierKey::Version,
            value: "2.0".into()
        })
    );
    assert_eq!(f.rules[5].kind, RuleKind::Max(3));
    assert_eq!(f.rules[6].target.kind, TargetKind::Internet);
    assert_eq!(f.rules[7].target.name, "carol", "names keep their case");
    assert_eq!(f.rules[7].line, 12);
}

#[test]
fn settings_parse() {
    let f = p("\
MAX_OVERDRAFT f1 2
TIMEOUT f1 3600
TIMEOUTALL 7200
LINGER f1 30
NOLOG IN
NOLOG QUEUED
DEBUGLOG +/var/log/citrix.dl
REPORTLOG /var/log/report.rl
GROUPCASEINSENSITIVE ON
");
    assert!(f.diagnostics.is_empty(), "{:?}", f.diagnostics);
    assert_eq!(f.max_overdraft[0].value, 2);
    assert_eq!(f.timeout_secs("f1"), Some(3600));
    assert_eq!(f.timeout_secs("other"), Some(7200));
    assert_eq!(f.linger_secs("f1"), Some(30));
    assert_eq!(f.linger_secs("other"), None);
    assert!(f.nolog.checkin && f.nolog.queued && !f.nolog.checkout && !f.nolog.denied);
    assert_eq!(
        f.debug_log,
        Some(LogPath {
            path: "/var/log/citrix.dl".into(),
            append: true
        })
    );
    assert!(!f.report_log.as_ref().unwrap().append);
    assert!(f.group_case_insensitive);
}

#[test]
fn continuation_and_quotes() {
    let f = p("GROUP big a b \\\n   c d\nINCLUDE \"f1:VENDOR_STRING=;LT=SYS;GP=96\" GROUP big\n");
    assert!(f.diagnostics.is_empty(), "{:?}", f.diagnostics);
    assert_eq!(f.group("big").unwrap().members, vec!["a", "b", "c", "d"]);
    let q = f.rules[0]
        .feature
        .as_ref()
        .unwrap()
        .qualifier
        .as_ref()
        .unwrap();
    assert_eq!(q.key, QualifierKey::VendorString);
    assert_eq!(q.value, ";LT=SYS;GP=96");
}

#[test]
fn bad_lines_are_reported_with_position_and_skipped() {
    let f = p("\
INCLUDE f1 USER bob
MAX many f1 USER bob
EXCLUDE f1 PROJECT x
RESERVE 1 f1 USER
FROBNICATE f1
EXCLUDE f1 GROUP nobody
NOLOG SOMETIMES
INCLUDE f1 INTERNET 300.1.*.*
MAX 2 f1:COLOR=red USER x
RESERVE 1 f1 INTERNET 10.*.*.*
EXCLUDE f2 USER eve
");
    let at: Vec<(u32, u32)> = f.diagnostics.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(
        at,
        vec![
            (2, 5),
            (3, 12),
            (4, 14),
            (5, 1),
            (6, 18),
            (7, 7),
            (8, 21),
            (9, 7),
            (10, 14)
        ],
        "{:#?}",
        f.diagnostics
    );
    assert_eq!(f.rules.len(), 2, "the good lines still load");
    let shown = f.diagnostics[0].to_string();
    assert!(shown.starts_with("t.opt:2:5: "), "{shown}");
    assert!(f.diagnostics[4]
        .message
        .contains("GROUP nobody is not defined"));
}

#[test]
fn a_group_may_be_defined_after_use() {
    let f = p("EXCLUDE f1 GROUP late\nGROUP late x\n");
    assert!(f.diagnostics.is_empty(), "{:?}", f.diagnostics);
    assert_eq!(f.rules.len(), 1);
}

#[test]
fn ip_patterns() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let pat = IpPattern::parse("192.168.1.*").unwrap();
    assert!(pat.matches(ip("192.168.1.7")));
    assert!(!pat.matches(ip("192.168.2.7")));
    assert!(pat.matches(ip("::ffff:192.168.1.9")));
    assert!(!pat.matches(ip("::1")));
    assert!(IpPattern::parse("1.2.3").is_none());
    assert!(IpPattern::parse("1.2.3.4.5").is_none());
    assert!(IpPattern::parse("1.2.3.256").is_none());
    // A HOST target with wildcards is an address pattern.
    let f = p("EXCLUDE f1 HOST 10.0.*.*\n");
    assert_eq!(f.rules[0].target.kind, TargetKind::Internet);
}

#[test]
fn rule_labels_name_the_line() {
    let f = p("\n\nRESERVE 2 f1:VERSION=2.0 USER bob\n");
    assert_eq!(
        f.rules[0].label(),
        "RESERVE 2 f1:VERSION=2.0 USER bob (line 3)"
    );
}

/// Issue 12 item 16: a trailing `# comment` on a GROUP line made users
/// `#`, `joined`, ... silently; now the line loads (as FlexLM) with a warning.
#[test]
fn names_starting_with_hash_are_warned_about() {
    let f = p("GROUP eng erik   # joined with the line above\nINCLUDE f1 USER #bob\n");
    assert!(f.diagnostics.is_empty(), "{:?}", f.diagnostics);
    assert_eq!(f.warnings.len(), 2, "{:?}", f.warnings);
    let w = &f.warnings[0];
    assert_eq!((w.line, w.column), (1, 18), "{w}");
    assert!(w.message.contains("\"joined\""), "{w}");
    assert_eq!((f.warnings[1].line, f.warnings[1].column), (2, 17));
    // A trailing comment after a complete rule is rejected with a hint.
    let f = p("MAX 2 f1 USER bob   # two seats\n");
    assert_eq!(f.rules.len(), 0);
    assert!(
        f.diagnostics[0].message.contains("comment"),
        "{:?}",
        f.diagnostics
    );
}

/// Issue 12 item 11, options side: a `\` joining the next line, and one at
/// the end of the file.
#[test]
fn continuation_swallowing_the_next_line_is_rejected() {
    let f = p("GROUP eng a b \\\nMAX 2 f1 USER bob\nINCLUDE f1 USER c \\\n");
    assert!(f.groups.is_empty(), "{:?}", f.groups);
    assert!(f.rules.is_empty(), "{:?}", f.rules);
    assert_eq!(f.diagnostics.len(), 2, "{:?}", f.diagnostics);
    let d = &f.diagnostics[0];
    assert_eq!((d.line, d.column), (2, 1), "{d}");
    assert!(
        d.message.contains("MAX") && d.message.contains("GROUP"),
        "{d}"
    );
    let d = &f.diagnostics[1];
    assert_eq!((d.line, d.column), (3, 19), "{d}");
    assert!(d.message.contains("end of the file"), "{d}");
}
