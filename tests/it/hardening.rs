//! What the policy judges is what runs (issue 12, sections 1, 2 and 5), every write through the
//! API-server emulator: approvals and spec changes that used to pass as "no action", service
//! accounts and templates a run could step around the rules with, and the shipped policies
//! driving the Argo and Tekton lifecycles they are written for.

use crate::actors::{argo_controller, argo_server, claims, kubectl, tekton_controller};
use crate::apiserver::{person, service_account};
use crate::support::{allowed, ann, policy_with_rules, refused, scimgate, World};
use serde_json::{json, Value};

/// The test policy's identity section with rules that constrain `runAs` and `templates`: in
/// `team-a` one pinned git revision; in `team-b` the same file at any revision.
fn constrained() -> String {
    policy_with_rules(
        r#"
rules:
  - name: team-run
    allow: [submit, cancel, update]
    groups: [pipeline-users]
    namespaces: ["team-a"]
    runAs: ["runner"]
    templates: ["lib-*", "git:https://git.example.com/lib:pipelines/build.yaml@3f2c9d1"]
  - name: loose-run
    allow: [submit]
    groups: [pipeline-users]
    namespaces: ["team-b"]
    templates: ["git:https://git.example.com/lib:pipelines/build.yaml"]
  - name: team-approve
    allow: [approve]
    groups: [release-approvers]
    namespaces: ["team-*"]
    distinctApprover: true
"#,
    )
}

/// A run parked at a Suspend node `approve`, then a container step; `continue_on` lets the run
/// go on when the gate fails.
fn gated(continue_on: bool) -> Value {
    let mut gate = json!({"name": "approve", "template": "approve"});
    if continue_on {
        gate["continueOn"] = json!({"failed": true, "error": true});
    }
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "release-", "namespace": "team-a"},
        "spec": {"entrypoint": "main", "templates": [
            {"name": "main", "steps": [[gate], [{"name": "ship", "template": "ship"}]]},
            {"name": "approve", "suspend": {}},
            {"name": "ship", "container": {"image": "busybox"}}]}})
}

/// `wf` submitted by alice and parked by the workflow-controller at its Running Suspend node; the
/// stored object and the node's id.
async fn parked(w: &World, wf: &Value) -> (Value, String) {
    let wf = allowed(kubectl(&w.api, "alice@example.com").create(wf).await).object;
    allowed(argo_controller(&w.api).operate(&wf, "Running", Some("approve")).await);
    let name = wf["metadata"]["name"].as_str().unwrap_or_default();
    let node = format!("{name}-approve");
    (w.api.stored(&wf).expect("stored"), node)
}

