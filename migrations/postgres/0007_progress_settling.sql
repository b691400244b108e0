-- Whether the job's progress comment or check run may still show it running
-- on GitHub: set when a worker starts showing progress, cleared once the final
-- state is written. The reconciler settles ended jobs still marked open.
ALTER TABLE jobs ADD COLUMN progress_open BIGINT NOT NULL DEFAULT 0;
-- Settling passes tried so far (backoff after GitHub errors).
ALTER TABLE jobs ADD COLUMN settle_attempts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX jobs_progress_open ON jobs (finished_at, id) WHERE progress_open = 1;
