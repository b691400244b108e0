#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Integration tests: one binary (each test binary links the whole
//! dependency tree), one module per capability.

#[path = "../support/fake_github/mod.rs"]
mod fake_github;
mod support;

mod api;
mod control;
mod crash;
mod diff_cli;
mod gate;
mod github;
mod intake;
mod outbox;
mod progress;
mod store;
mod webhook;
