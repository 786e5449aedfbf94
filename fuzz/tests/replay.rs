//! Replays every target's seed corpus and every saved input under
//! `fuzz/regressions/<target>/` (crashes found once, kept) through the
//! targets, without AFL: `cargo test --manifest-path fuzz/Cargo.toml`.

use std::path::Path;

#[test]
fn seeds_and_regressions_pass_every_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, target) in tally_fuzz::TARGETS {
        let seeds = tally_fuzz::seeds(name);
        assert!(!seeds.is_empty(), "{name} has no seeds");
        for (seed, bytes) in &seeds {
            eprintln!("{name}: seed {seed}");
            target(bytes);
        }
        let saved = root.join("regressions").join(name);
        for entry in std::fs::read_dir(&saved).into_iter().flatten().flatten() {
            eprintln!("{name}: {}", entry.path().display());
            target(&std::fs::read(entry.path()).expect("read a saved input"));
        }
    }
}

#[test]
fn formatted_requests_parse_back() {
    for line in [
        "checkout F u h x linger=1.5 count=3 display=:0 version=2.10 wait=0",
        "CHECKIN F h",
        "REMOVE_HANDLE F 18446744073709551615",
        "CHECKOUT F u h x borrow=168",
        "BORROW_RETURN F u h",
        "BORROW_RETURN F u h :0",
    ] {
        let cmd = tally_server::protocol::parse(line.as_bytes()).expect("parses");
        let again = tally_fuzz::format_request(&cmd);
        assert_eq!(tally_server::protocol::parse(again.as_bytes()), Ok(cmd));
    }
}

#[test]
fn a_seed_count_per_target() {
    for (name, _) in tally_fuzz::TARGETS {
        eprintln!("{name}: {} seeds", tally_fuzz::seeds(name).len());
    }
}
