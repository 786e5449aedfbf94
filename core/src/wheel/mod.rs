//! Placeholder: the timer wheel is being written.
