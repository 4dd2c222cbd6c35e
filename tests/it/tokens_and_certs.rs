//! Tokens created and revoked by the CLI while a server runs; serving certificates rotated on disk.

use crate::support::TestServer;
use reqwest::StatusCode;
use std::process::Command;
use std::time::{Duration, Instant};

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args(args)
        .output()
        .expect("run scimgate")
}

/// Whether `check` came true within 30 s: tokens refresh every 2 s; the margin is for a loaded CI
/// machine.
async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The store's token list and the server's token metrics, for a failure message.
async fn token_state(s: &TestServer, dir: &str) -> String {
    let stored = cli(&["token", "list", "--data-dir", dir]);
    let metrics = match reqwest::get(format!("{}/metrics", s.ops)).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => e.to_string(),
    };
    let token_lines: Vec<&str> = metrics.lines().filter(|l| l.contains("token")).collect();
    format!(
        "store:\n{}\nserver:\n{}",
        String::from_utf8_lossy(&stored.stdout),
        token_lines.join("\n")
    )
}

// The CLI runs as a blocking child process: the server must keep its own worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_tokens_are_honoured_and_revoked_while_serving() {
    let s = TestServer::start().await;
    let dir = s.dir.path().to_string_lossy().to_string();
    let out = cli(&["token", "create", "--data-dir", &dir, "--name", "okta"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let token = stdout.lines().last().unwrap_or_default().to_string();
    assert!(token.starts_with("sgt_"));
    // Searched by another process: opening the database file in this one (the server's) would
    // drop SQLite's POSIX locks, and the server would then read a frozen state.
    let found = Command::new("grep")
        .args(["-r", "-q", "-F", &token])
        .arg(s.dir.path())
        .status()
        .expect("grep");
    assert_eq!(
        found.code(),
        Some(1),
        "the token itself is stored nowhere in the data dir"
    );
    let url = s.url("/Users");
    let ok = eventually(async || {
        s.client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .map(|r| r.status())
            .ok()
            == Some(StatusCode::OK)
    })
    .await;
    assert!(ok, "new token accepted within 30 s\n{}", token_state(&s, &dir).await);
    let audit = cli(&[
        "token",
        "create",
        "--data-dir",
        &dir,
        "--name",
        "auditor",
        "--scope",
        "audit",
    ]);
    let audit_token = String::from_utf8_lossy(&audit.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let ok = eventually(async || {
        s.client
            .get(&url)
            .bearer_auth(&audit_token)
            .send()
            .await
            .map(|r| r.status())
            .ok()
            == Some(StatusCode::FORBIDDEN)
    })
    .await;
    assert!(
        ok,
        "audit token refused for SCIM with 403 within 30 s\n{}",
        token_state(&s, &dir).await
    );
    let list = cli(&["token", "list", "--data-dir", &dir]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains("okta") && listed.contains("auditor") && !listed.contains(&token));
    assert!(cli(&["token", "revoke", "--data-dir", &dir, "okta"]).status.success());
    let ok = eventually(async || {
        s.client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .map(|r| r.status())
            .ok()
            == Some(StatusCode::UNAUTHORIZED)
    })
    .await;
    assert!(ok, "revoked token refused within 30 s\n{}", token_state(&s, &dir).await);
    assert!(
        !cli(&["token", "revoke", "--data-dir", &dir, "okta"]).status.success(),
        "revoking twice is an error"
    );
}

#[tokio::test]
async fn rotated_serving_certificate_is_used_by_new_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let first = scimgate::tls::generate(&["localhost".into()], "first CA", None).expect("generate");
    let files = scimgate::tls::write(&certs, &first).expect("write");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "certReloadSeconds: 1\n").expect("config");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, scimgate::policy::EXAMPLE).expect("policy");
    let args = scimgate::cli::ServeArgs {
        data_dir: Some(dir.path().join("data")),
        config: Some(config),
        policy: Some(policy),
        tls_cert: Some(files.cert.clone()),
        tls_key: Some(files.key.clone()),
        ..Default::default()
    };
    let cfg = scimgate::config::Config::from_args(&args).expect("config");
    let listeners = scimgate::app::Listeners {
        admission: tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        scim: tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        ops: tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    };
    let server = scimgate::app::start(cfg, listeners).await.expect("start");
    let url = format!(
        "https://localhost:{}/scim/v2/ServiceProviderConfig",
        server.scim_addr.port()
    );
    let trusts_first = crate::support::client_for(first.ca_pem.as_bytes());
    assert_eq!(
        trusts_first.get(&url).send().await.map(|r| r.status()).ok(),
        Some(StatusCode::OK)
    );

    let second = scimgate::tls::generate(&["localhost".into()], "second CA", None).expect("generate");
    scimgate::tls::write(&certs, &second).expect("rotate");
    let trusts_second = crate::support::client_for(second.ca_pem.as_bytes());
    let ok = eventually(async || {
        // A fresh client per try: a new connection, a new handshake.
        let c = crate::support::client_for(second.ca_pem.as_bytes());
        c.get(&url).send().await.map(|r| r.status()).ok() == Some(StatusCode::OK)
    })
    .await;
    assert!(ok, "the rotated certificate served within 30 s");
    assert_eq!(
        trusts_second.get(&url).send().await.map(|r| r.status()).ok(),
        Some(StatusCode::OK)
    );
    let fresh_first = crate::support::client_for(first.ca_pem.as_bytes());
    assert!(
        fresh_first.get(&url).send().await.is_err(),
        "new connections no longer get the old certificate"
    );

    // A broken replacement keeps the current certificate serving.
    std::fs::write(&files.cert, "not a certificate").expect("break");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let again = crate::support::client_for(second.ca_pem.as_bytes());
    assert_eq!(
        again.get(&url).send().await.map(|r| r.status()).ok(),
        Some(StatusCode::OK)
    );
    server.stop().await;
}

