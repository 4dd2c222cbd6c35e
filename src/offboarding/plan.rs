//! What to do with one live object a departed person is behind: its state read the way its
//! controller reads it, and the step the configuration asks for. Pure: no I/O, no clock.
//!
//! States, from upstream's types:
//! - CronWorkflow (argo-workflows `pkg/apis/workflow/v1alpha1/cron_workflow_types.go`):
//!   `spec.suspend` true stops scheduling; otherwise it is scheduled.
//! - Workflow (`workflow_types.go`): finished once `status.phase` is Succeeded, Failed or Error
//!   (`WorkflowPhase.Completed`) or the `workflows.argoproj.io/completed` label is "true"; held
//!   while `spec.suspend` is true or a node of type Suspend is Running (`IsActiveSuspendNode`);
//!   not started while the phase is empty or Pending; otherwise running. A stopped run is one
//!   whose `spec.shutdown` is set.
//! - PipelineRun and TaskRun (tektoncd/pipeline `pkg/apis/pipeline/v1/pipelinerun_types.go`,
//!   `taskrun_types.go`): held while `spec.status` is `PipelineRunPending` / `TaskRunPending`;
//!   finished once the `Succeeded` condition is True or False; cancelled once `spec.status` names
//!   a cancellation (`Cancelled`, `CancelledRunFinally`, `StoppedRunFinally`, `TaskRunCancelled`);
//!   not started while there is no `Succeeded` condition; otherwise running.
//! - WorkflowTemplate and ClusterWorkflowTemplate run nothing by themselves: reported, kept.

use super::{CronWorkflows, Options, PendingRuns, RunningRuns};
use crate::policy::Kind;
use serde_json::{json, Value};

/// An object's state, as far as offboarding cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A CronWorkflow that will start runs.
    Scheduled,
    /// A CronWorkflow that starts none (`spec.suspend`).
    Suspended,
    /// Not started yet, or waiting (for an approval, at a Suspend node, `PipelineRunPending`).
    Pending,
    Running,
    /// Finished, or already cancelled or stopped.
    Done,
    /// A template: runs nothing by itself.
    Template,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Scheduled => "scheduled",
            State::Suspended => "suspended",
            State::Pending => "pending",
            State::Running => "running",
            State::Done => "done",
            State::Template => "template",
        }
    }
}

/// What offboarding does to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `spec.suspend: true` on a CronWorkflow.
    Suspend,
    /// Stop a run: `spec.shutdown: Stop` on a Workflow (its exit handlers still run),
    /// `spec.status: Cancelled` on a PipelineRun, `TaskRunCancelled` on a TaskRun.
    Cancel,
    /// Nothing, by configuration or because nothing is left to do.
    Keep,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Suspend => "suspend",
            Step::Cancel => "cancel",
            Step::Keep => "keep",
        }
    }

    /// The step `name`s ([`Step::as_str`]).
    pub fn named(name: &str) -> Option<Step> {
        [Step::Suspend, Step::Cancel, Step::Keep]
            .into_iter()
            .find(|s| s.as_str() == name)
    }

    /// The JSON merge patch (RFC 7386) that takes this step on a `kind`; `None` for [`Step::Keep`].
    pub fn patch(self, kind: Kind) -> Option<Value> {
        match (self, kind) {
            (Step::Suspend, Kind::CronWorkflow) => Some(json!({"spec": {"suspend": true}})),
            (Step::Cancel, Kind::Workflow) => Some(json!({"spec": {"shutdown": "Stop"}})),
            (Step::Cancel, Kind::PipelineRun) => Some(json!({"spec": {"status": "Cancelled"}})),
            (Step::Cancel, Kind::TaskRun) => Some(json!({"spec": {"status": "TaskRunCancelled"}})),
            _ => None,
        }
    }
}

/// The state of `obj`, a `kind`.
pub fn state(kind: Kind, obj: &Value) -> State {
    let spec = &obj["spec"];
    match kind {
        Kind::CronWorkflow if spec["suspend"] == true => State::Suspended,
        Kind::CronWorkflow => State::Scheduled,
        Kind::WorkflowTemplate | Kind::ClusterWorkflowTemplate => State::Template,
        Kind::Workflow => workflow_state(obj),
        Kind::PipelineRun | Kind::TaskRun => tekton_state(kind, obj),
    }
}

fn workflow_state(obj: &Value) -> State {
    let phase = obj["status"]["phase"].as_str().unwrap_or_default();
    let completed = obj["metadata"]["labels"]["workflows.argoproj.io/completed"] == "true";
    if completed || matches!(phase, "Succeeded" | "Failed" | "Error") || has_text(&obj["spec"]["shutdown"]) {
        return State::Done;
    }
    let waiting = obj["spec"]["suspend"] == true
        || obj["status"]["nodes"].as_object().is_some_and(|nodes| {
            nodes
                .values()
                .any(|n| n["type"] == "Suspend" && n["phase"] == "Running")
        });
    if waiting || matches!(phase, "" | "Pending") {
        State::Pending
    } else {
        State::Running
    }
}

fn tekton_state(kind: Kind, obj: &Value) -> State {
    let spec_status = obj["spec"]["status"].as_str().unwrap_or_default();
    let pending = if kind == Kind::PipelineRun {
        "PipelineRunPending"
    } else {
        "TaskRunPending"
    };
    if matches!(
        spec_status,
        "Cancelled" | "CancelledRunFinally" | "StoppedRunFinally" | "TaskRunCancelled"
    ) {
        return State::Done;
    }
    if spec_status == pending {
        return State::Pending;
    }
    let succeeded = obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Succeeded"));
    match succeeded.map(|c| c["status"].as_str().unwrap_or_default()) {
        None => State::Pending,
        Some("True" | "False") => State::Done,
        Some(_) => State::Running,
    }
}

