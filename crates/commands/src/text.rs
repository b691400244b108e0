//! Text primitives shared by the parser and the echo guard.
//!
//! Both sides must agree on what a line is, which characters are invisible and what the
//! trigger looks like; otherwise `neutralize_commands` could leave behind a line that
//! `parse` still reads as a command.

use std::borrow::Cow;

/// The word that starts every command. Matched ASCII-case-insensitively.
pub(crate) const TRIGGER: &str = "/orchestrate";

/// Characters that render as nothing but are not whitespace.
///
/// They are removed before matching, so a line looks to the parser the way it looks to a
/// person: `\u{200B}/orchestrate` is a command (nothing visible precedes the slash) and
/// `/orchestrate\u{200B}cancel` is not (`/orchestratecancel` is what people see). The set
/// is the brief's (U+200B..U+200D, U+2060, U+FEFF) plus the other format characters that
/// draw nothing: the direction marks U+200E/U+200F, the soft hyphen U+00AD and the
/// invisible operators U+2061..U+2064.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}'
    )
}

/// Whitespace in the Unicode sense, or an invisible character: what "blank" means here.
pub(crate) fn is_space_or_invisible(c: char) -> bool {
    c.is_whitespace() || is_invisible(c)
}

/// True when `s` shows nothing at all.
pub(crate) fn is_blank(s: &str) -> bool {
    s.chars().all(is_space_or_invisible)
}

/// `s` without its invisible characters (borrowed when it has none, the common case).
pub(crate) fn visible(s: &str) -> Cow<'_, str> {
    if s.contains(is_invisible) {
        Cow::Owned(s.chars().filter(|&c| !is_invisible(c)).collect())
    } else {
        Cow::Borrowed(s)
    }
}

/// Turns CRLF and lone CR line endings into LF, as `CommonMark` reads all three as line ends.
pub(crate) fn normalize_newlines(s: &str) -> Cow<'_, str> {
    if s.contains('\r') {
        Cow::Owned(s.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(s)
    }
}

/// If `s` starts with the trigger followed by whitespace or the end, returns what follows
/// the trigger. `/orchestrated`, `/orchestrate-x` and `/orchestrate:` give `None`.
pub(crate) fn strip_trigger(s: &str) -> Option<&str> {
    let head = s.get(..TRIGGER.len())?;
    let rest = s.get(TRIGGER.len()..)?;
    let ends_word = rest.chars().next().is_none_or(char::is_whitespace);
    (head.eq_ignore_ascii_case(TRIGGER) && ends_word).then_some(rest)
}

/// Maps a byte offset in `visible(raw)` back to a byte offset in `raw`.
///
/// Lets the parser decide on the visible text but hand back the instructions as written.
pub(crate) fn raw_offset(raw: &str, visible_offset: usize) -> usize {
    let mut seen = 0;
    for (index, c) in raw.char_indices() {
        if seen >= visible_offset {
            return index;
        }
        if !is_invisible(c) {
            seen += c.len_utf8();
        }
    }
    raw.len()
}

/// Lines of `text` as `(content, terminator)`, where the terminator is `"\r\n"`, `"\n"`,
/// `"\r"` or `""` for the last line. Concatenating every pair gives `text` back, which is
/// what lets `neutralize_commands` rewrite lines without touching anything else.
pub(crate) struct Lines<'a> {
    /// What is left to split.
    rest: &'a str,
}

impl<'a> Lines<'a> {
    /// Starts splitting `text`.
    pub(crate) fn new(text: &'a str) -> Self {
        Self { rest: text }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some(end) = self.rest.find(['\n', '\r']) else {
            let line = self.rest;
            self.rest = "";
            return Some((line, ""));
        };
        let (line, tail) = self.rest.split_at(end);
        let terminator_len = if tail.starts_with("\r\n") { 2 } else { 1 };
        let (terminator, rest) = tail.split_at(terminator_len);
        self.rest = rest;
        Some((line, terminator))
    }
}
