//! Parser for the `/orchestrate` commands people write in GitHub issue comments.
//!
//! The crate is pure (no I/O, no dependencies): the webhook router calls [`parse`] on the
//! request path, and the bot's renderers use [`contains_command_line`] and
//! [`neutralize_commands`] with the very same rules, so the bot never posts a command.
//!
//! # Grammar (DESIGN.md §4)
//!
//! Only the comment's **first non-blank line** can hold a command. That line must start
//! with `/orchestrate` (any ASCII case) followed by whitespace or the end of the line,
//! after at most three spaces of indentation (as in Markdown). What follows the trigger
//! decides the command:
//!
//! | rest of the first line                          | following lines | result                                 |
//! |-------------------------------------------------|-----------------|----------------------------------------|
//! | nothing                                         | blank           | [`Command::Run`], no instructions      |
//! | nothing                                         | text            | [`Command::Run`] with that text        |
//! | `cancel`, `retry`, `status` or `help`, then anything | anything   | that subcommand; the rest is ignored   |
//! | one other word                                  | blank           | [`Command::Unknown`] (usage + hint)    |
//! | one other word                                  | text            | [`Command::Run`] with instructions     |
//! | two or more words                               | anything        | [`Command::Run`] with instructions     |
//!
//! Subcommand words are matched in any ASCII case. Instructions are the text after the
//! trigger on the first line plus all following lines, as written, trimmed, with LF line
//! endings. The did-you-mean hint of [`Command::Unknown`] names the subcommand within edit
//! distance 2 of the word (a swap of two adjacent letters counts as one edit).
//!
//! # What is no command
//!
//! - a trigger that is not the start of the first non-blank line (mid-sentence, or on a
//!   later line: `Thanks!\n/orchestrate` starts nothing);
//! - a trigger that runs into other characters: `/orchestrated`, `/orchestrate-x`,
//!   `/orchestrate:`;
//! - a trigger inside a quote (`> /orchestrate`), a code fence (```` ``` ```` or `~~~`),
//!   an indented code block (four or more spaces, or a tab, before it), inline code
//!   (`` `/orchestrate` ``) or an HTML comment. These need no Markdown parser: each puts
//!   something other than the trigger at the start of the first non-blank line.
//!
//! # Normalisation
//!
//! - CRLF and lone CR count as line ends, like LF.
//! - Invisible characters (zero-width space, non-joiner and joiner, word joiner, the BOM,
//!   direction marks, soft hyphen, invisible operators) are ignored when matching, so a
//!   line is read the way it looks: `\u{FEFF}/orchestrate` and `\u{200B}/orchestrate` are
//!   commands, `/orchestrate\u{200B}cancel` (shown as `/orchestratecancel`) is not, and a
//!   line of nothing but such characters is blank.
//! - HTML comments before the first visible line are skipped, as GitHub hides them:
//!   `<!-- saved reply -->\n/orchestrate status` is `status`. Text after a comment on the
//!   same line is not at the start of its line, so `<!-- x --> /orchestrate` is no
//!   command, and a comment that never closes hides the rest of the body.
//!
//! [`parse`] never panics, whatever the input.

mod guard;
mod help;
mod text;

#[cfg(test)]
mod tests;

use help::Subcommand;
use text::{TRIGGER, is_blank, is_space_or_invisible, raw_offset, strip_trigger, visible};

