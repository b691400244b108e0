//! The agents' system prompts.
//!
//! Each agent gets its own AGENTS.md section and the repository policy
//! (`AgentsPolicy::system_prompt`), then the target repository's own
//! AGENTS.md, introduced as that repository's conventions: they shape the
//! work but never override the policy above them.

use crate::agents::{AgentsPolicy, Section};

/// The system prompt of `section`'s agent.
pub fn system_prompt(policy: &AgentsPolicy, section: Section, repo_agents_md: Option<&str>) -> String {
    let mut prompt = policy.system_prompt(section);
    if let Some(text) = repo_agents_md.filter(|t| !t.trim().is_empty()) {
        prompt.push_str(
            "\n## The target repository's AGENTS.md\n\nConventions of the repository you work on. \
             Follow them where they do not conflict with the policy above.\n\n",
        );
        prompt.push_str(text.trim());
        prompt.push('\n');
    }
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_agents_md_follows_the_policy() {
        let policy = AgentsPolicy::parse(crate::agents::BUILT_IN, "built-in").unwrap();
        let plain = system_prompt(&policy, Section::Coder, Some("  \n"));
        assert_eq!(plain, policy.system_prompt(Section::Coder));
        let with = system_prompt(&policy, Section::Coder, Some("Use tabs.\n"));
        let policy_at = with.find("## Repository policy").unwrap();
        let repo_at = with.find("## The target repository's AGENTS.md").unwrap();
        assert!(policy_at < repo_at && with.ends_with("Use tabs.\n"));
    }
}
