//! What a request is about: which of our kinds (Argo v1alpha1; Tekton v1 and v1beta1), what it
//! would run as, which templates it uses, and which action the change amounts to.

use crate::admission::codec::Operation;
use crate::policy::{Action, Kind};
use serde_json::Value;

/// Our kinds by API group/version/kind; anything else is not ours.
pub fn detect(group: &str, version: &str, kind: &str) -> Option<Kind> {
    match (group, version, kind) {
        ("argoproj.io", "v1alpha1", "Workflow") => Some(Kind::Workflow),
        ("argoproj.io", "v1alpha1", "CronWorkflow") => Some(Kind::CronWorkflow),
        ("argoproj.io", "v1alpha1", "WorkflowTemplate") => Some(Kind::WorkflowTemplate),
        ("argoproj.io", "v1alpha1", "ClusterWorkflowTemplate") => Some(Kind::ClusterWorkflowTemplate),
        ("tekton.dev", "v1" | "v1beta1", "PipelineRun") => Some(Kind::PipelineRun),
        ("tekton.dev", "v1" | "v1beta1", "TaskRun") => Some(Kind::TaskRun),
        _ => None,
    }
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

fn arr<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return &[],
        }
    }
    cur.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The Argo workflow spec: `spec`, or `spec.workflowSpec` for a CronWorkflow.
fn argo_spec(kind: Kind, obj: &Value) -> Option<&Value> {
    let spec = obj.get("spec")?;
    if kind == Kind::CronWorkflow {
        spec.get("workflowSpec")
    } else {
        Some(spec)
    }
}

/// Service accounts the run's pods would use; `default` when the run names none.
pub fn run_as(kind: Kind, obj: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |x: Option<&str>| {
        if let Some(x) = x.filter(|x| !x.is_empty()) {
            if !out.iter().any(|o| o == x) {
                out.push(x.to_string());
            }
        }
    };
    let top = match kind {
        Kind::PipelineRun => {
            let spec = obj.get("spec").unwrap_or(&Value::Null);
            let top = s(spec, &["taskRunTemplate", "serviceAccountName"]).or_else(|| s(spec, &["serviceAccountName"]));
            push(top);
            for t in arr(spec, &["taskRunSpecs"]) {
                push(s(t, &["serviceAccountName"]).or_else(|| s(t, &["taskServiceAccountName"])));
            }
            for t in arr(spec, &["serviceAccountNames"]) {
                push(s(t, &["serviceAccountName"]));
            }
            top
        }
        Kind::TaskRun => {
            let top = s(obj, &["spec", "serviceAccountName"]);
            push(top);
            top
        }
        _ => {
            let Some(spec) = argo_spec(kind, obj) else {
                return vec!["default".into()];
            };
            let top = s(spec, &["serviceAccountName"]);
            push(top);
            push(s(spec, &["executor", "serviceAccountName"]));
            for t in arr(spec, &["templates"]) {
                push(s(t, &["serviceAccountName"]));
                push(s(t, &["executor", "serviceAccountName"]));
            }
            top
        }
    };
    if top.is_none_or(str::is_empty) && !out.iter().any(|o| o == "default") {
        out.insert(0, "default".into());
    }
    out
}

fn resolver_ref(r: &Value) -> Option<String> {
    if let Some(name) = s(r, &["name"]).filter(|n| !n.is_empty()) {
        return Some(name.to_string());
    }
    let resolver = s(r, &["resolver"])?;
    // Name a remote pipeline/task by its resolver and the params that locate it.
    let pick = ["name", "pathInRepo", "bundle", "url"];
    let located: Vec<String> = arr(r, &["params"])
        .iter()
        .filter(|p| s(p, &["name"]).is_some_and(|n| pick.contains(&n)))
        .filter_map(|p| p.get("value").and_then(Value::as_str).map(String::from))
        .collect();
    Some(format!("{resolver}:{}", located.join(":")))
}

