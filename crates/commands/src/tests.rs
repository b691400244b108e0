//! Tests: one named test per parse case (a table, through a macro), then the echo guard,
//! the help texts, the did-you-mean distance, and generated inputs for the invariants.

use crate::help::{Subcommand, edit_distance, suggest};
use crate::{Command, contains_command_line, neutralize_commands, parse, unknown_reply, usage_text};

fn run() -> Option<Command> {
    Some(Command::Run { instructions: None })
}

fn run_with(instructions: &str) -> Option<Command> {
    Some(Command::Run {
        instructions: Some(instructions.to_owned()),
    })
}

fn unknown(word: &str, suggestion: Option<&'static str>) -> Option<Command> {
    Some(Command::Unknown {
        word: word.to_owned(),
        suggestion,
    })
}

const NOTHING: Option<Command> = None;

/// One `#[test]` per case, named for the behaviour, plus `CASE_BODIES` for the invariants.
macro_rules! parse_cases {
    ($($name:ident: $body:expr => $expected:expr;)+) => {
        mod parse_table {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $name() {
                    assert_eq!(crate::parse($body), $expected, "body: {:?}", $body);
                }
            )+
        }
        const CASE_BODIES: &[&str] = &[$($body),+];
    };
}

parse_cases! {
    // Starting a job.
    bare_command_starts_a_job: "/orchestrate" => run();
    bare_command_with_trailing_spaces_starts_a_job: "/orchestrate   \t" => run();
    bare_command_followed_by_blank_lines_has_no_instructions: "/orchestrate\n\n   \n\t\n" => run();
    command_after_leading_blank_lines_counts: "\n  \n\t\n/orchestrate" => run();
    uppercase_trigger_is_accepted: "/ORCHESTRATE" => run();
    up_to_three_leading_spaces_are_allowed: "   /orchestrate help" => Some(Command::Help);

    // Subcommands.
    cancel_is_a_subcommand: "/orchestrate cancel" => Some(Command::Cancel);
    retry_is_a_subcommand: "/orchestrate retry" => Some(Command::Retry);
    status_is_a_subcommand: "/orchestrate status" => Some(Command::Status);
    help_is_a_subcommand: "/orchestrate help" => Some(Command::Help);
    mixed_case_trigger_and_subcommand_are_accepted: "/OrChEsTrAtE CaNcEl" => Some(Command::Cancel);
    tab_separates_trigger_and_subcommand: "/orchestrate\tstatus" => Some(Command::Status);
    subcommand_ignores_the_words_after_it: "/orchestrate cancel this job please" => Some(Command::Cancel);
    subcommand_ignores_the_following_lines: "/orchestrate retry\nand also fix the tests" => Some(Command::Retry);

    // Instructions.
    two_words_are_instructions: "/orchestrate fix typo" => run_with("fix typo");
    instructions_keep_their_text_as_written:
        "/orchestrate  Use `serde`,  NOT   manual parsing!  " => run_with("Use `serde`,  NOT   manual parsing!");
    text_below_a_bare_command_is_instructions:
        "/orchestrate\nPlease also update the README.\n" => run_with("Please also update the README.");
    one_word_with_following_lines_is_instructions:
        "/orchestrate refactor\nthe parser module" => run_with("refactor\nthe parser module");
    multi_line_instructions_keep_inner_blank_lines_and_markdown:
        "/orchestrate add tests\n\n- for `parse`\n- for usage\n\n> quoted\n\n" =>
        run_with("add tests\n\n- for `parse`\n- for usage\n\n> quoted");
    instructions_keep_non_ascii_text: "/orchestrate übersetze die Fehlermeldungen 👩‍💻" =>
        run_with("übersetze die Fehlermeldungen 👩‍💻");

    // Line endings, BOM and invisible characters.
    crlf_in_instructions_is_normalised_to_lf:
        "/orchestrate add tests\r\n\r\nfor the parser\r\n" => run_with("add tests\n\nfor the parser");
    crlf_after_bare_command_is_a_line_end: "/orchestrate\r\n\r\n" => run();
    crlf_after_subcommand_is_a_line_end: "/orchestrate status\r\n" => Some(Command::Status);
    lone_cr_ends_a_line: "/orchestrate cancel\rmore text" => Some(Command::Cancel);
    command_after_lone_cr_is_on_a_second_line: "hello\r/orchestrate" => NOTHING;
    utf8_bom_before_command_is_ignored: "\u{FEFF}/orchestrate status" => Some(Command::Status);
    zero_width_space_cannot_hide_a_command: "\u{200B}/orchestrate" => run();
    word_joiner_and_non_joiner_cannot_hide_a_subcommand:
        "\u{2060}\u{200C}/orchestrate retry" => Some(Command::Retry);
    zero_width_inside_trigger_cannot_hide_it: "/orche\u{200B}strate cancel" => Some(Command::Cancel);
    zero_width_cannot_fake_a_word_break: "/orchestrate\u{200B}cancel" => NOTHING;
    zero_width_only_line_counts_as_blank: "\u{200B}\u{200D}\n/orchestrate help" => Some(Command::Help);
    zero_width_cannot_hide_indentation: "    \u{200B}/orchestrate" => NOTHING;
    zero_width_is_trimmed_from_instructions: "/orchestrate\n\u{200B}fix it\u{200B}" => run_with("fix it");

    // Unknown single words.
    misspelt_cancel_suggests_cancel: "/orchestrate cancle" => unknown("cancle", Some("cancel"));
    transposed_status_suggests_status: "/orchestrate stauts" => unknown("stauts", Some("status"));
    unknown_word_keeps_its_case: "/orchestrate RETYR" => unknown("RETYR", Some("retry"));
    unknown_word_far_from_every_subcommand_has_no_suggestion:
        "/orchestrate deploy" => unknown("deploy", None);
    unknown_word_followed_by_blank_lines_is_still_unknown:
        "/orchestrate hlep\n\n  \n" => unknown("hlep", Some("help"));
    subcommand_with_punctuation_is_unknown_with_a_hint:
        "/orchestrate cancel." => unknown("cancel.", Some("cancel"));

    // No command.
    empty_body_is_no_command: "" => NOTHING;
    blank_body_is_no_command: "  \n\t\n\r\n" => NOTHING;
    plain_text_is_no_command: "please fix this" => NOTHING;
    slash_alone_is_no_command: "/" => NOTHING;
    trigger_prefix_is_no_command: "/orchestr" => NOTHING;
    longer_word_is_no_command: "/orchestrated" => NOTHING;
    hyphenated_suffix_is_no_command: "/orchestrate-x" => NOTHING;
    colon_after_trigger_is_no_command: "/orchestrate: cancel" => NOTHING;
    mid_sentence_trigger_is_no_command: "please /orchestrate this" => NOTHING;
    second_line_trigger_does_not_count: "Thanks!\n/orchestrate" => NOTHING;
    second_line_subcommand_does_not_count: "LGTM\n\n/orchestrate cancel" => NOTHING;
    quoted_trigger_is_no_command: "> /orchestrate" => NOTHING;
    quoted_subcommand_with_a_reply_is_no_command:
        "> /orchestrate cancel\n\nI think we should keep it running." => NOTHING;
    backtick_fence_hides_the_trigger: "```\n/orchestrate\n```" => NOTHING;
    tilde_fence_hides_the_trigger: "~~~\n/orchestrate cancel\n~~~" => NOTHING;
    four_space_indent_is_a_code_block: "    /orchestrate" => NOTHING;
    tab_indent_is_a_code_block: "\t/orchestrate" => NOTHING;
    spaces_then_tab_indent_is_a_code_block: "  \t/orchestrate cancel" => NOTHING;
    inline_code_is_no_command: "`/orchestrate`" => NOTHING;
    inline_code_in_a_sentence_is_no_command: "`/orchestrate cancel` stops a job" => NOTHING;
    list_item_is_no_command: "- /orchestrate" => NOTHING;
    heading_is_no_command: "# /orchestrate" => NOTHING;
    non_breaking_space_before_trigger_is_no_command: "\u{00A0}/orchestrate" => NOTHING;
    fullwidth_slash_is_no_command: "／orchestrate" => NOTHING;
    unicode_lookalike_letter_is_no_command: "/orcheſtrate" => NOTHING;

    // HTML comments.
    trigger_inside_one_line_html_comment_is_no_command: "<!-- /orchestrate -->" => NOTHING;
    trigger_inside_multi_line_html_comment_is_no_command: "<!--\n/orchestrate cancel\n-->" => NOTHING;
    unclosed_html_comment_hides_the_rest: "<!-- draft\n/orchestrate" => NOTHING;
    command_after_leading_html_comment_counts: "<!-- saved reply -->\n/orchestrate status" => Some(Command::Status);
    command_after_several_html_comments_counts:
        "<!-- a --> <!-- b\n -->\n\n/orchestrate retry" => Some(Command::Retry);
    trigger_after_html_comment_on_same_line_is_mid_line: "<!-- x --> /orchestrate" => NOTHING;
    text_after_multi_line_html_comment_on_its_last_line_is_mid_line:
        "<!--\nnote\n--> /orchestrate" => NOTHING;
    empty_html_comment_closes_at_once: "<!-->\n/orchestrate" => run();
    zero_width_inside_comment_opener_shows_it_as_text: "<\u{200B}!-- x -->\n/orchestrate" => NOTHING;
    zero_width_inside_comment_closer_does_not_close_it:
        "<!-- --\u{200B}>\n/orchestrate\n-->" => NOTHING;
    indented_html_comment_is_a_code_block: "    <!-- x -->\n/orchestrate" => NOTHING;
}

