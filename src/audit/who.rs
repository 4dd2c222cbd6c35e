//! `scimgate audit who NAMESPACE/KIND/NAME`: read the live object through the Kubernetes API
//! (kubeconfig or in-cluster), show who submitted, approved and cancelled it with times, verify
//! each attestation, and find the matching records in the decision log.

use super::query::DecisionQuery;
use super::verify;
use super::DecisionRecord;
use crate::stamp::vocabulary::{OFFBOARDED, OFFBOARDED_AT, TABLE};
use crate::stamp::{object, offboard, Verifier};
use crate::store::Store;
use anyhow::{bail, Context};
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};

/// The controller owner of `obj`, when it has no stamp of its own and is a child a controller
/// creates for one of our kinds (a PipelineRun's TaskRun, a CronWorkflow's Workflow): the kind
/// (as `resource` takes it), namespace and name to fetch and explain instead.
pub fn owner_to_follow(report: &Value, obj: &Value) -> Option<(String, String, String)> {
    let own = report["stamps"]
        .as_array()
        .into_iter()
        .flatten()
        // Offboarding's stamp is scimgate's step, not the object's own submission.
        .any(|s| s["status"] == "valid" && s["action"] != crate::stamp::offboard::ACTION);
    if own {
        return None;
    }
    let (kind, name) = verify::controller_owner(obj)?;
    resource(kind)?;
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str)?;
    Some((kind.to_string(), ns.to_string(), name.to_string()))
}

/// Our kinds by the names people type (`workflow`, `workflows`, `wf`, `pipelinerun`, `pr`, …),
/// where each is served (`cluster::served_at`), and whether it is namespaced.
fn resource(kind: &str) -> Option<(ApiResource, bool)> {
    use crate::policy::Kind;
    let kind = match kind.to_ascii_lowercase().as_str() {
        "workflow" | "workflows" | "wf" => Kind::Workflow,
        "cronworkflow" | "cronworkflows" | "cwf" => Kind::CronWorkflow,
        "workflowtemplate" | "workflowtemplates" | "wftmpl" => Kind::WorkflowTemplate,
        "clusterworkflowtemplate" | "clusterworkflowtemplates" | "cwftmpl" => Kind::ClusterWorkflowTemplate,
        "pipelinerun" | "pipelineruns" | "pr" => Kind::PipelineRun,
        "taskrun" | "taskruns" | "tr" => Kind::TaskRun,
        _ => return None,
    };
    let (_, _, _, namespaced) = crate::cluster::served_at(kind);
    Some((crate::cluster::api_resource(kind), namespaced))
}

/// `NAMESPACE/KIND/NAME`, `KIND/NAME` for cluster-scoped kinds; with a selector, the name is left out.
pub fn parse_target(target: &str, selector: bool) -> anyhow::Result<(ApiResource, Option<String>, Option<String>)> {
    let parts: Vec<&str> = target.split('/').collect();
    let (ns, kind, name) = match (parts.as_slice(), selector) {
        ([ns, kind, name], false) => (Some(*ns), *kind, Some(*name)),
        ([kind, name], false) => (None, *kind, Some(*name)),
        ([ns, kind], true) => (Some(*ns), *kind, None),
        ([kind], true) => (None, *kind, None),
        _ if selector => {
            bail!("with --selector, give NAMESPACE/KIND (or KIND for cluster-scoped kinds), not '{target}'")
        }
        _ => bail!("give NAMESPACE/KIND/NAME (or KIND/NAME for cluster-scoped kinds), not '{target}'"),
    };
    let (ar, namespaced) =
        resource(kind).with_context(|| format!("'{kind}' is not an Argo or Tekton run kind scimgate knows"))?;
    if namespaced && ns.is_none() {
        bail!("{} is namespaced: give NAMESPACE/{}/…", ar.kind, ar.kind);
    }
    Ok((ar, ns.filter(|_| namespaced).map(String::from), name.map(String::from)))
}

