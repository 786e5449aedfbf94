//! tallyctl (being written).
