//! The permission gate against the fake GitHub: write, maintain and admin
//! pass; triage, read, no role and unknown users (404) are turned away.

use orchestrator::gate::{GateDecision, check_permission, rejection_comment};
use orchestrator::github::Permission;

use crate::fake_github::{FakeGitHub, INSTALLATION_ID};

#[tokio::test]
async fn each_permission_level_meets_the_gate() {
    let fake = FakeGitHub::start().await;
    let repo = fake.add_repo("octo-org/gated");
    let client = fake.client().installation(INSTALLATION_ID);
    let cases = [
        ("admin", Some(Permission::Admin)),
        ("maintain", Some(Permission::Maintain)),
        ("write", Some(Permission::Write)),
        ("triage", None),
        ("read", None),
        ("none", None),
    ];
    for (role, allowed) in cases {
        let login = format!("user-{role}");
        fake.set_role(&repo, &login, role);
        let decision = check_permission(&client, &repo, &login).await.unwrap();
        match (allowed, decision) {
            (Some(expected), GateDecision::Allowed(got)) => assert_eq!(got, expected, "{role}"),
            (None, GateDecision::Denied { reason, .. }) => {
                assert!(
                    reason.starts_with(&format!("permission: @{login} has ")),
                    "{reason}"
                );
            }
            (expected, got) => panic!("{role}: expected {expected:?}, got {got:?}"),
        }
    }
    let stranger = check_permission(&client, &repo, "stranger").await.unwrap();
    assert_eq!(
        stranger,
        GateDecision::Denied {
            permission: Permission::None,
            reason:
                "permission: @stranger has no access to `octo-org/gated`; write, maintain or admin is needed"
                    .into(),
        }
    );
    let text = rejection_comment("stranger", "octo-org/gated");
    assert!(
        text.contains("@stranger") && text.contains("write, maintain or admin"),
        "{text}"
    );
}

#[tokio::test]
async fn a_github_error_is_no_rejection() {
    let fake = FakeGitHub::start().await;
    let repo = fake.add_repo("octo-org/gated");
    fake.set_role(&repo, "writer", "write");
    fake.fail_next("GET", "/repos/*/*/collaborators/*/permission", 403, 1);
    let client = fake.client().installation(INSTALLATION_ID);
    assert!(check_permission(&client, &repo, "writer").await.is_err());
}
