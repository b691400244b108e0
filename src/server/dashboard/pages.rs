//! The pages, rendered from store records. Every piece of stored or
//! user-supplied text goes through [`esc`]; URLs from outside through
//! [`safe_href`].

use std::fmt::Write;

use axum::response::Response;
use serde_json::Value;

use super::artifacts::ContextSummary;
use super::html::{Frame, badge, count, duration, esc, page, safe_href, time, usd};
use crate::jobs::{JobStatus, UnixMillis, task_title};
use crate::store::{EventRecord, InstallationRecord, JobRecord, ModelUsageRecord, StepRecord};

/// GitHub's web address for an API base: `api.github.com` → `github.com`,
/// GitHub Enterprise `https://HOST/api/v3` → `https://HOST`; anything else
/// (a test server) as it is.
pub fn github_web_base(api_url: &str) -> String {
    let url = api_url.trim_end_matches('/');
    if url == "https://api.github.com" {
        "https://github.com".to_string()
    } else if let Some(base) = url.strip_suffix("/api/v3") {
        base.to_string()
    } else {
        url.to_string()
    }
}

/// What people call a job: its issue's title, else its task's first line.
fn job_title(job: &JobRecord) -> String {
    let title = job
        .issue_title
        .clone()
        .filter(|t| !t.trim().is_empty())
        .or_else(|| {
            job.instructions
                .as_deref()
                .map(task_title)
                .filter(|t| !t.is_empty())
        });
    title.unwrap_or_else(|| format!("Job {}", job.id.chars().take(8).collect::<String>()))
}

fn target(job: &JobRecord) -> &str {
    job.repo.as_deref().or(job.local_path.as_deref()).unwrap_or("—")
}

fn job_href(id: &str) -> String {
    format!("/dashboard/jobs/{}", super::session::percent_encode(id))
}

/// How long the job ran (or has been running).
fn run_time(job: &JobRecord, now: UnixMillis) -> String {
    match (job.started_at, job.finished_at) {
        (Some(start), Some(end)) => duration(end - start),
        (Some(start), None) if is_active(&job.status) => duration(now - start),
        _ => "—".to_string(),
    }
}

fn is_active(status: &str) -> bool {
    JobStatus::parse(status).is_some_and(JobStatus::is_active)
}

fn trigger_label(kind: &str) -> &str {
    match kind {
        "check_run" => "check run",
        other => other,
    }
}

/// The jobs list and its filters.
pub struct JobsList<'a> {
    pub jobs: &'a [JobRecord],
    pub status: Option<JobStatus>,
    pub repo: Option<&'a str>,
    pub repositories: &'a [String],
    pub next_cursor: Option<String>,
    /// Whether this is a later page.
    pub paged: bool,
    pub now: UnixMillis,
}

