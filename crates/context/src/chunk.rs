//! Splits a file into chunks that match how people think about code: one function, one
//! class, one impl block. A query about `load_config` should surface that function, not a
//! 2 000-line file in which it is one line. Supported grammars: Rust, Python, JavaScript,
//! TypeScript/TSX and Go; everything else (and anything that fails to parse) is cut into
//! fixed line windows.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};
use tree_sitter::{Language, Node, Parser};

/// A definition longer than this is split into its members (methods of a class or impl).
const MAX_CHUNK_LINES: u32 = 120;
/// Lines per window for unstructured text and for oversized leaves.
const WINDOW_LINES: u32 = 60;
/// Files above this size get line windows without a parse: they are almost always generated
/// (bindings, tables), and in a typical dependency tree they hold ~40 % of the code bytes, so
/// parsing them would dominate indexing time for no useful symbols.
const MAX_PARSE_BYTES: usize = 256 * 1024;
/// Consecutive unnamed pieces (imports, statements) are merged up to this many lines.
const MERGE_LINES: u32 = 40;

/// One piece of a file, by line range (1-based, inclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub start_line: u32,
    pub end_line: u32,
    /// The syntax node kind (`function_item`, `class_definition`…) or `lines`.
    pub kind: String,
    /// The symbol name when the chunk is a definition (`impl Config`, `load`).
    pub name: Option<String>,
}

/// The grammar for a path, by extension, with a name to key the per-thread parser cache.
fn language_for(path: &str) -> Option<(&'static str, Language)> {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    let (name, lang) = match ext.as_str() {
        "rs" => ("rust", tree_sitter_rust::LANGUAGE),
        "py" | "pyi" => ("python", tree_sitter_python::LANGUAGE),
        "js" | "jsx" | "mjs" | "cjs" => ("javascript", tree_sitter_javascript::LANGUAGE),
        "ts" | "mts" | "cts" => ("typescript", tree_sitter_typescript::LANGUAGE_TYPESCRIPT),
        "tsx" => ("tsx", tree_sitter_typescript::LANGUAGE_TSX),
        "go" => ("go", tree_sitter_go::LANGUAGE),
        _ => return None,
    };
    Some((name, lang.into()))
}

/// Chunks `text` (the content of `path`): symbol-aware when a grammar applies, line windows
/// otherwise. Chunks are in file order and cover every non-blank region.
pub fn chunk_file(path: &str, text: &str) -> Vec<Chunk> {
    let total = line_count(text);
    if total == 0 {
        return Vec::new();
    }
    let symbolic = if text.len() > MAX_PARSE_BYTES {
        None
    } else {
        language_for(path).and_then(|(name, lang)| chunk_with_grammar(name, &lang, text))
    };
    match symbolic {
        Some(chunks) if !chunks.is_empty() => chunks,
        _ => windows(1, total, "lines", None),
    }
}

/// Number of lines, counting a last line without a newline.
pub fn line_count(text: &str) -> u32 {
    let n = text.lines().count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Fixed windows over `start..=end`.
fn windows(start: u32, end: u32, kind: &str, name: Option<&str>) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut s = start;
    while s <= end {
        let e = (s + WINDOW_LINES - 1).min(end);
        out.push(Chunk {
            start_line: s,
            end_line: e,
            kind: kind.into(),
            name: name.map(Into::into),
        });
        s = e + 1;
    }
    out
}

