use super::*;
use crate::license::{parse_str, LicenseSet, PoolLine};

fn key() -> VendorSigningKey {
    VendorSigningKey::from_seed([7; 32])
}

const FILE: &str = "SERVER lic1 ANY 27000\n\
VENDOR acme\n\
# a comment\n\
FEATURE f acme 1.0 31-dec-2030 5 ISSUED=1-jan-2026 SIGN=\"0A1B 2C3D\"\n\
INCREMENT g acme 2.0 permanent 3 \\\n    NOTICE=\"Licensed to  Acme\" \\\n    SIGN=1234\n\
PACKAGE p acme 1.0 COMPONENTS=\"a b\"\n\
FEATURE p acme 1.0 permanent 2\n";

fn statuses(text: &str) -> Vec<(u32, SigStatus)> {
    let k = key().public();
    check_signatures(Some(&k), text)
        .into_iter()
        .map(|s| (s.line, s.status))
        .collect()
}

fn signed() -> String {
    let s = sign(&key(), FILE);
    assert!(s.skipped.is_empty(), "{:?}", s.skipped);
    assert_eq!(s.lines, [4, 5, 8, 9]);
    s.text
}

fn all_valid(text: &str) -> bool {
    statuses(text).iter().all(|(_, s)| *s == SigStatus::Valid)
}

/// The status of the record starting on `line`.
fn status_at(text: &str, line: u32) -> SigStatus {
    statuses(text)
        .into_iter()
        .find(|(l, _)| *l == line)
        .map(|(_, s)| s)
        .unwrap()
}

#[test]
fn sign_then_verify_and_the_rest_of_the_file_is_kept() {
    let text = signed();
    assert!(all_valid(&text), "{:?}", statuses(&text));
    // Only the signed lines changed, each by its appended keyword.
    let before: Vec<&str> = FILE.lines().collect();
    let after: Vec<&str> = text.lines().collect();
    assert_eq!(before.len(), after.len());
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        if [3, 6, 7, 8].contains(&i) {
            assert!(
                a.starts_with(b.trim_end()) && a.contains(" TALLY_SIG="),
                "{a}"
            );
        } else {
            assert_eq!(a, b);
        }
    }
    // The continued INCREMENT gets it on its last physical line.
    assert!(after[6].trim_start().starts_with("SIGN=1234 TALLY_SIG="));
    // tally's parser (without a key) keeps it as an unknown keyword, and
    // FlexLM's SIGN= as it was.
    let set = parse_str("t", &text);
    assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
    let f = set.pools.iter().find(|p| p.feature == "f").unwrap();
    assert_eq!(f.sign.as_deref(), Some("0A1B 2C3D"));
    assert!(f
        .other
        .iter()
        .any(|(k, v)| k == SIG_KEYWORD && v.len() == 128));
    // Without a key nothing is checked.
    let none = check_signatures(None, &text);
    assert_eq!(none.len(), 4);
    assert!(none
        .iter()
        .all(|s| s.status == SigStatus::NotChecked && s.has_sig));
    assert!(check_signatures(None, FILE).iter().all(|s| !s.has_sig));
}

#[test]
fn a_changed_count_date_or_moved_keyword_breaks_the_signature() {
    let text = signed();
    let count = text.replace("31-dec-2030 5 ", "31-dec-2030 6 ");
    assert!(matches!(status_at(&count, 4), SigStatus::Bad(_)));
    assert_eq!(status_at(&count, 5), SigStatus::Valid);
    let date = text.replace("31-dec-2030", "31-dec-2040");
    assert!(matches!(status_at(&date, 4), SigStatus::Bad(_)));
    let issued = text.replace("ISSUED=1-jan-2026", "ISSUED=2-jan-2026");
    assert!(matches!(status_at(&issued, 4), SigStatus::Bad(_)));
    // ISSUED moved after SIGN=: same words, another order.
    let moved = text.replace(
        "ISSUED=1-jan-2026 SIGN=\"0A1B 2C3D\"",
        "SIGN=\"0A1B 2C3D\" ISSUED=1-jan-2026",
    );
    assert_ne!(moved, text);
    assert!(matches!(status_at(&moved, 4), SigStatus::Bad(_)));
    // FlexLM's SIGN= is signed too.
    let sign = text.replace("SIGN=1234", "SIGN=1235");
    assert!(matches!(status_at(&sign, 5), SigStatus::Bad(_)));
    // Another vendor's key verifies nothing.
    let other = VendorSigningKey::from_seed([8; 32]).public();
    assert!(check_signatures(Some(&other), &text)
        .iter()
        .all(|s| matches!(s.status, SigStatus::Bad(_))));
}

