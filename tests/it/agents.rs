//! Agents as accountable identities (issue 21), through the emulator: agents provisioned over
//! SCIM (`/Agents`, owners) and an Entra-style agent user (a User the policy marks as an agent,
//! its manager the owner) ask the API server as themselves; scimgate judges each as the agent
//! *and* as an active owner, stamps both, refuses what no owner may do and every approval of an
//! owner's run, and stops the agent with its last owner.

use crate::actors::{argo_controller, argo_server, claims, kubectl};
use crate::apiserver::service_account;
use crate::support::{allowed, ann, ops, refused, verified_by, World};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

const POLICY: &str = r#"
apiVersion: scimgate.io/v1
kind: Policy
identity:
  usernamePrefix: "oidc:"
  matchAttribute: userName
  agents:
    users:
      attribute: userType
      equals: [Agent]
  delegates:
    - serviceAccount: argo:argo-server
      via: argoServer
    - serviceAccount: argo:argo
      via: ownerStamp
    - serviceAccount: tekton-pipelines:tekton-pipelines-controller
      via: ownerStamp
rules:
  - name: ml-submit
    allow: [submit, cancel]
    groups: [ml]
    namespaces: ["ml-team"]
  - name: prod-submit
    allow: [submit]
    groups: [deployers]
    namespaces: ["prod"]
  - name: assistants
    allow: [submit, cancel]
    agentTypes: [Assistant]
    namespaces: ["ml-team", "prod"]
  - name: assistants-approve
    allow: [approve]
    agentTypes: [Assistant]
    namespaces: ["ml-team"]
  - name: deploy-agents
    allow: [submit]
    agents: [deploy-agent@example.com]
    namespaces: ["prod"]
  - name: ml-approve
    allow: [approve]
    groups: [ml]
    namespaces: ["ml-team"]
    distinctApprover: true
"#;

fn workflow(ns: &str, name: &str, suspended: bool) -> Value {
    let mut wf = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}});
    if suspended {
        wf["spec"]["suspend"] = json!(true);
    }
    wf
}

/// The README's "Agents" section: the stamp lines of its `text` block, and the refusals it
/// quotes (in backticks, the line breaks of the prose undone).
struct ReadmeAgents {
    stamp_lines: Vec<String>,
    refusals: Vec<String>,
}

fn readme_agents() -> ReadmeAgents {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let start = readme.find("## Agents").expect("an Agents section");
    let end = readme[start + 3..]
        .find("\n## ")
        .map_or(readme.len(), |e| start + 3 + e);
    let section = &readme[start..end];
    let text = section
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("text block");
    let prose = section
        .split("```")
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let refusals = prose
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|q| q.starts_with("agent "))
        .map(String::from)
        .collect::<Vec<_>>();
    assert_eq!(refusals.len(), 2, "{prose}");
    ReadmeAgents {
        stamp_lines: text.lines().map(String::from).collect(),
        refusals,
    }
}

/// A World with this file's policy and the `prod` namespace (`ml-team` the emulator has).
async fn world() -> World {
    let w = World::with(POLICY, "").await;
    w.api.create_namespace("prod");
    w
}

