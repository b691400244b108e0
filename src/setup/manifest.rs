//! The App manifest: `app-manifest.yml` read into JSON, with the deployment's
//! URLs filled in.
//!
//! The file is ours and plain, so it is read by a small reader of the YAML
//! it uses (block mappings, block lists of scalars, plain or quoted scalars,
//! comments) instead of a YAML dependency; anything else (flow collections,
//! multi-line scalars, anchors) is refused with the line number.

use serde_json::{Map, Value};

/// The manifest shipped with the binary.
pub const BUILT_IN: &str = include_str!("../../app-manifest.yml");

/// A line the reader does not accept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("app manifest line {line}: {message}")]
pub struct ManifestError {
    pub line: usize,
    pub message: String,
}

/// The deployment-specific parts of the manifest.
#[derive(Debug, Clone)]
pub struct ManifestUrls {
    /// Where GitHub delivers webhooks (`POST /webhook` of this deployment).
    pub webhook_url: String,
    /// The App's homepage.
    pub homepage_url: String,
    /// Where GitHub sends the browser back with `?code=&state=`.
    pub redirect_url: String,
}

/// Reads `yaml` and fills in `urls` (and `name` when given).
pub fn build(yaml: &str, urls: &ManifestUrls, name: Option<&str>) -> Result<Value, ManifestError> {
    let mut manifest = parse(yaml)?;
    let Value::Object(map) = &mut manifest else {
        return Err(ManifestError {
            line: 1,
            message: "the manifest must be a mapping".into(),
        });
    };
    map.insert("url".into(), Value::from(urls.homepage_url.as_str()));
    map.insert("redirect_url".into(), Value::from(urls.redirect_url.as_str()));
    let hook = map
        .entry("hook_attributes")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(hook) = hook {
        hook.insert("url".into(), Value::from(urls.webhook_url.as_str()));
        hook.entry("active").or_insert(Value::Bool(true));
    }
    if let Some(name) = name {
        map.insert("name".into(), Value::from(name));
    }
    Ok(manifest)
}

struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

/// Parses the YAML subset described in the module documentation.
pub fn parse(yaml: &str) -> Result<Value, ManifestError> {
    let mut lines = Vec::new();
    for (index, raw) in yaml.lines().enumerate() {
        let number = index + 1;
        if raw.contains('\t') {
            return Err(error(number, "tabs are not allowed for indentation"));
        }
        let text = strip_comment(raw).trim_end();
        if text.trim().is_empty() || text.trim() == "---" {
            continue;
        }
        let indent = text.len() - text.trim_start().len();
        lines.push(Line {
            number,
            indent,
            text: text.trim_start(),
        });
    }
    let mut position = 0;
    let value = block(&lines, &mut position, 0)?;
    match lines.get(position) {
        Some(line) => Err(error(line.number, "unexpected indentation")),
        None => Ok(value),
    }
}