pub fn jobs_list(view: &JobsList<'_>, csrf: &str) -> Response {
    let mut out = String::new();
    out.push_str("<h1>Jobs</h1>");
    out.push_str("<form class=\"card filters\" method=\"get\" action=\"/\">");
    out.push_str("<div><label for=\"f-status\">Status</label><select id=\"f-status\" name=\"status\">");
    out.push_str("<option value=\"\">All statuses</option>");
    for status in JobStatus::ALL {
        let selected = if view.status == Some(status) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<option value=\"{0}\"{selected}>{0}</option>",
            status.as_str()
        );
    }
    out.push_str("</select></div>");
    out.push_str("<div><label for=\"f-repo\">Repository</label><select id=\"f-repo\" name=\"repo\">");
    out.push_str("<option value=\"\">All repositories</option>");
    for repo in view.repositories {
        let selected = if view.repo == Some(repo.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, "<option value=\"{0}\"{selected}>{0}</option>", esc(repo));
    }
    out.push_str(
        "</select></div><div class=\"actions\"><button type=\"submit\" class=\"primary\">Filter</button> ",
    );
    out.push_str("<a class=\"button\" href=\"/\">Clear</a></div></form>");

    if view.jobs.is_empty() {
        out.push_str("<section class=\"card\"><p class=\"muted\">No jobs match.</p></section>");
    } else {
        out.push_str(
            "<section class=\"card\"><table class=\"cards\" id=\"jobs\"><thead><tr><th>Status</th><th>Job</th>\
             <th>Repository</th><th>Issue</th><th>Trigger</th><th>Created</th><th class=\"num\">Duration</th>\
             <th class=\"num\">Cost</th></tr></thead><tbody>",
        );
        for job in view.jobs {
            let issue = job.issue_number.map_or("—".to_string(), |n| format!("#{n}"));
            let _ = write!(
                out,
                "<tr data-job=\"{id}\"><td data-label=\"Status\">{badge}</td>\
                 <td class=\"title\"><a href=\"{href}\">{title}</a></td>\
                 <td data-label=\"Repository\">{target}</td><td data-label=\"Issue\">{issue}</td>\
                 <td data-label=\"Trigger\">{trigger}</td><td data-label=\"Created\">{created}</td>\
                 <td data-label=\"Duration\" class=\"num\">{run}</td><td data-label=\"Cost\" class=\"num\">{cost}</td></tr>",
                id = esc(&job.id),
                badge = badge(&job.status),
                href = job_href(&job.id),
                title = esc(&job_title(job)),
                target = esc(target(job)),
                trigger = esc(trigger_label(&job.trigger_kind)),
                created = time(job.created_at),
                run = run_time(job, view.now),
                cost = usd(job.cost_usd),
            );
        }
        out.push_str("</tbody></table>");
        let filters = |cursor: Option<&str>| {
            let mut query = Vec::new();
            if let Some(status) = view.status {
                query.push(format!("status={}", status.as_str()));
            }
            if let Some(repo) = view.repo {
                query.push(format!("repo={}", super::session::percent_encode(repo)));
            }
            if let Some(cursor) = cursor {
                query.push(format!("cursor={}", super::session::percent_encode(cursor)));
            }
            if query.is_empty() {
                "/".to_string()
            } else {
                format!("/?{}", query.join("&amp;"))
            }
        };
        out.push_str("<nav class=\"pager\">");
        if view.paged {
            let _ = write!(out, "<a href=\"{}\">← Newest</a>", filters(None));
        } else {
            out.push_str("<span></span>");
        }
        if let Some(cursor) = &view.next_cursor {
            let _ = write!(
                out,
                "<a href=\"{}\" rel=\"next\">Older →</a>",
                filters(Some(cursor))
            );
        }
        out.push_str("</nav></section>");
    }
    page(
        &Frame {
            title: "Jobs",
            section: "jobs",
            csrf: Some(csrf),
        },
        &out,
    )
}

/// Everything the job page shows.
pub struct JobView<'a> {
    pub job: &'a JobRecord,
    pub steps: &'a [StepRecord],
    pub plan: Option<&'a str>,
    pub events: &'a [EventRecord],
    /// Per step, in order.
    pub contexts: &'a [Option<ContextSummary>],
    /// Per step, in order.
    pub diffs: &'a [Option<String>],
    /// LLM usage per requested model, by name.
    pub models: &'a [ModelUsageRecord],
    pub github_web: &'a str,
    pub notice: Option<&'a str>,
    pub now: UnixMillis,
}