fn set_phase(node: &str, phase: &str) -> impl FnOnce(&mut Value) {
    let (node, phase) = (node.to_string(), phase.to_string());
    move |o: &mut Value| o["status"]["nodes"][&node]["phase"] = json!(phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_suspend_gate_skipped_omitted_retyped_or_removed_is_an_approval() {
    let w = World::new().await;
    let alice = kubectl(&w.api, "alice@example.com");
    let mallory = kubectl(&w.api, "mallory@example.com");
    let (wf, node) = parked(&w, &gated(false)).await;
    // Argo goes on past a Skipped or Omitted node (`NodePhase.Fulfilled`): an approval, which
    // mallory (no group) may not give and alice (the submitter) may not give herself.
    for phase in ["Skipped", "Omitted", "Succeeded"] {
        let m = refused(mallory.edit(&wf, set_phase(&node, phase)).await);
        assert!(m.message.contains("may not approve Workflow"), "{phase}: {}", m.message);
        let own = refused(alice.edit(&wf, set_phase(&node, phase)).await);
        assert!(own.message.contains("four eyes"), "{phase}: {}", own.message);
    }
    let retyped = refused(
        alice
            .edit(&wf, |o| o["status"]["nodes"][&node]["type"] = json!("Pod"))
            .await,
    );
    assert!(retyped.message.contains("four eyes"), "{}", retyped.message);
    let removed = refused(
        alice
            .edit(&wf, |o| {
                o["status"]["nodes"].as_object_mut().map(|n| n.remove(&node));
            })
            .await,
    );
    assert!(removed.message.contains("four eyes"), "{}", removed.message);
    // An approver who is not the submitter may, and the approval is stamped.
    let skipped = allowed(
        kubectl(&w.api, "bob@example.com")
            .edit(&wf, set_phase(&node, "Skipped"))
            .await,
    )
    .object;
    assert_eq!(ann(&skipped, "scimgate.io/approved-by"), "bob@example.com");
    // The controller moving its own node on is no one's act (and never reaches us).
    let stored = w.api.stored(&wf).expect("stored");
    let mut own = stored.clone();
    own["status"]["nodes"][&node]["phase"] = json!("Succeeded");
    allowed(w.api.update(&argo_controller(&w.api).user, own).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_suspend_gate_failed_is_a_cancel_unless_the_run_goes_on_past_it() {
    let w = World::new().await;
    let mallory = kubectl(&w.api, "mallory@example.com");
    let alice = kubectl(&w.api, "alice@example.com");
    // No continueOn: Error (or Failed) ends the run, as Argo's node stop does — a cancel,
    // which the submitter may do and mallory may not.
    let (wf, node) = parked(&w, &gated(false)).await;
    let m = refused(mallory.edit(&wf, set_phase(&node, "Error")).await);
    assert!(m.message.contains("may not cancel Workflow"), "{}", m.message);
    let ended = allowed(alice.edit(&wf, set_phase(&node, "Error")).await).object;
    assert_eq!(ann(&ended, "scimgate.io/cancelled-by"), "alice@example.com");
    // With continueOn the run goes on past a failed gate: that is an approval.
    let (wf, node) = parked(&w, &gated(true)).await;
    let own = refused(alice.edit(&wf, set_phase(&node, "Failed")).await);
    assert!(own.message.contains("four eyes"), "{}", own.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_status_written_by_a_person_is_an_update_and_a_stored_spec_is_judged() {
    let w = World::with(&constrained(), "").await;
    let alice = kubectl(&w.api, "alice@example.com");
    let wf = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "train-", "namespace": "team-a"},
        "spec": {"serviceAccountName": "runner", "workflowTemplateRef": {"name": "lib-train"}}});
    let wf = allowed(alice.create(&wf).await).object;
    let ctl = argo_controller(&w.api);
    allowed(ctl.operate(&wf, "Running", None).await);
    // The controller stores the spec it executes (operator.go setStoredWfSpec): its own write,
    // with the referenced template's container in it, is no one's act…
    let mut stored = w.api.stored(&wf).expect("stored");
    stored["status"]["storedWorkflowTemplateSpec"] = json!({"serviceAccountName": "runner", "entrypoint": "main",
        "templates": [{"name": "main", "container": {"image": "trainer:1"}}]});
    allowed(w.api.update(&ctl.user, stored).await);
    // …and does not count against alice's later edits.
    let noted = allowed(
        alice
            .edit(&wf, |o| o["status"]["message"] = json!("restarted by hand"))
            .await,
    )
    .object;
    assert_eq!(
        ann(&noted, "scimgate.io/updated-by"),
        "alice@example.com",
        "a person's status write is an update, recorded and stamped"
    );
    // alice writing the stored spec: judged like a spec.
    let admin = refused(
        alice
            .edit(&wf, |o| {
                o["status"]["storedWorkflowTemplateSpec"]["serviceAccountName"] = json!("cluster-admin")
            })
            .await,
    );
    assert!(
        admin.message.contains("may not update Workflow") && admin.message.contains("'cluster-admin'"),
        "{}",
        admin.message
    );
    let swapped = refused(
        alice
            .edit(&wf, |o| {
                o["status"]["storedWorkflowTemplateSpec"]["templates"][0]["container"]["image"] = json!("evil:1")
            })
            .await,
    );
    assert!(
        swapped.message.contains("container template 'main'"),
        "{}",
        swapped.message
    );
    // What a templateRef resolves to first (Workflow.GetStoredTemplate): the same.
    let injected = refused(
        alice
            .edit(&wf, |o| {
                o["status"]["storedTemplates"] =
                    json!({"namespaced/lib-train/main": {"name": "main", "script": {"image": "evil:1", "source": "id"}}})
            })
            .await,
    );
    assert!(injected.message.contains("script template"), "{}", injected.message);
    // Someone in no group may not touch the status at all.
    let m = refused(
        kubectl(&w.api, "mallory@example.com")
            .edit(&wf, |o| o["status"]["phase"] = json!("Succeeded"))
            .await,
    );
    assert!(m.message.contains("may not update Workflow"), "{}", m.message);
    // A new run carrying a stored spec is judged on it at submit.
    let mut carried = wf.clone();
    for k in [
        "name",
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "annotations",
        "labels",
    ] {
        carried["metadata"].as_object_mut().map(|m| m.remove(k));
    }
    carried["status"] = json!({"storedWorkflowTemplateSpec": {"serviceAccountName": "cluster-admin"}});
    let at_submit = refused(alice.create(&carried).await);
    assert!(at_submit.message.contains("'cluster-admin'"), "{}", at_submit.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_run_cancelled_by_a_person_is_a_cancel() {
    let w = World::new().await;
    let tr = json!({"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
        "metadata": {"name": "build-1", "namespace": "team-a"},
        "spec": {"taskRef": {"name": "build"}}});
    let tr = allowed(kubectl(&w.api, "alice@example.com").create(&tr).await).object;
    let cancel = json!({"spec": {"status": "TaskRunCancelled"}});
    let m = refused(
        kubectl(&w.api, "mallory@example.com")
            .patch_merge(&tr, cancel.clone())
            .await,
    );
    assert!(m.message.contains("may not cancel TaskRun"), "{}", m.message);
    let c = allowed(kubectl(&w.api, "alice@example.com").patch_merge(&tr, cancel).await).object;
    assert_eq!(ann(&c, "scimgate.io/cancelled-by"), "alice@example.com");
    assert!(ann(&c, "scimgate.io/updated-by").is_null(), "{}", c["metadata"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_template_that_runs_something_never_matches_a_templates_rule() {
    let w = World::with(&constrained(), "").await;
    let alice = kubectl(&w.api, "alice@example.com");
    let wf = |extra: Option<Value>| {
        let mut steps = vec![json!([{"name": "build", "templateRef": {"name": "lib-build", "template": "build"}}])];
        let mut templates = vec![json!({"name": "gate", "suspend": {}})];
        if let Some(t) = extra {
            steps.push(json!([{"name": "sneak", "template": t["name"]}]));
            templates.push(t);
        }
        templates.insert(0, json!({"name": "main", "steps": steps}));
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"generateName": "build-", "namespace": "team-a"},
            "spec": {"serviceAccountName": "runner", "entrypoint": "main", "templates": templates}})
    };
    // Only orchestration inline (steps, suspend) beside an allowed templateRef: allowed.
    allowed(alice.create(&wf(None)).await);
    for (t, what) in [
        (
            json!({"name": "s", "script": {"image": "x", "source": "id"}}),
            "script template 's'",
        ),
        (
            json!({"name": "c", "container": {"image": "x"}}),
            "container template 'c'",
        ),
        (
            json!({"name": "r", "resource": {"action": "create", "manifest": "{}"}}),
            "resource template 'r'",
        ),
        (json!({"name": "h", "http": {"url": "https://x"}}), "http template 'h'"),
        (
            json!({"name": "k", "containerSet": {"containers": [{"name": "a", "image": "x"}]}}),
            "containerSet template 'k'",
        ),
    ] {
        let r = refused(alice.create(&wf(Some(t))).await);
        assert!(
            r.message.contains(what) && r.message.contains("inline"),
            "{what}: {}",
            r.message
        );
    }
    // The same for a CronWorkflow's workflowSpec.
    let mut cron = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
        "metadata": {"name": "nightly", "namespace": "team-a"}, "spec": {"schedule": "0 1 * * *"}});
    cron["spec"]["workflowSpec"] = wf(Some(json!({"name": "c", "container": {"image": "x"}})))["spec"].clone();
    let r = refused(alice.create(&cron).await);
    assert!(r.message.contains("container template 'c'"), "{}", r.message);
    // Tekton: an inline pipelineSpec (even of referenced tasks), an inline taskSpec.
    let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": "inline-1", "namespace": "team-a"},
        "spec": {"taskRunTemplate": {"serviceAccountName": "runner"},
                 "pipelineSpec": {"tasks": [{"name": "a", "taskRef": {"name": "lib-a"}}]}}});
    let r = refused(alice.create(&pr).await);
    assert!(r.message.contains("pipelineSpec"), "{}", r.message);
    let tr = json!({"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
        "metadata": {"name": "inline-2", "namespace": "team-a"},
        "spec": {"serviceAccountName": "runner", "taskSpec": {"steps": [{"name": "s", "image": "x"}]}}});
    let r = refused(alice.create(&tr).await);
    assert!(r.message.contains("taskSpec"), "{}", r.message);
}

/// A change to a Workflow's spec and what the refusal must name.
type SpecChange<'a> = (&'a dyn Fn(&mut Value), &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_place_a_run_names_its_pods_service_account_is_run_as() {
    let w = World::with(&constrained(), "").await;
    let alice = kubectl(&w.api, "alice@example.com");
    let wf = |change: &dyn Fn(&mut Value)| {
        let mut wf = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"generateName": "train-", "namespace": "team-a"},
            "spec": {"serviceAccountName": "runner", "workflowTemplateRef": {"name": "lib-train"}}});
        change(&mut wf["spec"]);
        wf
    };
    // A podSpecPatch that leaves the service account alone: allowed.
    allowed(
        alice
            .create(&wf(&|s| {
                s["podSpecPatch"] = json!(r#"{"containers":[{"name":"main","resources":{"limits":{"cpu":"2"}}}]}"#)
            }))
            .await,
    );
    let cases: [SpecChange; 5] = [
        (
            &|s| s["podSpecPatch"] = json!(r#"{"serviceAccountName": "cluster-admin"}"#),
            "'cluster-admin'",
        ),
        (
            &|s| s["templateDefaults"] = json!({"podSpecPatch": "serviceAccountName: builder-admin\n"}),
            "'builder-admin'",
        ),
        (
            &|s| {
                s["templates"] = json!([{"name": "main", "steps": [[{"name": "a", "templateRef": {"name": "lib-a", "template": "a"}}]],
                "podSpecPatch": "serviceAccount: legacy-admin"}])
            },
            "'legacy-admin'",
        ),
        (
            &|s| s["podSpecPatch"] = json!("{{workflow.parameters.patch}}"),
            "cannot read",
        ),
        (
            &|s| s["podSpecPatch"] = json!("{\"serviceAccountName\": ["),
            "cannot read",
        ),
    ];
    for (change, what) in cases {
        let r = refused(alice.create(&wf(change)).await);
        assert!(
            r.message.contains("runs as service account") && r.message.contains(what),
            "{what}: {}",
            r.message
        );
    }
    // Tekton: a pipeline task's own service account.
    let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": "sa-1", "namespace": "team-a"},
        "spec": {"pipelineRef": {"name": "lib-deploy"}, "taskRunTemplate": {"serviceAccountName": "runner"},
                 "taskRunSpecs": [{"pipelineTaskName": "push", "serviceAccountName": "registry-admin"}]}});
    let r = refused(alice.create(&pr).await);
    assert!(r.message.contains("'registry-admin'"), "{}", r.message);
}

