//! License files from `tests/data/`, parsed through the public API and
//! checked field by field.

use std::path::PathBuf;

use tally_core::license::{
    parse_str, Date, Diagnostic, DupGroup, Expiry, LicenseSet, PoolKind, PoolLine,
};

fn load(name: &str) -> LicenseSet {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    parse_str(&path.display().to_string(), &text)
}

fn date(year: u16, month: u8, day: u8) -> Date {
    Date { year, month, day }
}

fn pool<'a>(set: &'a LicenseSet, feature: &str) -> &'a PoolLine {
    set.pools
        .iter()
        .find(|p| p.feature == feature)
        .unwrap_or_else(|| panic!("no pool {feature}"))
}

fn pairs(list: &[(String, String)]) -> Vec<(&str, &str)> {
    list.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn citrix_file_header_lines() {
    let set = load("citrix.lic");
    assert_eq!(set.diagnostics, [], "citrix.lic should parse cleanly");
    assert!(set.source.ends_with("citrix.lic"));
    assert!(set.use_server);

    assert_eq!(set.servers.len(), 1);
    let s = &set.servers[0];
    assert_eq!(
        (s.host.as_str(), s.hostid.as_str(), s.port, s.line),
        ("this_host", "ANY", Some(27000), 13)
    );
    assert!(s.other.is_empty());

    assert_eq!(set.vendors.len(), 1);
    let v = &set.vendors[0];
    assert_eq!(
        (v.name.as_str(), v.port, v.line),
        ("CITRIX", Some(7279), 14)
    );
    assert_eq!(
        (v.daemon_path.as_deref(), v.options_path.as_deref()),
        (None, None)
    );

    assert_eq!(set.pools.len(), 3);
    assert!(set.packages.is_empty());
    assert!(set.upgrades.is_empty());
}

#[test]
fn citrix_startup_license() {
    let set = load("citrix.lic");
    let p = pool(&set, "CITRIX");
    assert_eq!(p.kind, PoolKind::Increment);
    assert_eq!(p.vendor, "CITRIX");
    assert_eq!(p.version.as_str(), "2038.0101");
    assert_eq!(p.expiry, Expiry::Permanent);
    assert_eq!(p.count, None);
    assert!(p.is_startup());
    let vs = p.vendor_string.as_ref().unwrap();
    assert_eq!(vs.raw, ";LT=SYS;GP=96;SA=0;DUP_GROUP=HV");
    assert_eq!(vs.license_type.as_deref(), Some("SYS"));
    assert_eq!(vs.grace_hours, Some(96));
    assert_eq!(vs.subscription.as_deref(), Some("0"));
    assert!(vs.components.is_empty());
    assert_eq!(vs.overdraft_percent, None);
    assert!(vs.other.is_empty());
    // No DUP_GROUP keyword: the vendor string's applies.
    assert_eq!(p.dup_group.mask(), DupGroup::HOST | DupGroup::VENDOR);
    assert_eq!(p.overdraft, 0);
    assert_eq!(p.hostid.as_deref(), Some("ANY"));
    assert_eq!(p.issuer.as_deref(), Some("CITRIX"));
    assert_eq!(p.notice.as_deref(), Some("Citrix Startup License"));
    assert_eq!(p.start, Some(date(2008, 1, 1)));
    assert_eq!(p.issued, Some(date(2008, 1, 1)));
    assert_eq!(
        p.sign.as_deref(),
        Some(
            "0000 1111 2222 3333 4444 5555 6666 7777 \
             8888 9999 AAAA BBBB CCCC DDDD EEEE FFFF"
        )
    );
    assert_eq!(p.supersede, None);
    assert!(p.other.is_empty());
    assert_eq!(p.line, 18);
}

#[test]
fn citrix_retail_pool() {
    let set = load("citrix.lic");
    let p = pool(&set, "MPM_ADV_RC");
    assert_eq!(p.kind, PoolKind::Increment);
    assert_eq!(p.vendor, "CITRIX");
    assert_eq!(p.version.as_str(), "2008.0801");
    assert_eq!(p.expiry, Expiry::Permanent);
    assert_eq!(p.count, Some(5));
    assert!(!p.is_startup());
    let vs = p.vendor_string.as_ref().unwrap();
    assert_eq!(vs.license_type.as_deref(), Some("Retail"));
    assert_eq!(vs.grace_hours, Some(720));
    assert_eq!(vs.components, ["ADV"]);
    assert_eq!(vs.subscription.as_deref(), Some("0"));
    assert_eq!(vs.overdraft_percent, Some(0));
    assert_eq!(vs.dup_group, None);
    // DUP_GROUP keyword on the line.
    assert_eq!(p.dup_group.to_string(), "UHD");
    assert_eq!(p.overdraft, 0);
    assert_eq!(p.hostid.as_deref(), Some("ANY"));
    assert_eq!(p.issuer.as_deref(), Some("CITRIX"));
    assert_eq!(p.issued, Some(date(2008, 8, 1)));
    assert_eq!(p.start, None);
    assert_eq!(p.notice.as_deref(), Some("Acme Corp"));
    assert_eq!(
        p.sign.as_deref(),
        Some(
            "1111 2222 3333 4444 5555 6666 7777 8888 \
             9999 0000 1111 2222 3333 4444 5555 6666"
        )
    );
    assert_eq!(pairs(&p.other), [("SN", "LA-0001234567-89012")]);
    assert_eq!(p.line, 23);
}

#[test]
fn citrix_eval_pool_with_overdraft_percent() {
    let set = load("citrix.lic");
    let p = pool(&set, "MPS_ENT_CCU");
    assert_eq!(p.version.as_str(), "2007.0726");
    assert_eq!(p.expiry, Expiry::On(date(2026, 12, 31)));
    assert_eq!(p.count, Some(1000));
    let vs = p.vendor_string.as_ref().unwrap();
    assert_eq!(vs.license_type.as_deref(), Some("Eval"));
    assert_eq!(vs.grace_hours, Some(720));
    assert_eq!(vs.components, ["ENT", "ADV", "STD", "AST"]);
    assert_eq!(vs.overdraft_percent, Some(10));
    assert_eq!(
        pairs(&vs.other),
        [("AP", "ADMIN/LOGON/-84D:NONADMIN/LOGON/-28D")]
    );
    // 10% of 1000.
    assert_eq!(p.overdraft, 100);
    assert_eq!(p.dup_group.to_string(), "UHD");
    assert_eq!(p.supersede.as_deref(), Some(""));
    assert_eq!(p.issued, Some(date(2007, 7, 26)));
    assert_eq!(p.start, Some(date(2007, 7, 26)));
    assert_eq!(p.notice.as_deref(), Some("Acme Corp, Evaluation"));
    assert_eq!(p.sign.as_deref(), Some("AAAA BBBB CCCC DDDD"));
    assert_eq!(p.line, 29);
}

#[test]
fn multi_vendor_file_really_has_crlf_endings() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/multi_vendor.lic");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains("\\\r\n"),
        "fixture lost its CRLF line endings"
    );
    assert_eq!(text.matches('\n').count(), text.matches("\r\n").count());
}

