use super::*;
use crate::picture::{sample, Picture};

/// Wednesday 2026-04-22 09:08:00 UTC, Unix ms.
const NOW: Millis = 1_776_848_880_000;

fn sample_cache() -> Cache {
    Cache::from_picture(&sample(), &Identity::default(), NOW)
}

fn text() -> String {
    sample_cache().to_text()
}

fn parse(text: &str) -> Result<Cache, CacheError> {
    Cache::parse(text.as_bytes(), Path::new("/var/tally/cache.ini"))
}

/// `(section, line, message)` of a refused text.
fn fault(text: &str) -> (String, usize, String) {
    match parse(text) {
        Err(CacheError::Corrupt {
            section,
            line,
            what,
            ..
        }) => (section, line, what),
        other => panic!("not refused as corrupt: {other:?}\n{text}"),
    }
}

/// Recomputes every section's CRC, so a test can make a structural change
/// that only the structure checks catch.
fn recrc(text: &str) -> String {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if line.starts_with('[') {
            sections.push((line.to_string(), Vec::new()));
        } else if let Some((_, lines)) = sections.last_mut() {
            lines.push(line.to_string());
        }
    }
    let mut out = String::new();
    for (header, lines) in sections {
        let crc = ini::section_crc(
            &header,
            lines
                .iter()
                .filter(|l| !l.starts_with("CRC="))
                .map(String::as_str),
        );
        out.push_str(&header);
        out.push('\n');
        for l in lines {
            if l.starts_with("CRC=") {
                out.push_str(&format!("CRC={crc}\n"));
            } else {
                out.push_str(&l);
                out.push('\n');
            }
        }
    }
    out
}

/// 1-based number of the first line equal to `line`.
fn line_of(text: &str, line: &str) -> usize {
    text.lines().position(|l| l == line).expect("line present") + 1
}

#[test]
fn writes_seed_001_shape_and_reads_it_back() {
    let text = text();
    let want_start = "[LSD]\nVersion=1\nLicModel=1\nLSName=lic1\nLSPort=27000\nProdName=TALLY\n\
                      ProdFeatName=CLIENT\nStamp=3f9c0d2a\nLastContact=1776848880000\nCRC=";
    assert!(text.starts_with(want_start), "{text}");
    let startup = "[PLD_POOL_NODE_0]\nPLD=CITRIX\nHasMaxLicenseCount=0\nCRC=";
    assert!(text.contains(startup), "{text}");
    let pool = "[PLD_POOL_LIC_NODE_0_0]\nNumLic=5000\nConnLimit=0\nGracePeriod=96\nLicExpTime=0\n\
                LeaseExpTime=0\nVendorStr=;LT=SYS;GP=96;SA=0;DUP_GROUP=HV\nSAExpDate=2038.0101\n\
                Vendor=CITRIX\nExpDate=permanent\nLicType=SYS\nSA=0\nOverdraft=0\nDupGroup=HV\nCRC=";
    assert!(text.contains(pool), "{text}");
    // Both MPS_ENT_CCU pools share one node; the uncounted pool says so.
    assert!(text.contains("[PLD_POOL_NODE_1]\nPLD=MPS_ENT_CCU\nHasMaxLicenseCount=0\n"));
    assert!(
        text.contains("\nSubSectionCount=2\n[PLD_POOL_LIC_NODE_1_0]\n"),
        "{text}"
    );
    assert!(text.contains("[PLD_POOL_LIC_NODE_1_1]\nNumLic=50\n"));
    assert!(text.contains("[PLD_POOL_LIC_NODE_3_0]\nNumLic=uncounted\n"));
    assert!(text.contains("CompList=ENT,ADV,STD,AST\n"));
    assert!(text.contains("LicExpTime=134294976000000000\n"), "{text}");
    let back = parse(&text).expect("valid");
    assert_eq!(back, sample_cache());
    assert_eq!(back.pools.len(), 5);
    assert_eq!(back.pools[1].feature, "MPS_ENT_CCU");
    assert_eq!(back.pools[2].feature, "MPS_ENT_CCU");
}

#[test]
fn grace_hours_are_resolved_when_cached() {
    let mut picture = sample();
    picture.pools[2].terms.gp_hours = None; // MPM_ADV_RC: LT=Retail
    picture.pools[0].terms.gp_hours = None; // startup: LT=SYS
    let cache = Cache::from_picture(&picture, &Identity::default(), NOW);
    let gp: Vec<_> = cache.pools.iter().map(|p| p.gp_hours).collect();
    assert_eq!(gp, [Some(96), Some(720), Some(720), Some(720), Some(720)]);
}

