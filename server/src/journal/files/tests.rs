use super::*;
use crate::journal::record::{encode_in, encode_instance, Instance, TAG_OUT};
use tally_core::engine::Names;

pub(crate) fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tally-journal-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub(crate) fn out(id: u64, renewed: bool, deadline: u64) -> Vec<u8> {
    let mut p = Vec::new();
    encode_instance(
        &mut p,
        TAG_OUT,
        &Instance {
            id,
            at_ms: 1000 + id,
            linger_ms: 60_000,
            deadline_ms: Some(deadline),
            count: 1,
            version: 0,
            renewed,
            names: Names {
                feature: "F",
                user: "u",
                host: "h",
                display: "",
                handle: &format!("h{id}"),
            },
        },
    );
    p
}

pub(crate) fn append(path: &Path, first_seq: u64, payloads: &[Vec<u8>]) {
    let mut buf = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        record::frame(&mut buf, first_seq + i as u64, p);
    }
    let mut f = OpenOptions::new().append(true).open(path).expect("open");
    f.write_all(&buf).expect("append");
}

/// The live state, built record by record, equals snapshot + tail after
/// a recovery, and a torn tail costs only the torn record.
#[test]
fn snapshot_plus_tail_equals_the_live_state() {
    let d = dir("snap");
    let _lock = lock_dir(&d).expect("lock");
    let mut live = State::default();
    let mut first: Vec<Vec<u8>> = (1..=5).map(|i| out(i, false, 50_000)).collect();
    let mut rel = Vec::new();
    encode_in(&mut rel, 2, 1500);
    first.push(rel);
    for p in &first {
        live.apply(&record::decode(p).expect("decode"), p);
    }
    start_generation(&d, 1, &State::default()).expect("gen 1");
    append(&segment_path(&d, 1), 0, &first);
    // A snapshot of the state so far starts generation 2.
    start_generation(&d, 2, &live).expect("gen 2");
    let tail = vec![out(3, true, 90_000), out(6, false, 70_000)];
    for p in &tail {
        live.apply(&record::decode(p).expect("decode"), p);
    }
    append(&segment_path(&d, 2), 6, &tail);
    // A torn record after the tail.
    let mut torn = Vec::new();
    record::frame(&mut torn, 8, &out(7, false, 1));
    torn.truncate(torn.len() - 3);
    let mut f = OpenOptions::new()
        .append(true)
        .open(segment_path(&d, 2))
        .expect("open");
    f.write_all(&torn).expect("append");
    drop(f);

    let rec = recover(&d, false).expect("recover");
    assert_eq!(rec.state, live);
    assert_eq!(rec.next_gen, 3);
    assert_eq!(rec.records, 2);
    assert_eq!(rec.dropped_bytes, torn.len() as u64);
    assert!(rec.notes[0].contains("torn write"), "{:?}", rec.notes);
    // Generation 1 was deleted when 2 began.
    assert!(!segment_path(&d, 1).exists() && !snapshot_path(&d, 1).exists());
    let _ = std::fs::remove_dir_all(&d);
}

/// A periodic snapshot is written in the background after segment
/// `gen + 1` has started: a crash before it is renamed into place
/// leaves snapshot `gen`, segment `gen` and segment `gen + 1` (and a
/// partial tmp file), and recovery must replay both segments.
#[test]
fn a_crash_during_a_background_snapshot_loses_nothing() {
    let d = dir("background");
    let _lock = lock_dir(&d).expect("lock");
    let mut live = State::default();
    let first: Vec<Vec<u8>> = (1..=3).map(|i| out(i, false, 50_000)).collect();
    let second = vec![out(2, true, 80_000), out(4, false, 60_000)];
    for p in first.iter().chain(&second) {
        live.apply(&record::decode(p).expect("decode"), p);
    }
    start_generation(&d, 1, &State::default()).expect("gen 1");
    append(&segment_path(&d, 1), 0, &first);
    create_segment(&d, 2).expect("segment 2");
    append(&segment_path(&d, 2), 3, &second);
    std::fs::write(
        snapshot_path(&d, 2).with_extension("tmp"),
        b"TALLYS01partial",
    )
    .expect("tmp");

    let rec = recover(&d, false).expect("recover");
    assert_eq!(rec.state, live);
    assert_eq!(rec.records, 5);
    assert_eq!(rec.next_gen, 3);
    let _ = std::fs::remove_dir_all(&d);
}

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(name: &str, size: &str) -> Option<Tmpfs> {
        let d = dir(name);
        std::fs::create_dir_all(&d).expect("mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&d)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Some(Tmpfs(d))
        } else {
            eprintln!("SKIPPED: {name}: cannot mount a tmpfs (needs root or CAP_SYS_ADMIN)");
            let _ = std::fs::remove_dir(&d);
            None
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// On a full disk a snapshot that does not fit fails without touching
/// the generation before it, and leaves no half-written file behind.
#[test]
fn a_snapshot_that_does_not_fit_keeps_the_old_generation() {
    let Some(fs) = Tmpfs::mount("snapfull", "64k") else {
        return;
    };
    let d = fs.0.join("state");
    let _lock = lock_dir(&d).expect("lock");
    start_generation(&d, 1, &State::default()).expect("gen 1");
    let three: Vec<Vec<u8>> = (1..=3).map(|i| out(i, false, 50_000)).collect();
    append(&segment_path(&d, 1), 0, &three);
    let mut big = State::default();
    for i in 1..=2000 {
        let p = out(i, false, 50_000);
        big.apply(&record::decode(&p).expect("decode"), &p);
    }
    let e = start_generation(&d, 2, &big).expect_err("it cannot fit in 64 KiB");
    assert!(
        e.to_string().contains("snapshot-0000000000000002.tmp"),
        "{e}"
    );
    let mut names: Vec<String> = std::fs::read_dir(&d)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "journal-0000000000000001.tly",
            "lock",
            "snapshot-0000000000000001.tly"
        ]
    );
    assert_eq!(recover(&d, false).expect("recover").state.live.len(), 3);
}

#[test]
fn a_damaged_snapshot_is_refused_with_its_name() {
    let d = dir("damaged");
    let _lock = lock_dir(&d).expect("lock");
    let mut s = State::default();
    let p = out(1, false, 9);
    s.apply(&record::decode(&p).expect("decode"), &p);
    start_generation(&d, 4, &s).expect("gen");
    let path = snapshot_path(&d, 4);
    let mut bytes = std::fs::read(&path).expect("read");
    let n = bytes.len();
    bytes[n - 5] ^= 0x10;
    std::fs::write(&path, bytes).expect("write");
    let e = recover(&d, false).expect_err("must refuse").to_string();
    assert!(
        e.contains("snapshot-0000000000000004.tly is damaged"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
