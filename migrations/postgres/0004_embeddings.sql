-- Embedding vectors of context chunks and queries, computed once per
-- (model, SHA-256 of the embedded text) and shared by every job and
-- repository. `vector` is `dims` little-endian f32 values.
CREATE TABLE embeddings (
    model TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    dims BIGINT NOT NULL,
    vector BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (model, content_hash)
);
