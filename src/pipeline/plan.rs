//! The planner (CTO-AI): an issue in, a validated step plan out.
//!
//! Models wrap JSON in fences and prose, drop fields and invent paths, so
//! the answer is extracted leniently but validated strictly: a plan that
//! names a path outside the repository or under `.github/workflows/` would
//! only fail later, after money was spent on coding it. An invalid answer
//! gets one repair round that says exactly what was wrong; a second invalid
//! answer fails the job with `plan_invalid` and the reason.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::AgentError;
use super::metered::MeteredModel;
use super::paths;
use super::prompt::system_prompt;
use super::sanitize::IssueSnapshot;
use crate::agents::{AgentsPolicy, Section};
use crate::llm::{ChatMessage, ChatRequest};

/// AGENTS.md's limit on the number of steps.
pub const DEFAULT_MAX_STEPS: usize = 8;
/// AGENTS.md's limit on a step title (it becomes a commit subject).
pub const MAX_TITLE_CHARS: usize = 100;

/// One step of a plan; the runner stores plans as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStep {
    pub title: String,
    pub rationale: String,
    pub acceptance: String,
    /// Repository-relative paths the step creates or changes.
    pub files: Vec<String>,
    /// Shown to reviewers, never executed.
    #[serde(default)]
    pub commands: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<PlanStep>,
}

/// How the planner calls its model.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannerSettings {
    /// `MODEL_CTO`.
    pub model: String,
    pub max_steps: usize,
    pub max_completion_tokens: u32,
    pub temperature: Option<f32>,
}

impl PlannerSettings {
    pub fn new(model: &str) -> PlannerSettings {
        PlannerSettings {
            model: model.to_string(),
            max_steps: DEFAULT_MAX_STEPS,
            max_completion_tokens: 4_000,
            temperature: None,
        }
    }

    pub fn from_config(config: &crate::config::Config) -> PlannerSettings {
        PlannerSettings::new(&config.models.cto)
    }
}

/// What the planner reads.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub policy: &'a AgentsPolicy,
    /// The target repository's own AGENTS.md, when it has one.
    pub repo_agents_md: Option<&'a str>,
    pub issue: &'a IssueSnapshot,
    /// A repository overview (file tree, README excerpt) built by the caller.
    pub overview: &'a str,
}

/// Asks for a plan, with one repair round for an invalid answer.
pub async fn plan(
    model: &MeteredModel<'_>,
    input: &PlanInput<'_>,
    settings: &PlannerSettings,
    cancel: &CancellationToken,
) -> Result<Plan, AgentError> {
    let mut messages = vec![
        ChatMessage::system(system_prompt(input.policy, Section::Cto, input.repo_agents_md)),
        ChatMessage::user(user_prompt(input, settings.max_steps)),
    ];
    let first = ask(model, &messages, settings, cancel).await?;
    let problem = match parse_plan(&first, settings.max_steps) {
        Ok(plan) => return Ok(plan),
        Err(problem) => problem,
    };
    tracing::info!(%problem, "the plan was invalid; asking for a repair");
    messages.push(ChatMessage::assistant(first));
    messages.push(ChatMessage::user(repair_prompt(&problem)));
    let second = ask(model, &messages, settings, cancel).await?;
    parse_plan(&second, settings.max_steps).map_err(|problem| {
        AgentError::PlanInvalid(format!(
            "the planner answered an invalid plan twice; the second time: {problem}"
        ))
    })
}

async fn ask(
    model: &MeteredModel<'_>,
    messages: &[ChatMessage],
    settings: &PlannerSettings,
    cancel: &CancellationToken,
) -> Result<String, AgentError> {
    let request = ChatRequest {
        model: settings.model.clone(),
        messages: messages.to_vec(),
        max_completion_tokens: settings.max_completion_tokens,
        temperature: settings.temperature,
    };
    Ok(model.chat(&request, cancel).await?.content)
}

fn user_prompt(input: &PlanInput<'_>, max_steps: usize) -> String {
    format!(
        "{}\n# Repository overview\n\n{}\n\n# Your task\n\nPlan the work for this issue in at most {max_steps} steps. \
         Answer with the JSON object only.\n",
        input.issue.render(),
        input.overview.trim()
    )
}

