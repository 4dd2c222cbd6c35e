//! Crash safety: 8 clients provisioning, the server SIGKILLed mid-way, restarted — every write
//! that got a 2xx is there, and nothing is half-written.

use crate::support::{client_for, USER};
use reqwest::StatusCode;
use serde_json::json;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Running {
    pub child: Child,
    pub base: String,
    /// `https://localhost:PORT` of the admission listener.
    pub admission: String,
    pub token: String,
}

/// Start the real binary in dev mode on a free port; read the URL and token from its banner.
async fn spawn(data_dir: &Path) -> Running {
    spawn_with(data_dir, &[]).await
}

/// [`spawn`] with more `serve` arguments.
pub async fn spawn_with(data_dir: &Path, extra: &[&str]) -> Running {
    spawn_logging(data_dir, extra, "warn", std::process::Stdio::inherit()).await
}

/// [`spawn_with`], logging at `rust_log` (`RUST_LOG`) to `stderr`.
pub async fn spawn_logging(data_dir: &Path, extra: &[&str], rust_log: &str, stderr: std::process::Stdio) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scimgate"))
        .args([
            "serve",
            "--dev",
            "--admission-addr",
            "127.0.0.1:0",
            "--scim-addr",
            "127.0.0.1:0",
            "--ops-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", rust_log)
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn scimgate");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let (mut base, mut admission, mut token) = (String::new(), String::new(), String::new());
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.trim().strip_prefix("SCIM URL:") {
                base = url.trim().replace("127.0.0.1", "localhost");
            }
            if let Some(url) = line.trim().strip_prefix("admission:") {
                let url = url.split_whitespace().next().unwrap_or_default();
                admission = url.trim_end_matches("/validate").replace("127.0.0.1", "localhost");
            }
            if line.starts_with("sgt_") {
                token = line.trim().to_string();
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("banner within 30s");
    assert!(
        !base.is_empty() && !admission.is_empty() && !token.is_empty(),
        "banner seen"
    );
    Running {
        child,
        base,
        admission,
        token,
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = spawn(dir.path()).await;
    let ca = std::fs::read(dir.path().join("tls/ca.crt")).expect("ca");
    let client = client_for(&ca);
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..8 {
        let (client, base, token, acked) = (client.clone(), server.base.clone(), server.token.clone(), acked.clone());
        workers.push(tokio::spawn(async move {
            for i in 0..2000 {
                let name = format!("crash-{w}-{i}@example.com");
                let body = json!({"schemas": [USER], "userName": name, "emails": [{"value": name, "type": "work"}], "active": true});
                let resp = client.post(format!("{base}/Users")).bearer_auth(&token).header("content-type", "application/scim+json").body(body.to_string()).send().await;
                match resp {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let v: serde_json::Value = match r.json().await {
                            Ok(v) => v,
                            Err(_) => return, // killed while the body was in flight: not acknowledged
                        };
                        let id = v["id"].as_str().unwrap_or_default().to_string();
                        acked.lock().expect("lock").push((id, name));
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Kill once a good number of writes are acknowledged, with requests still in flight.
    for _ in 0..300 {
        if acked.lock().expect("lock").len() >= 400 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.start_kill().expect("SIGKILL");
    let _ = server.child.wait().await;
    for w in workers {
        w.await.expect("worker");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 100, "the run acknowledged only {} writes", acked.len());

    let server = spawn(dir.path()).await;
    for (id, name) in &acked {
        let r = client
            .get(format!("{}/Users/{id}", server.base))
            .bearer_auth(&server.token)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::OK, "acknowledged user {name} lost");
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["userName"], name.as_str());
    }
    // Nothing half-written: every stored user is complete.
    let mut start = 1;
    let mut total;
    loop {
        let r = client
            .get(format!("{}/Users?startIndex={start}&count=1000", server.base))
            .bearer_auth(&server.token)
            .send()
            .await
            .expect("list");
        let v: serde_json::Value = r.json().await.expect("json");
        let page = v["Resources"].as_array().cloned().unwrap_or_default();
        for u in &page {
            assert!(
                u["userName"].is_string()
                    && u["emails"][0]["value"] == u["userName"]
                    && u["meta"]["version"].is_string(),
                "{u}"
            );
        }
        total = v["totalResults"].as_u64().unwrap_or(0);
        if page.is_empty() {
            break;
        }
        start += page.len();
    }
    assert!(total as usize >= acked.len());
    eprintln!(
        "crash test: {} acknowledged before SIGKILL, {} present after restart",
        acked.len(),
        total
    );
}
