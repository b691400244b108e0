//! The crate's error type.

use std::path::{Path, PathBuf};

/// Why the context engine could not do its work. A bad or missing index cache is never an
/// error (the index is rebuilt); these are problems with the inputs themselves.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("the index cache directory {0} lies inside the repository; use a directory outside it")]
    CacheInsideRepo(PathBuf),
}

impl ContextError {
    /// An I/O error about `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