fn repair_prompt(problem: &str) -> String {
    format!(
        "Your plan was refused: {problem}\n\nAnswer the corrected plan: the JSON object \
         {{\"steps\": [...]}} only, following the planning rules and the answer format."
    )
}

/// Extracts and validates a plan; the error says what is wrong in words a
/// person and the model can act on.
pub fn parse_plan(answer: &str, max_steps: usize) -> Result<Plan, String> {
    let max_steps = max_steps.max(1);
    let value = extract_json(answer)?;
    validate(&value, max_steps).map_err(|problems| summarize(&problems))
}

fn summarize(problems: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = problems
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN {
        text.push_str(&format!("; and {} more problems", problems.len() - SHOWN));
    }
    text
}

/// The first plan-shaped JSON value among the answer's top-level bracketed
/// spans, so fences and prose around it do not matter.
fn extract_json(answer: &str) -> Result<Value, String> {
    let mut failure: Option<(usize, String)> = None;
    for (start, end) in top_level_spans(answer) {
        let span = &answer[start..end];
        match serde_json::from_str::<Value>(span) {
            Ok(value) if plan_shaped(&value) => return Ok(value),
            Ok(_) => {}
            Err(e) if failure.as_ref().is_none_or(|(len, _)| span.len() > *len) => {
                let line = answer[..start].matches('\n').count() + 1;
                let msg = format!("the JSON starting at line {line} of the answer is not valid: {e}");
                failure = Some((span.len(), msg));
            }
            Err(_) => {}
        }
    }
    Err(failure
        .map(|(_, m)| m)
        .unwrap_or_else(|| "the answer contains no JSON object with a \"steps\" array".to_string()))
}

fn plan_shaped(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.contains_key("steps"),
        Value::Array(items) => {
            !items.is_empty()
                && items
                    .iter()
                    .all(|i| i.as_object().is_some_and(|o| o.contains_key("title")))
        }
        _ => false,
    }
}

/// Byte ranges of the outermost `{…}` / `[…]` spans, brackets inside JSON
/// strings ignored; an unclosed span runs to the end (a truncated answer).
fn top_level_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let (mut depth, mut start, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for (i, c) in text.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' if depth > 0 => in_string = true,
            '{' | '[' => {
                if depth == 0 {
                    start = i;
                }
                depth += 1;
            }
            '}' | ']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    spans.push((start, i + 1));
                }
            }
            _ => {}
        }
    }
    if depth > 0 {
        spans.push((start, text.len()));
    }
    spans
}

fn validate(value: &Value, max_steps: usize) -> Result<Plan, Vec<String>> {
    let items = match value {
        Value::Array(items) => items,
        Value::Object(map) => match map.get("steps") {
            Some(Value::Array(items)) => items,
            _ => return Err(vec!["\"steps\" must be an array of step objects".into()]),
        },
        _ => {
            return Err(vec![
                "the plan must be a JSON object with a \"steps\" array".into(),
            ]);
        }
    };
    if items.is_empty() {
        return Err(vec!["the plan has no steps; plan at least one".into()]);
    }
    if items.len() > max_steps {
        return Err(vec![format!(
            "the plan has {} steps but at most {max_steps} are allowed; plan the first useful part and say in the last step's rationale what is left",
            items.len()
        )]);
    }
    let mut problems = Vec::new();
    let steps: Vec<PlanStep> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| validate_step(i, item, &mut problems))
        .collect();
    if problems.is_empty() {
        Ok(Plan { steps })
    } else {
        Err(problems)
    }
}

