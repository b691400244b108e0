//! Helpers shared by the integration tests: temporary trees, the real diff tools, a
//! reader for their (well-formed) output, a damage generator, and an oracle that says
//! from the damaged diff alone what the engine must do.
//!
//! The oracle is deliberately written from the rules (DESIGN §8), not from the engine's
//! code: a hunk's intent is unique when its old side occurs exactly once, and so on.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use orchestrator_diff::{ApplyError, ApplyOptions, ApplyReport};

/// Files of one scenario: repository path, old content, new content (`None`: absent).
pub type Scenario = Vec<(String, Option<Vec<u8>>, Option<Vec<u8>>)>;

/// How a damaged scenario ended, when it ended as the oracle required.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Expected to apply, and gave exactly the new files.
    Applied,
    /// Expected to refuse, and refused with the tree unchanged.
    Refused,
    /// Numbers misleading and content not unique (DESIGN §8 trusts the stated line).
    EitherApplied { correct: bool },
    /// A damage the engine may or may not see through, applied correctly.
    NotWrongApplied,
    /// The same, refused.
    NotWrongRefused,
    /// Same, refused.
    EitherRefused,
}

/// A scenario with its tool diff, ready to be damaged any number of times.
pub struct Diffed {
    /// The tool's output for all files.
    pub text: String,
    /// The files that differ.
    pub files: Scenario,
    /// Whether every file keeps its final-newline state (so markers may be stripped).
    pub final_newline_kept: bool,
}

/// Diffs every file of `scenario` with `tool`. `None`: nothing differs.
pub fn diff_scenario(scenario: &Scenario, tool: Tool, context: usize) -> Option<Diffed> {
    let mut text = String::new();
    let mut files = Vec::new();
    let mut final_newline_kept = true;
    for (path, old, new) in scenario {
        let diff = tool_diff(tool, context, path, old.as_deref(), new.as_deref());
        if diff.is_empty() {
            continue;
        }
        // Without markers the engine keeps the old file's state; only a non-empty old
        // file has one.
        let ends = |b: &Option<Vec<u8>>| b.as_ref().map(|b| (b.is_empty(), b.ends_with(b"\n")));
        final_newline_kept &= matches!(
            (ends(old), ends(new)),
            (Some((false, x)), Some((false, y))) if x == y
        );
        text.push_str(&diff);
        files.push((path.clone(), old.clone(), new.clone()));
    }
    (!text.is_empty()).then_some(Diffed {
        text,
        files,
        final_newline_kept,
    })
}

/// Diffs `scenario` with `tool`, damages it, applies it, and checks the outcome against
/// the oracle. `Err` describes a violation. `None`: nothing to diff.
pub fn run_scenario(
    scenario: &Scenario,
    tool: Tool,
    context: usize,
    damage_of: impl FnOnce(&mut Rng, bool) -> Damage,
    seed: u64,
) -> Result<Option<Verdict>, String> {
    match diff_scenario(scenario, tool, context) {
        Some(diffed) => run_damaged(&diffed, damage_of, seed).map(Some),
        None => Ok(None),
    }
}

