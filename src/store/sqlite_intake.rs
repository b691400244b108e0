//! The SQLite intake writer: one thread that owns a write connection and
//! records deliveries in batches (group commit).
//!
//! Why a thread of its own: sqlx runs every SQLite statement on a worker
//! thread and hands each one over through a channel, so a delivery's seven or
//! so statements cost seven round trips between threads; profiles of the
//! webhook path showed those context switches, not SQLite, dominating its CPU
//! time. Here a request costs one hand-over, the statements run in-thread from
//! rusqlite's prepared-statement cache, and every delivery waiting at that
//! moment shares one transaction and one WAL commit.
//!
//! Semantics are those of the sqlx path (`intake.rs`): the same statements
//! (`sql.rs`) and effects (`effects.rs`); each reply is sent only after the
//! transaction holding its delivery has committed. If a batch fails, it is
//! rolled back and every delivery is retried alone, so one bad delivery never
//! fails the others.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::effects::{self, OutboxRow, REPLY_RATE_WINDOW_MS};
use super::intake::{JobDefaults, NewDelivery, Recorded, to_i64};
use super::{Result, StoreError, sql};
use crate::config::SqliteSynchronous;
use crate::jobs::UnixMillis;
use crate::webhook::intake::{ControlRequest, InstallationChange, JobRequest, ReplyRequest, Route};
use crate::webhook::payload::EnvelopeFields;

/// Deliveries committed together at most.
const MAX_BATCH: usize = 256;
/// Deliveries waiting for the writer at most; callers wait beyond that.
const QUEUE_DEPTH: usize = 4096;

/// Handle to the writer thread; the thread ends when the last handle is dropped.
#[derive(Debug)]
pub(super) struct SqliteIntake {
    queue: mpsc::Sender<Item>,
}

struct Item {
    delivery: OwnedDelivery,
    route: Route,
    defaults: JobDefaults,
    reply: oneshot::Sender<Result<Recorded>>,
}

struct OwnedDelivery {
    delivery_id: String,
    event: String,
    envelope: EnvelopeFields,
    payload: Vec<u8>,
    received_at: UnixMillis,
}

impl SqliteIntake {
    /// Opens the write connection and starts the thread.
    pub(super) fn start(path: &Path, synchronous: SqliteSynchronous) -> Result<SqliteIntake> {
        let conn = open(path, synchronous)?;
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("sqlite-intake".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the SQLite writer: {e}")))?;
        Ok(SqliteIntake { queue })
    }

    /// Records one delivery; resolves once its transaction has committed.
    pub(super) async fn record(
        &self,
        delivery: &NewDelivery<'_>,
        route: &Route,
        defaults: &JobDefaults,
    ) -> Result<Recorded> {
        let (reply, answer) = oneshot::channel();
        let item = Item {
            delivery: OwnedDelivery {
                delivery_id: delivery.delivery_id.to_string(),
                event: delivery.event.to_string(),
                envelope: delivery.envelope.clone(),
                payload: delivery.payload.to_vec(),
                received_at: delivery.received_at,
            },
            route: route.clone(),
            defaults: *defaults,
            reply,
        };
        let stopped = || StoreError::Corrupt("the SQLite writer has stopped".into());
        self.queue.send(item).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn open(path: &Path, synchronous: SqliteSynchronous) -> Result<Connection> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "SQLite refused WAL mode (journal_mode = {mode})"
        )));
    }
    let sync = match synchronous {
        SqliteSynchronous::Normal => "PRAGMA synchronous = NORMAL",
        SqliteSynchronous::Full => "PRAGMA synchronous = FULL",
    };
    conn.execute_batch(sync)?;
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Item>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let results = match record_batch(&mut conn, &batch) {
            Ok(results) => results
                .into_iter()
                .map(Result::Ok)
                .collect::<Vec<Result<Recorded>>>(),
            Err(err) => {
                tracing::warn!(error = %err, size = batch.len(), "batch failed; recording deliveries one by one");
                batch
                    .iter()
                    .map(|item| record_batch(&mut conn, std::slice::from_ref(item)).map(first_of))
                    .collect()
            }
        };
        for (item, result) in batch.into_iter().zip(results) {
            // The caller may have gone (request timed out); the record stands.
            let _ = item.reply.send(result);
        }
    }
}

