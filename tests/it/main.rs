#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Integration tests: one binary (each test binary links the whole
//! dependency tree), one module per capability.

mod support;

mod api;
mod crash;
mod diff_cli;
mod intake;
mod store;
mod webhook;
