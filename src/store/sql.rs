//! The statements that record a delivery, shared by both intake paths.
//!
//! Placeholders are `$n` and make their first appearance in increasing order,
//! so positional binding works in sqlx (PostgreSQL and SQLite) and in
//! rusqlite alike (a test in `sqlite_intake` checks it).

pub const INSERT_DELIVERY: &str = "INSERT INTO deliveries (delivery_id, event, action, installation_id, repo, \
    sender_login, sender_id, received_at, payload, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '') \
    ON CONFLICT (delivery_id) DO NOTHING RETURNING id";

pub const SET_DELIVERY_OUTCOME: &str = "UPDATE deliveries SET outcome = $1 WHERE id = $2";

/// An installation first seen in any event counts as active.
pub const ENSURE_INSTALLATION: &str = "INSERT INTO installations (id, status, created_at, updated_at) \
    VALUES ($1, 'active', $2, $2) ON CONFLICT (id) DO NOTHING";

pub const INSTALLATION_STATUS: &str = "SELECT status FROM installations WHERE id = $1";

pub const UPSERT_INSTALLATION: &str = "INSERT INTO installations (id, account_login, account_type, status, \
    repository_selection, created_at, updated_at) VALUES ($1, $2, $3, COALESCE($4, 'active'), $5, $6, $6) \
    ON CONFLICT (id) DO UPDATE SET \
      account_login = COALESCE(excluded.account_login, installations.account_login), \
      account_type = COALESCE(excluded.account_type, installations.account_type), \
      status = COALESCE($4, installations.status), \
      repository_selection = COALESCE(excluded.repository_selection, installations.repository_selection), \
      updated_at = excluded.updated_at";

pub const DELETE_INSTALLATION_REPOS: &str =
    "DELETE FROM installation_repositories WHERE installation_id = $1";

pub const UPSERT_INSTALLATION_REPO: &str = "INSERT INTO installation_repositories (installation_id, repo_id, \
    full_name) VALUES ($1, $2, $3) ON CONFLICT (installation_id, repo_id) DO UPDATE SET full_name = excluded.full_name";

pub const DELETE_INSTALLATION_REPO: &str =
    "DELETE FROM installation_repositories WHERE installation_id = $1 AND repo_id = $2";

/// The partial unique index admits one active job per issue; a conflict
/// means one is running, and the trigger gets a link to it instead.
pub const INSERT_JOB: &str = "INSERT INTO jobs (id, status, status_reason, trigger_kind, installation_id, repo, \
    repo_id, issue_number, issue_title, issue_body, instructions, sender_login, sender_id, sender_association, \
    trigger_comment_id, delivery_id, base_branch, budget_usd, budget_requests, budget_minutes, dry_run, run_after, \
    created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $22, $22) \
    ON CONFLICT (repo, issue_number) WHERE issue_number IS NOT NULL \
      AND status IN ('queued', 'planning', 'running', 'publishing') DO NOTHING \
    RETURNING id";

pub const ACTIVE_JOB_OF_ISSUE: &str = "SELECT id FROM jobs WHERE repo = $1 AND issue_number = $2 \
    AND status IN ('queued', 'planning', 'running', 'publishing') LIMIT 1";

pub const INSERT_JOB_EVENT: &str =
    "INSERT INTO job_events (job_id, at, kind, status, message) VALUES ($1, $2, $3, $4, $5)";

/// Replies anyone can ask for share a per-issue window (see `effects`).
pub const RECENT_REPLY: &str = "SELECT id FROM outbox WHERE repo = $1 AND issue_number = $2 \
    AND kind IN ('help', 'status', 'usage', 'issue_closed') AND created_at > $3 LIMIT 1";

pub const INSERT_OUTBOX: &str = "INSERT INTO outbox (kind, installation_id, repo, issue_number, job_id, payload, \
    delivery_id, created_at, run_after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)";

/// Every statement above, for the placeholder-order test.
#[cfg(test)]
pub const ALL: &[&str] = &[
    INSERT_DELIVERY,
    SET_DELIVERY_OUTCOME,
    ENSURE_INSTALLATION,
    INSTALLATION_STATUS,
    UPSERT_INSTALLATION,
    DELETE_INSTALLATION_REPOS,
    UPSERT_INSTALLATION_REPO,
    DELETE_INSTALLATION_REPO,
    INSERT_JOB,
    ACTIVE_JOB_OF_ISSUE,
    INSERT_JOB_EVENT,
    RECENT_REPLY,
    INSERT_OUTBOX,
];
