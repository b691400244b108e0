//! Which repository paths the agents may plan, read and change.
//!
//! One rule set for the planner's `files`, the files shown to the coder and
//! the paths of the coder's patches, so that a path refused in one place is
//! refused everywhere. The diff engine already refuses absolute paths, `..`
//! escapes and `.git`; this adds the policy of AGENTS.md: nothing under
//! `.github/workflows/` (the App holds no `workflows` permission) and no
//! secret-looking files.

/// Why `path` (repository-relative, `/`-separated) is off limits, or `None`
/// when the agents may use it.
pub fn problem(path: &str) -> Option<&'static str> {
    if path.trim().is_empty() {
        return Some("empty path");
    }
    if path.starts_with('/') || path.starts_with('\\') || has_drive_letter(path) {
        return Some("absolute path: give it relative to the repository root");
    }
    if path.contains('\\') {
        return Some("contains a backslash: separate directories with `/`");
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.contains(&"..") {
        return Some("contains `..`: give it relative to the repository root");
    }
    if parts.iter().any(|p| p.eq_ignore_ascii_case(".git")) {
        return Some("is inside `.git/`, which no agent may touch");
    }
    if path.to_ascii_lowercase().starts_with(".github/workflows/") {
        return Some(
            "is under `.github/workflows/`: the App has no permission to change workflows, so such changes are refused",
        );
    }
    looks_like_secret(parts.last().copied().unwrap_or_default()).then_some(
        "looks like a secret (`.env*`, `*.pem`, `*.key`, `id_rsa*`), which no agent may read or change",
    )
}

/// `./src/a.rs` → `src/a.rs`: the one harmless spelling models often use.
pub fn normalize(path: &str) -> &str {
    let mut p = path.trim();
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    p
}

/// The secret-looking file names of AGENTS.md.
pub fn looks_like_secret(file_name: &str) -> bool {
    let name = file_name.to_ascii_lowercase();
    name.starts_with(".env") || name.ends_with(".pem") || name.ends_with(".key") || name.starts_with("id_rsa")
}

fn has_drive_letter(path: &str) -> bool {
    let b = path.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_paths_are_refused_with_a_reason() {
        for ok in ["src/main.rs", "README.md", ".github/CODEOWNERS", "docs/env.md"] {
            assert_eq!(problem(ok), None, "{ok}");
        }
        let refused = [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("C:/x", "absolute"),
            ("a/../../x", "`..`"),
            (".git/config", ".git/"),
            ("sub/.GIT/hooks/x", ".git/"),
            (".github/workflows/ci.yml", "workflows"),
            ("config/.env.production", "secret"),
            ("certs/server.pem", "secret"),
            ("id_rsa.pub", "secret"),
            ("a\\b", "backslash"),
        ];
        for (path, word) in refused {
            let why = problem(path).unwrap_or_else(|| panic!("{path} accepted"));
            assert!(why.contains(word), "{path}: {why}");
        }
        assert_eq!(normalize("././src/a.rs"), "src/a.rs");
    }
}
