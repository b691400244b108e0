//! Repository-relative paths: lexical normalisation and the checks that need no disk.
//!
//! Every path a patch names becomes a [`RepoPath`] before anything else looks at it, so the
//! rest of the crate can rely on these invariants (the field is private; the only
//! constructor is [`RepoPath::new`]):
//!
//! - relative, `/`-separated, no empty, `.` or `..` components (`a/./b//c` → `a/b/c`,
//!   `a/../b` → `b`);
//! - never escapes the root: a `..` with nothing left to pop is refused;
//! - never names git's own data: no component is `.git` in any case, nor one of the
//!   spellings that Windows and macOS file systems treat as `.git` (trailing dots or
//!   spaces, the 8.3 short name `git~1`, invisible Unicode characters) — git itself refuses
//!   the same names for the same reason;
//! - no NUL, no backslash (on Windows a separator, on Unix almost certainly a mistake),
//!   no drive letter, no `~` home shorthand.
//!
//! What needs the disk (symlinks leading out of the root, sizes, file types) is checked by
//! [`crate::apply`] right before reading, because only then is it true.

use std::fmt;

/// A normalised path relative to the repository root; see the module docs for the
/// invariants it guarantees.
///
/// It is the only path type the patch model holds, so an unsafe path cannot even be
/// represented in a [`crate::Patch`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoPath(String);

/// Why a path was refused before touching the disk.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Nothing left after normalisation (`""`, `.`, `a/..`): no file can be meant.
    #[error("empty path")]
    Empty,
    /// `/etc/passwd`, `C:\x`: a patch may only name files inside the repository.
    #[error("absolute path")]
    Absolute,
    /// `../x`, `a/../../x`: the path climbs out of the repository.
    #[error("path escapes the repository through `..`")]
    Escapes,
    /// `.git/config`, `sub/.GIT/hooks/x`: writing there can execute code on the next git
    /// command, so no patch may touch it.
    #[error("path is inside a `.git` directory")]
    GitDir,
    /// A character that has no business in a repository path (NUL, backslash) or a `~`
    /// that was probably meant as a home directory.
    #[error("path contains {0}")]
    BadCharacter(&'static str),
}

impl RepoPath {
    /// Normalises `raw` and checks it; see the module docs for the rules.
    pub fn new(raw: &str) -> Result<Self, PathError> {
        if raw.contains('\0') {
            return Err(PathError::BadCharacter("a NUL byte"));
        }
        if raw.contains('\\') {
            return Err(PathError::BadCharacter("a backslash"));
        }
        if raw.starts_with('/') || has_drive_letter(raw) {
            return Err(PathError::Absolute);
        }
        let mut parts: Vec<&str> = Vec::new();
        for component in raw.split('/') {
            match component {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(PathError::Escapes);
                    }
                }
                other => parts.push(other),
            }
        }
        if parts.is_empty() {
            return Err(PathError::Empty);
        }
        if parts.first() == Some(&"~") {
            return Err(PathError::BadCharacter("a leading `~`"));
        }
        if parts.iter().any(|c| is_git_dir_name(c)) {
            return Err(PathError::GitDir);
        }
        Ok(RepoPath(parts.join("/")))
    }

    /// The normalised path, `/`-separated.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path's components, outermost first; used to walk the tree one directory at a
    /// time when checking for symlinks.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// True when `self` is a strict ancestor directory of `other` (`a` of `a/b`), which
    /// is how a patch that uses one name both as a file and as a directory is detected.
    pub fn is_ancestor_of(&self, other: &RepoPath) -> bool {
        other
            .0
            .strip_prefix(&self.0)
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl fmt::Display for RepoPath {
    /// Control characters are escaped so that a path can never break the one-line-per-file
    /// output the CLI promises.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, &self.0)
    }
}

/// Writes `s`, escaping control characters (a path may legally contain a newline).
pub(crate) fn write_escaped(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for c in s.chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_default())?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

/// `C:`, `c:/x`: a Windows drive, which would make the path absolute there.
fn has_drive_letter(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

/// Is `component` a name that some file system resolves to `.git`?
fn is_git_dir_name(component: &str) -> bool {
    // Invisible characters are ignored by HFS+ when comparing names (git's
    // `is_hfs_dotgit`), and trailing dots and spaces by Windows (`is_ntfs_dotgit`).
    let visible: String = component.chars().filter(|c| !is_ignorable(*c)).collect();
    let trimmed = visible.trim_end_matches(['.', ' ']);
    trimmed.eq_ignore_ascii_case(".git") || trimmed.eq_ignore_ascii_case("git~1")
}

/// Code points that HFS+ drops when comparing file names (the list git uses).
fn is_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{200C}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{206A}'..='\u{206F}' | '\u{FEFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match RepoPath::new(raw) {
            Ok(p) => p.as_str().to_owned(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn normalises_dots_and_duplicate_slashes() {
        assert_eq!(ok("a/./b//c"), "a/b/c");
        assert_eq!(ok("./src/lib.rs"), "src/lib.rs");
        assert_eq!(ok("a/../b"), "b");
        assert_eq!(ok("src/"), "src");
    }

    #[test]
    fn refuses_escapes_and_absolute_paths() {
        assert_eq!(RepoPath::new("../x"), Err(PathError::Escapes));
        assert_eq!(RepoPath::new("a/../../x"), Err(PathError::Escapes));
        assert_eq!(RepoPath::new("/etc/passwd"), Err(PathError::Absolute));
        assert_eq!(RepoPath::new("C:/x"), Err(PathError::Absolute));
        assert_eq!(RepoPath::new("a\\b"), Err(PathError::BadCharacter("a backslash")));
        assert_eq!(RepoPath::new(""), Err(PathError::Empty));
        assert_eq!(RepoPath::new("a/.."), Err(PathError::Empty));
        assert!(RepoPath::new("~/x").is_err());
        assert!(RepoPath::new("a\0b").is_err());
    }

    #[test]
    fn refuses_every_spelling_of_dot_git() {
        for raw in [
            ".git/config",
            "sub/.GIT/hooks/pre-commit",
            ".git",
            ".git./x",
            ".git /x",
            "GIT~1/config",
            ".g\u{200C}it/config",
            "x/../.git/HEAD",
        ] {
            assert_eq!(RepoPath::new(raw), Err(PathError::GitDir), "{raw:?}");
        }
        assert_eq!(ok(".github/workflows/ci.yml"), ".github/workflows/ci.yml");
        assert_eq!(ok(".gitignore"), ".gitignore");
    }

    #[test]
    fn ancestor_relation_is_by_component() {
        let a = RepoPath::new("a").unwrap();
        let ab = RepoPath::new("a/b").unwrap();
        let abc = RepoPath::new("ab/c").unwrap();
        assert!(a.is_ancestor_of(&ab));
        assert!(!a.is_ancestor_of(&abc));
        assert!(!a.is_ancestor_of(&a));
    }

    #[test]
    fn display_escapes_control_characters() {
        let p = RepoPath::new("a\nb").unwrap();
        assert_eq!(p.to_string(), "a\\nb");
    }
}