pub fn job_page(view: &JobView<'_>, csrf: &str) -> Response {
    let job = view.job;
    let title = job_title(job);
    let mut out = String::new();
    out.push_str("<p class=\"small\"><a href=\"/\">← All jobs</a></p>");
    let active = is_active(&job.status);
    let retryable = matches!(job.status.as_str(), "failed" | "cancelled");
    let cancel_hidden = if active && job.cancel_requested == 0 {
        ""
    } else {
        " hidden"
    };
    let retry_hidden = if retryable { "" } else { " hidden" };
    let id = super::session::percent_encode(&job.id);
    let _ = write!(
        out,
        "<div class=\"head\"><div><h1>{title}</h1><p><span id=\"job-status\" class=\"badge s-{status}\">{status}</span> \
         <span class=\"muted\">attempt {attempt}</span> <span id=\"job-reason\" class=\"muted\">{reason}</span></p></div>\
         <div class=\"buttons\">\
         <form id=\"cancel-form\" method=\"post\" action=\"/dashboard/jobs/{id}/cancel\"{cancel_hidden}>\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" class=\"danger\">Cancel job</button></form>\
         <form id=\"retry-form\" method=\"post\" action=\"/dashboard/jobs/{id}/retry\"{retry_hidden}>\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" class=\"primary\">Retry</button></form>\
         </div></div>",
        title = esc(&title),
        status = esc(&job.status),
        attempt = job.attempt,
        reason = esc(job.status_reason.as_deref().unwrap_or("")),
        csrf = esc(csrf),
    );
    if let Some(notice) = view.notice {
        let _ = write!(out, "<p class=\"card notice\" id=\"notice\">{}</p>", esc(notice));
    }
    if job.cancel_requested != 0 && active && view.notice.is_none() {
        out.push_str("<p class=\"card notice\">Cancel requested: the job stops at its next checkpoint.</p>");
    }
    out.push_str("<div class=\"grid\">");
    details_card(&mut out, view);
    usage_card(&mut out, job, view.models);
    out.push_str("</div>");
    if let Some(task) = job.instructions.as_deref().filter(|t| !t.trim().is_empty()) {
        let _ = write!(
            out,
            "<section class=\"card\"><h2>Task</h2><pre>{}</pre></section>",
            esc(task)
        );
    }
    steps_card(&mut out, view);
    events_card(&mut out, view, active);
    page(
        &Frame {
            title: &title,
            section: "jobs",
            csrf: Some(csrf),
        },
        &out,
    )
}

fn details_card(out: &mut String, view: &JobView<'_>) {
    let job = view.job;
    let web = view.github_web;
    out.push_str("<section class=\"card\"><h2>Details</h2><dl class=\"facts\">");
    let mut fact = |name: &str, value: String| {
        let _ = write!(out, "<dt>{name}</dt><dd>{value}</dd>");
    };
    match &job.repo {
        Some(repo) => {
            let link = safe_href(&format!("{web}/{repo}"));
            fact(
                "Repository",
                link.map_or(esc(repo), |href| format!("<a href=\"{href}\">{}</a>", esc(repo))),
            );
        }
        None => fact("Checkout", esc(job.local_path.as_deref().unwrap_or("—"))),
    }
    if let (Some(repo), Some(number)) = (&job.repo, job.issue_number) {
        let text = match &job.issue_title {
            Some(t) => format!("#{number} {t}"),
            None => format!("#{number}"),
        };
        let value = safe_href(&format!("{web}/{repo}/issues/{number}")).map_or(esc(&text), |href| {
            format!("<a href=\"{href}\" id=\"issue-link\">{}</a>", esc(&text))
        });
        fact("Issue", value);
    }
    fact("Trigger", esc(trigger_label(&job.trigger_kind)));
    if let Some(sender) = &job.sender_login {
        fact("Requested by", esc(sender));
    }
    if let Some(branch) = &job.branch {
        fact("Branch", format!("<code>{}</code>", esc(branch)));
    }
    if let Some(url) = &job.pr_url {
        let label = job
            .pr_number
            .map_or("pull request".to_string(), |n| format!("#{n}"));
        let value = safe_href(url).map_or(esc(url), |href| {
            format!("<a href=\"{href}\" id=\"pr-link\">{}</a>", esc(&label))
        });
        fact("Pull request", value);
    }
    if let (Some(repo), Some(run)) = (&job.repo, job.check_run_id) {
        let value = safe_href(&format!("{web}/{repo}/runs/{run}")).map_or(run.to_string(), |href| {
            format!("<a href=\"{href}\" id=\"check-link\">check run {run}</a>")
        });
        fact("Check run", value);
    }
    fact("Created", time(job.created_at));
    if let Some(at) = job.started_at {
        fact("Started", time(at));
    }
    if let Some(at) = job.finished_at {
        fact("Finished", time(at));
    }
    fact("Duration", run_time(job, view.now));
    fact("Job id", format!("<code>{}</code>", esc(&job.id)));
    out.push_str("</dl></section>");
}