fn validate_step(i: usize, item: &Value, problems: &mut Vec<String>) -> Option<PlanStep> {
    let at = format!("steps[{i}]");
    let Some(obj) = item.as_object() else {
        problems.push(format!("{at} is not an object"));
        return None;
    };
    let before = problems.len();
    let mut text = |field: &str| -> String {
        match obj.get(field) {
            Some(Value::String(s)) => s.trim().to_string(),
            Some(_) => {
                problems.push(format!("{at}.{field} must be a string"));
                String::new()
            }
            None => {
                problems.push(format!("{at}.{field} is missing"));
                String::new()
            }
        }
    };
    let (title, rationale, acceptance) = (text("title"), text("rationale"), text("acceptance"));
    if obj.get("title").is_some_and(Value::is_string) {
        check_title(&at, &title, problems);
    }
    let files = strings(obj.get("files"), &format!("{at}.files"), true, problems);
    for (j, file) in files.iter().enumerate() {
        if let Some(why) = paths::problem(file) {
            problems.push(format!("{at}.files[{j}] {file:?} {why}"));
        }
    }
    let commands = strings(obj.get("commands"), &format!("{at}.commands"), false, problems);
    (problems.len() == before).then_some(PlanStep {
        title,
        rationale,
        acceptance,
        files,
        commands,
    })
}

fn check_title(at: &str, title: &str, problems: &mut Vec<String>) {
    let chars = title.chars().count();
    if chars == 0 {
        problems.push(format!("{at}.title is empty"));
    } else if chars > MAX_TITLE_CHARS {
        problems.push(format!(
            "{at}.title has {chars} characters; at most {MAX_TITLE_CHARS} are allowed"
        ));
    }
}