async fn agent(w: &World, body: Value) -> String {
    let r = w.s.post("/Agents", body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_acts_within_its_owners_rights_is_stamped_with_both_and_stops_with_them() {
    let w = world().await;
    let pr_bot = agent(
        &w,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Agent"], "name": "pr-bot",
               "agentType": "Assistant", "subject": "0oa-pr-bot", "owners": [{"value": w.alice}]}),
    )
    .await;
    let bot = kubectl(&w.api, "0oa-pr-bot");

    // In ml-team, where alice may submit: allowed, stamped with the agent and alice.
    let wf = allowed(bot.create(&workflow("ml-team", "by-bot", false)).await).object;
    assert_eq!(ann(&wf, "scimgate.io/submitted-by"), "pr-bot");
    assert_eq!(ann(&wf, "scimgate.io/submitted-by-id"), pr_bot.as_str());
    assert_eq!(ann(&wf, "scimgate.io/on-behalf-of"), "alice@example.com");
    assert_eq!(ann(&wf, "scimgate.io/decision"), "allow:assistants");
    let v = w.verifier().await;
    assert_eq!(verified_by(&v, &wf), vec!["submit by pr-bot".to_string()]);
    let jws = ann(&wf, "scimgate.io/attestation").as_str().expect("jws");
    let claims: scimgate::stamp::Claims = serde_json::from_value(v.verify(jws).expect("verifies")).expect("claims");
    assert_eq!(
        (claims.sub.as_str(), claims.on_behalf_of.as_str()),
        (pr_bot.as_str(), w.alice.as_str())
    );
    assert_eq!(claims.on_behalf_of_name, "alice@example.com");
    // The agent may submit in prod, alice may not: denied, naming what alice lacks.
    let readme = readme_agents();
    for line in readme.stamp_lines {
        let (k, v) = line.split_once(": ").expect("key: value");
        assert_eq!(ann(&wf, k), v, "README: {line}");
    }
    let why = refused(bot.create(&workflow("prod", "to-prod", false)).await).message;
    assert!(
        why.contains(&readme.refusals[0]),
        "README says {:?}; got {why}",
        readme.refusals[0]
    );
    assert!(
        why.contains("agent pr-bot acts only within what an active owner may do, and none may submit Workflow in prod"),
        "{why}"
    );
    assert!(
        why.contains("alice@example.com may not (not in a group allowed there (allowed groups: deployers)"),
        "{why}"
    );
    // Alice's run waiting for approval: her agent may not approve it (it may approve others').
    let alices = allowed(
        kubectl(&w.api, "alice@example.com")
            .create(&workflow("ml-team", "alices", true))
            .await,
    )
    .object;
    let why = refused(bot.patch_merge(&alices, json!({"spec": {"suspend": null}})).await).message;
    assert!(
        why.contains("agent pr-bot may not approve a run its owner or itself submitted (alice@example.com)"),
        "{why}"
    );
    // Nor may alice approve what her agent submitted for her (four eyes).
    let bots = allowed(bot.create(&workflow("ml-team", "bots-gated", true)).await).object;
    let why = refused(
        kubectl(&w.api, "alice@example.com")
            .patch_merge(&bots, json!({"spec": {"suspend": null}}))
            .await,
    )
    .message;
    assert!(
        why.contains("an agent the approver owns or acted through submitted it"),
        "{why}"
    );

    // An agent owned by a group, bound to a service account: works while a member is active.
    let ml = group_id(&w, "ml").await;
    agent(
        &w,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Agent"], "name": "team-bot", "agentType": "Assistant",
               "subject": "system:serviceaccount:ml-team:team-bot", "owners": [{"value": ml, "type": "Group"}]}),
    )
    .await;
    let team_bot = crate::actors::Kubectl {
        api: &w.api,
        user: service_account("ml-team", "team-bot"),
    };
    let by_team = allowed(team_bot.create(&workflow("ml-team", "by-team-bot", false)).await).object;
    assert_eq!(ann(&by_team, "scimgate.io/on-behalf-of"), "alice@example.com");

    // A schedule the agent keeps: each run the controller starts is judged as the agent and
    // its owner again, and names both.
    let cron = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
        "metadata": {"name": "nightly", "namespace": "ml-team"},
        "spec": {"schedule": "0 1 * * *", "workflowSpec": {"entrypoint": "main",
            "templates": [{"name": "main", "container": {"image": "busybox"}}]}}});
    let cron = allowed(bot.create(&cron).await).object;
    assert_eq!(ann(&cron, "scimgate.io/on-behalf-of"), "alice@example.com");
    let argo = argo_controller(&w.api);
    let run = allowed(argo.spawn(&cron, chrono::Utc::now()).await).object;
    assert_eq!(ann(&run, "scimgate.io/submitted-by"), "pr-bot");
    assert_eq!(ann(&run, "scimgate.io/on-behalf-of"), "alice@example.com");

    // The records name the agent and the person.
    let records = w.decisions(1).await;
    let rec = records
        .iter()
        .find(|r| r.name == "by-bot" && r.hook == "validate")
        .expect("record of by-bot");
    assert_eq!(
        (rec.user_id.as_deref(), rec.on_behalf_of.as_deref()),
        (Some(pr_bot.as_str()), Some(w.alice.as_str()))
    );

    // Alice leaves: both agents have nobody left to act for.
    w.deactivate(&w.alice).await;
    let why = refused(bot.create(&workflow("ml-team", "after", false)).await).message;
    assert!(
        why.contains(&readme.refusals[1]),
        "README says {:?}; got {why}",
        readme.refusals[1]
    );
    assert!(
        why.contains("agent pr-bot has no active owner to act for (alice@example.com is deactivated)"),
        "{why}"
    );
    let why = refused(argo.spawn(&cron, chrono::Utc::now()).await).message;
    assert!(
        why.contains("agent pr-bot, who submitted its owner CronWorkflow ml-team/nightly, has no active owner to act for (alice@example.com is deactivated), and whenOwnerOffboarded is stop"),
        "{why}"
    );
    let why = refused(team_bot.create(&workflow("ml-team", "after-team", false)).await).message;
    assert!(
        why.contains("agent team-bot has no active owner to act for (group ml has no active member)"),
        "{why}"
    );
    // …and what pr-bot left running is swept like a leaver's (offboarding's report mode). The
    // sweep announces one object at a time: wait for both it must name.
    let event = |name: &str| {
        w.kube
            .events()
            .into_iter()
            .find(|e| e["involvedObject"]["name"] == name)
    };
    let said = crate::support::until(Duration::from_secs(20), async || {
        event("bots-gated").is_some() && event("nightly").is_some()
    })
    .await;
    assert!(said.is_some(), "events: {:#?}", w.kube.events());
    let e = event("bots-gated").expect("event");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("agent pr-bot was left without an active owner through SCIM")),
        "{e}"
    );
    let e = event("nightly").expect("event");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("CronWorkflow is scheduled: it would be suspended")),
        "{e}"
    );
}

