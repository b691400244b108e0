#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Integration tests: one binary (each test binary links the whole
//! dependency tree), one module per capability.

#[path = "../support/fake_github/mod.rs"]
mod fake_github;
#[path = "../support/fake_openai.rs"]
mod fake_openai;
mod support;

mod agents;
mod api;
mod control;
mod crash;
mod diff_cli;
mod gate;
mod github;
mod intake;
mod metrics;
mod outbox;
mod pipeline;
mod progress;
mod run_cli;
mod runner;
mod settle;
mod store;
mod webhook;
mod workspace;
