//! Unit tests of the commands, with a manual clock.
