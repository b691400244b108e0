//! Pure rules of the workspace: branch names, commit messages and the paths
//! a job may never change. No I/O here, so they are unit-tested directly.

/// The most characters a branch slug takes, so branch names stay readable in
/// GitHub's UI and in `git branch` output.
pub const SLUG_MAX: usize = 40;

/// `orchestrator/issue-<n>-<slug>`, or `orchestrator/task-<id8>-<slug>` for a
/// job without an issue (DESIGN §5). The slug comes from `title`; the name is
/// stable for a given job, which is what lets a retry find its branch again.
pub fn branch_name(issue: Option<u64>, job_id: &str, title: &str) -> String {
    let slug = slug(title);
    match issue {
        Some(number) => format!("orchestrator/issue-{number}-{slug}"),
        None => {
            let id8: String = job_id
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(8)
                .collect::<String>()
                .to_ascii_lowercase();
            let id8 = if id8.is_empty() { "job".to_string() } else { id8 };
            format!("orchestrator/task-{id8}-{slug}")
        }
    }
}

/// Lowercase ASCII words of `title` joined by `-`, cut at a word boundary to
/// at most [`SLUG_MAX`] characters; `untitled` when no word is left.
/// Anything else (punctuation, non-ASCII letters) separates words, so the
/// result is always a valid ref component.
pub fn slug(title: &str) -> String {
    let mut out = String::new();
    for word in title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_ascii_lowercase();
        let needed = if out.is_empty() {
            word.len()
        } else {
            word.len() + 1
        };
        if out.len() + needed > SLUG_MAX {
            if out.is_empty() {
                // One very long word: cut it rather than return nothing.
                out.push_str(&word[..SLUG_MAX]);
            }
            break;
        }
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&word);
    }
    if out.is_empty() {
        "untitled".to_string()
    } else {
        out
    }
}

/// The noreply address GitHub links to a user: `<id>+<login>@users.noreply.github.com`.
pub fn noreply_email(login: &str, user_id: u64) -> String {
    format!("{user_id}+{login}@users.noreply.github.com")
}

/// A step's commit message: the title as subject (one line), the rationale
/// as body, and a `Co-authored-by` trailer for the person who asked for the
/// work, so GitHub credits them next to the bot.
pub fn commit_message(title: &str, rationale: &str, co_author: Option<(&str, u64)>) -> String {
    let subject = title.split_whitespace().collect::<Vec<_>>().join(" ");
    let subject = if subject.is_empty() {
        "Orchestrator step".to_string()
    } else {
        subject
    };
    let mut message = subject;
    let body = rationale.trim();
    if !body.is_empty() {
        message.push_str("\n\n");
        message.push_str(body);
    }
    if let Some((login, id)) = co_author {
        message.push_str("\n\n");
        message.push_str(&format!("Co-authored-by: {login} <{}>", noreply_email(login, id)));
    }
    message.push('\n');
    message
}

/// Refuses paths a job must never change: anything under `.github/workflows/`
/// (the App holds no `workflows` permission, so GitHub would reject the whole
/// push), anything inside a `.git` directory, absolute paths and `..`.
/// Comparison ignores case, because case-insensitive file systems (and
/// GitHub's own checks) treat `.GitHub/Workflows` like `.github/workflows`.
/// The error is a sentence meant for the user: it names the path and why.
pub fn refuse_protected_paths<I, S>(paths: I) -> Result<(), String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    for path in paths {
        let path = path.as_ref();
        if let Some(reason) = protected_reason(path) {
            return Err(format!("`{path}` cannot be changed: {reason}"));
        }
    }
    Ok(())
}

fn protected_reason(path: &str) -> Option<&'static str> {
    let normalized = path.replace('\\', "/");
    if normalized.starts_with('/') {
        return Some("absolute paths are outside the repository");
    }
    let parts: Vec<String> = normalized
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .map(str::to_ascii_lowercase)
        .collect();
    if parts.iter().any(|p| p == "..") {
        return Some("paths with `..` leave the repository");
    }
    if parts.iter().any(|p| p == ".git") {
        return Some("files under `.git/` belong to git itself");
    }
    if parts.len() >= 2 && parts[0] == ".github" && parts[1] == "workflows" {
        return Some(
            "changes under `.github/workflows/` are refused because the App has no `workflows` \
             permission (GitHub would reject the push); a person has to make this change",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_branch_uses_number_and_title_words() {
        assert_eq!(
            branch_name(Some(5), "ignored", "Workspace with git2: a cached mirror!"),
            "orchestrator/issue-5-workspace-with-git2-a-cached-mirror"
        );
    }

    #[test]
    fn task_branch_uses_first_eight_id_characters() {
        assert_eq!(
            branch_name(
                None,
                "0F3A9C2E-1111-2222-3333-444455556666",
                "Fix the README typo"
            ),
            "orchestrator/task-0f3a9c2e-fix-the-readme-typo"
        );
    }

    #[test]
    fn slug_is_cut_at_a_word_boundary() {
        let s = slug("one two three four five six seven eight nine ten eleven twelve");
        assert!(s.len() <= SLUG_MAX, "{s}");
        assert_eq!(s, "one-two-three-four-five-six-seven-eight");
    }

    #[test]
    fn slug_drops_non_ascii_and_falls_back() {
        assert_eq!(slug("Ünïcode — café ✓ 42"), "n-code-caf-42");
        assert_eq!(slug("✓✓✓"), "untitled");
        assert_eq!(slug(&"x".repeat(100)).len(), SLUG_MAX);
    }

    #[test]
    fn branch_names_are_valid_refs() {
        for title in ["..lock", "a..b", "@{x}", "trailing.", "-dash", "~^:?*[\\"] {
            let name = branch_name(Some(1), "id", title);
            assert!(
                git2::Reference::is_valid_name(&format!("refs/heads/{name}")),
                "{name}"
            );
        }
    }

    #[test]
    fn commit_message_has_subject_body_and_trailer() {
        let msg = commit_message(
            "Add a\nflag ",
            "  Because users asked.\n",
            Some(("octocat", 583231)),
        );
        assert_eq!(
            msg,
            "Add a flag\n\nBecause users asked.\n\nCo-authored-by: octocat <583231+octocat@users.noreply.github.com>\n"
        );
        assert_eq!(commit_message("Title", "", None), "Title\n");
    }

    #[test]
    fn workflow_and_git_paths_are_refused() {
        for bad in [
            ".github/workflows/ci.yml",
            "./.github/workflows/x.yml",
            ".GitHub/Workflows/ci.yml",
            ".git/config",
            "sub/.git/hooks/pre-commit",
            "../outside",
            "/etc/passwd",
        ] {
            let err = refuse_protected_paths([bad]).expect_err(bad);
            assert!(err.contains(bad), "{err}");
        }
        let err = refuse_protected_paths([".github/workflows/ci.yml"]).expect_err("refused");
        assert!(err.contains("workflows` permission"), "{err}");
        refuse_protected_paths([
            "src/lib.rs",
            ".github/CODEOWNERS",
            ".github/workflows.md",
            ".gitignore",
        ])
        .expect("allowed");
    }
}
