//! Offboarding's stamp: scimgate's own service account suspended or cancelled an object because
//! the person behind it departed. No person's action (no policy rule grants it): a compact JWS,
//! signed with the stamp key, over what was done (`step`), to which object — its uid and the
//! resource version the step is taken on, so it is good for one write on that object —, for whom (`sub`, `name`) and why (`cause`, `departure`), by which
//! account (`requester`), beside two annotations people read (`vocabulary::OFFBOARDED`,
//! `OFFBOARDED_AT`), which it signs too. Made by the sweep (`offboarding::sweep`), checked by
//! the webhooks before they admit the write (`admission::own_write`), read by `audit verify` and
//! `audit who`. Must not: decide whether a write is offboarding's (the webhooks do).

use super::keys::{Signer, Verifier};
use super::object::{metadata_map, Untrusted};
use super::vocabulary::{OFFBOARDED, OFFBOARDED_AT, OFFBOARD_ATTESTATION};
use crate::policy::Kind;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The action an offboarding attestation signs.
pub const ACTION: &str = "offboard";

/// The signed claims of an offboarding attestation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Offboard {
    pub iss: String,
    /// A random id of this stamp; the decision records of the write carry it.
    pub sid: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Always [`ACTION`].
    pub action: String,
    /// Who writes it: scimgate's own account as the API server names it
    /// (`system:serviceaccount:<ns>:<name>`).
    pub requester: String,
    pub kind: String,
    /// Empty for a cluster-scoped object.
    pub namespace: String,
    pub object_name: String,
    /// The object's `metadata.uid`: the stamp is good for this object and no other of its name.
    pub uid: String,
    /// The `metadata.resourceVersion` the step is taken on: the stamp is good for one write, on
    /// the object as it was then (a stamp seen in a write that failed is useless after).
    pub resource_version: String,
    /// The departed person's SCIM id and userName.
    pub sub: String,
    pub name: String,
    /// `deactivated` or `deleted`, and which departure (`offboarding::Departure::key`).
    pub cause: String,
    pub departure: String,
    /// `suspend` or `cancel` (`offboarding::plan::Step`).
    pub step: String,
    /// The annotations signed, as they must read on the object.
    pub stamp: Map<String, Value>,
}

/// Everything a new offboarding stamp says.
#[derive(Debug, Clone)]
pub struct NewOffboard<'a> {
    pub requester: &'a str,
    pub kind: Kind,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub resource_version: &'a str,
    pub sub: &'a str,
    pub user_name: &'a str,
    pub cause: &'a str,
    pub departure: &'a str,
    pub step: &'a str,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// The annotations that put a new offboarding stamp on an object, and its id.
