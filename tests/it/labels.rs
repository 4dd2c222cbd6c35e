//! No metric label, map key or log field may come from an unbounded set (DESIGN; finding 4 of the
//! second security review: every SCIM request's HTTP method became a label value, so 300 requests
//! with 300 KB methods lifted RSS to 306 MB and `/metrics` answered 1.9 GB). The real binary is
//! flooded, through its real listeners and without credentials, from every place a label value
//! or a logged field could be taken from — methods (odd and huge), paths, bearer tokens,
//! AdmissionReview kinds, operations, namespaces and uids, broken TLS handshakes — twice, with
//! fresh random values each time: the second flood adds no series, every label value is one of
//! its closed set, `/metrics` stays small and no log line grows with the input.

use crate::crash::{spawn_logging, Running};
use crate::hostile::{port, tls_trusting, until_closed};
use crate::support::{client_for, metrics_at};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// One series: its metric name and its labels (a histogram's `le` left out, so a histogram is
/// one series, not one per bucket).
type Series = (String, BTreeMap<String, String>);

/// The values each label may take. `status` is any three-digit code the server answers with or
/// a class (`4xx`); every other label is listed in full.
fn allowed(label: &str, value: &str) -> bool {
    let one_of = |set: &[&str]| set.contains(&value);
    match label {
        "method" => one_of(&["GET", "POST", "PUT", "PATCH", "DELETE", "other"]),
        "resource" => one_of(&[
            "Users",
            "Groups",
            "Bulk",
            "Schemas",
            "ResourceTypes",
            "ServiceProviderConfig",
            ".search",
            "Me",
            "other",
        ]),
        "status" => {
            value.len() == 3
                && value.as_bytes()[0].is_ascii_digit()
                && (value[1..].bytes().all(|b| b.is_ascii_digit()) || &value[1..] == "xx")
        }
        "hook" => one_of(&["mutate", "validate"]),
        "kind" => one_of(&[
            "Workflow",
            "CronWorkflow",
            "WorkflowTemplate",
            "ClusterWorkflowTemplate",
            "PipelineRun",
            "TaskRun",
            "other",
            "",
        ]),
        "action" => one_of(&["submit", "approve", "cancel", "update", "delete", "none"]),
        "outcome" => one_of(&[
            "allowed",
            "denied",
            "dry-run-deny",
            "ok",
            "missing",
            "scope",
            "invalid",
            "failed",
            "recorded",
            "backpressure",
            "lost",
        ]),
        "listener" => one_of(&["admission", "scim"]),
        "reason" => one_of(&[
            "no-client-certificate",
            "client-certificate-rejected",
            "timeout",
            "other",
        ]),
        _ => false,
    }
}

/// The series in a Prometheus text exposition.
fn series(text: &str) -> BTreeSet<Series> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line.split(' ').next().unwrap_or_default(), ""),
        };
        let name = ["_bucket", "_sum", "_count", "_created"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        let mut labels = BTreeMap::new();
        if let Some(end) = rest.rfind('}') {
            // Label values here are simple (the assertions below say so); split naively.
            for pair in rest[..end].split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                if k != "le" {
                    labels.insert(k.to_string(), v.trim_matches('"').to_string());
                }
            }
        }
        out.insert((name.to_string(), labels));
    }
    out
}

fn random() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Send `head` (an HTTP/1.1 request without a body, `connection: close`) on a fresh TLS
/// connection; what came back.
async fn raw(ca: &[u8], port: u16, head: &str) -> String {
    let mut tls = tls_trusting(ca, port).await;
    tls.write_all(head.as_bytes()).await.expect("request");
    until_closed(&mut tls).await.expect("answered and closed")
}

/// A review of `kind` (group, version, kind) with every caller-chosen string fresh.
fn review(kind: Value, operation: &str) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": format!("{}{}", random(), "u".repeat(64 * 1024)),
        "kind": kind,
        "resource": {"group": random(), "version": "v1", "resource": random()},
        "namespace": format!("ns-{}-{}", random(), "n".repeat(64 * 1024)),
        "operation": operation,
        "userInfo": {"username": format!("oidc:{}@example.com", random())},
        "object": {"apiVersion": "v1", "kind": random(), "metadata": {"name": random()}},
        "oldObject": null, "dryRun": false}})
}

