-- A job's LLM usage per requested model (chat and embeddings), so the
-- dashboard can show costs by model; the totals stay on `jobs`.
CREATE TABLE job_model_usage (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, model)
);
