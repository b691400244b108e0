//! `GET /metrics`: Prometheus text format (checked by a strict parser
//! written here), counters that move with real requests, and the optional
//! bearer token.
//!
//! The recorder is process-wide and other tests run at the same time, so
//! counters are compared before and after, and only ever asserted to have
//! moved by at least what this test did.

use std::collections::{BTreeMap, HashMap};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use crate::pipeline::{only_job, script_happy, world};
use crate::support::*;

/// One sample: metric name and its labels, sorted.
type Key = (String, BTreeMap<String, String>);

/// A parsed exposition: every sample and every family's type.
#[derive(Debug, Default)]
struct Exposition {
    samples: HashMap<Key, f64>,
    types: HashMap<String, String>,
}

impl Exposition {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .get(&(name.to_string(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// The sum over every sample of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    let first_ok = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
    chars.next().is_some_and(first_ok)
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("bad value {s:?}")),
    }
}

/// `{a="x",b="y\"z"}` → labels, and the rest of the line.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    loop {
        rest = rest.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !is_name(name, false) || name.starts_with("__") {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) => return Err("newline in a label value".into()),
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected , or } after a label".into());
        }
    }
}

/// The family a sample belongs to (`x_bucket`/`x_sum`/`x_count` of a histogram `x`).
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && matches!(types.get(base).map(String::as_str), Some("histogram" | "summary"))
        {
            return base;
        }
    }
    name
}

/// Parses the text format strictly: every line is a comment, `# HELP`,
/// `# TYPE` (before the family's samples, once), or a sample with a valid
/// name, labels and value; a family's samples are contiguous; no sample
/// twice; histograms have cumulative buckets ending in `+Inf` = `_count`.
fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut seen_families: Vec<String> = Vec::new();
    let mut helped: Vec<String> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let parts: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match parts.as_slice() {
                ["TYPE", name, kind] => {
                    if !is_name(name, true) {
                        return Err(at("bad metric name".into()));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(kind) {
                        return Err(at(format!("unknown type {kind}")));
                    }
                    if out.types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(at("TYPE twice".into()));
                    }
                    if seen_families.iter().any(|f| f == name) {
                        return Err(at("TYPE after the family's samples".into()));
                    }
                }
                ["HELP", name, ..] => {
                    if !is_name(name, true) || helped.iter().any(|h| h == name) {
                        return Err(at("bad or repeated HELP".into()));
                    }
                    helped.push(name.to_string());
                }
                _ => {}
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(at("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let value = match fields.as_slice() {
            [value] => parse_value(value).map_err(at)?,
            [value, timestamp] => {
                timestamp.parse::<i64>().map_err(|_| at("bad timestamp".into()))?;
                parse_value(value).map_err(at)?
            }
            _ => return Err(at("expected a value".into())),
        };
        let family = family_of(name, &out.types).to_string();
        match seen_families.last() {
            Some(last) if *last == family => {}
            _ if seen_families.contains(&family) => return Err(at("family not contiguous".into())),
            _ => seen_families.push(family.clone()),
        }
        if out.samples.insert((name.to_string(), labels), value).is_some() {
            return Err(at("sample twice".into()));
        }
    }
    check_histograms(&out)?;
    Ok(out)
}

fn check_histograms(out: &Exposition) -> Result<(), String> {
    for (family, _) in out.types.iter().filter(|(_, t)| *t == "histogram") {
        let bucket = format!("{family}_bucket");
        let mut series: HashMap<BTreeMap<String, String>, Vec<(f64, f64)>> = HashMap::new();
        for ((name, labels), value) in &out.samples {
            if *name != bucket {
                continue;
            }
            let mut rest = labels.clone();
            let le = rest.remove("le").ok_or(format!("{bucket} without le"))?;
            series.entry(rest).or_default().push((parse_value(&le)?, *value));
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{family}: buckets not cumulative"));
            }
            let (le, inf) = buckets.last().copied().unwrap_or((0.0, 0.0));
            let count = out.samples.get(&(format!("{family}_count"), labels.clone()));
            if le != f64::INFINITY || count != Some(&inf) {
                return Err(format!("{family}: +Inf bucket must equal _count"));
            }
            if !out.samples.contains_key(&(format!("{family}_sum"), labels)) {
                return Err(format!("{family}: no _sum"));
            }
        }
    }
    Ok(())
}

#[test]
fn the_parser_refuses_what_is_not_the_text_format() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 3\n\
        # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
    let parsed = parse(good).unwrap();
    assert_eq!(parsed.value("a_total", &[("x", "1"), ("y", "q\"")]), 3.0);
    for bad in [
        "a b c d\n",
        "1a 3\n",
        "a{x=1} 3\n",
        "a{x=\"1\" 3\n",
        "a 3\nb 1\na 4\n",
        "a three\n",
        "# TYPE a counter\n# TYPE a gauge\na 1\n",
        "a 1\n# TYPE a counter\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
        "a{x=\"\\t\"} 1\n",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}

async fn scrape(app: &TestApp, token: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::get("/metrics");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = app
        .router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    if status == StatusCode::OK {
        assert!(
            content_type.is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
            "Prometheus text content type"
        );
    }
    (status, text)
}