#[test]
fn every_subcommand_parses_back_to_itself_in_any_case() {
    for sub in Subcommand::ALL {
        let expected = Some(sub.command());
        assert_eq!(parse(&format!("/orchestrate {}", sub.name())), expected);
        assert_eq!(
            parse(&format!("/orchestrate {}", sub.name().to_uppercase())),
            expected
        );
        assert_eq!(suggest(sub.name()), Some(sub.name()));
    }
}

#[test]
fn subcommand_names_are_distinct_single_words() {
    for (i, a) in Subcommand::ALL.iter().enumerate() {
        assert!(!a.name().contains(char::is_whitespace));
        for b in &Subcommand::ALL[i + 1..] {
            assert_ne!(a.name(), b.name());
        }
    }
}

#[test]
fn write_access_is_needed_to_start_cancel_and_retry_only() {
    assert!(run().is_some_and(|c| c.requires_write_access()));
    assert!(run_with("x y").is_some_and(|c| c.requires_write_access()));
    assert!(Command::Cancel.requires_write_access());
    assert!(Command::Retry.requires_write_access());
    assert!(!Command::Status.requires_write_access());
    assert!(!Command::Help.requires_write_access());
    assert!(unknown("x", None).is_some_and(|c| !c.requires_write_access()));
}

// Did-you-mean distance.