fn has_text(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.is_empty())
}

/// The step `options` ask for on an object in `state`.
pub fn step(state: State, options: &Options) -> Step {
    match state {
        State::Scheduled if options.cron_workflows == CronWorkflows::Suspend => Step::Suspend,
        State::Pending if options.pending_runs == PendingRuns::Cancel => Step::Cancel,
        State::Running if options.running_runs == RunningRuns::Cancel => Step::Cancel,
        _ => Step::Keep,
    }
}

/// The option that decided the step for an object in `state`, as the record's rule names it
/// (`offboarding.runningRuns: keep`); `None` where no option applies.
pub fn rule(state: State, options: &Options) -> Option<String> {
    let option = match state {
        State::Scheduled => "cronWorkflows",
        State::Pending => "pendingRuns",
        State::Running => "runningRuns",
        State::Suspended | State::Done | State::Template => return None,
    };
    // The step is the option's value: suspend or keep, cancel or keep.
    Some(format!("offboarding.{option}: {}", step(state, options).as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(status: Value, spec: Value) -> Value {
        json!({"metadata": {}, "spec": spec, "status": status})
    }

    #[test]
    fn workflows_read_as_argo_reads_them() {
        let s = |o: Value| state(Kind::Workflow, &o);
        assert_eq!(s(wf(json!({}), json!({}))), State::Pending);
        assert_eq!(s(wf(json!({"phase": "Running"}), json!({}))), State::Running);
        assert_eq!(
            s(wf(json!({"phase": "Running"}), json!({"suspend": true}))),
            State::Pending
        );
        let at_gate = json!({"phase": "Running", "nodes": {"a": {"type": "Suspend", "phase": "Running"},
            "b": {"type": "Pod", "phase": "Succeeded"}}});
        assert_eq!(s(wf(at_gate, json!({}))), State::Pending);
        let passed = json!({"phase": "Running", "nodes": {"a": {"type": "Suspend", "phase": "Succeeded"}}});
        assert_eq!(s(wf(passed, json!({}))), State::Running);
        assert_eq!(s(wf(json!({"phase": "Failed"}), json!({}))), State::Done);
        assert_eq!(
            s(wf(json!({"phase": "Running"}), json!({"shutdown": "Stop"}))),
            State::Done
        );
        let labelled = json!({"metadata": {"labels": {"workflows.argoproj.io/completed": "true"}},
            "status": {"phase": "Running"}});
        assert_eq!(s(labelled), State::Done);
    }

    #[test]
    fn tekton_runs_read_as_tekton_reads_them() {
        let pr = |spec: Value, conds: Value| {
            state(
                Kind::PipelineRun,
                &json!({"spec": spec, "status": {"conditions": conds}}),
            )
        };
        assert_eq!(pr(json!({"status": "PipelineRunPending"}), json!([])), State::Pending);
        assert_eq!(pr(json!({}), json!([])), State::Pending);
        let unknown = json!([{"type": "Succeeded", "status": "Unknown", "reason": "Running"}]);
        assert_eq!(pr(json!({}), unknown.clone()), State::Running);
        assert_eq!(pr(json!({"status": "Cancelled"}), unknown), State::Done);
        assert_eq!(
            pr(json!({}), json!([{"type": "Succeeded", "status": "False"}])),
            State::Done
        );
        // A TaskRun's pending and cancelled names are its own.
        let tr = |spec: Value| state(Kind::TaskRun, &json!({"spec": spec}));
        assert_eq!(tr(json!({"status": "TaskRunPending"})), State::Pending);
        assert_eq!(tr(json!({"status": "TaskRunCancelled"})), State::Done);
        assert_eq!(tr(json!({"status": "PipelineRunPending"})), State::Pending);
        // no condition yet
    }

    #[test]
    fn the_defaults_suspend_schedules_cancel_pending_and_keep_running() {
        let d = Options::default();
        assert_eq!(step(State::Scheduled, &d), Step::Suspend);
        assert_eq!(step(State::Pending, &d), Step::Cancel);
        assert_eq!(step(State::Running, &d), Step::Keep);
        assert_eq!(step(State::Template, &d), Step::Keep);
        assert_eq!(step(State::Done, &d), Step::Keep);
        let every_alternative = Options {
            cron_workflows: CronWorkflows::Keep,
            pending_runs: PendingRuns::Keep,
            running_runs: RunningRuns::Cancel,
            ..Options::default()
        };
        assert_eq!(step(State::Scheduled, &every_alternative), Step::Keep);
        assert_eq!(step(State::Pending, &every_alternative), Step::Keep);
        assert_eq!(step(State::Running, &every_alternative), Step::Cancel);
    }

    #[test]
    fn each_step_patches_what_its_controller_reads() {
        assert_eq!(
            Step::Suspend.patch(Kind::CronWorkflow),
            Some(json!({"spec": {"suspend": true}}))
        );
        assert_eq!(
            Step::Cancel.patch(Kind::Workflow),
            Some(json!({"spec": {"shutdown": "Stop"}}))
        );
        assert_eq!(
            Step::Cancel.patch(Kind::PipelineRun),
            Some(json!({"spec": {"status": "Cancelled"}}))
        );
        assert_eq!(
            Step::Cancel.patch(Kind::TaskRun),
            Some(json!({"spec": {"status": "TaskRunCancelled"}}))
        );
        assert_eq!(Step::Keep.patch(Kind::Workflow), None);
        // Only a schedule is suspended: a template suspended would hold every run started from it.
        assert_eq!(Step::Suspend.patch(Kind::WorkflowTemplate), None);
    }
}
