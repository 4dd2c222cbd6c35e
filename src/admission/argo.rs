//! What an Argo Workflows spec executes, read the way the workflow-controller reads it: every
//! service account its pods (and artifact-GC pods) run as, every template it references, and
//! every template it defines inline — at any depth.
//!
//! Argo accepts a template in more places than `spec.templates` (argo-workflows
//! `pkg/apis/workflow/v1alpha1/workflow_types.go`): `templateDefaults`, a step's or a DAG task's
//! `inline` template (`WorkflowStep.Inline`, `DAGTask.Inline`, themselves templates that may hold
//! steps with more inline templates), a status's `storedTemplates` and
//! `storedWorkflowTemplateSpec`. A service account is named by `serviceAccountName` on the spec,
//! on any template, on `executor`, on `artifactGC` (the spec's and each artifact's), and inside
//! any `podSpecPatch` (`pod_spec_patch`). So the walk is over every key of the spec, not a list
//! of paths: a field Argo adds tomorrow under a known name is read too.
//!
//! Keys are compared the way Go compares them (`go_json`): a key that folds onto a field we read
//! but is not spelled exactly is refused — Argo may read it as that field while we would not.
//! One pass, linear in the spec; no allocation per key but for the results.

use super::go_json;
use super::pod_spec_patch;
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// Argo template types that run something themselves (a pod, an agent request, a resource
/// operation); steps, dag and suspend only orchestrate. `Template` in `workflow_types.go`.
pub const EXECUTABLE: [&str; 7] = [
    "container",
    "containerSet",
    "script",
    "resource",
    "data",
    "http",
    "plugin",
];

/// Every field name this module, the action detection and the stamp checks read from an Argo
/// object, besides the template types ([`EXECUTABLE`]). A key folding onto one of them without
/// being it is refused.
const READ: [&str; 26] = [
    "serviceAccountName",
    "podSpecPatch",
    "executor",
    "artifactGC",
    "templateRef",
    "workflowTemplateRef",
    "name",
    "clusterScope",
    "inline",
    "templates",
    "templateDefaults",
    "steps",
    "dag",
    "tasks",
    "hooks",
    "suspend",
    "shutdown",
    "workflowSpec",
    "workflowMetadata",
    "labels",
    "annotations",
    "labelsFrom",
    "storedTemplates",
    "storedWorkflowTemplateSpec",
    "continueOn",
    "depends",
];

/// Maps whose keys are the user's (label names, event names, resource names…), not fields: their
/// keys are not checked, their values are.
const USER_KEYED: [&str; 9] = [
    "labels",
    "annotations",
    "nodeSelector",
    "matchLabels",
    "labelsFrom",
    "hooks",
    "limits",
    "requests",
    "volumeAttributes",
];

/// Values Argo keeps as opaque JSON (`Item`, `Plugin` in `workflow_types.go`): not read at all.
const OPAQUE: [&str; 2] = ["withItems", "plugin"];

/// What one or more Argo specs execute.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Executed {
    /// The run's own `spec.serviceAccountName` (the first spec that names one).
    pub top: Option<String>,
    /// Every other account named anywhere, in document order (may repeat).
    pub accounts: Vec<String>,
    /// Referenced templates: `workflowTemplateRef` and `templateRef` names (may repeat).
    pub refs: Vec<String>,
    /// `inline:<type>:<name>` for every template defined here that runs something.
    pub inline: Vec<String>,
}

/// A key Argo would read as one of our fields while we would not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the key '{key}' at {at} is read by Argo as '{field}' (Go matches keys ignoring case); write it as '{field}'")]
pub struct Folded {
    pub key: String,
    pub at: String,
    pub field: &'static str,
}

/// One part of an object Argo executes.
#[derive(Debug, Clone, Copy)]
pub enum Part<'a> {
    /// A `WorkflowSpec` (`spec`, a CronWorkflow's `spec.workflowSpec`, a stored spec), `at` its path.
    Spec(&'a str, &'a Value),
    /// `status.storedTemplates`: key → template.
    Templates(&'a str, &'a Map<String, Value>),
}