pub fn make(signer: &Signer, n: &NewOffboard<'_>) -> (Map<String, Value>, String) {
    let mut stamp = Map::new();
    stamp.insert(OFFBOARDED.into(), json!(format!("{} ({})", n.user_name, n.cause)));
    stamp.insert(
        OFFBOARDED_AT.into(),
        json!(n.now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    let claims = Offboard {
        iss: "scimgate".into(),
        sid: uuid::Uuid::new_v4().to_string(),
        iat: n.now.timestamp(),
        action: ACTION.into(),
        requester: n.requester.into(),
        kind: n.kind.as_str().into(),
        namespace: n.namespace.into(),
        object_name: n.name.into(),
        uid: n.uid.into(),
        resource_version: n.resource_version.into(),
        sub: n.sub.into(),
        name: n.user_name.into(),
        cause: n.cause.into(),
        departure: n.departure.into(),
        step: n.step.into(),
        stamp: stamp.clone(),
    };
    let jws = signer.sign(serde_json::to_value(&claims).unwrap_or(Value::Null));
    stamp.insert(OFFBOARD_ATTESTATION.into(), json!(jws));
    (stamp, claims.sid)
}

/// The offboarding attestation's text on `obj`, if there is one.
pub fn attestation(obj: &Value) -> Option<&str> {
    metadata_map(obj, "annotations")?.get(OFFBOARD_ATTESTATION)?.as_str()
}

/// The claims of the offboarding attestation on `obj`, when it verifies, is an offboarding
/// stamp, names this object (kind, namespace, name, uid) and the annotations it signed still
/// read what was signed. `None` when there is none.
pub fn verified(v: &Verifier, obj: &Value) -> Option<Result<Offboard, Untrusted>> {
    let jws = attestation(obj)?;
    Some(check(v, obj, jws))
}

fn check(v: &Verifier, obj: &Value, jws: &str) -> Result<Offboard, Untrusted> {
    let key = OFFBOARD_ATTESTATION.to_string();
    let signature = |why: String| Untrusted::Signature { key: key.clone(), why };
    let claims: Offboard = v
        .verify(jws)
        .map_err(|e| e.to_string())
        .and_then(|c| serde_json::from_value(c).map_err(|e| format!("claims: {e}")))
        .map_err(signature)?;
    if claims.action != ACTION {
        return Err(Untrusted::WrongAction {
            key,
            signed: claims.action,
            expected: ACTION,
        });
    }
    let meta = |k: &str| obj["metadata"][k].as_str().unwrap_or_default();
    let here = [
        ("kind", obj["kind"].as_str().unwrap_or_default()),
        ("namespace", meta("namespace")),
        ("name", meta("name")),
        ("uid", meta("uid")),
    ];
    let signed = [&claims.kind, &claims.namespace, &claims.object_name, &claims.uid];
    if let Some(((what, here), signed)) = here.iter().zip(signed).find(|((_, h), s)| h != s) {
        return Err(signature(format!(
            "it was made for another object ({what} '{signed}', not '{here}')"
        )));
    }
    let annotations = metadata_map(obj, "annotations");
    if let Some((k, _)) = claims
        .stamp
        .iter()
        .find(|(k, val)| annotations.and_then(|m| m.get(*k)) != Some(*val))
    {
        return Err(Untrusted::Altered {
            key: k.clone(),
            action: ACTION,
        });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made(signer: &Signer) -> Value {
        let (stamp, _) = make(
            signer,
            &NewOffboard {
                requester: "system:serviceaccount:scimgate:scimgate",
                kind: Kind::CronWorkflow,
                namespace: "team-a",
                name: "nightly",
                uid: "u-1",
                resource_version: "7",
                sub: "id-alice",
                user_name: "alice@example.com",
                cause: "deactivated",
                departure: "deactivated@3",
                step: "suspend",
                now: chrono::Utc::now(),
            },
        );
        json!({"kind": "CronWorkflow", "metadata": {"name": "nightly", "namespace": "team-a", "uid": "u-1",
            "annotations": stamp}})
    }

    #[test]
    fn a_stamp_verifies_on_its_object_only_and_as_signed() {
        let (signer, _) = Signer::generate().expect("key");
        let v = Verifier::from_signer(&signer);
        let obj = made(&signer);
        let c = verified(&v, &obj).expect("there").expect("verifies");
        assert_eq!((c.sub.as_str(), c.step.as_str()), ("id-alice", "suspend"));
        assert_eq!(
            obj["metadata"]["annotations"][OFFBOARDED],
            "alice@example.com (deactivated)"
        );
        // The same name re-created under another uid is another object.
        let mut other = obj.clone();
        other["metadata"]["uid"] = json!("u-2");
        let e = verified(&v, &other).expect("there").expect_err("another object");
        assert!(e.to_string().contains("uid 'u-1', not 'u-2'"), "{e}");
        let mut altered = obj.clone();
        altered["metadata"]["annotations"][OFFBOARDED] = json!("bob@example.com (deactivated)");
        assert!(matches!(verified(&v, &altered), Some(Err(Untrusted::Altered { .. }))));
        // Another key's stamp does not verify.
        let (other_signer, _) = Signer::generate().expect("key");
        assert!(matches!(
            verified(&v, &made(&other_signer)),
            Some(Err(Untrusted::Signature { .. }))
        ));
        assert!(verified(&v, &json!({"metadata": {}})).is_none());
    }
}
