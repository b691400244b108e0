//! `GET /dashboard/jobs/{id}/events`: the job's event log as server-sent
//! events, while the job runs.
//!
//! The stream polls the database (events are written by whichever replica
//! runs the job, so there is nothing in memory to subscribe to): each new
//! `job_events` row is sent as a `job_event` with its id as the SSE id, so a
//! reconnecting browser (`Last-Event-ID`) continues where it stopped; the
//! status (with the cancel flag) is sent as `status` at the start and on
//! every change; once the job
//! has ended and its events are out, `end` is sent and the stream closes. A
//! server shutdown ends every stream at once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::super::AppState;
use crate::jobs::JobStatus;
use crate::store::{JobRecord, Store};

/// How often the database is asked for news.
const POLL: Duration = Duration::from_millis(500);

/// Events read per poll.
const BATCH: u32 = 200;

#[derive(Debug, Default, Deserialize)]
pub(super) struct StreamQuery {
    after: Option<i64>,
}

pub(super) async fn job_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> Response {
    match state.store.job_record(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return (StatusCode::NOT_FOUND, "no such job").into_response(),
        Err(err) => {
            tracing::error!(error = %err, "dashboard stream: store error");
            return (StatusCode::INTERNAL_SERVER_ERROR, "store error").into_response();
        }
    };
    // A reconnecting EventSource says where it stopped.
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let feed = Feed {
        store: state.store.clone(),
        job_id: id,
        last_event: resume.or(q.after).unwrap_or(0).max(0),
        // The job may have moved on between the page and this request: the
        // current status goes first, then every change.
        last_status: None,
        pending: VecDeque::from([Event::default()
            .retry(Duration::from_secs(2))
            .comment("stream open")]),
        shutdown: state.shutdown.clone(),
        finished: false,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = feed.next_event().await?;
        Some((Ok::<_, Infallible>(event), feed))
    });
    let mut response = Sse::new(stream).keep_alive(KeepAlive::default()).into_response();
    // Reverse proxies (nginx) would otherwise hold the events back in a buffer.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

struct Feed {
    store: Store,
    job_id: String,
    last_event: i64,
    last_status: Option<(String, bool)>,
    pending: VecDeque<Event>,
    shutdown: CancellationToken,
    finished: bool,
}

fn status_key(job: &JobRecord) -> (String, bool) {
    (job.status.clone(), job.cancel_requested != 0)
}

impl Feed {
    /// The next event to send; `None` ends the stream.
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.finished || self.shutdown.is_cancelled() {
                return None;
            }
            match self.poll().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(err) => tracing::warn!(job = %self.job_id, error = %err, "dashboard stream: poll failed"),
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Queues what is new; `true` when something was queued.
    async fn poll(&mut self) -> crate::store::Result<bool> {
        let events = self
            .store
            .events_after(&self.job_id, self.last_event, BATCH)
            .await?;
        let more_events = events.len() == BATCH as usize;
        for event in events {
            self.last_event = event.id;
            let data = serde_json::to_string(&event).unwrap_or_default();
            self.pending.push_back(
                Event::default()
                    .event("job_event")
                    .id(event.id.to_string())
                    .data(data),
            );
        }
        let Some(job) = self.store.job_record(&self.job_id).await? else {
            self.finished = true;
            return Ok(true);
        };
        let key = status_key(&job);
        if self.last_status.as_ref() != Some(&key) {
            let data = json!({
                "status": job.status,
                "reason": job.status_reason,
                "cancel_requested": job.cancel_requested != 0,
            });
            self.pending
                .push_back(Event::default().event("status").data(data.to_string()));
            self.last_status = Some(key);
        }
        let ended = JobStatus::parse(&job.status).is_some_and(|s| !s.is_active());
        if ended && !more_events {
            self.pending
                .push_back(Event::default().event("end").data(job.status));
            self.finished = true;
        }
        Ok(!self.pending.is_empty())
    }
}
