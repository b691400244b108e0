//! What a job looks like on GitHub, as pure functions of [`JobProgress`]:
//! the body of its one progress comment and the output of its check run.
//!
//! Everything here may quote text the bot does not control (step titles
//! from the planner, reasons, paths), so each piece is flattened to one line
//! and the whole text passes through `neutralize_commands`: the bot never
//! posts a line that reads as `/orchestrate …`. Texts are cut to GitHub's
//! 65,535 characters with the marker first, so it survives the cut.

use std::fmt::Write as _;
use std::time::Duration;

use crate::github::CheckOutput;
use crate::github::checks::{MAX_OUTPUT_CHARS, truncate_chars};
use crate::jobs::JobStatus;

/// Files listed in a check run summary; the rest are counted.
const MAX_FILES_LISTED: usize = 100;
/// Longest step title or reason shown.
const MAX_LINE_CHARS: usize = 300;

/// A step of the plan as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    /// Carried out, but it changed nothing.
    Empty,
}

impl StepStatus {
    /// The API word (DESIGN.md §5).
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Empty => "empty",
        }
    }

    /// The status of a stored step (`job_steps.status`).
    pub fn parse(word: &str) -> Option<StepStatus> {
        [
            StepStatus::Pending,
            StepStatus::Running,
            StepStatus::Succeeded,
            StepStatus::Failed,
            StepStatus::Skipped,
            StepStatus::Empty,
        ]
        .into_iter()
        .find(|status| status.as_str() == word)
    }

    fn is_done(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded | StepStatus::Empty | StepStatus::Skipped
        )
    }

    fn icon(self) -> &'static str {
        match self {
            StepStatus::Pending => "⬜",
            StepStatus::Running => "⏳",
            StepStatus::Succeeded => "✅",
            StepStatus::Failed => "❌",
            StepStatus::Skipped => "⏭️",
            StepStatus::Empty => "➖",
        }
    }
}

/// One step: its title (the planner's, shown as data) and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepProgress {
    pub title: String,
    pub status: StepStatus,
}

/// Where to look: the PR, the check run, the dashboard, the branch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgressLinks {
    pub pr_url: Option<String>,
    pub check_run_url: Option<String>,
    pub dashboard_url: Option<String>,
    pub branch: Option<String>,
}

/// Everything the runner knows about a job's progress; it fills this in
/// and hands it to the reporter at each stage.
#[derive(Debug, Clone, PartialEq)]
pub struct JobProgress {
    pub job_id: String,
    pub status: JobStatus,
    /// `code: human text`, shown when set.
    pub status_reason: Option<String>,
    pub steps: Vec<StepProgress>,
    /// Paths changed on the branch so far.
    pub files_changed: Vec<String>,
    pub elapsed: Duration,
    pub cost_usd: f64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub links: ProgressLinks,
    /// The branch's newest pushed commit; `None` until the first push (the
    /// reporter fills it in).
    pub head_sha: Option<String>,
}

impl JobProgress {
    /// A queued job with nothing done yet.
    pub fn new(job_id: impl Into<String>) -> JobProgress {
        JobProgress {
            job_id: job_id.into(),
            status: JobStatus::Queued,
            status_reason: None,
            steps: Vec::new(),
            files_changed: Vec::new(),
            elapsed: Duration::ZERO,
            cost_usd: 0.0,
            tokens_in: 0,
            tokens_out: 0,
            links: ProgressLinks::default(),
            head_sha: None,
        }
    }
}

/// The hidden marker by which the bot finds a job's progress comment again.
pub fn progress_marker(job_id: &str) -> String {
    format!("<!-- orchestrator:progress:{} -->", clean_id(job_id))
}

/// The body of the job's progress comment.
pub fn render_comment(progress: &JobProgress) -> String {
    let mut out = progress_marker(&progress.job_id);
    let _ = write!(out, "\n**orchestrator** · {}", status_line(progress));
    push_reason(&mut out, progress);
    out.push_str("\n\n");
    out.push_str(&checklist(progress));
    let _ = write!(out, "\n\n{}", usage_line(progress));
    if let Some(links) = links_line(progress) {
        let _ = write!(out, "\n\n{links}");
    }
    if let Some(note) = ending_note(progress) {
        let _ = write!(out, "\n\n{note}");
    }
    finish_text(&out)
}

