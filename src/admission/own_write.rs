//! scimgate's own writes: the offboarding sweep suspends and cancels through the API server like
//! anyone, so its PATCH reaches these webhooks. It is admitted — in every mode, by both hooks, with
//! no patch — when it is exactly what a new offboarding stamp (`stamp::offboard`) signs: an UPDATE
//! of the main resource by the account the stamp names, the stamp fresh and made for this object
//! (kind, namespace, name, uid), and the object changed only by the step's patch (`spec` as
//! `offboarding::plan::Step::patch` leaves it, everything else as it was but what the API server
//! sets itself), and taken on the resource version the stamp names — so a stamp is good for one
//! write. Anything else from that account is judged as anyone's write.
//!
//! Must not: admit a write because of who sent it alone (the account's token may leak), nor a
//! stamp from another object, another time or another step.

use super::codec::{Operation, Request};
use crate::offboarding::plan::Step;
use crate::policy::Kind;
use crate::stamp::offboard::{self, Offboard};
use crate::stamp::vocabulary::{OFFBOARDED, OFFBOARDED_AT, OFFBOARD_ATTESTATION};
use crate::stamp::Verifier;
use serde_json::Value;

/// Whether `req` brings a new offboarding stamp — the only way it can be offboarding's write.
pub fn brings_stamp(req: &Request) -> bool {
    let (Some(new), Some(old)) = (&req.object, &req.old_object) else {
        return false;
    };
    req.operation == Operation::Update
        && offboard::attestation(new).is_some()
        && offboard::attestation(new) != offboard::attestation(old)
}

/// Why a write is not the one its offboarding stamp signs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSigned {
    /// The stamp was made for the object as it was before another write. The API server refuses
    /// such a write as a conflict on the resourceVersion precondition it carries — after the
    /// mutating webhooks (k8s.io/apiserver pkg/endpoints/handlers/patch.go: the patch and
    /// mutating admission, then `GuaranteedUpdate`), so `/mutate` lets it reach that refusal.
    #[error("the offboarding stamp was made for resourceVersion {signed}, and the object is at {here}")]
    Stale { signed: String, here: String },
    #[error("{0}")]
    Other(String),
}

/// The claims of the offboarding stamp `req` brings, when the write is exactly what it signs
/// (`now`, Unix seconds; a stamp is good for `max_age` seconds); or why it is not.
pub fn check(v: &Verifier, req: &Request, kind: Kind, max_age: i64, now: i64) -> Result<Offboard, NotSigned> {
    let other = |why: String| NotSigned::Other(why);
    let (Some(new), Some(old)) = (&req.object, &req.old_object) else {
        return Err(other("an offboarding stamp comes only on an update".into()));
    };
    let claims = match offboard::verified(v, new) {
        Some(Ok(c)) => c,
        Some(Err(e)) => return Err(other(e.to_string())),
        None => return Err(other("the request carries no offboarding stamp".into())),
    };
    if !req.sub_resource.is_empty() {
        return Err(other(format!(
            "an offboarding stamp on the {} subresource",
            req.sub_resource
        )));
    }
    // The stored object's uid, not only the one the request sends.
    if old["metadata"]["uid"].as_str() != Some(claims.uid.as_str()) {
        return Err(other("the offboarding stamp was made for another object (uid)".into()));
    }
    // A service account, as the API server authenticated it: its name alone could come from
    // another authenticator (a client certificate, an OIDC claim).
    let service_account = req.user.groups.iter().any(|g| g == "system:serviceaccounts");
    if claims.requester != req.user.username || !service_account {
        return Err(other(format!(
            "the offboarding stamp was made for {}, not {}",
            claims.requester, req.user.username
        )));
    }
    let age = now - claims.iat;
    if age > max_age || age < -max_age {
        return Err(other(format!(
            "the offboarding stamp is {age} s old, older than the {max_age} s a stamp is good for"
        )));
    }
    let here = old["metadata"]["resourceVersion"].as_str().unwrap_or_default();
    if claims.resource_version != here {
        return Err(NotSigned::Stale {
            signed: claims.resource_version.clone(),
            here: here.to_string(),
        });
    }
    let step = Step::named(&claims.step).ok_or_else(|| other(format!("no offboarding step '{}'", claims.step)))?;
    only_the_step(kind, step, old, new).map_err(other)?;
    Ok(claims)
}

