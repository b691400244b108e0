-- A job's LLM usage per requested model (chat and embeddings), so the
-- dashboard can show costs by model; the totals stay on `jobs`.
CREATE TABLE job_model_usage (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    model TEXT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    tokens_in BIGINT NOT NULL DEFAULT 0,
    tokens_out BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, model)
);
