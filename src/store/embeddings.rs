//! The embedding vector cache: one row per (model, content hash), so a text
//! is embedded once per model whichever job or repository meets it again.
//!
//! Vectors are stored as little-endian `f32` bytes (BLOB / BYTEA): compact,
//! exact, and the same on both backends.

use std::collections::HashMap;

use super::{Result, Store};
use crate::jobs::UnixMillis;

/// At most this many hashes per `IN (…)` list, well under both backends'
/// limits on bound parameters.
const LOOKUP_CHUNK: usize = 500;

/// `dims` floats as little-endian bytes.
pub fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The inverse of [`encode_vector`]; `None` when the length is not a whole
/// number of floats.
pub fn decode_vector(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

impl Store {
    /// The stored vectors of `model` among `hashes`, by hash. A row whose
    /// bytes do not match its `dims` is treated as missing (and replaced by
    /// the next [`Store::save_embeddings`] of that hash).
    pub async fn load_embeddings(&self, model: &str, hashes: &[String]) -> Result<HashMap<String, Vec<f32>>> {
        let mut found = HashMap::new();
        for chunk in hashes.chunks(LOOKUP_CHUNK) {
            let placeholders: Vec<String> = (2..chunk.len() + 2).map(|n| format!("${n}")).collect();
            // Only numbered placeholders are formatted into the statement.
            let sql = format!(
                "SELECT content_hash, dims, vector FROM embeddings WHERE model = $1 AND content_hash IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query_as::<_, (String, i64, Vec<u8>)>(sqlx::AssertSqlSafe(sql)).bind(model);
            for hash in chunk {
                query = query.bind(hash.as_str());
            }
            for (hash, dims, bytes) in query.fetch_all(&self.read).await? {
                match decode_vector(&bytes) {
                    Some(v) if i64::try_from(v.len()).ok() == Some(dims) && dims > 0 => {
                        found.insert(hash, v);
                    }
                    _ => tracing::warn!(model, hash, "stored embedding is malformed; computing it again"),
                }
            }
        }
        Ok(found)
    }

    /// Stores vectors of `model` by content hash, in one transaction. A hash
    /// stored already (by a concurrent job) is overwritten with the same
    /// vector, or repaired if its row was malformed.
    pub async fn save_embeddings(
        &self,
        model: &str,
        vectors: &[(String, Vec<f32>)],
        now: UnixMillis,
    ) -> Result<()> {
        if vectors.is_empty() {
            return Ok(());
        }
        let mut tx = self.write.begin().await?;
        for (hash, vector) in vectors {
            sqlx::query(
                "INSERT INTO embeddings (model, content_hash, dims, vector, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (model, content_hash) DO UPDATE SET dims = excluded.dims, vector = excluded.vector",
            )
            .bind(model)
            .bind(hash.as_str())
            .bind(i64::try_from(vector.len()).unwrap_or(i64::MAX))
            .bind(encode_vector(vector))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many vectors are stored for `model`.
    pub async fn count_embeddings(&self, model: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM embeddings WHERE model = $1")
                .bind(model)
                .fetch_one(&self.read)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_as_little_endian_floats() {
        let v = vec![1.0f32, -0.5, f32::MIN_POSITIVE, 3.25e7];
        let bytes = encode_vector(&v);
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[..4], &1.0f32.to_le_bytes());
        assert_eq!(decode_vector(&bytes), Some(v));
        assert_eq!(decode_vector(&bytes[..5]), None);
    }
}