/// Everything an unauthenticated caller can vary, once, with values never sent before.
async fn flood(run: &Running, ca: &[u8], ops: &str) {
    let client = client_for(ca);
    let scim = &run.base;
    let root = scim.trim_end_matches("/scim/v2");
    // Odd methods (HTTP/2), on real routes, random paths and outside SCIM; with and without the
    // token.
    for i in 0..60 {
        let method = Method::from_bytes(format!("M{}", random().to_uppercase()).as_bytes()).expect("method");
        let path = match i % 4 {
            0 => format!("{scim}/Users"),
            1 => format!("{scim}/{}", random()),
            2 => format!("{scim}/Groups/{}/{}", random(), random()),
            _ => format!("{root}/{}", random()),
        };
        let mut rb = client.request(method, path);
        if i % 2 == 0 {
            rb = rb.bearer_auth(&run.token);
        }
        rb.send().await.expect("answered");
    }
    // Huge methods (HTTP/1.1, as the review sent them): 256 KiB each.
    let scim_port = port(scim);
    for i in 0..3 {
        let method = format!("{}{}", "X".repeat(256 * 1024), random().to_uppercase());
        let path = if i == 0 {
            "/scim/v2/Users".to_string()
        } else {
            format!("/scim/v2/{}", random())
        };
        let got = raw(
            ca,
            scim_port,
            &format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"),
        )
        .await;
        assert!(got.starts_with("HTTP/1.1 "), "{}", &got[..got.len().min(200)]);
    }
    // Real methods on random paths, and bad tokens everywhere a token is read.
    for (i, m) in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ]
    .into_iter()
    .enumerate()
    {
        for path in [
            format!("{scim}/Users/{}", random()),
            format!("{scim}/{}", random()),
            format!("{scim}/Users"),
            format!("{scim}/Schemas/{}", random()),
            format!("{root}/api/v1/decisions"),
        ] {
            let token = format!("sgt_{}", random());
            let rb = client.request(m.clone(), path);
            let rb = match i % 3 {
                0 => rb.bearer_auth(token),
                1 => rb.header("authorization", format!("Basic {token}")),
                _ => rb,
            };
            rb.send().await.expect("answered");
        }
    }
    // One real request, so the closed set shows an authenticated answer too.
    let r = client
        .get(format!("{scim}/Users"))
        .bearer_auth(&run.token)
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200);
    // AdmissionReviews naming kinds nobody has, ours under random groups and versions, random
    // operations, and things that are no review; random paths on the admission port.
    let admission = &run.admission;
    for hook in ["mutate", "validate"] {
        let url = format!("{admission}/{hook}");
        let bodies = [
            review(
                json!({"group": random(), "version": random(), "kind": random()}),
                "CREATE",
            ),
            review(
                json!({"group": "argoproj.io", "version": random(), "kind": "Workflow"}),
                "CREATE",
            ),
            review(
                json!({"group": "tekton.dev", "version": "v1", "kind": random()}),
                &random(),
            ),
            review(
                json!({"group": "argoproj.io", "version": "v1alpha1", "kind": "Workflow"}),
                "CREATE",
            ),
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": random()}),
            json!({"apiVersion": random(), "kind": random()}),
        ];
        for body in bodies {
            client.post(&url).json(&body).send().await.expect("answered");
        }
        client
            .post(format!("{admission}/{}", random()))
            .json(&json!({}))
            .send()
            .await
            .expect("answered");
    }
    // The operations listener counts nothing per request; flooded all the same.
    for _ in 0..5 {
        let odd = Method::from_bytes(format!("M{}", random().to_uppercase()).as_bytes()).expect("method");
        reqwest::Client::new()
            .request(odd, format!("{ops}/metrics/{}", random()))
            .send()
            .await
            .expect("answered");
    }
    // TLS handshakes that fail: plain HTTP, garbage, and a connection closed at once, on both
    // TLS listeners.
    for p in [scim_port, port(admission)] {
        for bytes in [
            format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", random()).into_bytes(),
            format!("\x16\x03\x01\x00\x05{}", random()).into_bytes(),
            Vec::new(),
        ] {
            let mut tcp = TcpStream::connect(("127.0.0.1", p)).await.expect("connect");
            let _ = tcp.write_all(&bytes).await;
            let _ = tcp.shutdown().await;
            let _ = until_closed(&mut tcp).await;
        }
    }
}

/// `/metrics` once the server has counted everything sent so far (the handshake failures are
/// counted by the connection's task, after the client saw the connection close).
async fn scrape(ops: &str) -> String {
    let mut last = String::new();
    for _ in 0..50 {
        let text = metrics_at(ops).await;
        if text == last {
            return text;
        }
        last = text;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_from_unauthenticated_callers_add_no_series_and_no_long_log_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = tempfile::tempdir().expect("tempdir");
    let log_path = logs.path().join("stderr.json");
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let run = spawn_logging(
        dir.path(),
        &["--log-format", "json"],
        "warn,scimgate=debug",
        log_file.into(),
    )
    .await;
    let ca = std::fs::read(dir.path().join("tls/ca.crt")).expect("ca");
    let log = || std::fs::read_to_string(&log_path).expect("log");
    let ops = log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|l| l["ops_addr"].as_str().map(|a| format!("http://{a}")))
        .expect("the 'scimgate serving' line names the operations listener");

    flood(&run, &ca, &ops).await;
    let first = series(&scrape(&ops).await);
    flood(&run, &ca, &ops).await;
    let text = scrape(&ops).await;
    let second = series(&text);

    // Fresh values made no new series.
    let new: Vec<_> = second.difference(&first).collect();
    assert!(new.is_empty(), "the second flood made new series: {new:?}");
    // Every label value is one of its closed set; so the whole is bounded whatever is sent.
    for (name, labels) in &second {
        for (k, v) in labels {
            assert!(allowed(k, v), "{name}: label {k}={v:?} is not from a closed set");
        }
    }
    // What the floods reached, so the test can't pass by counting nothing.
    let seen = |name: &str, label: &str, value: &str| {
        second
            .iter()
            .any(|(n, l)| n == name && l.get(label).map(String::as_str) == Some(value))
    };
    assert!(seen("scimgate_scim_requests_total", "method", "other"), "{text}");
    // The resource comes from the route that matched, not from the path.
    assert!(
        text.contains(r#"scimgate_scim_requests_total{method="GET",resource="Users",status="200"}"#),
        "{text}"
    );
    assert!(seen("scimgate_auth_total", "outcome", "invalid"), "{text}");
    assert!(seen("scimgate_admission_duration_seconds", "kind", "other"), "{text}");
    assert!(
        seen("scimgate_tls_handshakes_failed_total", "reason", "other"),
        "{text}"
    );
    assert!(second.len() < 200, "{} series: {text}", second.len());
    assert!(text.len() < 128 * 1024, "/metrics is {} bytes", text.len());

    // No log line carries what a caller sent at full length (the longest values sent are 64 KiB
    // and 256 KiB), and none of it unescaped: each line is one JSON object.
    for line in log().lines() {
        let start: String = line.chars().take(300).collect();
        assert!(line.len() < 4096, "a {} byte log line: {start}…", line.len());
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}
