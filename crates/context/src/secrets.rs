//! Recognises files that look like secrets, so they never reach a prompt.
//!
//! A prompt goes to a third-party model and is stored in the job's diagnostics: a leaked
//! credential there cannot be taken back. Detection is deliberately cheap and conservative:
//! file names that conventionally hold secrets, and content with well-known token shapes.

/// Whether a repository-relative path names a secret-looking file (`.env*`, `*.pem`,
/// `*.key`, `id_rsa*` and the other SSH private key names, PKCS#12 bundles).
pub fn is_secret_path(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    name.starts_with(".env")
        || name.starts_with("id_rsa")
        || name.starts_with("id_dsa")
        || name.starts_with("id_ecdsa")
        || name.starts_with("id_ed25519")
        || [".pem", ".key", ".p12", ".pfx"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// Whether `text` contains something shaped like a credential: GitHub tokens (`ghp_`,
/// `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), OpenAI-style keys (`sk-…`), AWS access
/// key ids (`AKIA…`) or a PEM private key block.
pub fn contains_secret(text: &str) -> bool {
    has_github_token(text)
        || has_token(text, "github_pat_", 22, is_word)
        || has_token(text, "sk-", 20, |b| is_word(b) || b == b'-')
        || has_token(text, "AKIA", 16, |b| b.is_ascii_uppercase() || b.is_ascii_digit())
        || has_private_key_block(text)
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Classic GitHub tokens in one pass over the text (this runs on every indexed file): `gh`
/// at a word start, then `p_`/`o_`/`u_`/`s_`/`r_` and 36 alphanumerics.
fn has_github_token(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices("gh").any(|(at, _)| {
        if at > 0 && is_word(bytes[at - 1]) {
            return false;
        }
        let rest = &bytes[at + 2..];
        let run =
            |skip: usize, class: fn(u8) -> bool| rest.iter().skip(skip).take_while(|&&b| class(b)).count();
        match rest {
            [b'p' | b'o' | b'u' | b's' | b'r', b'_', ..] => run(2, is_alnum) >= 36,
            _ if rest.starts_with(b"ithub_pat_") => run(10, is_word) >= 22,
            _ => false,
        }
    })
}

/// Whether `prefix` occurs at a word start followed by at least `min_len` bytes of `class`.
fn has_token(text: &str, prefix: &str, min_len: usize, class: impl Fn(u8) -> bool) -> bool {
    let bytes = text.as_bytes();
    text.match_indices(prefix).any(|(at, _)| {
        let word_start = at == 0 || !is_word(bytes[at - 1]);
        let tail = &bytes[at + prefix.len()..];
        word_start && tail.iter().take_while(|&&b| class(b)).count() >= min_len
    })
}

/// Whether a `-----BEGIN … PRIVATE KEY-----` line is present (RSA, EC, OPENSSH, PKCS#8…).
fn has_private_key_block(text: &str) -> bool {
    text.match_indices("-----BEGIN ").any(|(at, _)| {
        let rest = &text[at..];
        let line = rest.split('\n').next().unwrap_or(rest);
        line.len() <= 80 && line.trim_end().ends_with("PRIVATE KEY-----")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_file_names_are_recognised() {
        for p in [
            ".env",
            ".env.local",
            "config/.env.production",
            "certs/server.pem",
            "tls.key",
            "home/.ssh/id_rsa",
            "id_rsa.pub",
            "id_ed25519",
            "bundle.p12",
        ] {
            assert!(is_secret_path(p), "{p}");
        }
        for p in [
            "src/env.rs",
            "environment.md",
            "keys.rs",
            "src/key.rs.txt",
            "README.md",
        ] {
            assert!(!is_secret_path(p), "{p}");
        }
    }

    #[test]
    fn token_shapes_are_recognised() {
        let tokens = [
            format!("token = \"ghp_{}\"", "a1B2".repeat(9)),
            format!("GITHUB_TOKEN=github_pat_{}", "x".repeat(30)),
            format!("OPENAI_API_KEY=sk-proj-{}", "Ab3".repeat(10)),
            format!("aws_access_key_id = AKIA{}", "ABCDEFGH23456789"),
            format!("-----BEGIN RSA {}-----\nMIIE...", "PRIVATE KEY"),
            format!("-----BEGIN {}-----\nMIIE...", "OPENSSH PRIVATE KEY"),
        ];
        for t in &tokens {
            assert!(contains_secret(t), "{t}");
        }
    }

    #[test]
    fn ordinary_code_is_not_a_secret() {
        for t in [
            "let prefix = \"ghp_\"; // GitHub tokens start with ghp_",
            "fn task-sk-1() {}",
            "mask-layer",
            "-----BEGIN PUBLIC KEY-----",
            "AKIA is the prefix of AWS access keys",
            "risk-assessment-of-things-in-production",
        ] {
            assert!(!contains_secret(t), "{t}");
        }
    }
}
