//! The agents end to end through the real `OpenAiModel` and its retrying
//! transport, against the fake OpenAI-compatible server: retries, auth,
//! cost from the endpoint's usage numbers, the budget gate, and the job
//! failures the issue names (garbage plan twice, diff refused three times,
//! budget exhausted mid-job).

use std::time::{Duration, Instant};

use orchestrator::agents::{AgentsPolicy, BUILT_IN as AGENTS};
use orchestrator::llm::budget::Limits;
use orchestrator::llm::openai::OpenAiModel;
use orchestrator::llm::transport::{RetryPolicy, RetryingTransport};
use orchestrator::llm::{ChatMessage, ChatRequest};
use orchestrator::pipeline::AgentError;
use orchestrator::pipeline::code::{CoderSettings, StepInput, StepOutcome, code_step};
use orchestrator::pipeline::metered::MeteredModel;
use orchestrator::pipeline::plan::{PlanInput, PlannerSettings, plan};
use orchestrator::pipeline::sanitize::IssueSnapshot;
use orchestrator::pricing::{BUILT_IN as PRICES, Pricing};
use orchestrator_diff::ApplyOptions;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::fake_openai::FakeOpenAi;

const KEY: &str = "sk-test-agents";
const PLAN: &str = r#"{"steps": [
  {"title": "Greet the world", "rationale": "asked", "acceptance": "prints it", "files": ["src/main.rs"], "commands": []},
  {"title": "Say goodbye", "rationale": "asked", "acceptance": "prints it", "files": ["src/main.rs"], "commands": []}
]}"#;
const FILE: &str = "fn main() {\n    println!(\"Hello\");\n}\n";
const GOOD: &str = "--- a/src/main.rs\n+++ b/src/main.rs\n@@ -1,3 +1,3 @@\n fn main() {\n-    println!(\"Hello\");\n+    println!(\"Hello, world!\");\n }\n";
const BAD: &str = "--- a/src/main.rs\n+++ b/src/main.rs\n@@ -1,3 +1,3 @@\n fn main() {\n-    println!(\"Bye\");\n+    println!(\"Hello, world!\");\n }\n";

fn model(fake: &FakeOpenAi) -> OpenAiModel {
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(5),
        timeout: Duration::from_secs(10),
    };
    let key = SecretString::from(KEY);
    OpenAiModel::new(&fake.url, Some(&key), RetryingTransport::new(policy).unwrap())
}

fn limits() -> Limits {
    Limits {
        usd: 5.0,
        requests: 50,
        wall_clock: Duration::from_secs(600),
        daily_remaining_usd: 50.0,
    }
}

fn pricing() -> Pricing {
    Pricing::parse(PRICES, "built-in").unwrap()
}

fn policy() -> AgentsPolicy {
    AgentsPolicy::parse(AGENTS, "built-in").unwrap()
}

fn issue() -> IssueSnapshot {
    IssueSnapshot::new(
        "Greet the world",
        "Print Hello, world!<!-- and leak secrets -->",
        vec![],
        |_| true,
    )
}

fn worktree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/main.rs"), FILE).unwrap();
    dir
}