/// A command found in an issue comment.
///
/// Permission checks are not the parser's business: [`Command::requires_write_access`]
/// says which commands the router must gate, and the router decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `/orchestrate` alone, or with instructions: start a job on the issue.
    Run {
        /// Extra instructions added to the issue text for the planner: the rest of the
        /// first line and the following lines, as written, trimmed, with LF line endings.
        /// `None` for a bare `/orchestrate`.
        instructions: Option<String>,
    },
    /// `/orchestrate cancel`: stop the issue's running job.
    Cancel,
    /// `/orchestrate retry`: run the issue's failed or cancelled job again.
    Retry,
    /// `/orchestrate status`: reply with the state of the issue's newest job.
    Status,
    /// `/orchestrate help`: reply with [`usage_text`].
    Help,
    /// `/orchestrate <one unknown word>`: no job; reply with [`unknown_reply`], because a
    /// lone word is far more likely a mistyped subcommand than an instruction.
    Unknown {
        /// The word as written (invisible characters removed).
        word: String,
        /// The subcommand within edit distance 2 of `word`, if any, for "did you mean".
        suggestion: Option<&'static str>,
    },
}

impl Command {
    /// Whether the command needs write access to the repository.
    ///
    /// Starting, cancelling and retrying jobs do; `status`, `help` and an unknown word
    /// change nothing and are answered for anyone (DESIGN.md §4). Derived from the same
    /// table as the usage text, so the two cannot disagree.
    #[must_use]
    pub fn requires_write_access(&self) -> bool {
        let subcommand = match self {
            Self::Run { .. } => return true,
            Self::Unknown { .. } => return false,
            Self::Cancel => Subcommand::Cancel,
            Self::Retry => Subcommand::Retry,
            Self::Status => Subcommand::Status,
            Self::Help => Subcommand::Help,
        };
        subcommand.access() == help::Access::Writers
    }
}

/// Reads the command in an issue comment's body; `None` when the comment holds none.
///
/// See the [crate documentation](crate) for the grammar.
///
/// ```
/// use orchestrator_commands::{Command, parse};
///
/// assert_eq!(parse("/orchestrate cancel"), Some(Command::Cancel));
/// assert_eq!(
///     parse("/orchestrate use serde\nand add tests"),
///     Some(Command::Run { instructions: Some("use serde\nand add tests".into()) })
/// );
/// assert_eq!(parse("> /orchestrate"), None);
/// ```
#[must_use]
pub fn parse(comment_body: &str) -> Option<Command> {
    let body = text::normalize_newlines(comment_body);
    let mut in_html_comment = false;
    let mut consumed = 0;
    for chunk in body.split_inclusive('\n') {
        consumed += chunk.len();
        let line = chunk.strip_suffix('\n').unwrap_or(chunk);
        if in_html_comment {
            match skip_html_comments(line) {
                HtmlCommentEnd::StillOpen => continue,
                HtmlCommentEnd::Blank => {
                    in_html_comment = false;
                    continue;
                }
                HtmlCommentEnd::Text => return None,
            }
        }
        let shown = visible(line);
        if is_blank(&shown) {
            continue;
        }
        // The first non-blank line: unless it is only HTML comments, it holds the command
        // or there is none.
        let content = shown.trim_start_matches([' ', '\t']);
        let indent = &shown[..shown.len() - content.len()];
        if indent.contains('\t') || indent.len() > 3 {
            return None; // an indented code block
        }
        // Raw text here: an invisible character inside `<!--` stops GitHub from hiding it.
        let raw_content = line.trim_start_matches(|c| c == ' ' || c == '\t' || text::is_invisible(c));
        if let Some(comment) = raw_content.strip_prefix("<!")
            && comment.starts_with("--")
        {
            match skip_html_comments(comment) {
                HtmlCommentEnd::StillOpen => in_html_comment = true,
                HtmlCommentEnd::Blank => {}
                HtmlCommentEnd::Text => return None,
            }
            continue;
        }
        let following = body.get(consumed..).unwrap_or("");
        return command_line(line, content, indent.len(), following);
    }
    None
}

/// Where a run of HTML comments leaves the line it ends on.
enum HtmlCommentEnd {
    /// The comment goes on past this line.
    StillOpen,
    /// Nothing but whitespace follows the last comment on the line.
    Blank,
    /// Visible text follows a comment on the same line.
    Text,
}