/// Damages a diffed scenario, applies it, and checks the outcome against the oracle.
pub fn run_damaged(
    diffed: &Diffed,
    damage_of: impl FnOnce(&mut Rng, bool) -> Damage,
    seed: u64,
) -> Result<Verdict, String> {
    let (text, kept, final_newline_kept) = (&diffed.text, &diffed.files, diffed.final_newline_kept);
    let mut files = read_diff(text);
    if files.len() != kept.len() {
        return Err(format!("could not read the tool's diff:\n{text}"));
    }
    let mut rng = Rng::new(seed);
    let d = damage_of(&mut rng, final_newline_kept);
    let answer = damage(&mut files, d, &mut rng);
    let olds: Vec<Option<Vec<u8>>> = kept.iter().map(|(_, o, _)| o.clone()).collect();
    let want = expect(&files, &olds, d);

    let dir = TempDir::new("scenario");
    for (path, old, _) in kept {
        if let Some(bytes) = old {
            write_file(dir.path(), path, bytes);
        }
    }
    let before = snapshot(dir.path());
    let result = apply_text(&answer, dir.path());
    let after = snapshot(dir.path());
    let correct = kept
        .iter()
        .all(|(path, _, new)| fs::read(dir.path().join(path)).ok().as_ref() == new.as_ref());
    let describe =
        |what: &str| format!("{what}\ndamage {d:?}, expected {want:?}\n--- answer ---\n{answer}--- end ---");
    // Whatever happens, only the scenario's files (and their directories) may exist.
    for path in after.keys() {
        let known = kept
            .iter()
            .any(|(p, _, _)| p == path || p.starts_with(&format!("{path}/")));
        if !known {
            return Err(describe(&format!("unexpected file {path}")));
        }
    }
    match (result, want) {
        (Ok(_), Expect::Apply) if correct => Ok(Verdict::Applied),
        (Ok(report), Expect::Apply) => {
            let diffs: Vec<String> = kept
                .iter()
                .filter(|(path, _, new)| fs::read(dir.path().join(path)).ok().as_ref() != new.as_ref())
                .map(|(path, _, new)| {
                    let got = fs::read(dir.path().join(path)).ok();
                    format!(
                        "{path}: got {:?}\nwant {:?}",
                        got.as_deref().map(String::from_utf8_lossy),
                        new.as_deref().map(String::from_utf8_lossy)
                    )
                })
                .collect();
            Err(describe(&format!(
                "applied WRONGLY ({report}):\n{}",
                diffs.join("\n")
            )))
        }
        (Ok(report), Expect::Refuse) => Err(describe(&format!("applied ({report}) but must refuse"))),
        (Ok(_), Expect::NotWrong) if correct => Ok(Verdict::NotWrongApplied),
        (Ok(report), Expect::NotWrong) => Err(describe(&format!("applied WRONGLY ({report})"))),
        (Ok(report), Expect::Either) => {
            if !correct && std::env::var_os("DIFF_SHOW_WRONG").is_some() {
                eprintln!("{}\n{report}", describe("WRONG"));
            }
            Ok(Verdict::EitherApplied { correct })
        }
        (Err(e @ ApplyError::Io { .. }), _) => Err(describe(&format!("I/O error: {e}"))),
        (Err(e), Expect::Apply) => Err(describe(&format!("refused ({e}) but must apply"))),
        (Err(_), _) if after != before => Err(describe("a refusal changed the tree")),
        (Err(_), Expect::Refuse) => Ok(Verdict::Refused),
        (Err(_), Expect::Either) => Ok(Verdict::EitherRefused),
        (Err(_), Expect::NotWrong) => Ok(Verdict::NotWrongRefused),
    }
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = scratch_base().join(format!("orch-diff-test-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// Where scratch trees go: a memory file system when there is one (the generated tests
/// create and delete thousands of small trees, which on a journaling disk costs more
/// than the engine itself), else the system's temporary directory.
fn scratch_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let probe = shm.join(format!("orch-diff-probe-{}", std::process::id()));
    if fs::create_dir_all(&probe).is_ok() {
        let _ = fs::remove_dir(&probe);
        return shm.to_path_buf();
    }
    std::env::temp_dir()
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Writes `bytes` at `root/rel`, creating directories.
pub fn write_file(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, bytes).unwrap();
}

/// What a tree holds, for byte-for-byte comparisons: regular files (bytes and mode bits),
/// symbolic links (target) and directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    File(Vec<u8>, u32),
    Link(PathBuf),
    Dir,
}

pub fn snapshot(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            out.insert(rel, Entry::Link(fs::read_link(&path).unwrap()));
        } else if meta.is_dir() {
            out.insert(rel, Entry::Dir);
            walk(root, &path, out);
        } else {
            out.insert(rel, Entry::File(fs::read(&path).unwrap(), mode_bits(&meta)));
        }
    }
}

