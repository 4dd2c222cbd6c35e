//! What a person can do through scimgate's bindings, and who can do something through them
//! (`scimgate access of`, `scimgate access who-can`): the bindings as read, the rules of the
//! roles they bind, matched as the API server's RBAC authorizer matches them
//! (kubernetes `pkg/apis/rbac/v1/evaluation_helpers.go`: a verb, API group, resource and
//! resourceName each match when the rule names it or `*`; a resource is `plural/subresource` for
//! a subresource, which `*/subresource` matches too). Pure. Only scimgate's bindings: what
//! bindings of others grant is theirs to say (`kubectl auth can-i`).

use super::plan::{Binding, Subject};
use k8s_openapi::api::rbac::v1::PolicyRule;
use std::collections::BTreeMap;

/// What a request is, as RBAC sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    /// Empty: a cluster-scoped request (only ClusterRoleBindings count).
    pub namespace: String,
}

/// Parse `resource[.group][/subresource]` as `kubectl auth can-i` takes it, or a kind scimgate
/// admits (`Workflow`, …). A bare plural must be one of the Argo, Tekton or core ones it knows;
/// another names its group (`jobs.batch`), since a guess would answer for the wrong resource.
pub fn resource(text: &str) -> Result<(String, String, String), String> {
    if let Ok(kind) = text.parse::<crate::policy::Kind>() {
        let (group, _, plural, _) = crate::cluster::served_at(kind);
        return Ok((group.into(), plural.into(), String::new()));
    }
    let (main, sub) = text.split_once('/').unwrap_or((text, ""));
    let (plural, group) = match main.split_once('.') {
        Some((p, g)) => (p, g),
        None => {
            let group = match main {
                "workflows" | "cronworkflows" | "workflowtemplates" | "clusterworkflowtemplates"
                | "workfloweventbindings" | "workflowtaskresults" => "argoproj.io",
                "pipelineruns" | "taskruns" | "pipelines" | "tasks" | "customruns" | "stepactions" => "tekton.dev",
                "pods" | "events" | "configmaps" | "secrets" | "services" | "serviceaccounts"
                | "persistentvolumeclaims" | "namespaces" | "nodes" | "endpoints" => "",
                _ => return Err(format!("'{main}': name its API group as well ({main}.<group>, e.g. jobs.batch), or use a kind scimgate admits")),
            };
            (main, group)
        }
    };
    Ok((group.to_string(), plural.to_string(), sub.to_string()))
}

fn names(list: &[String], wanted: &str) -> bool {
    list.iter().any(|x| x == "*" || x == wanted)
}

/// Whether `rule` allows `r` (a request naming no object: a rule limited to resourceNames allows
/// only requests that name one, as the authorizer decides for a list).
pub fn allows(rule: &PolicyRule, r: &Request) -> bool {
    let combined = if r.subresource.is_empty() {
        r.resource.clone()
    } else {
        format!("{}/{}", r.resource, r.subresource)
    };
    let resources = rule.resources.as_deref().unwrap_or_default();
    let resource = resources
        .iter()
        .any(|x| x == "*" || *x == combined || (!r.subresource.is_empty() && *x == format!("*/{}", r.subresource)));
    names(&rule.verbs, &r.verb)
        && names(rule.api_groups.as_deref().unwrap_or_default(), &r.group)
        && resource
        && rule.resource_names.as_deref().unwrap_or_default().is_empty()
}

/// One binding as the commands show it, with the rules of the role it binds (`None`: the role
/// does not exist).
#[derive(Debug, Clone)]
pub struct Bound {
    pub binding: Binding,
    pub rules: Option<Vec<PolicyRule>>,
}

/// The bindings `usernames` are subjects of.
pub fn of<'a>(usernames: &[String], bound: &'a [Bound]) -> Vec<&'a Bound> {
    bound
        .iter()
        .filter(|b| {
            b.binding
                .subjects
                .iter()
                .any(|s| s.kind == "User" && usernames.contains(&s.name))
        })
        .collect()
}

/// Who `r` is allowed for, through which bindings: by subject. A RoleBinding counts in its
/// namespace, a ClusterRoleBinding everywhere.
pub fn who_can<'a>(r: &Request, bound: &'a [Bound]) -> BTreeMap<&'a Subject, Vec<&'a Bound>> {
    let mut out: BTreeMap<&Subject, Vec<&Bound>> = BTreeMap::new();
    for b in bound {
        let here = b.binding.namespace.is_empty() || b.binding.namespace == r.namespace;
        let allowed = b
            .rules
            .as_ref()
            .is_some_and(|rules| rules.iter().any(|rule| allows(rule, r)));
        if here && allowed {
            for s in b.binding.subjects.iter() {
                out.entry(s).or_default().push(b);
            }
        }
    }
    out
}

/// A role's rules in a line each: `get, list, watch  workflows.argoproj.io, pods/log`.
pub fn rule_lines(rules: &[PolicyRule]) -> Vec<String> {
    rules
        .iter()
        .filter(|r| r.non_resource_urls.as_deref().unwrap_or_default().is_empty())
        .map(|r| {
            let groups = r.api_groups.clone().unwrap_or_default();
            let resources: Vec<String> = r
                .resources
                .iter()
                .flatten()
                .flat_map(|res| {
                    groups.iter().map(move |g| {
                        if g.is_empty() {
                            res.clone()
                        } else {
                            format!("{res}.{g}")
                        }
                    })
                })
                .collect();
            let only = match r.resource_names.as_deref() {
                Some(n) if !n.is_empty() => format!(" (only {})", n.join(", ")),
                _ => String::new(),
            };
            format!("{:<30} {}{only}", r.verbs.join(", "), resources.join(", "))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PolicyRule {
            verbs: v(verbs),
            api_groups: Some(v(groups)),
            resources: Some(v(resources)),
            ..PolicyRule::default()
        }
    }

    fn request(verb: &str, res: &str, ns: &str) -> Request {
        let (group, resource, subresource) = resource(res).unwrap();
        Request {
            verb: verb.into(),
            group,
            resource,
            subresource,
            namespace: ns.into(),
        }
    }

    #[test]
    fn rules_match_as_rbac_matches_them() {
        let logs = rule(&["get"], &[""], &["pods/log"]);
        assert!(allows(&logs, &request("get", "pods/log", "a")));
        assert!(
            !allows(&logs, &request("get", "pods", "a")),
            "the subresource is not the resource"
        );
        assert!(allows(
            &rule(&["get"], &[""], &["*/log"]),
            &request("get", "pods/log", "a")
        ));
        assert!(!allows(
            &rule(&["get"], &[""], &["*/log"]),
            &request("get", "pods", "a")
        ));
        let runs = rule(&["list", "watch"], &["argoproj.io"], &["workflows"]);
        assert!(allows(&runs, &request("list", "Workflow", "a")));
        assert!(allows(&runs, &request("list", "workflows", "a")));
        assert!(!allows(&runs, &request("create", "workflows", "a")));
        assert!(!allows(&runs, &request("list", "pipelineruns", "a")));
        assert!(allows(
            &rule(&["*"], &["*"], &["*"]),
            &request("delete", "pipelineruns.tekton.dev", "a")
        ));
        let named = PolicyRule {
            resource_names: Some(vec!["x".into()]),
            ..runs
        };
        assert!(!allows(&named, &request("list", "workflows", "a")));
        assert!(
            resource("jobs").is_err(),
            "a bare plural it does not know is not guessed"
        );
        assert_eq!(
            resource("jobs.batch").unwrap(),
            ("batch".into(), "jobs".into(), String::new())
        );
    }
}