/// Whether `new` is `old` changed only by `step` and a new offboarding stamp: the whole object
/// compared, but for what the API server itself changes in an update (`resourceVersion`,
/// `generation`, `managedFields`). Linear in the objects.
fn only_the_step(kind: Kind, step: Step, old: &Value, new: &Value) -> Result<(), String> {
    let patch = step
        .patch(kind)
        .ok_or_else(|| format!("a {} takes no {} step", kind.as_str(), step.as_str()))?;
    let mut expected = old.clone();
    json_patch::merge(&mut expected, &patch);
    let (expected, actual) = (comparable(expected), comparable(new.clone()));
    if expected == actual {
        return Ok(());
    }
    Err(format!(
        "it changes {} besides the {} step",
        first_difference(&expected, &actual),
        step.as_str()
    ))
}

/// `obj` without what an update may change besides the step: the fields the API server sets,
/// and the offboarding stamp's own annotations.
fn comparable(mut obj: Value) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in ["resourceVersion", "generation", "managedFields"] {
            meta.remove(k);
        }
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            for k in [OFFBOARD_ATTESTATION, OFFBOARDED, OFFBOARDED_AT] {
                a.remove(k);
            }
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    obj
}

/// Where two objects first differ, as a person reads it: `spec`, `metadata.labels[k]`, ….
fn first_difference(a: &Value, b: &Value) -> String {
    let differs = |x: &Value, y: &Value, key: &str| x.get(key) != y.get(key);
    let keys = |v: &Value| -> Vec<String> { v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default() };
    let mut top = keys(a);
    top.extend(keys(b));
    let Some(field) = top.into_iter().find(|k| differs(a, b, k)) else {
        return "the object".into();
    };
    if field != "metadata" {
        return field;
    }
    let (ma, mb) = (&a["metadata"], &b["metadata"]);
    let mut inner = keys(ma);
    inner.extend(keys(mb));
    let Some(k) = inner.into_iter().find(|k| differs(ma, mb, k)) else {
        return "metadata".into();
    };
    if k == "labels" || k == "annotations" {
        let mut names = keys(&ma[&k]);
        names.extend(keys(&mb[&k]));
        if let Some(n) = names.into_iter().find(|n| differs(&ma[&k], &mb[&k], n)) {
            return format!("metadata.{k}[{n}]");
        }
    }
    format!("metadata.{k}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_steps_field_and_the_stamp_may_change() {
        let old = json!({"metadata": {"resourceVersion": "4", "generation": 1,
            "annotations": {"scimgate.io/attestation": "x", "other": "1"}, "labels": {"team": "a"}},
            "spec": {"schedule": "* * * * *", "suspend": false}});
        let mut new = old.clone();
        new["spec"]["suspend"] = json!(true);
        new["metadata"]["generation"] = json!(2);
        new["metadata"]["annotations"][OFFBOARD_ATTESTATION] = json!("jws");
        assert_eq!(only_the_step(Kind::CronWorkflow, Step::Suspend, &old, &new), Ok(()));
        let changed = |path: &str, v: Value| {
            let mut x = new.clone();
            if let Some(slot) = x.pointer_mut(path) {
                *slot = v;
            }
            only_the_step(Kind::CronWorkflow, Step::Suspend, &old, &x)
        };
        assert_eq!(
            changed("/spec/schedule", json!("0 * * * *")),
            Err("it changes spec besides the suspend step".into())
        );
        assert_eq!(
            changed("/metadata/annotations/scimgate.io~1attestation", json!("y")),
            Err("it changes metadata.annotations[scimgate.io/attestation] besides the suspend step".into())
        );
        // Nobody else's labels either: Argo's identity labels are among them.
        assert_eq!(
            changed("/metadata/labels/team", json!("b")),
            Err("it changes metadata.labels[team] besides the suspend step".into())
        );
        let mut owned = new.clone();
        owned["metadata"]["ownerReferences"] = json!([{"uid": "u"}]);
        assert!(only_the_step(Kind::CronWorkflow, Step::Suspend, &old, &owned).is_err());
        // A Workflow's cancel is `spec.shutdown`, not `spec.suspend`; a template takes no step.
        assert!(only_the_step(Kind::Workflow, Step::Cancel, &old, &new).is_err());
        assert!(only_the_step(Kind::Workflow, Step::Keep, &old, &old).is_err());
        assert!(only_the_step(Kind::WorkflowTemplate, Step::Suspend, &old, &new).is_err());
    }
}
