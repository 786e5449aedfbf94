//! tally-server: the network front end of tally.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
