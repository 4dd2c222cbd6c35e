//! `scimgate review`, the binary, against a running server: the way to try it without a cluster.

use crate::support::ops;
use crate::support::World;
use serde_json::json;
use std::process::Command;

fn review(w: &World, args: &[&str]) -> (i32, String, String) {
    let ca = w.s.dir.path().join("tls/ca.crt");
    let out = Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(["review", "--url", &w.s.admission, "--ca"])
        .arg(&ca)
        .args(args)
        .output()
        .expect("run scimgate review");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

// The CLI runs as a child process and blocks this thread: the server needs other workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_plays_the_api_server() {
    let w = World::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = dir.path().join("wf.yaml");
    std::fs::write(
        &wf,
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  generateName: hello-\nspec:\n  entrypoint: main\n  templates:\n    - name: main\n      container: {image: busybox}\n---\napiVersion: tekton.dev/v1\nkind: PipelineRun\nmetadata:\n  name: build-1\nspec:\n  pipelineRef: {name: build}\n",
    )
    .expect("manifest");
    let wf = wf.to_string_lossy().to_string();
    let (code, out, err) = review(&w, &["-f", &wf, "-n", "team-a", "--user", "oidc:alice@example.com"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ALLOWED Workflow hello-") && out.contains("ALLOWED PipelineRun build-1"),
        "{out}"
    );
    assert!(
        out.contains("+ metadata.annotations.scimgate.io/submitted-by: alice@example.com"),
        "{out}"
    );
    let (code, out, _) = review(&w, &["-f", &wf, "-n", "team-a", "--user", "oidc:mallory@example.com"]);
    assert_eq!(code, 1, "denied is exit 1: {out}");
    assert!(
        out.contains("DENIED  Workflow hello-") && out.contains("may not submit Workflow in team-a"),
        "{out}"
    );
    let (code, out, _) = review(&w, &["-f", &wf, "-n", "legacy-x", "--user", "oidc:mallory@example.com"]);
    assert_eq!(code, 0, "dry-run namespaces allow: {out}");
    assert!(out.contains("warning: scimgate dry-run: would deny"), "{out}");
    let (code, out, _) = review(&w, &["-f", &wf, "-n", "team-a", "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json output");
    assert_eq!(
        v[0]["patchedObject"]["metadata"]["annotations"]["scimgate.io/submitted-by"],
        "alice@example.com"
    );
    // Deactivate through SCIM: the next review says so.
    w.s.patch(
        &format!("/Users/{}", w.alice),
        ops(json!([{"op": "replace", "value": {"active": false}}])),
    )
    .await;
    let (code, out, _) = review(&w, &["-f", &wf, "-n", "team-a"]);
    assert_eq!(code, 1);
    assert!(out.contains("deactivated in the identity provider"), "{out}");
    // Wrong CA: a clear error, exit 2.
    let other = scimgate::tls::generate(&["localhost".into()], "other", None).expect("ca");
    let bad_ca = dir.path().join("other.crt");
    std::fs::write(&bad_ca, other.ca_pem).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(["review", "--url", &w.s.admission, "--ca"])
        .arg(&bad_ca)
        .args(["-f", &wf])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("calling"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_test_evaluates_offline_against_the_data_dir() {
    let w = World::new().await;
    let run = |user: &str, ns: &str| {
        let (code, out, _) = crate::support::policy_test(&w, &["--user", user, "-n", ns]);
        (code, out)
    };
    let (code, out) = run("oidc:alice@example.com", "team-a");
    assert_eq!((code, out.starts_with("ALLOWED Workflow hello-")), (0, true), "{out}");
    let (code, out) = run("oidc:mallory@example.com", "team-a");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not in a group allowed there"), "{out}");
    let (code, out) = run("oidc:alice@example.com", "payments");
    assert!(
        code == 1 && out.contains("no rule allows submit of Workflow in payments"),
        "{out}"
    );
}