/// Read every part.
pub fn read(parts: &[Part<'_>]) -> Result<Executed, Folded> {
    let mut w = Walk::default();
    for part in parts {
        match *part {
            Part::Spec(at, spec) => {
                w.path = vec![Seg::Key(at)];
                if w.out.top.is_none() {
                    w.out.top = spec
                        .get("serviceAccountName")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(String::from);
                }
                // The spec's own workflowTemplateRef first: it is what the run is "of".
                if let Some(name) = spec.pointer("/workflowTemplateRef/name").and_then(Value::as_str) {
                    w.out.refs.push(name.to_string());
                }
                w.value(spec)?;
            }
            Part::Templates(at, stored) => {
                w.path = vec![Seg::Key(at)];
                for (key, t) in stored {
                    w.inline(key, t);
                }
                w.object(stored, false)?;
            }
        }
    }
    Ok(w.out)
}

/// `inline:<type>:<name>` when a template runs something itself.
pub fn executable(name: &str, t: &Value) -> Option<String> {
    EXECUTABLE
        .iter()
        .find(|k| t.get(**k).is_some_and(|x| !x.is_null()))
        .map(|k| format!("{}{k}:{name}", super::pipeline_run::INLINE))
}

#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

#[derive(Default)]
struct Walk<'a> {
    out: Executed,
    /// Where the walk is, for the error message only.
    path: Vec<Seg<'a>>,
}

