//! `manifests/components/monitoring` against a live server: every metric name its alerts and its
//! dashboard query is one this server's `/metrics` exposes, spelled as its type makes the samples
//! (a counter's `_total`, a histogram's `_bucket`, `_sum`, `_count`); every alert names a runbook
//! the README has. (That the alerts fire when they should is `tests/monitoring/run.sh`, promtool.)

use crate::support::{until, World};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/components/monitoring");
const RUNBOOKS: &str = "https://github.com/scimgate/scimgate/blob/main/README.md#";

/// The `scimgate_…` metric names in a PromQL expression.
fn names_in(expr: &str, out: &mut BTreeSet<String>) {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut rest = expr;
    while let Some(at) = rest.find("scimgate_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail.find(|c: char| !word(c)).unwrap_or(tail.len());
        if !before.is_some_and(word) {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
}

/// Every string under a key in `keys`, anywhere in `v`.
fn strings_under(v: &Value, keys: &[&str], out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::String(s) if keys.contains(&k.as_str()) => out.push(s.clone()),
                    _ => strings_under(v, keys, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| strings_under(v, keys, out)),
        _ => {}
    }
}

/// The sample names `/metrics` offers: from each family's `# TYPE` line, as its type names its
/// samples (a family with no series yet still prints one), and from the samples themselves.
fn exposed(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(decl) = line.strip_prefix("# TYPE ") {
            let mut it = decl.split_whitespace();
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            out.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') {
            if let Some(name) = line.split(['{', ' ']).next().filter(|n| !n.is_empty()) {
                out.insert(name.to_string());
            }
        }
    }
    out
}

fn rule() -> Value {
    let text = std::fs::read_to_string(format!("{DIR}/prometheusrule.yaml")).expect("prometheusrule.yaml");
    serde_yaml_ng::from_str(&text).expect("yaml")
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(format!("{DIR}/dashboard.json")).expect("dashboard.json");
    serde_json::from_str(&text).expect("json")
}

/// GitHub's anchor for a heading: lower case, spaces to hyphens, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn every_metric_the_alerts_and_the_dashboard_use_is_exposed() {
    let mut used = BTreeSet::new();
    let mut exprs = Vec::new();
    strings_under(&rule(), &["expr"], &mut exprs);
    let in_rules = exprs.len();
    strings_under(&dashboard(), &["expr", "query", "definition"], &mut exprs);
    assert!(in_rules >= 7 && exprs.len() > in_rules + 10, "{exprs:#?}");
    for e in &exprs {
        names_in(e, &mut used);
    }
    assert!(used.len() >= 15, "{used:?}");

    // A family with no series yet prints nothing, not even its `# TYPE` line: make the server
    // do what each one counts. SCIM writes (the World's users and groups, which also give the
    // token its last write), an admission decision, a policy reload, a failed TLS handshake.
    let w = World::with_config("policyReloadSeconds: 1\n").await;
    let s = &w.s;
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                        "request": {"uid": "m1", "operation": "CREATE"}});
    let answer: Value = s
        .client
        .post(format!("{}/validate", s.admission))
        .header("content-type", "application/json")
        .body(review.to_string())
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let policy = s.dir.path().join("policy.yaml");
    let text = std::fs::read_to_string(&policy).expect("policy");
    std::fs::write(&policy, format!("{text}\n# changed\n")).expect("policy");
    let admission = s
        .admission
        .trim_start_matches("https://")
        .replace("localhost", "127.0.0.1");
    let mut plain = tokio::net::TcpStream::connect(admission).await.expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let _ = plain.read_to_end(&mut Vec::new()).await;

    let mut text = String::new();
    let mut missing = Vec::new();
    until(Duration::from_secs(15), async || {
        text = s.metrics().await;
        let exposed = exposed(&text);
        missing = used.iter().filter(|n| !exposed.contains(*n)).cloned().collect();
        if !missing.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        missing.is_empty()
    })
    .await;
    assert!(
        missing.is_empty(),
        "used by the alerts or the dashboard but not in /metrics: {missing:?}\n{text}"
    );

    // The serving certificate's expiry, for both listeners: `--dev`'s is good for a year.
    let now = chrono::Utc::now().timestamp();
    for listener in ["admission", "scim"] {
        let key = format!("scimgate_tls_certificate_expiry_timestamp_seconds{{listener=\"{listener}\"}} ");
        let line = text.lines().find_map(|l| l.strip_prefix(key.as_str()));
        let at: i64 = line.and_then(|v| v.trim().parse().ok()).expect(&key);
        assert!((now + 360 * 86400..now + 366 * 86400).contains(&at), "{key}{at}");
    }
    // The decision outcomes the alerts watch exist before anything is lost.
    for outcome in ["recorded", "backpressure", "lost"] {
        assert!(
            text.contains(&format!("scimgate_decisions_total{{outcome=\"{outcome}\"}}")),
            "{text}"
        );
    }
}

#[test]
fn every_alert_has_a_severity_a_summary_and_a_runbook_in_the_readme() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let anchors: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("### ").or_else(|| l.strip_prefix("## ")))
        .map(anchor)
        .collect();
    let rule = rule();
    let rules: Vec<&Value> = rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .filter(|r| r.get("alert").is_some())
        .collect();
    assert!(rules.len() >= 7);
    for r in rules {
        let name = r["alert"].as_str().expect("alert");
        assert!(
            ["warning", "critical"].contains(&r["labels"]["severity"].as_str().unwrap_or("")),
            "{name}: severity"
        );
        for a in ["summary", "description"] {
            assert!(
                r["annotations"][a].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: {a}"
            );
        }
        let url = r["annotations"]["runbook_url"].as_str().unwrap_or("");
        let section = url
            .strip_prefix(RUNBOOKS)
            .unwrap_or_else(|| panic!("{name}: runbook_url {url:?} is not a README section"));
        assert_eq!(section, name.to_lowercase(), "{name}: its runbook is named after it");
        assert!(anchors.contains(section), "{name}: no README heading for #{section}");
    }
}
