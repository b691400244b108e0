//! Subcommands, their help text and the did-you-mean hint.
//!
//! Every fact about a subcommand (its word, what it does, who may use it, the `Command` it
//! becomes) is an exhaustive `match` on [`Subcommand`], as bors does for its help text:
//! adding a subcommand without help text or an access rule fails to compile.

use std::fmt::Write as _;

use crate::Command;
use crate::text::{TRIGGER, is_invisible};

/// The words that may follow the trigger as a subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Subcommand {
    /// Stop the running job.
    Cancel,
    /// Run a failed or cancelled job again.
    Retry,
    /// Report the newest job.
    Status,
    /// Show the usage text.
    Help,
}

/// Who may use a command; shown in the usage text and used by the router's gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Owners, members and collaborators with write, maintain or admin permission.
    Writers,
    /// Anyone who can comment: the command changes nothing.
    Anyone,
}

impl Subcommand {
    /// Every subcommand, in the order the usage text lists them. A new variant must be
    /// added here as well; the tests check that each one parses back to itself.
    pub(crate) const ALL: [Self; 4] = [Self::Cancel, Self::Retry, Self::Status, Self::Help];

    /// The word as users type it (any case is accepted).
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::Retry => "retry",
            Self::Status => "status",
            Self::Help => "help",
        }
    }

    /// One line for the usage text: what the subcommand does.
    const fn help(self) -> &'static str {
        match self {
            Self::Cancel => {
                "stop the running job on this issue; the steps it already pushed stay on its branch."
            }
            Self::Retry => {
                "run the failed or cancelled job again as a new attempt, on the same branch and \
                 progress comment, keeping the steps already pushed."
            }
            Self::Status => {
                "reply with the state of the newest job on this issue: its steps, cost and links."
            }
            Self::Help => "reply with this text.",
        }
    }

    /// Who may use the subcommand (DESIGN §4: `help` and `status` answer anyone).
    pub(crate) const fn access(self) -> Access {
        match self {
            Self::Cancel | Self::Retry => Access::Writers,
            Self::Status | Self::Help => Access::Anyone,
        }
    }

    /// The command the subcommand stands for.
    pub(crate) const fn command(self) -> Command {
        match self {
            Self::Cancel => Command::Cancel,
            Self::Retry => Command::Retry,
            Self::Status => Command::Status,
            Self::Help => Command::Help,
        }
    }

    /// The subcommand spelled `word`, in any ASCII case.
    pub(crate) fn from_word(word: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|sub| word.eq_ignore_ascii_case(sub.name()))
    }
}

/// Largest edit distance for which a did-you-mean hint is offered.
const MAX_SUGGESTION_DISTANCE: usize = 2;

/// The subcommand closest to `word` (edit distance ≤ 2, transpositions counting as one
/// edit), the first in usage order on a tie; `None` when nothing is close.
pub(crate) fn suggest(word: &str) -> Option<&'static str> {
    let word = word.to_lowercase();
    let len = word.chars().count();
    Subcommand::ALL
        .into_iter()
        .map(Subcommand::name)
        // The distance is at least the difference in length: skip the work for long words.
        .filter(|name| len <= name.len() + MAX_SUGGESTION_DISTANCE)
        .map(|name| (edit_distance(&word, name), name))
        .filter(|&(distance, _)| distance <= MAX_SUGGESTION_DISTANCE)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, name)| name)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of
/// two adjacent characters each cost one (`cancle` → `cancel` and `stauts` → `status` are 1).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rolling rows of the usual dynamic-programming table: i-2, i-1 and i.
    let mut before = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            cur[j] = best;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Longest user-supplied text (in characters) echoed into a reply.
const MAX_ECHO_CHARS: usize = 40;

/// `s` made safe to echo: control, bidirectional-override and invisible characters dropped
/// (they could disguise the reply) and long text shortened with an ellipsis.
fn sanitize_for_echo(s: &str) -> String {
    let mut kept = s.chars().filter(|&c| {
        !(c.is_control() || is_invisible(c) || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
    });
    let mut out: String = kept.by_ref().take(MAX_ECHO_CHARS).collect();
    if kept.next().is_some() {
        out.push('…');
    }
    out
}

/// `s` as a Markdown code span, with a fence longer than any run of backticks inside it,
/// so user text can neither break out of the span nor render mentions, links or HTML.
pub(crate) fn code_span(s: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// "a", "a and b", "a, b and c".
fn join_list(items: &[String]) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// See [`crate::usage_text`].
pub(crate) fn usage_text(trigger_label: &str) -> String {
    let mut out = String::from(
        "#### Orchestrator commands\n\n\
         Write the command at the start of the **first line** of a new comment on this issue. \
         A command in a quote, a code block or inline code, or further down a comment, is \
         ignored.\n\n",
    );
    let _ = writeln!(
        out,
        "- `{TRIGGER}`: start a job that plans the change, writes the code and opens a pull \
         request, working from the issue text."
    );
    let _ = writeln!(
        out,
        "- `{TRIGGER} <instructions>`: the same, with your instructions added to the issue \
         text (at least two words, or text on the following lines)."
    );
    for sub in Subcommand::ALL {
        let _ = writeln!(out, "- `{TRIGGER} {}`: {}", sub.name(), sub.help());
    }

    let by_access = |access: Access| -> Vec<String> {
        Subcommand::ALL
            .into_iter()
            .filter(|sub| sub.access() == access)
            .map(|sub| code_span(sub.name()))
            .collect()
    };
    // Starting a job (bare or with instructions) always needs write access.
    let writers = [vec!["starting a job".to_owned()], by_access(Access::Writers)].concat();
    let anyone = by_access(Access::Anyone);
    let _ = write!(
        out,
        "\n**Who may use them:** {} are for people with write access to the repository \
         (owners, organization members and collaborators with the write, maintain or admin \
         permission)",
        join_list(&writers)
    );
    if !anyone.is_empty() {
        let _ = write!(out, "; {} answer anyone", join_list(&anyone));
    }
    out.push_str(".\n");

    let label = sanitize_for_echo(trigger_label.trim());
    if !label.is_empty() {
        let _ = writeln!(
            out,
            "\nAdding the label {} to an issue starts a job too, with the same permission rule.",
            code_span(&label)
        );
    }
    out
}

/// See [`crate::unknown_reply`].
pub(crate) fn unknown_reply(word: &str, suggestion: Option<&str>, trigger_label: &str) -> String {
    let mut out = format!(
        "{} is not a command.",
        code_span(&format!("{TRIGGER} {}", sanitize_for_echo(word)))
    );
    if let Some(suggestion) = suggestion {
        let _ = write!(
            out,
            " Did you mean {}?",
            code_span(&format!("{TRIGGER} {}", sanitize_for_echo(suggestion)))
        );
    }
    let _ = write!(
        out,
        " To give instructions, write at least two words after `{TRIGGER}`, or put them on \
         the next lines.\n\n{}",
        usage_text(trigger_label)
    );
    out
}