impl<'a> Walk<'a> {
    fn value(&mut self, v: &'a Value) -> Result<(), Folded> {
        match v {
            Value::Object(m) => self.object(m, true),
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    self.value(x)?;
                    self.path.pop();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// One object: check its keys (unless they are the user's), note what it names, go down.
    fn object(&mut self, m: &'a Map<String, Value>, fields: bool) -> Result<(), Folded> {
        for (k, v) in m {
            if fields {
                self.check(k)?;
                self.note(m, k, v);
            }
            if OPAQUE.contains(&k.as_str()) && fields {
                continue;
            }
            self.path.push(Seg::Key(k));
            match v {
                Value::Object(inner) if fields && USER_KEYED.contains(&k.as_str()) => self.object(inner, false)?,
                _ => self.value(v)?,
            }
            self.path.pop();
        }
        Ok(())
    }

    fn check(&self, k: &str) -> Result<(), Folded> {
        match go_json::folds_to(k, &READ).or_else(|| go_json::folds_to(k, &EXECUTABLE)) {
            Some(field) if field != k => Err(Folded {
                key: k.to_string(),
                at: self.at(),
                field,
            }),
            _ => Ok(()),
        }
    }

    /// What the key `k` of `m` names, if it is one we read.
    fn note(&mut self, m: &'a Map<String, Value>, k: &str, v: &'a Value) {
        match k {
            "serviceAccountName" => self.account(v),
            "podSpecPatch" => match v {
                Value::String(p) => self.out.accounts.extend(pod_spec_patch::accounts(p)),
                Value::Null => {}
                _ => self.out.accounts.push(pod_spec_patch::unreadable("it is not a string")),
            },
            // The spec's own `workflowTemplateRef` is noted by `read`; one anywhere else (a
            // stored spec's) here.
            "templateRef" => self.reference(v),
            "workflowTemplateRef" if self.path.len() > 1 => self.reference(v),
            "inline" => {
                let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
                self.inline(name, v);
            }
            "templates" => {
                for t in v.as_array().into_iter().flatten() {
                    self.inline(t.get("name").and_then(Value::as_str).unwrap_or_default(), t);
                }
            }
            _ => {}
        }
    }

    fn account(&mut self, v: &Value) {
        let named = match v {
            Value::String(s) if s.contains("{{") => {
                format!("(service account templated at run time: {s})")
            }
            Value::String(s) => s.clone(),
            Value::Null => return,
            other => format!("(service account that is not a string: {other})"),
        };
        if !named.is_empty() {
            self.out.accounts.push(named);
        }
    }

    fn reference(&mut self, v: &Value) {
        if let Some(name) = v.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            self.out.refs.push(name.to_string());
        }
    }

    fn inline(&mut self, name: &str, t: &Value) {
        self.out.inline.extend(executable(name, t));
    }

    fn at(&self) -> String {
        let mut s = String::new();
        for seg in &self.path {
            match seg {
                Seg::Key(k) if s.is_empty() => s.push_str(k),
                Seg::Key(k) => {
                    s.push('.');
                    s.push_str(k);
                }
                Seg::Index(i) => {
                    let _ = write!(s, "[{i}]");
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: &Value) -> Result<Executed, Folded> {
        read(&[Part::Spec("spec", v)])
    }

    /// The review's finding: a step's `inline` template beside an allowed `templateRef`, at any
    /// depth, in steps and in DAG tasks.
    #[test]
    fn inline_templates_at_any_depth_are_read() {
        let s = json!({"serviceAccountName": "ml-runner", "templates": [
            {"name": "main", "steps": [[
                {"name": "ok", "templateRef": {"name": "ml-lib", "template": "train"}},
                {"name": "evil", "inline": {"serviceAccountName": "cluster-admin", "container": {"image": "x"}}}]]},
            {"name": "d", "dag": {"tasks": [
                {"name": "t", "inline": {"steps": [[{"name": "deeper", "inline": {
                    "podSpecPatch": "serviceAccountName: deep-admin", "script": {"image": "x"}}}]]}}]}}]});
        let e = spec(&s).expect("readable");
        assert_eq!(e.top.as_deref(), Some("ml-runner"));
        assert_eq!(e.accounts, vec!["ml-runner", "cluster-admin", "deep-admin"]);
        assert_eq!(e.refs, vec!["ml-lib"]);
        assert_eq!(e.inline, vec!["inline:container:evil", "inline:script:deeper"]);
    }

    #[test]
    fn every_account_field_is_read() {
        let s = json!({"executor": {"serviceAccountName": "exec"},
            "artifactGC": {"serviceAccountName": "gc", "podSpecPatch": "{\"serviceAccount\": \"gc-patch\"}"},
            "templateDefaults": {"serviceAccountName": "defaults"},
            "templates": [{"name": "a", "container": {"image": "x"},
                "outputs": {"artifacts": [{"name": "o", "artifactGC": {"serviceAccountName": "art-gc"}}]},
                "serviceAccountName": "{{inputs.parameters.sa}}"}]});
        let e = spec(&s).expect("readable");
        assert_eq!(e.top, None);
        assert_eq!(
            e.accounts,
            vec![
                "exec",
                "gc",
                "gc-patch",
                "defaults",
                "art-gc",
                "(service account templated at run time: {{inputs.parameters.sa}})"
            ]
        );
    }

    #[test]
    fn keys_go_would_fold_onto_a_field_are_refused() {
        for (s, key, field) in [
            (
                json!({"templates": [{"name": "m", "steps": [[{"name": "s", "inline": {"ServiceAccountName": "admin", "container": {}}}]]}]}),
                "ServiceAccountName",
                "serviceAccountName",
            ),
            (
                json!({"templates": [{"name": "m", "dag": {"tasks": [{"name": "t", "INLINE": {"container": {}}}]}}]}),
                "INLINE",
                "inline",
            ),
            (
                json!({"templates": [{"name": "m", "\u{17f}teps": []}]}),
                "\u{17f}teps",
                "steps",
            ),
            (
                json!({"templates": [{"name": "m", "steps": [[{"templateRef": {"NAME": "evil"}}]]}]}),
                "NAME",
                "name",
            ),
            (json!({"workflowMetadata": {"Labels": {}}}), "Labels", "labels"),
        ] {
            let e = spec(&s).expect_err("refused");
            assert_eq!((e.key.as_str(), e.field), (key, field), "{e}");
        }
        let e = spec(
            &json!({"templates": [{"name": "m", "steps": [[{"name": "s", "inline": {"ServiceAccountName": "a"}}]]}]}),
        )
        .expect_err("refused");
        assert_eq!(e.at, "spec.templates[0].steps[0][0].inline");
    }

    #[test]
    fn the_users_keys_and_opaque_values_are_not_fields() {
        let s = json!({"templates": [{"name": "m", "container": {"image": "x",
                "resources": {"limits": {"Name": "1"}}},
            "metadata": {"labels": {"Name": "x", "Inline": "y"}, "annotations": {"Steps": "z"}},
            "nodeSelector": {"Data": "x"}},
            {"name": "s", "steps": [[{"name": "a", "template": "m", "withItems": [{"Name": 1, "ServiceAccountName": "x"}]}]]},
            {"name": "p", "plugin": {"my-plugin": {"Name": "x", "serviceAccountName": "not-a-pod-account"}}}],
            "hooks": {"Running": {"template": "m"}}});
        let e = spec(&s).expect("readable");
        assert_eq!(e.accounts, Vec::<String>::new());
        assert_eq!(e.inline, vec!["inline:container:m", "inline:plugin:p"]);
    }

    #[test]
    fn stored_templates_and_stored_specs() {
        let stored = json!({"ns/lib/t": {"container": {"image": "x"}, "serviceAccountName": "stored-sa"}});
        let e = read(&[
            Part::Spec("spec", &json!({"workflowTemplateRef": {"name": "wt"}})),
            Part::Templates("status.storedTemplates", stored.as_object().expect("map")),
            Part::Spec(
                "status.storedWorkflowTemplateSpec",
                &json!({"serviceAccountName": "stored-top", "workflowTemplateRef": {"name": "other"}}),
            ),
        ])
        .expect("readable");
        assert_eq!(e.top.as_deref(), Some("stored-top"));
        assert_eq!(e.refs, vec!["wt", "other"]);
        assert_eq!(e.inline, vec!["inline:container:ns/lib/t"]);
        assert_eq!(e.accounts, vec!["stored-sa", "stored-top"]);
    }
}
