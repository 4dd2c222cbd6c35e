//! `manifests/`: every overlay renders with `kubectl kustomize`, carries the settings a
//! fail-closed admission webhook needs, and the binary starts with the Deployment's own flags.

use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// A copy of manifests/ with certificates made by `scimgate certs`, as docs/deployment.md says; returns
/// the copy and the printed caBundle.
pub(crate) fn prepared() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("manifests");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests"), &m);
    let embedded = m.join("overlays/embedded");
    let out = Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(["certs", "--service", "scimgate", "--namespace", "scimgate", "--out"])
        .arg(embedded.join("certs"))
        .output()
        .expect("scimgate certs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ca_bundle = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::write(embedded.join("cabundle.env"), format!("caBundle={ca_bundle}\n")).expect("env");
    // The HA overlay takes the same files, plus the database URL.
    let ha = m.join("overlays/ha-postgres");
    copy_dir(&embedded.join("certs"), &ha.join("certs"));
    std::fs::write(ha.join("cabundle.env"), format!("caBundle={ca_bundle}\n")).expect("env");
    std::fs::write(
        ha.join("store.env"),
        "url=postgres://scimgate:secret@postgres.db.svc:5432/scimgate?sslmode=verify-full\n",
    )
    .expect("env");
    (dir, m, ca_bundle)
}

pub(crate) fn render(overlay: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(overlay)
        .output()
        .expect("kubectl is installed");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        overlay.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|d| Value::deserialize(d).ok())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} missing"))
}

fn check_common(docs: &[Value], overlay: &str) {
    for kind in [
        "Namespace",
        "ServiceAccount",
        "Deployment",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
        "ClusterRole",
        "ClusterRoleBinding",
    ] {
        assert!(docs.iter().any(|d| d["kind"] == kind), "{overlay}: no {kind}");
    }
    let d = find(docs, "Deployment", "scimgate");
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{overlay}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{overlay}"
    );
    assert!(pod["topologySpreadConstraints"].is_array(), "{overlay}");
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{overlay}");
    assert!(
        c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string(),
        "{overlay}"
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "ops", "{overlay}");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{overlay}");
    let svc = find(docs, "Service", "scimgate");
    assert_eq!(
        (
            svc["spec"]["ports"][0]["port"].as_u64(),
            svc["spec"]["ports"][0]["targetPort"].as_str()
        ),
        (Some(443), Some("admission"))
    );
    assert!(
        docs.iter()
            .any(|d| d["kind"] == "Service" && d["metadata"]["name"] == "scimgate-scim"),
        "{overlay}: SCIM Service"
    );
    let role = find(docs, "ClusterRole", "scimgate-audit-reader");
    for rule in role["rules"].as_array().into_iter().flatten() {
        assert_eq!(
            rule["verbs"],
            serde_json::json!(["get", "list"]),
            "{overlay}: read-only RBAC"
        );
    }
    // The owner lookup of controller-created runs: get/list/watch on the two owner kinds, get on
    // the Pipelines a PipelineRun names, for scimgate's own account, and nothing else.
    let owners = find(docs, "ClusterRole", "scimgate-owner-reader");
    assert_eq!(
        owners["rules"],
        serde_json::json!([
            {"apiGroups": ["argoproj.io"], "resources": ["cronworkflows"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["tekton.dev"], "resources": ["pipelineruns"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["tekton.dev"], "resources": ["pipelines"], "verbs": ["get"]},
        ]),
        "{overlay}"
    );
    // Argo's workflowDefaults: the one ConfigMap, read-only.
    let defaults = find(docs, "ClusterRole", "scimgate-argo-defaults-reader");
    assert_eq!(
        defaults["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["configmaps"],
            "resourceNames": ["workflow-controller-configmap"], "verbs": ["get", "list", "watch"]}]),
        "{overlay}"
    );
    // The offboarding sweep's report: Events, created, nothing else.
    let reporter = find(docs, "ClusterRole", "scimgate-offboarding-reporter");
    assert_eq!(
        reporter["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]),
        "{overlay}"
    );
    let binding = find(docs, "ClusterRoleBinding", "scimgate-owner-reader");
    assert_eq!(binding["roleRef"]["name"], "scimgate-owner-reader", "{overlay}");
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "scimgate", "namespace": "scimgate"}]),
        "{overlay}"
    );
    for (kind, path) in [
        ("MutatingWebhookConfiguration", "/mutate"),
        ("ValidatingWebhookConfiguration", "/validate"),
    ] {
        let cfg = find(docs, kind, "scimgate");
        for w in cfg["webhooks"].as_array().into_iter().flatten() {
            // New work and people's changes fail closed; the work already admitted never waits.
            let open = w["name"].as_str().is_some_and(|n| n.starts_with("running."));
            assert_eq!(
                w["failurePolicy"],
                if open { "Ignore" } else { "Fail" },
                "{overlay} {kind}"
            );
            assert_eq!(w["sideEffects"], "NoneOnDryRun", "{overlay} {kind}");
            assert_eq!(
                w["admissionReviewVersions"],
                serde_json::json!(["v1"]),
                "{overlay} {kind}"
            );
            assert!(
                w["timeoutSeconds"].as_u64().is_some_and(|t| t <= 10),
                "{overlay} {kind}"
            );
            assert_eq!(w["clientConfig"]["service"]["path"], path, "{overlay} {kind}");
            assert!(
                w["matchConditions"].as_array().is_some_and(|m| !m.is_empty()),
                "{overlay} {kind}: matchConditions"
            );
            let excluded = w["namespaceSelector"]["matchExpressions"][0]["values"].clone();
            assert_eq!(
                excluded,
                serde_json::json!(["kube-system", "scimgate"]),
                "{overlay} {kind}"
            );
            let mut resources: Vec<String> = w["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r["resources"].as_array().cloned().unwrap_or_default())
                .filter_map(|r| r.as_str().map(String::from))
                .collect();
            resources.sort();
            assert_eq!(
                resources,
                vec![
                    "clusterworkflowtemplates",
                    "cronworkflows",
                    "pipelineruns",
                    "pipelineruns/status",
                    "taskruns",
                    "taskruns/status",
                    "workflows",
                    "workflowtemplates"
                ],
                "{overlay} {kind}"
            );
            for r in w["rules"].as_array().into_iter().flatten() {
                assert_eq!(
                    r["operations"],
                    serde_json::json!(["CREATE", "UPDATE"]),
                    "{overlay} {kind}"
                );
            }
            if kind == "MutatingWebhookConfiguration" {
                assert_eq!(w["reinvocationPolicy"], "IfNeeded", "{overlay}");
            }
        }
    }
}