#[test]
fn edit_distance_counts_insertions_deletions_and_substitutions() {
    assert_eq!(edit_distance("status", "status"), 0);
    assert_eq!(edit_distance("", "help"), 4);
    assert_eq!(edit_distance("help", ""), 4);
    assert_eq!(edit_distance("hel", "help"), 1);
    assert_eq!(edit_distance("helpp", "help"), 1);
    assert_eq!(edit_distance("yelp", "help"), 1);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}

#[test]
fn edit_distance_counts_an_adjacent_swap_as_one() {
    assert_eq!(edit_distance("cancle", "cancel"), 1);
    assert_eq!(edit_distance("stauts", "status"), 1);
    assert_eq!(edit_distance("rtery", "retry"), 1);
    assert_eq!(edit_distance("ab", "ba"), 1);
}

#[test]
fn suggestion_needs_distance_at_most_two() {
    assert_eq!(suggest("cancle"), Some("cancel"));
    assert_eq!(suggest("CANCLE"), Some("cancel"));
    assert_eq!(suggest("canel"), Some("cancel"));
    assert_eq!(suggest("retyr"), Some("retry"));
    assert_eq!(suggest("statsu"), Some("status"));
    assert_eq!(suggest("hepl"), Some("help"));
    assert_eq!(suggest("cancelled"), None); // three letters too many
    assert_eq!(suggest("deploy"), None);
    assert_eq!(suggest("xyz"), None);
    assert_eq!(suggest(&"cancel".repeat(1000)), None);
}