fn usage_card(out: &mut String, job: &JobRecord, models: &[ModelUsageRecord]) {
    let share = if job.budget_usd > 0.0 {
        format!(" of {} budget", usd(job.budget_usd))
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "<section class=\"card\"><h2>Cost</h2><dl class=\"facts\">\
         <dt>Cost</dt><dd id=\"cost\">{cost}<span class=\"muted\">{share}</span></dd>\
         <dt>Tokens in</dt><dd>{tin}</dd><dt>Tokens out</dt><dd>{tout}</dd><dt>LLM requests</dt><dd>{req}</dd>\
         </dl>",
        cost = usd(job.cost_usd),
        tin = count(job.tokens_in),
        tout = count(job.tokens_out),
        req = count(job.requests),
    );
    if models.is_empty() {
        out.push_str("<p class=\"small muted\">No LLM call recorded yet.</p></section>");
        return;
    }
    out.push_str(
        "<table id=\"costs-by-model\" class=\"small\"><thead><tr><th>Model</th><th class=\"num\">Requests</th>\
         <th class=\"num\">Tokens in</th><th class=\"num\">Tokens out</th><th class=\"num\">Cost</th></tr></thead><tbody>",
    );
    for m in models {
        let _ = write!(
            out,
            "<tr><td data-label=\"Model\"><code>{model}</code></td>\
             <td data-label=\"Requests\" class=\"num\">{req}</td><td data-label=\"Tokens in\" class=\"num\">{tin}</td>\
             <td data-label=\"Tokens out\" class=\"num\">{tout}</td><td data-label=\"Cost\" class=\"num\">{cost}</td></tr>",
            model = esc(&m.model),
            req = count(i64::from(m.requests)),
            tin = count(i64::try_from(m.tokens_in).unwrap_or(i64::MAX)),
            tout = count(i64::try_from(m.tokens_out).unwrap_or(i64::MAX)),
            cost = usd(m.usd),
        );
    }
    out.push_str("</tbody></table></section>");
}

/// The plan's own words about step `index`, if the plan is readable.
fn planned_step(plan: &Option<Value>, index: usize) -> Option<&Value> {
    plan.as_ref()?.get("steps")?.get(index)
}

fn steps_card(out: &mut String, view: &JobView<'_>) {
    let plan: Option<Value> = view.plan.and_then(|p| serde_json::from_str(p).ok());
    out.push_str("<section class=\"card\"><h2>Plan and steps</h2>");
    if view.steps.is_empty() {
        out.push_str("<p class=\"muted\">Not planned yet.</p></section>");
        return;
    }
    out.push_str("<ol class=\"steps\" id=\"steps\">");
    let ended = !is_active(&view.job.status);
    for (index, step) in view.steps.iter().enumerate() {
        // A step still marked running on an ended job was cut short.
        let step_status = if ended && step.status == "running" {
            "interrupted"
        } else {
            step.status.as_str()
        };
        let _ = write!(
            out,
            "<li><div class=\"step-head\"><h3>{n}. {title}</h3>{badge}</div>",
            n = index + 1,
            title = esc(&step.title),
            badge = badge(step_status),
        );
        if let Some(planned) = planned_step(&plan, index) {
            for (key, label) in [("rationale", "Why"), ("acceptance", "Done when")] {
                if let Some(text) = planned[key].as_str().filter(|t| !t.trim().is_empty()) {
                    let _ = write!(
                        out,
                        "<p class=\"small\"><span class=\"muted\">{label}:</span> {}</p>",
                        esc(text)
                    );
                }
            }
            for (key, label) in [("files", "Files"), ("commands", "Commands")] {
                let items: Vec<String> = planned[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str())
                    .map(|s| format!("<code>{}</code>", esc(s)))
                    .collect();
                if !items.is_empty() {
                    let _ = write!(
                        out,
                        "<p class=\"small\"><span class=\"muted\">{label}:</span> {}</p>",
                        items.join(", ")
                    );
                }
            }
        }
        if let Some(detail) = &step.detail {
            let _ = write!(out, "<p class=\"small\"><strong>{}</strong></p>", esc(detail));
        }
        if let Some(sha) = &step.commit_sha {
            let short: String = sha.chars().take(10).collect();
            let _ = write!(
                out,
                "<p class=\"small muted\">Commit <code>{}</code></p>",
                esc(&short)
            );
        }
        if let Some(Some(patch)) = view.diffs.get(index) {
            let _ = write!(
                out,
                "<details class=\"diff-details\"><summary>Diff</summary><pre class=\"diff\"><code>{}</code></pre></details>",
                diff_lines(patch)
            );
        }
        if let Some(Some(context)) = view.contexts.get(index) {
            context_details(out, context);
        }
        out.push_str("</li>");
    }
    out.push_str("</ol></section>");
}

