//! The coder (CODER-AI) for one step: a patch in, applied under the
//! worktree, or the step failed with the reasons.
//!
//! The prompt names the step (DESIGN §5) and shows the current content of
//! its files, because a diff can only apply if its context lines are copied
//! from the file as it is. A refused patch changes nothing (the diff engine
//! is all-or-nothing), so the refusal reasons go back to the model for a
//! corrected attempt against the same files, up to `max_attempts` in all.
//! An empty answer means the step needs no change: recorded, not an error.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use orchestrator_diff::{ApplyError, ApplyOptions, ApplyReport};
use tokio_util::sync::CancellationToken;

use super::AgentError;
use super::metered::MeteredModel;
use super::paths;
use super::plan::PlanStep;
use super::prompt::system_prompt;
use super::sanitize::IssueSnapshot;
use crate::agents::{AgentsPolicy, Section};
use crate::llm::{ChatMessage, ChatRequest};

/// How the coder calls its model and shows files.
#[derive(Debug, Clone, PartialEq)]
pub struct CoderSettings {
    /// `MODEL_CODER`.
    pub model: String,
    /// Attempts per step, the first included (`coder.max_attempts`).
    pub max_attempts: u32,
    pub max_completion_tokens: u32,
    pub temperature: Option<f32>,
    /// At most this much of one file is shown; the rest is cut at a line.
    pub max_file_bytes: usize,
    /// At most this much of all the step's files together.
    pub max_total_file_bytes: usize,
    pub apply: ApplyOptions,
}

impl CoderSettings {
    pub fn new(model: &str) -> CoderSettings {
        CoderSettings {
            model: model.to_string(),
            max_attempts: 3,
            max_completion_tokens: 8_000,
            temperature: None,
            max_file_bytes: 48 * 1024,
            max_total_file_bytes: 144 * 1024,
            apply: ApplyOptions::default(),
        }
    }

    pub fn from_config(config: &crate::config::Config) -> CoderSettings {
        CoderSettings {
            max_attempts: config.coder.max_attempts.max(1),
            ..CoderSettings::new(&config.models.coder)
        }
    }
}

/// What the coder reads for one step.
#[derive(Debug, Clone, Copy)]
pub struct StepInput<'a> {
    pub policy: &'a AgentsPolicy,
    pub repo_agents_md: Option<&'a str>,
    /// The issue, unless the context already carries it.
    pub issue: Option<&'a IssueSnapshot>,
    pub step: &'a PlanStep,
    /// 1-based position of the step in the plan, and the plan's length.
    pub number: usize,
    pub total: usize,
    /// The context engine's output for this step.
    pub context: &'a str,
    /// The job's worktree.
    pub root: &'a Path,
}

/// What a step came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Applied(ApplyReport),
    /// The model said nothing needs to change.
    Empty,
}

/// One attempt's failure.
enum Attempt {
    Refused(Vec<String>),
    Io(String),
}

/// Asks for the step's patch and applies it, feeding refusals back.
pub async fn code_step(
    model: &MeteredModel<'_>,
    input: &StepInput<'_>,
    settings: &CoderSettings,
    cancel: &CancellationToken,
) -> Result<StepOutcome, AgentError> {
    let mut messages = vec![
        ChatMessage::system(system_prompt(input.policy, Section::Coder, input.repo_agents_md)),
        ChatMessage::user(step_prompt(input, settings)),
    ];
    let mut reasons = Vec::new();
    for attempt in 1..=settings.max_attempts.max(1) {
        if attempt > 1 {
            messages.push(ChatMessage::user(refusal_prompt(&reasons)));
        }
        let request = ChatRequest {
            model: settings.model.clone(),
            messages: messages.clone(),
            max_completion_tokens: settings.max_completion_tokens,
            temperature: settings.temperature,
        };
        let answer = model.chat(&request, cancel).await?.content;
        match try_apply(answer.clone(), input.root.to_path_buf(), settings.apply.clone()).await {
            Ok(outcome) => return Ok(outcome),
            Err(Attempt::Io(e)) => return Err(AgentError::Io(e)),
            Err(Attempt::Refused(r)) => {
                tracing::info!(step = input.number, attempt, reasons = ?r, "the coder's patch was refused");
                reasons = r;
                messages.push(ChatMessage::assistant(answer));
            }
        }
    }
    Err(AgentError::DiffRefused {
        step: format!("{} {:?}", input.number, input.step.title),
        attempts: settings.max_attempts.max(1),
        reasons,
    })
}

