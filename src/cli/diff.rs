//! `orchestrator diff apply --root DIR PATCH`: the diff engine on its own.
//!
//! Exit 0: applied, one summary line per file on stdout. Exit 1: refused, one
//! reason per refused file or hunk on stderr, and no file under `DIR` (nor
//! outside it) changed. Exit 2: usage or I/O error.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use orchestrator_diff::{ApplyError, ApplyOptions};

/// Exit code of a refusal (the tree is unchanged).
const REFUSED: u8 = 1;
/// Exit code of a usage or I/O error.
const FAILED: u8 = 2;

/// Runs `diff apply`; `patch` is a file path or `-` for standard input.
pub fn apply(root: &Path, patch: &Path, dry_run: bool) -> ExitCode {
    let text = match read_patch(patch) {
        Ok(text) => text,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(FAILED);
        }
    };
    if !root.is_dir() {
        eprintln!("error: --root {} is not a directory", root.display());
        return ExitCode::from(FAILED);
    }
    let parsed = match orchestrator_diff::parse(&text) {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!("refused: {err}");
            return ExitCode::from(REFUSED);
        }
    };
    let options = ApplyOptions {
        dry_run,
        ..ApplyOptions::default()
    };
    match orchestrator_diff::apply(&parsed, root, &options) {
        Ok(report) => {
            if !report.files.is_empty() {
                println!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(ApplyError::Refused(refusals)) => {
            for refusal in refusals {
                eprintln!("refused: {refusal}");
            }
            ExitCode::from(REFUSED)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(FAILED)
        }
    }
}

fn read_patch(patch: &Path) -> Result<String, String> {
    let bytes = if patch == Path::new("-") {
        let mut buffer = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buffer)
            .map_err(|e| format!("cannot read the patch from standard input: {e}"))?;
        buffer
    } else {
        std::fs::read(patch).map_err(|e| format!("cannot read {}: {e}", patch.display()))?
    };
    String::from_utf8(bytes).map_err(|_| "the patch is not UTF-8 text".to_string())
}
