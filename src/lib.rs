//! orchestrator: a GitHub App that turns labelled issues into reviewed pull
//! requests. See `README.md` for what it does and `docs/` for how.

pub mod agents;
pub mod cli;
pub mod config;
pub mod control;
pub mod gate;
pub mod github;
pub mod html;
pub mod jobs;
pub mod llm;
pub mod memory;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod poll;
pub mod pricing;
pub mod progress;
pub mod reconciler;
pub mod runner;
pub mod server;
pub mod settle;
pub mod setup;
pub mod store;
pub mod telemetry;
pub mod webhook;
pub mod workspace;