pub async fn fetch(
    client: kube::Client,
    ar: &ApiResource,
    ns: Option<&str>,
    name: Option<&str>,
    selector: Option<&str>,
) -> anyhow::Result<Vec<Value>> {
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client, ns, ar),
        None => Api::all_with(client, ar),
    };
    match name {
        Some(name) => {
            let obj = api.get(name).await.map_err(|e| match e {
                kube::Error::Api(s) if s.code == 404 => anyhow::anyhow!(
                    "{} {}{name} not found",
                    ar.kind,
                    ns.map(|n| format!("{n}/")).unwrap_or_default()
                ),
                other => anyhow::Error::new(other).context(format!("reading {} {name}", ar.kind)),
            })?;
            Ok(vec![to_value(obj, ar)?])
        }
        None => {
            let lp = ListParams {
                label_selector: selector.map(String::from),
                ..Default::default()
            };
            let list = api.list(&lp).await.with_context(|| format!("listing {}", ar.plural))?;
            list.items.into_iter().map(|o| to_value(o, ar)).collect()
        }
    }
}

fn to_value(obj: DynamicObject, ar: &ApiResource) -> anyhow::Result<Value> {
    let mut v = serde_json::to_value(obj)?;
    // List items may come without apiVersion/kind; verification compares the kind.
    v["apiVersion"] = json!(ar.api_version);
    v["kind"] = json!(ar.kind);
    Ok(v)
}

