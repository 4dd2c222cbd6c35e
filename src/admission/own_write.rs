//! scimgate's own writes: the offboarding sweep suspends and cancels through the API server like
//! anyone, so its PATCH reaches these webhooks. It is admitted — in every mode, by both hooks, with
//! no patch — when it is exactly what a new offboarding stamp (`stamp::offboard`) signs: an UPDATE
//! of the main resource by the account the stamp names, the stamp fresh and made for this object
//! (kind, namespace, name, uid), and the object changed only by the step's patch (`spec` as
//! `offboarding::plan::Step::patch` leaves it; status, owners, finalizers and every other key of
//! ours as they were). Anything else from that account is judged as anyone's write.
//!
//! Must not: admit a write because of who sent it alone (the account's token may leak), nor a
//! stamp from another object, another time or another step.

use super::codec::{Operation, Request};
use crate::offboarding::plan::Step;
use crate::policy::Kind;
use crate::stamp::offboard::{self, Offboard};
use crate::stamp::vocabulary::{OFFBOARDED, OFFBOARDED_AT, OFFBOARD_ATTESTATION};
use crate::stamp::{object, Verifier};
use serde_json::{Map, Value};

/// Whether `req` brings a new offboarding stamp — the only way it can be offboarding's write.
pub fn brings_stamp(req: &Request) -> bool {
    let (Some(new), Some(old)) = (&req.object, &req.old_object) else {
        return false;
    };
    req.operation == Operation::Update
        && offboard::attestation(new).is_some()
        && offboard::attestation(new) != offboard::attestation(old)
}

/// The claims of the offboarding stamp `req` brings, when the write is exactly what it signs
/// (`now`, Unix seconds; a stamp is good for `max_age` seconds); or why it is not.
pub fn check(v: &Verifier, req: &Request, kind: Kind, max_age: i64, now: i64) -> Result<Offboard, String> {
    let (Some(new), Some(old)) = (&req.object, &req.old_object) else {
        return Err("an offboarding stamp comes only on an update".into());
    };
    let claims = match offboard::verified(v, new) {
        Some(Ok(c)) => c,
        Some(Err(e)) => return Err(e.to_string()),
        None => return Err("the request carries no offboarding stamp".into()),
    };
    if !req.sub_resource.is_empty() {
        return Err(format!("an offboarding stamp on the {} subresource", req.sub_resource));
    }
    if claims.requester != req.user.username {
        return Err(format!(
            "the offboarding stamp was made for {}, not {}",
            claims.requester, req.user.username
        ));
    }
    let age = now - claims.iat;
    if age > max_age || age < -max_age {
        return Err(format!(
            "the offboarding stamp is {age} s old, older than the {max_age} s a stamp is good for"
        ));
    }
    let step = Step::named(&claims.step).ok_or_else(|| format!("no offboarding step '{}'", claims.step))?;
    only_the_step(kind, step, old, new)?;
    Ok(claims)
}

/// Whether `new` is `old` changed only by `step` and a new offboarding stamp. Linear in the
/// objects.
fn only_the_step(kind: Kind, step: Step, old: &Value, new: &Value) -> Result<(), String> {
    let patch = step
        .patch(kind)
        .ok_or_else(|| format!("a {} takes no {} step", kind.as_str(), step.as_str()))?;
    let mut spec = old.get("spec").cloned().unwrap_or(Value::Null);
    json_patch::merge(&mut spec, &patch["spec"]);
    if new.get("spec") != Some(&spec) {
        return Err(format!("it changes the spec beyond the {} step", step.as_str()));
    }
    if new.get("status") != old.get("status") {
        return Err("it changes the status".into());
    }
    for k in ["ownerReferences", "finalizers", "deletionTimestamp"] {
        if new["metadata"].get(k) != old["metadata"].get(k) {
            return Err(format!("it changes metadata.{k}"));
        }
    }
    let others = |o: &Value, field: &str| -> Map<String, Value> {
        let mut m = object::ours(o, field);
        for k in [OFFBOARD_ATTESTATION, OFFBOARDED, OFFBOARDED_AT] {
            m.remove(k);
        }
        m
    };
    for field in ["annotations", "labels"] {
        if others(new, field) != others(old, field) {
            return Err(format!(
                "it changes scimgate.io/* {field} besides the offboarding stamp"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_steps_field_and_the_stamp_may_change() {
        let old = json!({"metadata": {"annotations": {"scimgate.io/attestation": "x", "other": "1"}},
            "spec": {"schedule": "* * * * *", "suspend": false}});
        let mut new = old.clone();
        new["spec"]["suspend"] = json!(true);
        new["metadata"]["annotations"][OFFBOARD_ATTESTATION] = json!("jws");
        new["metadata"]["annotations"]["other"] = json!("another webhook's");
        assert_eq!(only_the_step(Kind::CronWorkflow, Step::Suspend, &old, &new), Ok(()));
        let mut more = new.clone();
        more["spec"]["schedule"] = json!("0 * * * *");
        assert!(only_the_step(Kind::CronWorkflow, Step::Suspend, &old, &more).is_err());
        let mut ours = new.clone();
        ours["metadata"]["annotations"]["scimgate.io/attestation"] = json!("y");
        assert!(only_the_step(Kind::CronWorkflow, Step::Suspend, &old, &ours).is_err());
        let mut owned = new.clone();
        owned["metadata"]["ownerReferences"] = json!([{"uid": "u"}]);
        assert!(only_the_step(Kind::CronWorkflow, Step::Suspend, &old, &owned).is_err());
        // A Workflow's cancel is `spec.shutdown`, not `spec.suspend`.
        assert!(only_the_step(Kind::Workflow, Step::Cancel, &old, &new).is_err());
        assert!(only_the_step(Kind::Workflow, Step::Keep, &old, &old).is_err());
    }
}
