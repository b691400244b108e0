-- When the explanation of a `rejected` job was posted on its issue (or given
-- up); NULL while it is still owed. The control applier claims owed notices
-- with the job's lease columns, which a rejected job never uses otherwise.
ALTER TABLE jobs ADD COLUMN rejection_notified_at BIGINT;
