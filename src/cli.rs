//! The `orchestrator` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::agents::AgentsPolicy;
use crate::config::{Config, ConfigSources};
use crate::pricing::Pricing;
use crate::store::Store;

/// A GitHub App that turns labelled issues into reviewed pull requests.
#[derive(Debug, Parser)]
#[command(name = "orchestrator", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (default: ./orchestrator.toml when it exists).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (webhook, JSON API, health); migrates the database first.
    Serve,
    /// Apply database migrations to DATABASE_URL and exit.
    Migrate,
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the effective settings, secrets redacted.
    Check,
}

/// Parses arguments and runs the command; the exit code is the command's.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let sources = ConfigSources::from_process(cli.config.clone());
    let config = match Config::load(&sources) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check,
        } => config_check(&config),
        Command::Serve => run_async(config, serve),
        Command::Migrate => run_async(config, migrate),
    }
}

fn config_check(config: &Config) -> ExitCode {
    print!("{}", config.redacted_toml());
    let pricing = match Pricing::load(config.pricing_path.as_deref()) {
        Ok(pricing) => pricing,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    eprintln!("pricing: {} ({} models)", pricing.origin, pricing.len());
    match AgentsPolicy::load(config.agents_path.as_deref()) {
        Ok(policy) => eprintln!("agents policy: {} (sha256 {})", policy.origin, &policy.hash[..12]),
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    }
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    eprintln!("configuration is valid");
    ExitCode::SUCCESS
}

fn run_async<F, Fut>(config: Config, f: F) -> ExitCode
where
    F: FnOnce(Arc<Config>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    crate::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f(Arc::new(config))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let url = config.database_url.expose_secret();
    let store = Store::connect(url, &config.database).await.map_err(|err| {
        anyhow::anyhow!(
            "cannot open the database ({}): {err}",
            crate::config::redact_url(url)
        )
    })?;
    store.migrate().await?;
    Ok(store)
}

async fn serve(config: Arc<Config>) -> anyhow::Result<()> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let store = open_store(&config).await?;
    crate::server::serve(config, store, CancellationToken::new()).await
}

async fn migrate(config: Arc<Config>) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    store.close().await;
    println!("migrations applied");
    Ok(())
}