async fn exposition(app: &TestApp) -> Exposition {
    let (status, text) = scrape(app, None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[tokio::test]
async fn webhook_deliveries_are_counted_by_event_and_outcome() {
    orchestrator::metrics::install();
    let app = TestApp::new().await;
    let before = exposition(&app).await;
    const DELIVERIES: &str = "orchestrator_webhook_deliveries_total";
    let created = [("event", "issues"), ("outcome", "job_created")];
    let duplicate = [("event", "issues"), ("outcome", "duplicate")];
    let refused = [("event", "unverified"), ("outcome", "bad_signature")];

    assert_eq!(
        app.deliver("issues", "m-1", &labeled(1)).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(app.deliver("issues", "m-1", &labeled(1)).await.0, StatusCode::OK);
    let mut forged = signed_request("issues", "m-2", &labeled(2));
    forged
        .headers_mut()
        .insert("x-hub-signature-256", "sha256=00".parse().unwrap());
    assert_eq!(app.send(forged).await.0, StatusCode::UNAUTHORIZED);

    let after = exposition(&app).await;
    assert_eq!(after.types[DELIVERIES], "counter");
    for labels in [created, duplicate, refused] {
        let moved = after.value(DELIVERIES, &labels) - before.value(DELIVERIES, &labels);
        assert!(moved >= 1.0, "{labels:?} moved by {moved}");
    }
    assert_eq!(after.types["orchestrator_queue_depth"], "gauge");
    assert!(
        after.value("orchestrator_queue_depth", &[]) >= 1.0,
        "the new job waits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_end_to_end_moves_the_job_llm_github_and_context_metrics() {
    orchestrator::metrics::install();
    let w = world().await;
    script_happy(&w.llm);
    // One secondary rate limit on the first comment: waited out, then posted.
    w.github
        .secondary_limit_next("POST", "/repos/*/*/issues/*/comments", Some(1), 1);
    let before = exposition(&w.app).await;
    w.app.deliver("issues", "metrics-job", &labeled(1)).await;
    assert_eq!(w.pool.run_until_idle().await.unwrap(), 1);
    assert_eq!(only_job(&w.app).await["status"], "succeeded");
    let after = exposition(&w.app).await;
    let moved = |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);

    let succeeded = [("status", "succeeded")];
    assert!(moved("orchestrator_jobs_ended_total", &succeeded) >= 1.0);
    assert_eq!(after.types["orchestrator_job_duration_seconds"], "histogram");
    assert!(moved("orchestrator_job_duration_seconds_count", &succeeded) >= 1.0);
    // The plan by the CTO model, two steps by the coder model; 1000 + 500 tokens each.
    let cto = [("model", "gpt-4.1-mini"), ("outcome", "ok")];
    let coder = [("model", "gpt-4.1"), ("outcome", "ok")];
    assert!(moved("orchestrator_llm_requests_total", &cto) >= 1.0);
    assert!(moved("orchestrator_llm_requests_total", &coder) >= 2.0);
    let coder_in = [("model", "gpt-4.1"), ("direction", "in")];
    let coder_out = [("model", "gpt-4.1"), ("direction", "out")];
    assert!(moved("orchestrator_llm_tokens_total", &coder_in) >= 2000.0);
    assert!(moved("orchestrator_llm_tokens_total", &coder_out) >= 1000.0);
    // $0.002 + $0.004 per coder call (pricing.json).
    assert!(moved("orchestrator_llm_cost_usd", &[("model", "gpt-4.1")]) >= 0.012 - 1e-9);
    assert_eq!(after.types["orchestrator_llm_cost_usd"], "gauge");
    assert!(moved("orchestrator_github_requests_total", &[("status", "201")]) >= 3.0);
    assert!(moved("orchestrator_github_requests_total", &[("status", "200")]) >= 1.0);
    assert!(
        moved(
            "orchestrator_github_rate_limit_waits_total",
            &[("kind", "answer")]
        ) >= 1.0
    );
    assert_eq!(after.types["orchestrator_context_tokens"], "histogram");
    assert!(
        moved("orchestrator_context_tokens_count", &[]) >= 2.0,
        "one context per step"
    );
    assert!(moved("orchestrator_context_tokens_sum", &[]) > 0.0);
}

#[tokio::test]
async fn metrics_are_open_without_a_token_and_need_it_when_one_is_set() {
    orchestrator::metrics::install();
    let open = TestApp::new().await;
    assert_eq!(scrape(&open, None).await.0, StatusCode::OK);

    let closed = TestApp::with_env(&[("ORCH_METRICS_TOKEN", "metrics-secret")]).await;
    let (status, body) = scrape(&closed, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("\"code\":\"unauthorized\""), "{body}");
    assert_eq!(scrape(&closed, Some("wrong")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        scrape(&closed, Some(API_TOKEN)).await.0,
        StatusCode::UNAUTHORIZED,
        "the API token is not the metrics token"
    );
    let (status, text) = scrape(&closed, Some("metrics-secret")).await;
    assert_eq!(status, StatusCode::OK);
    parse(&text).unwrap();
    assert!(!text.contains("metrics-secret"));
}