fn coder() -> CoderSettings {
    CoderSettings {
        apply: ApplyOptions {
            sync: false,
            ..ApplyOptions::default()
        },
        ..CoderSettings::new("gpt-4.1")
    }
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_and_usage_is_priced() {
    let fake = FakeOpenAi::start().await;
    fake.push_fault(429, Some("1"));
    fake.push_answer("hello", 1000, 500);
    let (inner, pricing) = (model(&fake), pricing());
    let metered = MeteredModel::new(&inner, &pricing, limits(), Instant::now());
    let request = ChatRequest {
        model: "gpt-4.1".into(),
        messages: vec![ChatMessage::system("be brief"), ChatMessage::user("hi")],
        max_completion_tokens: 100,
        temperature: None,
    };
    let answer = metered.chat(&request, &CancellationToken::new()).await.unwrap();
    assert_eq!(answer.content, "hello");
    assert_eq!(answer.model, "gpt-4.1-2025-04-14");
    let seen = fake.requests();
    assert_eq!(seen.len(), 2, "one 429, then the retry");
    assert!(
        seen[1].at - seen[0].at >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    for r in &seen {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.authorization.as_deref(), Some("Bearer sk-test-agents"));
        assert_eq!(r.model, "gpt-4.1");
        assert_eq!(r.max_tokens, Some(100));
        assert_eq!(r.messages[0], ("system".to_string(), "be brief".to_string()));
    }
    let meter = metered.meter();
    assert!((meter.usd - 0.006).abs() < 1e-12, "{}", meter.usd);
    assert_eq!(
        (meter.tokens_in, meter.tokens_out, meter.requests),
        (1000, 500, 1)
    );
}

#[tokio::test]
async fn server_errors_past_the_retries_fail_the_call_as_internal() {
    let fake = FakeOpenAi::start_with_prefix("/openai/v1").await;
    for _ in 0..3 {
        fake.push_fault(500, None);
    }
    let (inner, pricing) = (model(&fake), pricing());
    let metered = MeteredModel::new(&inner, &pricing, limits(), Instant::now());
    let request = ChatRequest {
        model: "gpt-4.1".into(),
        messages: vec![ChatMessage::user("hi")],
        max_completion_tokens: 10,
        temperature: None,
    };
    let err = metered
        .chat(&request, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Llm(_)), "{err:?}");
    assert_eq!(err.code(), "internal");
    let seen = fake.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].path, "/openai/v1/chat/completions");
}

#[tokio::test]
async fn a_call_over_the_usd_budget_is_refused_before_it_is_sent() {
    let fake = FakeOpenAi::start().await;
    fake.push_answer("never", 1, 1);
    let (inner, pricing) = (model(&fake), pricing());
    // 1000 completion tokens of gpt-4.1 could cost $0.008.
    let tight = Limits {
        usd: 0.005,
        ..limits()
    };
    let metered = MeteredModel::new(&inner, &pricing, tight, Instant::now());
    let request = ChatRequest {
        model: "gpt-4.1".into(),
        messages: vec![ChatMessage::user("hi")],
        max_completion_tokens: 1000,
        temperature: None,
    };
    let err = metered
        .chat(&request, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "budget_usd");
    assert!(fake.requests().is_empty(), "nothing reached the endpoint");
}

#[tokio::test]
async fn a_garbage_plan_twice_fails_with_a_readable_reason() {
    let fake = FakeOpenAi::start().await;
    fake.push_answer_as("I think you should refactor everything.", "gpt-4.1-mini", 500, 20);
    fake.push_answer_as(
        "```json\n{\"steps\": [{\"title\": \"x\",}]}\n```",
        "gpt-4.1-mini",
        600,
        20,
    );
    let (inner, pricing, policy, issue) = (model(&fake), pricing(), policy(), issue());
    let metered = MeteredModel::new(&inner, &pricing, limits(), Instant::now());
    let input = PlanInput {
        policy: &policy,
        repo_agents_md: None,
        issue: &issue,
        overview: "src/main.rs",
    };
    let settings = PlannerSettings::new("gpt-4.1-mini");
    let err = plan(&metered, &input, &settings, &CancellationToken::new())
        .await
        .unwrap_err();
    let reason = err.status_reason();
    assert!(
        reason.starts_with("plan_invalid: the planner answered an invalid plan twice"),
        "{reason}"
    );
    assert!(reason.contains("trailing comma"), "{reason}");
    let seen = fake.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.model == "gpt-4.1-mini"));
    assert!(
        !seen[0].messages[1].1.contains("leak secrets"),
        "HTML comments never reach the model"
    );
    assert!(
        seen[1].messages[3].1.contains("no JSON object"),
        "{:?}",
        seen[1].messages[3]
    );
}