#[test]
fn multi_vendor_servers_and_vendors() {
    let set = load("multi_vendor.lic");
    assert_eq!(set.diagnostics, [], "multi_vendor.lic should parse cleanly");
    // The one warning: the UPGRADE names versions 2025.0 to 2026.0 of a
    // feature whose only line is version 1.000, so it upgrades nothing.
    let messages: Vec<_> = set
        .warnings
        .iter()
        .map(|d| (d.line, &d.message[..]))
        .collect();
    assert_eq!(
        messages,
        [(
            29,
            "UPGRADE 64800ACD_2026_0F: no counted FEATURE or INCREMENT line of \
             64800ACD_2026_0F before it has a version >= 2025.0 and < 2026.0; nothing upgraded"
        )]
    );
    assert!(set.use_server);

    let s: Vec<_> = set
        .servers
        .iter()
        .map(|s| (s.host.as_str(), s.hostid.as_str(), s.port, s.line))
        .collect();
    assert_eq!(
        s,
        [
            ("lic1", "123456789012", Some(27020), 8),
            ("lic2", "ID=1234", Some(27020), 9),
            ("lic3", "INTERNET=10.0.0.3", Some(27020), 10),
        ]
    );

    let v: Vec<_> = set
        .vendors
        .iter()
        .map(|v| {
            (
                v.name.as_str(),
                v.daemon_path.as_deref(),
                v.options_path.as_deref(),
                v.port,
                v.line,
            )
        })
        .collect();
    assert_eq!(
        v,
        [
            (
                "snpslmd",
                Some("/opt/synopsys/linux64/bin/snpslmd"),
                None,
                None,
                11
            ),
            (
                "adskflex",
                Some("/opt/flexlm/adskflex"),
                Some("/opt/flexlm/adskflex.opt"),
                Some(2080),
                12
            ),
            (
                "MLM",
                Some("/usr/local/matlab/etc/glnxa64/MLM"),
                Some("/usr/local/matlab/etc/MLM.opt"),
                Some(27011),
                13
            ),
        ]
    );
}

