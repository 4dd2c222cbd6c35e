//! Several replicas on one PostgreSQL database: reads see writes acknowledged by any replica,
//! deactivations propagate, concurrent PATCHes keep every change, a SIGKILLed replica loses no
//! acknowledged write, and a database outage is ridden out and recovered from.

use crate::support::{client_for, ops, postgres_db, until, workflow, TestServer, POLICY, USER};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// A replica on `url` with the admission tests' policy and `config` (YAML).
async fn replica(url: &str, config: &str) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, config).expect("config");
    let url = url.to_string();
    TestServer::start_in(dir, move |a| {
        a.policy = Some(policy);
        a.config = Some(cfg);
        a.store = Some(url);
    })
    .await
}

/// alice (`user`) creates a Workflow through an API server whose webhooks point at `s`; the
/// answer as `{"allowed", "status": {"message"}}`.
async fn validate(s: &TestServer, _label: &str, user: &str) -> Value {
    let api = crate::apiserver::ApiServer::bare(s);
    let who = crate::apiserver::User {
        username: user.to_string(),
        groups: vec!["system:authenticated".into()],
    };
    match api.create(&who, workflow("team-a")).await {
        Ok(_) => json!({"allowed": true}),
        Err(e) => json!({"allowed": false, "status": {"code": e.code, "message": e.message}}),
    }
}

/// alice in `ml`, nested in `pipeline-users` (which the policy lets submit in team-*).
async fn provision(s: &TestServer) -> String {
    let alice = s.create_user("alice@example.com").await;
    let ml = s.create_group("ml", &[&alice]).await;
    s.create_group("pipeline-users", &[&ml]).await;
    alice
}

/// How long until `s` denies alice.
async fn denied(s: &TestServer, uid: &str) -> Option<Duration> {
    until(Duration::from_secs(20), async || {
        validate(s, uid, "oidc:alice@example.com").await["allowed"] == false
    })
    .await
}