/// Four eyes over every owner: an agent two people own submits on behalf of the first, but either
/// may have driven it, so neither may approve its run; a third person may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_who_owns_the_submitting_agent_approves_its_run() {
    let w = world().await;
    let carol = w.s.create_user("carol@example.com").await;
    let ml = group_id(&w, "ml").await;
    let r =
        w.s.patch(
            &format!("/Groups/{ml}"),
            ops(json!([{"op": "add", "path": "members", "value": [{"value": w.bob}, {"value": carol}]}])),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    agent(
        &w,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Agent"], "name": "pair-bot", "agentType": "Assistant",
               "subject": "0oa-pair-bot", "owners": [{"value": w.alice}, {"value": w.bob}]}),
    )
    .await;
    let bot = kubectl(&w.api, "0oa-pair-bot");
    let run = allowed(bot.create(&workflow("ml-team", "pair-gated", true)).await).object;
    assert_eq!(ann(&run, "scimgate.io/on-behalf-of"), "alice@example.com");
    for owner in ["alice@example.com", "bob@example.com"] {
        let why = refused(
            kubectl(&w.api, owner)
                .patch_merge(&run, json!({"spec": {"suspend": null}}))
                .await,
        )
        .message;
        assert!(
            why.contains("an agent the approver owns or acted through submitted it"),
            "{owner}: {why}"
        );
    }
    let approved = allowed(
        kubectl(&w.api, "carol@example.com")
            .patch_merge(&run, json!({"spec": {"suspend": null}}))
            .await,
    )
    .object;
    assert_eq!(ann(&approved, "scimgate.io/approved-by"), "carol@example.com");
}