/// The check run's output: title and a summary with the plan, the steps,
/// the files changed, tokens and cost.
pub fn render_check_summary(progress: &JobProgress) -> CheckOutput {
    let mut summary = format!("**Status:** {}", status_line(progress));
    push_reason(&mut summary, progress);
    summary.push_str("\n\n### Plan\n\n");
    summary.push_str(&checklist(progress));
    summary.push_str(&files_section(&progress.files_changed));
    let _ = write!(summary, "\n\n### Usage\n\n{}", usage_line(progress));
    if let Some(links) = links_line(progress) {
        let _ = write!(summary, "\n\n{links}");
    }
    CheckOutput {
        title: finish_text(&check_title(progress)),
        summary: finish_text(&summary),
        text: None,
        annotations: Vec::new(),
    }
}

fn status_line(progress: &JobProgress) -> String {
    let (icon, word) = match progress.status {
        JobStatus::Queued => ("🕒", "Queued"),
        JobStatus::Planning => ("🧭", "Planning"),
        JobStatus::Running => ("⏳", "Running"),
        JobStatus::Publishing => ("📤", "Publishing"),
        JobStatus::Succeeded => ("✅", "Succeeded"),
        JobStatus::Failed => ("❌", "Failed"),
        JobStatus::Cancelled => ("🛑", "Cancelled"),
        JobStatus::Rejected => ("🚫", "Rejected"),
    };
    format!("{icon} {word} (job `{}`)", clean_id(&progress.job_id))
}

fn push_reason(out: &mut String, progress: &JobProgress) {
    if let Some(reason) = progress.status_reason.as_deref().filter(|r| !r.trim().is_empty()) {
        let _ = write!(out, "\n\n> {}", one_line(reason));
    }
}

fn checklist(progress: &JobProgress) -> String {
    if progress.steps.is_empty() {
        return "_No plan yet._".to_string();
    }
    let lines: Vec<String> = progress
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let tick = if step.status.is_done() { "x" } else { " " };
            format!(
                "- [{tick}] {} {}. {} — {}",
                step.status.icon(),
                i + 1,
                one_line(&step.title),
                step.status.as_str()
            )
        })
        .collect();
    lines.join("\n")
}

fn usage_line(progress: &JobProgress) -> String {
    format!(
        "⏱ {} · 💰 ${:.4} · tokens {} in / {} out",
        elapsed_text(progress.elapsed),
        progress.cost_usd.max(0.0),
        progress.tokens_in,
        progress.tokens_out
    )
}

fn links_line(progress: &JobProgress) -> Option<String> {
    let links = &progress.links;
    let mut parts = Vec::new();
    let named = [
        ("Pull request", &links.pr_url),
        ("Check run", &links.check_run_url),
        ("Dashboard", &links.dashboard_url),
    ];
    for (name, url) in named {
        if let Some(url) = url.as_deref().and_then(safe_url) {
            parts.push(format!("[{name}]({url})"));
        }
    }
    if let Some(branch) = links.branch.as_deref() {
        parts.push(format!("branch `{}`", code_text(branch)));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// Why an ended job has no check run (it ended before its first push).
fn ending_note(progress: &JobProgress) -> Option<&'static str> {
    if progress.head_sha.is_some() {
        return None;
    }
    match progress.status {
        JobStatus::Failed | JobStatus::Cancelled => Some(
            "The job ended before its first push, so there is no check run. \
             To try again, comment `/orchestrate retry` on this issue.",
        ),
        JobStatus::Succeeded => {
            Some("Nothing needed to change, so nothing was pushed and there is no check run.")
        }
        JobStatus::Rejected => Some("The job was not started, so there is no check run."),
        _ => None,
    }
}

fn files_section(files: &[String]) -> String {
    if files.is_empty() {
        return String::new();
    }
    let mut out = format!("\n\n### Files changed ({})\n\n", files.len());
    for file in files.iter().take(MAX_FILES_LISTED) {
        let _ = writeln!(out, "- `{}`", code_text(file));
    }
    if files.len() > MAX_FILES_LISTED {
        let _ = writeln!(out, "- … and {} more", files.len() - MAX_FILES_LISTED);
    }
    out.trim_end().to_string()
}

fn check_title(progress: &JobProgress) -> String {
    let done = progress.steps.iter().filter(|s| s.status.is_done()).count();
    let total = progress.steps.len();
    let word = match progress.status {
        JobStatus::Queued | JobStatus::Planning => "Planning",
        JobStatus::Running => "Running",
        JobStatus::Publishing => "Publishing",
        JobStatus::Succeeded => "Succeeded",
        JobStatus::Failed => "Failed",
        JobStatus::Cancelled => "Cancelled",
        JobStatus::Rejected => "Rejected",
    };
    format!("{word}: {done} of {total} steps done")
}

/// `1h 02m 03s`, `4m 05s`, `6s`.
pub fn elapsed_text(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Text as one line, cut to a sane length.
fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_LINE_CHARS)
        .collect();
    flat.trim().to_string()
}

