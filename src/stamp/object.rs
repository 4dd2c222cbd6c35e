//! Reading stamps off an object: our keys as they stand, and each attestation verified against
//! the annotations and labels beside it. Used alike by the webhooks and the audit commands.

use super::claims::Claims;
use super::keys::Verifier;
use super::vocabulary::{is_ours, Entry, TABLE};
use serde_json::{Map, Value};

/// `metadata.<field>` (`annotations` or `labels`) of an object.
pub fn metadata_map<'a>(obj: &'a Value, field: &str) -> Option<&'a Map<String, Value>> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_object)
}

/// Our keys (`scimgate.io/*`) in `metadata.<field>`.
pub fn ours(obj: &Value, field: &str) -> Map<String, Value> {
    metadata_map(obj, field)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| is_ours(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// An attestation's text on the object, if there is one.
pub fn attestation<'a>(obj: &'a Value, entry: &Entry) -> Option<&'a str> {
    metadata_map(obj, "annotations")?
        .get(&entry.attestation_key())?
        .as_str()
}

/// Why an attestation on an object cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    #[error("{key}: {why}")]
    Signature { key: String, why: String },
    #[error("{key} holds a {signed} stamp, not a {expected} stamp")]
    WrongAction {
        key: String,
        signed: String,
        expected: &'static str,
    },
    #[error("{key} was altered after {action} was stamped")]
    Altered { key: String, action: &'static str },
}

/// The claims of the `entry` attestation on `obj`, when it verifies, is of that action, and every
/// annotation and label it signed still reads what was signed. `None` when there is none.
pub fn verified(v: &Verifier, obj: &Value, entry: &'static Entry) -> Option<Result<Claims, Untrusted>> {
    let jws = attestation(obj, entry)?;
    Some(check(v, obj, entry, jws))
}

fn check(v: &Verifier, obj: &Value, entry: &'static Entry, jws: &str) -> Result<Claims, Untrusted> {
    let key = entry.attestation_key();
    let claims: Claims = v
        .verify(jws)
        .map_err(|e| e.to_string())
        .and_then(|c| serde_json::from_value(c).map_err(|e| format!("claims: {e}")))
        .map_err(|why| Untrusted::Signature { key: key.clone(), why })?;
    if claims.action != entry.action.as_str() {
        return Err(Untrusted::WrongAction {
            key,
            signed: claims.action,
            expected: entry.action.as_str(),
        });
    }
    for (field, signed) in [("annotations", &claims.stamp), ("labels", &claims.labels)] {
        let here = metadata_map(obj, field);
        if let Some((k, _)) = signed
            .iter()
            .find(|(k, val)| here.and_then(|m| m.get(*k)) != Some(*val))
        {
            return Err(Untrusted::Altered {
                key: k.clone(),
                action: entry.action.as_str(),
            });
        }
    }
    Ok(claims)
}

/// The latest stamp on `obj` (of kind `kind`) that verifies and names it (kind, namespace, name or
/// `generateName`): whoever last changed what `obj` runs is in it (`Claims::author`).
pub fn latest(v: &Verifier, obj: &Value, kind: &str) -> Option<Claims> {
    let meta = |k: &str| {
        obj.get("metadata")
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    all(v, obj)
        .into_iter()
        .filter_map(|(_, c)| c.ok())
        .filter(|c| {
            c.places(kind, meta("namespace"), meta("name"), meta("generateName"))
                .is_ok()
        })
        .max_by_key(|c| c.iat)
}

/// Every attestation on `obj`, in table order, verified.
pub fn all(v: &Verifier, obj: &Value) -> Vec<(&'static Entry, Result<Claims, Untrusted>)> {
    TABLE
        .iter()
        .filter_map(|e| verified(v, obj, e).map(|r| (e, r)))
        .collect()
}
