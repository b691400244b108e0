//! Property tests: random files, random edits, a diff made by a real tool (`git diff
//! --no-index` or `diff -u`, never our own writer: DESIGN §9), random damage from the
//! list of issue 3, then the engine. The oracle in `common` says from the damaged diff
//! and the old files alone what must happen: apply and give exactly the edited files, or
//! refuse and change nothing.
//!
//! Two content flavours: lines that are all distinct (so nearly every damage keeps the
//! intent unique, and the engine must apply), and lines drawn from a tiny alphabet (so
//! contexts repeat, and the engine must refuse whatever is not unique, never guess).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Damage, Tool};
use proptest::prelude::*;

/// A line before ids are assigned: (kind, indent, word).
type LineSpec = (u8, u8, u8);

#[derive(Clone, Debug)]
struct FileSpec {
    old: Vec<LineSpec>,
    /// (operation, position, line): replace, delete or insert.
    edits: Vec<(u8, u16, LineSpec)>,
    crlf: bool,
    old_final_newline: bool,
    new_final_newline: bool,
    /// 0: modified; 1: created (no old file); 2: deleted (no new file).
    existence: u8,
}

fn line_spec() -> impl Strategy<Value = LineSpec> {
    (0u8..10, 0u8..5, 0u8..8)
}

fn file_spec() -> impl Strategy<Value = FileSpec> {
    (
        prop::collection::vec(line_spec(), 0..40),
        prop::collection::vec((0u8..3, any::<u16>(), line_spec()), 1..6),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.8),
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
    )
        .prop_map(
            |(old, edits, crlf, old_final_newline, new_final_newline, existence)| FileSpec {
                old,
                edits,
                crlf,
                old_final_newline,
                new_final_newline,
                existence,
            },
        )
}

const INDENTS: [&str; 5] = ["", "  ", "    ", "\t", "        "];
const WORDS: [&str; 8] = [
    "let x = 1;",
    "call(a, b)",
    "}",
    "return y",
    "if z {",
    "// note",
    "x += 2;",
    "end",
];
const TINY: [&str; 6] = ["a", "}", "", "    x", "\ty", "b"];

/// Renders a line; `distinct` appends a unique id (blank lines stay blank).
fn line(spec: LineSpec, distinct: bool, next_id: &mut usize) -> String {
    let (kind, indent, word) = spec;
    if !distinct {
        return TINY[usize::from(word) % TINY.len()].to_owned();
    }
    if kind == 0 {
        return String::new();
    }
    *next_id += 1;
    format!(
        "{}{} #{}",
        INDENTS[usize::from(indent) % INDENTS.len()],
        WORDS[usize::from(word) % WORDS.len()],
        next_id
    )
}

fn join(lines: &[String], crlf: bool, final_newline: bool) -> Vec<u8> {
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut text = lines.join(eol);
    if final_newline && !lines.is_empty() {
        text.push_str(eol);
    }
    text.into_bytes()
}

/// The old and new content of one file (`None`: absent).
fn contents(spec: &FileSpec, distinct: bool) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut id = 0;
    let old: Vec<String> = spec.old.iter().map(|l| line(*l, distinct, &mut id)).collect();
    let mut new = old.clone();
    for (op, pos, l) in &spec.edits {
        let pos = usize::from(*pos);
        match op {
            0 if !new.is_empty() => {
                let i = pos % new.len();
                new[i] = line(*l, distinct, &mut id);
            }
            1 if !new.is_empty() => {
                new.remove(pos % new.len());
            }
            _ => {
                let i = pos % (new.len() + 1);
                new.insert(i, line(*l, distinct, &mut id));
            }
        }
    }
    // A file without a line ending has no style to keep: the engine writes LF there, as
    // it does for new files.
    let old_has_eol = old.len() > 1 || (old.len() == 1 && spec.old_final_newline);
    let crlf = spec.crlf && old_has_eol && spec.existence != 1;
    let old_bytes = join(&old, crlf, spec.old_final_newline);
    let new_bytes = join(&new, crlf, spec.new_final_newline);
    match spec.existence {
        1 => (None, Some(new_bytes)),
        2 => (Some(old_bytes), None),
        _ => (Some(old_bytes), Some(new_bytes)),
    }
}

/// Runs one case through the shared scenario checker.
fn check(
    specs: &[FileSpec],
    distinct: bool,
    use_git: bool,
    context: usize,
    seed: u64,
) -> Result<(), TestCaseError> {
    let tool = if use_git { Tool::Git } else { Tool::DiffU };
    let scenario: common::Scenario = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let (old, new) = contents(spec, distinct);
            (format!("dir{}/file{i}.txt", i % 2), old, new)
        })
        .collect();
    let verdict =
        common::run_scenario(&scenario, tool, context, Damage::random, seed).map_err(TestCaseError::fail)?;
    prop_assume!(verdict.is_some());
    if let (Ok(stats), Some(v)) = (std::env::var("DIFF_PROP_STATS"), verdict) {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(stats)
            .unwrap();
        writeln!(f, "{v:?}").unwrap();
    }
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // PROPTEST_CASES raises it for a long run.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Distinct lines: the damaged diff must apply exactly whenever the oracle says its
    /// intent is unique (nearly always), and refuse otherwise.
    #[test]
    fn damaged_diffs_of_distinct_lines(
        specs in prop::collection::vec(file_spec(), 1..4),
        use_git in any::<bool>(),
        context in prop_oneof![1 => Just(0usize), 1 => Just(1), 4 => Just(3), 1 => Just(5)],
        seed in any::<u64>(),
    ) {
        check(&specs, true, use_git, context, seed)?;
    }

    /// Repetitive lines: ambiguity everywhere. Whatever is applied must be exactly the
    /// edit; whatever is not unique must be refused.
    #[test]
    fn damaged_diffs_of_repetitive_lines(
        specs in prop::collection::vec(file_spec(), 1..3),
        use_git in any::<bool>(),
        context in prop_oneof![1 => Just(0usize), 1 => Just(1), 2 => Just(3)],
        seed in any::<u64>(),
    ) {
        check(&specs, false, use_git, context, seed)?;
    }

    /// The parser never panics, on fragments of diffs glued at random.
    #[test]
    fn parse_never_panics(parts in prop::collection::vec(prop_oneof![
        Just("diff --git a/x b/x\n".to_owned()),
        Just("--- a/x\n".to_owned()),
        Just("+++ b/x\n".to_owned()),
        Just("@@ -1,2 +1,3 @@\n".to_owned()),
        Just("@@ @@\n".to_owned()),
        Just(" ctx\n".to_owned()),
        Just("-old\n".to_owned()),
        Just("+new\n".to_owned()),
        Just("\\ No newline at end of file\n".to_owned()),
        Just("```diff\n".to_owned()),
        Just("```\n".to_owned()),
        Just("=== FILE: a/b\n".to_owned()),
        Just("=== END FILE\n".to_owned()),
        Just("rename from x\n".to_owned()),
        Just("new file mode 100755\n".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        any::<String>(),
    ], 0..40)) {
        let text: String = parts.concat();
        let _ = orchestrator_diff::parse(&text);
    }
}