/// Text safe inside a code span (no backticks, one line).
fn code_text(text: &str) -> String {
    one_line(text).replace('`', "'")
}

/// Job ids are UUIDs; keep only what one may contain (the id goes into an
/// HTML comment, where `-->` must never appear).
fn clean_id(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect::<String>()
        .replace("--", "-")
}

/// An http(s) URL with nothing that could break out of a Markdown link.
fn safe_url(url: &str) -> Option<&str> {
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    let clean = url
        .chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '(' | ')' | '<' | '>' | '"' | '`'));
    (scheme_ok && clean).then_some(url)
}

fn finish_text(text: &str) -> String {
    let safe = orchestrator_commands::neutralize_commands(text);
    truncate_chars(&safe, MAX_OUTPUT_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JobProgress {
        let mut p = JobProgress::new("0b5c6f8e-1111-2222-3333-444455556666");
        p.status = JobStatus::Running;
        p.steps = vec![
            StepProgress {
                title: "Fix the parser".into(),
                status: StepStatus::Succeeded,
            },
            StepProgress {
                title: "line one\n/orchestrate cancel".into(),
                status: StepStatus::Running,
            },
        ];
        p.elapsed = Duration::from_secs(125);
        p.cost_usd = 0.0421;
        p.tokens_in = 1200;
        p.tokens_out = 300;
        p.links.pr_url = Some("https://github.com/o/r/pull/3".into());
        p.links.dashboard_url = Some("javascript:alert(1)".into());
        p
    }

    #[test]
    fn the_comment_has_its_marker_a_checklist_and_no_command_line() {
        let body = render_comment(&sample());
        assert!(body.starts_with(&progress_marker("0b5c6f8e-1111-2222-3333-444455556666")));
        assert!(body.contains("- [x] ✅ 1. Fix the parser — succeeded"), "{body}");
        assert!(body.contains("- [ ] ⏳ 2."), "{body}");
        assert!(body.contains("2m 05s") && body.contains("$0.0421"), "{body}");
        assert!(body.contains("[Pull request](https://github.com/o/r/pull/3)"));
        assert!(!body.contains("javascript"), "{body}");
        assert!(!orchestrator_commands::contains_command_line(&body), "{body}");
    }

    #[test]
    fn an_ended_job_without_a_push_says_why() {
        let mut p = sample();
        p.status = JobStatus::Failed;
        let body = render_comment(&p);
        assert!(
            body.contains("no check run") && body.contains("`/orchestrate retry`"),
            "{body}"
        );
        assert!(!orchestrator_commands::contains_command_line(&body));
        p.head_sha = Some("abc".into());
        assert!(!render_comment(&p).contains("no check run"));
    }

    #[test]
    fn huge_texts_are_cut_to_githubs_limit() {
        let mut p = sample();
        p.files_changed = (0..5000).map(|i| format!("src/{i}.rs")).collect();
        p.steps[0].title = "é".repeat(100_000);
        p.status_reason = Some("x".repeat(100_000));
        let output = render_check_summary(&p);
        assert!(output.summary.chars().count() <= MAX_OUTPUT_CHARS);
        assert!(output.summary.contains("… and 4900 more"));
        let steps: Vec<_> = (0..2000)
            .map(|_| StepProgress {
                title: "y".repeat(300),
                status: StepStatus::Pending,
            })
            .collect();
        p.steps = steps;
        let body = render_comment(&p);
        assert!(body.chars().count() <= MAX_OUTPUT_CHARS);
        assert!(body.starts_with("<!-- orchestrator:progress:"));
    }

    #[test]
    fn elapsed_reads_naturally() {
        assert_eq!(elapsed_text(Duration::from_secs(6)), "6s");
        assert_eq!(elapsed_text(Duration::from_secs(3723)), "1h 02m 03s");
    }
}
