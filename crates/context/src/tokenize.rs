//! The code-aware search tokenizer shared by indexing and querying.
//!
//! Code search fails with a natural-language tokenizer: `parseConfigFile` must match a query
//! that says "parse the config file", and `max_file_bytes` must match "max file bytes". So an
//! identifier yields itself, lower-cased and whole (exact identifier queries still win), plus
//! its camelCase / snake_case / kebab parts. English stop words are dropped because issue
//! text is prose and those words would only add noise.

/// Longest term kept; longer runs are hashes, base64 or minified code, useless for search.
const MAX_TERM_LEN: usize = 48;

/// Words too common in prose and comments to help ranking (the list [`is_stop_word`] matches).
#[cfg(test)]
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "do", "does", "for", "from",
    "has", "have", "if", "in", "into", "is", "it", "its", "no", "not", "of", "on", "or", "so", "that", "the",
    "then", "there", "these", "this", "to", "was", "we", "were", "when", "which", "will", "with", "would",
    "you",
];

/// Whether `term` (lower-case) is a stop word. A `match` compiles to a switch on length and
/// a few word compares; this runs for every identifier of every indexed file.
fn is_stop_word(term: &str) -> bool {
    matches!(
        term,
        "a" | "an"
            | "and"
            | "are"
            | "as"
            | "at"
            | "be"
            | "been"
            | "but"
            | "by"
            | "can"
            | "do"
            | "does"
            | "for"
            | "from"
            | "has"
            | "have"
            | "if"
            | "in"
            | "into"
            | "is"
            | "it"
            | "its"
            | "no"
            | "not"
            | "of"
            | "on"
            | "or"
            | "so"
            | "that"
            | "the"
            | "then"
            | "there"
            | "these"
            | "this"
            | "to"
            | "was"
            | "we"
            | "were"
            | "when"
            | "which"
            | "will"
            | "with"
            | "would"
            | "you"
    )
}

/// Calls `emit` for every search term of `text`, in order, duplicates included.
///
/// Terms are lower-case ASCII-alphanumeric strings: each identifier whole, then its parts
/// when it has more than one. Single characters, pure numbers and stop words are skipped.
pub fn for_each_term(text: &str, mut emit: impl FnMut(&str)) {
    let mut lower = String::with_capacity(32);
    for ident in identifiers(text) {
        if ident.len() > MAX_TERM_LEN {
            continue;
        }
        // Identifiers are ASCII by construction: lower-case bytes in place.
        lower.clear();
        lower.push_str(ident);
        lower.make_ascii_lowercase();
        let trimmed = lower.trim_matches('_');
        let mut parts = 0usize;
        for_each_part(ident, |_| parts += 1);
        if keep(trimmed) && (parts > 1 || !trimmed.contains('_')) {
            emit(trimmed);
        }
        if parts > 1 {
            for_each_part(ident, |part| {
                lower.clear();
                lower.push_str(part);
                lower.make_ascii_lowercase();
                if keep(&lower) {
                    emit(&lower);
                }
            });
        }
    }
}

/// The terms of `text` as owned strings (convenience for tests and small inputs).
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_term(text, |t| out.push(t.to_owned()));
    out
}

/// Whether a lower-case term is worth indexing.
fn keep(term: &str) -> bool {
    // Every stop word is at most 5 bytes: skip the search for longer terms (the hot path).
    term.len() >= 2 && !term.bytes().all(|b| b.is_ascii_digit()) && (term.len() > 5 || !is_stop_word(term))
}

/// Maximal runs of ASCII letters, digits and underscores.
fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|s| !s.is_empty())
}

/// Calls `emit` for each camelCase / snake_case part of one identifier.
///
/// `HTTPServerError2` gives `HTTP`, `Server`, `Error2`: a new part starts after `_`, at a
/// lower-to-upper change, and at the last capital of an acronym followed by a lower-case letter.
fn for_each_part(ident: &str, mut emit: impl FnMut(&str)) {
    for segment in ident.split('_').filter(|s| !s.is_empty()) {
        let bytes = segment.as_bytes();
        let mut start = 0;
        for i in 1..bytes.len() {
            let (prev, cur) = (bytes[i - 1], bytes[i]);
            let next_lower = bytes.get(i + 1).is_some_and(|b| b.is_ascii_lowercase());
            let boundary = (prev.is_ascii_lowercase() && cur.is_ascii_uppercase())
                || (prev.is_ascii_uppercase() && cur.is_ascii_uppercase() && next_lower)
                || (prev.is_ascii_digit() && cur.is_ascii_alphabetic());
            if boundary {
                emit(&segment[start..i]);
                start = i;
            }
        }
        emit(&segment[start..]);
    }
}

/// Terms of a repository-relative path: its directory and file names split like identifiers.
///
/// `src/config/loadSettings.rs` gives `src`, `config`, `loadsettings`, `load`, `settings`, `rs`.
pub fn path_terms(path: &str) -> Vec<String> {
    terms(&path.replace(['/', '.', '-'], " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_word_list_and_the_match_agree() {
        assert!(STOP_WORDS.iter().all(|w| is_stop_word(w)));
        assert!(STOP_WORDS.iter().all(|w| w.len() <= 5), "keep() relies on this");
        assert!(!is_stop_word("config"));
    }

    #[test]
    fn camel_case_is_split_and_kept_whole() {
        assert_eq!(
            terms("parseConfigFile"),
            ["parseconfigfile", "parse", "config", "file"]
        );
    }

    #[test]
    fn snake_case_is_split_and_kept_whole() {
        assert_eq!(
            terms("max_file_bytes"),
            ["max_file_bytes", "max", "file", "bytes"]
        );
    }

    #[test]
    fn acronyms_and_digits_split_sensibly() {
        assert_eq!(terms("HTTPServer"), ["httpserver", "http", "server"]);
        assert_eq!(terms("sha256"), ["sha256"]);
        assert_eq!(terms("parse2Ways"), ["parse2ways", "parse2", "ways"]);
    }

    #[test]
    fn punctuation_stop_words_and_numbers_are_dropped() {
        assert_eq!(
            terms("fn load(path: &Path) -> Result<Config> { 42 }"),
            ["fn", "load", "path", "path", "result", "config"]
        );
        assert_eq!(terms("the value of x is 10"), ["value"]);
    }

    #[test]
    fn single_identifier_without_parts_is_emitted_once() {
        assert_eq!(terms("config"), ["config"]);
        assert_eq!(terms("__init__"), ["init"]);
    }

    #[test]
    fn paths_split_on_separators_and_case() {
        assert_eq!(
            path_terms("src/config/loadSettings.rs"),
            ["src", "config", "loadsettings", "load", "settings", "rs"]
        );
    }
}