#[test]
fn seed_licexptime_is_a_filetime() {
    // Seed 001's MPS_ENT_CCU: 2008-07-27 00:02:00 UTC (evening of 07-26 in
    // America), to the millisecond.
    let ms = unix_ms_from_filetime(128_615_905_200_000_000).expect("whole ms");
    assert_eq!(crate::grace::rfc3339(ms), "2008-07-27T00:02:00Z");
    assert_eq!(filetime_from_unix_ms(ms), Some(128_615_905_200_000_000));
    // Its startup license's far-future value reads too.
    assert!(unix_ms_from_filetime(3_281_852_161_200_000_000).is_ok());
    assert!(unix_ms_from_filetime(128_615_905_200_000_001).is_err());
    assert!(unix_ms_from_filetime(10_000).is_err());
    let max = crate::picture::MAX_EXPIRY_MS;
    assert!(filetime_from_unix_ms(max).is_some());
    assert_eq!(filetime_from_unix_ms(max + 1), None);
}

#[test]
fn numlic_raised_under_the_old_crc_is_refused() {
    let text = text().replace("NumLic=1000\n", "NumLic=9000\n");
    let (section, line, what) = fault(&text);
    assert_eq!(section, "PLD_POOL_LIC_NODE_1_0");
    let crc_line = text
        .lines()
        .enumerate()
        .skip(line_of(&text, "NumLic=9000"))
        .find(|(_, l)| l.starts_with("CRC="))
        .map(|(i, _)| i + 1);
    assert_eq!(Some(line), crc_line);
    assert!(what.starts_with("CRC mismatch"), "{what}");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "/var/tally/cache.ini: [PLD_POOL_LIC_NODE_1_0] line {line}: CRC mismatch"
        )),
        "{err}"
    );
}

#[test]
fn a_missing_pool_section_is_refused() {
    let full = text();
    let start = full.find("[PLD_POOL_LIC_NODE_1_1]").expect("section");
    let end = full[start..].find("[PLD_POOL_NODE_2]").expect("next") + start;
    let text = format!("{}{}", &full[..start], &full[end..]);
    let (section, line, what) = fault(&text);
    assert_eq!(section, "PLD_POOL_NODE_2");
    assert_eq!(line, line_of(&text, "[PLD_POOL_NODE_2]"));
    assert_eq!(what, "expected [PLD_POOL_LIC_NODE_1_1] here");
}

#[test]
fn a_missing_last_feature_is_refused() {
    let full = text();
    let start = full.find("[PLD_POOL_NODE_3]").expect("section");
    let text = &full[..start];
    let (section, line, what) = fault(text);
    assert_eq!(section, "PLD_POOL_NODE_3");
    assert_eq!(line, text.lines().count() + 1);
    assert!(
        what.contains("[LSD] SubSectionCount=4 says it follows"),
        "{what}"
    );
}

#[test]
fn a_wrong_subsectioncount_is_refused() {
    // Two pools of MPS_ENT_CCU, but the node says one (CRCs made right, so
    // only the count is wrong).
    let full = text();
    let node = full.find("[PLD_POOL_NODE_1]").expect("node");
    let at = full[node..].find("SubSectionCount=2").expect("count") + node;
    let text = recrc(&format!(
        "{}SubSectionCount=1{}",
        &full[..at],
        &full[at + 17..]
    ));
    let (section, line, what) = fault(&text);
    assert_eq!(section, "PLD_POOL_LIC_NODE_1_1");
    assert_eq!(line, line_of(&text, "[PLD_POOL_LIC_NODE_1_1]"));
    assert_eq!(what, "expected [PLD_POOL_NODE_2] here");
    // One too many in [LSD]: the file ends before the fifth feature.
    let text = recrc(&full.replace("SubSectionCount=4", "SubSectionCount=5"));
    let (section, _, what) = fault(&text);
    assert_eq!(section, "PLD_POOL_NODE_4");
    assert!(what.starts_with("section missing"), "{what}");
    // One too few: a section left over.
    let text = recrc(&full.replace("SubSectionCount=4", "SubSectionCount=3"));
    let (section, line, what) = fault(&text);
    assert_eq!(
        (section.as_str(), line),
        ("PLD_POOL_NODE_3", line_of(&text, "[PLD_POOL_NODE_3]"))
    );
    assert_eq!(what, "a section more than the SubSectionCounts say");
}

#[test]
fn a_line_without_equals_is_refused() {
    let text = text().replacen("ConnLimit=0\n", "ConnLimit 0\n", 1);
    let (section, line, what) = fault(&text);
    assert_eq!(section, "PLD_POOL_LIC_NODE_0_0");
    assert_eq!(line, line_of(&text, "ConnLimit 0"));
    assert_eq!(what, "no '=' in \"ConnLimit 0\"");
}