/// One object's story: stamps with verification, and the decision records behind them.
pub async fn explain(v: &Verifier, store: Option<&dyn Store>, obj: &Value) -> anyhow::Result<(Value, bool)> {
    let finding = verify::verify_object(v, obj);
    let a = |k: String| {
        obj["metadata"]["annotations"][k]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // An agent's stamp names, in its verified claims, the person whose rights carried it.
    let verified = object::all(v, obj);
    let mut events = Vec::new();
    for e in &TABLE {
        if !a(e.by_key()).is_empty() {
            let mut event =
                json!({"event": e.event, "by": a(e.by_key()), "byId": a(e.by_id_key()), "at": a(e.at_key())});
            let sponsor = verified
                .iter()
                .find(|(entry, _)| entry.event == e.event)
                .and_then(|(_, c)| c.as_ref().ok())
                .filter(|c| !c.on_behalf_of.is_empty() || !c.on_behalf_of_name.is_empty());
            if let Some(c) = sponsor {
                event["onBehalfOf"] = json!(c.on_behalf_of_name);
                event["onBehalfOfId"] = json!(c.on_behalf_of);
            }
            events.push(event);
        }
    }
    // Offboarding's step, by scimgate's own account, names the departed person it was for.
    let offboarded = offboard::verified(v, obj).and_then(Result::ok);
    if let Some(c) = &offboarded {
        events.push(
            json!({"event": "offboarded", "by": c.requester, "byId": "", "at": a(OFFBOARDED_AT.into()),
            "for": a(OFFBOARDED.into()), "step": c.step}),
        );
    }
    let mut decisions = Vec::new();
    if let Some(store) = store {
        let mut records = Vec::new();
        // Each stamp names its id; the decision that let it through carries the same id.
        let sids = verified
            .into_iter()
            .filter_map(|(_, verified)| verified.ok().map(|c| c.sid))
            .chain(offboarded.map(|c| c.sid));
        for sid in sids {
            if sid.is_empty() {
                continue;
            }
            let q = DecisionQuery {
                stamp_id: Some(sid),
                limit: 10,
                ..Default::default()
            };
            records.extend(store.query_decisions(&q).await?);
        }
        // And every decision about this object since it was created, stamped or not: a status
        // write keeps no stamp (the API server drops it), a refused attempt leaves none.
        let meta = |k: &str| obj.pointer(&format!("/metadata/{k}")).and_then(Value::as_str);
        if let (Some(kind), Some(name)) = (obj.get("kind").and_then(Value::as_str), meta("name")) {
            let q = DecisionQuery {
                kind: Some(kind.to_string()),
                namespace: meta("namespace").map(String::from),
                name: Some(name.to_string()),
                // Records are stamped in milliseconds, creationTimestamp in seconds, and the
                // submit is decided just before the API server stores the object: a second's
                // margin, in the records' own form.
                from: meta("creationTimestamp")
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                    .map(|c| crate::model::clock::text(c.with_timezone(&chrono::Utc) - chrono::Duration::seconds(1))),
                limit: 100,
                ..Default::default()
            };
            records.extend(store.query_decisions(&q).await?);
        }
        let mut seen = std::collections::HashSet::new();
        records.retain(|r| seen.insert(r.id.clone()));
        records.sort_by(|a, b| a.at.cmp(&b.at));
        for (r, retried) in one_per_write(records) {
            decisions.push(json!({"id": r.id, "at": r.at, "action": r.action, "outcome": r.outcome, "rule": r.rule, "requester": r.requester, "onBehalfOf": r.on_behalf_of, "requestUid": r.request_uid, "stampId": r.stamp_id, "authenticated": r.authenticated, "reason": r.reason, "alsoAdmitted": retried}));
        }
    }
    let forged = finding.forged();
    let stamps = verify::to_json(&finding);
    Ok((
        json!({"object": finding.object, "events": events, "stamps": stamps["stamps"], "decisions": decisions}),
        forged,
    ))
}

/// How far apart two admissions of one write can be: `GuaranteedUpdate` retries at once, so
/// this only has to cover the webhook calls of the retry.
const RETRY_WINDOW_MS: i64 = 10_000;

/// The records in time order, each write once: kube-apiserver runs admission again when its first
/// attempt started from a stale copy (etcd3 `store.go` `GuaranteedUpdate`, a PATCH re-applied
/// by `handlers/patch.go`), and only the last attempt is stored. Such attempts are the same action
/// by the same requester, each with its own stamp, started from the same prior stamp, moments
/// apart; a second write starts from the first one's stamp instead. Each kept record comes with
/// the ids of the earlier attempts it stands for (they stay in the log: `audit query` lists them).
fn one_per_write(records: Vec<DecisionRecord>) -> Vec<(DecisionRecord, Vec<String>)> {
    let millis = |at: &str| {
        chrono::DateTime::parse_from_rfc3339(at)
            .map(|t| t.timestamp_millis())
            .ok()
    };
    let same_write = |a: &DecisionRecord, b: &DecisionRecord| {
        a.action != "submit"
            && a.action == b.action
            && a.requester == b.requester
            && a.outcome == b.outcome
            && a.stamp_id.is_some()
            && b.stamp_id.is_some()
            && a.stamp_id != b.stamp_id
            && a.prior_decision == b.prior_decision
            && matches!((millis(&a.at), millis(&b.at)), (Some(x), Some(y)) if (0..=RETRY_WINDOW_MS).contains(&(y - x)))
    };
    let mut out: Vec<(DecisionRecord, Vec<String>)> = Vec::new();
    for r in records {
        // Attempts of one write are adjacent per action: look back to the latest record of the
        // same action only.
        match out.iter_mut().rev().find(|(k, _)| k.action == r.action) {
            Some((k, retried)) if same_write(k, &r) => {
                retried.push(std::mem::replace(k, r).id);
            }
            _ => out.push((r, Vec::new())),
        }
    }
    out
}

pub fn text(report: &Value) -> String {
    let mut out = format!("{}\n", report["object"].as_str().unwrap_or_default());
    for e in report["events"].as_array().into_iter().flatten() {
        let text = |k: &str| e[k].as_str().unwrap_or_default();
        if let Some(person) = e["for"].as_str() {
            // scimgate's own step has no person behind it but the one it was for.
            out.push_str(&format!(
                "  {:<10} by {} at {}: {} for {person}\n",
                text("event"),
                text("by"),
                text("at"),
                text("step")
            ));
            continue;
        }
        // An agent's step: the agent, and the person whose rights carried it.
        let sponsor = match (text("onBehalfOf"), text("onBehalfOfId")) {
            ("", "") => String::new(),
            (name, "") | ("", name) => format!(" on behalf of {name}"),
            (name, id) => format!(" on behalf of {name} ({id})"),
        };
        out.push_str(&format!(
            "  {:<10} by {} ({}){sponsor} at {}\n",
            text("event"),
            text("by"),
            e["byId"].as_str().unwrap_or("-"),
            text("at")
        ));
    }
    for s in report["stamps"].as_array().into_iter().flatten() {
        match s["status"].as_str() {
            Some("valid") => out.push_str(&format!(
                "  stamp      {} by {}{}: valid{}\n",
                s["action"].as_str().unwrap_or_default(),
                s["by"].as_str().unwrap_or_default(),
                s["onBehalfOf"]
                    .as_str()
                    .filter(|p| !p.is_empty())
                    .map(|p| format!(" on behalf of {p}"))
                    .unwrap_or_default(),
                verify::unauthenticated_note(s["authenticated"].as_bool())
            )),
            Some("missing") => {
                out.push_str("  stamp      missing: scimgate never admitted this object (or its stamp was removed)\n")
            }
            Some("inherited") => out.push_str(&format!(
                "  stamp      none of its own: it carries its owner {}'s {} stamp (created while scimgate was unreachable, or before it was installed)\n",
                s["owner"].as_str().unwrap_or_default(),
                s["action"].as_str().unwrap_or_default()
            )),
            _ => out.push_str(&format!(
                "  stamp      FORGED: {}\n",
                s["why"].as_str().unwrap_or_default()
            )),
        }
    }
    if let Some(owner) = report.get("owner").filter(|o| o.is_object()) {
        out.push_str("  owner:\n");
        for line in text(owner).lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    for d in report["decisions"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  decision   {} {} {}{} rule {} at {} (id {}){}{}\n",
            d["action"].as_str().unwrap_or_default(),
            d["outcome"].as_str().unwrap_or_default(),
            d["requester"].as_str().unwrap_or_default(),
            d["onBehalfOf"]
                .as_str()
                .map(|p| format!(" on behalf of {p}"))
                .unwrap_or_default(),
            d["rule"].as_str().unwrap_or("-"),
            d["at"].as_str().unwrap_or_default(),
            d["id"].as_str().unwrap_or_default(),
            if d["authenticated"] == json!(false) {
                " (caller not authenticated)"
            } else {
                ""
            },
            d["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ));
        for id in d["alsoAdmitted"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "             the same write was admitted once more before the API server stored it (its update retried; decision {})\n",
                id.as_str().unwrap_or_default()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: &str, at: &str, prior: Option<&str>) -> DecisionRecord {
        DecisionRecord {
            id: id.into(),
            at: at.into(),
            action: "update".into(),
            requester: "oidc:alice@example.com".into(),
            outcome: "allowed".into(),
            stamp_id: Some(format!("stamp-{id}")),
            prior_decision: prior.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn a_retried_write_is_one_decision_and_a_second_write_is_another() {
        let kept = one_per_write(vec![
            // Two attempts of one write, both from the object's state before it…
            update("a", "2026-12-03T07:00:00.000Z", None),
            update("b", "2026-12-03T07:00:00.040Z", None),
            // …then a second write, which starts from the first one's decision.
            update("c", "2026-12-03T07:00:01.000Z", Some("b")),
            // The same prior long after is not a retry.
            update("d", "2026-12-03T07:05:00.000Z", Some("b")),
        ]);
        let ids: Vec<(&str, Vec<String>)> = kept.iter().map(|(r, also)| (r.id.as_str(), also.clone())).collect();
        assert_eq!(ids, vec![("b", vec!["a".to_string()]), ("c", vec![]), ("d", vec![])]);
    }

    /// A Workflow an agent submitted on alice's behalf, its submit stamp signed by `signer`.
    fn agent_run(signer: &crate::stamp::Signer) -> Value {
        use crate::stamp::Entry;
        let e = Entry::SUBMIT;
        let stamp: serde_json::Map<String, Value> = [
            (e.by_key(), json!("pipeline-bot")),
            (e.by_id_key(), json!("a-bot")),
            (e.at_key(), json!("2026-12-03T07:00:00Z")),
            (
                format!("{}{}", crate::stamp::vocabulary::PREFIX, e.on_behalf_of),
                json!("alice@example.com"),
            ),
        ]
        .into_iter()
        .collect();
        let claims = crate::stamp::Claims {
            iss: "scimgate".into(),
            sid: "sid-bot-1".into(),
            iat: 1_790_000_000,
            sub: "a-bot".into(),
            name: "pipeline-bot".into(),
            requester: "a-bot".into(),
            action: "submit".into(),
            kind: "Workflow".into(),
            namespace: "ml-team".into(),
            object_name: Some("train-1".into()),
            generate_name: None,
            policy: "p".into(),
            stamp: stamp.clone(),
            labels: serde_json::Map::new(),
            digest: String::new(),
            author: String::new(),
            author_name: String::new(),
            authenticated: Some(true),
            on_behalf_of: "u-alice".into(),
            on_behalf_of_name: "alice@example.com".into(),
        };
        let jws = signer.sign(serde_json::to_value(&claims).unwrap_or_default());
        let mut annotations = stamp;
        annotations.insert(e.attestation_key(), json!(jws));
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "train-1", "namespace": "ml-team", "annotations": annotations}})
    }

    #[tokio::test]
    async fn an_agents_stamp_names_the_agent_and_the_person_behind_it() {
        let (signer, _) = crate::stamp::Signer::generate().expect("key");
        let v = Verifier::from_signer(&signer);
        let obj = agent_run(&signer);
        let (report, forged) = explain(&v, None, &obj).await.expect("explain");
        assert!(!forged, "{report:#}");
        let e = &report["events"][0];
        assert_eq!(e["by"], "pipeline-bot");
        assert_eq!(e["onBehalfOf"], "alice@example.com");
        assert_eq!(e["onBehalfOfId"], "u-alice");
        assert_eq!(report["stamps"][0]["onBehalfOf"], "alice@example.com");
        assert_eq!(report["stamps"][0]["onBehalfOfId"], "u-alice");
        let out = text(&report);
        assert!(
            out.contains(
                "submitted  by pipeline-bot (a-bot) on behalf of alice@example.com (u-alice) at 2026-12-03T07:00:00Z"
            ),
            "{out}"
        );
        assert!(
            out.contains("stamp      submit by pipeline-bot on behalf of alice@example.com: valid"),
            "{out}"
        );
        assert!(
            verify::line(&verify::verify_object(&v, &obj))
                .ends_with("valid: submit by pipeline-bot on behalf of alice@example.com"),
            "{}",
            verify::line(&verify::verify_object(&v, &obj))
        );
    }

    #[tokio::test]
    async fn a_sponsor_is_shown_only_from_a_stamp_that_verifies() {
        let (signer, _) = crate::stamp::Signer::generate().expect("key");
        let (other, _) = crate::stamp::Signer::generate().expect("key");
        // Signed by a key the verifier does not trust: no sponsor is read from it.
        let obj = agent_run(&other);
        let (report, forged) = explain(&Verifier::from_signer(&signer), None, &obj)
            .await
            .expect("explain");
        assert!(forged);
        assert!(report["events"][0].get("onBehalfOf").is_none(), "{report:#}");
        assert!(!text(&report).contains("on behalf of"), "{}", text(&report));
        // A person's own stamp (no sponsor) reads as before.
        let person = json!({"object": "ml-team/Workflow/x", "events": [{"event": "submitted", "by": "alice@example.com",
            "byId": "u-alice", "at": "t"}], "stamps": [], "decisions": [{"action": "submit", "outcome": "allowed",
            "requester": "oidc:alice@example.com", "onBehalfOf": null, "rule": "r", "at": "t", "id": "d1"}]});
        let out = text(&person);
        assert!(
            out.contains("  submitted  by alice@example.com (u-alice) at t\n"),
            "{out}"
        );
        assert!(
            out.contains("decision   submit allowed oidc:alice@example.com rule r at t"),
            "{out}"
        );
        let agent = json!({"object": "o", "events": [], "stamps": [], "decisions": [{"action": "submit",
            "outcome": "allowed", "requester": "oidc:bot", "onBehalfOf": "u-alice", "rule": "r", "at": "t", "id": "d2"}]});
        assert!(
            text(&agent).contains("decision   submit allowed oidc:bot on behalf of u-alice rule r"),
            "{}",
            text(&agent)
        );
    }

    #[test]
    fn unstamped_writes_and_other_people_are_never_folded() {
        let mut status = update("a", "2026-12-03T07:00:00.000Z", None);
        status.stamp_id = None;
        let mut again = update("b", "2026-12-03T07:00:00.010Z", None);
        again.stamp_id = None;
        let mut bob = update("c", "2026-12-03T07:00:00.020Z", None);
        bob.requester = "oidc:bob@example.com".into();
        assert_eq!(one_per_write(vec![status, again, bob]).len(), 3);
    }
}
