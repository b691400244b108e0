//! `orchestrator setup`: the flags and the console side of the App manifest flow.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::setup::{SetupError, SetupOptions};

#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// Public URL of this deployment's webhook, e.g. https://orch.example.com/webhook.
    #[arg(long, value_name = "URL")]
    webhook_url: String,
    /// The App's homepage (default: the webhook URL's origin).
    #[arg(long, value_name = "URL")]
    homepage_url: Option<String>,
    /// The App's name (default: the manifest's; names are unique across GitHub).
    #[arg(long)]
    name: Option<String>,
    /// Create the App under this organization (default: your personal account).
    #[arg(long, value_name = "LOGIN")]
    org: Option<String>,
    /// Port of the local page on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 3333)]
    port: u16,
    /// GitHub's web address (GitHub Enterprise Server: https://HOST).
    #[arg(long, value_name = "URL", default_value = "https://github.com")]
    github_url: String,
    /// GitHub's REST API (GitHub Enterprise Server: https://HOST/api/v3); default:
    /// GITHUB_API_URL from the environment or the .env file, else https://api.github.com.
    #[arg(long, value_name = "URL", env = "GITHUB_API_URL")]
    api_url: Option<String>,
    /// The .env file to update (other lines are kept).
    #[arg(long, value_name = "PATH", default_value = ".env")]
    env_file: PathBuf,
    /// Where the App's private key is written (mode 0600).
    #[arg(long, value_name = "PATH", default_value = "./orchestrator.private-key.pem")]
    key_file: PathBuf,
    /// A manifest instead of the built-in app-manifest.yml.
    #[arg(long, value_name = "PATH")]
    manifest: Option<PathBuf>,
    /// Replace an existing key file.
    #[arg(long)]
    force: bool,
}

pub fn run(args: SetupArgs) -> ExitCode {
    // The configuration may not be complete yet, but a GitHub Enterprise URL in
    // .env already says where the App lives.
    let api_url = args
        .api_url
        .or_else(|| {
            crate::config::read_dotenv(&args.env_file)
                .ok()
                .and_then(|env| env.get("GITHUB_API_URL").cloned())
                .filter(|url| !url.is_empty())
        })
        .unwrap_or_else(|| "https://api.github.com".to_string());
    let options = SetupOptions {
        webhook_url: args.webhook_url,
        homepage_url: args.homepage_url,
        name: args.name,
        org: args.org,
        port: args.port,
        github_url: args.github_url,
        api_url,
        env_file: args.env_file,
        key_file: args.key_file,
        manifest: args.manifest,
        force: args.force,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(crate::setup::run(options, |address| {
        let port = address.port();
        println!("Open http://{address}/ in a browser on this machine and press \"Create GitHub App\".");
        println!("(On a remote machine, forward the port first: ssh -L {port}:127.0.0.1:{port} HOST)");
        println!("Waiting for GitHub to send the browser back…");
    }));
    match outcome {
        Ok(done) => {
            println!("GitHub App \"{}\" created (id {}).", done.name, done.app_id);
            println!("Private key written to {} (mode 0600).", done.key_file.display());
            let secret = if done.wrote_webhook_secret {
                ", GITHUB_WEBHOOK_SECRET"
            } else {
                ""
            };
            println!(
                "GITHUB_APP_ID{secret} and GITHUB_PRIVATE_KEY_PATH written to {} (mode 0600).",
                done.env_file.display()
            );
            if !done.wrote_webhook_secret {
                println!(
                    "GitHub returned no webhook secret: set GITHUB_WEBHOOK_SECRET in the App's settings and in .env."
                );
            }
            if done.removed_inline_key {
                println!(
                    "The old GITHUB_PRIVATE_KEY line was removed from {}.",
                    done.env_file.display()
                );
            }
            println!("Next: install the App on a repository: {}", done.install_url);
            println!("Then start the server: orchestrator serve");
            ExitCode::SUCCESS
        }
        Err(err @ SetupError::Usage(_)) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