#[test]
fn an_empty_line_is_refused() {
    let text = text().replacen("\n[PLD_POOL_NODE_0]", "\n\n[PLD_POOL_NODE_0]", 1);
    let (section, line, what) = fault(&text);
    assert_eq!((section.as_str(), what.as_str()), ("LSD", "an empty line"));
    assert_eq!(line, line_of(&text, "[PLD_POOL_NODE_0]") - 1);
}

#[test]
fn garbage_bytes_are_refused() {
    let mut bytes = text().into_bytes();
    let at = bytes.windows(7).position(|w| w == b"NumLic=").expect("key");
    bytes.splice(at..at, [0xff, 0xfe, 0x00]);
    let err = Cache::parse(&bytes, Path::new("c.ini")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "c.ini: [PLD_POOL_LIC_NODE_0_0] line 18: not UTF-8 text"
    );
    let err = Cache::parse(b"\x00\x01garbage\n", Path::new("c.ini")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "c.ini: [LSD] line 1: a line before the first section header"
    );
}

#[test]
fn an_empty_file_is_refused() {
    assert_eq!(
        fault(""),
        ("LSD".to_string(), 1, "the file is empty".to_string())
    );
}

#[test]
fn a_truncated_file_is_refused() {
    let full = text();
    // Cut inside a line.
    let cut = full.find("VendorStr=;LT=Eval").expect("line") + 12;
    let (section, line, what) = fault(&full[..cut]);
    assert_eq!(section, "PLD_POOL_LIC_NODE_1_0");
    assert_eq!(line, full[..cut].lines().count());
    assert_eq!(what, "no line feed at the end: the file is cut off");
    // Cut at a line end, before the section's CRC line.
    let cut = full.find("VendorStr=;LT=Eval").expect("line");
    let (section, _, what) = fault(&full[..cut]);
    assert_eq!(section, "PLD_POOL_LIC_NODE_1_0");
    assert_eq!(what, "no CRC line: the section is cut off or edited");
    // Every cut is refused.
    for end in 0..full.len() {
        assert!(parse(&full[..end]).is_err(), "accepted a cut at {end}");
    }
}

#[test]
fn an_unknown_or_repeated_key_is_refused() {
    let text = recrc(&text().replacen("ConnLimit=0\n", "ConnLimit=0\nBonus=1\n", 1));
    let (section, line, what) = fault(&text);
    assert_eq!(
        (section.as_str(), line),
        ("PLD_POOL_LIC_NODE_0_0", line_of(&text, "Bonus=1"))
    );
    assert_eq!(what, "unknown key Bonus");
    let text = recrc(&text.replacen("Bonus=1\n", "NumLic=1\n", 1));
    let (_, _, what) = fault(&text);
    assert!(what.starts_with("NumLic given twice"), "{what}");
}

#[test]
fn a_missing_or_second_crc_line_is_refused() {
    let full = text();
    let first_crc = full
        .lines()
        .find(|l| l.starts_with("CRC="))
        .expect("crc")
        .to_string();
    let text = full.replacen(&format!("{first_crc}\n"), "", 1);
    let (section, _, what) = fault(&text);
    assert_eq!(
        (section.as_str(), what.as_str()),
        ("LSD", "no CRC line: the section is cut off or edited")
    );
    let text = full.replacen(
        &format!("{first_crc}\n"),
        &format!("{first_crc}\n{first_crc}\n"),
        1,
    );
    let (_, _, what) = fault(&text);
    assert!(what.starts_with("a second CRC line"), "{what}");
}

#[test]
fn a_wrong_version_or_bad_number_is_refused() {
    let text = recrc(&text().replace("Version=1\n", "Version=3\n"));
    assert_eq!(fault(&text).2, "Version=3 (only 1 is known)");
    let text = recrc(&self::text().replace("NumLic=50\n", "NumLic=+50\n"));
    assert_eq!(
        fault(&text).2,
        "NumLic \"+50\" is not a count nor \"uncounted\""
    );
    let text = recrc(&self::text().replace(
        "LicExpTime=134294976000000000",
        "LicExpTime=134294976000000001",
    ));
    assert!(fault(&text).2.contains("not a whole millisecond"));
}

#[test]
fn the_same_feature_twice_is_refused() {
    let text = recrc(&text().replace("PLD=MPM_ADV_RC", "PLD=CITRIX"));
    let (section, line, what) = fault(&text);
    assert_eq!(section, "PLD_POOL_NODE_2");
    assert_eq!(line, line_of(&text, "[PLD_POOL_NODE_2]") + 1);
    assert_eq!(what, "feature CITRIX is also in [PLD_POOL_NODE_0]");
}

