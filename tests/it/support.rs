//! Test fixtures: an in-process server on loopback with its own data dir, a client that trusts the
//! generated CA and speaks HTTP/2 like the IdPs' and the API server's clients do, the admission
//! world (users, groups, policy and an API-server emulator in front of the server), the binary as
//! a child process, and polling.

use crate::apiserver::{ApiServer, Status, Written};
use crate::kube_face::KubeFace;
use reqwest::{Method, StatusCode, Version};
use scimgate::app::{self, Listeners, Server};
use scimgate::cli::ServeArgs;
use scimgate::config::Config;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

pub struct TestServer {
    /// Kept alive for the test; its tasks end when it is dropped.
    _server: Server,
    pub dir: tempfile::TempDir,
    pub base: String,
    /// `https://localhost:PORT` of the admission listener.
    pub admission: String,
    pub ops: String,
    pub token: String,
    pub client: reqwest::Client,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub version: Version,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn scim_type(&self) -> Option<&str> {
        self.body.get("scimType").and_then(Value::as_str)
    }
    pub fn id(&self) -> String {
        self.body["id"].as_str().unwrap_or_default().to_string()
    }
}

pub fn client_for(ca_pem: &[u8]) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem).expect("CA pem");
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .https_only(true)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServeArgs)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, tweak).await
    }

    pub async fn start_in(dir: tempfile::TempDir, tweak: impl FnOnce(&mut ServeArgs)) -> TestServer {
        let mut args = ServeArgs {
            dev: true,
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        tweak(&mut args);
        let data_dir = args.data_dir.clone().unwrap_or_else(|| dir.path().to_path_buf());
        let cfg = Config::from_args(&args).expect("config");
        let listeners = Listeners {
            admission: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            scim: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            ops: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        };
        let server = app::start(cfg, listeners).await.expect("start");
        let ca = std::fs::read(data_dir.join("tls/ca.crt")).expect("ca");
        let base = format!("https://localhost:{}/scim/v2", server.scim_addr.port());
        let admission = format!("https://localhost:{}", server.admission_addr.port());
        let ops = format!("http://{}", server.ops_addr);
        let token = server.dev_token.clone().expect("dev token");
        TestServer {
            _server: server,
            dir,
            base,
            admission,
            ops,
            token,
            client: client_for(&ca),
        }
    }

    /// A new token with scope `audit`, made by `scimgate token create` in a process of its own.
    pub fn audit_token(&self) -> String {
        let (code, out, err) = scimgate(&[
            "token".as_ref(),
            "create".as_ref(),
            "--data-dir".as_ref(),
            self.dir.path().as_os_str(),
            "--name".as_ref(),
            format!("auditor-{}", uuid::Uuid::new_v4().simple()).as_ref(),
            "--scope".as_ref(),
            "audit".as_ref(),
        ]);
        assert_eq!(code, 0, "{err}");
        out.lines().last().unwrap_or_default().to_string()
    }

    /// The decision records, oldest first, once `n` have been written — read as an auditor
    /// would, through the audit API with a token `scimgate token create` made (never by opening
    /// the server's live database from this process).
    pub async fn decisions(&self, n: usize) -> Vec<scimgate::audit::DecisionRecord> {
        let token = self.audit_token();
        let read = async || -> Vec<scimgate::audit::DecisionRecord> {
            let v: Value = self
                .client
                .get(self.base.replace("/scim/v2", "/api/v1/decisions?limit=10000"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("audit API")
                .json()
                .await
                .expect("json");
            let mut all: Vec<_> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(scimgate::audit::query::from_json)
                .collect();
            all.reverse();
            all
        };
        until(std::time::Duration::from_secs(5), async || read().await.len() >= n).await;
        // The recorder batches: give a record that should not come the time to show up.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        read().await
    }

    /// Stop the server (every queued decision written) and hand back its data dir.
    pub async fn stop(self) -> tempfile::TempDir {
        self._server.stop().await;
        self.dir
    }

    /// What the operations listener's `/metrics` says now.
    pub async fn metrics(&self) -> String {
        metrics_at(&self.ops).await
    }

    /// The SCIM listener's port, as text.
    pub fn scim_port(&self) -> String {
        self.base
            .split(':')
            .nth(2)
            .and_then(|p| p.split('/').next())
            .unwrap_or_default()
            .to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let resp = rb.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let version = resp.version();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            version,
            body,
        }
    }

    pub fn authed(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(&self.token)
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut rb = self.authed(method, path);
        if let Some(b) = body {
            rb = rb.header("content-type", "application/scim+json").body(b.to_string());
        }
        self.send(rb).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None).await
    }

    pub async fn create_user(&self, user_name: &str) -> String {
        let r = self
            .post(
                "/Users",
                serde_json::json!({"schemas": [USER], "userName": user_name, "active": true}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.id()
    }

    pub async fn create_group(&self, name: &str, members: &[&str]) -> String {
        let m: Vec<Value> = members.iter().map(|m| serde_json::json!({"value": m})).collect();
        let r = self
            .post(
                "/Groups",
                serde_json::json!({"schemas": [GROUP], "displayName": name, "members": m}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.id()
    }
}

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

pub fn ops(operations: Value) -> Value {
    serde_json::json!({"schemas": [PATCH], "Operations": operations})
}

pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A new, empty database on the test PostgreSQL cluster that `scripts/test.sh` starts (its URL
/// in `SCIMGATE_TEST_POSTGRES`). Without one (a plain `cargo test`), `None`, and the test says it
/// was skipped and why; `scripts/test.sh` always provides one.
pub async fn postgres_db(test: &str) -> Option<String> {
    use sqlx::Connection;
    let Ok(base) = std::env::var("SCIMGATE_TEST_POSTGRES") else {
        eprintln!(
            "skipped {test}: SCIMGATE_TEST_POSTGRES is not set; `bash scripts/test.sh` starts a PostgreSQL cluster \
             and runs it (or `scripts/postgres.sh start DIR PORT` and export the URL it prints)"
        );
        return None;
    };
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to the test cluster");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let _ = admin.close().await;
    let mut url = url::Url::parse(&base).expect("url");
    url.set_path(&name);
    Some(url.to_string())
}

/// A test policy: the standard identity section (the delegates the emulator's actors use) and
/// `rules` (YAML, a `rules:` list).
pub fn policy_with_rules(rules: &str) -> String {
    format!(
        r#"
apiVersion: scimgate.io/v1
kind: Policy
identity:
  usernamePrefix: "oidc:"
  matchAttribute: userName
  delegates:
    - serviceAccount: argo:argo-server
      via: argoServer
    - serviceAccount: argo:argo
      via: ownerStamp
    - serviceAccount: tekton-pipelines:tekton-pipelines-controller
      via: ownerStamp
{rules}"#
    )
}

pub const POLICY: &str = r#"
apiVersion: scimgate.io/v1
kind: Policy
mode: enforce
dryRunNamespaces: ["legacy-*"]
identity:
  usernamePrefix: "oidc:"
  matchAttribute: userName
  rewriteArgoCreatorLabels: true
  delegates:
    - serviceAccount: argo:argo-server
      via: argoServer
    - serviceAccount: argo:argo
      via: ownerStamp
    - serviceAccount: tekton-pipelines:tekton-pipelines-controller
      via: ownerStamp
rules:
  - name: team-submit
    allow: [submit, cancel, update]
    groups: [pipeline-users]
    namespaces: ["team-*", "legacy-*"]
  - name: team-approve
    allow: [approve]
    groups: [release-approvers]
    namespaces: ["team-*"]
    distinctApprover: true
  - name: platform-templates
    allow: [submit, update]
    groups: [pipeline-users]
    kinds: [ClusterWorkflowTemplate]
  - name: gitops
    allow: [submit, update]
    serviceAccounts: ["argocd:argocd-application-controller"]
    kinds: [WorkflowTemplate, ClusterWorkflowTemplate]
    namespaces: ["team-*"]
"#;

/// A server with the test policy, alice (in `ml`, nested in `pipeline-users`; also an approver),
/// bob (a pipeline user and an approver) and mallory (in no group), and an API server that calls
/// it as a cluster would — and that it reads owners of controller-created runs from, through the
/// emulator's HTTP face (`--kubeconfig` pointing there: the controllers spawn children in many
/// tests, so every World has it).
pub struct World {
    pub s: TestServer,
    pub alice: String,
    pub bob: String,
    pub api: ApiServer,
    /// Serves the API server's objects to the scimgate under test; kept alive with the World.
    pub kube: KubeFace,
}

impl World {
    pub async fn new() -> World {
        World::with_config("").await
    }

    /// With a server config file (YAML) beside the policy.
    pub async fn with_config(config: &str) -> World {
        World::with(POLICY, config).await
    }

    /// With its own policy and server config file.
    pub async fn with(policy_text: &str, config: &str) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = dir.path().join("policy.yaml");
        std::fs::write(&policy, policy_text).expect("policy");
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, config).expect("config");
        let mut kube = KubeFace::bind().await;
        let kubeconfig = dir.path().join("kubeconfig");
        kube.write_kubeconfig(&kubeconfig);
        let s = TestServer::start_in(dir, |a| {
            a.policy = Some(policy);
            a.config = (!config.is_empty()).then_some(cfg);
            a.kubeconfig = Some(kubeconfig);
        })
        .await;
        let alice = s.create_user("alice@example.com").await;
        let bob = s.create_user("bob@example.com").await;
        s.create_user("mallory@example.com").await;
        let ml = s.create_group("ml", &[&alice]).await;
        s.create_group("pipeline-users", &[&ml, &bob]).await;
        s.create_group("release-approvers", &[&bob, &alice]).await;
        let api = ApiServer::new(&s);
        kube.serve(&api);
        World {
            s,
            alice,
            bob,
            api,
            kube,
        }
    }

    /// The verifier the server publishes (`/.well-known/jwks.json`), as `audit verify` uses it.
    pub async fn verifier(&self) -> scimgate::stamp::Verifier {
        let jwks = self.jwks().await;
        scimgate::stamp::Verifier::from_jwks(&jwks).expect("jwks")
    }

    pub async fn jwks(&self) -> Value {
        let url = self.s.base.replace("/scim/v2", "/.well-known/jwks.json");
        self.s
            .client
            .get(url)
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("json")
    }

    /// Deactivate the user `id` through SCIM, as Entra and Okta do (PATCH `active: false`).
    pub async fn deactivate(&self, id: &str) {
        let r = self
            .s
            .patch(
                &format!("/Users/{id}"),
                ops(json!([{"op": "replace", "value": {"active": false}}])),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.body);
    }

    /// The decision records, oldest first, once `n` have been written (`TestServer::decisions`).
    pub async fn decisions(&self, n: usize) -> Vec<scimgate::audit::DecisionRecord> {
        self.s.decisions(n).await
    }
}

/// A Workflow manifest with a generated name, written into `dir`: its path.
pub fn hello_workflow(dir: &Path) -> PathBuf {
    let wf = dir.join("wf.yaml");
    std::fs::write(&wf, "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  generateName: hello-\nspec:\n  entrypoint: main\n").expect("manifest");
    wf
}

/// `scimgate policy test` of a Workflow with a generated name, offline against the World's policy
/// and data dir, with `args` (who asks, and where): its exit code, standard output and error.
pub fn policy_test(w: &World, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = hello_workflow(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(["policy", "test", "-f"])
        .arg(&wf)
        .arg("--policy")
        .arg(w.s.dir.path().join("policy.yaml"))
        .arg("--data-dir")
        .arg(w.s.dir.path())
        .args(args)
        .output()
        .expect("policy test");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The stamp verified as `scimgate audit verify` does: every stamp valid, and by whom.
pub fn verified_by(v: &scimgate::stamp::Verifier, obj: &Value) -> Vec<String> {
    use scimgate::audit::verify::{verify_object, Status as S};
    verify_object(v, obj)
        .stamps
        .into_iter()
        .map(|s| match s {
            S::Valid { action, by, .. } => format!("{action} by {by}"),
            S::Missing => "missing".into(),
            S::Inherited { action, owner } => format!("{owner}'s {action}"),
            S::Offboarded { step, by, person, .. } => format!("{step} by {by} offboarding {person}"),
            S::Forged(why) => format!("FORGED: {why}"),
        })
        .collect()
}

pub fn ann<'a>(obj: &'a Value, key: &str) -> &'a Value {
    &obj["metadata"]["annotations"][key]
}

/// The message of a refused write.
pub fn refused(r: Result<Written, Status>) -> Status {
    match r {
        Ok(w) => panic!("allowed: {}", w.object),
        Err(s) => s,
    }
}

/// The calls a write made to scimgate's webhooks.
pub fn ours(w: &Written) -> usize {
    w.calls.iter().filter(|c| c.webhook.ends_with(".scimgate.io")).count()
}

/// Calls of our webhooks that fail closed (`manifests/base/webhooks.yaml`): what a write waits on
/// while scimgate is unreachable. The `running.*` ones fail open.
pub fn waited_on(w: &Written) -> usize {
    w.calls
        .iter()
        .filter(|c| c.webhook.ends_with(".scimgate.io") && !c.webhook.starts_with("running."))
        .count()
}

pub fn allowed(r: Result<Written, Status>) -> Written {
    r.unwrap_or_else(|s| panic!("refused ({}): {}", s.code, s.message))
}

pub fn workflow(ns: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "hello-", "namespace": ns},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}})
}

