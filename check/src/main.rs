//! `tally-check FILE [--max-steps N] [--unchecked-denials]`: checks a recorded
//! history (the text form of `tally_check::history`) for a linearizable
//! count. Exit status: 0 linearizable, 1 not, 2 gave up or a bad file.

use std::process::ExitCode;

use tally_check::{Checker, Denials, History, Verdict};

const USAGE: &str = "usage: tally-check FILE [--max-steps N] [--unchecked-denials]

Checks a recorded history of one feature (a `limit N` line, then one
`client kind handle invoked responded outcome` line per operation; kind:
checkout, checkin, expiry; outcome: granted, denied, released, not_held,
unknown) for a linearization that keeps the count within the limit and
agrees with every reply. Exit status: 0 linearizable, 1 not, 2 gave up or
a bad file.";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut file, mut checker) = (None, Checker::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--max-steps" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => checker = checker.max_steps(n),
                None => return usage(),
            },
            "--unchecked-denials" => checker = checker.denials(Denials::Unchecked),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ if file.is_none() && !a.starts_with('-') => file = Some(a),
            _ => return usage(),
        }
    }
    let Some(file) = file else { return usage() };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tally-check: {file}: {e}");
            return ExitCode::from(2);
        }
    };
    let history = match History::parse(&text) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("tally-check: {file}: {e}");
            return ExitCode::from(2);
        }
    };
    match checker.check(&history) {
        Verdict::Linearizable { order } => {
            println!(
                "linearizable: {} operations, {} took effect in the order found",
                history.ops().len(),
                order.len()
            );
            ExitCode::SUCCESS
        }
        Verdict::Violation(v) => {
            println!("not linearizable: {v}");
            ExitCode::from(1)
        }
        Verdict::GaveUp { steps } => {
            println!("gave up after {steps} search steps (--max-steps)");
            ExitCode::from(2)
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}
