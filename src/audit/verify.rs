//! `scimgate audit verify`: check the stamps on objects as `kubectl get -o json|yaml` prints
//! them (single objects or Lists), offline, against the published JWKS. Each stamp is valid (and
//! by whom), missing, or forged/altered — naming the field that no longer matches.

use crate::stamp::vocabulary::{is_ours, OFFBOARD_ATTESTATION};
use crate::stamp::Verifier;
use crate::stamp::{object, offboard};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Valid {
        action: String,
        by: String,
        by_id: String,
        /// Whether the caller of the webhook that stamped it proved to be the API server
        /// (`None`: a stamp from before that was signed).
        authenticated: Option<bool>,
        /// On an agent's stamp, the person whose rights carried it: userName and SCIM id (both
        /// empty otherwise).
        on_behalf_of: String,
        on_behalf_of_id: String,
    },
    Missing,
    /// A stamp made for the object's controller owner (kind, name), copied onto it by the
    /// controller (Tekton copies a PipelineRun's annotations onto its TaskRuns): the object has
    /// none of its own — created while scimgate was unreachable (its webhook for admitted work
    /// fails open), or before it was installed. `audit who` follows the owner.
    Inherited {
        action: String,
        owner: String,
    },
    /// scimgate's offboarding stamp (`stamp::offboard`): its own account suspended or cancelled
    /// the object because the person behind it departed.
    Offboarded {
        /// The account that wrote it.
        by: String,
        /// The departed person's userName and SCIM id, and how they departed.
        person: String,
        person_id: String,
        cause: String,
        step: String,
    },
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

/// The kind and name of `obj`'s controller owner (the ownerReference with `controller: true`).
pub fn controller_owner(obj: &Value) -> Option<(&str, &str)> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| (text(r, &["kind"]), text(r, &["name"])))
}

pub fn verify_object(v: &Verifier, obj: &Value) -> Finding {
    let kind = text(obj, &["kind"]);
    let ns = text(obj, &["metadata", "namespace"]);
    let name = text(obj, &["metadata", "name"]);
    let generate_name = text(obj, &["metadata", "generateName"]);
    let object = if ns.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{ns}/{kind}/{name}")
    };
    let ours: Vec<(&str, String)> = ["annotations", "labels"]
        .into_iter()
        .flat_map(|field| object::ours(obj, field).into_iter().map(move |(k, _)| (field, k)))
        .collect();
    if ours.is_empty() {
        return Finding {
            object,
            stamps: vec![Status::Missing],
        };
    }
    let mut stamps = Vec::new();
    let mut covered: Vec<(&str, String)> = Vec::new();
    for (entry, verified) in object::all(v, obj) {
        let action = entry.action.as_str();
        covered.push(("annotations", entry.attestation_key()));
        let claims = match verified {
            Ok(c) => c,
            Err(e) => {
                stamps.push(Status::Forged(e.to_string()));
                continue;
            }
        };
        if let Err(m) = claims.places(kind, ns, name, generate_name) {
            match controller_owner(obj).filter(|(k, n)| claims.places(k, ns, n, "").is_ok()) {
                Some((k, n)) => {
                    covered.extend(claims.stamp.keys().map(|k| ("annotations", k.clone())));
                    covered.extend(claims.labels.keys().map(|k| ("labels", k.clone())));
                    stamps.push(Status::Inherited {
                        action: action.to_string(),
                        owner: format!("{k} {ns}/{n}"),
                    });
                }
                None => stamps.push(Status::Forged(format!(
                    "the {action} stamp was made for another object: {m}"
                ))),
            }
            continue;
        }
        covered.extend(claims.stamp.keys().map(|k| ("annotations", k.clone())));
        covered.extend(claims.labels.keys().map(|k| ("labels", k.clone())));
        stamps.push(Status::Valid {
            action: action.to_string(),
            by: claims.name,
            by_id: claims.sub,
            authenticated: claims.authenticated,
            on_behalf_of: claims.on_behalf_of_name,
            on_behalf_of_id: claims.on_behalf_of,
        });
    }
    if let Some(verified) = offboard::verified(v, obj) {
        covered.push(("annotations", OFFBOARD_ATTESTATION.to_string()));
        match verified {
            Ok(c) => {
                covered.extend(c.stamp.keys().map(|k| ("annotations", k.clone())));
                stamps.push(Status::Offboarded {
                    by: c.requester,
                    person: c.name,
                    person_id: c.sub,
                    cause: c.cause,
                    step: c.step,
                });
            }
            Err(e) => stamps.push(Status::Forged(e.to_string())),
        }
    }
    for (field, k) in ours {
        if is_ours(&k) && !covered.iter().any(|(f, c)| *f == field && *c == k) {
            let what = if field == "labels" { "label " } else { "" };
            stamps.push(Status::Forged(format!(
                "{what}{k} is not covered by any scimgate attestation"
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
            Status::Valid {
                action,
                by,
                by_id,
                authenticated,
                on_behalf_of,
                on_behalf_of_id,
            } => {
                let mut v = json!({"status": "valid", "action": action, "by": by, "byId": by_id, "authenticated": authenticated});
                if !on_behalf_of.is_empty() || !on_behalf_of_id.is_empty() {
                    v["onBehalfOf"] = json!(on_behalf_of);
                    v["onBehalfOfId"] = json!(on_behalf_of_id);
                }
                v
            }
            Status::Missing => json!({"status": "missing"}),
            Status::Inherited { action, owner } => json!({"status": "inherited", "action": action, "owner": owner}),
            Status::Offboarded {
                by,
                person,
                person_id,
                cause,
                step,
            } => json!({"status": "valid", "action": offboard::ACTION, "by": by, "for": person, "forId": person_id,
                "cause": cause, "step": step}),
            Status::Forged(why) => json!({"status": "forged", "why": why}),
        })
        .collect();
    json!({"object": f.object, "stamps": stamps})
}

/// What a line says of the person an agent's stamp was made on behalf of (nothing for others).
fn sponsor(name: &str, id: &str) -> String {
    match (name, id) {
        ("", "") => String::new(),
        ("", only) | (only, "") => format!(" on behalf of {only}"),
        (name, _) => format!(" on behalf of {name}"),
    }
}

/// What a line says of a stamp minted for a caller that did not prove to be the API server.
pub fn unauthenticated_note(authenticated: Option<bool>) -> &'static str {
    match authenticated {
        Some(false) => {
            " (minted without caller authentication: anyone who reached the admission port could have asked)"
        }
        _ => "",
    }
}

pub fn line(f: &Finding) -> String {
    let parts: Vec<String> = f
        .stamps
        .iter()
        .map(|s| match s {
            Status::Valid {
                action,
                by,
                authenticated,
                on_behalf_of,
                on_behalf_of_id,
                ..
            } => format!(
                "valid: {action} by {by}{}{}",
                sponsor(on_behalf_of, on_behalf_of_id),
                unauthenticated_note(*authenticated)
            ),
            Status::Missing => "missing: no scimgate stamp".to_string(),
            Status::Inherited { action, owner } => {
                format!("no stamp of its own: carries its owner {owner}'s {action} stamp")
            }
            Status::Offboarded {
                by,
                person,
                cause,
                step,
                ..
            } => format!("valid: {step} by {by} offboarding {person} ({cause})"),
            Status::Forged(why) => format!("FORGED: {why}"),
        })
        .collect();
    format!("{}  {}", f.object, parts.join("; "))
}