fn git_run(name: &str, ns: &str, revision: &str) -> Value {
    json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"taskRunTemplate": {"serviceAccountName": "runner"},
            "pipelineRef": {"resolver": "git", "params": [
                {"name": "url", "value": "https://git.example.com/lib"},
                {"name": "revision", "value": revision},
                {"name": "pathInRepo", "value": "pipelines/build.yaml"}]}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_ref_is_its_revision_and_an_unpinned_pattern_warns() {
    let w = World::with(&constrained(), "").await;
    let alice = kubectl(&w.api, "alice@example.com");
    // Pinned to 3f2c9d1: that commit passes, an attacker's branch of the same file does not.
    allowed(alice.create(&git_run("pinned-1", "team-a", "3f2c9d1")).await);
    let r = refused(alice.create(&git_run("pinned-2", "team-a", "attacker-branch")).await);
    assert!(
        r.message
            .contains("'git:https://git.example.com/lib:pipelines/build.yaml@attacker-branch'"),
        "{}",
        r.message
    );
    // A pattern without @ matches any revision…
    allowed(alice.create(&git_run("loose-1", "team-b", "attacker-branch")).await);
    // …and `policy check` says so.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, constrained()).expect("write");
    let (code, out, err) = scimgate(&["policy".as_ref(), "check".as_ref(), file.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{out}");
    assert!(
        warnings[0].contains("rule 'loose-run'")
            && warnings[0].contains("'git:https://git.example.com/lib:pipelines/build.yaml' has no @<revision>"),
        "{out}"
    );
}

/// Every policy the project ships: `kind: Policy` documents (and ConfigMap values holding one)
/// in `src/`, `manifests/`, `bench/` and `examples/`, and every `yaml` block of the README and
/// of `docs/*.md` that is one — with where it came from.
fn shipped_policies() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let is_policy = |text: &str| {
        serde_yaml_ng::from_str::<Value>(text)
            .is_ok_and(|v| v["kind"] == "Policy" && v["apiVersion"] == "scimgate.io/v1")
    };
    let mut found = Vec::new();
    let mut dirs: Vec<std::path::PathBuf> = ["src", "manifests", "bench", "examples"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if !path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            for (i, doc) in text.split("\n---").enumerate() {
                let at = format!("{}#{i}", path.strip_prefix(root).unwrap_or(&path).display());
                if is_policy(doc) {
                    found.push((at, doc.to_string()));
                    continue;
                }
                let Ok(v) = serde_yaml_ng::from_str::<Value>(doc) else {
                    continue;
                };
                for (k, val) in v["data"].as_object().into_iter().flatten() {
                    if let Some(t) = val.as_str().filter(|t| is_policy(t)) {
                        found.push((format!("{at} data.{k}"), t.to_string()));
                    }
                }
            }
        }
    }
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("read docs").flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            pages.push(entry.path());
        }
    }
    for page in pages {
        let text = std::fs::read_to_string(&page).expect("read page");
        let at = page.strip_prefix(root).unwrap_or(&page).display().to_string();
        let mut lines = text.lines();
        let mut n = 0;
        while let Some(l) = lines.next() {
            if l.trim() == "```yaml" {
                let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
                let block = block.join("\n");
                if is_policy(&block) {
                    n += 1;
                    found.push((format!("{at} yaml block {n}"), block));
                }
            }
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_policy_runs_the_argo_and_tekton_lifecycles_it_is_written_for() {
    let policies = shipped_policies();
    let names: Vec<&str> = policies.iter().map(|(at, _)| at.as_str()).collect();
    for want in [
        "src/policy/example.yaml",
        "manifests/base/policy.yaml",
        "bench/admission-policy.yaml",
        "docs/policy.md yaml block",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(want)),
            "{want} not found among {names:?}"
        );
    }
    let tour: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tour/workflow.yaml")).expect("tour"),
    )
    .expect("yaml");
    for (at, text) in &policies {
        let w = World::with(text, "").await;
        // The people these policies are written for: ml engineers (alice submits, bob — another
        // ml engineer and a release approver — approves).
        w.s.create_group("ml-engineers", &[&w.alice, &w.bob]).await;
        let alice = kubectl(&w.api, "alice@example.com");

        // Tekton: a PipelineRun whose controller creates its TaskRuns for alice, then a cancel
        // the controller carries to its children.
        let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
            "metadata": {"name": "train-1", "namespace": "ml-team"},
            "spec": {"pipelineRef": {"name": "ml-train"}, "taskRunTemplate": {"serviceAccountName": "ml-runner"}}});
        let pr = allowed(alice.create(&pr).await).object;
        let ctl = tekton_controller(&w.api);
        allowed(
            ctl.set_status(
                &pr,
                json!({"conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Running"}]}),
            )
            .await,
        );
        let tr = ctl.create_task_run(&pr, "build", json!({"name": "ml-build"})).await;
        let tr = tr
            .unwrap_or_else(|s| panic!("{at}: the controller's TaskRun was refused: {}", s.message))
            .object;
        assert_eq!(ann(&tr, "scimgate.io/submitted-by"), "alice@example.com", "{at}");
        allowed(alice.patch_merge(&pr, json!({"spec": {"status": "Cancelled"}})).await);
        allowed(ctl.cancel_child(&tr).await);

        // Argo: the tour's Workflow, parked at a Suspend node, resumed by bob in the Argo UI.
        let wf = alice.create(&tour).await;
        let wf = wf
            .unwrap_or_else(|s| panic!("{at}: the tour's workflow was refused: {}", s.message))
            .object;
        allowed(argo_controller(&w.api).operate(&wf, "Running", Some("approve")).await);
        let resumed = argo_server(&w.api)
            .resume(&claims("bob-sub", "bob@example.com"), &wf)
            .await;
        let resumed = resumed
            .unwrap_or_else(|s| panic!("{at}: bob's resume was refused: {}", s.message))
            .object;
        assert_eq!(ann(&resumed, "scimgate.io/approved-by"), "bob@example.com", "{at}");

        // A CronWorkflow of alice's spawning a run.
        let cron = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
            "metadata": {"name": "nightly", "namespace": "ml-team"},
            "spec": {"schedule": "0 1 * * *", "workflowSpec": tour["spec"]}});
        let cron = allowed(alice.create(&cron).await).object;
        let run = argo_controller(&w.api).spawn(&cron, chrono::Utc::now()).await;
        let run = run
            .unwrap_or_else(|s| panic!("{at}: the CronWorkflow's run was refused: {}", s.message))
            .object;
        assert_eq!(ann(&run, "scimgate.io/submitted-by"), "alice@example.com", "{at}");

        // The CI bot, where the policy names it: its PipelineRun and the TaskRuns it spawns.
        if text.contains("ci:el-github") {
            let bot = crate::actors::Kubectl {
                api: &w.api,
                user: service_account("ci", "el-github"),
            };
            let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
                "metadata": {"name": "push-1", "namespace": "ci"},
                "spec": {"pipelineRef": {"name": "build"}}});
            let pr = allowed(bot.create(&pr).await).object;
            let tr = ctl.create_task_run(&pr, "build", json!({"name": "build"})).await;
            tr.unwrap_or_else(|s| panic!("{at}: the CI bot's TaskRun was refused: {}", s.message));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tekton_status_written_by_a_person_is_judged_and_a_stored_spec_there_is_inline() {
    let w = World::with(&constrained(), "").await;
    let alice = kubectl(&w.api, "alice@example.com");
    let pr = json!({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": "deploy-1", "namespace": "team-a"},
        "spec": {"pipelineRef": {"name": "lib-deploy"}, "taskRunTemplate": {"serviceAccountName": "runner"}}});
    let pr = allowed(alice.create(&pr).await).object;
    // The controller stores the pipeline it resolved (pipelinerun.go): its own status write.
    let ctl = tekton_controller(&w.api);
    allowed(
        ctl.set_status(
            &pr,
            json!({"pipelineSpec": {"tasks": [{"name": "build", "taskRef": {"name": "lib-build"}}]}}),
        )
        .await,
    );
    // alice replacing it through /status: Tekton would run hers instead of the ref
    // (pipelineref.go GetPipelineFunc) — an inline pipeline, refused where templates are named.
    let mut mine = w.api.stored(&pr).expect("stored");
    mine["status"]["pipelineSpec"] =
        json!({"tasks": [{"name": "build", "taskSpec": {"steps": [{"name": "s", "image": "evil:1"}]}}]});
    let r = refused(w.api.update_status(&person("alice@example.com"), mine).await);
    assert!(
        r.message.contains("may not update PipelineRun") && r.message.contains("pipelineSpec"),
        "{}",
        r.message
    );
    // Someone in no group may not write a run's status at all.
    let mut forged = w.api.stored(&pr).expect("stored");
    forged["status"]["conditions"] = json!([{"type": "Succeeded", "status": "True", "reason": "Succeeded"}]);
    let r = refused(w.api.update_status(&person("mallory@example.com"), forged).await);
    assert!(r.message.contains("may not update PipelineRun"), "{}", r.message);
    // A TaskRun's status.taskSpec (taskref.go GetTaskFuncFromTaskRun) likewise.
    let tr = json!({"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
        "metadata": {"name": "build-1", "namespace": "team-a"},
        "spec": {"serviceAccountName": "runner", "taskRef": {"name": "lib-build"}}});
    let tr = allowed(alice.create(&tr).await).object;
    let mut mine = w.api.stored(&tr).expect("stored");
    mine["status"]["taskSpec"] = json!({"steps": [{"name": "s", "image": "evil:1"}]});
    let r = refused(w.api.update_status(&person("alice@example.com"), mine).await);
    assert!(r.message.contains("taskSpec"), "{}", r.message);
}