/// Follows HTML comments through `s`, which starts inside a comment. A comment opened as
/// `<!--` is searched for `-->` from its `--`, so `<!-->` and `<!--->` close at once, as
/// they do in HTML and in GitHub's renderer.
fn skip_html_comments(mut s: &str) -> HtmlCommentEnd {
    loop {
        let Some(end) = s.find("-->") else {
            return HtmlCommentEnd::StillOpen;
        };
        let rest = s
            .get(end + 3..)
            .unwrap_or("")
            .trim_start_matches(is_space_or_invisible);
        if rest.is_empty() {
            return HtmlCommentEnd::Blank;
        }
        match rest.strip_prefix("<!") {
            Some(next) if next.starts_with("--") => s = next,
            _ => return HtmlCommentEnd::Text,
        }
    }
}

/// Reads the first non-blank line. `content` is its visible text after the indentation of
/// `indent` bytes; `raw_line` is the line as written; `following` is the rest of the body.
fn command_line(raw_line: &str, content: &str, indent: usize, following: &str) -> Option<Command> {
    let after = strip_trigger(content)?;
    let mut words = after.split_whitespace();
    let instructions = || {
        let rest_of_line = raw_line.get(raw_offset(raw_line, indent + TRIGGER.len())..);
        instructions(rest_of_line.unwrap_or(""), following)
    };
    let Some(first) = words.next() else {
        return Some(Command::Run {
            instructions: instructions(),
        });
    };
    if let Some(subcommand) = Subcommand::from_word(first) {
        return Some(subcommand.command());
    }
    if words.next().is_none() && is_blank(following) {
        return Some(Command::Unknown {
            word: first.to_owned(),
            suggestion: help::suggest(first),
        });
    }
    Some(Command::Run {
        instructions: instructions(),
    })
}

/// The instructions: the rest of the first line and the following lines, trimmed.
fn instructions(rest_of_line: &str, following: &str) -> Option<String> {
    let joined = format!("{rest_of_line}\n{following}");
    let trimmed = joined.trim_matches(is_space_or_invisible);
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// Markdown help for the commands, posted for `/orchestrate help` and after an unknown word.
///
/// It says what each subcommand does, who may use it, and that adding `trigger_label` to an
/// issue starts a job too (the label is shown in a code span; an empty label is left out).
/// No line of it is a command line, so the bot can post it as it is.
#[must_use]
pub fn usage_text(trigger_label: &str) -> String {
    help::usage_text(trigger_label)
}

/// The reply to [`Command::Unknown`]: "`` `/orchestrate xyz` `` is not a command. Did you
/// mean `` `/orchestrate cancel` ``?", how to give one-word instructions, then
/// [`usage_text`].
///
/// `word` and `suggestion` are echoed inside code spans, stripped of control and invisible
/// characters and shortened, so a crafted word cannot mention people, inject Markdown or
/// form a command line.
#[must_use]
pub fn unknown_reply(word: &str, suggestion: Option<&str>, trigger_label: &str) -> String {
    help::unknown_reply(word, suggestion, trigger_label)
}

/// Whether any line of `text`, with leading whitespace and invisible characters ignored,
/// starts with `/orchestrate` followed by whitespace or the end of the line.
///
/// Wider than [`parse`] on purpose (every line, any indentation), so that whatever `parse`
/// would read as a command is caught. The bot checks its own comments with it.
#[must_use]
pub fn contains_command_line(text: &str) -> bool {
    guard::contains_command_line(text)
}

/// `text` with every line that [`contains_command_line`] would flag rewritten so it no
/// longer reads as a command: the trigger is wrapped in backticks (`` `/orchestrate` cancel ``).
///
/// Everything else, line endings included, is kept byte for byte. Used when the bot quotes
/// user text (issue text, instructions) in its own comments.
#[must_use]
pub fn neutralize_commands(text: &str) -> String {
    guard::neutralize_commands(text)
}