// Help texts.

#[test]
fn usage_text_describes_every_subcommand_access_and_the_label() {
    let usage = usage_text("orchestrate");
    for sub in Subcommand::ALL {
        assert!(
            usage.contains(&format!("`/orchestrate {}`", sub.name())),
            "{} missing from:\n{usage}",
            sub.name()
        );
    }
    assert!(usage.contains("`/orchestrate <instructions>`"));
    assert!(usage.contains("starting a job, `cancel` and `retry` are for people with write access"));
    assert!(usage.contains("`status` and `help` answer anyone"));
    assert!(usage.contains("owners, organization members and collaborators"));
    assert!(usage.contains("Adding the label `orchestrate` to an issue starts a job too"));
}

#[test]
fn usage_text_is_never_a_command_itself() {
    let usage = usage_text("orchestrate");
    assert!(!contains_command_line(&usage), "{usage}");
    assert_eq!(parse(&usage), None);
}

#[test]
fn usage_text_keeps_a_hostile_label_inside_a_code_span() {
    let usage = usage_text("a`b\n/orchestrate");
    assert!(!contains_command_line(&usage), "{usage}");
    assert!(usage.contains("``a`b/orchestrate``"), "{usage}");
    assert!(!usage_text("  ").contains("Adding the label"));
}

#[test]
fn unknown_reply_names_the_word_and_the_suggestion() {
    let reply = unknown_reply("cancle", Some("cancel"), "orchestrate");
    assert!(
        reply.starts_with("`/orchestrate cancle` is not a command. Did you mean `/orchestrate cancel`?"),
        "{reply}"
    );
    assert!(reply.contains("at least two words"));
    assert!(reply.ends_with(&usage_text("orchestrate")));
    assert!(!contains_command_line(&reply));
}

#[test]
fn unknown_reply_without_suggestion_has_no_hint() {
    let reply = unknown_reply("deploy", None, "orchestrate");
    assert!(reply.starts_with("`/orchestrate deploy` is not a command. To give"));
    assert!(!reply.contains("Did you mean"));
}

#[test]
fn unknown_reply_cannot_be_abused_by_the_word() {
    let reply = unknown_reply("@org/team`\u{202E}x\u{200B}", None, "l");
    assert!(reply.starts_with("``/orchestrate @org/team`x`` is"), "{reply}");
    let ends_in_backtick = unknown_reply("x`", None, "l");
    assert!(
        ends_in_backtick.starts_with("`` /orchestrate x` `` is"),
        "{ends_in_backtick}"
    );
    let long = unknown_reply(&"a".repeat(10_000), None, "l");
    assert!(long.starts_with(&format!("`/orchestrate {}…`", "a".repeat(40))));
    assert!(long.len() < usage_text("l").len() + 300);
}

#[test]
fn unknown_words_from_parse_feed_unknown_reply() {
    let Some(Command::Unknown { word, suggestion }) = parse("/orchestrate stauts") else {
        panic!("expected an unknown word");
    };
    let reply = unknown_reply(&word, suggestion, "orchestrate");
    assert!(reply.contains("Did you mean `/orchestrate status`?"));
}

// The echo guard.

#[test]
fn command_lines_are_found_on_any_line_and_indentation() {
    assert!(contains_command_line("/orchestrate"));
    assert!(contains_command_line("Done.\n\n/orchestrate retry"));
    assert!(contains_command_line("text\r\n        /ORCHESTRATE cancel\r\n"));
    assert!(contains_command_line("a\r/orchestrate"));
    assert!(contains_command_line("\t\u{200B}/orch\u{2060}estrate x"));
    assert!(contains_command_line("\u{FEFF}/orchestrate"));
}

#[test]
fn non_command_lines_are_not_flagged() {
    assert!(!contains_command_line(""));
    assert!(!contains_command_line("run `/orchestrate cancel` to stop"));
    assert!(!contains_command_line("> /orchestrate"));
    assert!(!contains_command_line(
        "/orchestrated\n/orchestrate-x\n/orchestrate:"
    ));
    assert!(!contains_command_line("/orchestrate\u{200B}cancel"));
    assert!(!contains_command_line("see /orchestrate"));
}

