//! The Dockerfile keeps its promises (the image itself is not built here):
//! a multi-stage build running the same release build as `.ci/run`, a slim
//! runtime stage as a non-root user, listening on 0.0.0.0:3000, a health
//! check on `/health`, and a writable volume for the data directory.

use std::collections::HashMap;
use std::path::Path;

struct Instruction {
    keyword: String,
    args: String,
}

struct Stage {
    from: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, keyword: &str) -> impl Iterator<Item = &str> {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
            .map(|i| i.args.as_str())
    }
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// Instructions with continuation lines joined and comments dropped, by stage.
fn stages(text: &str) -> Vec<Stage> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut out: Vec<Stage> = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(' ').unwrap_or((&line, ""));
        let keyword = keyword.to_uppercase();
        let args = args.trim().to_string();
        if keyword == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            out.push(Stage {
                from: words[0].to_string(),
                name,
                instructions: Vec::new(),
            });
        } else {
            out.last_mut()
                .expect("an instruction before the first FROM")
                .instructions
                .push(Instruction { keyword, args });
        }
    }
    out
}

/// `KEY=value` pairs of every ENV of a stage.
fn env_of(stage: &Stage) -> HashMap<String, String> {
    stage
        .all("ENV")
        .flat_map(|args| args.split_whitespace())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

#[test]
fn the_dockerfile_builds_the_ci_release_binary_into_a_slim_non_root_image() {
    let stages = stages(&read("Dockerfile"));
    assert!(stages.len() >= 2, "multi-stage");
    let build = &stages[0];
    let runtime = stages.last().unwrap();

    // The build stage: a Rust toolchain no older than the crate needs, and
    // exactly the release build CI runs.
    let release_build = "cargo build --release --locked";
    assert!(
        build.all("RUN").any(|r| r.contains(release_build)),
        "build stage runs `{release_build}`"
    );
    assert!(
        read(".ci/run").lines().any(|l| l.trim() == release_build),
        ".ci/run runs `{release_build}`"
    );
    let toolchain = build
        .from
        .strip_prefix("rust:")
        .unwrap_or_else(|| panic!("build stage from rust:, got {}", build.from));
    let version = |v: &str| -> (u32, u32) {
        let mut parts = v.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    };
    let manifest = read("Cargo.toml");
    let required = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        version(toolchain) >= version(required),
        "rust:{toolchain} is older than rust-version {required}"
    );

    // The runtime stage: slim, only the binary from the build stage.
    assert!(
        runtime.from.contains("slim"),
        "slim runtime, got {}",
        runtime.from
    );
    let build_name = build.name.as_deref().expect("the build stage is named");
    assert!(
        runtime
            .all("COPY")
            .any(|c| c.starts_with(&format!("--from={build_name} ")) && c.contains("orchestrator")),
        "the binary is copied from the build stage"
    );

    // A non-root user that the image creates.
    let user = runtime.all("USER").last().expect("USER in the runtime stage");
    assert!(!["root", "0", "0:0"].contains(&user), "runs as {user}");
    let setup: Vec<&str> = runtime.all("RUN").collect();
    assert!(
        setup.iter().any(|r| r.contains("useradd") && r.contains(user)),
        "user {user} is created"
    );

    // Listening on every interface, port 3000, health-checked on /health
    // with a tool the image installs.
    let env = env_of(runtime);
    assert_eq!(env.get("ORCH_LISTEN").map(String::as_str), Some("0.0.0.0:3000"));
    assert!(
        runtime
            .all("EXPOSE")
            .any(|e| e.split_whitespace().any(|p| p == "3000"))
    );
    let health = runtime.all("HEALTHCHECK").last().expect("HEALTHCHECK");
    assert!(health.contains("CMD"), "{health}");
    assert!(
        health.contains("127.0.0.1:3000/health") || health.contains("localhost:3000/health"),
        "{health}"
    );
    let probe = health
        .split("CMD")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert!(
        setup
            .iter()
            .any(|r| r.contains("apt-get install") && r.split_whitespace().any(|w| w == probe)),
        "the health check's {probe} is installed"
    );

    // The data directory is a volume that exists, belongs to the user, and
    // holds the SQLite database.
    let data_dir = env.get("ORCH_DATA_DIR").expect("ORCH_DATA_DIR");
    let volumes: Vec<String> = runtime
        .all("VOLUME")
        .flat_map(|v| {
            v.trim_matches(['[', ']'])
                .split(',')
                .map(|s| s.trim().trim_matches('"').to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(volumes.contains(data_dir), "VOLUME {volumes:?} covers {data_dir}");
    assert!(
        setup
            .iter()
            .any(|r| r.contains(&format!("mkdir -p {data_dir}")) && r.contains(&format!("chown {user}"))),
        "{data_dir} is created and owned by {user} before it becomes a volume"
    );
    let database = env.get("DATABASE_URL").expect("DATABASE_URL");
    assert!(
        database.starts_with(&format!("sqlite://{data_dir}/")),
        "{database} lives in the volume"
    );

    assert!(
        runtime.all("CMD").any(|c| c.contains("serve")),
        "the image runs `orchestrator serve`"
    );
}

#[test]
fn the_build_context_leaves_out_builds_and_secrets() {
    let ignore = read(".dockerignore");
    let entries: Vec<&str> = ignore.lines().map(str::trim).collect();
    for needed in ["target", ".env", "data"] {
        assert!(entries.contains(&needed), ".dockerignore lacks {needed}");
    }
}

#[test]
fn the_parser_reads_stages_and_continuations() {
    let parsed = stages("# c\nFROM a AS b\nRUN x \\\n    && y\nFROM c\nENV A=1 \\\n    B=2\n");
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[0].name.as_deref(), Some("b"));
    assert_eq!(parsed[0].instructions[0].args, "x && y");
    let env = env_of(&parsed[1]);
    assert_eq!((env["A"].as_str(), env["B"].as_str()), ("1", "2"));
}
