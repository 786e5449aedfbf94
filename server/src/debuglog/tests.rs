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

const START: u64 = 1_700_000_000_000;

/// A fresh scratch path for this test (removed by the test).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tally-debuglog-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn engine() -> Arc<Engine> {
    let set = tally_core::license::parse_str("t.lic", "FEATURE F V 1.0 permanent 2\n");
    assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
    Arc::new(Engine::new(
        &set,
        tally_core::engine::EngineConfig::default(),
    ))
}

fn out_event(engine: &Engine, handle: &str) -> Event {
    Event::License {
        at_ms: START,
        action: Action::Out(OutKind::New),
        feature: FeatureRef::Id(engine.feature_id("F").unwrap()),
        holder: HolderBuf::new("u", "pc", "", handle),
        count: 1,
        debug: true,
    }
}

/// The numbers `n` of the lines naming `[{prefix}{n}]`, in file order.
fn handles(text: &str, prefix: &str) -> Vec<usize> {
    let open = format!("[{prefix}");
    text.lines()
        .filter_map(|l| {
            let at = l.find(&open)? + open.len();
            l[at..].strip_suffix(']')?.parse().ok()
        })
        .collect()
}

#[test]
fn a_loops_events_keep_their_order_across_batches() {
    let dir = scratch("order");
    let path = dir.join("debug.log");
    let engine = engine();
    let clock = Arc::new(tally_core::clock::ManualClock::new(START));
    let target = LogTarget::File {
        path: path.clone(),
        append: false,
    };
    let log = DebugLog::start(&target, engine.clone(), clock).unwrap();
    log.serve().unwrap();
    // Two loops at once; each hands over partial batches (a poll round's)
    // and full ones, with lines that must not be lost among its events.
    let n = 10 * BATCH_EVENTS + 7;
    let loops: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let mut batch = log.handle().batch();
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0..n {
                    batch.push(out_event(&engine, &format!("{name}{i}")));
                    if i % 5 == 4 {
                        batch.hand_over(); // the end of a round
                    }
                    if i % 50 == 49 {
                        batch.line(START, "lmgrd", format!("{name} line [{name}{}]", i + 1));
                        batch.push(out_event(&engine, &format!("{name}{}", i + 1)));
                    }
                }
                // Dropping the batch hands over what it holds.
            })
        })
        .collect();
    for l in loops {
        l.join().unwrap();
    }
    log.handle().flush();
    let text = std::fs::read_to_string(&path).unwrap();
    for name in ["a", "b"] {
        let seen = handles(&text, name);
        let mut want: Vec<usize> = Vec::new();
        for i in 0..n {
            want.push(i);
            if i % 50 == 49 {
                want.extend([i + 1, i + 1]);
            }
        }
        assert_eq!(seen, want, "loop {name}'s lines out of order or lost");
    }
    assert_eq!(log.handle().dropped(), 0);
    log.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A debug log on a FIFO nobody reads: the writer blocks in `write`.
/// What the loops queue meanwhile is bounded (the rest is dropped and
/// counted, never lost silently), and once the reader drains it every
/// drop is reported in the log.
#[test]
fn a_writer_that_cannot_keep_up_bounds_the_queue_and_counts_drops() {
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;

    let dir = scratch("fifo");
    let path = dir.join("debug.log");
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // The read end, opened first (without it the writer's open would
    // block) and not read from until the end.
    let mut reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .unwrap();
    let pipe_bytes = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_GETPIPE_SZ) };
    assert!(pipe_bytes > 0);
    let engine = engine();
    let clock = Arc::new(tally_core::clock::ManualClock::new(START));
    let target = LogTarget::File {
        path: path.clone(),
        append: true,
    };
    let log = DebugLog::start(&target, engine.clone(), clock).unwrap();
    log.serve().unwrap();

    let sent = 4 * LOG_CHANNEL_EVENTS;
    let mut batch = log.handle().batch();
    for i in 0..sent {
        batch.push(out_event(&engine, &format!("{:07}", i)));
    }
    batch.hand_over();
    let dropped = log.handle().dropped();
    // What was not dropped is in the channel, in the writer's hands (one
    // batch), or in its buffer and the pipe.
    let line = {
        let mut v = Vec::new();
        write_prefix(&mut v, &mut (0, [0; 8]), START, "V");
        let h = HolderBuf::new("u", "pc", "", "0000000");
        v.extend(format_license_line(Action::Out(OutKind::New), "F", &h, 1).bytes());
        v.len() + 1
    };
    let buffered = (WRITE_BUFFER + pipe_bytes as usize) / line + 1;
    let kept = sent as u64 - dropped;
    assert!(dropped > 0, "a writer stuck in write dropped nothing");
    assert!(
        kept <= (LOG_CHANNEL_EVENTS + BATCH_EVENTS + buffered) as u64,
        "{kept} events queued: more than the channel's bound"
    );

    // Someone reads the FIFO at last: everything kept is written, then
    // the report of what was dropped (on the next event).
    unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETFL, 0) };
    let drain = std::thread::spawn(move || {
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        text
    });
    // Waiting for room: the channel may still be full.
    batch.push_wait(out_event(&engine, "9999999"));
    drop(batch);
    log.handle().flush();
    assert_eq!(log.handle().dropped(), dropped);
    log.shutdown();
    let text = drain.join().unwrap();
    let seen = handles(&text, "");
    assert_eq!(
        seen.len() as u64,
        kept + 1,
        "an event neither written nor counted"
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "out of order");
    let reported: u64 = text
        .lines()
        .filter(|l| l.contains("dropped: the log writer fell behind"))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words[2].parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(reported, dropped, "drops not reported as they were counted");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// docs/operations.md's bound in bytes: 65,536 queued events of at most
/// 192 bytes (12 MiB).
#[test]
fn an_event_is_small_enough_for_the_documented_bound() {
    assert_eq!(LOG_CHANNEL_EVENTS, 65_536);
    assert!(
        std::mem::size_of::<Event>() <= 192,
        "{}",
        std::mem::size_of::<Event>()
    );
}