thread_local! {
    /// One parser per language per thread: creating and configuring a parser per file is
    /// measurable when indexing thousands of files.
    static PARSERS: RefCell<Vec<(&'static str, Parser)>> = const { RefCell::new(Vec::new()) };
}

/// Parses and chunks; `None` when the parser cannot be set up or gives no tree.
fn chunk_with_grammar(name: &'static str, lang: &Language, text: &str) -> Option<Vec<Chunk>> {
    let tree = PARSERS.with(|cell| {
        let mut parsers = cell.borrow_mut();
        let at = match parsers.iter().position(|(n, _)| *n == name) {
            Some(at) => at,
            None => {
                let mut parser = Parser::new();
                parser.set_language(lang).ok()?;
                parsers.push((name, parser));
                parsers.len() - 1
            }
        };
        parsers[at].1.parse(text, None)
    })?;
    let mut pieces = Vec::new();
    collect(tree.root_node(), text, &mut pieces);
    Some(merge_unnamed(pieces))
}

/// Walks the children of a container node, turning each top-level item into a chunk and
/// splitting oversized containers into their members. Comments and attributes directly above
/// an item are attached to it, so its documentation is searched with it.
fn collect(container: Node<'_>, src: &str, out: &mut Vec<Chunk>) {
    let mut cursor = container.walk();
    let mut pending_start: Option<u32> = None;
    for child in container.named_children(&mut cursor) {
        let start = line_of(child.start_position().row);
        let end = line_of(child.end_position().row);
        if is_leading_trivia(child.kind()) {
            pending_start.get_or_insert(start);
            continue;
        }
        let start = pending_start.take().unwrap_or(start);
        let name = symbol_name(child, src);
        if end - start + 1 > MAX_CHUNK_LINES
            && let Some(body) = member_list(child)
        {
            let body_start = line_of(body.start_position().row);
            out.push(Chunk {
                start_line: start,
                end_line: body_start,
                kind: child.kind().into(),
                name: name.clone(),
            });
            let before = out.len();
            collect(body, src, out);
            if out.len() == before {
                out.extend(windows(body_start + 1, end, child.kind(), name.as_deref()));
            }
        } else if end - start + 1 > MAX_CHUNK_LINES {
            out.extend(windows(start, end, child.kind(), name.as_deref()));
        } else {
            out.push(Chunk {
                start_line: start,
                end_line: end,
                kind: child.kind().into(),
                name,
            });
        }
    }
    if let Some(start) = pending_start {
        let end = line_of(container.end_position().row);
        out.push(Chunk {
            start_line: start,
            end_line: end.max(start),
            kind: "comment".into(),
            name: None,
        });
    }
}

/// 0-based tree-sitter row to 1-based line.
fn line_of(row: usize) -> u32 {
    u32::try_from(row).unwrap_or(u32::MAX - 1) + 1
}

/// Node kinds that belong to the next item (doc comments, attributes, decorators).
fn is_leading_trivia(kind: &str) -> bool {
    matches!(
        kind,
        "line_comment"
            | "block_comment"
            | "comment"
            | "attribute_item"
            | "inner_attribute_item"
            | "decorator"
    )
}

/// The node holding the members of a container (impl/trait/mod body, class body, export).
fn member_list(node: Node<'_>) -> Option<Node<'_>> {
    match node.kind() {
        "export_statement" | "decorated_definition" => {
            let inner = node
                .child_by_field_name("declaration")
                .or_else(|| node.child_by_field_name("definition"))?;
            member_list(inner)
        }
        _ => node
            .child_by_field_name("body")
            .filter(|b| b.named_child_count() > 0),
    }
}

/// A readable symbol name: `impl Trait for Type`, a function or class name, the first
/// declarator of `const x = …`.
fn symbol_name(node: Node<'_>, src: &str) -> Option<String> {
    let text = |n: Node<'_>| n.utf8_text(src.as_bytes()).ok().map(str::to_owned);
    let kind = node.kind();
    if kind.starts_with("import")
        || kind.contains("use_declaration")
        || kind.ends_with("_statement") && kind != "export_statement"
    {
        return None;
    }
    match kind {
        "impl_item" => {
            let ty = node.child_by_field_name("type").and_then(text)?;
            match node.child_by_field_name("trait").and_then(text) {
                Some(tr) => Some(format!("impl {tr} for {ty}")),
                None => Some(format!("impl {ty}")),
            }
        }
        "export_statement" | "decorated_definition" => node
            .child_by_field_name("declaration")
            .or_else(|| node.child_by_field_name("definition"))
            .and_then(|d| symbol_name(d, src)),
        _ => {
            if let Some(n) = node.child_by_field_name("name") {
                return text(n);
            }
            let mut cursor = node.walk();
            let first = node.named_children(&mut cursor).find(|c| {
                matches!(
                    c.kind(),
                    "variable_declarator" | "type_spec" | "const_spec" | "var_spec"
                )
            })?;
            first.child_by_field_name("name").and_then(text)
        }
    }
}

/// Merges runs of consecutive unnamed chunks (imports, statements, stray comments) so the
/// index holds a few meaningful pieces rather than one chunk per `use` line.
fn merge_unnamed(pieces: Vec<Chunk>) -> Vec<Chunk> {
    let mut out: Vec<Chunk> = Vec::with_capacity(pieces.len());
    for piece in pieces {
        if let Some(last) = out.last_mut()
            && last.name.is_none()
            && piece.name.is_none()
            && piece.end_line.saturating_sub(last.start_line) < MERGE_LINES
        {
            last.end_line = last.end_line.max(piece.end_line);
            last.kind = "items".into();
            continue;
        }
        out.push(piece);
    }
    out
}

/// The text of lines `start..=end` (1-based, inclusive) of `text`.
pub fn slice_lines(text: &str, start: u32, end: u32) -> String {
    let skip = usize::try_from(start.saturating_sub(1)).unwrap_or(usize::MAX);
    let take = usize::try_from(end.saturating_sub(start) + 1).unwrap_or(usize::MAX);
    let mut out = String::new();
    for line in text.lines().skip(skip).take(take) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(chunks: &[Chunk]) -> Vec<(String, String)> {
        chunks
            .iter()
            .filter_map(|c| Some((c.kind.clone(), c.name.clone()?)))
            .collect()
    }

    #[test]
    fn rust_items_become_chunks_with_their_doc_comments() {
        let src = "use std::fs;\n\n/// Loads it.\n#[inline]\npub fn load(p: &str) -> String {\n    fs::read_to_string(p).unwrap()\n}\n\nstruct Config { a: u32 }\n\nimpl Config {\n    fn new() -> Self { Config { a: 1 } }\n}\n";
        let chunks = chunk_file("src/lib.rs", src);
        assert_eq!(
            named(&chunks),
            [
                ("function_item".into(), "load".into()),
                ("struct_item".into(), "Config".into()),
                ("impl_item".into(), "impl Config".into()),
            ]
        );
        let load = &chunks[1];
        assert_eq!(
            (load.start_line, load.end_line),
            (3, 7),
            "doc comment and attribute attached"
        );
    }

    #[test]
    fn python_classes_and_functions() {
        let src = "import os\n\nclass Loader:\n    def load(self):\n        return 1\n\n@cache\ndef parse_config(path):\n    return path\n";
        let chunks = chunk_file("pkg/loader.py", src);
        assert_eq!(
            named(&chunks),
            [
                ("class_definition".into(), "Loader".into()),
                ("decorated_definition".into(), "parse_config".into()),
            ]
        );
    }

    #[test]
    fn javascript_typescript_and_go() {
        let js = "import x from 'y';\nexport function handleRequest(req) {\n  return req;\n}\nclass Server {\n  start() {}\n}\nconst makeApp = () => 1;\n";
        assert_eq!(
            named(&chunk_file("a.js", js)),
            [
                ("export_statement".into(), "handleRequest".into()),
                ("class_declaration".into(), "Server".into()),
                ("lexical_declaration".into(), "makeApp".into()),
            ]
        );
        let ts = "interface Opts { a: number }\nexport class Client {\n  get(): number { return 1; }\n}\n";
        assert_eq!(
            named(&chunk_file("a.ts", ts)),
            [
                ("interface_declaration".into(), "Opts".into()),
                ("export_statement".into(), "Client".into()),
            ]
        );
        let go = "package main\n\ntype Server struct{}\n\nfunc (s *Server) Start() error {\n\treturn nil\n}\n\nfunc main() {}\n";
        assert_eq!(
            named(&chunk_file("main.go", go)),
            [
                ("type_declaration".into(), "Server".into()),
                ("method_declaration".into(), "Start".into()),
                ("function_declaration".into(), "main".into()),
            ]
        );
    }

    #[test]
    fn oversized_containers_split_into_members() {
        let mut src = String::from("impl Big {\n");
        for i in 0..40 {
            src.push_str(&format!("    fn f{i}() {{\n        let x = {i};\n    }}\n"));
        }
        src.push_str("}\n");
        let chunks = chunk_file("big.rs", &src);
        assert!(chunks.len() > 10, "{chunks:?}");
        assert_eq!(chunks[0].name.as_deref(), Some("impl Big"));
        assert!(chunks.iter().any(|c| c.name.as_deref() == Some("f39")));
    }

    #[test]
    fn huge_files_are_windowed_without_a_parse() {
        let src = "fn f() {}\n".repeat(MAX_PARSE_BYTES / 10 + 1);
        let chunks = chunk_file("bindings.rs", &src);
        assert!(
            chunks
                .iter()
                .all(|c| c.kind == "lines" && c.end_line - c.start_line < WINDOW_LINES)
        );
    }

    #[test]
    fn other_files_use_line_windows() {
        let text = "line\n".repeat(130);
        let chunks = chunk_file("notes.txt", &text);
        let ranges: Vec<_> = chunks.iter().map(|c| (c.start_line, c.end_line)).collect();
        assert_eq!(ranges, [(1, 60), (61, 120), (121, 130)]);
        assert_eq!(slice_lines("a\nb\nc\n", 2, 3), "b\nc\n");
    }
}
