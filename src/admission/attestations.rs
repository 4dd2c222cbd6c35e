//! The stamps of one request, the stage of a decision that checks what a request carries and
//! makes what it earns: every `scimgate.io/*` key a request changes must be covered by a fresh
//! attestation of one of its actions, bound to it (`stamp::Binding`), made for the decision it
//! got and for the spec it runs (`pipeline_run::runs_digest`); the mutating call keeps stamps
//! that are all that, and otherwise makes them anew. Also guards the metadata Argo copies into
//! runs and writes Argo's creator labels when asked to. No I/O.

use super::{pipeline_run, Subject};
use crate::identity;
use crate::policy::{Action, Kind};
use crate::stamp::{self, object, Binding, Claims, Entry, Verifier, PREFIX};
use serde_json::{json, Value};

/// An attestation this request brings (changed in it), verified and bound to it.
pub struct Fresh {
    pub entry: &'static Entry,
    pub claims: Claims,
}

/// Every `scimgate.io/*` annotation and label that differs from the stored object (all of them on
/// CREATE) must be covered by an attestation that changed in this request, verifies, is of one
/// of this request's actions and is bound to it (requester, person, kind, namespace, name,
/// fresh). The attestations that are, or why the keys cannot stand.
pub fn fresh<'b>(
    verifier: &Verifier,
    max_age: i64,
    subject: &Subject<'_>,
    actions: &[Action],
    binding: &dyn Fn(Action) -> Binding<'b>,
    now: i64,
) -> Result<Vec<Fresh>, String> {
    let (obj, old) = (subject.obj, subject.req.old_object.as_ref());
    // Keys that differ: every key of the new map that reads otherwise before, then every key
    // of the old map the new one lacks — each once, with no scan of what was found so far.
    let mut changed = Vec::new();
    for field in ["annotations", "labels"] {
        let after = object::ours(obj, field);
        let before = old.map(|o| object::ours(o, field)).unwrap_or_default();
        changed.extend(
            after
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(*v))
                .chain(before.iter().filter(|(k, _)| !after.contains_key(*k)))
                .map(|(k, _)| (field, k.clone())),
        );
    }
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    let mut fresh = Vec::new();
    for entry in &stamp::vocabulary::TABLE {
        let now_jws = object::attestation(obj, entry);
        if now_jws.is_none() || now_jws == old.and_then(|o| object::attestation(o, entry)) {
            continue;
        }
        let key = entry.attestation_key();
        let claims = match object::verified(verifier, obj, entry) {
            Some(Ok(c)) => c,
            Some(Err(e)) => return Err(format!("{e}; {PREFIX}* annotations cannot be set by hand")),
            None => continue,
        };
        if !actions.contains(&entry.action) {
            let this: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
            return Err(format!(
                "{key} holds a new {} stamp, but this request is {}; {PREFIX}* annotations cannot be set by hand",
                entry.action.as_str(),
                if this.is_empty() {
                    "no action of a person".to_string()
                } else {
                    this.join(" and ")
                }
            ));
        }
        claims.binds(&binding(entry.action), now, max_age).map_err(|m| {
            format!(
                "{key} is not a stamp scimgate made for this request: {m}; {PREFIX}* annotations cannot be set by hand"
            )
        })?;
        fresh.push(Fresh { entry, claims });
    }
    // A key is covered when a new stamp signed it, or — gone now — when it belonged to the
    // earlier stamp of the same action, which the new one replaced.
    let annotations = object::ours(obj, "annotations");
    let covered = |field: &str, k: &str| {
        fresh.iter().any(|f| match field {
            "annotations" => {
                k == f.entry.attestation_key()
                    || f.claims.stamp.contains_key(k)
                    || (f.entry.owns(k) && !annotations.contains_key(k))
            }
            _ => f.claims.labels.contains_key(k),
        })
    };
    if let Some((field, k)) = changed.iter().find(|(f, k)| !covered(f, k)) {
        let what = if *field == "labels" { "label" } else { "annotation" };
        return Err(format!(
            "the {what} {k} was changed by hand; {PREFIX}* annotations and labels are scimgate's to write"
        ));
    }
    Ok(fresh)
}

/// Why a fresh stamp is not one for this decision: made for another decision (a dry-run `allow`
/// copied onto a run that got `dry-run-deny`), or for another spec than the one that stands (a
/// stamp copied onto another run within its freshness window, or a webhook after ours changed
/// what runs after it was stamped). `None` when it is.
pub fn mismatch(f: &Fresh, decisions: &[(Action, String)], digest: &str) -> Option<String> {
    let key = f.entry.attestation_key();
    let decided = decisions
        .iter()
        .find(|(a, _)| *a == f.entry.action)
        .map(|(_, d)| d.as_str());
    let signed = f.claims.stamp.get(&f.entry.decision_key()).and_then(Value::as_str);
    if signed != decided {
        return Some(format!(
            "{key} attests the decision '{}', but this request was decided '{}'",
            signed.unwrap_or_default(),
            decided.unwrap_or_default()
        ));
    }
    if f.claims.digest != digest {
        return Some(format!(
            "{key} was made for another spec than the one this request carries (a stamp is good for the spec it was decided on; if a webhook after scimgate's changes what runs, order it before scimgate's)"
        ));
    }
    None
}

