use super::*;

const REPORT: &[u8] = br#"{"features":[{"name":"MATLAB","peak":17}]}"#;

fn file() -> Vec<u8> {
    export(REPORT, "lic1", "2026-12-03T14:05:06Z")
}

#[test]
fn an_export_verifies_and_gives_the_report_back() {
    let e = verify(&file()).unwrap();
    assert_eq!(e.part(REPORT_PART), Some(REPORT));
    assert_eq!(e.manifest.host, "lic1");
    assert_eq!(e.manifest.created, "2026-12-03T14:05:06Z");
    assert_eq!(e.manifest.parts[0].sha256, sha256_hex(REPORT));
    assert_eq!(e.manifest.parts[0].size, REPORT.len() as u64);
    let text = String::from_utf8(file()).unwrap();
    assert!(text.starts_with("tally-export 1\nmanifest "), "{text}");
    assert!(text.ends_with("\nend\n"), "{text}");
}

#[test]
fn a_flipped_byte_in_the_report_names_its_part() {
    let mut f = file();
    let at = f.windows(6).position(|w| w == b"MATLAB").unwrap();
    f[at] ^= 0x01;
    match verify(&f) {
        Err(VerifyError::PartDigest {
            name,
            expected,
            found,
        }) => {
            assert_eq!(name, "report.json");
            assert_eq!(expected, sha256_hex(REPORT));
            assert_ne!(found, expected);
        }
        other => panic!("{other:?}"),
    }
    let msg = verify(&f).unwrap_err().to_string();
    assert!(
        msg.contains("part report.json: SHA-256 does not match"),
        "{msg}"
    );
}

#[test]
fn every_flipped_byte_is_found() {
    let f = file();
    for i in 0..f.len() {
        let mut g = f.clone();
        g[i] ^= 0x20;
        assert!(verify(&g).is_err(), "byte {i} flipped went unnoticed");
    }
}

#[test]
fn a_flipped_byte_in_the_manifest_is_the_manifests_digest() {
    let mut f = file();
    let at = f.windows(4).position(|w| w == b"lic1").unwrap();
    f[at] = b'X';
    assert!(matches!(
        verify(&f),
        Err(VerifyError::ManifestDigest { .. })
    ));
}

#[test]
fn cut_or_padded_files_are_damaged() {
    let f = file();
    for cut in [f.len() - 1, f.len() - 5, f.len() / 2, 20] {
        assert!(
            matches!(verify(&f[..cut]), Err(VerifyError::Structure { .. })),
            "cut at {cut}: {:?}",
            verify(&f[..cut])
        );
    }
    let mut g = f.clone();
    g.extend_from_slice(b"more");
    assert!(matches!(verify(&g), Err(VerifyError::Structure { .. })));
    assert_eq!(verify(b"hello\n"), Err(VerifyError::NotAnExport));
    assert_eq!(verify(b""), Err(VerifyError::NotAnExport));
}

#[test]
fn an_empty_report_round_trips() {
    let f = export(b"", "h", "t");
    assert_eq!(verify(&f).unwrap().part(REPORT_PART), Some(&b""[..]));
}

#[test]
fn a_report_holding_the_framing_words_round_trips() {
    let r = b"\nend\npart report.json 3\nabc\nend\n";
    assert_eq!(
        verify(&export(r, "h", "t")).unwrap().part(REPORT_PART),
        Some(&r[..])
    );
}

#[test]
fn a_well_framed_file_without_a_report_is_not_intact() {
    let manifest = serde_json::to_vec_pretty(&Manifest {
        format: "tally-export".into(),
        version: VERSION,
        created: "2026-12-03T14:05:06Z".into(),
        host: "lic1".into(),
        upload_type: "CTX_UPLOAD_TYPE_COMPLIANCE".into(),
        parts: Vec::new(),
    })
    .unwrap();
    let mut f = format!(
        "{MAGIC}\nmanifest {} {}\n",
        manifest.len(),
        sha256_hex(&manifest)
    )
    .into_bytes();
    f.extend_from_slice(&manifest);
    f.extend_from_slice(b"\nend\n");
    let e = verify(&f).unwrap_err();
    assert!(e.to_string().contains("no report.json part"), "{e}");
}