#[test]
fn overlays_render_with_the_settings_a_fail_closed_webhook_needs() {
    let (_dir, m, ca_bundle) = prepared();
    let embedded = render(&m.join("overlays/embedded"));
    check_common(&embedded, "embedded");
    for kind in ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"] {
        assert_eq!(
            find(&embedded, kind, "scimgate")["webhooks"][0]["clientConfig"]["caBundle"],
            ca_bundle.as_str(),
            "the printed caBundle is used"
        );
    }
    assert_eq!(find(&embedded, "Secret", "scimgate-tls")["type"], "kubernetes.io/tls");
    let d = find(&embedded, "Deployment", "scimgate");
    assert_eq!(
        (d["spec"]["replicas"].as_u64(), d["spec"]["strategy"]["type"].as_str()),
        (Some(1), Some("Recreate"))
    );
    assert!(d["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v["persistentVolumeClaim"]["claimName"] == "scimgate-data"));
    let cm = render(&m.join("overlays/cert-manager"));
    check_common(&cm, "cert-manager");
    for kind in ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"] {
        assert_eq!(
            find(&cm, kind, "scimgate")["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "scimgate/scimgate-serving"
        );
    }
    assert!(cm
        .iter()
        .any(|d| d["kind"] == "Certificate" && d["spec"]["secretName"] == "scimgate-tls"));
    let ha = render(&m.join("overlays/ha-postgres"));
    check_common(&ha, "ha-postgres");
    let d = find(&ha, "Deployment", "scimgate");
    assert_eq!(d["spec"]["replicas"].as_u64(), Some(3));
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let store_env = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "SCIMGATE_STORE")
        .expect("SCIMGATE_STORE");
    assert_eq!(store_env["valueFrom"]["secretKeyRef"]["name"], "scimgate-store");
    assert!(find(&ha, "Secret", "scimgate-store")["data"]["url"].is_string());
    assert!(find(&ha, "Secret", "scimgate-signing")["data"]["signing.key"].is_string());
    assert!(find(&ha, "ConfigMap", "scimgate-config")["data"]["config.yaml"]
        .as_str()
        .is_some_and(|c| c.contains("signingKey: /etc/scimgate/signing/signing.key")));
    assert!(c["args"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a == "--config=/etc/scimgate/config/config.yaml"));
    assert!(
        !ha.iter().any(|d| d["kind"] == "PersistentVolumeClaim"),
        "replicas keep no state of their own"
    );
    // Caller authentication: on in every overlay that can have it, off — explicitly — only in
    // the one for managed control planes; cert-manager also issues the API server's client pair.
    let args = |docs: &[Value]| -> Vec<String> {
        find(docs, "Deployment", "scimgate")["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(String::from))
            .collect()
    };
    for (name, docs) in [("embedded", &embedded), ("cert-manager", &cm), ("ha-postgres", &ha)] {
        let a = args(docs);
        assert!(
            a.contains(&"--admission-client-ca=/etc/scimgate/tls/ca.crt".to_string())
                && a.contains(&"--admission-client-name=kube-apiserver".to_string()),
            "{name}: {a:?}"
        );
    }
    assert!(cm.iter().any(|d| d["kind"] == "Certificate"
        && d["spec"]["secretName"] == "scimgate-apiserver-client"
        && d["spec"]["usages"]
            .as_array()
            .is_some_and(|u| u.contains(&Value::from("client auth")))));
    let managed = render(&m.join("overlays/managed"));
    check_common(&managed, "managed");
    let a = args(&managed);
    assert!(!a.iter().any(|x| x.starts_with("--admission-client")), "{a:?}");
    assert_eq!(
        a.len() + 2,
        args(&embedded).len(),
        "only the two client flags are gone: {a:?}"
    );
    // Every document goes to the validator in scripts/test.sh too.
    let out = std::env::var("SCIMGATE_RENDERED_DIR").ok();
    if let Some(dir) = out {
        for (name, docs) in [
            ("embedded", &embedded),
            ("cert-manager", &cm),
            ("ha-postgres", &ha),
            ("managed", &managed),
        ] {
            let text: Vec<String> = docs
                .iter()
                .map(|d| serde_yaml_ng::to_string(d).unwrap_or_default())
                .collect();
            std::fs::write(Path::new(&dir).join(format!("{name}.yaml")), text.join("---\n")).expect("write rendered");
        }
    }
}

/// Start the binary with an overlay's Deployment args, env and mounts laid out under a temporary
/// root (`env` adds what a Secret would provide); returns the root and the log lines up to and
/// including the "serving" one.
fn run_as_deployed(dir: &Path, m: &Path, overlay: &str, env: &[(&str, &str)]) -> (PathBuf, Vec<Value>) {
    let docs = render(&m.join("overlays").join(overlay));
    let d = find(&docs, "Deployment", "scimgate");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let policy = find(&docs, "ConfigMap", "scimgate-policy")["data"]["policy.yaml"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let root = dir.join(format!("pod-{overlay}"));
    // An overlay built on another (managed on embedded) takes that one's files.
    let certs = [overlay, "embedded"]
        .iter()
        .map(|o| m.join("overlays").join(o).join("certs"))
        .find(|c| c.exists())
        .expect("certs");
    let mounts: Vec<(String, String)> = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or_default().to_string(),
                v["mountPath"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (name, path) in &mounts {
        let at = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&at).expect("mount dir");
        match name.as_str() {
            "policy" => std::fs::write(at.join("policy.yaml"), &policy).expect("policy"),
            "tls" => {
                for f in ["tls.crt", "tls.key", "ca.crt"] {
                    std::fs::copy(certs.join(f), at.join(f)).expect("tls");
                }
            }
            "signing" => {
                std::fs::copy(certs.join("signing.key"), at.join("signing.key")).expect("signing key");
            }
            "config" => {
                // Paths in the config point into the pod: re-root them.
                let config = find(&docs, "ConfigMap", "scimgate-config")["data"]["config.yaml"]
                    .as_str()
                    .unwrap_or_default()
                    .replace(": /", &format!(": {}/", root.display()));
                std::fs::write(at.join("config.yaml"), config).expect("config");
            }
            _ => {}
        }
    }
    let args: Vec<String> = c["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .map(|a| match a.split_once("=/") {
            Some((flag, path)) => format!("{flag}={}", root.join(path).display()),
            None => a.to_string(),
        })
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(&args)
        .args([
            "--admission-addr",
            "127.0.0.1:0",
            "--scim-addr",
            "127.0.0.1:0",
            "--ops-addr",
            "127.0.0.1:0",
        ])
        // The container's env as written (values from Secrets come in `env`).
        .envs(
            c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| Some((e["name"].as_str()?.to_string(), e["value"].as_str()?.to_string()))),
        )
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start scimgate as the Deployment does");
    let stderr = child.stderr.take().expect("stderr");
    let mut serving = None;
    let mut seen = Vec::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr))
        .map_while(Result::ok)
        .take(50)
    {
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null); // --log-format=json
        if v["message"] == "scimgate serving" {
            serving = Some(v);
            break;
        }
        seen.push(line);
    }
    let lines: Vec<Value> = seen
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
        .chain(serving.clone())
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    let serving =
        serving.unwrap_or_else(|| panic!("{overlay}: no JSON 'serving' log line; it said:\n{}", seen.join("\n")));
    assert!(
        serving["scim_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{serving}"
    );
    (root, lines)
}

