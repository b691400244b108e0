//! The echo guard: finding and defusing command lines in text the bot is about to post.
//!
//! The bot ignores its own comments, but people copy, quote and forward text, and other
//! bots may read ours. So a bot comment never contains a line that reads as a command.
//! The rule here is deliberately wider than [`crate::parse`]: any line, at any indentation,
//! counts, so that whatever `parse` accepts is always caught.

use crate::text::{Lines, TRIGGER, is_invisible, is_space_or_invisible, visible};

/// Byte range of the trigger in `line` when the line, with leading whitespace and
/// invisible characters skipped, starts with the trigger followed by whitespace or its end.
/// Invisible characters inside the trigger are skipped too, as [`crate::parse`] does.
fn trigger_span(line: &str) -> Option<(usize, usize)> {
    let start = line.find(|c: char| !is_space_or_invisible(c))?;
    let tail = line.get(start..)?;
    let mut expected = TRIGGER.chars();
    for (offset, c) in tail.char_indices() {
        if is_invisible(c) {
            continue;
        }
        match expected.next() {
            Some(want) if c.eq_ignore_ascii_case(&want) => {}
            Some(_) => return None,
            None => return c.is_whitespace().then_some((start, start + offset)),
        }
    }
    expected.next().is_none().then_some((start, line.len()))
}

/// See [`crate::contains_command_line`].
pub(crate) fn contains_command_line(text: &str) -> bool {
    Lines::new(text).any(|(line, _)| trigger_span(line).is_some())
}

/// See [`crate::neutralize_commands`].
pub(crate) fn neutralize_commands(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (line, terminator) in Lines::new(text) {
        match trigger_span(line)
            .and_then(|(start, end)| Some((line.get(..start)?, line.get(start..end)?, line.get(end..)?)))
        {
            Some((indent, trigger, rest)) => {
                // The trigger keeps its case; the backticks make the line start with "`".
                out.push_str(indent);
                out.push('`');
                out.push_str(&visible(trigger));
                out.push('`');
                out.push_str(rest);
            }
            None => out.push_str(line),
        }
        out.push_str(terminator);
    }
    out
}