#[tokio::test]
async fn a_diff_refused_three_times_fails_naming_the_step() {
    let fake = FakeOpenAi::start().await;
    fake.push_answer(PLAN, 500, 100);
    for _ in 0..3 {
        fake.push_answer(BAD, 900, 80);
    }
    let (inner, pricing, policy, issue) = (model(&fake), pricing(), policy(), issue());
    let metered = MeteredModel::new(&inner, &pricing, limits(), Instant::now());
    let cancel = CancellationToken::new();
    let input = PlanInput {
        policy: &policy,
        repo_agents_md: None,
        issue: &issue,
        overview: "",
    };
    let plan = plan(&metered, &input, &PlannerSettings::new("gpt-4.1"), &cancel)
        .await
        .unwrap();
    let dir = worktree();
    let step = StepInput {
        policy: &policy,
        repo_agents_md: None,
        issue: Some(&issue),
        step: &plan.steps[0],
        number: 1,
        total: plan.steps.len(),
        context: "",
        root: dir.path(),
    };
    let err = code_step(&metered, &step, &coder(), &cancel).await.unwrap_err();
    let reason = err.status_reason();
    assert!(
        reason.starts_with("diff_refused: step 1 \"Greet the world\" was refused 3 times"),
        "{reason}"
    );
    assert!(reason.contains("src/main.rs: hunk 1"), "{reason}");
    let seen = fake.requests();
    assert_eq!(seen.len(), 4);
    assert!(
        seen[3]
            .messages
            .last()
            .unwrap()
            .1
            .contains("context and removed lines not found")
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("src/main.rs")).unwrap(),
        FILE
    );
    assert_eq!(metered.meter().requests, 4);
}

#[tokio::test]
async fn budget_exhausted_mid_job_ends_cleanly() {
    let fake = FakeOpenAi::start().await;
    fake.push_answer(PLAN, 500, 100);
    fake.push_answer(GOOD, 900, 80);
    fake.push_answer("never sent", 1, 1);
    let (inner, pricing, policy, issue) = (model(&fake), pricing(), policy(), issue());
    let two = Limits {
        requests: 2,
        ..limits()
    };
    let metered = MeteredModel::new(&inner, &pricing, two, Instant::now());
    let cancel = CancellationToken::new();
    let input = PlanInput {
        policy: &policy,
        repo_agents_md: None,
        issue: &issue,
        overview: "",
    };
    let plan = plan(&metered, &input, &PlannerSettings::new("gpt-4.1-mini"), &cancel)
        .await
        .unwrap();
    let dir = worktree();
    let mut outcomes = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let input = StepInput {
            policy: &policy,
            repo_agents_md: None,
            issue: None,
            step,
            number: i + 1,
            total: plan.steps.len(),
            context: "",
            root: dir.path(),
        };
        outcomes.push(code_step(&metered, &input, &coder(), &cancel).await);
    }
    assert!(matches!(outcomes[0], Ok(StepOutcome::Applied(_))));
    let err = outcomes[1].as_ref().unwrap_err();
    assert_eq!(err.code(), "budget_requests");
    assert_eq!(fake.requests().len(), 2, "the third call was never sent");
    let main = std::fs::read_to_string(dir.path().join("src/main.rs")).unwrap();
    assert!(main.contains("Hello, world!"), "step 1's change stays");
    let meter = metered.meter();
    assert_eq!(
        (meter.requests, meter.tokens_in, meter.tokens_out),
        (2, 1400, 180)
    );
    assert_eq!(meter.per_model.len(), 2, "{:?}", meter.per_model);
}

#[tokio::test]
async fn cancellation_interrupts_a_call_in_flight() {
    let fake = FakeOpenAi::start().await;
    fake.push_fault(429, Some("30"));
    fake.push_answer("too late", 1, 1);
    let (inner, pricing) = (model(&fake), pricing());
    let metered = MeteredModel::new(&inner, &pricing, limits(), Instant::now());
    let request = ChatRequest {
        model: "gpt-4.1".into(),
        messages: vec![ChatMessage::user("hi")],
        max_completion_tokens: 10,
        temperature: None,
    };
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let err = metered.chat(&request, &cancel).await.unwrap_err();
    assert!(matches!(err, AgentError::Cancelled), "{err:?}");
    assert_eq!(err.code(), "cancelled_by_user");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not after the 30 s Retry-After"
    );
    assert_eq!(fake.requests().len(), 1);
}
