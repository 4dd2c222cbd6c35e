//! What an attestation says, and the rules binding it to a request. The binding is to what every
//! webhook call of one API request shares — requester, action, kind, namespace, name or
//! `generateName` — plus a short freshness window; never to `request.uid`, which kube-apiserver
//! makes anew for every call (k8s.io/apiserver
//! `pkg/admission/plugin/webhook/request/admissionreview.go`, `CreateAdmissionObjects`).

use crate::policy::{Action, Kind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// kube-apiserver keeps this many characters of `generateName` before the 5 random ones
/// (k8s.io/apiserver `pkg/storage/names/generate.go`: `maxGeneratedNameLength = 63 - 5`).
pub const GENERATED_BASE_MAX: usize = 58;
/// The random suffix's length (same file: `randomLength = 5`).
pub const GENERATED_SUFFIX: usize = 5;

/// The signed claims of one attestation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub iss: String,
    /// A random id of this stamp; decision records carry it.
    #[serde(default)]
    pub sid: String,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: i64,
    /// The person's SCIM id; empty when a service account acted for itself.
    #[serde(default)]
    pub sub: String,
    /// The person's userName, or the service account (`namespace:name`).
    #[serde(default)]
    pub name: String,
    /// Who asked the API server: the person's SCIM id, or `system:serviceaccount:<ns>:<name>`
    /// (a delegate acting for the person in `sub`).
    #[serde(default)]
    pub requester: String,
    pub action: String,
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    /// The object's name when the request named it…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_name: Option<String>,
    /// …or its `generateName` when the API server was to generate the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    /// Digest of the policy that allowed it.
    #[serde(default)]
    pub policy: String,
    /// The annotations signed, as they must read on the object.
    #[serde(default)]
    pub stamp: Map<String, Value>,
    /// The labels signed (submit only).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub labels: Map<String, Value>,
    /// A digest of what the run executes as it was decided on
    /// (`admission::pipeline_run::runs_digest`): the stamp is good for that spec only. Empty in
    /// stamps made before it was signed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Who last changed what the run executes (a SCIM id; empty for a service account, or in
    /// older stamps, where it is `sub`)…
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author: String,
    /// …and their name (userName, or `namespace:name` of a service account).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author_name: String,
    /// Whether the caller proved to be the API server (a client certificate) when this was
    /// stamped; `None` in stamps made before it was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticated: Option<bool>,
    /// On an agent's request, the SCIM id of the person (an active owner of the agent) whose
    /// rights carried the decision (`scimgate.io/on-behalf-of`); empty for people, service
    /// accounts, and stamps made before agents existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub on_behalf_of: String,
    /// …and that person's userName.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub on_behalf_of_name: String,
}

/// What one request says about itself, the same in every webhook call it causes.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding<'a> {
    pub requester: &'a str,
    pub sub: &'a str,
    pub action: Action,
    pub kind: Kind,
    pub namespace: &'a str,
    pub name: &'a str,
    pub generate_name: &'a str,
}

/// Why an attestation does not belong to a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("it was made for {what} '{signed}', not '{here}'")]
    Field {
        what: &'static str,
        signed: String,
        here: String,
    },
    #[error("it was made for another object (name '{here}' is not '{signed}')")]
    Name { signed: String, here: String },
    #[error("it is {age} s old, older than the {max} s a stamp is good for within one request")]
    Stale { age: i64, max: i64 },
}

/// The name part of a binding: the name, or `generateName` when the request left the name to
/// the API server.
pub fn name_claims(name: &str, generate_name: &str) -> (Option<String>, Option<String>) {
    if name.is_empty() && !generate_name.is_empty() {
        (None, Some(generate_name.to_string()))
    } else {
        (Some(name.to_string()), None)
    }
}

/// Whether `name` is one kube-apiserver could have generated from `generate_name`: the base cut
/// to 58 characters, then 5 random ones (`pkg/storage/names/generate.go`, `GenerateName`).
pub fn generated_from(generate_name: &str, name: &str) -> bool {
    let base: String = generate_name.chars().take(GENERATED_BASE_MAX).collect();
    name.strip_prefix(base.as_str())
        .is_some_and(|rest| rest.chars().count() == GENERATED_SUFFIX)
}

impl Claims {
    /// Who last changed what the run executes, as (SCIM id, name): the signed author, or — in a
    /// stamp from before authors were signed — whom it names.
    pub fn author(&self) -> (&str, &str) {
        if self.author.is_empty() && self.author_name.is_empty() {
            (&self.sub, &self.name)
        } else {
            (&self.author, &self.author_name)
        }
    }

    pub fn action(&self) -> Option<Action> {
        [Action::Submit, Action::Approve, Action::Cancel, Action::Update]
            .into_iter()
            .find(|a| a.as_str() == self.action)
    }

    /// Whether the stamp was made for this object: the same name, or — when it was signed
    /// before the name existed — the `generateName` the object still carries and a name the API
    /// server generated from it (or none yet, in a mutating call).
    pub fn names(&self, name: &str, generate_name: &str) -> Result<(), Mismatch> {
        let ok = match (&self.object_name, &self.generate_name) {
            (Some(signed), _) => signed == name,
            (None, Some(signed)) => signed == generate_name && (name.is_empty() || generated_from(signed, name)),
            (None, None) => false,
        };
        if ok {
            return Ok(());
        }
        let signed = self
            .object_name
            .clone()
            .or_else(|| self.generate_name.as_ref().map(|g| format!("{g}…")))
            .unwrap_or_default();
        Err(Mismatch::Name {
            signed,
            here: if name.is_empty() {
                generate_name.to_string()
            } else {
                name.to_string()
            },
        })
    }

