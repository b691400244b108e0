//! The `orchestrator` command line.

mod context;
mod diff;
mod run;
mod setup;

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
    /// Run the whole pipeline on a local git repository, without GitHub: plan,
    /// code, apply and commit on a new branch `orchestrator/task-<id8>-<slug>`.
    Run {
        /// The repository (its working tree is not touched; commits go to the new branch).
        #[arg(long, value_name = "DIR")]
        repo: PathBuf,
        /// What to do, in plain words.
        #[arg(long, value_name = "TEXT")]
        task: String,
    },
    /// Register the GitHub App from app-manifest.yml (GitHub's manifest flow) and
    /// write its id, webhook secret and private key into .env and a key file.
    Setup(setup::SetupArgs),
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The context engine: what the coder is shown.
    Context {
        #[command(subcommand)]
        command: ContextCommand,
    },
    /// Work with patches: the diff engine the coder's answers go through.
    Diff {
        #[command(subcommand)]
        command: DiffCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ContextCommand {
    /// Rank the files of a repository for a query: repo-relative paths, best first.
    Rank {
        /// A git checkout or a plain directory.
        #[arg(long, value_name = "DIR")]
        repo: PathBuf,
        /// A file holding the query (an issue text, a step description…).
        #[arg(long, value_name = "FILE")]
        query_file: PathBuf,
        /// How many files to print.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
}

#[derive(Debug, Subcommand)]
enum DiffCommand {
    /// Apply a unified diff (or the full-file form) under DIR, all files or none.
    ///
    /// Exit 0: applied, one line per file on stdout. Exit 1: refused, one reason
    /// per refused file or hunk on stderr, nothing changed. Exit 2: usage or I/O error.
    Apply {
        /// The directory the patch's paths are relative to (need not be a git repository).
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// Check and report without writing anything.
        #[arg(long)]
        dry_run: bool,
        /// The patch file, or `-` for standard input.
        #[arg(value_name = "PATCH")]
        patch: PathBuf,
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
    match cli.command {
        // The diff engine needs no configuration: it runs even when that is invalid.
        Command::Diff {
            command: DiffCommand::Apply { root, dry_run, patch },
        } => diff::apply(&root, &patch, dry_run),
        Command::Config {
            command: ConfigCommand::Check,
        } => with_config(&cli.config, |c| config_check(&c)),
        // Setup comes before any configuration exists.
        Command::Setup(args) => setup::run(args),
        Command::Serve => with_config(&cli.config, |c| run_async(c, serve)),
        Command::Migrate => with_config(&cli.config, |c| run_async(c, migrate)),
        Command::Run { repo, task } => with_config(&cli.config, |c| run_local(c, repo, task)),
        Command::Context {
            command:
                ContextCommand::Rank {
                    repo,
                    query_file,
                    top,
                },
        } => with_config(&cli.config, |c| context::rank(&c, &repo, &query_file, top)),
    }
}

/// Loads the configuration, or reports why it is invalid (exit 2).
fn with_config(file: &Option<PathBuf>, run: impl FnOnce(Config) -> ExitCode) -> ExitCode {
    match Config::load(&ConfigSources::from_process(file.clone())) {
        Ok(config) => run(config),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
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

fn run_local(config: Config, repo: PathBuf, task: String) -> ExitCode {
    let mut succeeded = false;
    let code = run_async(config, |config| async {
        succeeded = run::run(config, repo, task).await?;
        Ok(())
    });
    if code == ExitCode::SUCCESS && !succeeded {
        ExitCode::from(1)
    } else {
        code
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