/// Add `ids` to `group` through `s` one PATCH at a time; the ids acknowledged.
async fn add_members(s: &TestServer, group: &str, ids: Vec<String>) -> Vec<String> {
    let mut acked = Vec::new();
    for id in ids {
        let r = s
            .patch(
                &format!("/Groups/{group}"),
                ops(json!([{"op": "add", "path": "members", "value": [{"value": id}]}])),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        acked.push(id);
    }
    acked
}

async fn metric(s: &TestServer, name: &str) -> f64 {
    let text = s.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_directory() {
    let Some(url) = postgres_db("three_replicas_share_one_directory").await else {
        return;
    };
    let a = replica(&url, "{}").await;
    let b = replica(&url, "{}").await;
    let c = replica(&url, "{}").await;
    let alice = provision(&a).await;
    // Read-after-write on another replica, with no waiting.
    let got = b.get(&format!("/Users/{alice}")).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    let found = c
        .get(&format!(
            "/Users?filter={}",
            crate::support::enc("userName eq \"alice@example.com\"")
        ))
        .await;
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    assert_eq!(validate(&b, "b1", "oidc:alice@example.com").await["allowed"], true);
    assert_eq!(validate(&c, "c1", "oidc:alice@example.com").await["allowed"], true);
    // Uniqueness holds across replicas.
    let dup = c
        .post("/Users", json!({"schemas": [USER], "userName": "ALICE@example.com"}))
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);
    assert_eq!(dup.scim_type(), Some("uniqueness"));

    // Deactivate on A; B and C deny once the change reached them.
    let r = a
        .patch(
            &format!("/Users/{alice}"),
            ops(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let (on_b, on_c) = tokio::join!(denied(&b, "b2"), denied(&c, "c2"));
    let (on_b, on_c) = (on_b.expect("denied on B"), on_c.expect("denied on C"));
    println!("deactivation on A denied on B after {on_b:?}, on C after {on_c:?}");
    let msg = validate(&b, "b3", "oidc:alice@example.com").await["status"]["message"].clone();
    assert!(msg.as_str().is_some_and(|m| m.contains("deactivated")), "{msg}");
    assert!(metric(&b, "scimgate_directory_remote_changes_total").await >= 1.0);
    assert!(metric(&b, "scimgate_directory_age_seconds").await < 60.0);
    assert!(metric(&b, "scimgate_directory_last_sync_timestamp_seconds").await > 1.7e9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_from_two_replicas_keep_every_change() {
    let Some(url) = postgres_db("concurrent_patches_from_two_replicas_keep_every_change").await else {
        return;
    };
    let a = replica(&url, "{}").await;
    let b = replica(&url, "{}").await;
    let group = a.create_group("everyone", &[]).await;
    let mut users = Vec::new();
    for i in 0..40 {
        users.push(a.create_user(&format!("u{i}@example.com")).await);
    }
    let (from_a, from_b) = tokio::join!(
        add_members(&a, &group, users[..20].to_vec()),
        add_members(&b, &group, users[20..].to_vec())
    );
    // Planned under the store's sequence lock, no PATCH loses the race: every one is acknowledged.
    assert_eq!((from_a.len(), from_b.len()), (20, 20));
    let c = replica(&url, "{}").await;
    let members = async |s: &TestServer| -> std::collections::BTreeSet<String> {
        let g = s.get(&format!("/Groups/{group}")).await;
        g.body["members"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| m["value"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let on_c = members(&c).await;
    for id in from_a.iter().chain(&from_b) {
        assert!(on_c.contains(id), "acknowledged member {id} kept");
    }
    assert_eq!(members(&a).await, on_c, "every replica agrees");
    assert_eq!(members(&b).await, on_c, "every replica agrees");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_replica_loses_no_acknowledged_write() {
    let Some(url) = postgres_db("a_sigkilled_replica_loses_no_acknowledged_write").await else {
        return;
    };
    let b = replica(&url, "{}").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = crate::crash::spawn_with(dir.path(), &["--store", &url]).await;
    let ca = std::fs::read(dir.path().join("tls/ca.crt")).expect("ca");
    let client = client_for(&ca);
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (client, base, token, acked) = (client.clone(), a.base.clone(), a.token.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{w}-{i}@example.com");
                let r = client
                    .post(format!("{base}/Users"))
                    .bearer_auth(&token)
                    .header("content-type", "application/scim+json")
                    .body(json!({"schemas": [USER], "userName": name}).to_string())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        if let Ok(mut v) = acked.lock() {
                            v.push(name)
                        }
                    }
                    _ => break,
                }
            }
        }));
    }
    until(Duration::from_secs(60), async || {
        acked.lock().map(|v| v.len() >= 200).unwrap_or(false)
    })
    .await;
    a.child.start_kill().expect("SIGKILL");
    let _ = a.child.wait().await;
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().map(|v| v.clone()).unwrap_or_default();
    assert!(acked.len() >= 200, "{} acknowledged before the kill", acked.len());
    // B kept serving and has every write A acknowledged.
    let all = b.get("/Users?count=10000&attributes=userName").await;
    assert_eq!(all.status, StatusCode::OK);
    let names: std::collections::HashSet<&str> = all.body["Resources"]
        .as_array()
        .map(|r| r.iter().filter_map(|u| u["userName"].as_str()).collect())
        .unwrap_or_default();
    let missing: Vec<&String> = acked.iter().filter(|n| !names.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "acknowledged but missing: {missing:?}");
    println!("{} acknowledged by A before SIGKILL, all present on B", acked.len());
    assert_eq!(
        b.create_user("after@example.com").await.len(),
        36,
        "B still takes writes"
    );
}

/// A PostgreSQL cluster of this test's own, which it can stop and start.
struct Cluster {
    dir: std::path::PathBuf,
    url: String,
}

fn pg(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .expect("scripts/postgres.sh");
    assert!(
        out.status.success(),
        "postgres.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Cluster {
    fn start() -> Cluster {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir().join(format!("scimgate-pg-{}", uuid::Uuid::new_v4().simple()));
        let url = pg(&["start", &dir.to_string_lossy(), &port.to_string()]);
        Cluster { dir, url }
    }
    fn pause(&self) {
        pg(&["pause", &self.dir.to_string_lossy()]);
    }
    fn resume(&self) {
        pg(&["resume", &self.dir.to_string_lossy()]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres.sh"))
            .args(["stop", &self.dir.to_string_lossy()])
            .status();
    }
}

async fn ready(s: &TestServer) -> (StatusCode, String) {
    let r = reqwest::get(format!("{}/readyz", s.ops)).await.expect("readyz");
    (r.status(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_ridden_out_and_recovered_from() {
    // This test runs a cluster of its own; it needs PostgreSQL as the others do.
    if postgres_db("a_database_outage_is_ridden_out_and_recovered_from")
        .await
        .is_none()
    {
        return;
    }
    let db = Cluster::start();
    let config = "replication:\n  pollMillis: 200\n  maxStalenessSeconds: 3\n";
    let a = replica(&db.url, config).await;
    let b = replica(&db.url, config).await;
    provision(&a).await;
    let propagated = until(Duration::from_secs(20), async || {
        validate(&b, "o1", "oidc:alice@example.com").await["allowed"] == true
    })
    .await;
    assert!(propagated.is_some(), "B learns of alice");

    db.pause();
    // Admission answers from the last directory while it is fresh enough…
    let during = validate(&b, "o2", "oidc:alice@example.com").await;
    assert_eq!(during["allowed"], true, "{during}");
    // …SCIM writes fail with a SCIM 503 the IdP retries…
    let w = a
        .post("/Users", json!({"schemas": [USER], "userName": "late@example.com"}))
        .await;
    assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{}", w.body);
    assert_eq!(w.body["status"], "503");
    assert_eq!(w.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error");
    // …and past maxStaleness admission fails closed, saying why, and readiness drops.
    let stale = until(Duration::from_secs(30), async || {
        ready(&b).await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(stale.is_some(), "readiness reflects the stale directory");
    assert!(ready(&b).await.1.contains("identity directory is"));
    let closed = validate(&b, "o3", "oidc:alice@example.com").await;
    assert_eq!(closed["allowed"], false);
    assert!(
        closed["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("identity directory is") && m.contains("unreachable")),
        "{closed}"
    );

    db.resume();
    let back = until(Duration::from_secs(60), async || ready(&b).await.0 == StatusCode::OK).await;
    assert!(back.is_some(), "ready again once the database is back");
    assert_eq!(validate(&b, "o4", "oidc:alice@example.com").await["allowed"], true);
    let retried = until(Duration::from_secs(30), async || {
        a.post("/Users", json!({"schemas": [USER], "userName": "late@example.com"}))
            .await
            .status
            == StatusCode::CREATED
    })
    .await;
    assert!(retried.is_some(), "the IdP's retry succeeds");
    let seen = b
        .get(&format!(
            "/Users?filter={}",
            crate::support::enc("userName eq \"late@example.com\"")
        ))
        .await;
    assert_eq!(seen.body["totalResults"], 1, "{}", seen.body);
    // The notification connection comes back on its own schedule (after the pool's).
    let resynced = until(Duration::from_secs(30), async || {
        metric(&b, "scimgate_directory_resyncs_total").await >= 1.0
    })
    .await;
    assert!(
        resynced.is_some(),
        "the directory was rebuilt after the notification connection came back"
    );
}
