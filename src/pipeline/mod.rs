//! The agents of a job: what they read, what they may spend, and what they
//! answer.
//!
//! The job runner calls these stages in order: [`sanitize`] snapshots the
//! issue as the agents may see it, [`plan`] asks the CTO for a step plan, and
//! [`code`] asks the coder for each step's patch and applies it. Every LLM
//! call goes through [`metered::MeteredModel`], which runs the budget gate
//! before the call and records usage and cost after it. Errors are
//! [`AgentError`]s whose [`AgentError::status_reason`] is the job's
//! `status_reason` (`code: human text`).

pub mod code;
pub mod embeddings;
pub mod execute;
pub mod github_job;
pub mod metered;
pub mod paths;
pub mod plan;
pub mod prompt;
pub mod sanitize;
pub mod scripted;

use crate::llm::LlmError;
use crate::llm::budget::BudgetExceeded;

/// Why an agent stage stopped. Each variant maps to a job `status_reason`
/// code, so the runner can end the job with a reason people can read.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A budget would be crossed by the next call; nothing was sent.
    #[error(transparent)]
    Budget(BudgetExceeded),
    /// The LLM call failed after the transport's retries.
    #[error("the LLM call failed: {0}")]
    Llm(LlmError),
    /// The job's cancellation token fired. Its code says `cancelled_by_user`;
    /// the runner knows better when the token fired for a lost lease or a
    /// shutdown, and should use its own reason then.
    #[error("cancelled")]
    Cancelled,
    /// The planner answered an invalid plan twice; the text says what was wrong.
    #[error("{0}")]
    PlanInvalid(String),
    /// Every coder attempt for one step was refused.
    #[error("step {step} was refused {attempts} times; last reasons: {}", reasons.join("; "))]
    DiffRefused {
        /// The step, as `N "title"`.
        step: String,
        attempts: u32,
        /// The last attempt's refusal reasons, one per file or hunk.
        reasons: Vec<String>,
    },
    /// The machine failed (reading the worktree, writing a patch).
    #[error("I/O error: {0}")]
    Io(String),
}

impl AgentError {
    /// The job's `status_reason` code.
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::Budget(b) => b.code(),
            AgentError::Llm(_) | AgentError::Io(_) => "internal",
            AgentError::Cancelled => "cancelled_by_user",
            AgentError::PlanInvalid(_) => "plan_invalid",
            AgentError::DiffRefused { .. } => "diff_refused",
        }
    }

    /// `code: human text`, as stored in the job's `status_reason`.
    pub fn status_reason(&self) -> String {
        match self {
            // BudgetExceeded's text already starts with its code.
            AgentError::Budget(b) => b.to_string(),
            other => format!("{}: {other}", other.code()),
        }
    }
}

impl From<BudgetExceeded> for AgentError {
    fn from(b: BudgetExceeded) -> AgentError {
        AgentError::Budget(b)
    }
}

impl From<LlmError> for AgentError {
    fn from(e: LlmError) -> AgentError {
        match e {
            LlmError::Cancelled => AgentError::Cancelled,
            other => AgentError::Llm(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reasons_start_with_their_code() {
        let e = AgentError::PlanInvalid("the answer contains no JSON".into());
        assert_eq!(e.status_reason(), "plan_invalid: the answer contains no JSON");
        let e = AgentError::Budget(BudgetExceeded::Requests { limit: 3 });
        assert_eq!(
            e.status_reason(),
            "budget_requests: the job has made its 3 LLM requests"
        );
        let e = AgentError::DiffRefused {
            step: "2 \"Add a flag\"".into(),
            attempts: 3,
            reasons: vec!["a.rs: hunk 1: context not found".into()],
        };
        assert_eq!(
            e.status_reason(),
            "diff_refused: step 2 \"Add a flag\" was refused 3 times; last reasons: a.rs: hunk 1: context not found"
        );
        assert!(matches!(
            AgentError::from(LlmError::Cancelled),
            AgentError::Cancelled
        ));
    }
}