#[test]
fn the_binary_starts_with_the_deployments_flags_and_files() {
    let (dir, m, _) = prepared();
    let (root, lines) = run_as_deployed(dir.path(), &m, "embedded", &[]);
    assert!(
        root.join("var/lib/scimgate/scimgate.db").exists(),
        "the store lives on the data volume"
    );
    assert!(
        root.join("var/lib/scimgate/keys/signing.key").exists(),
        "so does the signing key"
    );
    let warns_off = |lines: &[Value]| {
        lines.iter().any(|l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("caller authentication is off"))
        })
    };
    assert!(!warns_off(&lines), "caller authentication is on: {lines:?}");
    // The managed overlay turns it off, and the server says so at start.
    let (_, lines) = run_as_deployed(dir.path(), &m, "managed", &[]);
    assert!(warns_off(&lines), "{lines:?}");
}

#[tokio::test]
async fn the_ha_overlay_starts_on_postgres_with_the_shared_key() {
    let (dir, m, _) = prepared();
    let Some(url) = crate::support::postgres_db("the_ha_overlay_starts_on_postgres_with_the_shared_key").await else {
        return;
    };
    let (root, _) = run_as_deployed(dir.path(), &m, "ha-postgres", &[("SCIMGATE_STORE", &url)]);
    assert!(
        !root.join("var/lib/scimgate/scimgate.db").exists(),
        "no embedded store beside PostgreSQL"
    );
    assert!(
        !root.join("var/lib/scimgate/keys/signing.key").exists(),
        "the mounted shared key signs, none is generated"
    );
    let store = scimgate::store::open(&scimgate::store::Location::Postgres(url))
        .await
        .expect("open");
    assert_eq!(store.head().await.expect("migrated"), 0);
}