/// Templates, pipelines or tasks the run references by name (inline definitions add nothing).
pub fn templates(kind: Kind, obj: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |x: Option<String>| {
        if let Some(x) = x {
            if !out.contains(&x) {
                out.push(x);
            }
        }
    };
    match kind {
        Kind::PipelineRun => {
            if let Some(r) = obj.get("spec").and_then(|s| s.get("pipelineRef")) {
                push(resolver_ref(r));
            }
        }
        Kind::TaskRun => {
            if let Some(r) = obj.get("spec").and_then(|s| s.get("taskRef")) {
                push(resolver_ref(r));
            }
        }
        _ => {
            let Some(spec) = argo_spec(kind, obj) else { return out };
            push(s(spec, &["workflowTemplateRef", "name"]).map(String::from));
            for t in arr(spec, &["templates"]) {
                for step_group in arr(t, &["steps"]) {
                    for step in step_group.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                        push(s(step, &["templateRef", "name"]).map(String::from));
                    }
                }
                for task in arr(t, &["dag", "tasks"]) {
                    push(s(task, &["templateRef", "name"]).map(String::from));
                }
            }
        }
    }
    out
}

/// Suspend nodes of an Argo workflow status: node id → phase.
fn suspend_phases(obj: &Value) -> Vec<(String, String)> {
    let Some(nodes) = obj
        .get("status")
        .and_then(|s| s.get("nodes"))
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    nodes
        .iter()
        .filter(|(_, n)| s(n, &["type"]) == Some("Suspend"))
        .map(|(id, n)| (id.clone(), s(n, &["phase"]).unwrap_or_default().to_string()))
        .collect()
}

const TEKTON_CANCEL: [&str; 3] = ["Cancelled", "CancelledRunFinally", "StoppedRunFinally"];