#[test]
fn store_writes_only_when_the_terms_change() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("tally.ini");
    let picture = sample();
    let id = Identity::default();
    assert!(matches!(
        store(&path, &picture, &id, NOW),
        Ok(Stored::Written)
    ));
    let first = fs::read(&path).expect("written");
    // in_use and the time change every contact: not a reason to write.
    let mut later = picture.clone();
    later.pools[0].in_use = 99;
    assert!(matches!(
        store(&path, &later, &id, NOW + 60_000),
        Ok(Stored::Unchanged)
    ));
    assert_eq!(fs::read(&path).expect("still there"), first);
    // A REREAD that changed the license set: written.
    let mut reread = picture.clone();
    reread.stamp = "4a0b".to_string();
    reread.pools[1].terms.total = Some(1200);
    assert!(matches!(
        store(&path, &reread, &id, NOW + 120_000),
        Ok(Stored::Written)
    ));
    let cache = read(&path).expect("valid");
    assert_eq!(
        (cache.last_contact_ms, cache.pools[1].total),
        (NOW + 120_000, Some(1200))
    );
    // A damaged file is replaced.
    fs::write(&path, b"garbage").expect("damage");
    assert!(matches!(
        store(&path, &reread, &id, NOW),
        Ok(Stored::Written)
    ));
    assert!(read(&path).is_ok());
    // No temporary file is left behind.
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["tally.ini"]);
}

#[test]
fn a_value_the_file_cannot_hold_is_not_written() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("tally.ini");
    let mut cache = sample_cache();
    cache.pools[0].vendor_string = "a\nb".to_string();
    let err = write(&path, &cache).unwrap_err();
    assert!(matches!(err, CacheError::Picture { .. }), "{err}");
    assert!(!path.exists());
}

#[test]
fn a_missing_file_names_the_file() {
    let err = read(Path::new("/nonexistent/tally.ini")).unwrap_err();
    assert!(
        err.to_string().starts_with("/nonexistent/tally.ini: "),
        "{err}"
    );
}

mod props {
    use proptest::prelude::*;

    use super::*;
    use crate::picture::{Pool, PoolTerms};

    fn text_value() -> impl Strategy<Value = String> {
        // Printable, with the characters that could confuse an INI reader.
        "[ -~éß\u{202e}=\\[\\];,]{0,12}"
    }

    fn terms() -> impl Strategy<Value = PoolTerms> {
        (
            (
                "[A-Z_]{1,8}",
                text_value(),
                text_value(),
                proptest::option::of(any::<u32>()),
            ),
            (
                text_value(),
                proptest::option::of(0..=crate::picture::MAX_EXPIRY_MS),
            ),
            proptest::option::of(text_value()),
            proptest::option::of(text_value()),
            proptest::option::of(any::<u32>()),
            proptest::collection::vec("[A-Z]{1,4}", 0..4),
            (
                proptest::option::of(text_value()),
                proptest::option::of(any::<u32>()),
                any::<u32>(),
            ),
            (proptest::option::of(text_value()), text_value()),
        )
            .prop_map(
                |(
                    (feature, vendor, version, total),
                    (expiry, expiry_ms),
                    start,
                    lt,
                    gp_hours,
                    cl,
                    (sa, odp, overdraft),
                    (dup_group, vendor_string),
                )| PoolTerms {
                    feature,
                    vendor,
                    version,
                    total,
                    expiry,
                    expiry_ms,
                    start,
                    lt,
                    gp_hours,
                    cl,
                    sa,
                    odp,
                    overdraft,
                    dup_group,
                    vendor_string,
                },
            )
    }

    fn picture() -> impl Strategy<Value = Picture> {
        (
            text_value(),
            text_value(),
            any::<u16>(),
            proptest::collection::vec(terms(), 0..6),
        )
            .prop_map(|(stamp, server, port, pools)| Picture {
                stamp,
                server,
                port,
                now_ms: None,
                pools: pools
                    .into_iter()
                    .map(|terms| Pool { terms, in_use: 3 })
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn any_picture_round_trips(picture in picture(), now in any::<u64>()) {
            let cache = Cache::from_picture(&picture, &Identity::default(), now);
            let text = cache.to_text();
            prop_assert_eq!(parse(&text).expect("valid"), cache);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Cache::parse(&bytes, Path::new("c.ini"));
            let _ = crate::offline::log::parse(&bytes, Path::new("c.ini.admissions"));
        }

        #[test]
        fn any_flipped_byte_is_refused(picture in picture(), at in any::<prop::sample::Index>(), xor in 1u8..=255) {
            let cache = Cache::from_picture(&picture, &Identity::default(), NOW);
            let mut bytes = cache.to_text().into_bytes();
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
            match Cache::parse(&bytes, Path::new("c.ini")) {
                Err(CacheError::Corrupt { .. }) => {}
                Ok(read) => prop_assert_eq!(read, cache, "a flip at {} was read differently", i),
                Err(e) => prop_assert!(false, "unexpected error {}", e),
            }
        }
    }
}
