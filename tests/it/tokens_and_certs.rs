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

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    // Tokens refresh every 2 s; the margin is for a loaded CI machine.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what} did not happen within 30s");
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
    let stored = std::fs::read(s.dir.path().join("scimgate.db")).expect("db");
    assert!(
        !stored.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token itself is not stored"
    );
    let url = s.url("/Users");
    eventually("new token accepted", async || {
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
    eventually("audit token refused for SCIM with 403", async || {
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
    let list = cli(&["token", "list", "--data-dir", &dir]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains("okta") && listed.contains("auditor") && !listed.contains(&token));
    assert!(cli(&["token", "revoke", "--data-dir", &dir, "okta"]).status.success());
    // What the store and the server say, should the next step fail (it once did under load).
    let stored = cli(&["token", "list", "--data-dir", &dir]);
    let metrics = reqwest::get(format!("{}/metrics", s.ops)).await.map(|r| r.text());
    let metrics = match metrics {
        Ok(t) => t.await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let token_lines: Vec<&str> = metrics.lines().filter(|l| l.contains("token")).collect();
    eprintln!(
        "after revoke:\n{}\n{}",
        String::from_utf8_lossy(&stored.stdout),
        token_lines.join("\n")
    );
    eventually("revoked token refused", async || {
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
    assert!(
        !cli(&["token", "revoke", "--data-dir", &dir, "okta"]).status.success(),
        "revoking twice is an error"
    );
}

#[tokio::test]
async fn rotated_serving_certificate_is_used_by_new_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let first = scimgate::tls::generate(&["localhost".into()], "first CA").expect("generate");
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

    let second = scimgate::tls::generate(&["localhost".into()], "second CA").expect("generate");
    scimgate::tls::write(&certs, &second).expect("rotate");
    let trusts_second = crate::support::client_for(second.ca_pem.as_bytes());
    eventually("the rotated certificate served", async || {
        // A fresh client per try: a new connection, a new handshake.
        let c = crate::support::client_for(second.ca_pem.as_bytes());
        c.get(&url).send().await.map(|r| r.status()).ok() == Some(StatusCode::OK)
    })
    .await;
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
