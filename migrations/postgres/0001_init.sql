-- Times are Unix milliseconds (BIGINT): sqlx's Any driver carries no date types.

CREATE TABLE installations (
    id BIGINT PRIMARY KEY,
    account_login TEXT,
    account_type TEXT,
    status TEXT NOT NULL,
    repository_selection TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE installation_repositories (
    installation_id BIGINT NOT NULL,
    repo_id BIGINT NOT NULL,
    full_name TEXT NOT NULL,
    PRIMARY KEY (installation_id, repo_id)
);

CREATE TABLE deliveries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    action TEXT,
    installation_id BIGINT,
    repo TEXT,
    sender_login TEXT,
    sender_id BIGINT,
    received_at BIGINT NOT NULL,
    payload BYTEA,
    outcome TEXT NOT NULL
);
CREATE INDEX deliveries_received_at ON deliveries (received_at);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    status_reason TEXT,
    attempt BIGINT NOT NULL DEFAULT 1,
    trigger_kind TEXT NOT NULL,
    installation_id BIGINT,
    repo TEXT,
    repo_id BIGINT,
    local_path TEXT,
    issue_number BIGINT,
    issue_title TEXT,
    issue_body TEXT,
    instructions TEXT,
    sender_login TEXT,
    sender_id BIGINT,
    sender_association TEXT,
    trigger_comment_id BIGINT,
    delivery_id TEXT,
    base_branch TEXT,
    branch TEXT,
    pr_number BIGINT,
    pr_url TEXT,
    progress_comment_id BIGINT,
    check_run_id BIGINT,
    head_sha TEXT,
    budget_usd DOUBLE PRECISION NOT NULL,
    budget_requests BIGINT NOT NULL,
    budget_minutes BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    tokens_in BIGINT NOT NULL DEFAULT 0,
    tokens_out BIGINT NOT NULL DEFAULT 0,
    requests BIGINT NOT NULL DEFAULT 0,
    dry_run BIGINT NOT NULL DEFAULT 0,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT,
    run_after BIGINT NOT NULL,
    agents_hash TEXT,
    plan TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT
);
-- One active job per issue, enforced by the database itself.
CREATE UNIQUE INDEX jobs_one_active_per_issue ON jobs (repo, issue_number)
    WHERE issue_number IS NOT NULL AND status IN ('queued', 'planning', 'running', 'publishing');
CREATE INDEX jobs_newest ON jobs (created_at, id);
CREATE INDEX jobs_claim ON jobs (status, run_after);
CREATE INDEX jobs_issue ON jobs (repo, issue_number, created_at);

CREATE TABLE job_steps (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    position BIGINT NOT NULL,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT,
    commit_sha TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, position)
);

CREATE TABLE job_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT,
    message TEXT NOT NULL
);
CREATE INDEX job_events_job ON job_events (job_id, id);

-- Replies that belong to no job, and cancel/retry requests; sent by workers.
CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    installation_id BIGINT,
    repo TEXT NOT NULL,
    issue_number BIGINT,
    job_id TEXT,
    payload TEXT NOT NULL,
    delivery_id TEXT,
    created_at BIGINT NOT NULL,
    run_after BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    sent_at BIGINT,
    last_error TEXT,
    lease_owner TEXT,
    lease_until BIGINT
);
CREATE INDEX outbox_pending ON outbox (sent_at, run_after);
CREATE INDEX outbox_issue ON outbox (repo, issue_number, kind, created_at);
