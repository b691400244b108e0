#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Integration tests: one binary (each test binary links the whole
//! dependency tree), one module per capability.

#[path = "../support/fake_github/mod.rs"]
mod fake_github;
#[path = "../support/fake_openai.rs"]
mod fake_openai;
mod support;
#[path = "../support/webdriver.rs"]
mod webdriver;

mod agents;
mod api;
mod api_protection;
mod browser;
mod control;
mod crash;
mod dashboard;
mod diff_cli;
mod dockerfile;
mod embeddings;
mod gate;
mod github;
mod intake;
mod memory;
mod metrics;
mod openapi;
mod outbox;
mod pipeline;
mod progress;
mod replicas;
mod run_cli;
mod runner;
mod settle;
mod setup_cli;
mod store;
mod webhook;
mod workspace;
