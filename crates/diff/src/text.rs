//! A file's bytes as lines, and back, keeping what the patch does not talk about: each
//! line's own ending, the file's dominant ending for new lines, the final-newline state
//! and a byte-order mark.
//!
//! Line endings are not content here: a line's text excludes its `\n` or `\r\n`, and the
//! patch's lines had their `\r` removed by [`crate::extract`]. That is what lets a
//! diff made on an LF checkout apply to a CRLF one (and the reverse) while the file keeps
//! its style. The price: a patch cannot change line endings alone.

use std::borrow::Cow;

/// How a line ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Eol {
    /// No ending: the last line of a file without a final newline.
    None,
    /// `\n`.
    Lf,
    /// `\r\n`.
    CrLf,
}

impl Eol {
    fn bytes(self) -> &'static [u8] {
        match self {
            Eol::None => b"",
            Eol::Lf => b"\n",
            Eol::CrLf => b"\r\n",
        }
    }
}

/// One line of a file.
#[derive(Clone, Debug)]
pub(crate) struct FileLine<'a> {
    /// Without the ending.
    pub text: &'a [u8],
    /// The ending the line has.
    pub eol: Eol,
}

/// A file split into lines.
#[derive(Clone, Debug)]
pub(crate) struct FileText<'a> {
    /// Whether the file starts with a UTF-8 byte-order mark (not part of line 1's text,
    /// so that a patch written without it still matches).
    pub bom: bool,
    /// The lines.
    pub lines: Vec<FileLine<'a>>,
    /// The ending new lines get: CRLF when most lines use it, else LF.
    pub dominant: Eol,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl<'a> FileText<'a> {
    /// Splits `bytes` into lines.
    pub fn new(bytes: &'a [u8]) -> Self {
        let (bom, body) = match bytes.strip_prefix(BOM) {
            Some(rest) => (true, rest),
            None => (false, bytes),
        };
        let mut lines = Vec::new();
        let (mut lf, mut crlf) = (0usize, 0usize);
        let mut rest = body;
        while !rest.is_empty() {
            match rest.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let raw = rest.get(..i).unwrap_or_default();
                    let line = match raw.strip_suffix(b"\r") {
                        Some(text) => {
                            crlf += 1;
                            FileLine { text, eol: Eol::CrLf }
                        }
                        None => {
                            lf += 1;
                            FileLine {
                                text: raw,
                                eol: Eol::Lf,
                            }
                        }
                    };
                    lines.push(line);
                    rest = rest.get(i + 1..).unwrap_or_default();
                }
                None => {
                    lines.push(FileLine {
                        text: rest,
                        eol: Eol::None,
                    });
                    rest = &[];
                }
            }
        }
        let dominant = if crlf > lf { Eol::CrLf } else { Eol::Lf };
        FileText { bom, lines, dominant }
    }

    /// Whether the file ends with a line ending (an empty file does not).
    pub fn final_newline(&self) -> bool {
        self.lines.last().is_some_and(|l| l.eol != Eol::None)
    }
}

/// A line of a result being built: its text, and the ending it had in the old file if it
/// comes from there (`None` for a new line, which gets the file's dominant ending).
#[derive(Clone, Debug)]
pub(crate) struct OutLine<'a> {
    pub text: Cow<'a, [u8]>,
    pub eol: Option<Eol>,
}

/// Joins `lines` into file bytes.
///
/// Every line but the last gets its own ending, or `dominant` if it had none (a new line,
/// or an old last line that now has lines after it). The last line ends with a newline
/// iff `final_newline`.
pub(crate) fn render(lines: &[OutLine<'_>], dominant: Eol, final_newline: bool, bom: bool) -> Vec<u8> {
    let size: usize = lines.iter().map(|l| l.text.len() + 2).sum();
    let mut out = Vec::with_capacity(size + BOM.len());
    if bom {
        out.extend_from_slice(BOM);
    }
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        out.extend_from_slice(&line.text);
        let own = match line.eol {
            Some(Eol::None) | None => dominant,
            Some(eol) => eol,
        };
        if i < last || final_newline {
            out.extend_from_slice(own.bytes());
        }
    }
    out
}

/// Whether `bytes` look binary (git's test: a NUL byte).
pub(crate) fn is_binary(bytes: &[u8]) -> bool {
    bytes.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(bytes: &[u8]) -> Vec<u8> {
        let f = FileText::new(bytes);
        let out: Vec<OutLine<'_>> = f
            .lines
            .iter()
            .map(|l| OutLine {
                text: Cow::Borrowed(l.text),
                eol: Some(l.eol),
            })
            .collect();
        render(&out, f.dominant, f.final_newline(), f.bom)
    }

    #[test]
    fn roundtrips_every_ending_style() {
        for bytes in [
            &b""[..],
            b"\n",
            b"a",
            b"a\nb\n",
            b"a\r\nb\r\n",
            b"a\r\nb\nc",
            b"\xEF\xBB\xBFx\r\n",
            b"a\r",
            b"\n\n\n",
        ] {
            assert_eq!(roundtrip(bytes), bytes, "{bytes:?}");
        }
    }

    #[test]
    fn dominant_ending_and_final_newline() {
        let f = FileText::new(b"a\r\nb\r\nc\n");
        assert_eq!(f.dominant, Eol::CrLf);
        assert!(f.final_newline());
        let f = FileText::new(b"a\nb");
        assert_eq!(f.dominant, Eol::Lf);
        assert!(!f.final_newline());
        assert_eq!(f.lines.len(), 2);
        assert!(!FileText::new(b"").final_newline());
    }
}
