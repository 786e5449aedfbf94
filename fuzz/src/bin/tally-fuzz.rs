//! The AFL++ entry point: `tally-fuzz TARGET` fuzzes one target (stdin or
//! AFL's shared-memory input, persistent mode); `tally-fuzz seeds TARGET DIR`
//! writes that target's seed corpus, `tally-fuzz dict TARGET FILE` its AFL
//! dictionary. Built by `fuzz/run` with `cargo afl build --features afl`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

fn usage() -> ExitCode {
    let names: Vec<&str> = tally_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
    eprintln!(
        "usage: tally-fuzz TARGET | seeds TARGET DIR | dict TARGET FILE | list\ntargets: {}",
        names.join(" ")
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        ["list"] => {
            let mut out = std::io::stdout().lock();
            for (name, _) in tally_fuzz::TARGETS {
                // A reader that stops early is no error.
                if writeln!(out, "{name}").is_err() {
                    break;
                }
            }
            ExitCode::SUCCESS
        }
        ["seeds", target, dir] if tally_fuzz::target(target).is_some() => {
            let dir = Path::new(dir);
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("tally-fuzz: cannot create {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
            let seeds = tally_fuzz::seeds(target);
            for (name, bytes) in &seeds {
                if let Err(e) = std::fs::write(dir.join(name), bytes) {
                    eprintln!("tally-fuzz: cannot write seed {name}: {e}");
                    return ExitCode::FAILURE;
                }
            }
            println!("{}", seeds.len());
            ExitCode::SUCCESS
        }
        ["dict", target, file] if tally_fuzz::target(target).is_some() => {
            let mut text = String::new();
            for (i, word) in tally_fuzz::dictionary(target).iter().enumerate() {
                let escaped: String = word
                    .bytes()
                    .map(|b| match b {
                        b'"' | b'\\' => format!("\\{}", b as char),
                        0x20..=0x7e => (b as char).to_string(),
                        _ => format!("\\x{b:02x}"),
                    })
                    .collect();
                text.push_str(&format!("w{i}=\"{escaped}\"\n"));
            }
            match std::fs::write(file, text) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tally-fuzz: cannot write {file}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        [name] => match tally_fuzz::target(name) {
            Some(target) => {
                afl::fuzz!(|data: &[u8]| target(data));
                ExitCode::SUCCESS
            }
            None => usage(),
        },
        _ => usage(),
    }
}
