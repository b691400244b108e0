//! HTML building blocks: escaping, the page frame, formatting, and the
//! stylesheet and script (served from routes, so the pages' Content Security
//! Policy forbids every inline script and style).

use std::fmt::Write;

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};

use crate::jobs::UnixMillis;

pub use crate::html::escape as esc;

/// An `href` for a URL from the outside world: only http(s), else nothing.
pub fn safe_href(url: &str) -> Option<String> {
    (url.starts_with("https://") || url.starts_with("http://")).then(|| esc(url))
}

/// What the page frame needs to know about the viewer.
pub struct Frame<'a> {
    pub title: &'a str,
    /// The current section of the navigation (`jobs`, `installations`).
    pub section: &'a str,
    /// The session's CSRF token (for the logout form); `None` on the login page.
    pub csrf: Option<&'a str>,
}

/// A whole page: doctype, head, navigation and `body`.
pub fn page(frame: &Frame<'_>, body: &str) -> Response {
    let mut out = String::with_capacity(body.len() + 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · orchestrator</title>\
         <link rel=\"stylesheet\" href=\"{STYLE_PATH}\">\
         <script src=\"{SCRIPT_PATH}\" defer></script></head><body>",
        esc(frame.title)
    );
    out.push_str("<header class=\"top\"><a class=\"brand\" href=\"/\">orchestrator</a>");
    if let Some(csrf) = frame.csrf {
        let current = |name: &str| {
            if frame.section == name {
                " aria-current=\"page\""
            } else {
                ""
            }
        };
        let _ = write!(
            out,
            "<nav><a href=\"/\"{}>Jobs</a><a href=\"/dashboard/installations\"{}>Installations</a>\
             <form method=\"post\" action=\"/logout\" class=\"inline\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\" class=\"link\">Log out</button></form></nav>",
            current("jobs"),
            current("installations"),
            esc(csrf)
        );
    }
    out.push_str("</header><main>");
    out.push_str(body);
    out.push_str("</main></body></html>");
    with_security_headers(Html(out).into_response())
}

/// A small page that explains a refusal or an error.
pub fn error_page(title: &str, message: &str) -> Response {
    let body = format!(
        "<section class=\"card narrow\"><h1>{}</h1><p>{}</p><p><a href=\"/\">Back to the jobs</a></p></section>",
        esc(title),
        esc(message)
    );
    page(
        &Frame {
            title,
            section: "",
            csrf: None,
        },
        &body,
    )
}

/// Headers every dashboard page carries: no inline code, no framing, no caching.
pub fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; \
             img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `2026-11-25 19:03:16 UTC`, inside a `<time>` element.
