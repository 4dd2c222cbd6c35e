//! Groups become access (issue 20), through the emulator: scimgate watches Namespaces and its
//! own bindings and writes RoleBindings and ClusterRoleBindings through the API server's HTTP
//! face (create, server-side apply, delete, as upstream serves them), and the emulator's RBAC
//! authorizer (`rbac`) says what people can then do — a `SubjectAccessReview` as the API server
//! answers one, from the bindings and the roles `manifests/components/access` ships, aggregated
//! as Kubernetes aggregates them.

use crate::apiserver::ApiServer;
use crate::kube_face::KubeFace;
use crate::support::{ops, until, World, POLICY};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const RBAC: &str = "rbac.authorization.k8s.io/v1";
const ML_BINDING: &str = "scimgate:ml-engineers:scimgate-runs-submit";

/// The test policy with an `access:` section: ml-engineers submit in `ml-*`, platform views
/// everywhere.
fn policy(mode: &str) -> String {
    format!(
        "{POLICY}access:\n  mode: {mode}\n  bindings:\n    - group: ml-engineers\n      clusterRole: scimgate-runs-submit\n      namespaces: [\"ml-*\"]\n    - group: platform\n      clusterRole: scimgate-runs-view\n"
    )
}

/// The roles of `manifests/components/access`, stored (and aggregated) in the emulator.
fn install_roles(api: &ApiServer) {
    api.apply_manifests(&Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/components/access/roles.yaml"));
}

fn binding(api: &ApiServer, namespace: &str, name: &str) -> Option<Value> {
    let kind = if namespace.is_empty() {
        "ClusterRoleBinding"
    } else {
        "RoleBinding"
    };
    api.get(RBAC, kind, namespace, name)
}

fn subjects(b: &Option<Value>) -> Vec<String> {
    b.as_ref()
        .and_then(|b| b["subjects"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect()
}

/// What the authorizer says of `user` (a person as the API server names them).
fn can(api: &ApiServer, user: &str, verb: &str, resource: &str, namespace: &str) -> bool {
    let (group, rest) = match resource {
        "workflows" => ("argoproj.io", "workflows"),
        "pipelineruns" => ("tekton.dev", "pipelineruns"),
        other => ("", other),
    };
    let (resource, sub) = rest.split_once('/').unwrap_or((rest, ""));
    api.can(user, &[], verb, group, resource, sub, namespace)
}

const ALICE: &str = "oidc:alice@example.com";
const BOB: &str = "oidc:bob@example.com";

/// A hand edit through the face, as `kubectl edit` makes it (a merge patch; field manager
/// `kubectl-edit`).
async fn hand_edit(kube: &KubeFace, namespace: &str, name: &str, patch: Value) -> reqwest::StatusCode {
    reqwest::Client::new()
        .patch(format!(
            "http://{}/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings/{name}?fieldManager=kubectl-edit",
            kube.addr
        ))
        .header("content-type", "application/merge-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .expect("PATCH")
        .status()
}

/// bob joins the group `ml` in the IdP (a SCIM PATCH adding him).
async fn add_bob(w: &World, ml: &str) {
    let r =
        w.s.patch(
            &format!("/Groups/{ml}"),
            ops(json!([{"op": "add", "path": "members", "value": [{"value": w.bob}]}])),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
}

async fn world(mode: &str) -> (World, String) {
    let w = World::with(&policy(mode), "policyReloadSeconds: 1\n").await;
    install_roles(&w.api);
    let ml = w.s.create_group("ml-engineers", &[&w.alice]).await;
    (w, ml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_grants_runs_and_logs_where_the_policy_says_and_a_leaver_loses_them_within_a_second() {
    let (w, ml) = world("enforce").await;
    w.api.create_namespace("prod");
    // Someone else's binding in a namespace scimgate manages, and one that has the name
    // scimgate would give its own: neither is touched.
    let theirs = json!({"apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": "oncall-view", "namespace": "ml-team"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "oidc:oncall@example.com"}]});
    w.api.rbac_put(theirs.clone());
    w.api.create_namespace("ml-squatted");
    let mut squatter = theirs.clone();
    squatter["metadata"] = json!({"name": ML_BINDING, "namespace": "ml-squatted"});
    w.api.rbac_put(squatter.clone());

    let granted = until(Duration::from_secs(10), async || {
        subjects(&binding(&w.api, "ml-team", ML_BINDING)) == [ALICE]
    })
    .await;
    assert!(
        granted.is_some(),
        "no binding: {:?}",
        binding(&w.api, "ml-team", ML_BINDING)
    );
    let b = binding(&w.api, "ml-team", ML_BINDING).unwrap();
    assert_eq!(
        b["metadata"]["labels"]["scimgate.io/managed-by"], "scimgate-access",
        "{b}"
    );
    assert_eq!(b["roleRef"]["name"], "scimgate-runs-submit");
    assert!(can(&w.api, ALICE, "list", "workflows", "ml-team"));
    assert!(can(&w.api, ALICE, "get", "pods/log", "ml-team"));
    assert!(can(&w.api, ALICE, "create", "pipelineruns", "ml-team"));
    assert!(!can(&w.api, ALICE, "list", "workflows", "prod"), "prod is not ml-*");
    assert!(!can(&w.api, ALICE, "get", "pods/log", "prod"));
    assert!(
        !can(&w.api, BOB, "list", "workflows", "ml-team"),
        "bob is not in ml-engineers"
    );
    // platform is not in the directory: its ClusterRoleBinding binds nobody.
    assert_eq!(
        subjects(&binding(&w.api, "", "scimgate:platform:scimgate-runs-view")),
        Vec::<String>::new()
    );

    // A namespace created later gets its binding.
    w.api.create_namespace("ml-late");
    let late = until(Duration::from_secs(10), async || {
        subjects(&binding(&w.api, "ml-late", ML_BINDING)) == [ALICE]
    })
    .await;
    assert!(late.is_some(), "the new namespace got no binding");

    // bob joins the group in the IdP: he gains it.
    add_bob(&w, &ml).await;
    let joined = until(Duration::from_secs(5), async || {
        can(&w.api, BOB, "list", "workflows", "ml-team")
    })
    .await;
    assert!(joined.is_some(), "{:?}", binding(&w.api, "ml-team", ML_BINDING));

    // A hand edit (mallory added, bob taken out) is put back.
    let edited = hand_edit(
        &w.kube,
        "ml-team",
        ML_BINDING,
        json!({"subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": ALICE},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "oidc:mallory@example.com"}]}),
    )
    .await;
    assert!(edited.is_success(), "{edited}");
    let restored = until(Duration::from_secs(5), async || {
        subjects(&binding(&w.api, "ml-team", ML_BINDING)) == [ALICE, BOB]
    })
    .await;
    assert!(restored.is_some(), "{:?}", binding(&w.api, "ml-team", ML_BINDING));
    assert!(!can(&w.api, "oidc:mallory@example.com", "list", "workflows", "ml-team"));

    // alice leaves: the IdP deactivates her. Measured from the SCIM response to the write.
    let r =
        w.s.patch(
            &format!("/Users/{}", w.alice),
            ops(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .await;
    let answered = Instant::now();
    assert!(r.status.is_success(), "{}", r.body);
    let gone = until(Duration::from_secs(5), async || {
        [ML_BINDING].iter().all(|_| {
            !subjects(&binding(&w.api, "ml-team", ML_BINDING)).contains(&ALICE.to_string())
                && !subjects(&binding(&w.api, "ml-late", ML_BINDING)).contains(&ALICE.to_string())
        })
    })
    .await;
    let lag = answered.elapsed();
    assert!(gone.is_some(), "{:?}", binding(&w.api, "ml-team", ML_BINDING));
    eprintln!(
        "alice out of every binding {} ms after the SCIM response",
        lag.as_millis()
    );
    assert!(!can(&w.api, ALICE, "list", "workflows", "ml-team"));
    assert!(!can(&w.api, ALICE, "get", "pods/log", "ml-team"));
    assert!(can(&w.api, BOB, "get", "pods/log", "ml-team"));

    // The records say who gained and lost access, and why.
    let records = w.decisions(1).await;
    let access: Vec<_> = records.iter().filter(|r| r.hook == "access").collect();
    let revoked: Vec<_> = access
        .iter()
        .filter(|r| r.outcome == "revoked" && r.user_id.as_deref() == Some(w.alice.as_str()))
        .collect();
    assert_eq!(revoked.len(), 2, "ml-team and ml-late: {access:#?}");
    assert!(
        revoked
            .iter()
            .all(|r| r.reason.contains("deactivated in the identity provider")),
        "{revoked:#?}"
    );
    assert!(access
        .iter()
        .any(|r| r.outcome == "granted" && r.user_id.as_deref() == Some(w.bob.as_str())));
    let repaired: Vec<_> = access.iter().filter(|r| r.outcome == "repaired").collect();
    assert_eq!(repaired.len(), 1, "{access:#?}");
    assert!(repaired[0].reason.contains("kubectl-edit"), "{repaired:?}");

    // Nobody else's binding was touched.
    assert_eq!(
        binding(&w.api, "ml-team", "oncall-view").unwrap()["subjects"],
        theirs["subjects"]
    );
    let kept = binding(&w.api, "ml-squatted", ML_BINDING).unwrap();
    assert_eq!(kept["subjects"], squatter["subjects"], "{kept}");
    assert!(kept["metadata"]["labels"].is_null(), "{kept}");

    // Someone strips scimgate's label from its binding in ml-late: it is theirs now. scimgate's
    // watch no longer selects it (a DELETED event, as upstream's filtered watch reports it); the
    // create it then tries fails on the name, and the binding is left as they keep it, even when
    // the group changes.
    let stripped = w
        .api
        .hand_edit(
            "kubectl-label",
            "rolebindings",
            "ml-late",
            ML_BINDING,
            json!({"metadata": {"labels": {"scimgate.io/managed-by": null}}}),
        )
        .expect("label removed");
    let r =
        w.s.patch(
            &format!("/Groups/{ml}"),
            ops(json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", w.bob)}])),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let bob_out = until(Duration::from_secs(5), async || {
        subjects(&binding(&w.api, "ml-team", ML_BINDING)).is_empty()
    })
    .await;
    assert!(bob_out.is_some(), "{:?}", binding(&w.api, "ml-team", ML_BINDING));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let theirs_now = binding(&w.api, "ml-late", ML_BINDING).expect("still there");
    assert_eq!(theirs_now["subjects"], stripped["subjects"], "{theirs_now}");
    assert!(
        theirs_now["metadata"]["labels"].get("scimgate.io/managed-by").is_none(),
        "{theirs_now}"
    );

    let metrics = w.s.metrics().await;
    for series in [
        "scimgate_access_bindings 2",
        "scimgate_access_writer 1",
        "scimgate_access_drift_repaired_total 1",
        "scimgate_access_writes_total{verb=\"create\",outcome=\"taken\"}",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    assert!(
        metrics.contains("scimgate_access_reconcile_lag_seconds_count"),
        "{metrics}"
    );
}

/// `scimgate access …` against the face and the server's data dir.
fn access_command(w: &World, args: &[&str]) -> (i32, String, String) {
    let dir = w.s.dir.path();
    let (policy, kubeconfig) = (dir.join("policy.yaml"), dir.join("kubeconfig"));
    let mut all: Vec<&std::ffi::OsStr> = vec!["access".as_ref()];
    all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
    all.extend([
        "--policy".as_ref(),
        policy.as_os_str(),
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
    ]);
    crate::support::scimgate(&all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_plan_says_what_dry_run_would_write_and_access_of_says_what_a_person_can_do_and_why() {
    let (w, ml) = world("dry-run").await;
    // Fresh: two bindings to create, alice in the one for ml-team.
    let (code, out, err) = access_command(&w, &["plan"]);
    let mut shown = out.clone();
    assert_eq!(code, 1, "something would change: {out}{err}");
    assert!(
        out.starts_with("access plan (mode dry-run): 2 to create, 0 to change, 0 to delete"),
        "{out}"
    );
    assert!(
        out.lines().any(
            |l| l.trim_start().starts_with("create  RoleBinding") && l.contains(&format!(" ml-team/{ML_BINDING} "))
        ),
        "{out}"
    );
    assert!(out.contains(&format!("+ {ALICE}")), "{out}");
    assert!(out.contains("note: group 'platform'"), "{out}");
    // Dry-run writes nothing, however long it runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(binding(&w.api, "ml-team", ML_BINDING).is_none());
    assert!(w.s.metrics().await.contains("scimgate_access_pending_changes 2"));

    // After a change in the IdP, the plan follows it.
    add_bob(&w, &ml).await;
    let (_, out, _) = access_command(&w, &["plan", "-o", "json"]);
    let plan: Value = serde_json::from_str(&out).expect(&out);
    let ml_team = plan["create"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["namespace"] == "ml-team")
        .cloned()
        .unwrap();
    assert_eq!(ml_team["add"], json!([ALICE, BOB]), "{plan}");

    // Enforced (the policy file changes; the server reloads it): written, and nothing left to do.
    std::fs::write(w.s.dir.path().join("policy.yaml"), policy("enforce")).unwrap();
    let written = until(Duration::from_secs(10), async || {
        subjects(&binding(&w.api, "ml-team", ML_BINDING)) == [ALICE, BOB]
    })
    .await;
    assert!(written.is_some());
    let (code, out, err) = access_command(&w, &["plan"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("access plan (mode enforce): 0 to create, 0 to change, 0 to delete, 2 as they should be"),
        "{out}"
    );

    // What alice can do, and why; who can read logs in ml-team.
    let (code, out, err) = access_command(&w, &["of", "alice@example.com"]);
    shown.push_str(&out);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!(
            "alice@example.com ({ALICE}) through scimgate's bindings: 1 binding(s)"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "RoleBinding ml-team/{ML_BINDING}  via group ml-engineers  → ClusterRole scimgate-runs-submit"
        )),
        "{out}"
    );
    assert!(out.contains("pods, pods/log, events"), "the aggregated rules: {out}");
    let (_, out, _) = access_command(&w, &["who-can", "get", "pods/log", "-n", "ml-team"]);
    assert!(
        out.starts_with("who can get pods/log in ml-team through scimgate's bindings: 2"),
        "{out}"
    );
    assert!(out.contains("alice@example.com (oidc:alice@example.com)"), "{out}");
    let (_, out, _) = access_command(&w, &["who-can", "get", "pods/log", "-n", "prod"]);
    assert!(
        out.starts_with("who can get pods/log in prod through scimgate's bindings: 0"),
        "{out}"
    );

    // After she leaves: nothing.
    w.deactivate(&w.alice).await;
    let out_of_it = until(Duration::from_secs(5), async || {
        subjects(&binding(&w.api, "ml-team", ML_BINDING)) == [BOB]
    })
    .await;
    assert!(out_of_it.is_some());
    let (_, out, _) = access_command(&w, &["of", "alice@example.com"]);
    assert!(
        out.starts_with(&format!(
            "alice@example.com (not active in the identity provider) ({ALICE}) through scimgate's bindings: nothing"
        )),
        "{out}"
    );
    shown.push_str(&out);
    let (_, out, _) = access_command(&w, &["of", "oidc:alice@example.com"]);
    assert!(
        out.contains("(not active in the identity provider)") && out.contains(": nothing"),
        "{out}"
    );
    readme_example_holds(&shown);
}

/// The README's worked example (the `text` blocks of its Access section): every line is among
/// what the commands printed, whitespace runs aside.
fn readme_example_holds(printed: &str) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let start = readme.find("## Access").expect("the README's Access section");
    let end = readme[start + 1..]
        .find("\n## ")
        .map_or(readme.len(), |e| start + 1 + e);
    let squeeze = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let printed: Vec<String> = printed.lines().map(squeeze).collect();
    let mut lines = readme[start..end].lines();
    let mut checked = 0;
    while let Some(l) = lines.next() {
        if l.trim() != "```text" {
            continue;
        }
        for line in lines.by_ref().take_while(|l| l.trim() != "```") {
            assert!(
                printed.contains(&squeeze(line)),
                "the README shows\n{line}\nbut the commands printed\n{}",
                printed.join("\n")
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked} lines checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_write_each_binding_once_and_the_lease_moves_when_the_writer_stops() {
    let Some(url) = crate::support::postgres_db("two_replicas_write_each_binding_once").await else {
        return;
    };
    let mut kube = KubeFace::bind().await;
    let deployment = crate::support::Deployment::with_policy(&url, &policy("enforce"), "", &kube);
    let a = deployment.replica().await;
    let api = ApiServer::new(&a);
    install_roles(&api);
    kube.serve(&api);
    let lease = |k: &KubeFace| k.reports().lease("scimgate", "scimgate-access");
    let taken = until(Duration::from_secs(10), async || lease(&kube).is_some()).await;
    assert!(taken.is_some(), "the first replica never took the Lease");
    let b = deployment.replica().await;
    let alice = a.create_user("alice@example.com").await;
    let bob = b.create_user("bob@example.com").await;
    b.create_group("ml-engineers", &[&alice, &bob]).await;
    let both = until(Duration::from_secs(10), async || {
        subjects(&binding(&api, "ml-team", ML_BINDING)) == [ALICE, BOB]
    })
    .await;
    assert!(both.is_some(), "{:?}", binding(&api, "ml-team", ML_BINDING));
    // Both replicas follow every change; one writes. Each binding was created once (the group
    // may have come in one write or two: a create, maybe an apply), never by both.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = kube.rbac_writes();
    assert!((2..=3).contains(&writes), "{writes} writes for 2 bindings");
    let holder = lease(&kube).expect("the Lease")["spec"]["holderIdentity"].clone();

    // The writer stops; its Lease runs out after 15 s; the other takes it and writes.
    drop(a.stop().await);
    b.patch(
        &format!("/Users/{alice}"),
        ops(json!([{"op": "replace", "value": {"active": false}}])),
    )
    .await;
    let followed = until(Duration::from_secs(30), async || {
        subjects(&binding(&api, "ml-team", ML_BINDING)) == [BOB]
    })
    .await;
    assert!(
        followed.is_some(),
        "{:?}; lease {:?}",
        binding(&api, "ml-team", ML_BINDING),
        lease(&kube)
    );
    let now = lease(&kube).expect("the Lease");
    assert_ne!(now["spec"]["holderIdentity"], holder, "{now}");
    assert_eq!(kube.rbac_writes(), writes + 1, "one apply by the new writer");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_that_cannot_be_changed_is_deleted_rather_than_left_granting_a_leaver() {
    let (w, ml) = world("enforce").await;
    add_bob(&w, &ml).await;
    let both = until(Duration::from_secs(10), async || {
        subjects(&binding(&w.api, "ml-team", ML_BINDING)) == [ALICE, BOB]
    })
    .await;
    assert!(both.is_some(), "{:?}", binding(&w.api, "ml-team", ML_BINDING));
    // From now on the API server refuses scimgate's PATCHes (a role edited, an admission policy
    // of someone else's): the apply that would take alice out keeps failing.
    w.kube.forbid_patches(true);
    let uid = binding(&w.api, "ml-team", ML_BINDING).unwrap()["metadata"]["uid"].clone();
    w.deactivate(&w.alice).await;
    // After three failures it deletes the binding (a DELETE, still allowed) and creates what the
    // policy asks for afresh (a POST): alice out, bob back, through a new object.
    let out = until(Duration::from_secs(20), async || {
        binding(&w.api, "ml-team", ML_BINDING).is_some_and(|b| b["metadata"]["uid"] != uid)
    })
    .await;
    assert!(out.is_some(), "{:?}", binding(&w.api, "ml-team", ML_BINDING));
    assert!(!can(&w.api, ALICE, "list", "workflows", "ml-team"));
    let back = until(Duration::from_secs(5), async || {
        can(&w.api, BOB, "list", "workflows", "ml-team")
    })
    .await;
    assert!(back.is_some(), "{:?}", binding(&w.api, "ml-team", ML_BINDING));
    let records = w.decisions(1).await;
    let withdrawn: Vec<_> = records
        .iter()
        .filter(|r| r.hook == "access" && r.outcome == "revoked" && r.reason.contains("could not be written"))
        .collect();
    assert_eq!(withdrawn.len(), 2, "alice and bob, each once: {records:#?}");
    assert!(
        withdrawn.iter().all(|r| r.reason.contains("is forbidden")),
        "{withdrawn:#?}"
    );
    w.kube.forbid_patches(false);
}
