//! `tallyctl` (also `lmutil`, `lmstat`, ...): see [`tally_server::ctl`].

fn main() {
    std::process::exit(tally_server::ctl::main_from(std::env::args_os()));
}