/// An array of strings; `files` must be present and non-empty, `commands`
/// may be missing. Paths are normalized (`./a` → `a`).
fn strings(value: Option<&Value>, at: &str, required: bool, problems: &mut Vec<String>) -> Vec<String> {
    let items = match value {
        None if !required => return Vec::new(),
        None => {
            problems.push(format!("{at} is missing"));
            return Vec::new();
        }
        Some(Value::Array(items)) => items,
        Some(_) => {
            problems.push(format!("{at} must be an array of strings"));
            return Vec::new();
        }
    };
    if required && items.is_empty() {
        problems.push(format!("{at} is empty; name at least one file"));
    }
    let mut out = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        match item.as_str() {
            Some(s) if required => out.push(paths::normalize(s).to_string()),
            Some(s) => out.push(s.to_string()),
            None => problems.push(format!("{at}[{j}] must be a string")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::llm::budget::Limits;
    use crate::pipeline::scripted::ScriptedModel;
    use crate::pricing::Pricing;

    const STEP: &str = r#"{"title": "Add a flag", "rationale": "asked", "acceptance": "test passes", "files": ["src/cli.rs"], "commands": ["cargo test"]}"#;

    fn good() -> String {
        format!(r#"{{"steps": [{STEP}]}}"#)
    }

    #[test]
    fn plans_are_extracted_from_fences_prose_and_bare_arrays() {
        let table = [
            good(),
            format!("```json\n{}\n```", good()),
            format!("Here is the plan [as asked]:\n\n```\n{}\n```\nGood luck!", good()),
            format!("[{STEP}]"),
            format!("Sure. [{STEP}] That's all."),
            good().replace("\"commands\": [\"cargo test\"]", "\"extra\": {\"x\": \"}\"}"),
            good().replace("src/cli.rs", "./src/cli.rs"),
        ];
        for answer in table {
            let plan = parse_plan(&answer, DEFAULT_MAX_STEPS).unwrap_or_else(|e| panic!("{answer}: {e}"));
            assert_eq!(plan.steps.len(), 1, "{answer}");
            assert_eq!(plan.steps[0].title, "Add a flag");
            assert_eq!(plan.steps[0].files, ["src/cli.rs"]);
        }
        let no_commands = good().replace(", \"commands\": [\"cargo test\"]", "");
        assert!(parse_plan(&no_commands, 8).unwrap().steps[0].commands.is_empty());
    }

    #[test]
    fn invalid_plans_are_refused_with_a_reason() {
        let many: Vec<&str> = std::iter::repeat_n(STEP, 9).collect();
        let table = [
            ("I cannot help with that.".to_string(), "no JSON object"),
            (good().replace("]}]}", "],}]}"), "trailing comma"),
            (good().replace("]}]}", ""), "EOF while parsing"),
            (
                format!("{{\"steps\": [{}]}}", many.join(",")),
                "9 steps but at most 8",
            ),
            ("{\"steps\": []}".to_string(), "no steps"),
            ("{\"steps\": {}}".to_string(), "must be an array"),
            (good().replace("Add a flag", ""), "steps[0].title is empty"),
            (good().replace("Add a flag", &"x".repeat(101)), "101 characters"),
            (
                good().replace("\"rationale\": \"asked\", ", ""),
                "steps[0].rationale is missing",
            ),
            (
                good().replace("[\"src/cli.rs\"]", "[]"),
                "steps[0].files is empty",
            ),
            (
                good().replace("[\"src/cli.rs\"]", "\"src/cli.rs\""),
                "must be an array",
            ),
            (good().replace("src/cli.rs", "../outside.rs"), "contains `..`"),
            (good().replace("src/cli.rs", "/etc/passwd"), "absolute path"),
            (good().replace("src/cli.rs", ".git/config"), "`.git/`"),
            (
                good().replace("src/cli.rs", ".github/workflows/ci.yml"),
                "workflows",
            ),
            (
                good().replace("\"cargo test\"", "42"),
                "steps[0].commands[0] must be a string",
            ),
        ];
        for (answer, want) in table {
            let err = parse_plan(&answer, DEFAULT_MAX_STEPS).expect_err(&answer);
            assert!(err.contains(want), "{answer}\n  → {err}\n  wanted {want:?}");
        }
    }

    fn fixture() -> (AgentsPolicy, Pricing, IssueSnapshot) {
        let policy = AgentsPolicy::parse(crate::agents::BUILT_IN, "built-in").unwrap();
        let pricing = Pricing::parse(crate::pricing::BUILT_IN, "test").unwrap();
        let issue = IssueSnapshot::new("Add --verbose", "Please add a flag.", Vec::new(), |_| true);
        (policy, pricing, issue)
    }

    fn limits() -> Limits {
        Limits {
            usd: 5.0,
            requests: 10,
            wall_clock: Duration::from_secs(600),
            daily_remaining_usd: 50.0,
        }
    }

    #[tokio::test]
    async fn an_invalid_plan_gets_one_repair_round_that_says_what_was_wrong() {
        let (policy, pricing, issue) = fixture();
        let fake = ScriptedModel::new();
        fake.push_reply(&good().replace("src/cli.rs", "../cli.rs"));
        fake.push_reply(&good());
        let model = MeteredModel::new(&fake, &pricing, limits(), Instant::now());
        let input = PlanInput {
            policy: &policy,
            repo_agents_md: Some("Run make check."),
            issue: &issue,
            overview: "src/cli.rs",
        };
        let settings = PlannerSettings::new("gpt-4.1-mini");
        let plan = plan(&model, &input, &settings, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(plan.steps[0].files, ["src/cli.rs"]);
        let requests = fake.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].model, "gpt-4.1-mini");
        let system = &requests[0].messages[0].content;
        assert!(system.starts_with("## CTO-AI") && system.contains("## Repository policy"));
        assert!(system.contains("Run make check."));
        assert!(requests[0].messages[1].content.contains("# Issue: Add --verbose"));
        let repair = &requests[1].messages[3].content;
        assert!(
            repair.contains("steps[0].files[0] \"../cli.rs\" contains `..`"),
            "{repair}"
        );
    }

    #[tokio::test]
    async fn garbage_twice_fails_the_plan_with_a_readable_reason() {
        let (policy, pricing, issue) = fixture();
        let fake = ScriptedModel::new();
        fake.push_reply("Sure! I'd be happy to help.");
        fake.push_reply("{\"steps\": [oops]}");
        let model = MeteredModel::new(&fake, &pricing, limits(), Instant::now());
        let input = PlanInput {
            policy: &policy,
            repo_agents_md: None,
            issue: &issue,
            overview: "",
        };
        let err = plan(
            &model,
            &input,
            &PlannerSettings::new("gpt-4.1-mini"),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), "plan_invalid");
        let reason = err.status_reason();
        assert!(
            reason.starts_with("plan_invalid: the planner answered an invalid plan twice"),
            "{reason}"
        );
        assert!(reason.contains("is not valid"), "{reason}");
        assert_eq!(fake.requests().len(), 2);
    }
}