/// `scimgate token create ARGS…`; the token (its last line).
fn create_token(args: &[&str]) -> String {
    let out = cli(&[&["token", "create"], args].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// One token's row of `token list ARGS…`: name, scope, status, created, expires, last used,
/// last write, revoked, id.
fn listed(args: &[&str], name: &str) -> Vec<String> {
    let out = cli(&[&["token", "list"], args].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let row = text
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|cells| cells.first().map(String::as_str) == Some(name));
    row.unwrap_or_else(|| panic!("no row for {name} in\n{text}"))
}

const LAST_USED: usize = 5;
const LAST_WRITE: usize = 6;
const LAST_WRITE_METRIC: &str = "scimgate_scim_token_last_write_timestamp_seconds";

/// The last-write series of token `name`, as `/metrics` at `ops` shows it.
async fn last_write_metric(ops: &str, name: &str) -> Option<f64> {
    let text = crate::support::metrics_at(ops).await;
    let prefix = format!("{LAST_WRITE_METRIC}{{token=\"{name}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether `token` gets `status` on `GET /Users` within 30 s.
async fn answered(s: &TestServer, token: &str, status: StatusCode) -> bool {
    eventually(async || {
        s.client
            .get(s.url("/Users"))
            .bearer_auth(token)
            .send()
            .await
            .map(|r| r.status())
            .ok()
            == Some(status)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_use_is_kept_in_memory_flushed_at_stop_and_shown_after_a_restart() {
    let started = Instant::now();
    let s = TestServer::start().await;
    let dir = s.dir.path().to_string_lossy().to_string();
    let token = create_token(&["--data-dir", &dir, "--name", "okta"]);
    let fresh = listed(&["--data-dir", &dir], "okta");
    assert_eq!((fresh[2].as_str(), fresh[4].as_str()), ("live", "never"));
    assert_eq!((fresh[LAST_USED].as_str(), fresh[LAST_WRITE].as_str()), ("-", "-"));
    assert!(
        answered(&s, &token, StatusCode::OK).await,
        "{}",
        token_state(&s, &dir).await
    );
    assert_eq!(last_write_metric(&s.ops, "okta").await, None, "reads are no writes");
    let before_write = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    for i in 0..20 {
        let r = s
            .client
            .post(s.url("/Users"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"userName": format!("user{i}@example.com"), "active": true}))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // A search is a POST that reads; it must not move the last write.
    let r = s
        .client
        .post(s.url("/Users/.search"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"filter": "userName sw \"user\""}))
        .send()
        .await
        .expect("search");
    assert_eq!(r.status(), StatusCode::OK);
    let mut metric = None;
    assert!(
        eventually(async || {
            metric = last_write_metric(&s.ops, "okta").await;
            metric.is_some()
        })
        .await,
        "the last-write series appears within a refresh\n{}",
        token_state(&s, &dir).await
    );
    let metric = metric.unwrap_or_default();
    assert!(metric >= before_write - 0.001, "{metric} >= {before_write}");
    assert!(metric <= chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
    // 22 requests, and the store still says nothing: no write per request. (The server flushes
    // every 30 s: on a machine so slow the test got this far after that, say nothing.)
    let unflushed = listed(&["--data-dir", &dir], "okta");
    if started.elapsed() < scimgate::token::FLUSH - Duration::from_secs(2) {
        assert_eq!(
            (unflushed[LAST_USED].as_str(), unflushed[LAST_WRITE].as_str()),
            ("-", "-"),
            "nothing stored before a flush"
        );
    }
    // A graceful stop flushes.
    let data = s.stop().await;
    let dir = data.path().to_string_lossy().to_string();
    let flushed = listed(&["--data-dir", &dir], "okta");
    assert_ne!(flushed[LAST_USED], "-", "{flushed:?}");
    assert_ne!(flushed[LAST_WRITE], "-", "{flushed:?}");
    assert!(
        flushed[LAST_USED] >= flushed[LAST_WRITE],
        "the search came after the writes"
    );
    let written = chrono::DateTime::parse_from_rfc3339(&flushed[LAST_WRITE]).expect("a time");
    assert_eq!(
        written.timestamp_millis() as f64 / 1000.0,
        metric,
        "the metric is the stored time"
    );

    // Restarted: the store's times show, in the list and the metric, until the token is revoked.
    let s = TestServer::start_in(data, |_| {}).await;
    assert_eq!(listed(&["--data-dir", &dir], "okta"), flushed);
    assert!(
        eventually(async || last_write_metric(&s.ops, "okta").await == Some(metric)).await,
        "the stored last write is the metric after a restart\n{}",
        token_state(&s, &dir).await
    );
    assert!(cli(&["token", "revoke", "--data-dir", &dir, "okta"]).status.success());
    assert!(
        eventually(async || last_write_metric(&s.ops, "okta").await.is_none()).await,
        "a revoked token's series goes\n{}",
        token_state(&s, &dir).await
    );
    assert_eq!(listed(&["--data-dir", &dir], "okta")[2], "revoked");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused_like_an_unknown_one() {
    let s = TestServer::start().await;
    let dir = s.dir.path().to_string_lossy().to_string();
    for bad in ["0d", "90", "2020-01-01T00:00:00Z", "soon"] {
        let out = cli(&["token", "create", "--data-dir", &dir, "--name", "bad", "--expires", bad]);
        assert!(!out.status.success(), "--expires {bad} refused");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--expires"));
    }
    let later = create_token(&["--data-dir", &dir, "--name", "later", "--expires", "90d"]);
    let expires = listed(&["--data-dir", &dir], "later")[4].clone();
    let in_90d = chrono::DateTime::parse_from_rfc3339(&expires).expect("a time");
    let days = (in_90d.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
    assert!((89 * 24..=90 * 24).contains(&days), "{expires}");
    // One that expires in a few seconds: accepted, then refused as an unknown one is.
    let soon = scimgate::model::clock::text(chrono::Utc::now() + chrono::Duration::seconds(6));
    let token = create_token(&["--data-dir", &dir, "--name", "brief", "--expires", &soon]);
    assert!(answered(&s, &later, StatusCode::OK).await);
    assert!(
        answered(&s, &token, StatusCode::OK).await,
        "accepted before it expires\n{}",
        token_state(&s, &dir).await
    );
    assert!(
        answered(&s, &token, StatusCode::UNAUTHORIZED).await,
        "refused once expired\n{}",
        token_state(&s, &dir).await
    );
    let r = s
        .client
        .get(s.url("/Users"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    assert!(r.text().await.expect("body").contains("unknown or revoked"));
    assert_eq!(listed(&["--data-dir", &dir], "brief")[2], "expired");
    assert_eq!(listed(&["--data-dir", &dir], "later")[2], "live");
    assert!(answered(&s, &later, StatusCode::OK).await);
    s.stop().await;
}

/// Replicas sharing PostgreSQL each flush their own times; the store keeps the later one, and a
/// replica started after shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_flush_the_latest_token_use_to_postgres() {
    let Some(url) = crate::support::postgres_db("replicas_flush_the_latest_token_use_to_postgres").await else {
        return;
    };
    let replica = || {
        let url = url.clone();
        TestServer::start_with(move |a| a.store = Some(url))
    };
    let (a, b) = (replica().await, replica().await);
    let store = ["--store", url.as_str()];
    let token = create_token(&[&store[..], &["--name", "okta"]].concat());
    assert!(answered(&a, &token, StatusCode::OK).await);
    let r = a
        .client
        .post(a.url("/Users"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"userName": "pat@example.com", "active": true}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before_b = scimgate::model::clock::now();
    assert!(answered(&b, &token, StatusCode::OK).await);
    // B flushes its later use first; A's earlier one, flushed after, must not replace it.
    b.stop().await;
    let after_b = listed(&store, "okta");
    assert!(after_b[LAST_USED] >= before_b, "{after_b:?} after {before_b}");
    assert_eq!(after_b[LAST_WRITE], "-", "B only read");
    a.stop().await;
    let after_a = listed(&store, "okta");
    assert_eq!(after_a[LAST_USED], after_b[LAST_USED], "never moved back");
    assert_ne!(after_a[LAST_WRITE], "-");
    assert!(after_a[LAST_WRITE] < before_b);
    // A replica that never saw the token used shows the stored last write.
    let c = replica().await;
    let written = chrono::DateTime::parse_from_rfc3339(&after_a[LAST_WRITE]).expect("a time");
    let want = Some(written.timestamp_millis() as f64 / 1000.0);
    assert!(
        eventually(async || last_write_metric(&c.ops, "okta").await == want).await,
        "{:?} != {want:?}",
        last_write_metric(&c.ops, "okta").await
    );
    c.stop().await;
}
