//! Hostile input must not take the webhook down (issue 12 §4): bodies no API server sends and
//! structures no Kubernetes object has get a quick, well-formed refusal while real requests keep
//! being served; idle and trickling connections are closed; at the connection cap new
//! connections wait for a slot; decision records stay bounded whatever a request names.

use crate::apiserver::person;
use crate::support::{refused, workflow, TestServer, World};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any test here waits for the server to do something; only a broken server gets near it
/// (the configured timeouts are 1 s).
const GUARD: Duration = Duration::from_secs(30);

pub fn port(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// A raw TLS connection to one of the server's listeners (HTTP/1.1 by ALPN), trusting its CA.
async fn tls_to(s: &TestServer, port: u16) -> tokio_rustls::client::TlsStream<TcpStream> {
    let ca = std::fs::read(s.dir.path().join("tls/ca.crt")).expect("ca");
    tls_trusting(&ca, port).await
}

/// [`tls_to`] any server on loopback whose certificate `ca` (PEM) signed.
pub async fn tls_trusting(ca: &[u8], port: u16) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca) {
        roots.add(c.expect("pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake")
}

/// Everything the server sends until it closes the connection (`None`: it did not close it
/// within [`GUARD`]).
pub async fn until_closed<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Option<String> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(GUARD, read).await.ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

fn review(uid: &str, object: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "argoproj.io", "version": "v1alpha1", "kind": "Workflow"},
        "resource": {"group": "argoproj.io", "version": "v1alpha1", "resource": "workflows"},
        "namespace": "team-a", "operation": "CREATE", "userInfo": {"username": "oidc:alice@example.com"},
        "object": object, "oldObject": null, "dryRun": false}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_well_formed_refusals_while_real_requests_pass() {
    let w = World::new().await;
    let url = format!("{}/validate", w.s.admission);
    let post = |body: Vec<u8>| {
        let (c, url) = (w.s.client.clone(), url.clone());
        async move {
            let r = c
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("send");
            (r.status(), r.text().await.unwrap_or_default())
        }
    };
    // The review's 8 MiB `[[],[],…]`: refused on its Content-Length, before it is read.
    let flat = |bytes: usize| {
        let mut b = b"[".to_vec();
        b.extend(b"[],".repeat(bytes / 3));
        b.extend(b"[]]");
        b
    };
    // Under the cap but with far more values than any object: refused by the shape pre-check
    // (a 400, like any body that is not an AdmissionReview), also wrapped as a review.
    let mut wrapped = serde_json::to_vec(&review("h2", json!({"spec": {"x": "HOLE"}}))).expect("json");
    let hole = wrapped.windows(6).position(|w| w == b"\"HOLE\"").expect("hole");
    wrapped.splice(hole..hole + 6, flat(2 * 1024 * 1024));
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes();
    // Hostile bodies at once, and a real submit through the API server among them.
    let hostile = futures_util::future::join_all([
        post(flat(8 * 1024 * 1024)),
        post(flat(6 * 1024 * 1024)),
        post(wrapped),
        post(deep),
        post(flat(8 * 1024 * 1024)),
    ]);
    let alice = person("alice@example.com");
    let real = w.api.create(&alice, workflow("team-a"));
    let (answers, real) = tokio::join!(hostile, real);
    assert!(real.is_ok(), "a real submit is served while hostile bodies come in");
    let expect = [
        (413, "larger than"),
        (400, "more than"),
        (400, "more than"),
        (400, "nests"),
        (413, "larger than"),
    ];
    for ((status, text), (code, says)) in answers.iter().zip(expect) {
        assert_eq!(status.as_u16(), code, "{text}");
        assert!(text.starts_with("scimgate: ") && text.contains(says), "{text}");
    }
    // Without a Content-Length (chunked), the cap holds as the bytes arrive.
    let tls = tls_to(&w.s, port(&w.s.admission)).await;
    let (mut rd, mut wr) = tokio::io::split(tls);
    let send = tokio::spawn(async move {
        let head = "POST /validate HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n";
        let _ = wr.write_all(head.as_bytes()).await;
        let chunk = format!("100000\r\n{}\r\n", " ".repeat(0x100000));
        for _ in 0..9 {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
    });
    let got = until_closed(&mut rd).await.expect("answered and closed");
    send.abort();
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    // And the server still answers a real request afterwards.
    assert!(w
        .api
        .create(&person("alice@example.com"), workflow("team-a"))
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_on_both_listeners() {
    let s = TestServer::start().await;
    let s = restart_with_config(s, "connections:\n  bodyReadTimeoutSeconds: 1\n").await;
    for (port, path) in [(port(&s.admission), "/validate"), (port(&s.base), "/scim/v2/Users")] {
        let tls = tls_to(&s, port).await;
        let (mut rd, mut wr) = tokio::io::split(tls);
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n",
            s.token
        );
        wr.write_all(head.as_bytes()).await.expect("head");
        // One byte every 100 ms: the whole body would take hours.
        let trickle = tokio::spawn(async move {
            for _ in 0..100_000 {
                if wr.write_all(b" ").await.is_err() || wr.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let got = until_closed(&mut rd).await;
        trickle.abort();
        let got = got.unwrap_or_else(|| panic!("{path}: a trickling body kept its connection open"));
        if path == "/validate" {
            assert!(got.starts_with("HTTP/1.1 408"), "{path}: {got}");
            assert!(got.contains("did not arrive in time"), "{path}: {got}");
        } else {
            assert!(got.starts_with("HTTP/1.1 4"), "{path}: {got}");
        }
    }
}

/// The same data dir, served again with `config` (so the dev CA and token stay valid).
async fn restart_with_config(s: TestServer, config: &str) -> TestServer {
    let dir = s.stop().await;
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, config).expect("config");
    TestServer::start_in(dir, |a| a.config = Some(cfg)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_on_both_listeners() {
    let s = TestServer::start().await;
    let s = restart_with_config(s, "connections:\n  idleTimeoutSeconds: 1\n").await;
    for port in [port(&s.admission), port(&s.base)] {
        // Connected, TLS done, and not a byte of HTTP.
        let mut silent = tls_to(&s, port).await;
        assert_eq!(until_closed(&mut silent).await.as_deref(), Some(""), "port {port}");
        // One request answered, then kept alive and left idle.
        let mut kept = tls_to(&s, port).await;
        kept.write_all(b"GET /nothing HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .expect("request");
        let got = until_closed(&mut kept)
            .await
            .expect("an idle keep-alive connection is closed");
        assert!(got.starts_with("HTTP/1.1 "), "{got}");
    }
    // HTTP/2 (what the API server speaks): an idle pooled connection is closed too, and the
    // client simply opens a new one.
    let r = s.send(s.authed(reqwest::Method::GET, "/Users")).await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = s.send(s.authed(reqwest::Method::GET, "/Users")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_new_connections_wait_for_a_slot() {
    let s = TestServer::start().await;
    let s = restart_with_config(s, "connections:\n  maxPerListener: 2\n").await;
    let held = [tls_to(&s, port(&s.base)).await, tls_to(&s, port(&s.base)).await];
    // A new client: its connection is not accepted while both slots are held…
    let ca = std::fs::read(s.dir.path().join("tls/ca.crt")).expect("ca");
    let fresh = crate::support::client_for(&ca);
    let req = fresh.get(s.url("/Users")).bearer_auth(&s.token).send();
    let mut req = Box::pin(req);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut req)
            .await
            .is_err(),
        "served beyond the connection cap"
    );
    // …and is served as soon as one of them ends.
    drop(held);
    let r = tokio::time::timeout(GUARD, req)
        .await
        .expect("served once a slot freed")
        .expect("request");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_name_is_answered_and_stored_bounded() {
    let w = World::new().await;
    let mut wf = workflow("team-a");
    let name = "x".repeat(2 * 1024 * 1024);
    wf["metadata"]["name"] = json!(name);
    wf["metadata"]["generateName"] = Value::Null;
    refused(w.api.create(&person("mallory@example.com"), wf).await);
    let records = w.decisions(1).await;
    let r = records.last().expect("a record");
    assert!(r.name.len() < 1024, "{}", r.name.len());
    assert!(
        r.name.ends_with("…[truncated, 2097152 bytes]"),
        "{}",
        &r.name[r.name.len() - 40..]
    );
    assert!(r.reason.len() < 8 * 1024, "{}", r.reason.len());
}