fn first_of(mut results: Vec<Recorded>) -> Recorded {
    results.pop().unwrap_or(Recorded::Duplicate)
}

fn record_batch(conn: &mut Connection, batch: &[Item]) -> Result<Vec<Recorded>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    for item in batch {
        results.push(record_one(&tx, item)?);
    }
    tx.commit()?;
    Ok(results)
}

fn record_one(tx: &Transaction<'_>, item: &Item) -> Result<Recorded> {
    let d = &item.delivery;
    let e = &d.envelope;
    let row_id: Option<i64> = tx
        .prepare_cached(sql::INSERT_DELIVERY)?
        .query_row(
            params![
                d.delivery_id,
                d.event,
                e.action,
                e.installation_id.map(to_i64),
                e.repo,
                e.sender_login,
                e.sender_id.map(to_i64),
                d.received_at,
                d.payload,
            ],
            |row| row.get(0),
        )
        .optional()?;
    let Some(row_id) = row_id else {
        return Ok(Recorded::Duplicate);
    };
    if let Some(installation_id) = e.installation_id {
        tx.prepare_cached(sql::ENSURE_INSTALLATION)?
            .execute(params![to_i64(installation_id), d.received_at])?;
    }
    let outcome = apply_route(tx, item)?;
    tx.prepare_cached(sql::SET_DELIVERY_OUTCOME)?
        .execute(params![outcome, row_id])?;
    Ok(Recorded::New { outcome })
}

fn apply_route(tx: &Transaction<'_>, item: &Item) -> Result<String> {
    let now = item.delivery.received_at;
    let delivery_id = item.delivery.delivery_id.as_str();
    let installation_id = match &item.route {
        Route::Ignore(reason) => return Ok(format!("ignored: {reason}")),
        Route::Installation(change) => return apply_installation(tx, change, now),
        Route::Job(request) => request.issue.installation_id,
        Route::Reply(reply) => reply.issue.installation_id,
        Route::Control(control) => control.target.installation_id(),
    };
    let status: Option<String> = tx
        .prepare_cached(sql::INSTALLATION_STATUS)?
        .query_row(params![to_i64(installation_id)], |row| row.get(0))
        .optional()?;
    if let Some(blocked) = effects::blocked_by_installation(status.as_deref()) {
        return Ok(blocked);
    }
    match &item.route {
        Route::Job(request) => create_job(tx, request, delivery_id, &item.defaults, now),
        Route::Reply(reply) => enqueue_reply(tx, reply, delivery_id, now),
        Route::Control(control) => enqueue_control(tx, control, delivery_id, now),
        Route::Ignore(_) | Route::Installation(_) => Ok(String::new()),
    }
}

fn apply_installation(tx: &Transaction<'_>, change: &InstallationChange, now: UnixMillis) -> Result<String> {
    let id = to_i64(change.id);
    tx.prepare_cached(sql::UPSERT_INSTALLATION)?.execute(params![
        id,
        change.account_login,
        change.account_type,
        change.status.map(|s| s.as_str()),
        change.repository_selection,
        now,
    ])?;
    if change.removes_all_repositories() {
        tx.prepare_cached(sql::DELETE_INSTALLATION_REPOS)?
            .execute(params![id])?;
    }
    for (repo_id, full_name) in &change.repos_added {
        tx.prepare_cached(sql::UPSERT_INSTALLATION_REPO)?
            .execute(params![id, to_i64(*repo_id), full_name])?;
    }
    for repo_id in &change.repos_removed {
        tx.prepare_cached(sql::DELETE_INSTALLATION_REPO)?
            .execute(params![id, to_i64(*repo_id)])?;
    }
    Ok(effects::installation_outcome(change))
}

