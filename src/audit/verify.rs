//! `scimgate audit verify`: check the stamps on objects as `kubectl get -o json|yaml` prints
//! them (single objects or Lists), offline, against the published JWKS. Each stamp is valid (and
//! by whom), missing, or forged/altered — naming the field that no longer matches.

use crate::stamp::{Verifier, PREFIX};
use serde_json::{json, Value};

const ATTESTATIONS: [(&str, &str); 4] = [
    ("attestation", "submit"),
    ("approval-attestation", "approve"),
    ("cancel-attestation", "cancel"),
    ("update-attestation", "update"),
];

#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Valid { action: String, by: String, by_id: String },
    Missing,
    Forged(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub object: String,
    pub stamps: Vec<Status>,
}

impl Finding {
    pub fn forged(&self) -> bool {
        self.stamps.iter().any(|s| matches!(s, Status::Forged(_)))
    }
}

/// The objects in `input`: a List's items, or the object itself.
pub fn objects(input: &Value) -> Vec<&Value> {
    match input.get("items").and_then(Value::as_array) {
        Some(items)
            if input
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List")) =>
        {
            items.iter().collect()
        }
        _ => vec![input],
    }
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return "",
        }
    }
    cur.as_str().unwrap_or_default()
}

pub fn verify_object(v: &Verifier, obj: &Value) -> Finding {
    let kind = text(obj, &["kind"]);
    let ns = text(obj, &["metadata", "namespace"]);
    let name = text(obj, &["metadata", "name"]);
    let object = if ns.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{ns}/{kind}/{name}")
    };
    let ann = obj
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object);
    let ours: Vec<&String> = ann
        .map(|a| a.keys().filter(|k| k.starts_with(PREFIX)).collect())
        .unwrap_or_default();
    if ours.is_empty() {
        return Finding {
            object,
            stamps: vec![Status::Missing],
        };
    }
    let mut stamps = Vec::new();
    let mut covered: Vec<String> = Vec::new();
    for (field, action) in ATTESTATIONS {
        let key = format!("{PREFIX}{field}");
        let Some(jws) = ann.and_then(|a| a.get(&key)).and_then(Value::as_str) else {
            continue;
        };
        covered.push(key.clone());
        let claims = match v.verify(jws) {
            Ok(c) => c,
            Err(e) => {
                stamps.push(Status::Forged(format!("{key}: {e}")));
                continue;
            }
        };
        let signed = claims
            .get("stamp")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let altered = signed
            .iter()
            .find(|(k, val)| ann.and_then(|a| a.get(*k)) != Some(*val))
            .map(|(k, _)| k.clone());
        let wrong_place = if claims.get("kind").and_then(Value::as_str) != Some(kind) {
            Some("kind".to_string())
        } else if claims.get("namespace").and_then(Value::as_str).unwrap_or_default() != ns {
            Some("namespace".to_string())
        } else {
            let signed_name = claims.get("objectName").and_then(Value::as_str).unwrap_or_default();
            (!name.is_empty() && !name.starts_with(signed_name)).then(|| "name".to_string())
        };
        match (altered, wrong_place) {
            (Some(k), _) => stamps.push(Status::Forged(format!("{k} was altered after {action} was stamped"))),
            (None, Some(what)) => stamps.push(Status::Forged(format!(
                "the {action} stamp was made for another object ({what} differs)"
            ))),
            (None, None) => {
                covered.extend(signed.keys().cloned());
                stamps.push(Status::Valid {
                    action: action.to_string(),
                    by: claims
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    by_id: claims
                        .get("sub")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                });
            }
        }
    }
    for k in ours {
        if !covered.contains(k) {
            stamps.push(Status::Forged(format!(
                "{k} is not covered by any scimgate attestation"
            )));
        }
    }
    Finding { object, stamps }
}

pub fn to_json(f: &Finding) -> Value {
    let stamps: Vec<Value> = f
        .stamps
        .iter()
        .map(|s| match s {
            Status::Valid { action, by, by_id } => {
                json!({"status": "valid", "action": action, "by": by, "byId": by_id})
            }
            Status::Missing => json!({"status": "missing"}),
            Status::Forged(why) => json!({"status": "forged", "why": why}),
        })
        .collect();
    json!({"object": f.object, "stamps": stamps})
}

pub fn line(f: &Finding) -> String {
    let parts: Vec<String> = f
        .stamps
        .iter()
        .map(|s| match s {
            Status::Valid { action, by, .. } => format!("valid: {action} by {by}"),
            Status::Missing => "missing: no scimgate stamp".to_string(),
            Status::Forged(why) => format!("FORGED: {why}"),
        })
        .collect();
    format!("{}  {}", f.object, parts.join("; "))
}