#[test]
fn multi_vendor_pools() {
    let set = load("multi_vendor.lic");
    let names: Vec<_> = set.pools.iter().map(|p| p.feature.as_str()).collect();
    assert_eq!(
        names,
        [
            "SSS",
            "86985ACD_2026_0F",
            "87048ACD_2026_0F",
            "87049ACD_F",
            "64800ACD_2026_0F",
            "MATLAB",
            "Simulink"
        ]
    );
    // The suite's components: 25 each, version and DUP_GROUP of the
    // enabling line, which stays as the suite feature.
    for c in ["86985ACD_2026_0F", "87048ACD_2026_0F", "87049ACD_F"] {
        let comp = pool(&set, c);
        assert_eq!((comp.count, comp.version.as_str()), (Some(25), "1.000"));
        assert_eq!(comp.dup_group.mask(), DupGroup::USER | DupGroup::HOST);
        let of = comp.package.as_ref().unwrap();
        assert_eq!((of.package.as_str(), of.suite), ("64800ACD_2026_0F", true));
        assert_eq!(comp.supersede, None);
    }

    let sss = pool(&set, "SSS");
    assert_eq!(
        (sss.vendor.as_str(), sss.version.as_str()),
        ("snpslmd", "1.0")
    );
    assert_eq!(sss.expiry, Expiry::On(date(2027, 12, 31)));
    assert_eq!(sss.count, Some(1));
    let vs = sss.vendor_string.as_ref().unwrap();
    assert_eq!(vs.raw, "2ba5a b9253 3611c 47b02 bcc52 3f2bf a54d3 d32de");
    assert_eq!(vs.license_type, None);
    assert_eq!(
        sss.notice.as_deref(),
        Some("Licensed to Example University, Physics Department")
    );
    assert_eq!(sss.issuer.as_deref(), Some("SYNOPSYS"));
    // The old-style positional key and unknown keywords are kept in order.
    assert_eq!(
        pairs(&sss.other),
        [("0E75D6C8DF00DEADBEEF", ""), ("SN", "RK:0:0:1")]
    );
    assert_eq!(sss.line, 17);

    let adsk = pool(&set, "64800ACD_2026_0F");
    assert_eq!(adsk.kind, PoolKind::Feature);
    assert_eq!(adsk.version.as_str(), "1.000");
    assert_eq!(adsk.expiry, Expiry::Permanent);
    assert_eq!(adsk.count, Some(25));
    assert_eq!(adsk.dup_group.mask(), DupGroup::USER | DupGroup::HOST);
    assert_eq!(
        adsk.supersede.as_deref(),
        Some("64800ACD_2025_0F 64800ACD_2024_0F")
    );
    assert_eq!(adsk.issued, Some(date(2025, 3, 15)));
    assert_eq!(adsk.sign.as_deref(), Some("89AB CDEF 0123 4567 89AB"));
    assert_eq!(pairs(&adsk.other), [("SIGN2", "FFFF EEEE")]);
    assert_eq!(adsk.line, 25);

    let matlab = pool(&set, "MATLAB");
    assert_eq!(matlab.expiry, Expiry::Permanent);
    assert_eq!(matlab.count, None);
    assert_eq!(matlab.hostid.as_deref(), Some("ETHER=00163e1a2b3c"));
    assert_eq!(pairs(&matlab.other), [("ts_ok", "")]);
    assert_eq!(matlab.line, 33);

    let simulink = pool(&set, "Simulink");
    assert_eq!(simulink.expiry, Expiry::Permanent);
    assert_eq!(simulink.count, Some(10));
    assert_eq!(simulink.overdraft, 2);
    assert_eq!(simulink.start, Some(date(2025, 1, 1)));
    assert_eq!(pairs(&simulink.other), [("BORROW", "")]);
    assert_eq!(simulink.line, 35);
}

