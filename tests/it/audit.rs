//! The decision log: queries with every filter and output format, pagination, retention, and the
//! audit API's token scopes.

use crate::support::TestServer;
use scimgate::audit::chain::{self, Chain};
use scimgate::audit::DecisionRecord;
use scimgate::stamp::{Signer, Verifier};
use scimgate::store::embedded::Embedded;
use scimgate::store::Store;
use std::process::Command;
use std::sync::Arc;

/// 40 records over 40 days: alice (every other), bob, a service account; kinds and outcomes vary.
pub fn seed(alice: &str, bob: &str) -> Vec<DecisionRecord> {
    let now = chrono::Utc::now();
    (0..40)
        .map(|i| {
            let (requester, user_id, groups) = match i % 4 {
                0 | 2 => (
                    "oidc:alice@example.com".to_string(),
                    Some(alice.to_string()),
                    "ml,pipeline-users".to_string(),
                ),
                1 => (
                    "oidc:bob@example.com".to_string(),
                    Some(bob.to_string()),
                    "release-approvers".to_string(),
                ),
                _ => ("system:serviceaccount:ci:el-github".to_string(), None, String::new()),
            };
            DecisionRecord {
                id: format!("d-{i:04}"),
                at: (now - chrono::Duration::days(40 - i)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                request_uid: format!("uid-{i}"),
                hook: "validate".into(),
                kind: if i % 3 == 0 {
                    "PipelineRun".into()
                } else {
                    "Workflow".into()
                },
                namespace: if i % 5 == 0 { "prod-pay".into() } else { "team-a".into() },
                name: format!("run-{i}, \"quoted\""),
                action: if i % 4 == 1 { "approve".into() } else { "submit".into() },
                requester,
                user_id,
                groups,
                rule: (i % 7 != 0).then(|| "team-submit".to_string()),
                outcome: if i % 7 == 0 { "denied".into() } else { "allowed".into() },
                mode: "enforce".into(),
                reason: if i % 7 == 0 {
                    "not in a group allowed there".into()
                } else {
                    String::new()
                },
                latency_us: 100 + i,
                policy: "abc".into(),
                run_as: "default".into(),
                templates: String::new(),
                submitter_id: None,
                stamp_id: None,
                authenticated: false,
                // An approval names the decision before it: the field is stored, chained and
                // read back by both stores.
                prior_decision: (i % 4 == 1).then(|| format!("d-{:04}", i - 1)),
                on_behalf_of: None,
                link: None,
            }
        })
        .collect()
}

fn query(s: &TestServer, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(["audit", "query", "--data-dir"])
        .arg(s.dir.path())
        .args(args)
        .output()
        .expect("scimgate audit query");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `scimgate audit query` as an auditor on another machine runs it: through the audit API, with a
/// token of scope `audit` and the server's CA, not the data directory.
fn query_api(s: &TestServer, token: &str, args: &[&str]) -> std::process::Output {
    let url = format!("https://localhost:{}", s.scim_port());
    Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(["audit", "query", "--url", &url, "--token", token, "--ca"])
        .arg(s.dir.path().join("tls/ca.crt"))
        .args(args)
        .output()
        .expect("run")
}

fn ids(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str().map(String::from))
        .collect()
}

/// `s` restarted with `records` in its decision log, written while it was stopped as a process of
/// its own records them (a chain of its own, with the data dir's key): this process never opens
/// the server's live database (that dropped SQLite's locks once).
async fn with_decisions(s: TestServer, records: &[DecisionRecord]) -> TestServer {
    let dir = s.stop().await;
    let store = Embedded::open(dir.path()).await.expect("store");
    let signer = signer(dir.path());
    let (mut chain, mut marks) = Chain::start(signer.clone(), Verifier::from_signer(&signer), &store)
        .await
        .expect("chain");
    let mut records = records.to_vec();
    chain.link(&mut records);
    marks.extend(chain.checkpoint(&store).await);
    store.record_decisions(&records, &marks).await.expect("seed");
    drop(store);
    TestServer::start_in(dir, |_| {}).await
}

/// The data dir's stamp key, which signs the decision log's marks too.
fn signer(dir: &std::path::Path) -> Arc<Signer> {
    Arc::new(Signer::load_or_create(&dir.join("keys/signing.key")).expect("key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_filters_formats_pages_and_retention() {
    let s = TestServer::start().await;
    let alice = s.create_user("alice@example.com").await;
    let bob = s.create_user("bob@example.com").await;
    let all = seed(&alice, &bob);
    let s = with_decisions(s, &all).await;
    let expect = |f: &dyn Fn(&DecisionRecord) -> bool| -> Vec<String> {
        let mut v: Vec<String> = all.iter().filter(|r| f(r)).map(|r| r.id.clone()).collect();
        v.sort();
        v.reverse();
        v
    };
    let cases: Vec<(&str, Vec<&str>, Vec<String>)> = vec![
        (
            "by userName",
            vec!["--user", "alice@example.com"],
            expect(&|r| r.user_id.as_deref() == Some(&alice)),
        ),
        (
            "by id",
            vec!["--user", &bob],
            expect(&|r| r.user_id.as_deref() == Some(&bob)),
        ),
        (
            "by requester",
            vec!["--user", "system:serviceaccount:ci:el-github"],
            expect(&|r| r.user_id.is_none()),
        ),
        (
            "by group",
            vec!["--group", "Pipeline-Users"],
            expect(&|r| r.groups.contains("pipeline-users")),
        ),
        (
            "by namespace",
            vec!["-n", "prod-pay"],
            expect(&|r| r.namespace == "prod-pay"),
        ),
        (
            "by kind",
            vec!["--kind", "PipelineRun"],
            expect(&|r| r.kind == "PipelineRun"),
        ),
        (
            "by action",
            vec!["--action", "approve"],
            expect(&|r| r.action == "approve"),
        ),
        (
            "by outcome",
            vec!["--outcome", "denied"],
            expect(&|r| r.outcome == "denied"),
        ),
        ("by rule", vec!["--rule", "team-submit"], expect(&|r| r.rule.is_some())),
        (
            "since 10d",
            vec!["--since", "10d"],
            expect(&|r| r.id.as_str() >= "d-0031"),
        ),
        (
            "combined",
            vec!["--user", "alice@example.com", "--kind", "Workflow", "--since", "20d"],
            expect(&|r| r.user_id.as_deref() == Some(&alice) && r.kind == "Workflow" && r.id.as_str() >= "d-0021"),
        ),
    ];
    for (name, args, want) in cases {
        let mut a = args.clone();
        a.extend(["-o", "json", "--limit", "1000"]);
        let (ok, out, err) = query(&s, &a);
        assert!(ok, "{name}: {err}");
        assert_eq!(ids(&out), want, "{name}");
        assert!(!want.is_empty(), "{name}: the case selects something");
    }
    // Pagination: pages of 15 tile the whole log, newest first, with a cursor on stderr.
    let (_, p1, e1) = query(&s, &["-o", "json", "--limit", "15"]);
    let after = e1.trim().strip_prefix("more: --after ").expect("a cursor").to_string();
    let (_, p2, _) = query(&s, &["-o", "json", "--limit", "15", "--after", &after]);
    let (_, p3, e3) = query(
        &s,
        &[
            "-o",
            "json",
            "--limit",
            "15",
            "--after",
            &ids(&p2).last().cloned().unwrap_or_default(),
        ],
    );
    assert!(!e3.contains("more:"), "the last page has no cursor");
    let paged: Vec<String> = [ids(&p1), ids(&p2), ids(&p3)].concat();
    assert_eq!(paged, expect(&|_| true));
    // Formats.
    let (_, csv, _) = query(&s, &["-o", "csv", "--limit", "3"]);
    assert!(csv.starts_with("id,at,request_uid,"), "{csv}");
    assert!(csv.contains("\"run-39, \"\"quoted\"\"\""), "CSV quoting: {csv}");
    let (_, jsonl, _) = query(&s, &["-o", "jsonl", "--limit", "3"]);
    assert_eq!(jsonl.lines().count(), 3);
    let (_, table, _) = query(&s, &["--limit", "2"]);
    assert!(table.starts_with("AT") && table.lines().count() == 3, "{table}");
    let (ok, _, err) = query(&s, &["--user", "nobody@example.com"]);
    assert!(!ok && err.contains("no SCIM user named"), "{err}");
    let (ok, _, err) = query(&s, &["--outcome", "maybe"]);
    assert!(!ok && err.contains("outcome must be"), "{err}");
    // Retention.
    // Records are days apart: an hour of margin keeps the boundary record on the right side.
    let cutoff = (chrono::Utc::now() - chrono::Duration::days(30) - chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let dir = s.stop().await;
    let store = Embedded::open(dir.path()).await.expect("store");
    let signer = signer(dir.path());
    let pruned = chain::prune(&store, &signer, &Verifier::from_signer(&signer), &cutoff)
        .await
        .expect("prune");
    assert_eq!((pruned.deleted, pruned.refused.len()), (10, 0), "{pruned:?}");
    assert_eq!(store.decision_count().await.expect("count"), 30);
    // What is left still holds, from the prune mark on.
    let report = chain::verify(&store, &Verifier::from_signer(&signer), &[])
        .await
        .expect("verify");
    assert!(report.holds(), "{:?}", report.problems);
    assert_eq!(report.records, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_api_needs_an_audit_token() {
    let s = TestServer::start().await;
    let alice = s.create_user("alice@example.com").await;
    let dir = s.stop().await;
    let audit_token = {
        let store = Embedded::open(dir.path()).await.expect("store");
        store.record_decisions(&seed(&alice, "b"), &[]).await.expect("seed");
        scimgate::token::create(&store, "auditor", scimgate::store::Scope::Audit)
            .await
            .expect("token")
            .1
    };
    let s = TestServer::start_in(dir, |_| {}).await;
    let api = s.base.replace("/scim/v2", "/api/v1/decisions");
    let mut status = None;
    for _ in 0..100 {
        let r = s
            .client
            .get(&api)
            .bearer_auth(&audit_token)
            .query(&[("user", "alice@example.com"), ("limit", "5")])
            .send()
            .await
            .expect("get");
        status = Some(r.status());
        if r.status() == reqwest::StatusCode::OK {
            let v: serde_json::Value = r.json().await.expect("json");
            assert_eq!(v["items"].as_array().map(Vec::len), Some(5));
            assert!(v["next"].is_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, Some(reqwest::StatusCode::OK), "the new audit token is honoured");
    let r = s.client.get(&api).bearer_auth(&s.token).send().await.expect("get");
    assert_eq!(
        r.status(),
        reqwest::StatusCode::FORBIDDEN,
        "a scim token may not read the audit log"
    );
    let r = s.client.get(&api).send().await.expect("get");
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    let r = s
        .client
        .get(s.url("/Users"))
        .bearer_auth(&audit_token)
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.status(),
        reqwest::StatusCode::FORBIDDEN,
        "an audit token may not use SCIM"
    );
    // The CLI against the API.
    let out = query_api(&s, &audit_token, &["--outcome", "denied", "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ids(&String::from_utf8_lossy(&out.stdout)).len(), 6);
}

/// Issue 21: a person's query shows what their agents did on their behalf, on the CLI (by
/// userName, id or requester) and through the audit API, with the person named in every format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_query_shows_what_their_agents_did_for_them() {
    let s = TestServer::start().await;
    let alice = s.create_user("alice@example.com").await;
    let bob = s.create_user("bob@example.com").await;
    let mut all = seed(&alice, &bob);
    // The service account's decisions become an agent's, on alice's and bob's behalf in turn.
    for (n, r) in all.iter_mut().filter(|r| r.user_id.is_none()).enumerate() {
        r.requester = "oidc:pipeline-bot".into();
        r.user_id = Some("a-pipeline-bot".into());
        r.on_behalf_of = Some(if n % 2 == 0 { alice.clone() } else { bob.clone() });
    }
    let s = with_decisions(s, &all).await;
    let expect = |person: &str| -> Vec<String> {
        let mut v: Vec<String> = all
            .iter()
            .filter(|r| r.user_id.as_deref() == Some(person) || r.on_behalf_of.as_deref() == Some(person))
            .map(|r| r.id.clone())
            .collect();
        v.sort();
        v.reverse();
        v
    };
    let for_alice = expect(&alice);
    assert!(for_alice
        .iter()
        .any(|id| all.iter().any(|r| r.id == *id && r.on_behalf_of.is_some())));
    for user in ["alice@example.com", alice.as_str(), "oidc:alice@example.com"] {
        let (ok, out, err) = query(&s, &["--user", user, "-o", "json", "--limit", "1000"]);
        assert!(ok, "{user}: {err}");
        assert_eq!(ids(&out), for_alice, "{user}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert!(v
            .as_array()
            .into_iter()
            .flatten()
            .all(|r| r["on_behalf_of"].is_null() || r["on_behalf_of"] == alice.as_str()));
    }
    let (_, bobs, _) = query(&s, &["--user", "bob@example.com", "-o", "json", "--limit", "1000"]);
    assert_eq!(ids(&bobs), expect(&bob));
    // The agent itself: everything it did, for whomever.
    let (_, agent, _) = query(&s, &["--user", "oidc:pipeline-bot", "-o", "json", "--limit", "1000"]);
    assert_eq!(ids(&agent).len(), 10);
    let (_, table, _) = query(&s, &["--user", "alice@example.com", "--limit", "1000"]);
    assert!(table.contains(&format!("on behalf of {alice}")), "{table}");
    let (_, csv, _) = query(&s, &["--user", "alice@example.com", "-o", "csv"]);
    assert!(
        csv.lines().next().is_some_and(|h| h.ends_with(",on_behalf_of")),
        "{csv}"
    );

    // The audit API answers the same, and its client reads the person back.
    let dir = s.stop().await;
    let audit_token = {
        let store = Embedded::open(dir.path()).await.expect("store");
        scimgate::token::create(&store, "auditor", scimgate::store::Scope::Audit)
            .await
            .expect("token")
            .1
    };
    let s = TestServer::start_in(dir, |_| {}).await;
    let mut got = Vec::new();
    for _ in 0..100 {
        let out = query_api(
            &s,
            &audit_token,
            &["--user", "alice@example.com", "-o", "json", "--limit", "1000"],
        );
        if out.status.success() {
            got = ids(&String::from_utf8_lossy(&out.stdout));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            assert!(v
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["on_behalf_of"] == alice.as_str()));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(got, for_alice);
}

fn verify(jwks: &std::path::Path, objects: &serde_json::Value) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("objects.json");
    std::fs::write(&f, objects.to_string()).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(["audit", "verify", "-o", "json", "--jwks"])
        .arg(jwks)
        .arg("-f")
        .arg(&f)
        .output()
        .expect("scimgate audit verify");
    let v =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), v)
}

fn statuses(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            o["stamps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    format!(
                        "{}{}",
                        s["status"].as_str().unwrap_or_default(),
                        s["why"].as_str().map(|w| format!(": {w}")).unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_tells_valid_missing_and_forged_stamps_apart() {
    use crate::support::{allowed, World};
    use serde_json::json;
    let w = World::new().await;
    let wf = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "train-1", "namespace": "team-a"},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}});
    let stamped = allowed(crate::actors::kubectl(&w.api, "alice@example.com").create(&wf).await).object;
    // The JWKS as the server publishes it.
    let jwks_url = w.s.base.replace("/scim/v2", "/.well-known/jwks.json");
    let jwks: serde_json::Value =
        w.s.client
            .get(&jwks_url)
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("json");
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).expect("write");

    let mut tampered = Vec::new();
    for field in [
        "submitted-by",
        "submitted-by-id",
        "submitted-groups",
        "submitted-at",
        "decision",
    ] {
        let mut t = stamped.clone();
        t["metadata"]["annotations"][format!("scimgate.io/{field}")] = json!("mallory");
        tampered.push((field, t));
    }
    let mut moved = stamped.clone();
    moved["metadata"]["namespace"] = json!("prod-pay");
    let mut unsigned = wf.clone();
    unsigned["metadata"]["annotations"] = json!({"scimgate.io/submitted-by": "ceo@example.com"});
    let mut items = vec![stamped.clone(), wf.clone(), moved, unsigned];
    items.extend(tampered.iter().map(|(_, t)| t.clone()));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let (code, v) = verify(&jwks_file, &list);
    assert_eq!(code, 1, "forged stamps make the exit code 1");
    let s = statuses(&v);
    assert_eq!(s[0], "valid");
    assert_eq!(v[0]["stamps"][0]["by"], "alice@example.com");
    assert_eq!(s[1], "missing");
    assert!(
        s[2].contains("made for another object") && s[2].contains("namespace 'team-a', not 'prod-pay'"),
        "{}",
        s[2]
    );
    assert!(s[3].contains("not covered by any scimgate attestation"), "{}", s[3]);
    for (i, (field, _)) in tampered.iter().enumerate() {
        assert!(
            s[4 + i].contains(&format!("scimgate.io/{field} was altered")),
            "{field}: {}",
            s[4 + i]
        );
    }
    // Only valid: exit 0. A single object (not a List) works too.
    let (code, _) = verify(&jwks_file, &stamped);
    assert_eq!(code, 0);
    // Wrong key: a JWKS without the signing key.
    let (other, _) = scimgate::stamp::Signer::generate().expect("key");
    let other_jwks = dir.path().join("other.json");
    std::fs::write(&other_jwks, other.jwks().to_string()).expect("write");
    let (code, v) = verify(&other_jwks, &stamped);
    assert_eq!(code, 1);
    assert!(statuses(&v)[0].contains("unknown key id"), "{v}");
    // Rotated: the new key published beside the old one still verifies old stamps.
    let mut rotated = other.jwks();
    if let (Some(keys), Some(old)) = (rotated["keys"].as_array_mut(), jwks["keys"].as_array()) {
        keys.extend(old.iter().cloned());
    }
    let rotated_file = dir.path().join("rotated.json");
    std::fs::write(&rotated_file, rotated.to_string()).expect("write");
    let (code, v) = verify(&rotated_file, &stamped);
    assert_eq!((code, statuses(&v)[0].as_str()), (0, "valid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reports_exactly_the_decisions_a_policy_change_flips() {
    let s = TestServer::start().await;
    let alice = s.create_user("alice@example.com").await;
    let all = seed(&alice, "bob-id");
    let s = with_decisions(s, &all).await;
    // The new policy: only pipeline-users may submit, only in team-*; no approvals, no service accounts.
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("new.yaml");
    std::fs::write(
        &policy,
        "apiVersion: scimgate.io/v1\nkind: Policy\nidentity:\n  usernamePrefix: \"oidc:\"\nrules:\n  - name: team-submit\n    allow: [submit]\n    groups: [pipeline-users]\n    namespaces: [\"team-*\"]\n",
    )
    .expect("policy");
    let now_allowed = |r: &DecisionRecord| r.user_id.as_deref() == Some(alice.as_str()) && r.namespace == "team-a";
    let mut want_denied: Vec<&str> = all
        .iter()
        .filter(|r| r.outcome == "allowed" && !now_allowed(r))
        .map(|r| r.id.as_str())
        .collect();
    let mut want_allowed: Vec<&str> = all
        .iter()
        .filter(|r| r.outcome == "denied" && now_allowed(r))
        .map(|r| r.id.as_str())
        .collect();
    want_denied.sort();
    want_allowed.sort();
    assert!(
        !want_denied.is_empty() && !want_allowed.is_empty(),
        "the seed exercises both directions"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args([
            "policy",
            "replay",
            "--since",
            "60d",
            "--examples",
            "100",
            "-o",
            "json",
            "--data-dir",
        ])
        .arg(s.dir.path())
        .arg("--policy")
        .arg(&policy)
        .output()
        .expect("replay");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let got = |dir: &str| -> Vec<String> {
        let mut ids: Vec<String> = v[dir]["examples"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["id"].as_str().map(String::from))
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(v["replayed"], 40);
    assert_eq!(got("newlyDenied"), want_denied);
    assert_eq!(got("newlyAllowed"), want_allowed);
    assert_eq!(v["newlyDenied"]["count"].as_u64(), Some(want_denied.len() as u64));
    assert_eq!(
        v["newlyDenied"]["counts"]["byNamespace"]["prod-pay"].as_u64(),
        Some(
            all.iter()
                .filter(|r| r.outcome == "allowed" && r.namespace == "prod-pay")
                .count() as u64
        )
    );
    let text = Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(["policy", "replay", "--since", "60d", "--data-dir"])
        .arg(s.dir.path())
        .arg("--policy")
        .arg(&policy)
        .output()
        .expect("replay");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with(&format!(
            "replayed 40 decisions (0 skipped: identity denials or unknown kinds): {} newly denied, {} newly allowed",
            want_denied.len(),
            want_allowed.len()
        )),
        "{text}"
    );
}

/// A stand-in for kube-apiserver: real TLS, real List/GET/Status JSON shapes for Workflows.
async fn fake_api_server(objects: Vec<serde_json::Value>) -> (String, String, tokio::sync::watch::Sender<bool>) {
    use axum::extract::{Path, Query};
    use axum::http::StatusCode;
    use axum::routing::get;
    use serde_json::json;
    let objects = std::sync::Arc::new(objects);
    let one = objects.clone();
    let get_one = move |Path((ns, name)): Path<(String, String)>| {
        let objects = one.clone();
        async move {
            match objects
                .iter()
                .find(|o| o["metadata"]["name"] == name.as_str() && o["metadata"]["namespace"] == ns.as_str())
            {
                Some(o) => (StatusCode::OK, axum::Json(o.clone())),
                None => (
                    StatusCode::NOT_FOUND,
                    axum::Json(
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": format!("workflows.argoproj.io \"{name}\" not found"), "reason": "NotFound",
                        "details": {"name": name, "group": "argoproj.io", "kind": "workflows"}, "code": 404}),
                    ),
                ),
            }
        }
    };
    let list = move |Path(ns): Path<String>, Query(q): Query<std::collections::HashMap<String, String>>| {
        let objects = objects.clone();
        async move {
            let selector = q
                .get("labelSelector")
                .and_then(|s| s.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()));
            let items: Vec<serde_json::Value> = objects
                .iter()
                .filter(|o| o["metadata"]["namespace"] == ns.as_str())
                .filter(|o| {
                    selector
                        .as_ref()
                        .is_none_or(|(k, v)| o["metadata"]["labels"][k] == v.as_str())
                })
                .map(|o| {
                    let mut item = o.clone();
                    // List items come without apiVersion/kind, as the API server sends them.
                    if let Some(m) = item.as_object_mut() {
                        m.remove("apiVersion");
                        m.remove("kind");
                    }
                    item
                })
                .collect();
            axum::Json(
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowList", "metadata": {"resourceVersion": "42"}, "items": items}),
            )
        }
    };
    let app = axum::Router::new()
        .route(
            "/apis/argoproj.io/v1alpha1/namespaces/{ns}/workflows/{name}",
            get(get_one),
        )
        .route("/apis/argoproj.io/v1alpha1/namespaces/{ns}/workflows", get(list));
    let dir = tempfile::tempdir().expect("tempdir");
    let pki =
        scimgate::tls::generate(&["127.0.0.1".into(), "localhost".into()], "fake apiserver CA", None).expect("pki");
    let files = scimgate::tls::write(dir.path(), &pki).expect("write pki");
    let certs = scimgate::tls::Reloading::open(files).expect("certs");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://127.0.0.1:{}", listener.local_addr().expect("addr").port());
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(scimgate::listener::serve(
        listener,
        Some(scimgate::listener::Tls {
            config: certs.server_config(None),
            name: "fake-apiserver",
            metrics: scimgate::metrics::Metrics::new(),
        }),
        app,
        rx,
    ));
    (url, pki.ca_pem, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_reads_live_objects_verifies_stamps_and_finds_the_decisions() {
    use crate::support::{allowed, World};
    use base64::Engine;
    use serde_json::json;
    let w = World::new().await;
    let wf = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "train-1", "namespace": "team-a"},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}});
    let created = allowed(crate::actors::kubectl(&w.api, "alice@example.com").create(&wf).await);
    let live = created.object.clone();
    let mut forged = live.clone();
    forged["metadata"]["name"] = json!("train-2");
    forged["metadata"]["annotations"]["scimgate.io/submitted-by"] = json!("bob@example.com");
    assert_eq!(w.decisions(1).await.len(), 1);
    let (url, ca, _stop) = fake_api_server(vec![live.clone(), forged]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let ca64 = base64::engine::general_purpose::STANDARD.encode(ca.as_bytes());
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca64}\nusers:\n- name: auditor\n  user:\n    token: not-checked\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: auditor\ncurrent-context: fake\n"),
    )
    .expect("kubeconfig");
    let who = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_scimgate"))
            .args(["audit", "who"])
            .args(args)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--data-dir")
            .arg(w.s.dir.path())
            .output()
            .expect("audit who");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = who(&["team-a/workflow/train-1", "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v[0]["events"][0]["event"], "submitted");
    assert_eq!(v[0]["events"][0]["by"], "alice@example.com");
    assert_eq!(v[0]["events"][0]["byId"], w.alice.as_str());
    assert_eq!(v[0]["stamps"][0]["status"], "valid");
    // Found by the stamp's id: the decision is the validating call's, whose uid is not the one the
    // mutating call (which made the stamp) had.
    let validating = created
        .calls
        .iter()
        .find(|c| c.webhook == "policy.scimgate.io")
        .expect("validated");
    let mutating = created
        .calls
        .iter()
        .find(|c| c.webhook == "stamp.scimgate.io")
        .expect("mutated");
    assert_ne!(validating.uid, mutating.uid);
    assert_eq!(
        v[0]["decisions"][0]["requestUid"],
        validating.uid.as_str(),
        "cross-referenced with the decision log"
    );
    let verifier = w.verifier().await;
    let sid = scimgate::stamp::object::verified(&verifier, &live, scimgate::stamp::Entry::SUBMIT)
        .expect("stamp")
        .expect("verifies")
        .sid;
    assert_eq!(v[0]["decisions"][0]["stampId"], sid.as_str());
    assert_eq!(v[0]["decisions"][0]["outcome"], "allowed");
    let (code, out, _) = who(&["team-a/wf/train-2"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FORGED: scimgate.io/submitted-by was altered"), "{out}");
    let (code, out, _) = who(&[
        "team-a/workflows",
        "-l",
        "scimgate.io/submitted-by=alice.at.example.com",
    ]);
    assert_eq!(code, 1, "one of the two is forged: {out}");
    assert!(
        out.contains("team-a/Workflow/train-1") && out.contains("team-a/Workflow/train-2"),
        "{out}"
    );
    let (code, _, err) = who(&["team-a/workflow/nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("Workflow team-a/nope not found"), "{err}");
    let (code, _, err) = who(&["workflow/train-1"]);
    assert!(code == 2 && err.contains("is namespaced"), "{err}");
    let (code, _, err) = who(&["team-a/deployment/x"]);
    assert!(code == 2 && err.contains("not an Argo or Tekton run kind"), "{err}");
}