pub fn time(ms: UnixMillis) -> String {
    let at = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    format!(
        "<time datetime=\"{}\">{}</time>",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// `4h 05m`, `3m 12s`, `8s`.
pub fn duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// `$0.0123`.
pub fn usd(amount: f64) -> String {
    format!("${amount:.4}")
}

/// `12,345`.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A status badge; `id` lets the script update it.
pub fn badge(status: &str) -> String {
    format!("<span class=\"badge s-{}\">{}</span>", esc(status), esc(status))
}

pub const STYLE_PATH: &str = "/dashboard/assets/style.css";
pub const SCRIPT_PATH: &str = "/dashboard/assets/app.js";

/// The whole stylesheet: system fonts, light and dark, tables that become
/// cards on a phone.
pub const STYLE: &str = r#":root {
  --bg: #f6f7f9; --fg: #1d2433; --muted: #5d6778; --card: #fff; --line: #dde1e8;
  --accent: #2457c5; --ok: #1a7f37; --bad: #c4302b; --warn: #9a6700; --idle: #6e7781;
  --code: #f0f2f5; --add: #e6ffec; --del: #ffebe9;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #0f1319; --fg: #e3e8ef; --muted: #9aa4b2; --card: #171c24; --line: #2a313c;
    --accent: #6d9eff; --ok: #3fb950; --bad: #f85149; --warn: #d29922; --idle: #8b949e;
    --code: #1e242e; --add: #12361f; --del: #3d1518; }
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
header.top { display: flex; flex-wrap: wrap; align-items: center; justify-content: space-between;
  gap: .5rem 1.5rem; padding: .75rem 1.25rem; background: var(--card); border-bottom: 1px solid var(--line); }
.brand { font-weight: 700; color: var(--fg); letter-spacing: .01em; }
nav { display: flex; align-items: center; gap: 1.1rem; }
nav a[aria-current] { color: var(--fg); font-weight: 600; }
main { max-width: 1180px; margin: 0 auto; padding: 1.25rem; }
h1 { font-size: 1.45rem; margin: .2rem 0 .6rem; line-height: 1.3; overflow-wrap: anywhere; }
h2 { font-size: 1.1rem; margin: 0 0 .75rem; }
h3 { font-size: 1rem; margin: 0; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 1rem 1.1rem;
  margin-bottom: 1rem; }
.narrow { max-width: 26rem; margin: 3rem auto; }
.muted { color: var(--muted); }
.small { font-size: .85rem; }
.notice { border-left: 4px solid var(--accent); }
.notice.error { border-left-color: var(--bad); }
form.inline { display: inline; margin: 0; }
label { display: block; font-size: .85rem; color: var(--muted); margin-bottom: .25rem; }
input[type=password], input[type=text], select { font: inherit; color: var(--fg); background: var(--bg);
  border: 1px solid var(--line); border-radius: 6px; padding: .45rem .6rem; width: 100%; }
button, .button { font: inherit; font-weight: 600; border-radius: 6px; border: 1px solid var(--line);
  background: var(--card); color: var(--fg); padding: .45rem .9rem; cursor: pointer; display: inline-block; }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
button.danger { color: var(--bad); border-color: var(--bad); }
button.link { border: 0; background: none; padding: 0; color: var(--accent); font-weight: 400; }
.filters { display: flex; flex-wrap: wrap; gap: .75rem; align-items: flex-end; }
.filters > div { min-width: 11rem; flex: 1 1 11rem; }
.filters > .actions { flex: 0 0 auto; min-width: 0; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: .55rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); font-weight: 600; }
tbody tr:hover { background: color-mix(in srgb, var(--accent) 5%, transparent); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.title { overflow-wrap: anywhere; }
.badge { display: inline-block; padding: .05rem .55rem; border-radius: 999px; font-size: .8rem; font-weight: 600;
  border: 1px solid currentColor; white-space: nowrap; }
.s-succeeded { color: var(--ok); } .s-failed { color: var(--bad); } .s-rejected { color: var(--bad); }
.s-cancelled { color: var(--idle); } .s-queued { color: var(--warn); }
.s-planning, .s-running, .s-publishing { color: var(--accent); }
.s-pending, .s-skipped, .s-empty, .s-interrupted { color: var(--idle); }
.s-active { color: var(--ok); } .s-suspended { color: var(--warn); } .s-deleted { color: var(--idle); }
.pager { display: flex; justify-content: space-between; margin-top: .75rem; }
.head { display: flex; flex-wrap: wrap; gap: .75rem; align-items: flex-start; justify-content: space-between;
  margin-bottom: .75rem; }
.card .head { margin-bottom: 0; }
.head .buttons { display: flex; gap: .5rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1.25rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr)); gap: 1rem; }
.grid > .card { margin-bottom: 0; }
.stack > * + * { margin-top: 1rem; }
pre, code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: .85rem; }
pre { background: var(--code); border-radius: 6px; padding: .75rem; overflow-x: auto; margin: .5rem 0 0;
  white-space: pre-wrap; overflow-wrap: anywhere; }
pre.diff { white-space: pre; overflow-wrap: normal; max-height: 32rem; overflow: auto; }
.diff span { display: block; min-height: 1.2em; }
.diff .add { background: var(--add); } .diff .del { background: var(--del); }
.diff .hunk, .diff .file { color: var(--muted); }
ol.steps { list-style: none; padding: 0; margin: 0; }
ol.steps > li { border-top: 1px solid var(--line); padding: .8rem 0; }
ol.steps > li:first-child { border-top: 0; padding-top: 0; }
.step-head { display: flex; gap: .6rem; align-items: baseline; flex-wrap: wrap; }
details { margin-top: .5rem; }
summary { cursor: pointer; color: var(--accent); }
ol.events { list-style: none; padding: 0; margin: 0; max-height: 28rem; overflow-y: auto; }
ol.events li { display: grid; grid-template-columns: 13rem 5.5rem 1fr; gap: .5rem; padding: .35rem 0;
  border-top: 1px solid var(--line); font-size: .9rem; }