fn refusal_prompt(reasons: &[String]) -> String {
    format!(
        "Your patch was refused, and no part of it was applied:\n{}\n\nAnswer a corrected patch against the \
         current files shown above (not against your previous attempt); switch to the full-file form for a \
         file whose hunks keep failing. An empty answer means nothing needs to change.",
        reasons
            .iter()
            .map(|r| format!("- {r}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// Parses, checks the policy's paths and applies, off the async threads
/// (applying reads, writes and syncs files).
async fn try_apply(answer: String, root: PathBuf, options: ApplyOptions) -> Result<StepOutcome, Attempt> {
    let work = move || apply_answer(&answer, &root, &options);
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(Attempt::Io(format!("the apply task failed: {e}"))))
}

fn apply_answer(answer: &str, root: &Path, options: &ApplyOptions) -> Result<StepOutcome, Attempt> {
    if is_empty_answer(answer) {
        return Ok(StepOutcome::Empty);
    }
    let patch = orchestrator_diff::parse(answer).map_err(|e| Attempt::Refused(vec![e.to_string()]))?;
    let forbidden: Vec<String> = patch
        .paths()
        .filter_map(|p| paths::problem(p.as_str()).map(|why| format!("{p}: {why}")))
        .collect();
    if !forbidden.is_empty() {
        return Err(Attempt::Refused(forbidden));
    }
    match orchestrator_diff::apply(&patch, root, options) {
        Ok(report) => Ok(StepOutcome::Applied(report)),
        Err(ApplyError::Refused(refusals)) => Err(Attempt::Refused(
            refusals.iter().map(ToString::to_string).collect(),
        )),
        Err(io) => Err(Attempt::Io(io.to_string())),
    }
}

/// Empty, or one of the few ways models say "nothing to change".
pub fn is_empty_answer(answer: &str) -> bool {
    let text: String = answer
        .lines()
        .filter(|l| !l.trim_start().starts_with("```"))
        .collect::<Vec<_>>()
        .join(" ");
    let text = text.trim().trim_end_matches('.').to_ascii_lowercase();
    matches!(
        text.as_str(),
        "" | "no changes" | "no change" | "no changes needed" | "nothing to change" | "none"
    )
}

fn step_prompt(input: &StepInput<'_>, settings: &CoderSettings) -> String {
    let step = input.step;
    let mut out = format!(
        "# Step {} of {}: {}\n\nRationale: {}\nAcceptance: {}\nFiles: {}\n",
        input.number,
        input.total,
        step.title,
        step.rationale,
        step.acceptance,
        step.files.join(", ")
    );
    if let Some(issue) = input.issue {
        let _ = write!(out, "\n# The issue this plan carries out\n\n{}", issue.render());
    }
    if !input.context.trim().is_empty() {
        let _ = write!(out, "\n# Context\n\n{}\n", input.context.trim_end());
    }
    out.push_str("\n# Current content of the step's files\n\n");
    out.push_str(&current_files(input.root, &step.files, settings));
    let _ = write!(
        out,
        "\n# Your task\n\nCarry out step {} (\"{}\") and only this step. Answer with a unified diff or full-file \
         blocks, or with an empty answer if nothing needs to change.\n",
        input.number, step.title
    );
    out
}

/// Each of the step's files as it is now, between marker lines, within the
/// byte caps. Files the policy forbids, or that resolve outside the root
/// through a symbolic link, are never read.
fn current_files(root: &Path, files: &[String], settings: &CoderSettings) -> String {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut left = settings.max_total_file_bytes;
    let mut out = String::new();
    for file in files {
        let body = match paths::problem(file) {
            Some(why) => Err(format!("not shown: {why}")),
            None => read_capped(&root, file, settings.max_file_bytes.min(left)),
        };
        match body {
            Ok(text) => {
                left = left.saturating_sub(text.len());
                let _ = write!(out, "----- BEGIN {file} -----\n{text}");
                if !text.is_empty() && !text.ends_with('\n') {
                    out.push_str("\n\\ No newline at end of file\n");
                }
                let _ = writeln!(out, "----- END {file} -----\n");
            }
            Err(note) => {
                let _ = writeln!(out, "----- {file}: ({note}) -----\n");
            }
        }
    }
    out
}

fn read_capped(root: &Path, file: &str, cap: usize) -> Result<String, String> {
    let path = root.join(file);
    let real = match std::fs::canonicalize(&path) {
        Ok(real) => real,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("does not exist yet: create it with the full-file form".into());
        }
        Err(e) => return Err(format!("cannot be read: {e}")),
    };
    if !real.starts_with(root) {
        return Err("not shown: it leads outside the repository".into());
    }
    if !real.is_file() {
        return Err("not a regular file".into());
    }
    if cap == 0 {
        return Err("not shown: the prompt's budget for files is spent".into());
    }
    let mut bytes = Vec::new();
    let read = std::fs::File::open(&real).and_then(|f| f.take(cap as u64 + 1).read_to_end(&mut bytes));
    read.map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.contains(&0) {
        return Err("binary file, not shown".into());
    }
    let truncated = bytes.len() > cap;
    bytes.truncate(cap);
    let mut text = match String::from_utf8(bytes) {
        Ok(text) => text,
        // The cap cut a character in two: keep what precedes it.
        Err(e) if truncated && e.utf8_error().valid_up_to() + 4 > cap => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).map_err(|_| "not UTF-8 text, not shown".to_string())?
        }
        Err(_) => return Err("not UTF-8 text, not shown".into()),
    };
    if truncated {
        let cut = text.rfind('\n').map_or(0, |i| i + 1);
        text.truncate(cut);
        text.push_str("[… the rest of the file is not shown; change it with hunks whose context is above]\n");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::llm::budget::Limits;
    use crate::pipeline::scripted::ScriptedModel;
    use crate::pricing::Pricing;

    const FILE: &str = "fn main() {\n    println!(\"Hello\");\n}\n";
    const GOOD: &str = "--- a/src/main.rs\n+++ b/src/main.rs\n@@ -1,3 +1,3 @@\n fn main() {\n-    println!(\"Hello\");\n+    println!(\"Hello, world!\");\n }\n";
    const BAD: &str = "--- a/src/main.rs\n+++ b/src/main.rs\n@@ -1,3 +1,3 @@\n fn main() {\n-    println!(\"Goodbye\");\n+    println!(\"Hello, world!\");\n }\n";

    struct Fixture {
        dir: tempfile::TempDir,
        policy: AgentsPolicy,
        pricing: Pricing,
        step: PlanStep,
        fake: ScriptedModel,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/main.rs"), FILE).unwrap();
        Fixture {
            dir,
            policy: AgentsPolicy::parse(crate::agents::BUILT_IN, "built-in").unwrap(),
            pricing: Pricing::parse(crate::pricing::BUILT_IN, "test").unwrap(),
            step: PlanStep {
                title: "Greet the world".into(),
                rationale: "The issue asks for it.".into(),
                acceptance: "It prints Hello, world!".into(),
                files: vec!["src/main.rs".into(), "src/new.rs".into()],
                commands: vec![],
            },
            fake: ScriptedModel::new(),
        }
    }

    impl Fixture {
        async fn run(&self) -> Result<StepOutcome, AgentError> {
            let limits = Limits {
                usd: 5.0,
                requests: 10,
                wall_clock: Duration::from_secs(600),
                daily_remaining_usd: 50.0,
            };
            let model = MeteredModel::new(&self.fake, &self.pricing, limits, Instant::now());
            let input = StepInput {
                policy: &self.policy,
                repo_agents_md: None,
                issue: None,
                step: &self.step,
                number: 2,
                total: 3,
                context: "[file score=0.80] src/main.rs fn main()",
                root: self.dir.path(),
            };
            let settings = CoderSettings {
                apply: ApplyOptions {
                    sync: false,
                    ..ApplyOptions::default()
                },
                ..CoderSettings::new("gpt-4.1")
            };
            code_step(&model, &input, &settings, &CancellationToken::new()).await
        }

        fn main_rs(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("src/main.rs")).unwrap()
        }
    }

    #[tokio::test]
    async fn a_good_diff_is_applied_and_the_prompt_names_the_step() {
        let f = fixture();
        f.fake.push_reply(GOOD);
        let outcome = f.run().await.unwrap();
        assert!(
            matches!(outcome, StepOutcome::Applied(ref r) if r.files.len() == 1),
            "{outcome:?}"
        );
        assert!(f.main_rs().contains("Hello, world!"));
        let request = &f.fake.requests()[0];
        assert_eq!(request.model, "gpt-4.1");
        assert!(request.messages[0].content.starts_with("## CODER-AI"));
        let user = &request.messages[1].content;
        assert!(user.starts_with("# Step 2 of 3: Greet the world"), "{user}");
        assert!(user.contains("Carry out step 2 (\"Greet the world\")"));
        assert!(user.contains(&format!(
            "----- BEGIN src/main.rs -----\n{FILE}----- END src/main.rs -----"
        )));
        assert!(user.contains("src/new.rs: (does not exist yet"));
        assert!(user.contains("[file score=0.80]"));
    }

    #[tokio::test]
    async fn an_empty_answer_is_an_empty_step() {
        for answer in ["", "  \n", "No changes.", "```\n```"] {
            let f = fixture();
            f.fake.push_reply(answer);
            assert_eq!(f.run().await.unwrap(), StepOutcome::Empty, "{answer:?}");
            assert_eq!(f.main_rs(), FILE);
        }
    }

    #[tokio::test]
    async fn a_refusal_goes_back_to_the_model_and_the_corrected_patch_applies() {
        let f = fixture();
        f.fake.push_reply(BAD);
        f.fake.push_reply(GOOD);
        assert!(matches!(f.run().await.unwrap(), StepOutcome::Applied(_)));
        let requests = f.fake.requests();
        assert_eq!(requests.len(), 2);
        let second = &requests[1].messages;
        assert_eq!(second.len(), 4);
        assert_eq!(second[2].content, BAD);
        let follow_up = &second[3].content;
        assert!(follow_up.starts_with("Your patch was refused"), "{follow_up}");
        assert!(follow_up.contains("src/main.rs: hunk 1"), "{follow_up}");
        assert!(
            follow_up.contains("context and removed lines not found"),
            "{follow_up}"
        );
    }

    #[tokio::test]
    async fn three_refusals_fail_the_step_by_name() {
        let f = fixture();
        for _ in 0..3 {
            f.fake.push_reply(BAD);
        }
        let err = f.run().await.unwrap_err();
        assert_eq!(err.code(), "diff_refused");
        let reason = err.status_reason();
        assert!(
            reason.starts_with("diff_refused: step 2 \"Greet the world\" was refused 3 times"),
            "{reason}"
        );
        assert!(reason.contains("src/main.rs: hunk 1"), "{reason}");
        assert_eq!(f.fake.requests().len(), 3);
        assert_eq!(f.main_rs(), FILE);
    }

    #[tokio::test]
    async fn workflow_and_git_paths_are_refused_with_a_clear_reason() {
        let f = fixture();
        f.fake
            .push_reply("=== FILE: .github/workflows/ci.yml\non: push\n=== END FILE\n");
        f.fake
            .push_reply("=== FILE: .git/hooks/pre-commit\nrm -rf /\n=== END FILE\n");
        f.fake.push_reply("prose only");
        let err = f.run().await.unwrap_err();
        let requests = f.fake.requests();
        let first_refusal = &requests[1].messages[3].content;
        assert!(
            first_refusal.contains(".github/workflows/ci.yml: is under `.github/workflows/`"),
            "{first_refusal}"
        );
        let second_refusal = &requests[2].messages[5].content;
        assert!(second_refusal.contains(".git"), "{second_refusal}");
        assert!(
            err.status_reason().contains("no unified diff"),
            "{}",
            err.status_reason()
        );
        assert!(!f.dir.path().join(".github").exists());
    }

    #[test]
    fn shown_files_are_capped_and_never_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.txt"), "line\n".repeat(100)).unwrap();
        std::fs::write(dir.path().join("bin"), b"a\0b").unwrap();
        std::fs::write(dir.path().join(".env"), "TOKEN=x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).unwrap();
        let settings = CoderSettings {
            max_file_bytes: 22,
            ..CoderSettings::new("m")
        };
        let files: Vec<String> = ["big.txt", "bin", ".env", "link"].map(String::from).to_vec();
        let text = current_files(dir.path(), &files, &settings);
        assert!(
            text.contains("----- BEGIN big.txt -----\nline\nline\nline\nline\n[… the rest"),
            "{text}"
        );
        assert!(text.contains("bin: (binary file"), "{text}");
        assert!(text.contains(".env: (not shown: looks like a secret"), "{text}");
        assert!(!text.contains("TOKEN"));
        #[cfg(unix)]
        assert!(text.contains("link: (not shown: it leads outside"), "{text}");
    }
}