#[cfg(unix)]
pub fn mode_bits(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o777
}

#[cfg(not(unix))]
pub fn mode_bits(_: &fs::Metadata) -> u32 {
    0
}

/// Parses and applies `patch` under `root` with default options.
pub fn apply_text(patch: &str, root: &Path) -> Result<ApplyReport, ApplyError> {
    let parsed = orchestrator_diff::parse(patch)?;
    orchestrator_diff::apply(&parsed, root, &ApplyOptions::default())
}

/// Which real tool makes the diff.
#[derive(Clone, Copy, Debug)]
pub enum Tool {
    Git,
    DiffU,
}

/// Diffs `old` against `new` (either may be absent: creation, deletion) with a real tool,
/// labelled as `path` with git's `a/` and `b/` prefixes. Empty string: no difference.
pub fn tool_diff(tool: Tool, context: usize, path: &str, old: Option<&[u8]>, new: Option<&[u8]>) -> String {
    let dir = TempDir::new("tool");
    let side = |name: &str, bytes: Option<&[u8]>| -> String {
        match bytes {
            Some(b) => {
                fs::write(dir.path().join(name), b).unwrap();
                name.to_owned()
            }
            None => "/dev/null".to_owned(),
        }
    };
    let (o, n) = (side("old", old), side("new", new));
    let output = match tool {
        Tool::Git => Command::new("git")
            .current_dir(dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("HOME", dir.path())
            .args(["-c", "core.autocrlf=false", "-c", "core.quotepath=false"])
            .args(["diff", "--no-index", "--no-color", "--no-ext-diff", "--text"])
            .arg(format!("-U{context}"))
            .args([&o, &n])
            .output()
            .expect("git is installed"),
        Tool::DiffU => Command::new("diff")
            .current_dir(dir.path())
            .args(["-a", "-U", &context.to_string()])
            .args(["--label", &label("a", path, old.is_some())])
            .args(["--label", &label("b", path, new.is_some())])
            .args([&o, &n])
            .output()
            .expect("diff is installed"),
    };
    assert!(
        output.status.code().is_some_and(|c| c <= 1),
        "{tool:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("test files are UTF-8");
    match tool {
        Tool::Git => relabel_git(&text, path),
        Tool::DiffU => text,
    }
}

fn label(prefix: &str, path: &str, exists: bool) -> String {
    if exists {
        format!("{prefix}/{path}")
    } else {
        "/dev/null".to_owned()
    }
}

/// `git diff --no-index` names the temporary files; put the repository path instead.
fn relabel_git(text: &str, path: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_header = true;
    for line in text.split_inclusive('\n') {
        if line.starts_with("diff --git ") {
            in_header = true;
            out.push_str(&format!("diff --git a/{path} b/{path}\n"));
            continue;
        }
        if line.starts_with("@@") {
            in_header = false;
        }
        if in_header {
            let line = line
                .replace("a/old", &format!("a/{path}"))
                .replace("b/new", &format!("b/{path}"))
                .replace("a/new", &format!("a/{path}"))
                .replace("b/old", &format!("b/{path}"));
            out.push_str(&line);
        } else {
            out.push_str(line);
        }
    }
    out
}

/// One file of a tool's diff: header lines, then hunks.
#[derive(Clone, Debug)]
pub struct DiffFile {
    pub header: Vec<String>,
    pub hunks: Vec<DiffHunk>,
}

/// One hunk: the numbers and the body lines with their prefixes.
#[derive(Clone, Debug)]
pub struct DiffHunk {
    /// `None` renders a bare `@@ @@`.
    pub numbers: Option<(usize, usize, usize, usize)>,
    pub body: Vec<String>,
    /// Whether the numbers are the tool's (so counts delimit the body exactly).
    pub counts_exact: bool,
    /// Lines of the hunk whose whitespace was damaged.
    pub ws_damaged: bool,
    /// Indented context lines of the hunk lost their ` ` prefix.
    pub prefix_lost: bool,
}

impl DiffHunk {
    /// The old side the engine will look for (trailing empty lines are dropped when the
    /// counts cannot confirm them, as the crate docs say).
    pub fn old_side(&self) -> Vec<String> {
        let mut body: &[String] = &self.body;
        if !self.counts_exact {
            while body.last().is_some_and(String::is_empty) {
                body = &body[..body.len() - 1];
            }
        }
        body.iter()
            .filter(|l| !l.starts_with('+') && !l.starts_with('\\'))
            .map(|l| l.get(1..).unwrap_or("").to_owned())
            .collect()
    }

    pub fn old_missing_newline(&self) -> bool {
        let mut prev: Option<&str> = None;
        for l in &self.body {
            if l.starts_with('\\') && prev.is_some_and(|p| !p.starts_with('+')) {
                return true;
            }
            prev = Some(l);
        }
        false
    }

    pub fn new_missing_newline(&self) -> bool {
        let mut prev: Option<&str> = None;
        for l in &self.body {
            if l.starts_with('\\') && prev.is_some_and(|p| !p.starts_with('-')) {
                return true;
            }
            prev = Some(l);
        }
        false
    }
}

/// Reads well-formed tool output (counts are exact, so they delimit bodies).
pub fn read_diff(text: &str) -> Vec<DiffFile> {
    let mut files: Vec<DiffFile> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("diff --git ")
            || (line.starts_with("--- ")
                && files
                    .last()
                    .is_none_or(|f| !f.hunks.is_empty() || f.header.iter().any(|h| h.starts_with("--- "))))
        {
            files.push(DiffFile {
                header: vec![line.to_owned()],
                hunks: Vec::new(),
            });
            i += 1;
            continue;
        }
        if line.starts_with("@@") {
            let numbers = hunk_numbers(line);
            let (mut old, mut new) = (numbers.1, numbers.3);
            let mut body = Vec::new();
            i += 1;
            while i < lines.len() && (old > 0 || new > 0 || lines[i].starts_with('\\')) {
                let l = lines[i];
                match l.as_bytes().first() {
                    Some(b'-') => old -= 1,
                    Some(b'+') => new -= 1,
                    Some(b'\\') => {}
                    _ => {
                        old -= 1;
                        new -= 1;
                    }
                }
                body.push(l.to_owned());
                i += 1;
            }
            files.last_mut().unwrap().hunks.push(DiffHunk {
                numbers: Some(numbers),
                body,
                counts_exact: true,
                ws_damaged: false,
                prefix_lost: false,
            });
            continue;
        }
        files.last_mut().unwrap().header.push(line.to_owned());
        i += 1;
    }
    files
}

fn hunk_numbers(line: &str) -> (usize, usize, usize, usize) {
    let inner = line.trim_start_matches('@').split("@@").next().unwrap();
    let mut parts = inner.split_whitespace();
    let range = |s: &str| -> (usize, usize) {
        let s = &s[1..];
        match s.split_once(',') {
            Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
            None => (s.parse().unwrap(), 1),
        }
    };
    let (a, b) = range(parts.next().unwrap());
    let (c, d) = range(parts.next().unwrap());
    (a, b, c, d)
}

pub fn render(files: &[DiffFile]) -> String {
    let mut out = String::new();
    for f in files {
        for h in &f.header {
            out.push_str(h);
            out.push('\n');
        }
        for hunk in &f.hunks {
            match hunk.numbers {
                Some((a, b, c, d)) => out.push_str(&format!("@@ -{a},{b} +{c},{d} @@\n")),
                None => out.push_str("@@ @@\n"),
            }
            for l in &hunk.body {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// A small deterministic generator (xorshift), so damages are reproducible from a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The damages of issue 3, each applied to the tool's diff.
#[derive(Clone, Copy, Debug, Default)]
pub struct Damage {
    /// Hunk numbers moved by a constant: the file changed since the diff was made.
    pub shift_numbers: Option<i64>,
    /// Every hunk number replaced by a random one.
    pub random_numbers: bool,
    /// `@@ @@` headers.
    pub bare: bool,
    /// Counts wrong: too large on one side at least, or too small by the trailing context.
    pub wrong_counts: bool,
    /// Hunks of each file in reverse or shuffled order.
    pub shuffle: bool,
    /// Leading and trailing context dropped (numbers kept right).
    pub thin: bool,
    /// A constant indentation added to some hunks' lines.
    pub whitespace: bool,
    /// `a/` and `b/` prefixes removed.
    pub no_prefix: bool,
    /// CRLF line endings for the whole answer.
    pub crlf: bool,
    /// Prose and a markdown fence around the patch.
    pub fenced: bool,
    /// The space of blank context lines stripped.
    pub strip_blank_space: bool,
    /// `\ No newline at end of file` lines removed.
    pub strip_no_newline: bool,
    /// Indented context lines written without their ` ` prefix.
    pub lost_prefix: bool,
}

impl Damage {
    /// A random combination; `final_newline_kept` allows `strip_no_newline` (which loses
    /// information when the edit changes the final-newline state).
    pub fn random(rng: &mut Rng, final_newline_kept: bool) -> Damage {
        let mut d = Damage::default();
        match rng.below(5) {
            0 => {}
            1 => d.bare = true,
            2 => d.shift_numbers = Some(rng.below(21) as i64 - 10),
            3 => d.random_numbers = true,
            _ => d.whitespace = true,
        }
        d.wrong_counts = rng.chance(30);
        d.shuffle = rng.chance(30);
        d.thin = rng.chance(30) && !d.whitespace;
        d.no_prefix = rng.chance(30);
        d.crlf = rng.chance(20);
        d.fenced = rng.chance(30);
        d.strip_blank_space = rng.chance(30);
        d.strip_no_newline = final_newline_kept && rng.chance(30);
        d.lost_prefix = rng.chance(15);
        d
    }

    /// Every single damage on its own, for exhaustive runs on a corpus.
    pub fn each() -> Vec<(&'static str, Damage)> {
        let one = |f: fn(&mut Damage)| {
            let mut d = Damage::default();
            f(&mut d);
            d
        };
        vec![
            ("none", Damage::default()),
            ("shifted numbers", one(|d| d.shift_numbers = Some(7))),
            ("random numbers", one(|d| d.random_numbers = true)),
            ("bare headers", one(|d| d.bare = true)),
            ("wrong counts", one(|d| d.wrong_counts = true)),
            ("shuffled hunks", one(|d| d.shuffle = true)),
            ("thin context", one(|d| d.thin = true)),
            ("whitespace drift", one(|d| d.whitespace = true)),
            ("no a/ b/ prefixes", one(|d| d.no_prefix = true)),
            ("CRLF", one(|d| d.crlf = true)),
            ("fenced with prose", one(|d| d.fenced = true)),
            ("blank context without space", one(|d| d.strip_blank_space = true)),
            ("context lost its prefix", one(|d| d.lost_prefix = true)),
        ]
    }
}

/// Applies `damage` to `files` (structure first, then text); returns the answer text.
pub fn damage(files: &mut [DiffFile], d: Damage, rng: &mut Rng) -> String {
    for f in files.iter_mut() {
        for h in f.hunks.iter_mut() {
            if d.thin {
                thin(h, rng);
            }
            if d.whitespace && rng.chance(60) {
                indent_hunk(h, if rng.chance(50) { " " } else { "\t" });
            }
            if d.strip_blank_space {
                for l in h.body.iter_mut().filter(|l| l.as_str() == " ") {
                    l.clear();
                }
            }
            if d.strip_no_newline {
                h.body.retain(|l| !l.starts_with('\\'));
            }
            // Not on a re-indented hunk: the two could cancel out on the context lines
            // and leave only the added lines shifted, which is another intent.
            if d.lost_prefix && !h.ws_damaged && rng.chance(50) {
                for l in h.body.iter_mut() {
                    if l.starts_with(' ') && l[1..].starts_with([' ', '\t']) {
                        l.remove(0);
                        h.prefix_lost = true;
                    }
                }
            }
            if let Some((a, b, c, dd)) = h.numbers.as_mut() {
                if let Some(delta) = d.shift_numbers {
                    *a = shift(*a, delta);
                    *c = shift(*c, delta);
                }
                if d.random_numbers {
                    *a = 1 + rng.below(200);
                    *c = 1 + rng.below(200);
                }
                if d.wrong_counts {
                    let trailing = h.body.iter().rev().take_while(|l| l.starts_with(' ')).count();
                    // (A count of 0 would also change what the start number means.)
                    if trailing > 0 && *b > trailing && *dd > trailing && rng.chance(50) {
                        // Too small: the trailing context was not counted. The hunk then
                        // ends with context, which the engine takes and verifies.
                        *b -= trailing;
                        *dd -= trailing;
                    } else {
                        // Too large on at least one side: never met.
                        *b += 1 + rng.below(4);
                        *dd += rng.below(4);
                    }
                    h.counts_exact = false;
                }
            }
            if d.bare {
                h.numbers = None;
                h.counts_exact = false;
            }
        }
        if d.shuffle && f.hunks.len() > 1 {
            if rng.chance(50) {
                f.hunks.reverse();
            } else {
                for i in (1..f.hunks.len()).rev() {
                    let j = rng.below(i + 1);
                    f.hunks.swap(i, j);
                }
            }
        }
        if d.no_prefix {
            for h in f.header.iter_mut() {
                *h = strip_prefixes(h);
            }
        }
    }
    let mut text = render(files);
    if d.fenced {
        text = format!(
            "Sure, here is the change you asked for:\n\n```diff\n{text}```\n\nIt keeps the behaviour otherwise.\n- first point\n+ second point\n"
        );
    }
    if d.crlf {
        text = text.replace('\n', "\r\n");
    }
    text
}

fn shift(n: usize, delta: i64) -> usize {
    (n as i64 + delta).max(0) as usize
}

fn strip_prefixes(header: &str) -> String {
    if let Some(rest) = header.strip_prefix("diff --git ") {
        return format!(
            "diff --git {}",
            rest.replacen("a/", "", 1).replacen(" b/", " ", 1)
        );
    }
    for (marker, prefix) in [("--- ", "a/"), ("+++ ", "b/")] {
        if let Some(rest) = header.strip_prefix(marker) {
            return format!("{marker}{}", rest.strip_prefix(prefix).unwrap_or(rest));
        }
    }
    header.to_owned()
}

/// Drops leading and trailing context, fixing the numbers so they stay right.
fn thin(h: &mut DiffHunk, rng: &mut Rng) {
    let leading = h.body.iter().take_while(|l| l.starts_with(' ')).count();
    let trailing = h.body.iter().rev().take_while(|l| l.starts_with(' ')).count();
    if leading == h.body.len() {
        return;
    }
    let drop_lead = rng.below(leading + 1);
    let drop_trail = rng.below(trailing + 1);
    h.body.drain(h.body.len() - drop_trail..);
    h.body.drain(..drop_lead);
    if let Some((a, b, c, d)) = h.numbers.as_mut() {
        let dropped = drop_lead + drop_trail;
        let (b0, d0) = (*b, *d);
        *b -= dropped;
        *d -= dropped;
        // Unified diffs number an empty side by the line before it.
        let renumber = |start: usize, before: usize, after: usize| match (before, after) {
            (0, _) => start,
            (_, 0) => start + drop_lead - 1,
            _ => start + drop_lead,
        };
        *a = renumber(*a, b0, *b);
        *c = renumber(*c, d0, *d);
    }
}

/// Adds `indent` to every non-blank line of the hunk (context, removed, added), when the
/// hunk has a non-blank old line (otherwise the damage would change only added lines,
/// which is a different intent, not drift).
fn indent_hunk(h: &mut DiffHunk, indent: &str) {
    let has_text = h
        .body
        .iter()
        .any(|l| (l.starts_with(' ') || l.starts_with('-')) && !l[1..].trim().is_empty());
    if !has_text {
        return;
    }
    for l in h.body.iter_mut() {
        if l.starts_with('\\') || l.len() <= 1 || l[1..].trim().is_empty() {
            continue;
        }
        l.insert_str(1, indent);
    }
    h.ws_damaged = true;
}

/// What the engine must do with a damaged diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Apply, giving exactly the edited file.
    Apply,
    /// Refuse, changing nothing.
    Refuse,
    /// The damage made the stated line numbers misleading while the content is not
    /// unique: DESIGN §8 trusts the stated line, so either outcome is by the rules.
    Either,
    /// Refusing is fine, applying must give exactly the edit.
    NotWrong,
}

/// The oracle: what must happen to the damaged `files`, given the old contents.
pub fn expect(files: &[DiffFile], old: &[Option<Vec<u8>>], d: Damage) -> Expect {
    let mut result = Expect::Apply;
    for (f, old) in files.iter().zip(old) {
        let lines = old.as_deref().map(split_lines).unwrap_or_default();
        for h in &f.hunks {
            let e = expect_hunk(h, &lines, old.is_some(), d);
            result = match (result, e) {
                (Expect::Refuse, _) | (_, Expect::Refuse) => Expect::Refuse,
                (Expect::Either, _) | (_, Expect::Either) => Expect::Either,
                (Expect::NotWrong, _) | (_, Expect::NotWrong) => Expect::NotWrong,
                _ => Expect::Apply,
            };
        }
    }
    result
}

fn expect_hunk(h: &DiffHunk, file: &[String], exists: bool, d: Damage) -> Expect {
    if !exists {
        return Expect::Apply; // creation: no matching involved
    }
    let misleading_numbers = d.shift_numbers.is_some_and(|s| s != 0) || d.random_numbers;
    if h.prefix_lost {
        // Whether the engine sees through it depends on what else the hunk shows.
        return if misleading_numbers {
            Expect::Either
        } else {
            Expect::NotWrong
        };
    }
    let old = h.old_side();
    let at_eof = h.old_missing_newline() || h.new_missing_newline();
    let exact = occurrences(file, &old, at_eof, false);
    if h.ws_damaged {
        // Numbers are right: the true place matches ignoring whitespace, at distance 0.
        return if exact > 0 { Expect::Refuse } else { Expect::Apply };
    }
    if old.is_empty() {
        // A pure insertion has only its stated line, and needs the `-a,0` form.
        return if file.is_empty() {
            Expect::Apply
        } else if h.numbers.is_none_or(|(_, b, _, _)| b != 0) {
            // No line, or a header whose old count contradicts the empty old side.
            Expect::Refuse
        } else if misleading_numbers {
            Expect::Either
        } else {
            Expect::Apply
        };
    }
    match (exact, h.numbers.is_some(), misleading_numbers) {
        (1, _, _) => Expect::Apply,
        (_, false, _) => Expect::Refuse,
        (_, true, true) => Expect::Either,
        (_, true, false) => Expect::Apply, // exact at the stated line
    }
}

/// How many places `old` occupies in `file`, byte for byte or ignoring whitespace.
pub fn occurrences(file: &[String], old: &[String], at_eof: bool, loose: bool) -> usize {
    if old.len() > file.len() {
        return 0;
    }
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    (0..=file.len() - old.len())
        .filter(|&p| !at_eof || p + old.len() == file.len())
        .filter(|&p| {
            old.iter()
                .zip(&file[p..])
                .all(|(a, b)| if loose { norm(a) == norm(b) } else { a == b })
        })
        .count()
}

/// A file's lines without endings (`\r\n` or `\n`).
pub fn split_lines(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    if bytes.is_empty() {
        return Vec::new();
    }
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .collect()
}
