//! `tallyctl` (also `lmutil`, `lmstat`, ...): see [`tally_client::ctl`].

fn main() {
    std::process::exit(tally_client::ctl::main_from(std::env::args_os()));
}