/// The ids of this request's own stamps when they are all in place for `decisions` and `digest`
/// (a re-invocation of the mutating webhook, or the validating call): one per action that
/// stamps.
pub fn in_place(fresh: &[Fresh], decisions: &[(Action, String)], digest: &str) -> Option<Vec<(Action, String)>> {
    decisions
        .iter()
        .filter(|(a, _)| Entry::of(*a).is_some())
        .map(|(a, _)| {
            fresh
                .iter()
                .find(|f| f.entry.action == *a && mismatch(f, decisions, digest).is_none())
                .map(|f| (*a, f.claims.sid.clone()))
        })
        .collect()
}

/// Who last changed what the run executes, when not the person acting now (`None`): on an
/// update that leaves what runs as it was, whoever the stored object's latest verified stamp
/// says; when it cannot say (no stamp holds), the person acting now answers for it.
pub fn author(verifier: &Verifier, subject: &Subject<'_>, digest: &str) -> Option<(String, String)> {
    let old = subject.req.old_object.as_ref()?;
    if pipeline_run::runs_digest(subject.kind, old) != digest {
        return None;
    }
    object::latest(verifier, old, subject.kind.as_str()).map(|c| {
        let (a, n) = c.author();
        (a.to_string(), n.to_string())
    })
}

/// `scimgate.io/*` and Argo's identity labels inside the metadata Argo copies into runs
/// (`stamp::copied_metadata`). A stamp there is inherited by every run started from the object,
/// so on CREATE only a CronWorkflow's own submit stamp may stand in its `spec.workflowMetadata`
/// (the same keys as on the object), and on UPDATE nothing may be added or changed there
/// (removing only loses the inheritance). Argo's creator and actor labels there would be written
/// onto every run by the controller's first reconcile — past the rule that only the Argo Server
/// writes them — so they may not be added or changed there either, as labels or as `labelsFrom`
/// keys (argo-workflows `workflow/controller/operator.go` `updateWorkflowMetadata`,
/// `workflow/common/convert.go` `toWorkflow`, which copies them over the CronWorkflow's own).
pub fn check_copied(kind: Kind, obj: &Value, old: Option<&Value>) -> Result<(), String> {
    let guarded = |field: &str, k: &str| {
        stamp::vocabulary::is_ours(k) || (field != "annotations" && identity::ARGO_IDENTITY_LABELS.contains(&k))
    };
    let at = |o: &Value, path: &[&str], field: &str| -> serde_json::Map<String, Value> {
        stamp::at(o, path)
            .and_then(|m| m.get(field))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| guarded(field, k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    for path in stamp::copied_metadata(kind) {
        for field in ["annotations", "labels", "labelsFrom"] {
            let allowed = match old {
                Some(old) => at(old, path, field),
                None if kind == Kind::CronWorkflow && *path == stamp::WORKFLOW_METADATA && field != "labelsFrom" => {
                    object::ours(obj, field)
                }
                None => serde_json::Map::new(),
            };
            if let Some((k, _)) = at(obj, path, field)
                .into_iter()
                .find(|(k, v)| allowed.get(k) != Some(v))
            {
                let why = if stamp::vocabulary::is_ours(&k) {
                    "was not written by scimgate; a stamp there would be inherited by every run started from it"
                } else {
                    "would be copied onto every run started from it, and Argo's identity labels are only the Argo Server's to write"
                };
                return Err(format!("{k} in {}.{field} {why}", path.join(".")));
            }
        }
    }
    Ok(())
}

/// Argo's creator labels, set to the verified person, written the way the Argo Server writes
/// them (`directory::argo_label`), the subject as the SCIM id.
pub fn argo_creator_labels(obj: &Value, user_id: &str, user_name: &str) -> Vec<Value> {
    use crate::directory::{argo_email_label, argo_label};
    let current = object::metadata_map(obj, "labels");
    let email = user_name.contains('@').then(|| argo_email_label(user_name));
    let want = [
        (identity::ARGO_CREATOR, Some(argo_label(user_id))),
        (identity::ARGO_CREATOR_USERNAME, Some(argo_label(user_name))),
        (identity::ARGO_CREATOR_EMAIL, email),
    ];
    let mut ops = Vec::new();
    for (k, v) in want {
        let path = format!("/metadata/labels/{}", stamp::patch::pointer_key(k));
        let have = current.and_then(|c| c.get(k)).and_then(Value::as_str);
        match v {
            Some(v) if have != Some(v.as_str()) => ops.push(json!({"op": "add", "path": path, "value": v})),
            None if have.is_some() => ops.push(json!({"op": "remove", "path": path})),
            _ => {}
        }
    }
    ops
}
