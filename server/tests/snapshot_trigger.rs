//! Black-box test of the journal's snapshot trigger: a snapshot is taken
//! once the segment reaches `--snapshot-every-kib` or the size of the last
//! snapshot, whichever is larger (`journal::snapshot_threshold`). With many
//! licenses held a snapshot is many times the threshold; a fixed threshold
//! snapshotted again at every crossing. The real `tallyd` holds thousands
//! of lingering licenses with a 16 KiB threshold; the generations it
//! starts (the numbers in the state dir's file names) are counted against
//! the threshold crossings its journal made; then a `kill -9` and a
//! restart must restore every one.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::{eventually, Scratch, Tallyd};
use tally_server::journal::files;

const HELD: usize = 4000;

/// `--snapshot-every-kib`.
const EVERY_KIB: u64 = 16;

fn license() -> String {
    format!("SERVER this_host ANY 27000\nVENDOR CITRIX\nFEATURE F CITRIX 1.0 permanent {HELD}\n")
}

fn args() -> Vec<String> {
    ["--durability", "sync", "--snapshot-every-kib"]
        .iter()
        .map(|s| s.to_string())
        .chain([EVERY_KIB.to_string()])
        .collect()
}

/// The newest generation in the state dir (its segments' numbers).
fn newest_gen(state: &Path) -> u64 {
    std::fs::read_dir(state)
        .expect("list the state dir")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let hex = name.strip_prefix("journal-")?.strip_suffix(".tly")?;
            u64::from_str_radix(hex, 16).ok()
        })
        .max()
        .expect("a segment in the state dir")
}

/// The size of segment `gen`'s file, bytes.
fn segment_size(state: &Path, gen: u64) -> u64 {
    std::fs::metadata(files::segment_path(state, gen))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Waits until no background snapshot is being written: the newest
/// generation's snapshot is whole (renamed into place).
fn no_snapshot_running(state: &Path) {
    assert!(
        eventually(Duration::from_secs(30), || {
            files::snapshot_path(state, newest_gen(state)).exists()
        }),
        "a background snapshot ends"
    );
}

/// Checks out handles `from..to`, lingering a day, pipelined in batches of
/// 200 (less than the threshold's worth of records); every reply (sync
/// mode) comes once its record is durable. Between batches it waits for
/// a background snapshot that started to end, so that a snapshot being
/// written never hides a crossing of the threshold (the journal takes no
/// second snapshot while one is written).
fn hold(t: &Tallyd, state: &Path, from: usize, to: usize) {
    let s = TcpStream::connect(t.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    let mut i = from;
    while i < to {
        let end = (i + 200).min(to);
        let mut buf = String::new();
        for k in i..end {
            buf.push_str(&format!("CHECKOUT F u{} pc h{k} linger=86400\n", k % 7));
        }
        w.write_all(buf.as_bytes()).expect("send");
        for k in i..end {
            let mut line = String::new();
            r.read_line(&mut line).expect("reply");
            assert!(line.starts_with("OK"), "checkout {k}: {line}");
        }
        i = end;
        std::thread::sleep(Duration::from_millis(20));
        no_snapshot_running(state);
    }
}

#[test]
fn a_snapshot_bigger_than_the_threshold_is_not_retaken_at_every_crossing() {
    let state = Scratch::new("snapshot-trigger");
    let args = args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut t = Tallyd::start_with_state(&license(), &args, &state.0);
    let first = newest_gen(&state.0);

    // The journal's bytes per checkout record, from a few in the segment
    // the start made (far below the threshold: no snapshot yet).
    let probe = 20;
    let empty = segment_size(&state.0, first);
    hold(&t, &state.0, 0, probe);
    assert_eq!(newest_gen(&state.0), first, "no snapshot within 20 records");
    let per_record = (segment_size(&state.0, first) - empty) / probe as u64;
    assert!(per_record > 0, "the records are in the segment");

    hold(&t, &state.0, probe, HELD);
    let last = newest_gen(&state.0);
    let taken = last - first;
    let every = EVERY_KIB * 1024;
    let journaled = HELD as u64 * per_record;
    let crossings = journaled / every;
    let snapshot = files::snapshot_size(&state.0, last);
    eprintln!(
        "{HELD} held: {journaled} B journaled ({per_record} B a record), {crossings} crossings of {every} B, {taken} snapshots, the last {snapshot} B"
    );
    assert!(
        snapshot > 4 * every,
        "the test needs a snapshot several times the threshold: {snapshot} B"
    );
    assert!(
        taken >= 2,
        "the threshold still triggers snapshots: {taken}"
    );
    assert!(
        taken * 3 <= crossings,
        "{taken} snapshots for {crossings} crossings of the threshold: one at (nearly) every crossing"
    );

    // Nothing acknowledged is lost across these snapshots.
    t.kill9();
    let t2 = Tallyd::start_with_state(&license(), &args, &state.0);
    let mut c = t2.connect();
    assert_eq!(c.in_use("F"), HELD as u64, "every held license restored");
    let holders = c.holders("F");
    let mut want: Vec<String> = (0..HELD).map(|k| format!("h{k}")).collect();
    want.sort();
    assert_eq!(holders, want, "the very handles restored");
}
