//! `orchestrator context rank --repo DIR --query-file FILE --top K`: the
//! context engine's file ranking on its own (DESIGN §2).

use std::path::Path;
use std::process::ExitCode;

use orchestrator_context::{IndexOptions, rank_files_with};

use crate::config::Config;

/// Prints the `top` best files of `repo` for the query in `query_file`,
/// repo-relative, best first, one a line. Index caches live under
/// `<ORCH_DATA_DIR>/indexes`, never inside `repo`.
pub fn rank(config: &Config, repo: &Path, query_file: &Path, top: usize) -> ExitCode {
    let query = match std::fs::read_to_string(query_file) {
        Ok(query) => query,
        Err(err) => {
            eprintln!("error: cannot read {}: {err}", query_file.display());
            return ExitCode::from(2);
        }
    };
    if !repo.is_dir() {
        eprintln!("error: --repo {} is not a directory", repo.display());
        return ExitCode::from(2);
    }
    let cache_dir = config.data_dir.join("indexes");
    let options = IndexOptions {
        max_file_bytes: config.context.max_file_bytes,
    };
    match rank_files_with(repo, &query, top, &cache_dir, &options) {
        Ok(files) => {
            for file in files {
                println!("{}", file.path);
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
