//! `apply ROOT PATCH [--dry-run] [--parse-only]`: the engine as a bare command, so that it
//! can be timed against `git apply` and `patch` on equal terms (process start included).
//! The product's command is `orchestrator diff apply`; this example only serves the
//! comparison in `docs/benchmarks.md`.

use std::path::Path;
use std::process::ExitCode;

use orchestrator_diff::{ApplyError, ApplyOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [root, patch] = positional.as_slice() else {
        eprintln!("usage: apply ROOT PATCH [--dry-run] [--parse-only]");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(patch) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let parsed = match orchestrator_diff::parse(&text) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("refused: {e}");
            return ExitCode::from(1);
        }
    };
    if flag("--parse-only") {
        println!("{} files", parsed.files.len());
        return ExitCode::SUCCESS;
    }
    let opts = ApplyOptions {
        dry_run: flag("--dry-run"),
        ..ApplyOptions::default()
    };
    match orchestrator_diff::apply(&parsed, Path::new(root.as_str()), &opts) {
        Ok(report) => {
            println!("{} files", report.files.len());
            ExitCode::SUCCESS
        }
        Err(e @ ApplyError::Refused(_)) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
