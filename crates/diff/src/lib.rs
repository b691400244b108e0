//! The diff engine (in progress).
