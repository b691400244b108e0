-- Times are Unix milliseconds (INTEGER): sqlx's Any driver carries no date types.

CREATE TABLE installations (
    id INTEGER PRIMARY KEY,
    account_login TEXT,
    account_type TEXT,
    status TEXT NOT NULL,
    repository_selection TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE installation_repositories (
    installation_id INTEGER NOT NULL,
    repo_id INTEGER NOT NULL,
    full_name TEXT NOT NULL,
    PRIMARY KEY (installation_id, repo_id)
);

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    action TEXT,
    installation_id INTEGER,
    repo TEXT,
    sender_login TEXT,
    sender_id INTEGER,
    received_at INTEGER NOT NULL,
    payload BLOB,
    outcome TEXT NOT NULL
);
CREATE INDEX deliveries_received_at ON deliveries (received_at);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    status_reason TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    trigger_kind TEXT NOT NULL,
    installation_id INTEGER,
    repo TEXT,
    repo_id INTEGER,
    local_path TEXT,
    issue_number INTEGER,
    issue_title TEXT,
    issue_body TEXT,
    instructions TEXT,
    sender_login TEXT,
    sender_id INTEGER,
    sender_association TEXT,
    trigger_comment_id INTEGER,
    delivery_id TEXT,
    base_branch TEXT,
    branch TEXT,
    pr_number INTEGER,
    pr_url TEXT,
    progress_comment_id INTEGER,
    check_run_id INTEGER,
    head_sha TEXT,
    budget_usd REAL NOT NULL,
    budget_requests INTEGER NOT NULL,
    budget_minutes INTEGER NOT NULL,
    cost_usd REAL NOT NULL DEFAULT 0,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    dry_run INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER,
    run_after INTEGER NOT NULL,
    agents_hash TEXT,
    plan TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
);
-- One active job per issue, enforced by the database itself.
CREATE UNIQUE INDEX jobs_one_active_per_issue ON jobs (repo, issue_number)
    WHERE issue_number IS NOT NULL AND status IN ('queued', 'planning', 'running', 'publishing');
CREATE INDEX jobs_newest ON jobs (created_at, id);
CREATE INDEX jobs_claim ON jobs (status, run_after);
CREATE INDEX jobs_issue ON jobs (repo, issue_number, created_at);

CREATE TABLE job_steps (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    position INTEGER NOT NULL,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT,
    commit_sha TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, position)
);

CREATE TABLE job_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    status TEXT,
    message TEXT NOT NULL
);
CREATE INDEX job_events_job ON job_events (job_id, id);

-- Replies that belong to no job, and cancel/retry requests; sent by workers.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    installation_id INTEGER,
    repo TEXT NOT NULL,
    issue_number INTEGER,
    job_id TEXT,
    payload TEXT NOT NULL,
    delivery_id TEXT,
    created_at INTEGER NOT NULL,
    run_after INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    sent_at INTEGER,
    last_error TEXT,
    lease_owner TEXT,
    lease_until INTEGER
);
CREATE INDEX outbox_pending ON outbox (sent_at, run_after);
CREATE INDEX outbox_issue ON outbox (repo, issue_number, kind, created_at);
