//! Compaction: shortening a candidate while keeping what a coder needs from it.
//!
//! Cutting to the first N characters keeps imports and loses the function the task is
//! about. Instead keep the structure (signature and heading lines) and the lines around
//! query hits, and replace each elided run by one marker line saying how much was left out.

use std::collections::HashSet;

use crate::tokenize;

/// Lines kept on each side of a line that mentions a query term.
const HIT_CONTEXT: usize = 2;

/// Line prefixes (after indentation) that introduce a definition or a section.
const SIGNATURE_PREFIXES: &[&str] = &[
    "fn ",
    "pub ",
    "pub(",
    "async fn ",
    "impl ",
    "impl<",
    "struct ",
    "enum ",
    "trait ",
    "mod ",
    "type ",
    "const ",
    "static ",
    "macro_rules!",
    "def ",
    "async def ",
    "class ",
    "func ",
    "function ",
    "async function ",
    "export ",
    "interface ",
];

/// Whether a line looks like a definition or a heading.
pub fn is_signature(line: &str) -> bool {
    let t = line.trim_start();
    let heading = line.starts_with('#') && line.trim_start_matches('#').starts_with(' ');
    heading || SIGNATURE_PREFIXES.iter().any(|p| t.starts_with(p))
}

/// Compacts `text`: keeps the first line, signature lines and the lines within two of a
/// line mentioning one of `query_terms`; each elided run becomes `… (N lines omitted)`
/// with the indentation of the line before it. Returns the text unchanged when nothing
/// would be elided.
pub fn compact(text: &str, query_terms: &HashSet<String>) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= 3 {
        return text.to_owned();
    }
    let mut keep = vec![false; lines.len()];
    keep[0] = true;
    for (i, line) in lines.iter().enumerate() {
        if is_signature(line) {
            keep[i] = true;
        }
        if mentions(line, query_terms) {
            let lo = i.saturating_sub(HIT_CONTEXT);
            let hi = (i + HIT_CONTEXT).min(lines.len() - 1);
            keep[lo..=hi].iter_mut().for_each(|k| *k = true);
        }
    }
    if keep.iter().all(|&k| k) {
        return text.to_owned();
    }
    render(&lines, &keep)
}

/// Whether a line contains one of the terms.
fn mentions(line: &str, terms: &HashSet<String>) -> bool {
    let mut hit = false;
    tokenize::for_each_term(line, |t| hit |= terms.contains(t));
    hit
}

/// Joins kept lines, replacing each elided run with a marker.
fn render(lines: &[&str], keep: &[bool]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        if keep[i] {
            out.push_str(lines[i]);
            out.push('\n');
            i += 1;
            continue;
        }
        let start = i;
        while i < lines.len() && !keep[i] {
            i += 1;
        }
        let indent: String = lines[start].chars().take_while(|c| c.is_whitespace()).collect();
        out.push_str(&format!("{indent}… ({} lines omitted)\n", i - start));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(words: &[&str]) -> HashSet<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn keeps_signatures_and_lines_around_hits() {
        let mut src = String::from("use std::fs;\n\npub fn unrelated() {\n");
        for i in 0..20 {
            src.push_str(&format!("    let a{i} = {i};\n"));
        }
        src.push_str("}\n\nfn load_config(path: &str) {\n    let x = 1;\n    let y = 2;\n    retry_limit(3);\n    let z = 4;\n    let w = 5;\n    let v = 6;\n}\n");
        let out = compact(&src, &set(&["retry"]));
        assert!(out.starts_with("use std::fs;\n"));
        assert!(out.contains("pub fn unrelated() {\n"), "signature kept: {out}");
        assert!(out.contains("fn load_config(path: &str) {\n"));
        assert!(
            out.contains("    let y = 2;\n    retry_limit(3);\n    let z = 4;\n    let w = 5;\n"),
            "{out}"
        );
        assert!(!out.contains("let a5"), "{out}");
        assert!(out.contains("… (") && out.contains("lines omitted)"));
        assert!(out.len() < src.len());
        assert!(!out.contains("let v = 6"), "beyond the two-line window: {out}");
    }

    #[test]
    fn short_or_fully_relevant_text_is_unchanged() {
        assert_eq!(compact("a\nb\n", &set(&[])), "a\nb\n");
        let all = "fn a() {}\nfn b() {}\nfn c() {}\nfn d() {}\n";
        assert_eq!(compact(all, &set(&[])), all);
    }
}
