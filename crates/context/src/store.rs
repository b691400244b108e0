//! The on-disk index format: a compact, versioned little-endian binary file.
//!
//! Layout (integers little-endian `u32` unless noted; `str` is a `u32` length and UTF-8):
//!
//! ```text
//! magic     b"ORCHIDX\0"   version u32
//! vocab     count, then each term as str
//! files     count, then each file:
//!           path str, blob str (40 hex), size u64, mtime_ns u64, path terms,
//!           chunks count, then each chunk: start, end, kind str, has_name u8, [name str], terms
//! excluded  count, then each: path str, size u64, mtime_ns u64, reason u8 (0 binary, 1 secret)
//! terms     count, then (term id, frequency) pairs as LEB128 varints
//! end       b"END!"
//! ```
//!
//! JSON was the first idea but a 5 000-file index is tens of MB of numbers; this loads in
//! tens of milliseconds. Any mismatch (magic, version, bounds, dangling term id, missing end
//! marker) makes [`decode`] return `None` and the caller rebuilds: a bad cache never fails a
//! query.

use crate::chunk::Chunk;
use crate::index::{ExcludedFile, Exclusion, IndexedChunk, IndexedFile};

const MAGIC: &[u8; 8] = b"ORCHIDX\0";
const END: &[u8; 4] = b"END!";
/// Bump on any change of layout or of what is indexed (tokenizer, chunker rules).
pub const FORMAT_VERSION: u32 = 2;

/// Serializes the vocabulary and files.
pub fn encode(vocab: &[String], files: &[IndexedFile], excluded: &[ExcludedFile]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, FORMAT_VERSION);
    put_len(&mut out, vocab.len());
    for term in vocab {
        put_str(&mut out, term);
    }
    put_len(&mut out, files.len());
    for file in files {
        put_str(&mut out, &file.path);
        put_str(&mut out, &file.blob);
        out.extend_from_slice(&file.size.to_le_bytes());
        out.extend_from_slice(&file.mtime_ns.to_le_bytes());
        put_terms(&mut out, &file.path_terms);
        put_len(&mut out, file.chunks.len());
        for c in &file.chunks {
            put_u32(&mut out, c.chunk.start_line);
            put_u32(&mut out, c.chunk.end_line);
            put_str(&mut out, &c.chunk.kind);
            match &c.chunk.name {
                Some(name) => {
                    out.push(1);
                    put_str(&mut out, name);
                }
                None => out.push(0),
            }
            put_terms(&mut out, &c.terms);
        }
    }
    put_len(&mut out, excluded.len());
    for x in excluded {
        put_str(&mut out, &x.path);
        out.extend_from_slice(&x.size.to_le_bytes());
        out.extend_from_slice(&x.mtime_ns.to_le_bytes());
        out.push(match x.reason {
            Exclusion::Binary => 0,
            Exclusion::Secret => 1,
        });
    }
    out.extend_from_slice(END);
    out
}

/// Parses a file written by [`encode`]; `None` on any inconsistency.
pub fn decode(buf: &[u8]) -> Option<(Vec<String>, Vec<IndexedFile>, Vec<ExcludedFile>)> {
    let mut r = Reader { buf, pos: 0 };
    if r.bytes(8)? != MAGIC || r.u32()? != FORMAT_VERSION {
        return None;
    }
    let vocab_len = r.len()?;
    let mut vocab = Vec::with_capacity(vocab_len.min(1 << 22));
    for _ in 0..vocab_len {
        vocab.push(r.string()?);
    }
    let n_files = r.len()?;
    let mut files = Vec::with_capacity(n_files.min(1 << 20));
    for _ in 0..n_files {
        files.push(read_file(&mut r, vocab.len())?);
    }
    let n_excluded = r.len()?;
    let mut excluded = Vec::with_capacity(n_excluded.min(1 << 20));
    for _ in 0..n_excluded {
        let path = r.string()?;
        let size = r.u64()?;
        let mtime_ns = r.u64()?;
        let reason = match r.bytes(1)?[0] {
            0 => Exclusion::Binary,
            1 => Exclusion::Secret,
            _ => return None,
        };
        excluded.push(ExcludedFile {
            path,
            size,
            mtime_ns,
            reason,
        });
    }
    (r.bytes(4)? == END && r.pos == buf.len()).then_some((vocab, files, excluded))
}