ol.events li:first-child { border-top: 0; }
ol.events time { white-space: nowrap; font-variant-numeric: tabular-nums; }
ol.events li.fresh { animation: fresh 2s ease-out; }
@keyframes fresh { from { background: color-mix(in srgb, var(--accent) 22%, transparent); } to { background: transparent; } }
.live { font-size: .8rem; color: var(--muted); }
.live::before { content: "●"; margin-right: .3rem; color: var(--idle); }
.live.on::before { color: var(--ok); }
.sources td:first-child { text-transform: capitalize; }
@media (max-width: 720px) {
  main { padding: .75rem; }
  table.cards thead { display: none; }
  table.cards, table.cards tbody, table.cards tr, table.cards td { display: block; width: 100%; }
  table.cards tr { border: 1px solid var(--line); border-radius: 8px; margin-bottom: .6rem; padding: .35rem .6rem;
    background: var(--card); }
  table.cards td { border: 0; padding: .2rem 0; display: flex; gap: .75rem; justify-content: space-between;
    text-align: right; }
  table.cards td::before { content: attr(data-label); color: var(--muted); font-size: .8rem; text-align: left; }
  table.cards td.title { display: block; text-align: left; font-weight: 600; }
  table.cards td.title::before { content: none; }
  ol.events li { grid-template-columns: 1fr auto; }
  ol.events li .msg { grid-column: 1 / -1; }
  dl.facts { grid-template-columns: 1fr; gap: 0; }
  dl.facts dd { margin-bottom: .45rem; }
}
"#;

/// The live event log: an `EventSource` on the job's event stream appends
/// events and keeps the status badge and the buttons current.
pub const SCRIPT: &str = r#""use strict";
(function () {
  var log = document.getElementById("events");
  var stream = log && log.getAttribute("data-stream");
  if (!stream || !window.EventSource) { return; }
  var indicator = document.getElementById("live");
  var badge = document.getElementById("job-status");
  var reason = document.getElementById("job-reason");
  var cancelForm = document.getElementById("cancel-form");
  var retryForm = document.getElementById("retry-form");
  var active = ["queued", "planning", "running", "publishing"];
  var url = stream + "?after=" + encodeURIComponent(log.getAttribute("data-last") || "0");
  var source = new EventSource(url);
  function setLive(on, text) {
    if (!indicator) { return; }
    indicator.classList.toggle("on", on);
    indicator.textContent = text;
  }
  source.onopen = function () { setLive(true, "live"); };
  source.onerror = function () { setLive(false, "reconnecting…"); };
  source.addEventListener("job_event", function (e) {
    var ev = JSON.parse(e.data);
    var empty = document.getElementById("no-events");
    if (empty) { empty.remove(); }
    var li = document.createElement("li");
    li.className = "fresh";
    li.setAttribute("data-id", String(ev.id));
    var when = document.createElement("time");
    when.dateTime = new Date(ev.at).toISOString();
    when.textContent = new Date(ev.at).toISOString().replace("T", " ").slice(0, 19) + " UTC";
    var kind = document.createElement("span");
    kind.className = "muted";
    kind.textContent = ev.kind;
    var msg = document.createElement("span");
    msg.className = "msg";
    msg.textContent = ev.message;
    li.appendChild(when); li.appendChild(kind); li.appendChild(msg);
    log.appendChild(li);
    log.scrollTop = log.scrollHeight;
  });
  source.addEventListener("status", function (e) {
    var st = JSON.parse(e.data);
    if (badge) {
      badge.textContent = st.status;
      badge.className = "badge s-" + st.status;
    }
    if (reason) { reason.textContent = st.reason || ""; }
    var isActive = active.indexOf(st.status) >= 0;
    if (cancelForm) { cancelForm.hidden = !isActive || st.cancel_requested; }
    if (retryForm) { retryForm.hidden = !(st.status === "failed" || st.status === "cancelled"); }
    var notice = document.getElementById("notice");
    if (notice && !isActive) { notice.hidden = true; }
  });
  source.addEventListener("end", function () {
    source.close();
    setLive(false, "job ended");
  });
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert(\"x\")</script> & 'y'"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(safe_href("javascript:alert(1)"), None);
        assert_eq!(safe_href("https://x/\"a"), Some("https://x/&quot;a".into()));
    }

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(duration(8_000), "8s");
        assert_eq!(duration(192_000), "3m 12s");
        assert_eq!(duration(4 * 3_600_000 + 300_000), "4h 05m");
        assert_eq!(usd(0.01234), "$0.0123");
    }
}
