//! tally-bench