fn block(lines: &[Line<'_>], position: &mut usize, indent: usize) -> Result<Value, ManifestError> {
    let Some(first) = lines.get(*position) else {
        return Ok(Value::Null);
    };
    if first.text.starts_with("- ") || first.text == "-" {
        sequence(lines, position, indent)
    } else {
        mapping(lines, position, indent)
    }
}

fn sequence(lines: &[Line<'_>], position: &mut usize, indent: usize) -> Result<Value, ManifestError> {
    let mut items = Vec::new();
    while let Some(line) = lines.get(*position) {
        if line.indent < indent {
            break;
        }
        if line.indent > indent {
            return Err(error(line.number, "unexpected indentation"));
        }
        let Some(item) = line.text.strip_prefix("- ") else {
            return Err(error(line.number, "expected a list item"));
        };
        if item.contains(": ") || item.ends_with(':') {
            return Err(error(line.number, "lists of mappings are not supported"));
        }
        items.push(scalar(item.trim(), line.number)?);
        *position += 1;
    }
    Ok(Value::Array(items))
}

fn mapping(lines: &[Line<'_>], position: &mut usize, indent: usize) -> Result<Value, ManifestError> {
    let mut map = Map::new();
    while let Some(line) = lines.get(*position) {
        if line.indent < indent {
            break;
        }
        if line.indent > indent {
            return Err(error(line.number, "unexpected indentation"));
        }
        let (key, rest) = match line.text.split_once(':') {
            Some((key, rest)) if rest.is_empty() || rest.starts_with(' ') => (key.trim(), rest.trim()),
            _ => return Err(error(line.number, "expected `key: value`")),
        };
        if key.is_empty() || key.starts_with(['"', '\'', '-', '[', '{']) {
            return Err(error(line.number, "unsupported key"));
        }
        *position += 1;
        let value = if rest.is_empty() {
            match lines.get(*position) {
                // A nested list may sit at the key's own indentation.
                Some(next)
                    if next.indent > indent || (next.indent == indent && next.text.starts_with("- ")) =>
                {
                    block(lines, position, next.indent)?
                }
                _ => Value::Null,
            }
        } else {
            scalar(rest, line.number)?
        };
        if map.insert(key.to_string(), value).is_some() {
            return Err(error(line.number, &format!("duplicate key `{key}`")));
        }
    }
    Ok(Value::Object(map))
}

fn scalar(text: &str, line: usize) -> Result<Value, ManifestError> {
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return Ok(Value::from(inner.replace("\\\"", "\"").replace("\\\\", "\\")));
    }
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        return Ok(Value::from(inner.replace("''", "'")));
    }
    if text.starts_with(['[', '{', '&', '*', '!', '|', '>', '"', '\'']) {
        return Err(error(
            line,
            "only plain or quoted single-line scalars are supported",
        ));
    }
    Ok(match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" | "~" => Value::Null,
        _ => match text.parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::from(text),
        },
    })
}

/// Drops a `#` comment that starts a line or follows whitespace, outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => return &line[..i],
            _ => {}
        }
        previous = c;
    }
    line
}

fn error(line: usize, message: &str) -> ManifestError {
    ManifestError {
        line,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn the_built_in_manifest_reads_as_github_expects() {
        let urls = ManifestUrls {
            webhook_url: "https://orch.example.com/webhook".into(),
            homepage_url: "https://orch.example.com".into(),
            redirect_url: "http://127.0.0.1:3333/callback".into(),
        };
        let manifest = build(BUILT_IN, &urls, None).unwrap();
        assert_eq!(manifest["name"], "orchestrator");
        assert_eq!(manifest["url"], "https://orch.example.com");
        assert_eq!(manifest["redirect_url"], "http://127.0.0.1:3333/callback");
        assert_eq!(
            manifest["hook_attributes"],
            json!({"url": "https://orch.example.com/webhook", "active": true})
        );
        assert_eq!(manifest["public"], false);
        assert_eq!(
            manifest["default_permissions"],
            json!({"contents": "write", "pull_requests": "write", "issues": "write", "checks": "write", "metadata": "read"})
        );
        assert_eq!(
            manifest["default_events"],
            json!(["issues", "issue_comment", "check_run"])
        );
        assert_eq!(
            manifest["description"],
            "Turns labelled issues into reviewed pull requests."
        );
        let renamed = build(BUILT_IN, &urls, Some("orchestrator-acme")).unwrap();
        assert_eq!(renamed["name"], "orchestrator-acme");
    }

    #[test]
    fn scalars_comments_and_nesting() {
        let yaml = "a: 1\nb: 'it''s' # note\nc: \"x # not a comment\"\nd:\n  e: true\n  f:\n  - x\n  - y\ng: ~\nurl: https://h/p#frag\n";
        assert_eq!(
            parse(yaml).unwrap(),
            json!({"a": 1, "b": "it's", "c": "x # not a comment", "d": {"e": true, "f": ["x", "y"]}, "g": null, "url": "https://h/p#frag"})
        );
    }

    #[test]
    fn what_it_does_not_read_is_refused_with_the_line() {
        assert_eq!(parse("a: [1, 2]\n").unwrap_err().line, 1);
        assert_eq!(parse("a: 1\n   b: 2\n").unwrap_err().line, 2);
        assert_eq!(parse("a: |\n  text\n").unwrap_err().line, 1);
        assert_eq!(parse("a: 1\na: 2\n").unwrap_err().line, 2);
        assert_eq!(parse("l:\n  - k: v\n").unwrap_err().line, 2);
        assert!(parse("a:\tb\n").is_err());
    }
}
