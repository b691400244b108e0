-- A job's memory (notes and files), the step summaries offered as message
-- history, and the context diagnostics of each step.

-- Notes, oldest first by id. `idempotency_key` makes the pipeline's note per
-- step a no-op when a resumed job writes it again (NULLs never conflict).
CREATE TABLE memory_items (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL REFERENCES jobs (id),
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    tags TEXT NOT NULL,
    step_id TEXT,
    idempotency_key TEXT,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (job_id, idempotency_key)
);
CREATE INDEX memory_items_job ON memory_items (job_id, id);

CREATE TABLE memory_files (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    name TEXT NOT NULL,
    content TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, name)
);

-- One summary per completed step, offered to later steps as history.
CREATE TABLE message_summaries (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    position BIGINT NOT NULL,
    summary TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, position)
);

-- The context diagnostics of each step's latest context build (JSON).
CREATE TABLE context_metrics (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    position BIGINT NOT NULL,
    step_title TEXT NOT NULL,
    model TEXT NOT NULL,
    context_tokens BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    candidates BIGINT NOT NULL,
    kept BIGINT NOT NULL,
    diagnostics TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, position)
);