/// The embedded overlay with `components/<component>`, as the overlay `overlays/<name>`,
/// rendered and checked like every overlay.
fn with_component(m: &Path, name: &str, component: &str) -> Vec<Value> {
    let overlay = m.join("overlays").join(name);
    std::fs::create_dir_all(&overlay).expect("mkdir");
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../embedded\ncomponents:\n  - ../../components/{component}\n"),
    )
    .expect("kustomization");
    let docs = render(&overlay);
    check_common(&docs, name);
    docs
}

/// `components/offboarding` on an overlay: patch on the kinds a step changes (and nothing on
/// templates), bound to scimgate's account, and the mode the binary then starts in.
#[test]
fn the_offboarding_component_grants_patch_and_sets_act() {
    let (dir, m, _) = prepared();
    let docs = with_component(&m, "offboarding-act", "offboarding");
    let rules: Vec<(String, String, Value)> = find(&docs, "ClusterRole", "scimgate-offboarding")["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| {
            let group = r["apiGroups"][0].as_str().unwrap_or_default().to_string();
            r["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |res| {
                    (
                        group.clone(),
                        res.as_str().unwrap_or_default().to_string(),
                        r["verbs"].clone(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let patch = serde_json::json!(["patch"]);
    assert_eq!(
        rules,
        [
            ("argoproj.io", "workflows"),
            ("argoproj.io", "cronworkflows"),
            ("tekton.dev", "pipelineruns"),
            ("tekton.dev", "taskruns")
        ]
        .map(|(g, r)| (g.to_string(), r.to_string(), patch.clone()))
    );
    let binding = find(&docs, "ClusterRoleBinding", "scimgate-offboarding");
    assert_eq!(
        (&binding["subjects"][0]["name"], &binding["subjects"][0]["namespace"]),
        (&Value::from("scimgate"), &Value::from("scimgate"))
    );
    let env = &find(&docs, "Deployment", "scimgate")["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .into_iter()
            .flatten()
            .any(|e| e["name"] == "SCIMGATE_OFFBOARDING_MODE" && e["value"] == "act"),
        "{env}"
    );
    // Started as deployed (no API server here), it says what it would act on and cannot.
    let (_, lines) = run_as_deployed(dir.path(), &m, "offboarding-act", &[]);
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|t| t.contains("offboarding.mode is act but there is no Kubernetes API access"))),
        "{lines:?}"
    );
}

/// `components/identity-reports`: write access to both APIs' report kinds, and the switch.
#[test]
fn the_identity_reports_component_grants_the_report_kinds_and_turns_them_on() {
    let (_dir, m, _) = prepared();
    let docs = with_component(&m, "reports", "identity-reports");
    let rules = &find(&docs, "ClusterRole", "scimgate-identity-reports")["rules"];
    assert_eq!(
        rules,
        &serde_json::json!([
            {"apiGroups": ["openreports.io"], "resources": ["reports", "clusterreports"], "verbs": ["get", "list", "create", "update"]},
            {"apiGroups": ["wgpolicyk8s.io"], "resources": ["policyreports", "clusterpolicyreports"], "verbs": ["get", "list", "create", "update"]}
        ])
    );
    assert_eq!(
        find(&docs, "ClusterRoleBinding", "scimgate-identity-reports")["subjects"][0]["name"],
        "scimgate"
    );
    let lease = find(&docs, "Role", "scimgate-identity-reports-lease");
    assert_eq!(
        (&lease["metadata"]["namespace"], &lease["rules"]),
        (
            &Value::from("scimgate"),
            &serde_json::json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}])
        )
    );
    let env = &find(&docs, "Deployment", "scimgate")["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(env
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["name"] == "SCIMGATE_IDENTITY_REPORTS" && e["value"] == "true"));
}

