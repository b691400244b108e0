//! `AGENTS.md`: the agents' system policy, split at its level-2 headings.
//!
//! Each agent's system prompt is its own section plus the repository policy.
//! The file is built into the binary; `ORCH_AGENTS_PATH`, or an `AGENTS.md` in
//! the working directory, replaces it. Headings inside code fences are text,
//! not sections. The SHA-256 of the text is recorded on each job, so a job's
//! prompts can be traced to the policy that produced them.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The copy built into the binary.
pub const BUILT_IN: &str = include_str!("../AGENTS.md");

/// The sections the program looks up, by their exact heading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Cto,
    Coder,
    Archivist,
    Curator,
    RepositoryPolicy,
}

impl Section {
    pub const ALL: [Section; 5] = [
        Section::Cto,
        Section::Coder,
        Section::Archivist,
        Section::Curator,
        Section::RepositoryPolicy,
    ];

    /// The level-2 heading that starts the section.
    pub fn heading(self) -> &'static str {
        match self {
            Section::Cto => "CTO-AI",
            Section::Coder => "CODER-AI",
            Section::Archivist => "ARCHIVIST",
            Section::Curator => "CURATOR",
            Section::RepositoryPolicy => "Repository policy",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}: missing section `## {heading}`")]
    MissingSection { origin: String, heading: &'static str },
    #[error("{origin}: section `## {heading}` appears twice")]
    DuplicateSection { origin: String, heading: &'static str },
    #[error("{origin}: section `## {heading}` is empty")]
    EmptySection { origin: String, heading: &'static str },
}

/// The parsed policy.
#[derive(Debug, Clone)]
pub struct AgentsPolicy {
    sections: Vec<(Section, String)>,
    /// Hex SHA-256 of the whole text.
    pub hash: String,
    /// Where it came from, for `config check` and logs.
    pub origin: String,
}

impl AgentsPolicy {
    /// `override_path`, else `./AGENTS.md` when present, else the built-in copy.
    pub fn load(override_path: Option<&Path>) -> Result<AgentsPolicy, AgentsError> {
        let local = Path::new("AGENTS.md");
        match override_path.or_else(|| local.exists().then_some(local)) {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| AgentsError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                AgentsPolicy::parse(&text, &path.display().to_string())
            }
            None => AgentsPolicy::parse(BUILT_IN, "built-in AGENTS.md"),
        }
    }

    /// Splits `text` into its sections; all five must be present once.
    pub fn parse(text: &str, origin: &str) -> Result<AgentsPolicy, AgentsError> {
        let mut found: Vec<(Section, String)> = Vec::new();
        let mut current: Option<(Section, String)> = None;
        let mut fence: Option<&str> = None;
        for line in text.lines() {
            let trimmed = line.trim_start();
            if let Some(marker) = fence {
                if trimmed.starts_with(marker) {
                    fence = None;
                }
            } else if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                fence = Some(&trimmed[..3]);
            } else if let Some(title) = line.strip_prefix("## ") {
                if let Some(done) = current.take() {
                    found.push(done);
                }
                let section = Section::ALL.into_iter().find(|s| s.heading() == title.trim());
                if let Some(section) = section {
                    if found.iter().any(|(s, _)| *s == section) {
                        let heading = section.heading();
                        return Err(AgentsError::DuplicateSection {
                            origin: origin.into(),
                            heading,
                        });
                    }
                    current = Some((section, String::new()));
                }
                continue;
            } else if line.starts_with("# ") {
                if let Some(done) = current.take() {
                    found.push(done);
                }
                continue;
            }
            if let Some((_, body)) = current.as_mut() {
                body.push_str(line);
                body.push('\n');
            }
        }
        if let Some(done) = current.take() {
            found.push(done);
        }
        for section in Section::ALL {
            let heading = section.heading();
            match found.iter().find(|(s, _)| *s == section) {
                None => {
                    return Err(AgentsError::MissingSection {
                        origin: origin.into(),
                        heading,
                    });
                }
                Some((_, body)) if body.trim().is_empty() => {
                    return Err(AgentsError::EmptySection {
                        origin: origin.into(),
                        heading,
                    });
                }
                Some(_) => {}
            }
        }
        let sections = found
            .into_iter()
            .map(|(s, body)| (s, body.trim().to_string()))
            .collect();
        Ok(AgentsPolicy {
            sections,
            hash: hex::encode(Sha256::digest(text.as_bytes())),
            origin: origin.into(),
        })
    }

    /// One section's text, without its heading.
    pub fn section(&self, section: Section) -> &str {
        self.sections
            .iter()
            .find(|(s, _)| *s == section)
            .map_or("", |(_, body)| body.as_str())
    }

    /// The system prompt of an agent: its section, then the repository policy.
    pub fn system_prompt(&self, agent: Section) -> String {
        let policy = self.section(Section::RepositoryPolicy);
        if agent == Section::RepositoryPolicy {
            return policy.to_string();
        }
        format!(
            "## {}\n\n{}\n\n## {}\n\n{}\n",
            agent.heading(),
            self.section(agent),
            Section::RepositoryPolicy.heading(),
            policy
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_policy_has_every_section() {
        let policy = AgentsPolicy::parse(BUILT_IN, "built-in").unwrap();
        for section in Section::ALL {
            assert!(!policy.section(section).is_empty(), "{section:?}");
            assert!(
                !policy.section(section).contains("\n## "),
                "{section:?} swallowed a heading"
            );
        }
        assert!(policy.section(Section::Cto).contains("\"steps\""));
        assert!(policy.section(Section::Coder).contains("=== FILE: "));
        let prompt = policy.system_prompt(Section::Coder);
        assert!(prompt.starts_with("## CODER-AI"));
        assert!(prompt.contains("## Repository policy"));
        assert_eq!(policy.hash.len(), 64);
    }

    #[test]
    fn headings_inside_code_fences_are_text() {
        let text = "## CTO-AI\nplan\n```\n## CODER-AI\n```\n## CODER-AI\ncode\n## ARCHIVIST\na\n## CURATOR\nc\n## Repository policy\np\n";
        let policy = AgentsPolicy::parse(text, "t").unwrap();
        assert_eq!(policy.section(Section::Cto), "plan\n```\n## CODER-AI\n```");
        assert_eq!(policy.section(Section::Coder), "code");
    }

    #[test]
    fn missing_duplicate_and_empty_sections_are_named() {
        let err = AgentsPolicy::parse("## CTO-AI\nx\n", "f.md")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "f.md: missing section `## CODER-AI`");
        let dup = "## CTO-AI\nx\n## CTO-AI\ny\n";
        assert!(matches!(
            AgentsPolicy::parse(dup, "f").unwrap_err(),
            AgentsError::DuplicateSection { .. }
        ));
        let empty = "## CTO-AI\n\n## CODER-AI\nc\n## ARCHIVIST\na\n## CURATOR\nc\n## Repository policy\np\n";
        assert!(matches!(
            AgentsPolicy::parse(empty, "f").unwrap_err(),
            AgentsError::EmptySection { .. }
        ));
    }
}