/// A patch with each line marked as added, removed, hunk header or context.
fn diff_lines(patch: &str) -> String {
    let mut out = String::with_capacity(patch.len() + patch.len() / 4);
    for line in patch.lines() {
        let header = ["+++", "---", "diff ", "index ", "new file", "deleted file"];
        let class = if header.iter().any(|h| line.starts_with(h)) {
            "file"
        } else if line.starts_with('+') {
            "add"
        } else if line.starts_with('-') {
            "del"
        } else if line.starts_with("@@") {
            "hunk"
        } else {
            "ctx"
        };
        let text = if line.is_empty() {
            " ".to_string()
        } else {
            esc(line)
        };
        let _ = write!(out, "<span class=\"{class}\">{text}</span>");
    }
    out
}

fn context_details(out: &mut String, context: &ContextSummary) {
    let _ = write!(
        out,
        "<details class=\"context\"><summary>Context: {tokens} tokens{model}</summary>\
         <p class=\"small muted\">Prompt {prompt} tokens; the context may use {limit}{compaction}.</p>\
         <table class=\"sources\"><thead><tr><th>Source</th><th class=\"num\">Kept</th><th class=\"num\">Offered</th>\
         <th class=\"num\">Tokens</th></tr></thead><tbody>",
        tokens = count(i64::try_from(context.context_tokens).unwrap_or(i64::MAX)),
        model = if context.model.is_empty() {
            String::new()
        } else {
            format!(" for {}", esc(&context.model))
        },
        prompt = count(i64::try_from(context.prompt_tokens).unwrap_or(i64::MAX)),
        limit = count(i64::try_from(context.context_limit_tokens).unwrap_or(i64::MAX)),
        compaction = if context.compaction_applied {
            "; compaction applied"
        } else {
            ""
        },
    );
    for source in &context.by_source {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&source.source),
            source.kept,
            source.offered,
            count(i64::try_from(source.tokens).unwrap_or(i64::MAX)),
        );
    }
    out.push_str("</tbody></table>");
    for note in &context.notes {
        let _ = write!(out, "<p class=\"small muted\">{}</p>", esc(note));
    }
    out.push_str("</details>");
}

fn events_card(out: &mut String, view: &JobView<'_>, active: bool) {
    let last = view.events.last().map_or(0, |e| e.id);
    let stream = if active {
        format!(" data-stream=\"{}/events\"", job_href(&view.job.id))
    } else {
        String::new()
    };
    let live = if active {
        "<span id=\"live\" class=\"live\">connecting…</span>"
    } else {
        ""
    };
    let _ = write!(
        out,
        "<section class=\"card\"><div class=\"head\"><h2>Events</h2>{live}</div>\
         <ol class=\"events\" id=\"events\" data-last=\"{last}\"{stream}>"
    );
    if view.events.is_empty() {
        out.push_str("<li id=\"no-events\" class=\"muted\">No events yet.</li>");
    }
    for event in view.events {
        let _ = write!(
            out,
            "<li data-id=\"{id}\">{at}<span class=\"muted\">{kind}</span><span class=\"msg\">{message}</span></li>",
            id = event.id,
            at = time(event.at),
            kind = esc(&event.kind),
            message = esc(&event.message),
        );
    }
    out.push_str("</ol></section>");
}