async fn group_id(w: &World, name: &str) -> String {
    let r =
        w.s.get(&format!("/Groups?filter=displayName%20eq%20%22{name}%22"))
            .await;
    r.body["Resources"][0]["id"].as_str().expect("the group").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_test_and_review_ask_as_an_agent() {
    let w = world().await;
    agent(
        &w,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Agent"], "name": "pr-bot",
               "agentType": "Assistant", "subject": "0oa-pr-bot", "owners": [{"value": w.alice}]}),
    )
    .await;
    let policy_test = |agent: &str, ns: &str| {
        let (code, out, err) = crate::support::policy_test(&w, &["--agent", agent, "-n", ns]);
        (code, out + &err)
    };
    let (code, out) = policy_test("pr-bot", "ml-team");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("submit on behalf of alice@example.com (rule ml-submit)"),
        "{out}"
    );
    let (code, out) = policy_test("PR-BOT", "prod");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("alice@example.com may not"), "{out}");
    let (code, out) = policy_test("nobody", "ml-team");
    assert!(code != 0 && out.contains("no agent named 'nobody'"), "{out}");
    // `review` sends what the API server would, with the agent's username.
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = crate::support::hello_workflow(dir.path());
    let ca = w.s.dir.path().join("tls").join("ca.crt");
    let out = Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(["review", "--url", &w.s.admission, "--ca"])
        .arg(&ca)
        .args(["--user", "oidc:0oa-pr-bot", "-n", "ml-team", "-f"])
        .arg(&wf)
        .output()
        .expect("review");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("scimgate.io/on-behalf-of"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entra_agent_user_acts_for_its_manager() {
    let w = world().await;
    let deployers = w.s.create_group("deployers", &[&w.bob]).await;
    assert!(!deployers.is_empty());
    // Entra provisions an agent user as a User; the policy marks it by userType, and its
    // manager (the enterprise extension) is the person responsible.
    let r = w
        .s
        .post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                   "userName": "deploy-agent@example.com", "userType": "Agent", "active": true,
                   "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": w.bob}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let agent_user = r.id();
    let bot = kubectl(&w.api, "deploy-agent@example.com");
    let wf = allowed(bot.create(&workflow("prod", "release", false)).await).object;
    assert_eq!(ann(&wf, "scimgate.io/submitted-by"), "deploy-agent@example.com");
    assert_eq!(ann(&wf, "scimgate.io/on-behalf-of"), "bob@example.com");
    // Through the Argo Server's UI (its own account; the agent user's claims in the creator
    // labels it writes): judged as the agent user all the same, not as a person — as a person
    // it is in no group that may deploy.
    let ui = argo_server(&w.api);
    let as_bot = claims("deploy-agent-sub", "deploy-agent@example.com");
    let via_ui = allowed(ui.submit(&as_bot, &workflow("prod", "release-ui", false)).await).object;
    assert_eq!(ann(&via_ui, "scimgate.io/submitted-by"), "deploy-agent@example.com");
    assert_eq!(ann(&via_ui, "scimgate.io/on-behalf-of"), "bob@example.com");
    // Bob leaves the deployers: the agent user may no longer deploy.
    let r =
        w.s.patch(
            &format!("/Groups/{deployers}"),
            ops(json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", w.bob)}])),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let why = refused(bot.create(&workflow("prod", "release-2", false)).await).message;
    assert!(why.contains("bob@example.com may not"), "{why}");
    let why = refused(ui.submit(&as_bot, &workflow("prod", "release-ui-2", false)).await).message;
    assert!(why.contains("bob@example.com may not"), "{why}");
    // Its manager removed: nobody to act for.
    let r =
        w.s.patch(
            &format!("/Users/{agent_user}"),
            ops(
                json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}]),
            ),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let why = refused(bot.create(&workflow("prod", "release-3", false)).await).message;
    assert!(
        why.contains("has no active owner to act for (it lists no owners)"),
        "{why}"
    );
}
