//! The parser never panics, and what it accepts is consistent: every path is a safe
//! `RepoPath`, no path appears twice, and every hunk has at least one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(patch) = orchestrator_diff::parse(&text) {
        let mut seen = HashSet::new();
        for path in patch.paths() {
            let s = path.as_str();
            assert!(!s.starts_with('/') && !s.split('/').any(|c| c == ".." || c.is_empty()));
            assert!(orchestrator_diff::RepoPath::new(s).as_ref() == Ok(path));
            assert!(seen.insert(s.to_owned()), "path twice: {s}");
        }
        for file in &patch.files {
            assert!(file.hunks.iter().all(|h| !h.lines.is_empty()));
        }
    }
});