#[test]
fn multi_vendor_package_and_upgrade() {
    let set = load("multi_vendor.lic");
    assert_eq!(set.packages.len(), 1);
    let pkg = &set.packages[0];
    assert_eq!(
        (
            pkg.name.as_str(),
            pkg.vendor.as_str(),
            pkg.version.as_deref()
        ),
        ("64800ACD_2026_0F", "adskflex", Some("1.000"))
    );
    assert_eq!(
        pkg.components.as_deref(),
        Some("86985ACD_2026_0F 87048ACD_2026_0F 87049ACD_F")
    );
    assert_eq!(
        pairs(&pkg.other),
        [
            ("OPTIONS", "SUITE"),
            ("SUPERSEDE", ""),
            ("SIGN", "0123 4567")
        ]
    );
    assert_eq!(pkg.line, 23);

    assert_eq!(set.upgrades.len(), 1);
    let up = &set.upgrades[0];
    assert_eq!(
        (
            up.feature.as_str(),
            up.vendor.as_str(),
            up.from_version.as_str(),
            up.to_version.as_str()
        ),
        ("64800ACD_2026_0F", "adskflex", "2025.0", "2026.0")
    );
    assert_eq!(
        up.rest,
        ["permanent", "25", "ISSUED=1-apr-2025", "SIGN=\"DDDD CCCC\""]
    );
    assert_eq!(up.line, 29);
}

/// (line, column, record_line, message) of a diagnostic.
fn where_what(d: &Diagnostic) -> (u32, u32, u32, &str) {
    (d.line, d.column, d.record_line, d.message.as_str())
}

#[test]
fn malformed_file_reports_each_bad_record_exactly() {
    let set = load("malformed.lic");
    let got: Vec<_> = set.diagnostics.iter().map(where_what).collect();
    let expected: Vec<(u32, u32, u32, &str)> = vec![
        (
            5,
            39,
            5,
            "INCREMENT MPM_ADV_RC: bad expiry date \"31-feb-2026\" \
             (day 31 does not exist in February)",
        ),
        (
            6,
            1,
            6,
            "FEATURE line needs 5 fields (name vendor version expiry count), found 3",
        ),
        (
            7,
            39,
            7,
            "FEATURE negative: bad license count \"-3\" \
             (expected a positive whole number, \"uncounted\" or 0)",
        ),
        (
            8,
            46,
            8,
            "unterminated quoted string: the \" here is not closed before the end of the record",
        ),
        (
            9,
            1,
            9,
            "unknown record keyword \"FEATUR\" (did you mean FEATURE?)",
        ),
        (
            12,
            12,
            10,
            "INCREMENT continued: bad ISSUED date \"30-feb-2020\" \
             (day 30 does not exist in February)",
        ),
        (
            15,
            1,
            15,
            "SERVER line needs 2 fields (host hostid), found 1",
        ),
        (
            16,
            19,
            16,
            "VENDOR other: bad port \"70000\" (expected a number from 0 to 65535)",
        ),
        (
            17,
            51,
            17,
            "FEATURE badgroup: bad DUP_GROUP \"XYZ\" \
             (expected NONE, SITE or letters from U, H, D, V)",
        ),
        (
            18,
            52,
            18,
            "FEATURE badvs: bad VENDOR_STRING field ODP=\"ten\" \
             (expected a whole percentage)",
        ),
        (
            19,
            23,
            19,
            "FEATURE badver: bad version \"1.0.1\" (expected digits with an optional \
             decimal fraction, such as 1.0 or 2024.0501)",
        ),
    ];
    assert_eq!(got, expected);
    for d in &set.diagnostics {
        assert!(d.file.ends_with("malformed.lic"));
        assert_eq!(
            d.to_string(),
            format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message)
        );
    }
}

