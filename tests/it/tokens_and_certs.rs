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