#[test]
fn rewrapping_reindenting_and_moving_the_signature_keep_it_valid() {
    let text = signed();
    // The INCREMENT joined onto one line, with CRLF endings and tabs.
    let joined = text
        .replace(" \\\n    NOTICE", "\tNOTICE")
        .replace(" \\\n    SIGN=1234", "   SIGN=1234")
        .replace('\n', "\r\n");
    assert_ne!(joined, text);
    assert!(all_valid(&joined), "{:?}", statuses(&joined));
    // The FEATURE wrapped at a blank, and inside its quoted SIGN= value.
    let wrapped = text
        .replace(" ISSUED=", " \\\n  ISSUED=")
        .replace("0A1B 2C3D", "0A1B \\\n   2C3D");
    assert!(all_valid(&wrapped), "{:?}", statuses(&wrapped));
    // TALLY_SIG moved to the front of the keywords.
    let line4 = text.lines().nth(3).unwrap();
    let (rest, sig) = line4.rsplit_once(' ').unwrap();
    let moved_sig = text.replace(line4, &rest.replace(" ISSUED=", &format!(" {sig} ISSUED=")));
    assert_eq!(status_at(&moved_sig, 4), SigStatus::Valid);
    // But the blanks inside NOTICE's quotes are part of the word only as one.
    let notice = text.replace("to  Acme", "to Acme");
    assert_eq!(status_at(&notice, 5), SigStatus::Valid);
    let notice = text.replace("to  Acme", "to Acme Inc");
    assert!(matches!(status_at(&notice, 5), SigStatus::Bad(_)));
}

#[test]
fn missing_garbled_doubled_and_resigned() {
    let text = signed();
    let missing = FILE.to_string();
    assert_eq!(status_at(&missing, 4), SigStatus::Missing);
    let garbled = text.replacen("TALLY_SIG=", "TALLY_SIG=zz", 1);
    assert!(matches!(status_at(&garbled, 4), SigStatus::Bad(w) if w.contains("128 hex")));
    let line4 = text.lines().nth(3).unwrap();
    let sig = line4.rsplit_once(' ').unwrap().1;
    let doubled = text.replace(line4, &format!("{line4} {sig}"));
    assert!(matches!(status_at(&doubled, 4), SigStatus::Bad(w) if w.contains("2 TALLY_SIG")));
    // Signing again replaces the old signatures: same text (deterministic).
    let again = sign(&key(), &text);
    assert_eq!(again.text, text);
    // Re-signing after an edit makes it valid again.
    let edited = text.replace("31-dec-2030 5 ", "31-dec-2030 6 ");
    assert!(all_valid(&sign(&key(), &edited).text));
}

#[test]
fn verified_parse_refuses_bad_lines_with_file_and_line() {
    let text = signed().replace("31-dec-2030 5 ", "31-dec-2030 50 ");
    let k = key().public();
    let set = parse_str_verified("v.lic", &text, &k);
    let features: Vec<&str> = set.pools.iter().map(|p| p.feature.as_str()).collect();
    // f is refused; g serves; the package p's components a and b replace p.
    assert_eq!(features, ["g", "a", "b"], "{:?}", set.pools);
    assert_eq!(set.diagnostics.len(), 1);
    let d = set.diagnostics[0].to_string();
    assert!(d.starts_with("v.lic:4:"), "{d}");
    assert!(d.contains("FEATURE f: bad tally signature"), "{d}");
    // An unsigned file: every line refused, none served.
    let set = parse_str_verified("u.lic", FILE, &k);
    assert!(set.pools.is_empty());
    assert_eq!(set.diagnostics.len(), 4);
    assert!(set.diagnostics[1]
        .to_string()
        .starts_with("u.lic:5:1: INCREMENT g: no tally signature"));
    // A refused enabling line enables nothing.
    let unsigned_enabler = signed().replace(
        "FEATURE p acme 1.0 permanent 2 TALLY_SIG",
        "FEATURE p acme 1.0 permanent 3 TALLY_SIG",
    );
    let set = parse_str_verified("v.lic", &unsigned_enabler, &k);
    let features: Vec<&str> = set.pools.iter().map(|p| p.feature.as_str()).collect();
    assert_eq!(features, ["f", "g"]);
}

