//! Propagation between replicas (bench/ha.sh drives it): flip a user's `active` through SCIM on
//! replica A, then ask replica B's admission webhook — which reads only its in-memory directory —
//! until its answer reflects the change. Prints p50/p99/max over the samples.
//!
//!   propagation SCIM_URL_A TOKEN CA_A ADMISSION_URL_B CA_B SAMPLES
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test, benchmark and example code: a failed assumption is a failed run"
)]

use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn client(ca: &str) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("CA file");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA pem"))
        .build()
        .expect("client")
}

/// B's answer for the user: the denial message says whether it saw the user deactivated.
async fn sees_deactivated(b: &reqwest::Client, url: &str, n: usize) -> bool {
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": format!("p{n}"), "kind": {"group": "argoproj.io", "version": "v1alpha1", "kind": "Workflow"},
        "resource": {"group": "argoproj.io", "version": "v1alpha1", "resource": "workflows"},
        "namespace": "ml-a", "operation": "CREATE",
        "userInfo": {"username": "oidc:propagation@example.com"},
        "object": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"generateName": "p-", "namespace": "ml-a"}, "spec": {"entrypoint": "main"}}}});
    let v: Value = b
        .post(format!("{url}/validate"))
        .json(&review)
        .send()
        .await
        .expect("review")
        .json()
        .await
        .expect("json");
    v["response"]["status"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("deactivated"))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, scim, token, ca_a, adm, ca_b, samples] = &args[..] else {
        panic!("usage: propagation SCIM_URL_A TOKEN CA_A ADMISSION_URL_B CA_B SAMPLES");
    };
    let samples: usize = samples.parse().expect("SAMPLES");
    let (a, b) = (client(ca_a), client(ca_b));
    let created: Value = a
        .post(format!("{scim}/Users"))
        .bearer_auth(token)
        .json(&json!({"userName": "propagation@example.com", "active": true}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    let mut times = Vec::with_capacity(samples);
    for n in 0..samples {
        let deactivate = n % 2 == 0;
        let r = a
            .patch(format!("{scim}/Users/{id}"))
            .bearer_auth(token)
            .json(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": !deactivate}}]}))
            .send()
            .await
            .expect("patch");
        assert!(r.status().is_success(), "PATCH {}", r.status());
        let acked = Instant::now();
        let mut polls = 0;
        while sees_deactivated(&b, adm, n * 100_000 + polls).await != deactivate {
            polls += 1;
            assert!(acked.elapsed() < Duration::from_secs(30), "no propagation within 30 s");
        }
        times.push(acked.elapsed());
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "propagation A→B over {samples} changes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}