fn create_job(
    tx: &Transaction<'_>,
    request: &JobRequest,
    delivery_id: &str,
    defaults: &JobDefaults,
    now: UnixMillis,
) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    let status = effects::job_status(request);
    let created: Option<String> = tx
        .prepare_cached(sql::INSERT_JOB)?
        .query_row(
            params![
                id,
                status.as_str(),
                request.rejection,
                request.trigger.as_str(),
                to_i64(request.issue.installation_id),
                request.issue.repo,
                to_i64(request.issue.repo_id),
                to_i64(request.issue.issue_number),
                request.issue_title,
                request.issue_body,
                request.instructions,
                request.sender_login,
                to_i64(request.sender_id),
                request.sender_association,
                request.trigger_comment_id.map(to_i64),
                delivery_id,
                request.base_branch,
                defaults.budget_usd,
                i64::from(defaults.budget_requests),
                i64::from(defaults.budget_minutes),
                i64::from(defaults.dry_run),
                now,
            ],
            |row| row.get(0),
        )
        .optional()?;
    if created.is_none() {
        let running: Option<String> = tx
            .prepare_cached(sql::ACTIVE_JOB_OF_ISSUE)?
            .query_row(
                params![request.issue.repo, to_i64(request.issue.issue_number)],
                |row| row.get(0),
            )
            .optional()?;
        let running = running.unwrap_or_default();
        let payload = effects::already_running_payload(request, &running);
        let row = OutboxRow::for_issue("already_running", &request.issue, Some(&running));
        insert_outbox(tx, &row, &payload, delivery_id, now)?;
        return Ok(format!("already_running: {running}"));
    }
    let (kind, message) = effects::job_created_event(request);
    tx.prepare_cached(sql::INSERT_JOB_EVENT)?
        .execute(params![id, now, kind, status.as_str(), message])?;
    Ok(effects::job_outcome(status, &id))
}

fn enqueue_reply(
    tx: &Transaction<'_>,
    reply: &ReplyRequest,
    delivery_id: &str,
    now: UnixMillis,
) -> Result<String> {
    let kind = reply.kind.kind();
    if reply.kind.rate_limited() {
        let recent: Option<i64> = tx
            .prepare_cached(sql::RECENT_REPLY)?
            .query_row(
                params![
                    reply.issue.repo,
                    to_i64(reply.issue.issue_number),
                    now - REPLY_RATE_WINDOW_MS
                ],
                |row| row.get(0),
            )
            .optional()?;
        if recent.is_some() {
            return Ok(format!("ignored: {kind} reply rate-limited"));
        }
    }
    let row = OutboxRow::for_issue(kind, &reply.issue, None);
    insert_outbox(tx, &row, &effects::reply_payload(reply), delivery_id, now)?;
    Ok(format!("reply: {kind}"))
}

fn enqueue_control(
    tx: &Transaction<'_>,
    control: &ControlRequest,
    delivery_id: &str,
    now: UnixMillis,
) -> Result<String> {
    let row = OutboxRow::for_control(control);
    insert_outbox(tx, &row, &effects::control_payload(control), delivery_id, now)?;
    Ok(format!("control: {}", control.kind.as_str()))
}

fn insert_outbox(
    tx: &Transaction<'_>,
    row: &OutboxRow<'_>,
    payload: &serde_json::Value,
    delivery_id: &str,
    now: UnixMillis,
) -> Result<()> {
    tx.prepare_cached(sql::INSERT_OUTBOX)?.execute(params![
        row.kind,
        to_i64(row.installation_id),
        row.repo,
        row.issue_number.map(to_i64),
        row.job_id,
        payload.to_string(),
        delivery_id,
        now,
    ])?;
    Ok(())
}

/// The file a `sqlite:` URL names, when it names one (not `:memory:`).
pub(super) fn file_of(url: &str) -> Option<PathBuf> {
    super::sqlite_path(url).map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rusqlite binds positionally; `$n` names get their index from their
    /// first appearance, so every shared statement must introduce them in order.
    #[test]
    fn placeholders_appear_in_increasing_order() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../../migrations/sqlite/0001_init.sql"))
            .unwrap();
        for statement in sql::ALL {
            let prepared = conn.prepare(statement).unwrap();
            for index in 1..=prepared.parameter_count() {
                let expected = format!("${index}");
                assert_eq!(
                    prepared.parameter_name(index),
                    Some(expected.as_str()),
                    "{statement}"
                );
            }
        }
    }
}
