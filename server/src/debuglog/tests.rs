use super::*;
use crate::debuglog::Cause;

fn holder() -> HolderBuf {
    HolderBuf::new("USER15", "GENE-VM-2K3", "console", "ec26edf8")
}

#[test]
fn counts_agree_with_their_nouns() {
    assert_eq!(counted(1u32, "checkout", "checkouts"), "1 checkout");
    assert_eq!(counted(0u32, "checkout", "checkouts"), "0 checkouts");
    assert_eq!(counted(2u64, "line", "lines"), "2 lines");
}

#[test]
fn lines_match_lmgrd() {
    let h = holder();
    assert_eq!(
        format_license_line(Action::Out(OutKind::New), "MPM_ADV_RC", &h, 1),
        "OUT: \"MPM_ADV_RC\" USER15@GENE-VM-2K3 [ec26edf8]"
    );
    assert_eq!(
        format_license_line(Action::In(Cause::Checkin), "MPM_ADV_RC", &h, 3),
        "IN: \"MPM_ADV_RC\" USER15@GENE-VM-2K3 [ec26edf8]  (3 licenses)"
    );
    assert_eq!(
        format_license_line(Action::Denied(Reason::AllInUse), "F", &h, 1),
        "DENIED: \"F\" USER15@GENE-VM-2K3 [ec26edf8]  (Licensed number of users already reached. (-4,342))"
    );
    assert_eq!(
        format_license_line(Action::Removing, "F", &h, 1),
        "REMOVING USER15@GENE-VM-2K3:console from F"
    );
    assert_eq!(
        format_license_line(
            Action::Removing,
            "F",
            &HolderBuf::new("bob", "pc2", "", "h1"),
            1
        ),
        "REMOVING bob@pc2 from F"
    );
    assert_eq!(
        format_license_line(Action::OutOverdraft(OutKind::New), "F", &h, 2),
        "OUT: \"F\" USER15@GENE-VM-2K3 [ec26edf8]  (2 licenses)  (OVERDRAFT)"
    );
    assert_eq!(
        format_license_line(Action::In(Cause::IdleTimeout), "F", &h, 1),
        "IN: \"F\" USER15@GENE-VM-2K3 [ec26edf8]  (INACTIVE)"
    );
    assert_eq!(
        format_license_line(Action::Queued, "F", &h, 1),
        "QUEUED: \"F\" USER15@GENE-VM-2K3 [ec26edf8]"
    );
}

#[test]
fn log_target_plus_means_append() {
    assert_eq!(
        LogTarget::from_arg("+/var/log/t.log"),
        LogTarget::File {
            path: "/var/log/t.log".into(),
            append: true
        }
    );
    assert_eq!(
        LogTarget::from_arg("t.log"),
        LogTarget::File {
            path: "t.log".into(),
            append: false
        }
    );
}