/// The action a request amounts to; `None` for changes that are no action of a person
/// (metadata-only edits, status writes).
pub fn action(kind: Kind, op: Operation, old: Option<&Value>, new: &Value) -> Option<Action> {
    match op {
        Operation::Create => return Some(Action::Submit),
        Operation::Update => {}
        Operation::Delete | Operation::Connect => return None,
    }
    let old = old?;
    match kind {
        Kind::PipelineRun | Kind::TaskRun => {
            let was = s(old, &["spec", "status"]).unwrap_or_default();
            let now = s(new, &["spec", "status"]).unwrap_or_default();
            if now != was && TEKTON_CANCEL.contains(&now) {
                return Some(Action::Cancel);
            }
            if was.ends_with("Pending") && !now.ends_with("Pending") {
                return Some(Action::Approve);
            }
        }
        Kind::Workflow => {
            let was = s(old, &["spec", "shutdown"]).unwrap_or_default();
            let now = s(new, &["spec", "shutdown"]).unwrap_or_default();
            if !now.is_empty() && now != was {
                return Some(Action::Cancel);
            }
            let suspended =
                |o: &Value| o.get("spec").and_then(|s| s.get("suspend")).and_then(Value::as_bool) == Some(true);
            if suspended(old) && !suspended(new) {
                return Some(Action::Approve);
            }
            // A Suspend node leaving Running: resumed (Succeeded) or rejected (Failed) — both are
            // the approver's decision.
            let before = suspend_phases(old);
            for (id, phase) in suspend_phases(new) {
                let was_running = before.iter().any(|(i, p)| *i == id && p == "Running");
                if was_running && (phase == "Succeeded" || phase == "Failed") {
                    return Some(Action::Approve);
                }
            }
        }
        _ => {}
    }
    let spec_changed = old.get("spec") != new.get("spec");
    spec_changed.then_some(Action::Update)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn run_as_and_templates_by_kind() {
        let wf = json!({"spec": {"serviceAccountName": "ml-runner", "workflowTemplateRef": {"name": "ml-train"},
            "templates": [{"name": "a", "steps": [[{"templateRef": {"name": "lib", "template": "x"}}]]},
                          {"name": "b", "dag": {"tasks": [{"templateRef": {"name": "lib2"}}]}, "executor": {"serviceAccountName": "exec"}}]}});
        assert_eq!(run_as(Kind::Workflow, &wf), vec!["ml-runner", "exec"]);
        assert_eq!(templates(Kind::Workflow, &wf), vec!["ml-train", "lib", "lib2"]);
        let cron = json!({"spec": {"workflowSpec": {"entrypoint": "x"}}});
        assert_eq!(run_as(Kind::CronWorkflow, &cron), vec!["default"]);
        let pr = json!({"spec": {"pipelineRef": {"resolver": "git", "params": [{"name": "url", "value": "https://g/x"}, {"name": "pathInRepo", "value": "p.yaml"}]},
            "taskRunTemplate": {"serviceAccountName": "builder"}, "taskRunSpecs": [{"pipelineTaskName": "t", "serviceAccountName": "pusher"}]}});
        assert_eq!(run_as(Kind::PipelineRun, &pr), vec!["builder", "pusher"]);
        assert_eq!(templates(Kind::PipelineRun, &pr), vec!["git:https://g/x:p.yaml"]);
        let beta = json!({"spec": {"serviceAccountName": "old", "pipelineRef": {"name": "build"}}});
        assert_eq!(
            (run_as(Kind::PipelineRun, &beta), templates(Kind::PipelineRun, &beta)),
            (vec!["old".to_string()], vec!["build".to_string()])
        );
    }

    #[test]
    fn actions_from_old_and_new() {
        let pending = json!({"spec": {"status": "PipelineRunPending"}});
        let started = json!({"spec": {}});
        let cancelled = json!({"spec": {"status": "Cancelled"}});
        assert_eq!(
            action(Kind::PipelineRun, Operation::Update, Some(&pending), &started),
            Some(Action::Approve)
        );
        assert_eq!(
            action(Kind::PipelineRun, Operation::Update, Some(&started), &cancelled),
            Some(Action::Cancel)
        );
        let susp =
            json!({"spec": {"suspend": true}, "status": {"nodes": {"n1": {"type": "Suspend", "phase": "Running"}}}});
        let resumed = json!({"spec": {}, "status": {"nodes": {"n1": {"type": "Suspend", "phase": "Succeeded"}}}});
        assert_eq!(
            action(Kind::Workflow, Operation::Update, Some(&susp), &resumed),
            Some(Action::Approve)
        );
        let node_only_old =
            json!({"spec": {"x": 1}, "status": {"nodes": {"n1": {"type": "Suspend", "phase": "Running"}}}});
        let node_only_new =
            json!({"spec": {"x": 1}, "status": {"nodes": {"n1": {"type": "Suspend", "phase": "Failed"}}}});
        assert_eq!(
            action(Kind::Workflow, Operation::Update, Some(&node_only_old), &node_only_new),
            Some(Action::Approve)
        );
        let stop = json!({"spec": {"shutdown": "Stop"}});
        assert_eq!(
            action(Kind::Workflow, Operation::Update, Some(&started), &stop),
            Some(Action::Cancel)
        );
        let status_only = json!({"spec": {}, "status": {"phase": "Running"}});
        assert_eq!(
            action(Kind::Workflow, Operation::Update, Some(&started), &status_only),
            None
        );
        assert_eq!(
            action(
                Kind::Workflow,
                Operation::Update,
                Some(&started),
                &json!({"spec": {"x": 2}})
            ),
            Some(Action::Update)
        );
        assert_eq!(
            action(Kind::Workflow, Operation::Create, None, &started),
            Some(Action::Submit)
        );
        assert_eq!(detect("tekton.dev", "v1beta1", "TaskRun"), Some(Kind::TaskRun));
        assert_eq!(detect("", "v1", "Pod"), None);
    }
}