/// `components/access`: what the reconciler needs and nothing more — watch namespaces, manage
/// bindings, `bind` only the roles it ships (and `view`), its own Lease — and the roles it ships,
/// each aggregated from rule holders labelled for it.
#[test]
fn the_access_component_grants_binding_management_and_ships_aggregated_roles() {
    let (_dir, m, _) = prepared();
    let docs = with_component(&m, "access", "access");
    let rules = &find(&docs, "ClusterRole", "scimgate-access")["rules"];
    assert_eq!(
        rules,
        &serde_json::json!([
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings", "clusterrolebindings"],
             "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"],
             "resourceNames": ["scimgate-runs-view", "scimgate-runs-submit", "scimgate-runs-approve", "view"]}
        ])
    );
    assert_eq!(
        find(&docs, "ClusterRoleBinding", "scimgate-access")["subjects"][0]["name"],
        "scimgate"
    );
    assert_eq!(
        find(&docs, "Role", "scimgate-access-lease")["metadata"]["namespace"],
        "scimgate"
    );
    for role in ["scimgate-runs-view", "scimgate-runs-submit", "scimgate-runs-approve"] {
        let selectors = &find(&docs, "ClusterRole", role)["aggregationRule"]["clusterRoleSelectors"];
        let labels: Vec<&str> = selectors
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| {
                s["matchLabels"]
                    .as_object()
                    .into_iter()
                    .flat_map(|m| m.keys().map(String::as_str))
            })
            .collect();
        assert!(
            labels.contains(&"scimgate.io/aggregate-to-runs-view"),
            "{role}: {labels:?}"
        );
        // Each label some shipped rule holder carries.
        for label in labels {
            assert!(
                docs.iter()
                    .any(|d| d["kind"] == "ClusterRole" && d["metadata"]["labels"][label] == "true"),
                "{role}: nothing carries {label}"
            );
        }
    }
}
