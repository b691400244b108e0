//! Ranks the files of a directory for a query read from a file, like
//! `orchestrator context rank`: `cargo run -p orchestrator-context --example rank -- DIR QUERY_FILE [TOP] [CACHE_DIR]`.

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: rank DIR QUERY_FILE [TOP] [CACHE_DIR]");
        std::process::exit(2);
    }
    let query = std::fs::read_to_string(&args[2]).unwrap_or_default();
    let top = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(10);
    let cache = args
        .get(4)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("orch-rank-cache"));
    match orchestrator_context::rank_files(PathBuf::from(&args[1]).as_path(), &query, top, &cache) {
        Ok(files) => files
            .iter()
            .for_each(|f| println!("{}\t{:.3}\t{:?}", f.path, f.score, f.best_symbol)),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}
