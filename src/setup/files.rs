//! Writing what GitHub returned: the private key to its own file and the App
//! id, webhook secret and key path into `.env`, both readable by the owner
//! only, both replaced atomically (a temporary file renamed over the old).

use std::io::Write;
use std::path::Path;

/// The `.env` names the configuration reads (see `config::WELL_KNOWN_ENV`).
pub const APP_ID_VAR: &str = "GITHUB_APP_ID";
pub const WEBHOOK_SECRET_VAR: &str = "GITHUB_WEBHOOK_SECRET";
pub const KEY_PATH_VAR: &str = "GITHUB_PRIVATE_KEY_PATH";
/// An inline key would conflict with the key file; its line is removed.
pub const INLINE_KEY_VAR: &str = "GITHUB_PRIVATE_KEY";

/// Writes `contents` to `path` with mode 0600, replacing any file there.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = write_then_rename(&options, &temporary, path, contents);
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

fn write_then_rename(
    options: &std::fs::OpenOptions,
    temporary: &Path,
    path: &Path,
    contents: &[u8],
) -> std::io::Result<()> {
    let mut file = options.open(temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(temporary, path)
}

/// `.env` text with `updates` set: a line that sets one of them is replaced
/// in place, the others are appended; every other line is kept as it was,
/// except one setting [`INLINE_KEY_VAR`]. Returns the text and whether an
/// inline key was removed.
pub fn updated_dotenv(existing: &str, updates: &[(&str, &str)], header: &str) -> (String, bool) {
    let mut out = Vec::new();
    let mut written = vec![false; updates.len()];
    let mut removed_inline_key = false;
    for line in existing.lines() {
        match variable_of(line) {
            Some(name) if name == INLINE_KEY_VAR => removed_inline_key = true,
            Some(name) => match updates.iter().position(|(key, _)| *key == name) {
                Some(i) if !written[i] => {
                    out.push(format!("{name}={}", quoted(updates[i].1)));
                    written[i] = true;
                }
                // A second line setting the same name would override the first.
                Some(_) => {}
                None => out.push(line.to_string()),
            },
            None => out.push(line.to_string()),
        }
    }
    let missing: Vec<_> = updates
        .iter()
        .zip(&written)
        .filter(|(_, done)| !**done)
        .map(|((key, value), _)| format!("{key}={}", quoted(value)))
        .collect();
    if !missing.is_empty() {
        if out.last().is_some_and(|l| !l.trim().is_empty()) {
            out.push(String::new());
        }
        out.push(format!("# {header}"));
        out.extend(missing);
    }
    let mut text = out.join("\n");
    text.push('\n');
    (text, removed_inline_key)
}

/// The variable an assignment line sets (`KEY=…` or `export KEY=…`).
fn variable_of(line: &str) -> Option<&str> {
    let line = line.trim_start();
    if line.starts_with('#') {
        return None;
    }
    let line = line.strip_prefix("export ").unwrap_or(line);
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(key)
}

/// A value the `.env` reader gives back unchanged.
fn quoted(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:+@,".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        value.to_string()
    } else if !value.contains('\'') {
        format!("'{value}'")
    } else {
        format!("\"{}\"", value.replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn settings_are_replaced_in_place_and_other_lines_kept() {
        let existing = "# mine\nOPENAI_API_KEY=sk-keep\nexport GITHUB_APP_ID=1\nGITHUB_PRIVATE_KEY=\"-----BEGIN\"\nGITHUB_APP_ID=2\n";
        let (text, removed) = updated_dotenv(
            existing,
            &[(APP_ID_VAR, "77"), (WEBHOOK_SECRET_VAR, "s e'c\"r")],
            "GitHub App x",
        );
        assert!(removed);
        assert_eq!(
            text,
            "# mine\nOPENAI_API_KEY=sk-keep\nGITHUB_APP_ID=77\n\n# GitHub App x\nGITHUB_WEBHOOK_SECRET=\"s e'c\\\"r\"\n"
        );
    }

    #[test]
    fn values_read_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        let values = ["plain-0.9/x", "with space", "it's", "q\"uote's", "#hash"];
        let updates: Vec<(String, &str)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("V{i}"), *v))
            .collect();
        let refs: Vec<(&str, &str)> = updates.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let (text, _) = updated_dotenv("", &refs, "test");
        write_private(&path, text.as_bytes()).unwrap();
        let read = crate::config::read_dotenv(&path).unwrap();
        for (key, value) in &refs {
            assert_eq!(read[*key], *value, "{key}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only_even_over_an_open_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }
}