fn read_file(r: &mut Reader<'_>, vocab_len: usize) -> Option<IndexedFile> {
    let path = r.string()?;
    let blob = r.string()?;
    let size = r.u64()?;
    let mtime_ns = r.u64()?;
    let path_terms = r.terms(vocab_len)?;
    let n_chunks = r.len()?;
    let mut chunks = Vec::with_capacity(n_chunks.min(1 << 16));
    for _ in 0..n_chunks {
        let start_line = r.u32()?;
        let end_line = r.u32()?;
        let kind = r.string()?;
        let name = match r.bytes(1)?[0] {
            0 => None,
            1 => Some(r.string()?),
            _ => return None,
        };
        let terms = r.terms(vocab_len)?;
        chunks.push(IndexedChunk {
            chunk: Chunk {
                start_line,
                end_line,
                kind,
                name,
            },
            terms,
        });
    }
    Some(IndexedFile {
        path,
        blob,
        size,
        mtime_ns,
        path_terms,
        chunks,
    })
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    put_u32(out, u32::try_from(n).unwrap_or(u32::MAX));
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_terms(out: &mut Vec<u8>, terms: &[(u32, u32)]) {
    put_len(out, terms.len());
    for &(t, f) in terms {
        put_varint(out, t);
        put_varint(out, f);
    }
}

/// LEB128: 7 bits per byte, high bit set on all but the last byte.
fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A bounds-checked cursor.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.u32()?).ok()
    }

    fn string(&mut self) -> Option<String> {
        let n = self.len()?;
        String::from_utf8(self.bytes(n)?.to_vec()).ok()
    }

    fn varint(&mut self) -> Option<u32> {
        let mut v: u32 = 0;
        for shift in (0..35).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            v |= u32::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn terms(&mut self, vocab_len: usize) -> Option<Vec<(u32, u32)>> {
        let n = self.len()?;
        // Each pair takes at least 2 bytes: refuse counts the buffer cannot hold.
        if n.checked_mul(2)? > self.buf.len() - self.pos {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (t, f) = (self.varint()?, self.varint()?);
            if t as usize >= vocab_len {
                return None;
            }
            out.push((t, f));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<String>, Vec<IndexedFile>, Vec<ExcludedFile>) {
        let vocab = vec!["load".to_string(), "config".to_string()];
        let chunk = Chunk {
            start_line: 1,
            end_line: 3,
            kind: "function_item".into(),
            name: Some("load".into()),
        };
        let file = IndexedFile {
            path: "src/config.rs".into(),
            blob: "a".repeat(40),
            size: 12,
            mtime_ns: 7,
            path_terms: vec![(1, 1)],
            chunks: vec![IndexedChunk {
                chunk,
                terms: vec![(0, 2), (1, 300)],
            }],
        };
        let excluded = ExcludedFile {
            path: "logo.png".into(),
            size: 9,
            mtime_ns: 3,
            reason: Exclusion::Binary,
        };
        (vocab, vec![file], vec![excluded])
    }

    #[test]
    fn round_trips() {
        let (vocab, files, excluded) = sample();
        let bytes = encode(&vocab, &files, &excluded);
        assert_eq!(decode(&bytes), Some((vocab, files, excluded)));
    }

    #[test]
    fn rejects_truncation_corruption_and_other_versions() {
        let (vocab, files, excluded) = sample();
        let bytes = encode(&vocab, &files, &excluded);
        for cut in [0, 7, 12, bytes.len() - 1] {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut other_version = bytes.clone();
        other_version[8] = other_version[8].wrapping_add(1);
        assert_eq!(decode(&other_version), None);
        let mut garbage = bytes.clone();
        let n = garbage.len();
        garbage[n - 20..n - 4].fill(0xff);
        assert_eq!(decode(&garbage), None);
    }
}