pub fn installations(records: &[InstallationRecord], web: &str, csrf: &str) -> Response {
    let mut out = String::from("<h1>Installations</h1>");
    if records.is_empty() {
        out.push_str(
            "<section class=\"card\"><p class=\"muted\">No installation yet. Install the App on a repository; \
             its webhook events make it appear here.</p></section>",
        );
    } else {
        out.push_str(
            "<section class=\"card\"><table class=\"cards\" id=\"installations\"><thead><tr><th>Account</th>\
             <th>Id</th><th>Status</th><th>Repositories</th><th>Since</th><th>Updated</th></tr></thead><tbody>",
        );
        for record in records {
            let account = match &record.account_login {
                Some(login) => {
                    let kind = record
                        .account_type
                        .as_deref()
                        .map(|t| format!(" <span class=\"muted small\">{}</span>", esc(t)))
                        .unwrap_or_default();
                    let name = safe_href(&format!("{web}/{login}")).map_or(esc(login), |href| {
                        format!("<a href=\"{href}\">{}</a>", esc(login))
                    });
                    format!("{name}{kind}")
                }
                None => "<span class=\"muted\">unknown account</span>".to_string(),
            };
            let repositories = if record.repositories.is_empty() {
                match record.repository_selection.as_deref() {
                    Some("all") => "all repositories".to_string(),
                    _ => "—".to_string(),
                }
            } else {
                record
                    .repositories
                    .iter()
                    .map(|r| esc(r))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = write!(
                out,
                "<tr><td class=\"title\">{account}</td><td data-label=\"Id\">{id}</td>\
                 <td data-label=\"Status\">{status}</td><td data-label=\"Repositories\">{repositories}</td>\
                 <td data-label=\"Since\">{since}</td><td data-label=\"Updated\">{updated}</td></tr>",
                id = record.id,
                status = badge(&record.status),
                since = time(record.created_at),
                updated = time(record.updated_at),
            );
        }
        out.push_str("</tbody></table></section>");
    }
    page(
        &Frame {
            title: "Installations",
            section: "installations",
            csrf: Some(csrf),
        },
        &out,
    )
}

/// The login form. `enabled` is false when no API token is configured.
pub fn login(next: &str, error: Option<&str>, enabled: bool) -> Response {
    let mut out = String::from("<section class=\"card narrow\"><h1>Sign in</h1>");
    if !enabled {
        out.push_str(
            "<p class=\"notice card error\">The dashboard is disabled: set <code>ORCH_API_TOKEN</code> \
             and sign in with it.</p>",
        );
    }
    if let Some(error) = error {
        let _ = write!(
            out,
            "<p class=\"notice card error\" id=\"login-error\">{}</p>",
            esc(error)
        );
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/login\" class=\"stack\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <div><label for=\"token\">API token (<code>ORCH_API_TOKEN</code>)</label>\
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" required autofocus></div>\
         <div><button type=\"submit\" class=\"primary\">Sign in</button></div></form></section>",
        next = esc(next)
    );
    page(
        &Frame {
            title: "Sign in",
            section: "",
            csrf: None,
        },
        &out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_addresses_follow_the_api_address() {
        assert_eq!(github_web_base("https://api.github.com"), "https://github.com");
        assert_eq!(
            github_web_base("https://ghe.example/api/v3/"),
            "https://ghe.example"
        );
        assert_eq!(github_web_base("http://127.0.0.1:9"), "http://127.0.0.1:9");
    }

    #[test]
    fn diff_lines_are_marked_and_escaped() {
        let html = diff_lines("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-<a>\n+<b>\n same");
        assert!(html.contains("<span class=\"del\">-&lt;a&gt;</span>"));
        assert!(html.contains("<span class=\"add\">+&lt;b&gt;</span>"));
        assert!(html.contains("<span class=\"hunk\">@@ -1 +1 @@</span>"));
        assert!(html.contains("<span class=\"file\">+++ b/x</span>"));
    }
}