#[test]
fn neutralize_wraps_the_trigger_and_keeps_everything_else() {
    let text = "Intro\r\n  /Orchestrate cancel now\r\n> /orchestrate\n\u{200B}/orchestrate\rend";
    let out = neutralize_commands(text);
    assert_eq!(
        out,
        "Intro\r\n  `/Orchestrate` cancel now\r\n> /orchestrate\n\u{200B}`/orchestrate`\rend"
    );
    assert!(!contains_command_line(&out));
    assert_eq!(parse(&out), None);
}

#[test]
fn neutralize_removes_invisible_characters_inside_the_trigger() {
    let out = neutralize_commands("/orche\u{200B}strate\u{200B} go");
    assert_eq!(out, "`/orchestrate` go");
}

#[test]
fn neutralize_leaves_text_without_command_lines_unchanged() {
    let text = "Nothing to see\r\n`/orchestrate` here\n> /orchestrate\n";
    assert!(!contains_command_line(text));
    assert_eq!(neutralize_commands(text), text);
    assert_eq!(neutralize_commands(""), "");
}

#[test]
fn neutralized_commands_no_longer_parse() {
    for body in CASE_BODIES {
        let out = neutralize_commands(body);
        assert!(!contains_command_line(&out), "{body:?} -> {out:?}");
        assert_eq!(parse(&out), None, "{body:?} -> {out:?}");
    }
}

// Invariants over generated inputs.

/// Pieces that exercise every branch: triggers, subcommands, separators, line ends,
/// invisible characters, Markdown markers and multi-byte text.
const FRAGMENTS: &[&str] = &[
    "/orchestrate",
    "/ORCHESTRATE",
    "/orche",
    "strate",
    "cancel",
    "stauts",
    "help",
    "fix",
    " ",
    "    ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "\u{200B}",
    "\u{FEFF}",
    "\u{2060}",
    "\u{00A0}",
    "<!--",
    "-->",
    "<!-->",
    ">",
    "`",
    "```",
    "~~~",
    "-",
    "é",
    "👩‍💻",
];

/// A small deterministic generator (no dependency needed): bodies of up to 12 fragments.
fn generated_bodies(count: usize) -> Vec<String> {
    let mut state: u64 = 0x5EED_0F0A_CE11;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(state >> 33).unwrap_or(0)
    };
    (0..count)
        .map(|_| {
            let len = next() % 13;
            (0..len).map(|_| FRAGMENTS[next() % FRAGMENTS.len()]).collect()
        })
        .collect()
}

#[test]
fn whatever_parse_accepts_the_guard_flags() {
    for body in generated_bodies(20_000)
        .iter()
        .map(String::as_str)
        .chain(CASE_BODIES.iter().copied())
    {
        if parse(body).is_some() {
            assert!(contains_command_line(body), "{body:?}");
        }
    }
}

#[test]
fn neutralize_defuses_generated_inputs_and_is_idempotent() {
    for body in generated_bodies(20_000) {
        let out = neutralize_commands(&body);
        assert!(!contains_command_line(&out), "{body:?} -> {out:?}");
        assert_eq!(parse(&out), None, "{body:?} -> {out:?}");
        assert_eq!(neutralize_commands(&out), out, "{body:?}");
        if !contains_command_line(&body) {
            assert_eq!(out, body);
        }
    }
}

#[test]
fn parsing_never_panics_on_awkward_input() {
    let awkward = [
        "\u{FEFF}",
        "\r",
        "\r\r\n\n",
        "<!--",
        "<!---->",
        "/orchestrate \u{FEFF}",
        "/orchestrate\u{0}",
        "   /orchestrate\u{10FFFF} x",
        "\u{200B}\u{200B}\u{200B}\u{200B}/orchestrate",
    ];
    for body in awkward {
        let _ = parse(body);
        let _ = neutralize_commands(body);
        let _ = unknown_reply(body, Some(body), body);
    }
    let huge = format!("/orchestrate {}", "x".repeat(1_000_000));
    assert!(matches!(
        parse(&huge),
        Some(Command::Unknown { suggestion: None, .. })
    ));
}