    /// Whether the stamp names the object it sits on (kind, namespace, name): what an offline
    /// check can tell without the request.
    pub fn places(&self, kind: &str, namespace: &str, name: &str, generate_name: &str) -> Result<(), Mismatch> {
        field("kind", &self.kind, kind)?;
        field("namespace", &self.namespace, namespace)?;
        self.names(name, generate_name)
    }

    /// Whether this stamp was made by scimgate in an earlier call of the same request: it names
    /// the same requester, person, action, kind, namespace and object, and is at most `max_age`
    /// seconds old at `now` (re-invocations and the validating call come milliseconds later; a
    /// stamp older than that arrives with a new request — a replay, a copy, a restore).
    pub fn binds(&self, b: &Binding<'_>, now: i64, max_age: i64) -> Result<(), Mismatch> {
        field("requester", &self.requester, b.requester)?;
        field("person", &self.sub, b.sub)?;
        field("action", &self.action, b.action.as_str())?;
        self.places(b.kind.as_str(), b.namespace, b.name, b.generate_name)?;
        let age = now - self.iat;
        // A replica's clock may run a little behind the one that signed.
        if age > max_age || age < -max_age {
            return Err(Mismatch::Stale { age, max: max_age });
        }
        Ok(())
    }
}

fn field(what: &'static str, signed: &str, here: &str) -> Result<(), Mismatch> {
    if signed == here {
        Ok(())
    } else {
        Err(Mismatch::Field {
            what,
            signed: signed.to_string(),
            here: here.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(object_name: Option<&str>, generate_name: Option<&str>) -> Claims {
        Claims {
            iss: "scimgate".into(),
            sid: "s1".into(),
            iat: 1000,
            sub: "u1".into(),
            name: "alice".into(),
            requester: "u1".into(),
            action: "submit".into(),
            kind: "Workflow".into(),
            namespace: "team-a".into(),
            object_name: object_name.map(String::from),
            generate_name: generate_name.map(String::from),
            policy: "p".into(),
            stamp: Map::new(),
            labels: Map::new(),
            digest: String::new(),
            author: String::new(),
            author_name: String::new(),
            authenticated: None,
            on_behalf_of: String::new(),
            on_behalf_of_name: String::new(),
        }
    }

    fn binding<'a>(name: &'a str, generate_name: &'a str) -> Binding<'a> {
        Binding {
            requester: "u1",
            sub: "u1",
            action: Action::Submit,
            kind: Kind::Workflow,
            namespace: "team-a",
            name,
            generate_name,
        }
    }

    #[test]
    fn generated_names_follow_the_api_server() {
        assert!(generated_from("hello-", "hello-x7k2p"));
        assert!(!generated_from("hello-", "hello-x7k2"), "five characters");
        assert!(!generated_from("hello-", "other-x7k2p"));
        let long = "a".repeat(70);
        let name = format!("{}{}", "a".repeat(58), "bcdfg");
        assert!(generated_from(&long, &name), "the base is cut to 58 characters");
        assert!(!generated_from(&long, &format!("{}{}", "a".repeat(60), "bcdfg")));
    }

    #[test]
    fn binding_covers_every_field_and_freshness() {
        let c = claims(None, Some("hello-"));
        assert_eq!(c.binds(&binding("", "hello-"), 1000, 60), Ok(()), "mutating call");
        assert_eq!(
            c.binds(&binding("hello-ab2cd", "hello-"), 1030, 60),
            Ok(()),
            "validating call"
        );
        assert!(matches!(
            c.binds(&binding("hello-ab2cd", "hello-"), 1061, 60),
            Err(Mismatch::Stale { age: 61, max: 60 })
        ));
        assert!(c.binds(&binding("bye-ab2cd", "hello-"), 1000, 60).is_err());
        let mut b = binding("", "hello-");
        b.requester = "system:serviceaccount:argo:argo-server";
        assert!(matches!(
            c.binds(&b, 1000, 60),
            Err(Mismatch::Field { what: "requester", .. })
        ));
        let mut b = binding("", "hello-");
        b.action = Action::Approve;
        assert!(c.binds(&b, 1000, 60).is_err());
        let named = claims(Some("train-1"), None);
        assert_eq!(named.binds(&binding("train-1", ""), 1000, 60), Ok(()));
        assert!(named.binds(&binding("train-2", ""), 1000, 60).is_err());
        let mut b = binding("train-1", "");
        b.namespace = "team-b";
        assert!(named.binds(&b, 1000, 60).is_err());
    }

    #[test]
    fn old_stamps_without_the_new_fields_still_parse() {
        let v = serde_json::json!({"iss": "scimgate", "sub": "u1", "action": "submit", "kind": "Workflow",
            "namespace": "a", "objectName": "x", "uid": "req-1", "policy": "p", "stamp": {}});
        let c: Claims = serde_json::from_value(v).expect("claims");
        assert_eq!((c.sid.as_str(), c.iat), ("", 0));
    }
}