/// `/metrics` (Prometheus text) of the operations listener at `ops` (`http://host:port`).
pub async fn metrics_at(ops: &str) -> String {
    reqwest::get(format!("{ops}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// Run the `scimgate` binary; exit code, stdout, stderr.
pub fn scimgate(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(args)
        .output()
        .expect("run scimgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `scimgate audit who TARGET` against the emulator's HTTP face (`DIR/kubeconfig`) and the decision
/// log in `DIR`; asserts it succeeded and returns what it printed.
pub fn audit_who(dir: &std::path::Path, target: &str) -> String {
    let kubeconfig = dir.join("kubeconfig");
    let (code, out, err) = scimgate(&[
        "audit".as_ref(),
        "who".as_ref(),
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
        target.as_ref(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    out
}

/// Poll `check` every few milliseconds; the time it first held, or `None` after `limit`.
pub async fn until(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// Replicas of one deployment on the PostgreSQL database at `url`: the test policy, a config file
/// (`config` plus one signing key for all, as the HA overlay mounts it, so each verifies the
/// others' stamps) and a kubeconfig naming `kube`, in a directory they share.
pub struct Deployment {
    dir: tempfile::TempDir,
    url: String,
}

impl Deployment {
    pub fn new(url: &str, config: &str, kube: &KubeFace) -> Deployment {
        Deployment::with_policy(url, POLICY, config, kube)
    }

    /// With a policy of its own.
    pub fn with_policy(url: &str, policy: &str, config: &str, kube: &KubeFace) -> Deployment {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("policy.yaml"), policy).expect("policy");
        let key = dir.path().join("signing.key");
        let text = format!("{config}signingKey: {}\n", key.display());
        std::fs::write(dir.path().join("config.yaml"), text).expect("config");
        kube.write_kubeconfig(&dir.path().join("kubeconfig"));
        Deployment {
            dir,
            url: url.to_string(),
        }
    }

    /// One more replica, with a data directory of its own.
    pub async fn replica(&self) -> TestServer {
        let shared = self.dir.path().to_path_buf();
        let url = self.url.clone();
        TestServer::start_in(tempfile::tempdir().expect("tempdir"), move |a| {
            a.policy = Some(shared.join("policy.yaml"));
            a.kubeconfig = Some(shared.join("kubeconfig"));
            a.config = Some(shared.join("config.yaml"));
            a.store = Some(url);
        })
        .await
    }
}
