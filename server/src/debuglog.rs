//! debuglog (being written).