#[test]
fn malformed_file_still_loads_the_good_records() {
    let set = load("malformed.lic");
    assert_eq!(set.servers.len(), 1);
    assert_eq!(set.servers[0].line, 2);
    let vendors: Vec<_> = set.vendors.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(vendors, ["CITRIX"]);

    let pools: Vec<_> = set
        .pools
        .iter()
        .map(|p| (p.feature.as_str(), p.line))
        .collect();
    assert_eq!(
        pools,
        [("good_one", 4), ("good_two", 13), ("good_three", 20)]
    );

    let good_two = pool(&set, "good_two");
    assert_eq!(good_two.expiry, Expiry::Permanent);
    assert_eq!(good_two.count, None);
    assert!(good_two.dup_group.is_by_handle());

    let good_three = pool(&set, "good_three");
    assert_eq!(good_three.expiry, Expiry::On(date(2030, 12, 31)));
    assert_eq!(good_three.count, Some(7));
    assert_eq!(
        pairs(&good_three.other),
        [("UNKNOWN_KEY", "whatever"), ("BARE_WORD", "")]
    );
}

#[test]
fn xilinx_suite_package() {
    let set = load("xilinx_suite.lic");
    assert_eq!(set.diagnostics, [], "xilinx_suite.lic should parse cleanly");
    assert_eq!(set.warnings, []);
    let names: Vec<_> = set.pools.iter().map(|p| p.feature.as_str()).collect();
    assert_eq!(
        names,
        [
            "ChipscopePro",
            "ISE",
            "PlanAhead",
            "XPS",
            "SDK",
            "SysGen",
            "ISE_Design_Suite",
            "Vivado_System_Edition"
        ]
    );
    // Each component: the suite's 2 licenses, its version, expiry and
    // vendor string; the suite line itself stays.
    for p in &set.pools[..6] {
        assert_eq!(p.count, Some(2), "{}", p.feature);
        assert_eq!(p.version.as_str(), "2025.12");
        assert_eq!(p.expiry, Expiry::On(date(2026, 12, 31)));
        assert_eq!(p.vendor_string.as_ref().unwrap().raw, "ISEDS");
        let of = p.package.as_ref().unwrap();
        assert_eq!(
            (of.package.as_str(), of.suite, of.package_line),
            ("ISE_Design_Suite", true, 8)
        );
    }
    assert!(set.pools[6].package.is_none(), "the suite's own line");
    assert_eq!(set.applied.len(), 1);
    assert!(set.applied[0]
        .summary
        .starts_with("suite ISE_Design_Suite: ChipscopePro 2025.12 x2 (from line 10)"));
}

#[test]
fn microchip_libero_package() {
    let set = load("microchip_libero.lic");
    assert_eq!(
        set.diagnostics,
        [],
        "microchip_libero.lic should parse cleanly"
    );
    assert_eq!(set.warnings, []);
    assert!(
        set.pools.iter().all(|p| p.feature != "LIBERO_SOC_GOLD"),
        "a non-suite package's enabling line is not served itself"
    );
    assert_eq!(set.pools.len(), 16);
    let count = |f: &str| pool(&set, f).count;
    assert_eq!(count("ACTEL_SUMMIT"), Some(3));
    assert_eq!(count("ACTEL_SYNPLIFY"), Some(6), "2 per enabling license");
    assert_eq!(count("ACTEL_MODELSIM"), Some(6));
    assert_eq!(count("SMARTDESIGN"), Some(3));
    assert_eq!(pool(&set, "MODELSIM_ME").version.as_str(), "11.0");
    assert_eq!(pool(&set, "LIBERO_SOC").version.as_str(), "2025.06");
    let total: u32 = set.pools.iter().filter_map(|p| p.count).sum();
    assert_eq!(total, 14 * 3 + 2 * 6);
    for p in &set.pools {
        assert_eq!(
            p.dup_group.mask(),
            7,
            "{}: DUP_GROUP=UHD inherited",
            p.feature
        );
        assert_eq!(p.line, 14, "the enabling line's");
        assert!(!p.package.as_ref().unwrap().suite);
    }
}
