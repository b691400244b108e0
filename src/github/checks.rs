//! Check runs and GitHub's limits on them (github-contract.md §4.3):
//! `output.title/summary/text` at most 65,535 characters, at most 50
//! annotations per request (more are sent by further PATCHes, which append),
//! at most 3 actions with `label` ≤ 20, `description` ≤ 40 and
//! `identifier` ≤ 20 characters. Text is truncated (on a character
//! boundary, with a visible note); actions over the limits are refused,
//! because a silently shortened identifier would never match its handler.

use serde::{Deserialize, Serialize};

use super::error::GitHubError;

/// The longest `output.title`, `summary` or `text` GitHub accepts, in characters.
pub const MAX_OUTPUT_CHARS: usize = 65_535;
/// Annotations GitHub accepts per request.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;
pub const MAX_ACTIONS: usize = 3;
pub const MAX_ACTION_LABEL: usize = 20;
pub const MAX_ACTION_DESCRIPTION: usize = 40;
pub const MAX_ACTION_IDENTIFIER: usize = 20;

const TRUNCATION_NOTE: &str = "\n\n… (truncated)";

/// `status` of a check run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Queued,
    InProgress,
    Completed,
}

/// `conclusion` of a completed check run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckConclusion {
    Success,
    Failure,
    Neutral,
    Cancelled,
    Skipped,
    TimedOut,
    ActionRequired,
}

/// `annotation_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnotationLevel {
    Notice,
    Warning,
    Failure,
}

/// A line-level note shown on the diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Annotation {
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub annotation_level: AnnotationLevel,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// The check run's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckOutput {
    pub title: String,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Any number: the client sends them 50 at a time.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<Annotation>,
}

/// A button on the check run (`requested_action` webhook on click).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckAction {
    pub label: String,
    pub description: String,
    pub identifier: String,
}

/// The fields of a create (`name` and `head_sha` set) or an update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckRunFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_sha: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<CheckStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<CheckConclusion>,
    /// ISO 8601 `YYYY-MM-DDTHH:MM:SSZ`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details_url: Option<String>,
    /// Our job id, to find the run again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<CheckOutput>,
    /// `Some(vec![])` removes the buttons; `None` leaves them as they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<CheckAction>>,
}

impl CheckRunFields {
    /// A new run named `name` on `head_sha`.
    pub fn create(name: impl Into<String>, head_sha: impl Into<String>) -> CheckRunFields {
        CheckRunFields {
            name: Some(name.into()),
            head_sha: Some(head_sha.into()),
            ..CheckRunFields::default()
        }
    }
}

/// A check run as GitHub answers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckRun {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub head_sha: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
}

/// `text` cut to at most `max` characters, on a character boundary, ending
/// with a visible note when cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(TRUNCATION_NOTE.chars().count());
    let cut = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
    format!("{}{TRUNCATION_NOTE}", &text[..cut])
}

fn check_action(action: &CheckAction) -> Result<(), GitHubError> {
    let limits = [
        ("label", &action.label, MAX_ACTION_LABEL),
        ("description", &action.description, MAX_ACTION_DESCRIPTION),
        ("identifier", &action.identifier, MAX_ACTION_IDENTIFIER),
    ];
    for (field, value, max) in limits {
        if value.chars().count() > max || value.is_empty() {
            return Err(GitHubError::InvalidRequest(format!(
                "check run action {field} {value:?} must be 1..={max} characters"
            )));
        }
    }
    Ok(())
}

/// The request bodies for `fields`: the first carries everything and up to
/// 50 annotations; each further one carries the output's title and summary
/// (GitHub requires them) and the next 50 annotations.
pub(crate) fn plan_requests(mut fields: CheckRunFields) -> Result<Vec<CheckRunFields>, GitHubError> {
    if let Some(actions) = &fields.actions {
        if actions.len() > MAX_ACTIONS {
            return Err(GitHubError::InvalidRequest(format!(
                "a check run takes at most {MAX_ACTIONS} actions, got {}",
                actions.len()
            )));
        }
        actions.iter().try_for_each(check_action)?;
    }
    let Some(mut output) = fields.output.take() else {
        return Ok(vec![fields]);
    };
    output.title = truncate_chars(&output.title, MAX_OUTPUT_CHARS);
    output.summary = truncate_chars(&output.summary, MAX_OUTPUT_CHARS);
    output.text = output.text.map(|t| truncate_chars(&t, MAX_OUTPUT_CHARS));
    let mut annotations = std::mem::take(&mut output.annotations);
    let rest = annotations.split_off(annotations.len().min(ANNOTATIONS_PER_REQUEST));
    let follow_ups = rest.chunks(ANNOTATIONS_PER_REQUEST).map(|chunk| CheckRunFields {
        output: Some(CheckOutput {
            title: output.title.clone(),
            summary: output.summary.clone(),
            text: None,
            annotations: chunk.to_vec(),
        }),
        ..CheckRunFields::default()
    });
    let follow_ups: Vec<CheckRunFields> = follow_ups.collect();
    output.annotations = annotations;
    fields.output = Some(output);
    let mut out = vec![fields];
    out.extend(follow_ups);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        let text = "é".repeat(70_000);
        let cut = truncate_chars(&text, MAX_OUTPUT_CHARS);
        assert!(cut.chars().count() <= MAX_OUTPUT_CHARS);
        assert!(cut.ends_with("(truncated)"));
        assert_eq!(truncate_chars("short", 10), "short");
    }

    #[test]
    fn actions_over_limits_are_refused() {
        let action = |id: &str| CheckAction {
            label: "Retry".into(),
            description: "Run the job again".into(),
            identifier: id.into(),
        };
        let mut fields = CheckRunFields::create("orchestrator", "abc");
        fields.actions = Some(vec![action("a"), action("b"), action("c"), action("d")]);
        assert!(plan_requests(fields.clone()).is_err());
        fields.actions = Some(vec![action("an-identifier-too-long")]);
        assert!(plan_requests(fields.clone()).is_err());
        fields.actions = Some(vec![action("retry")]);
        assert_eq!(plan_requests(fields).unwrap().len(), 1);
    }
}