#[test]
fn key_files_round_trip_and_bad_ones_are_named() {
    let k = key();
    let private = k.to_text();
    let public = k.public().to_text();
    assert!(public.starts_with(PUBLIC_KEY_HEADER));
    assert_eq!(VendorKey::from_text(&public), Ok(k.public()));
    assert_eq!(
        VendorSigningKey::from_text(&private).unwrap().public(),
        k.public()
    );
    assert!(!format!("{k:?}").contains(&private.lines().last().unwrap()[..16]));
    assert!(matches!(
        VendorKey::from_text(&private),
        Err(KeyError::Header { .. })
    ));
    assert!(matches!(
        VendorSigningKey::from_text(&public),
        Err(KeyError::Header { .. })
    ));
    let short = format!("{PUBLIC_KEY_HEADER}\nabcd\n");
    assert_eq!(VendorKey::from_text(&short), Err(KeyError::Digits));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Pieces license files are made of, continuations, quotes, CRLF and
    /// stray backslashes included.
    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "FEATURE f v 1.0 permanent 3",
            "INCREMENT g v 2.0 31-dec-2030 uncounted",
            "PACKAGE p v COMPONENTS=\"a b\"",
            "UPGRADE f v 1.0 2.0 permanent 1",
            "feature lower v 1 permanent 1",
            "SERVER h ANY 27000",
            "VENDOR v",
            "# comment",
            "",
            "   ",
            " \\",
            "\\",
            "\t",
            " NOTICE=\"a  b",
            " c\"",
            " SIGN=\"00 11\"",
            " TALLY_SIG=abcd",
            " ISSUED=1-jan-2026",
            "\r",
            "\n",
            "\n",
            "\n",
        ])
    }

    proptest! {
        /// Signing never changes what the file serves, every line it signs
        /// verifies, and signing again changes nothing.
        #[test]
        fn signing_verifies_and_changes_nothing_else(pieces in prop::collection::vec(piece(), 0..40)) {
            let text: String = pieces.concat();
            let k = key();
            let s = sign(&k, &text);
            let sigs = check_signatures(Some(&k.public()), &s.text);
            for line in &s.lines {
                let st = sigs.iter().find(|x| x.line == *line).map(|x| x.status.clone());
                prop_assert_eq!(st, Some(SigStatus::Valid), "line {} of {:?}", line, s.text);
            }
            let strip = |set: LicenseSet| -> Vec<PoolLine> {
                set.pools
                    .into_iter()
                    .map(|mut p| {
                        p.other.retain(|(k, _)| !k.eq_ignore_ascii_case(SIG_KEYWORD));
                        p
                    })
                    .collect()
            };
            if s.skipped.is_empty() && !text.to_ascii_uppercase().contains("TALLY_SIG") {
                prop_assert_eq!(strip(parse_str("t", &text)), strip(parse_str("t", &s.text)));
            }
            prop_assert_eq!(sign(&k, &s.text).text, s.text.clone());
        }
    }
}

#[test]
fn a_signature_that_cannot_be_taken_out_leaves_the_line_as_it_was() {
    // The first TALLY_SIG is quoted: the second, taken out first, is put
    // back, the line is not signed, and it is named.
    let text =
        "FEATURE f v 1.0 permanent 3 TALLY_SIG=\"cd\" TALLY_SIG=ab\nFEATURE g v 1.0 permanent 1\n";
    let s = sign(&key(), text);
    assert_eq!(s.lines, [2]);
    assert_eq!(s.skipped.len(), 1);
    assert_eq!(s.skipped[0].0, 1);
    assert_eq!(s.text.lines().next(), text.lines().next());
}
