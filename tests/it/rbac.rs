//! RBAC as kube-apiserver plays it, for the emulator (`apiserver`) and its HTTP face
//! (`kube_face`): the four kinds of `rbac.authorization.k8s.io/v1` written with RBAC's defaults
//! and validation and with server-side apply's field ownership; the RBAC authorizer, deciding from
//! the stored roles and bindings; and the ClusterRole aggregation controller.
//!
//! What it follows (kubernetes/kubernetes as indexed; k8s.io/apiserver at 24a394e5,
//! k8s.io/apimachinery at eed236ce, sigs.k8s.io/structured-merge-diff at 15d07547, k8s.io/api at
//! 10b39a39):
//! - Authorization: plugin/pkg/auth/authorizer/rbac/rbac.go (`Authorize`, `RuleAllows`, the
//!   "RBAC: allowed by …" reason), pkg/registry/rbac/validation/rule.go (`VisitRulesFor`:
//!   ClusterRoleBindings, then the RoleBindings of the request's namespace; `GetRoleReferenceRules`;
//!   `appliesTo`; the describers), pkg/apis/rbac/v1/evaluation_helpers.go (`VerbMatches`,
//!   `APIGroupMatches`, `ResourceMatches` with `*` and `*/<subresource>`, `ResourceNameMatches`),
//!   apiserver pkg/authentication/serviceaccount/util.go (`MatchesUsername`, `MakeGroupNames`) and
//!   pkg/authentication/group/authenticated_group_adder.go (`system:authenticated`).
//! - Writes: pkg/apis/rbac/v1/defaults.go, pkg/apis/rbac/validation/validation.go,
//!   pkg/registry/rbac/rolebinding/strategy.go (and its siblings: create on update, unconditional
//!   update), apiserver pkg/registry/generic/registry/store.go (`Create`, `Update`, `Delete` →
//!   `finalizeDelete`, a `Status`), pkg/endpoints/handlers/{patch,rest}.go (`applyPatcher`,
//!   `checkName`, `managerOrUserAgent`), apimachinery pkg/api/errors/errors.go (the Status texts).
//! - Field ownership (`metadata.managedFields`): apimachinery pkg/util/managedfields/internal
//!   (fieldmanager.go's chain: managedfieldsupdater.go, stripmeta.go, skipnonapplied.go's
//!   `before-first-apply`, buildmanagerinfo.go, managedfields.go's encoding and order,
//!   conflict.go's message) and structured-merge-diff merge/update.go (`Apply`: merge, prune,
//!   conflicts; `Update`), typed/compare.go, typed/tofieldset.go, fieldpath/serialize.go. The
//!   schema is rbac/v1/types.go's: `roleRef`, `subjects`, `rules` and
//!   `aggregationRule.clusterRoleSelectors` atomic, labels and annotations owned key by key.
//! - Aggregation: pkg/controller/clusterroleaggregation/clusterroleaggregation_controller.go.
//!
//! Left out: RBAC's escalation checks on writes (the face's client may write any binding),
//! non-resource URLs, other authorizers (Node, the `system:masters` privileged group) and the
//! bootstrap roles (`view`, `edit`, `cluster-admin`: the store holds what tests put), dry run,
//! `generateName`, the cap of ten Update managers (capmanagers.go), ownership inside other
//! metadata fields (finalizers and ownerReferences are atomic here), and strategic-merge-patch
//! directives (RBAC's types declare no patch strategies, so such a patch is a merge patch).

use crate::apiserver::{ApiServer, Key, Status, Storage};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

pub const GROUP: &str = "rbac.authorization.k8s.io";
const API_VERSION: &str = "rbac.authorization.k8s.io/v1";
/// The aggregation controller's field manager (`applyClusterRoles`).
const AGGREGATOR: &str = "clusterrole-aggregation-controller";

/// A failed request: code, reason, message.
pub type Failure = (u16, &'static str, String);

/// `(group, plural)` → (kind, namespaced) of the RBAC kinds.
pub fn kind(group: &str, plural: &str) -> Option<(&'static str, bool)> {
    match (group, plural) {
        (GROUP, "roles") => Some(("Role", true)),
        (GROUP, "rolebindings") => Some(("RoleBinding", true)),
        (GROUP, "clusterroles") => Some(("ClusterRole", false)),
        (GROUP, "clusterrolebindings") => Some(("ClusterRoleBinding", false)),
        _ => None,
    }
}

fn plural(kind: &str) -> Option<&'static str> {
    ["roles", "rolebindings", "clusterroles", "clusterrolebindings"]
        .into_iter()
        .find(|p| self::kind(GROUP, p).is_some_and(|(k, _)| k == kind))
}

fn key(plural: &str, namespace: &str, name: &str) -> Key {
    (GROUP.into(), plural.into(), namespace.into(), name.into())
}

/// The strings of `v[field]` (absent: none).
fn strings<'a>(v: &'a Value, field: &str) -> impl Iterator<Item = &'a str> {
    v[field].as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

// ---------------------------------------------------------------------------------------------
// The authorizer.

/// What a resource request asks (apiserver pkg/authorization/authorizer/interfaces.go
/// `Attributes`); `namespace` empty for a cluster-wide request, `name` empty for any object.
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    pub verb: String,
    pub namespace: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

/// rbac.go `Authorize`: allowed by the first rule that allows the request, visiting the rules of
/// every ClusterRoleBinding, then of every RoleBinding in the request's namespace, that applies to
/// the user (rule.go `VisitRulesFor`); the reason names the binding and role. Denied, the reason
/// lists the roles that could not be found. Bindings are visited in name order (upstream: the
/// informer cache's).
pub fn authorize(storage: &Storage, user: &str, groups: &[String], a: &Attributes) -> (bool, String) {
    let mut errors = Vec::new();
    let mut bindings = sorted(storage, "clusterrolebindings", "");
    if !a.namespace.is_empty() {
        bindings.extend(sorted(storage, "rolebindings", &a.namespace));
    }
    for binding in bindings {
        let ns = text(binding, "/metadata/namespace");
        let Some(subject) = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| applies_to(user, groups, s, ns))
        else {
            continue;
        };
        match role_rules(storage, &binding["roleRef"], ns) {
            Ok(rules) if rules.iter().any(|r| rule_allows(a, r)) => {
                return (true, format!("RBAC: allowed by {}", describe(binding, subject)));
            }
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    let reason = match errors.len() {
        0 => String::new(),
        1 => format!("RBAC: {}", errors[0]),
        _ => format!("RBAC: [{}]", errors.join(", ")),
    };
    (false, reason)
}

/// The stored objects of `plural` in `namespace`, by name.
fn sorted<'a>(storage: &'a Storage, plural: &str, namespace: &str) -> Vec<&'a Value> {
    let mut found: Vec<(&Key, &Value)> = storage
        .objects
        .iter()
        .filter(|(k, _)| k.0 == GROUP && k.1 == plural && k.2 == namespace)
        .collect();
    found.sort_by(|a, b| a.0.cmp(b.0));
    found.into_iter().map(|(_, v)| v).collect()
}

/// rule.go `appliesToUser`: a User by name, a Group among the user's groups, a ServiceAccount by
/// its username (its namespace defaulting to the binding's).
fn applies_to(user: &str, groups: &[String], subject: &Value, binding_ns: &str) -> bool {
    let name = text(subject, "/name");
    match text(subject, "/kind") {
        "User" => user == name,
        "Group" => groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = Some(text(subject, "/namespace"))
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            !ns.is_empty() && user == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// rule.go `GetRoleReferenceRules`: a Role of the binding's namespace or a ClusterRole; the
/// lister's NotFound when missing.
fn role_rules(storage: &Storage, role_ref: &Value, binding_ns: &str) -> Result<Vec<Value>, String> {
    let name = text(role_ref, "/name");
    let (plural, ns, resource) = match text(role_ref, "/kind") {
        "Role" => ("roles", binding_ns, "role"),
        "ClusterRole" => ("clusterroles", "", "clusterrole"),
        other => return Err(format!("unsupported role reference kind: {other:?}")),
    };
    match storage.objects.get(&key(plural, ns, name)) {
        Some(role) => Ok(role["rules"].as_array().cloned().unwrap_or_default()),
        None => Err(format!("{resource}.{GROUP} {name:?} not found")),
    }
}

/// rule.go's describers: `RoleBinding "name/ns" of ClusterRole "view" to Group "devs"`.
fn describe(binding: &Value, subject: &Value) -> String {
    let (name, ns) = (text(binding, "/metadata/name"), text(binding, "/metadata/namespace"));
    let what = if ns.is_empty() {
        format!("ClusterRoleBinding {name:?}")
    } else {
        format!("RoleBinding {:?}", format!("{name}/{ns}"))
    };
    let kind = text(subject, "/kind");
    let who = match (kind, text(subject, "/namespace")) {
        ("ServiceAccount", "") => format!("{}/{ns}", text(subject, "/name")),
        ("ServiceAccount", sa_ns) => format!("{}/{sa_ns}", text(subject, "/name")),
        _ => text(subject, "/name").to_string(),
    };
    let role = &binding["roleRef"];
    format!(
        "{what} of {} {:?} to {kind} {who:?}",
        text(role, "/kind"),
        text(role, "/name")
    )
}

/// rbac.go `RuleAllows` with evaluation_helpers.go's matchers: the verb, the group, the resource
/// (`*`, `<resource>[/<subresource>]`, or `*/<subresource>` for that subresource of any resource)
/// and, when the rule names any, the object's name.
fn rule_allows(a: &Attributes, rule: &Value) -> bool {
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let sub = a.subresource.as_str();
    let resource = strings(rule, "resources").any(|r| {
        r == "*"
            || r == combined
            || (!sub.is_empty() && r.len() == sub.len() + 2 && r.starts_with("*/") && r.ends_with(sub))
    });
    let mut names = strings(rule, "resourceNames").peekable();
    strings(rule, "verbs").any(|v| v == "*" || v == a.verb)
        && strings(rule, "apiGroups").any(|g| g == "*" || g == a.group)
        && resource
        && (names.peek().is_none() || names.any(|n| n == a.name))
}

/// The groups an authenticated request of `user` carries: those given, a service account's
/// (serviceaccount/util.go `MakeGroupNames`), and `system:authenticated`
/// (authenticated_group_adder.go: unless anonymous or already marked).
pub fn authenticated(user: &str, groups: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    if let Some((ns, _)) = user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        all.extend([
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
        ]);
    }
    let marked = all
        .iter()
        .any(|g| g == "system:authenticated" || g == "system:unauthenticated");
    if user != "system:anonymous" && !marked {
        all.push("system:authenticated".into());
    }
    all
}

// ---------------------------------------------------------------------------------------------
// The ClusterRole aggregation controller.

/// Every ClusterRole with an `aggregationRule` gets the rules of the ClusterRoles its selectors
/// match (`syncClusterRole`): selector by selector, matches in name order, itself skipped, each
/// rule once; written, as the controller does, by a forced apply of `rules` — only when they
/// differ. Any ClusterRole change requeues every aggregating role (`enqueue`), so a role that
/// selects an aggregated one settles in a further round.
pub fn aggregate(storage: &mut Storage) {
    for _round in 0..8 {
        let aggregating: Vec<String> = sorted(storage, "clusterroles", "")
            .into_iter()
            .filter(|r| r["aggregationRule"].is_object())
            .map(|r| text(r, "/metadata/name").to_string())
            .collect();
        let mut changed = false;
        for name in aggregating {
            let Some(role) = storage.objects.get(&key("clusterroles", "", &name)) else {
                continue;
            };
            let rules = aggregated_rules(storage, role);
            let current = role["rules"].as_array().cloned().unwrap_or_default();
            if same_rules(&rules, &current) {
                continue;
            }
            let before = role["metadata"]["resourceVersion"].clone();
            let mut config = json!({"apiVersion": API_VERSION, "kind": "ClusterRole", "metadata": {"name": name}});
            // The apply configuration of no rules leaves `rules` out (`WithRules()`).
            if !rules.is_empty() {
                config["rules"] = Value::Array(rules);
            }
            let target = Target {
                plural: "clusterroles",
                namespace: "",
                name: &name,
            };
            let written = apply(storage, "ClusterRole", &target, config, AGGREGATOR, true);
            changed |= written.is_ok_and(|(_, role)| role["metadata"]["resourceVersion"] != before);
        }
        if !changed {
            return;
        }
    }
}

fn aggregated_rules(storage: &Storage, role: &Value) -> Vec<Value> {
    let me = text(role, "/metadata/name");
    let mut rules: Vec<Value> = Vec::new();
    for selector in role["aggregationRule"]["clusterRoleSelectors"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let selector: crate::apiserver::Selector = serde_json::from_value(selector.clone()).unwrap_or_default();
        for other in sorted(storage, "clusterroles", "") {
            if text(other, "/metadata/name") == me || !crate::apiserver::selector_matches(&selector, &labels(other)) {
                continue;
            }
            for rule in other["rules"].as_array().into_iter().flatten() {
                if !rules
                    .iter()
                    .any(|r| same_rules(std::slice::from_ref(r), std::slice::from_ref(rule)))
                {
                    rules.push(rule.clone());
                }
            }
        }
    }
    rules
}

fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// `equality.Semantic.DeepEqual` of rule lists: an empty list and none are the same.
fn same_rules(a: &[Value], b: &[Value]) -> bool {
    let norm = |r: &Value| -> Value {
        let mut r = r.clone();
        if let Some(m) = r.as_object_mut() {
            m.retain(|_, v| !(v.is_null() || v.as_array().is_some_and(Vec::is_empty)));
        }
        r
    };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| norm(x) == norm(y))
}

// ---------------------------------------------------------------------------------------------
// Defaults and validation.

/// pkg/apis/rbac/v1/defaults.go: a binding's `roleRef.apiGroup` and a User's or Group's subject
/// `apiGroup` default to the RBAC group; empty optional strings are dropped, as the API server's
/// encoding (`omitempty`) drops them.
fn default_object(kind: &str, obj: &mut Value) {
    if !kind.ends_with("Binding") {
        return;
    }
    if text(obj, "/roleRef/apiGroup").is_empty() {
        obj["roleRef"]["apiGroup"] = json!(GROUP);
    }
    for s in obj["subjects"].as_array_mut().into_iter().flatten() {
        if text(s, "/apiGroup").is_empty() && matches!(text(s, "/kind"), "User" | "Group") {
            s["apiGroup"] = json!(GROUP);
        }
        if let Some(m) = s.as_object_mut() {
            m.retain(|k, v| !(matches!(k.as_str(), "apiGroup" | "namespace") && v.as_str() == Some("")));
        }
    }
}

/// RBAC's validation (pkg/apis/rbac/validation/validation.go) of `obj`, and of it replacing
/// `old` (`roleRef` cannot change): a 422 `Invalid` naming every error (errors.go `NewInvalid`).
fn validate(kind: &str, obj: &Value, old: Option<&Value>) -> Result<(), Failure> {
    let name = text(obj, "/metadata/name");
    let mut errs = if name.is_empty() {
        vec!["metadata.name: Required value: name or generateName is required".to_string()]
    } else {
        segment_errors("metadata.name", name)
    };
    if kind.ends_with("Binding") {
        errs.extend(binding_errors(kind, obj));
        let role_ref = |o: &Value| ["apiGroup", "kind", "name"].map(|f| text(o, &format!("/roleRef/{f}")).to_string());
        if old.is_some_and(|o| role_ref(o) != role_ref(obj)) {
            let [g, k, n] = role_ref(obj);
            errs.push(format!(
                "roleRef: Invalid value: {{\"APIGroup\":{g:?},\"Kind\":{k:?},\"Name\":{n:?}}}: cannot change roleRef"
            ));
        }
    } else {
        for (i, rule) in obj["rules"].as_array().into_iter().flatten().enumerate() {
            errs.extend(rule_errors(rule, kind == "Role", &format!("rules[{i}]")));
        }
    }
    match errs.len() {
        0 => Ok(()),
        1 => Err((
            422,
            "Invalid",
            format!("{kind}.{GROUP} {name:?} is invalid: {}", errs[0]),
        )),
        _ => Err((
            422,
            "Invalid",
            format!("{kind}.{GROUP} {name:?} is invalid: [{}]", errs.join(", ")),
        )),
    }
}

/// apimachinery pkg/api/validation/path/name.go `IsValidPathSegmentName`.
fn segment_errors(field: &str, name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name == "." || name == ".." {
        errs.push(format!("{field}: Invalid value: {name:?}: may not be '{name}'"));
    }
    for c in ['/', '%'] {
        if name.contains(c) {
            errs.push(format!("{field}: Invalid value: {name:?}: may not contain '{c}'"));
        }
    }
    errs
}

fn not_supported(field: &str, value: &str, supported: &[&str]) -> String {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "{field}: Unsupported value: {value:?}: supported values: {}",
        list.join(", ")
    )
}

/// `ValidateRoleBinding`, `ValidateClusterRoleBinding`, `validateRoleBindingSubject`.
fn binding_errors(kind: &str, obj: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let group = text(obj, "/roleRef/apiGroup");
    if group != GROUP {
        errs.push(not_supported("roleRef.apiGroup", group, &[GROUP]));
    }
    let kinds: &[&str] = if kind == "RoleBinding" {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    let role_kind = text(obj, "/roleRef/kind");
    if !kinds.contains(&role_kind) {
        errs.push(not_supported("roleRef.kind", role_kind, kinds));
    }
    match text(obj, "/roleRef/name") {
        "" => errs.push("roleRef.name: Required value".into()),
        name => errs.extend(segment_errors("roleRef.name", name)),
    }
    for (i, s) in obj["subjects"].as_array().into_iter().flatten().enumerate() {
        let at = format!("subjects[{i}]");
        let (name, api_group) = (text(s, "/name"), text(s, "/apiGroup"));
        if name.is_empty() {
            errs.push(format!("{at}.name: Required value"));
        }
        match text(s, "/kind") {
            "ServiceAccount" => {
                if !name.is_empty() && !dns_subdomain(name) {
                    errs.push(format!("{at}.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"));
                }
                if !api_group.is_empty() {
                    errs.push(not_supported(&format!("{at}.apiGroup"), api_group, &[""]));
                }
                if kind == "ClusterRoleBinding" && text(s, "/namespace").is_empty() {
                    errs.push(format!("{at}.namespace: Required value"));
                }
            }
            k @ ("User" | "Group") => {
                if name.is_empty() {
                    let what = k.to_lowercase();
                    errs.push(format!("{at}.name: Invalid value: \"\": {what} name cannot be empty"));
                }
                if api_group != GROUP {
                    errs.push(not_supported(&format!("{at}.apiGroup"), api_group, &[GROUP]));
                }
            }
            other => errs.push(not_supported(
                &format!("{at}.kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    errs
}

/// apimachinery pkg/util/validation/validation.go `IsDNS1123Subdomain`.
fn dns_subdomain(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    name.len() <= 253
        && name.split('.').all(|label| {
            label.starts_with(alnum) && label.ends_with(alnum) && label.chars().all(|c| alnum(c) || c == '-')
        })
}

/// `validatePolicyRule`.
fn rule_errors(rule: &Value, namespaced: bool, at: &str) -> Vec<String> {
    let count = |f: &str| strings(rule, f).count();
    let mut errs = Vec::new();
    if count("verbs") == 0 {
        errs.push(format!(
            "{at}.verbs: Required value: verbs must contain at least one value"
        ));
    }
    if count("nonResourceURLs") > 0 {
        let urls = rule["nonResourceURLs"].to_string();
        if namespaced {
            errs.push(format!(
                "{at}.nonResourceURLs: Invalid value: {urls}: namespaced rules cannot apply to non-resource URLs"
            ));
        }
        if count("apiGroups") + count("resources") + count("resourceNames") > 0 {
            errs.push(format!("{at}.nonResourceURLs: Invalid value: {urls}: rules cannot apply to both regular resources and non-resource URLs"));
        }
        return errs;
    }
    if count("apiGroups") == 0 {
        errs.push(format!(
            "{at}.apiGroups: Required value: resource rules must supply at least one api group"
        ));
    }
    if count("resources") == 0 {
        errs.push(format!(
            "{at}.resources: Required value: resource rules must supply at least one resource"
        ));
    }
    if count("resourceNames") > 0 && count("resources") > 1 {
        errs.push(format!(
            "{at}.resourceNames: Required value: resource names cannot apply to multiple resources"
        ));
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// Field ownership: managedFields as server-side apply keeps them.

/// A field path, its elements spelled as fieldsV1 spells them (`f:<name>`).
type FieldPath = Vec<String>;
type FieldSet = BTreeSet<FieldPath>;

fn field(name: &str) -> String {
    format!("f:{name}")
}

/// Whether the value at `path` is a map owned entry by entry rather than as a whole: the object,
/// its metadata, labels and annotations, and a ClusterRole's `aggregationRule` (a struct whose
/// one field is an atomic list). All else of RBAC's kinds is atomic (rbac/v1/types.go).
fn granular(path: &[String]) -> bool {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    matches!(
        p.as_slice(),
        [] | ["f:metadata"] | ["f:metadata", "f:labels" | "f:annotations"] | ["f:aggregationRule"]
    )
}

/// The maps a prune removes whole when nobody owns anything in them any more (fieldpath/set.go
/// `EnsureNamedFieldsAreMembers`: named fields, unlike map entries, count as owned members).
fn named_maps() -> [FieldPath; 3] {
    [
        vec![field("metadata"), field("labels")],
        vec![field("metadata"), field("annotations")],
        vec![field("aggregationRule")],
    ]
}

/// The paths no manager owns (stripmeta.go).
fn strip(mut set: FieldSet) -> FieldSet {
    const SYSTEM: [&str; 12] = [
        "apiVersion",
        "kind",
        "metadata",
        "metadata.name",
        "metadata.namespace",
        "metadata.creationTimestamp",
        "metadata.selfLink",
        "metadata.uid",
        "metadata.clusterName",
        "metadata.generation",
        "metadata.managedFields",
        "metadata.resourceVersion",
    ];
    set.retain(|p| {
        let dotted: Vec<&str> = p.iter().map(|e| e.strip_prefix("f:").unwrap_or(e)).collect();
        !SYSTEM.contains(&dotted.join(".").as_str())
    });
    set
}

/// The fields an applied configuration sets (typed/tofieldset.go): its leaves and atomic values,
/// and its empty or null maps.
fn field_set(config: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        match v.as_object() {
            Some(m) if granular(path) => {
                for (k, child) in m {
                    path.push(field(k));
                    walk(child, path, out);
                    if child.is_null() || child.as_object().is_some_and(Map::is_empty) {
                        out.insert(path.clone());
                    }
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        }
    }
    let mut out = FieldSet::new();
    walk(config, &mut Vec::new(), &mut out);
    strip(out)
}

/// What changed from one version of an object to the next (typed/compare.go).
#[derive(Default, Debug)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

fn compare(old: &Value, new: &Value) -> Comparison {
    fn walk(l: Option<&Value>, r: Option<&Value>, path: &mut FieldPath, c: &mut Comparison) {
        let filled = |v: Option<&Value>| v.and_then(Value::as_object).is_some_and(|m| !m.is_empty());
        if granular(path) && (filled(l) || filled(r)) {
            let keys: BTreeSet<&String> = [l, r]
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .flat_map(Map::keys)
                .collect();
            for k in keys {
                path.push(field(k));
                walk(l.and_then(|v| v.get(k)), r.and_then(|v| v.get(k)), path, c);
                path.pop();
            }
            // A map that appears or goes is itself added or removed, beside its entries.
            match (l, r) {
                (None, _) => c.added.insert(path.clone()),
                (_, None) => c.removed.insert(path.clone()),
                _ => false,
            };
            return;
        }
        match (l, r) {
            (None, Some(_)) => c.added.insert(path.clone()),
            (Some(_), None) => c.removed.insert(path.clone()),
            (Some(a), Some(b)) if a != b => c.modified.insert(path.clone()),
            _ => false,
        };
    }
    let mut c = Comparison::default();
    walk(Some(old), Some(new), &mut Vec::new(), &mut c);
    c
}

/// `config` merged into `live` (typed/merge.go): entry by entry in granular maps, replacing
/// atomic values.
fn merge(live: &mut Value, config: &Value, path: &mut FieldPath) {
    if granular(path) {
        if let (Some(l), Some(c)) = (live.as_object_mut(), config.as_object()) {
            for (k, v) in c {
                path.push(field(k));
                match l.get_mut(k) {
                    Some(existing) => merge(existing, v, path),
                    None => {
                        l.insert(k.clone(), v.clone());
                    }
                }
                path.pop();
            }
            return;
        }
    }
    *live = config.clone();
}

fn remove_field(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let plain = |e: &String| e.strip_prefix("f:").unwrap_or(e).to_string();
    let mut node = obj;
    for p in parents {
        match node.get_mut(plain(p)) {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(m) = node.as_object_mut() {
        m.remove(&plain(last));
    }
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone)]
struct Manager {
    manager: String,
    operation: &'static str,
    api_version: String,
    time: Option<String>,
    fields: FieldSet,
}

impl Manager {
    /// The same manager (managedfields.go `BuildManagerIdentifier`: an applier is its name, an
    /// updater its name and API version).
    fn is(&self, manager: &str, operation: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && (operation == "Apply" || self.api_version == API_VERSION)
    }

    /// How conflict.go `printManager` names it.
    fn printed(&self) -> String {
        match self.operation {
            "Update" => format!("{:?} using {}", self.manager, self.api_version),
            _ => format!("{:?}", self.manager),
        }
    }
}

/// `obj`'s managedFields, taken off it.
fn take_managed(obj: &mut Value) -> Option<Value> {
    obj["metadata"].as_object_mut()?.remove("managedFields")
}

/// The managers of managedFields `entries` (managedfields.go `DecodeManagedFields`; entries that
/// do not decode are dropped).
fn decode_managers(entries: Option<&Value>) -> Vec<Manager> {
    entries
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(decode_manager)
        .collect()
}

fn decode_manager(e: &Value) -> Option<Manager> {
    fn walk(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        for (k, child) in v.as_object().into_iter().flatten() {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            path.push(k.clone());
            if child.as_object().is_some_and(Map::is_empty) {
                out.insert(path.clone());
            } else {
                walk(child, path, out);
            }
            path.pop();
        }
    }
    let operation = match e["operation"].as_str()? {
        "Apply" => "Apply",
        "Update" => "Update",
        _ => return None,
    };
    let mut fields = FieldSet::new();
    walk(&e["fieldsV1"], &mut Vec::new(), &mut fields);
    Some(Manager {
        manager: e["manager"].as_str()?.to_string(),
        operation,
        api_version: e["apiVersion"].as_str()?.to_string(),
        time: e["time"].as_str().map(str::to_string),
        fields,
    })
}

/// `managers` put on `obj` in managedfields.go's order (operation, time, manager, apiVersion),
/// each set encoded as fieldsV1 (fieldpath/serialize.go: `.` for a member that has children).
fn put_managers(obj: &mut Value, mut managers: Vec<Manager>) {
    #[derive(Default)]
    struct Node {
        member: bool,
        children: BTreeMap<String, Node>,
    }
    fn emit(node: &Node) -> Value {
        let mut m = Map::new();
        if node.member && !node.children.is_empty() {
            m.insert(".".into(), json!({}));
        }
        for (k, child) in &node.children {
            m.insert(k.clone(), emit(child));
        }
        Value::Object(m)
    }
    managers.sort_by(|a, b| {
        let key = |m: &Manager| {
            (
                m.operation,
                m.time.clone().unwrap_or_default(),
                m.manager.clone(),
                m.api_version.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    let entries: Vec<Value> = managers
        .iter()
        .map(|m| {
            let mut root = Node::default();
            for path in &m.fields {
                let node = path
                    .iter()
                    .fold(&mut root, |n, e| n.children.entry(e.clone()).or_default());
                node.member = true;
            }
            let mut e = json!({"manager": m.manager, "operation": m.operation, "apiVersion": m.api_version});
            if let Some(t) = &m.time {
                e["time"] = json!(t);
            }
            e["fieldsType"] = json!("FieldsV1");
            e["fieldsV1"] = emit(&root);
            e
        })
        .collect();
    match obj["metadata"].as_object_mut() {
        Some(meta) if entries.is_empty() => {
            meta.remove("managedFields");
        }
        _ => obj["metadata"]["managedFields"] = Value::Array(entries),
    }
}

/// merge/update.go `update`: every manager but the one at `me` conflicts on the fields it owns
/// that changed — an error unless `force`, else they lose them — and loses the fields removed.
fn settle(managers: &mut Vec<Manager>, me: Option<usize>, c: &Comparison, force: bool) -> Result<(), String> {
    let changed: FieldSet = c.added.union(&c.modified).cloned().collect();
    let mut conflicts: Vec<(String, &FieldPath)> = Vec::new();
    for (_, m) in managers.iter().enumerate().filter(|(i, _)| Some(*i) != me) {
        conflicts.extend(m.fields.intersection(&changed).map(|p| (m.printed(), p)));
    }
    if !force && !conflicts.is_empty() {
        return Err(conflict_message(&conflicts));
    }
    for (i, m) in managers.iter_mut().enumerate() {
        if Some(i) != me {
            m.fields.retain(|p| !changed.contains(p) && !c.removed.contains(p));
        }
    }
    managers.retain(|m| !m.fields.is_empty());
    Ok(())
}

/// conflict.go `getConflictMessage`.
fn conflict_message(conflicts: &[(String, &FieldPath)]) -> String {
    let shown = |p: &FieldPath| -> String {
        p.iter()
            .map(|e| format!(".{}", e.strip_prefix("f:").unwrap_or(e)))
            .collect()
    };
    if let [(who, path)] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with {who}: {}", shown(path));
    }
    let mut by: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (who, path) in conflicts {
        by.entry(who).or_default().push(format!("- {}", shown(path)));
    }
    let lines: Vec<String> = by
        .into_iter()
        .map(|(who, paths)| format!("conflicts with {who}:\n{}", paths.join("\n")))
        .collect();
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

/// An Update by `manager` from `old` to `new` (managedfieldsupdater.go `Update` over merge/
/// update.go `Update`): it takes what it added or changed from everyone, others lose what it
/// removed, and its entry (stamped now) adds the fields to what it owned.
fn record_update(managers: &mut Vec<Manager>, manager: &str, old: &Value, new: &Value) {
    let c = compare(old, new);
    let _ = settle(managers, None, &c, true);
    let mut fields = strip(c.added.union(&c.modified).cloned().collect());
    if fields.is_empty() {
        return;
    }
    if let Some(i) = managers.iter().position(|m| m.is(manager, "Update")) {
        fields.extend(managers.remove(i).fields);
    }
    managers.push(Manager {
        manager: manager.into(),
        operation: "Update",
        api_version: API_VERSION.into(),
        time: Some(now()),
        fields,
    });
}

/// An Apply of `config` by `manager` to `live` (merge/update.go `Apply`): merged in; the
/// applier's set becomes what `config` sets; what it set last time and no longer does goes
/// when nobody else owns it (`prune`); conflicts as `settle`. The merged object.
fn record_apply(
    managers: &mut Vec<Manager>,
    manager: &str,
    live: &Value,
    config: &Value,
    force: bool,
) -> Result<Value, String> {
    let last = managers
        .iter()
        .position(|m| m.is(manager, "Apply"))
        .map(|i| managers.remove(i));
    let mut new = live.clone();
    merge(&mut new, config, &mut Vec::new());
    managers.push(Manager {
        manager: manager.into(),
        operation: "Apply",
        api_version: API_VERSION.into(),
        time: last.as_ref().and_then(|l| l.time.clone()),
        fields: field_set(config),
    });
    if let Some(last) = &last {
        prune(&mut new, &last.fields, managers);
    }
    settle(managers, Some(managers.len() - 1), &compare(live, &new), force)?;
    if new != *live {
        if let Some(me) = managers.iter_mut().find(|m| m.is(manager, "Apply")) {
            me.time = Some(now());
        }
    }
    Ok(new)
}

/// merge/update.go `prune`, `addBackOwnedItems`, `addBackDanglingItems`: a field the applier
/// set last time goes unless some manager (the applier's new set included) owns it or something
/// in it; a labels, annotations or aggregationRule map it had entries in goes whole when nobody
/// owns anything in it.
fn prune(merged: &mut Value, last: &FieldSet, managers: &[Manager]) {
    let owned = |p: &[String]| managers.iter().any(|m| m.fields.iter().any(|q| q.starts_with(p)));
    for p in last.iter().filter(|p| !owned(p)) {
        remove_field(merged, p);
    }
    for q in named_maps() {
        if last.iter().any(|p| p.starts_with(&q)) && !owned(&q) {
            remove_field(merged, &q);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writes.

/// One write of an RBAC object, as the REST handlers take it.
pub enum Op {
    /// `POST` to the collection (handlers/create.go).
    Create(Value),
    /// `PUT` of one object (handlers/update.go).
    Replace(Value),
    /// `PATCH` with a merge or JSON patch (handlers/patch.go `jsonPatcher`).
    Patch(crate::apiserver::Patch),
    /// `PATCH` with `application/apply-patch+yaml`: server-side apply (`applyPatcher`).
    Apply { config: Value, force: bool },
    /// `DELETE` of one object.
    /// With the DeleteOptions' `preconditions` (`uid`, `resourceVersion`), if any.
    Delete(Value),
}

/// The object a write is about; `name` is the URL's (empty for a create).
pub struct Target<'a> {
    pub plural: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// One write by `manager` (the field manager, `?fieldManager=` or what the User-Agent gives;
/// `unknown` when empty, buildmanagerinfo.go): the HTTP status and the answer, the object or a
/// `Status`. Into a namespace that does not exist it is NotFound (NamespaceLifecycle,
/// plugin/pkg/admission/namespace/lifecycle/admission.go). A change of ClusterRoles runs the
/// aggregation controller.
pub fn write(storage: &mut Storage, t: &Target<'_>, op: Op, manager: &str) -> Result<(u16, Value), Failure> {
    let missing = || {
        (
            404,
            "NotFound",
            "the server could not find the requested resource".to_string(),
        )
    };
    let (kind, namespaced) = kind(GROUP, t.plural).ok_or_else(missing)?;
    if namespaced == t.namespace.is_empty() {
        return Err(missing());
    }
    if namespaced && storage.namespace_labels(t.namespace).is_none() {
        return Err((404, "NotFound", format!("namespaces {:?} not found", t.namespace)));
    }
    let manager = if manager.is_empty() { "unknown" } else { manager };
    let written = match op {
        Op::Create(obj) => create(storage, kind, t, obj, manager),
        Op::Replace(obj) => replace(storage, kind, t, obj, manager),
        Op::Patch(p) => patch(storage, kind, t, &p, manager),
        Op::Apply { config, force } => apply(storage, kind, t, config, manager, force),
        Op::Delete(preconditions) => delete(storage, t, &preconditions),
    }?;
    if t.plural == "clusterroles" {
        aggregate(storage);
    }
    Ok(written)
}

/// The object of a write as the handlers take it: of the resource's apiVersion and kind, in the
/// request's namespace (rest/create.go `EnsureObjectNamespaceMatchesRequestNamespace`), named as
/// the URL when it names one (handlers/rest.go `checkName`).
fn expect(kind: &str, t: &Target<'_>, mut obj: Value) -> Result<Value, Failure> {
    let bad = |m: String| (400, "BadRequest", m);
    if !obj.is_object() || !(obj["metadata"].is_object() || obj["metadata"].is_null()) {
        return Err(bad("the body is not an object with metadata".into()));
    }
    for (field, want) in [("apiVersion", API_VERSION), ("kind", kind)] {
        match obj[field].as_str() {
            None | Some("") => obj[field] = json!(want),
            Some(v) if v == want => {}
            Some(v) => {
                return Err(bad(format!(
                    "the {field} in the data ({v}) does not match the expected {field} ({want})"
                )))
            }
        }
    }
    match text(&obj, "/metadata/namespace") {
        ns if ns == t.namespace => {}
        "" => obj["metadata"]["namespace"] = json!(t.namespace),
        _ if t.namespace.is_empty() => {
            obj["metadata"].as_object_mut().map(|m| m.remove("namespace"));
        }
        _ => {
            return Err(bad(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ))
        }
    }
    let name = text(&obj, "/metadata/name");
    if !t.name.is_empty() && name != t.name {
        return Err(bad(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            t.name
        )));
    }
    Ok(obj)
}

/// A write that changes nothing but managedFields timestamps stores nothing
/// (handlers/fieldmanager/equality.go; etcd3 `GuaranteedUpdate` skips equal bytes).
fn store(storage: &mut Storage, key: Key, old: &Value, new: Value, code: u16) -> (u16, Value) {
    let untimed = |v: &Value| {
        let mut v = v.clone();
        for e in v["metadata"]["managedFields"].as_array_mut().into_iter().flatten() {
            e.as_object_mut().map(|e| e.remove("time"));
        }
        v
    };
    if untimed(old) == untimed(&new) {
        return (code, old.clone());
    }
    (code, storage.commit(key, new))
}

/// registry/store.go `Create` with rest.go `BeforeCreate`: system fields the client sent are
/// wiped, defaults and validation, then AlreadyExists or stored (201); the creator's fields are
/// tracked as its Update.
fn create(
    storage: &mut Storage,
    kind: &str,
    t: &Target<'_>,
    obj: Value,
    manager: &str,
) -> Result<(u16, Value), Failure> {
    let mut obj = expect(kind, t, obj)?;
    if !text(&obj, "/metadata/resourceVersion").is_empty() {
        return Err((
            500,
            "InternalError",
            "resourceVersion should not be set on objects to be created".into(),
        ));
    }
    if let Some(meta) = obj["metadata"].as_object_mut() {
        crate::apiserver::wipe_system_fields(meta);
    }
    default_object(kind, &mut obj);
    validate(kind, &obj, None)?;
    let name = text(&obj, "/metadata/name").to_string();
    let key = key(t.plural, t.namespace, &name);
    if storage.objects.contains_key(&key) {
        return Err((
            409,
            "AlreadyExists",
            format!("{}.{GROUP} {name:?} already exists", t.plural),
        ));
    }
    // fieldmanager.go `decodeLiveOrNew`: managedFields sent with the object are kept.
    let mut managers = decode_managers(take_managed(&mut obj).as_ref());
    record_update(&mut managers, manager, &json!({}), &obj);
    obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    obj["metadata"]["creationTimestamp"] = json!(now());
    put_managers(&mut obj, managers);
    Ok((201, storage.commit(key, obj)))
}

/// `PUT`: RBAC's strategies allow create on update (201) and an update without a
/// resourceVersion (unconditional); a stale one is a Conflict.
fn replace(
    storage: &mut Storage,
    kind: &str,
    t: &Target<'_>,
    obj: Value,
    manager: &str,
) -> Result<(u16, Value), Failure> {
    let mut obj = expect(kind, t, obj)?;
    match storage.objects.get(&key(t.plural, t.namespace, t.name)).cloned() {
        Some(old) => update(storage, kind, t, &old, obj, manager),
        None => {
            obj["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
            create(storage, kind, t, obj, manager)
        }
    }
}

/// A merge or JSON patch of the stored object; NotFound when there is none (`jsonPatcher`
/// `createNewObject`).
fn patch(
    storage: &mut Storage,
    kind: &str,
    t: &Target<'_>,
    p: &crate::apiserver::Patch,
    manager: &str,
) -> Result<(u16, Value), Failure> {
    let Some(old) = storage.objects.get(&key(t.plural, t.namespace, t.name)).cloned() else {
        return Err((404, "NotFound", format!("{}.{GROUP} {:?} not found", t.plural, t.name)));
    };
    let patched = crate::apiserver::apply_patch(old.clone(), p)
        .map_err(|s| (s.code, if s.code == 400 { "BadRequest" } else { "Invalid" }, s.message))?;
    let patched = expect(kind, t, patched)?;
    update(storage, kind, t, &old, patched, manager)
}

/// registry/store.go `Update` of an existing object: the resourceVersion precondition, system
/// fields kept, defaults and validation; the writer's fields tracked as its Update unless the
/// object has no managedFields at all (skipnonapplied.go: not tracked until an apply).
fn update(
    storage: &mut Storage,
    kind: &str,
    t: &Target<'_>,
    old: &Value,
    mut new: Value,
    manager: &str,
) -> Result<(u16, Value), Failure> {
    stale(t, &new, old)?;
    for k in ["uid", "creationTimestamp", "resourceVersion"] {
        new["metadata"][k] = old["metadata"][k].clone();
    }
    default_object(kind, &mut new);
    validate(kind, &new, Some(old))?;
    let mut live = old.clone();
    let stored = decode_managers(take_managed(&mut live).as_ref());
    // fieldmanager.go `decodeLiveOrNew`: the object's own managedFields when it brings some that
    // decode, none when it brings an empty list (`isResetManagedFields`), the stored ones else.
    let mut managers = match take_managed(&mut new) {
        Some(Value::Array(sent)) if sent.is_empty() => Vec::new(),
        sent => Some(decode_managers(sent.as_ref()))
            .filter(|m| !m.is_empty())
            .unwrap_or(stored),
    };
    if !managers.is_empty() {
        record_update(&mut managers, manager, &live, &new);
    }
    put_managers(&mut new, managers);
    Ok(store(storage, key(t.plural, t.namespace, t.name), old, new, 200))
}

/// Server-side apply (handlers/patch.go `applyPatcher`; fieldmanager.go `Apply`): `config` merged
/// into the stored object, or a new one (201); an object that has no managedFields yet is first
/// owned whole by `before-first-apply` (skipnonapplied.go). Conflicts are 409 `Conflict`.
fn apply(
    storage: &mut Storage,
    kind: &str,
    t: &Target<'_>,
    config: Value,
    manager: &str,
    force: bool,
) -> Result<(u16, Value), Failure> {
    applicable(kind, &config)?;
    let key = key(t.plural, t.namespace, t.name);
    let old = storage.objects.get(&key).cloned();
    if let Some(old) = &old {
        stale(t, &config, old)?;
    }
    let mut live = old
        .clone()
        .unwrap_or_else(|| json!({"apiVersion": API_VERSION, "kind": kind, "metadata": {}}));
    let mut managers = decode_managers(take_managed(&mut live).as_ref());
    if managers.is_empty() && old.is_some() {
        record_update(&mut managers, "before-first-apply", &json!({}), &live);
    }
    let merged = record_apply(&mut managers, manager, &live, &config, force).map_err(|m| (409, "Conflict", m))?;
    let mut new = expect(kind, t, merged)?;
    default_object(kind, &mut new);
    validate(kind, &new, old.as_ref())?;
    put_managers(&mut new, managers);
    match old {
        Some(old) => Ok(store(storage, key, &old, new, 200)),
        None => {
            new["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
            new["metadata"]["creationTimestamp"] = json!(now());
            Ok((201, storage.commit(key, new)))
        }
    }
}

/// What structuredmerge.go `Apply` refuses (400): managedFields in the configuration, or another
/// version or kind than the resource's.
fn applicable(kind: &str, config: &Value) -> Result<(), Failure> {
    let bad = |m: String| Err((400, "BadRequest", m));
    if !config["metadata"]["managedFields"].is_null() {
        return bad("metadata.managedFields must be nil".into());
    }
    let (version, config_kind) = (text(config, "/apiVersion"), text(config, "/kind"));
    if version != API_VERSION {
        return bad(format!(
            "Incorrect version specified in apply patch. Specified patch version: {version}, expected: {API_VERSION}"
        ));
    }
    if config_kind != kind {
        return bad(format!("the kind in the apply patch ({config_kind}) is not {kind}"));
    }
    Ok(())
}

/// A write naming a resourceVersion other than the stored object's is a Conflict (etcd3
/// store.go `GuaranteedUpdate` preconditions; errors.go `NewConflict`).
fn stale(t: &Target<'_>, new: &Value, old: &Value) -> Result<(), Failure> {
    let rv = text(new, "/metadata/resourceVersion");
    if rv.is_empty() || rv == text(old, "/metadata/resourceVersion") {
        return Ok(());
    }
    let message = format!("Operation cannot be fulfilled on {}.{GROUP} {:?}: the object has been modified; please apply your changes to the latest version and try again", t.plural, t.name);
    Err((409, "Conflict", message))
}

/// registry/store.go `Delete`: gone at once (no finalizers on RBAC objects), answered with a
/// `Status` naming it (`finalizeDelete`: RBAC's stores do not return the deleted object).
fn delete(storage: &mut Storage, t: &Target<'_>, preconditions: &Value) -> Result<(u16, Value), Failure> {
    let k = key(t.plural, t.namespace, t.name);
    let Some(stored) = storage.objects.get(&k) else {
        return Err((404, "NotFound", format!("{}.{GROUP} {:?} not found", t.plural, t.name)));
    };
    // DeleteOptions.preconditions, checked against the stored object (apimachinery
    // pkg/apis/meta/v1 `Preconditions`; storage/etcd3 store.go `Delete` → `checkPreconditions`,
    // a mismatch answered as a Conflict).
    for (field, what) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        let (want, have) = (
            preconditions[field].as_str(),
            stored["metadata"][field].as_str().unwrap_or_default(),
        );
        if let Some(want) = want.filter(|w| *w != have) {
            let message = format!(
                "Operation cannot be fulfilled on {}.{GROUP} {:?}: Precondition failed: {what} in precondition: {want}, {what} in object meta: {have}",
                t.plural, t.name
            );
            return Err((409, "Conflict", message));
        }
    }
    let gone = storage.remove(&k).unwrap_or_default();
    Ok((
        200,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": t.name, "group": GROUP, "kind": t.plural, "uid": gone["metadata"]["uid"]}}),
    ))
}

// ---------------------------------------------------------------------------------------------
// The emulator's Rust side, for tests acting as others than scimgate.

impl ApiServer {
    /// Store the RBAC object `obj` as one that exists already (like `put`): defaulted and valid
    /// (else a panic: the test's mistake), in the namespace it names (`default` when none), uid
    /// and creationTimestamp filled in when missing, its managedFields (if any) as given; then
    /// aggregation runs. What is stored.
    pub fn rbac_put(&self, mut obj: Value) -> Value {
        let k = text(&obj, "/kind").to_string();
        let plural = plural(&k).unwrap_or_else(|| panic!("not an RBAC kind: {k:?}"));
        let namespaced = kind(GROUP, plural).is_some_and(|(_, n)| n);
        if !namespaced {
            obj["metadata"].as_object_mut().map(|m| m.remove("namespace"));
        } else if text(&obj, "/metadata/namespace").is_empty() {
            obj["metadata"]["namespace"] = json!("default");
        }
        obj["apiVersion"] = json!(API_VERSION);
        default_object(&k, &mut obj);
        if let Err((_, _, message)) = validate(&k, &obj, None) {
            panic!("{message}");
        }
        for (field, value) in [("uid", uuid::Uuid::new_v4().to_string()), ("creationTimestamp", now())] {
            if obj["metadata"][field].is_null() {
                obj["metadata"][field] = json!(value);
            }
        }
        let key = key(plural, text(&obj, "/metadata/namespace"), text(&obj, "/metadata/name"));
        let storage = self.storage();
        let mut s = storage.lock().expect("storage");
        assert!(
            !namespaced || s.namespace_labels(&key.2).is_some(),
            "namespaces {:?} not found",
            key.2
        );
        s.commit(key.clone(), obj);
        if plural == "clusterroles" {
            aggregate(&mut s);
        }
        s.objects[&key].clone()
    }

    /// Server-side apply of `config` by `manager` (another controller, or a person's `kubectl
    /// apply --server-side`), `force` as `--force-conflicts`: the object, or the refusal.
    pub fn rbac_apply(&self, manager: &str, config: Value, force: bool) -> Result<Value, Status> {
        let plural = plural(text(&config, "/kind")).ok_or_else(|| Status {
            code: 404,
            message: format!("not an RBAC kind: {}", config["kind"]),
        })?;
        let (ns, name) = (text(&config, "/metadata/namespace"), text(&config, "/metadata/name"));
        let t = Target {
            plural,
            namespace: ns,
            name,
        };
        self.rbac_write(
            &t,
            Op::Apply {
                config: config.clone(),
                force,
            },
            manager,
        )
    }

    /// A hand edit by `manager` (`kubectl edit` is `kubectl-edit`): the merge patch `merge_patch`
    /// of the stored `plural` `namespace/name` (namespace empty for cluster-scoped kinds), recorded
    /// as `manager`'s Update.
    pub fn hand_edit(
        &self,
        manager: &str,
        plural: &str,
        namespace: &str,
        name: &str,
        merge_patch: Value,
    ) -> Result<Value, Status> {
        let t = Target {
            plural,
            namespace,
            name,
        };
        self.rbac_write(&t, Op::Patch(crate::apiserver::Patch::Merge(merge_patch)), manager)
    }

    fn rbac_write(&self, t: &Target<'_>, op: Op, manager: &str) -> Result<Value, Status> {
        let storage = self.storage();
        let mut s = storage.lock().expect("storage");
        write(&mut s, t, op, manager)
            .map(|(_, v)| v)
            .map_err(|(code, _, message)| Status { code, message })
    }

    /// Whether `user`, signed in with `groups` (plus those its authenticator adds:
    /// `authenticated`), may `verb` `resource[/subresource]` of API group `group` in `namespace`
    /// (empty: cluster-wide), as the RBAC authorizer decides from what is stored.
    #[allow(
        clippy::too_many_arguments,
        reason = "one argument per authorization attribute, so a test reads as the question it asks"
    )]
    pub fn can(
        &self,
        user: &str,
        groups: &[&str],
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
    ) -> bool {
        let a = Attributes {
            verb: verb.into(),
            namespace: namespace.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            name: String::new(),
        };
        let storage = self.storage();
        let s = storage.lock().expect("storage");
        authorize(&s, user, &authenticated(user, groups), &a).0
    }

    /// Store every document of the YAML file `path`, or of each `*.yaml` file in the directory
    /// `path` (in name order; `kustomization.yaml` is kustomize's, not a manifest), as `kubectl
    /// apply` would find them stored: Namespaces first (their labels kept), RBAC objects by
    /// `rbac_put` (so aggregation runs), other kinds the emulator stores by `put`. A missing
    /// path, or a kind the emulator does not store, is a panic naming it.
    pub fn apply_manifests(&self, path: &std::path::Path) {
        assert!(
            path.exists(),
            "{}: no such file or directory (apply_manifests takes a YAML file or a directory of *.yaml files)",
            path.display()
        );
        let mut files = vec![path.to_path_buf()];
        if path.is_dir() {
            files = std::fs::read_dir(path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml") && !p.ends_with("kustomization.yaml"))
                .collect();
            files.sort();
        }
        let docs: Vec<(std::path::PathBuf, Value)> = files
            .iter()
            .flat_map(|f| crate::apiserver::yaml_docs(f).into_iter().map(|d| (f.clone(), d)))
            .collect();
        let (namespaces, others): (Vec<_>, Vec<_>) = docs.into_iter().partition(|(_, d)| d["kind"] == "Namespace");
        for (_, ns) in namespaces {
            self.store_namespace(&ns);
        }
        for (file, doc) in others {
            let k = text(&doc, "/kind");
            if plural(k).is_some() {
                self.rbac_put(doc);
            } else if self.stores(&doc) {
                self.put(doc);
            } else {
                panic!("{}: the emulator does not store {k:?}", file.display());
            }
        }
    }

    /// A Namespace manifest: created, with the labels it carries.
    fn store_namespace(&self, doc: &Value) {
        let name = text(doc, "/metadata/name");
        self.create_namespace(name);
        let storage = self.storage();
        let mut s = storage.lock().expect("storage");
        let key = crate::apiserver::namespace_key(name);
        let mut ns = s.objects[&key].clone();
        for (k, v) in doc["metadata"]["labels"].as_object().into_iter().flatten() {
            ns["metadata"]["labels"][k] = v.clone();
        }
        if ns != s.objects[&key] {
            s.commit(key, ns);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests: each behaviour through the face, with kube-rs as scimgate's reconciler uses it.

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_face::store_face_and_client;
    use futures_util::StreamExt;
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
    use kube::api::{Api, DeleteParams, Patch, PatchParams, WatchEvent, WatchParams};

    fn binding(ns: &str, name: &str, groups: &[&str]) -> Value {
        let subjects: Vec<Value> = groups
            .iter()
            .map(|g| json!({"apiGroup": GROUP, "kind": "Group", "name": g}))
            .collect();
        json!({"apiVersion": API_VERSION, "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": ns, "labels": {"scimgate.io/managed": "true"}},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"}, "subjects": subjects})
    }

    fn cluster_role(name: &str, labels: Value, rules: Value) -> Value {
        json!({"apiVersion": API_VERSION, "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels}, "rules": rules})
    }

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
        json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
    }

    /// `(manager, operation, fieldsV1)` of each managedFields entry.
    fn owners(obj: &impl serde::Serialize) -> Vec<(String, String, Value)> {
        let obj = serde_json::to_value(obj).unwrap();
        obj["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    text(e, "/manager").into(),
                    text(e, "/operation").into(),
                    e["fieldsV1"].clone(),
                )
            })
            .collect()
    }

    fn api_error(r: Result<impl std::fmt::Debug, kube::Error>) -> (u16, String, String) {
        match r {
            Err(kube::Error::Api(s)) => (s.code, s.reason, s.message),
            other => panic!("not refused: {other:?}"),
        }
    }

    /// scimgate's applies through the face: created, changed, a no-op when the same; a hand edit
    /// takes `subjects`, so a plain apply conflicts naming it and a forced one takes them back;
    /// a label no longer applied goes; roleRef does not change; DELETE answers a Status.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn server_side_apply_tracks_and_defends_field_ownership() {
        let (api, face, client, _dir) = store_face_and_client().await;
        let rbs: Api<RoleBinding> = Api::namespaced(client, "team-a");
        let force = PatchParams::apply("scimgate").force();
        let apply = |groups: &[&str]| Patch::Apply(binding("team-a", "devs-view", groups));
        let created = rbs
            .patch("devs-view", &force, &apply(&["devs"]))
            .await
            .expect("created");
        let applied =
            json!({"f:metadata": {"f:labels": {"f:scimgate.io/managed": {}}}, "f:roleRef": {}, "f:subjects": {}});
        assert_eq!(
            owners(&created),
            vec![("scimgate".into(), "Apply".into(), applied.clone())]
        );
        let changed = rbs
            .patch("devs-view", &force, &apply(&["devs", "ops"]))
            .await
            .expect("changed");
        let names: Vec<String> = changed.subjects.iter().flatten().map(|s| s.name.clone()).collect();
        assert_eq!(names, ["devs", "ops"]);
        assert_ne!(changed.metadata.resource_version, created.metadata.resource_version);
        let same = rbs
            .patch("devs-view", &force, &apply(&["devs", "ops"]))
            .await
            .expect("same");
        assert_eq!(
            same.metadata.resource_version, changed.metadata.resource_version,
            "nothing stored"
        );

        let mallory = json!([{"apiGroup": GROUP, "kind": "User", "name": "oidc:mallory"}]);
        api.hand_edit(
            "kubectl-edit",
            "rolebindings",
            "team-a",
            "devs-view",
            json!({"subjects": mallory}),
        )
        .expect("edited");
        let edited = rbs.get("devs-view").await.expect("get");
        assert_eq!(
            owners(&edited),
            vec![
                (
                    "scimgate".into(),
                    "Apply".into(),
                    json!({"f:metadata": {"f:labels": {"f:scimgate.io/managed": {}}}, "f:roleRef": {}})
                ),
                ("kubectl-edit".into(), "Update".into(), json!({"f:subjects": {}})),
            ]
        );
        let refused = rbs
            .patch("devs-view", &PatchParams::apply("scimgate"), &apply(&["devs", "ops"]))
            .await;
        let message = "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using rbac.authorization.k8s.io/v1: .subjects";
        assert_eq!(api_error(refused), (409, "Conflict".into(), message.into()));
        assert_eq!(
            rbs.get("devs-view").await.expect("get").subjects.unwrap()[0].name,
            "oidc:mallory"
        );
        let forced = rbs
            .patch("devs-view", &force, &apply(&["devs", "ops"]))
            .await
            .expect("forced");
        assert_eq!(
            owners(&forced),
            vec![("scimgate".into(), "Apply".into(), applied)],
            "the edit owns nothing more"
        );
        // Another applier of the same subjects shares them; a change then conflicts with it.
        let mut same = binding("team-a", "devs-view", &["devs", "ops"]);
        same["metadata"].as_object_mut().unwrap().remove("labels");
        let shared = api.rbac_apply("gitops", same, false).expect("shared");
        let gitops = (
            "gitops".into(),
            "Apply".into(),
            json!({"f:roleRef": {}, "f:subjects": {}}),
        );
        assert!(
            owners(&shared).contains(&gitops) && owners(&shared).len() == 2,
            "{:?}",
            owners(&shared)
        );
        let refused = rbs
            .patch("devs-view", &PatchParams::apply("scimgate"), &apply(&["devs"]))
            .await;
        let message = "Apply failed with 1 conflict: conflict with \"gitops\": .subjects";
        assert_eq!(api_error(refused).2, message);

        let mut unlabelled = binding("team-a", "devs-view", &["devs", "ops"]);
        unlabelled["metadata"].as_object_mut().unwrap().remove("labels");
        let pruned = rbs
            .patch("devs-view", &force, &Patch::Apply(unlabelled.clone()))
            .await
            .expect("pruned");
        assert_eq!(
            pruned.metadata.labels, None,
            "a label scimgate no longer applies is gone"
        );
        unlabelled["roleRef"]["name"] = json!("edit");
        let (code, reason, message) = api_error(rbs.patch("devs-view", &force, &Patch::Apply(unlabelled)).await);
        assert_eq!((code, reason.as_str()), (422, "Invalid"));
        assert!(message.ends_with("roleRef: Invalid value: {\"APIGroup\":\"rbac.authorization.k8s.io\",\"Kind\":\"ClusterRole\",\"Name\":\"edit\"}: cannot change roleRef"), "{message}");

        let deleted = rbs
            .delete("devs-view", &DeleteParams::default())
            .await
            .expect("deleted");
        let status = deleted.right().expect("a Status, not the object");
        assert_eq!(
            status.details.map(|d| (d.name, d.kind)),
            Some(("devs-view".into(), "rolebindings".into()))
        );
        assert!(rbs.get_opt("devs-view").await.expect("get").is_none());
        assert_eq!(
            api_error(rbs.delete("devs-view", &DeleteParams::default()).await).0,
            404
        );
        assert_eq!(face.rbac_writes(), 10);
    }

    /// POST, PUT, merge and JSON patches as raw HTTP: their codes and Status reasons, the field
    /// manager from `fieldManager` or the User-Agent, RBAC's validation, NamespaceLifecycle.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn creates_updates_and_patches_answer_and_record_as_upstream() {
        let (api, face, _client, _dir) = store_face_and_client().await;
        let http = reqwest::Client::new();
        let base = format!("http://{}/apis/{GROUP}/v1", face.addr);
        let send = async |r: reqwest::RequestBuilder| -> (u16, Value) {
            let r = r.send().await.expect("sent");
            (r.status().as_u16(), r.json().await.expect("json"))
        };
        let crb = json!({"apiVersion": API_VERSION, "kind": "ClusterRoleBinding", "metadata": {"name": "ci-view"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "builder", "namespace": "ci"}]});
        let kubectl = "kubectl-create/v1.34.0 (linux/amd64) kubernetes/abc";
        let post = || {
            http.post(format!("{base}/clusterrolebindings"))
                .header("user-agent", kubectl)
                .json(&crb)
        };
        let (code, created) = send(post()).await;
        assert_eq!((code, text(&created, "/roleRef/apiGroup")), (201, GROUP), "defaulted");
        assert_eq!(
            owners(&created),
            vec![(
                "kubectl-create".into(),
                "Update".into(),
                json!({"f:roleRef": {}, "f:subjects": {}})
            )]
        );
        let (code, again) = send(post()).await;
        assert_eq!((code, text(&again, "/reason")), (409, "AlreadyExists"));
        assert_eq!(
            text(&again, "/message"),
            "clusterrolebindings.rbac.authorization.k8s.io \"ci-view\" already exists"
        );

        let one = format!("{base}/clusterrolebindings/ci-view");
        let mut stale = created.clone();
        stale["metadata"]["resourceVersion"] = json!("1");
        let (code, conflict) = send(http.put(&one).json(&stale)).await;
        assert_eq!((code, text(&conflict, "/reason")), (409, "Conflict"));
        let mut current = created.clone();
        current["subjects"][0]["name"] = json!("deployer");
        let (code, replaced) = send(http.put(format!("{one}?fieldManager=ops")).json(&current)).await;
        assert_eq!((code, text(&replaced, "/subjects/0/name")), (200, "deployer"));
        assert_eq!(
            owners(&replaced)[1],
            ("ops".into(), "Update".into(), json!({"f:subjects": {}}))
        );
        let (code, _) = send(
            http.put(format!("{base}/clusterrolebindings/new"))
                .json(&json!({"metadata": {"name": "new"},
            "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": []})),
        )
        .await;
        assert_eq!(code, 201, "RBAC's kinds are created on update");

        // A JSON patch from a client that names no manager and sends no User-Agent.
        let ops = json!([{"op": "add", "path": "/metadata/labels", "value": {"team": "ci"}}]);
        let (code, patched) = send(
            http.patch(&one)
                .header("content-type", "application/json-patch+json")
                .json(&ops),
        )
        .await;
        assert_eq!((code, text(&patched, "/metadata/labels/team")), (200, "ci"));
        let unknown = owners(&patched)
            .into_iter()
            .find(|o| o.0 == "unknown")
            .expect("unknown");
        assert_eq!(unknown.2, json!({"f:metadata": {"f:labels": {".": {}, "f:team": {}}}}));
        let apply = |q: &str| {
            http.patch(format!("{one}{q}"))
                .header("content-type", "application/apply-patch+yaml")
                .body(crb.to_string())
        };
        let (code, missing) = send(apply("")).await;
        assert_eq!(
            (code, text(&missing, "/message")),
            (
                422,
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
            )
        );
        let merge = http
            .patch(format!("{one}?force=true"))
            .header("content-type", "application/merge-patch+json")
            .json(&json!({}));
        assert_eq!(send(merge).await.0, 422, "force is for apply only");

        let mut robot = crb.clone();
        robot["metadata"]["name"] = json!("robot");
        robot["subjects"] = json!([{"kind": "Robot", "name": "r2"}, {"kind": "ServiceAccount", "name": "builder"}]);
        let (code, invalid) = send(http.post(format!("{base}/clusterrolebindings")).json(&robot)).await;
        assert_eq!((code, text(&invalid, "/message")), (422, "ClusterRoleBinding.rbac.authorization.k8s.io \"robot\" is invalid: [subjects[0].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\", subjects[1].namespace: Required value]"));
        let rb = binding("nowhere", "devs", &["devs"]);
        let (code, absent) = send(http.post(format!("{base}/namespaces/nowhere/rolebindings")).json(&rb)).await;
        assert_eq!(
            (code, text(&absent, "/message")),
            (404, "namespaces \"nowhere\" not found")
        );

        let (code, gone) = send(http.delete(&one)).await;
        assert_eq!(
            (code, text(&gone, "/status"), text(&gone, "/details/uid")),
            (200, "Success", text(&created, "/metadata/uid"))
        );
        assert!(api.get(API_VERSION, "ClusterRoleBinding", "", "ci-view").is_none());
    }

    /// The authorizer: a group's ClusterRoleBinding allows everywhere; a RoleBinding of a
    /// ClusterRole only in its namespace; `pods/log` needs a rule naming it or `*/log`;
    /// resourceNames restrict; a ServiceAccount subject is its username; reasons as upstream's;
    /// SubjectAccessReview over HTTP.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_authorizer_decides_from_what_is_stored() {
        let (api, face, _client, _dir) = store_face_and_client().await;
        api.rbac_put(cluster_role(
            "pod-reader",
            json!({}),
            json!([rule(&[""], &["pods"], &["get", "list", "watch"])]),
        ));
        api.rbac_put(cluster_role(
            "log-reader",
            json!({}),
            json!([rule(&[""], &["pods/log"], &["get"])]),
        ));
        api.rbac_put(cluster_role(
            "any-log",
            json!({}),
            json!([rule(&["*"], &["*/log"], &["get"])]),
        ));
        api.rbac_put(json!({"kind": "Role", "metadata": {"name": "settings-reader", "namespace": "team-a"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get"]}]}));
        let bind = |kind: &str, ns: &str, name: &str, role: (&str, &str), subject: Value| {
            api.rbac_put(json!({"kind": kind, "metadata": {"name": name, "namespace": ns},
                "roleRef": {"kind": role.0, "name": role.1}, "subjects": [subject]}));
        };
        bind(
            "ClusterRoleBinding",
            "",
            "devs-pods",
            ("ClusterRole", "pod-reader"),
            json!({"kind": "Group", "name": "devs"}),
        );
        bind(
            "RoleBinding",
            "team-a",
            "bob-logs",
            ("ClusterRole", "log-reader"),
            json!({"kind": "User", "name": "oidc:bob"}),
        );
        bind(
            "RoleBinding",
            "team-a",
            "builder-logs",
            ("ClusterRole", "any-log"),
            json!({"kind": "ServiceAccount", "name": "builder"}),
        );
        bind(
            "RoleBinding",
            "team-a",
            "bob-settings",
            ("Role", "settings-reader"),
            json!({"kind": "User", "name": "oidc:bob"}),
        );
        bind(
            "RoleBinding",
            "team-b",
            "bob-settings",
            ("Role", "settings-reader"),
            json!({"kind": "User", "name": "oidc:bob"}),
        );

        let alice =
            |verb: &str, res: &str, sub: &str, ns: &str| api.can("oidc:alice", &["devs"], verb, "", res, sub, ns);
        assert!(
            alice("list", "pods", "", "team-b") && alice("watch", "pods", "", ""),
            "cluster-wide"
        );
        assert!(!alice("delete", "pods", "", "team-a") && !alice("get", "pods", "log", "team-a"));
        let bob = |res: &str, sub: &str, ns: &str| api.can("oidc:bob", &[], "get", "", res, sub, ns);
        assert!(bob("pods", "log", "team-a"), "a RoleBinding of a ClusterRole");
        assert!(!bob("pods", "log", "team-b") && !bob("pods", "log", "") && !bob("pods", "", "team-a"));
        let builder = "system:serviceaccount:team-a:builder";
        assert!(api.can(builder, &[], "get", "", "pods", "log", "team-a"), "*/log");
        assert!(
            api.can(builder, &[], "get", "batch", "jobs", "log", "team-a"),
            "*/log of any resource"
        );
        assert!(
            !api.can(builder, &[], "get", "", "pods", "exec", "team-a")
                && !api.can(builder, &[], "get", "", "pods", "", "team-a")
        );
        assert!(!api.can(
            "system:serviceaccount:team-b:builder",
            &[],
            "get",
            "",
            "pods",
            "log",
            "team-a"
        ));

        let settings = |ns: &str, name: &str| Attributes {
            verb: "get".into(),
            namespace: ns.into(),
            resource: "configmaps".into(),
            name: name.into(),
            ..Attributes::default()
        };
        {
            let storage = api.storage();
            let s = storage.lock().unwrap();
            let allowed =
                "RBAC: allowed by RoleBinding \"bob-settings/team-a\" of Role \"settings-reader\" to User \"oidc:bob\"";
            assert_eq!(
                authorize(&s, "oidc:bob", &[], &settings("team-a", "settings")),
                (true, allowed.into())
            );
            assert!(
                !authorize(&s, "oidc:bob", &[], &settings("team-a", "other")).0,
                "resourceNames restrict"
            );
            assert!(
                !authorize(&s, "oidc:bob", &[], &settings("team-a", "")).0,
                "a list names nothing"
            );
            let missing = "RBAC: role.rbac.authorization.k8s.io \"settings-reader\" not found";
            assert_eq!(
                authorize(&s, "oidc:bob", &[], &settings("team-b", "settings")),
                (false, missing.into())
            );
        }

        // Every signed-in user is in system:authenticated; a review takes its groups as given.
        api.rbac_put(cluster_role(
            "discovery",
            json!({}),
            json!([rule(&[""], &["namespaces"], &["get"])]),
        ));
        bind(
            "ClusterRoleBinding",
            "",
            "everyone",
            ("ClusterRole", "discovery"),
            json!({"kind": "Group", "name": "system:authenticated"}),
        );
        assert!(api.can("oidc:anyone", &[], "get", "", "namespaces", "", ""));
        let review = async |spec: Value| -> (u16, Value) {
            let r = reqwest::Client::new()
                .post(format!(
                    "http://{}/apis/authorization.k8s.io/v1/subjectaccessreviews",
                    face.addr
                ))
                .json(&json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}))
                .send()
                .await
                .expect("sent");
            (r.status().as_u16(), r.json().await.expect("json"))
        };
        let logs = json!({"namespace": "team-a", "verb": "get", "resource": "pods", "subresource": "log"});
        let (code, r) = review(json!({"user": "oidc:bob", "resourceAttributes": logs})).await;
        assert_eq!(
            (code, &r["status"]),
            (
                201,
                &json!({"allowed": true, "reason": "RBAC: allowed by RoleBinding \"bob-logs/team-a\" of ClusterRole \"log-reader\" to User \"oidc:bob\""})
            )
        );
        let (_, r) = review(json!({"user": "oidc:alice", "groups": ["devs"], "resourceAttributes": logs})).await;
        assert_eq!(r["status"], json!({"allowed": false}));
        let (_, r) =
            review(json!({"user": "oidc:anyone", "resourceAttributes": {"verb": "get", "resource": "namespaces"}}))
                .await;
        assert_eq!(
            r["status"]["allowed"], false,
            "no system:authenticated added to a review"
        );
        assert_eq!(
            review(json!({"resourceAttributes": logs})).await.0,
            422,
            "no user, no group"
        );
    }

    /// The aggregation controller through a watch: a labelled ClusterRole applied later is
    /// aggregated (MODIFIED, owned by the controller), rules deduplicated in its order, roles the
    /// selectors do not match change nothing, a role leaving takes its rules along.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn aggregation_follows_labelled_cluster_roles() {
        let (api, _face, client, _dir) = store_face_and_client().await;
        let aggregated = api.rbac_put(
            json!({"kind": "ClusterRole", "metadata": {"name": "scim-view"}, "rules": [],
            "aggregationRule": {"clusterRoleSelectors": [
                {"matchLabels": {"scimgate.io/aggregate-to-view": "true"}},
                {"matchExpressions": [{"key": "team", "operator": "In", "values": ["ml"]},
                    {"key": "deprecated", "operator": "DoesNotExist"}]}]}}),
        );
        api.rbac_put(json!({"kind": "ClusterRoleBinding", "metadata": {"name": "viewers"},
            "roleRef": {"kind": "ClusterRole", "name": "scim-view"}, "subjects": [{"kind": "Group", "name": "viewers"}]}));
        let viewer = |res: &str| api.can("oidc:vic", &["viewers"], "get", "argoproj.io", res, "", "team-a");
        assert!(!viewer("workflows"));
        let roles: Api<ClusterRole> = Api::all(client);
        let rv = aggregated["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        let mut events = roles
            .watch(&WatchParams::default().timeout(20), &rv)
            .await
            .expect("watch")
            .boxed();
        let workflows = rule(&["argoproj.io"], &["workflows"], &["get", "list"]);
        let runs = rule(&["argoproj.io"], &["workflows", "cronworkflows"], &["get"]);
        let apply = async |name: &str, labels: Value, rules: Value| {
            let role = Patch::Apply(cluster_role(name, labels, rules));
            roles
                .patch(name, &PatchParams::apply("scimgate"), &role)
                .await
                .expect("applied")
        };
        apply(
            "argo-read",
            json!({"scimgate.io/aggregate-to-view": "true"}),
            json!([workflows]),
        )
        .await;
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match events.next().await.expect("an event").expect("decoded") {
                WatchEvent::Added(r) | WatchEvent::Modified(r) => seen.push(r),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen[0].metadata.name.as_deref(), Some("argo-read"));
        let modified = &seen[1];
        assert_eq!(serde_json::to_value(&modified.rules).unwrap(), json!([workflows]));
        let by = owners(modified);
        assert!(
            by.contains(&(AGGREGATOR.into(), "Apply".into(), json!({"f:rules": {}}))),
            "{by:?}"
        );
        assert!(viewer("workflows"));

        apply("ml-read", json!({"team": "ml"}), json!([workflows, runs])).await;
        let stored = |name: &str| api.get(API_VERSION, "ClusterRole", "", name).unwrap();
        assert_eq!(
            stored("scim-view")["rules"],
            json!([workflows, runs]),
            "each rule once, in selector order"
        );
        let before = stored("scim-view")["metadata"]["resourceVersion"].clone();
        apply(
            "ml-old",
            json!({"team": "ml", "deprecated": "yes"}),
            json!([rule(&["*"], &["*"], &["*"])]),
        )
        .await;
        apply("other", json!({"team": "web"}), json!([rule(&["*"], &["*"], &["*"])])).await;
        assert_eq!(
            stored("scim-view")["metadata"]["resourceVersion"],
            before,
            "not selected: no change"
        );

        api.hand_edit(
            "kubectl-edit",
            "clusterroles",
            "",
            "ml-read",
            json!({"metadata": {"labels": {"team": null}}}),
        )
        .expect("unlabelled");
        assert_eq!(stored("scim-view")["rules"], json!([workflows]));
        assert!(viewer("workflows") && !viewer("cronworkflows"));
        roles
            .delete("argo-read", &DeleteParams::default())
            .await
            .expect("deleted");
        assert!(
            stored("scim-view").get("rules").is_none(),
            "the controller's rules pruned"
        );
        assert!(!viewer("workflows"));
    }

    /// Namespaces are stored: listed and watched (kube-rs `watcher`) through the face, labelled;
    /// a write into one that does not exist yet is NotFound; deleting one deletes what is in it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn namespaces_created_later_are_watched_and_deleted_with_their_objects() {
        use kube::runtime::watcher::{watcher, Config, Event};
        let (api, _face, client, _dir) = store_face_and_client().await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let watching = tokio::spawn(watcher(namespaces.clone(), Config::default()).for_each(move |e| {
            let _ = tx.send(e.expect("event"));
            async {}
        }));
        let mut initial = Vec::new();
        loop {
            match rx.recv().await.expect("event") {
                Event::InitApply(ns) => initial.push(ns.metadata.name.unwrap()),
                Event::InitDone => break,
                _ => {}
            }
        }
        assert!(initial.contains(&"team-a".to_string()) && !initial.contains(&"ml-late".to_string()));

        let rbs: Api<RoleBinding> = Api::namespaced(client, "ml-late");
        let pp = PatchParams::apply("scimgate");
        let rb = Patch::Apply(binding("ml-late", "devs", &["devs"]));
        let (code, _, message) = api_error(rbs.patch("devs", &pp, &rb).await);
        assert_eq!((code, message.as_str()), (404, "namespaces \"ml-late\" not found"));
        api.create_namespace("ml-late");
        let Event::Apply(ns) = rx.recv().await.expect("event") else {
            panic!("not an apply")
        };
        let labels = ns.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels.get("kubernetes.io/metadata.name").map(String::as_str),
            Some("ml-late")
        );
        assert_eq!(
            namespaces.get("ml-late").await.expect("get").metadata.uid,
            ns.metadata.uid
        );
        rbs.patch("devs", &pp, &rb).await.expect("now it exists");

        api.delete_namespace("ml-late");
        let Event::Delete(gone) = rx.recv().await.expect("event") else {
            panic!("not a delete")
        };
        assert_eq!(gone.metadata.name.as_deref(), Some("ml-late"));
        assert!(
            api.get(API_VERSION, "RoleBinding", "ml-late", "devs").is_none(),
            "its objects went first"
        );
        assert_eq!(api_error(rbs.patch("devs", &pp, &rb).await).0, 404);
        watching.abort();
    }

    /// Manifests load from a directory (namespaces first, aggregation run); a missing path is a
    /// panic that says so; the face counts requests and RBAC writes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn manifests_load_and_the_face_counts_its_requests() {
        let (api, face, client, dir) = store_face_and_client().await;
        let access = dir.path().join("access");
        std::fs::create_dir(&access).unwrap();
        std::fs::write(access.join("kustomization.yaml"), "resources: [roles.yaml]\n").unwrap();
        std::fs::write(access.join("roles.yaml"), "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: scim-edit\naggregationRule:\n  clusterRoleSelectors:\n  - matchLabels: {scimgate.io/aggregate-to-edit: \"true\"}\nrules: []\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: argo-edit\n  labels: {scimgate.io/aggregate-to-edit: \"true\"}\nrules:\n- apiGroups: [argoproj.io]\n  resources: [workflows]\n  verbs: [create]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: editors\n  namespace: ml-new\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: scim-edit}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: editors}\n").unwrap();
        std::fs::write(
            access.join("namespace.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ml-new\n  labels: {team: ml}\n",
        )
        .unwrap();
        api.apply_manifests(&access);
        assert_eq!(
            api.get(API_VERSION, "ClusterRole", "", "scim-edit").unwrap()["rules"][0]["verbs"],
            json!(["create"])
        );
        assert!(api.can(
            "oidc:eve",
            &["editors"],
            "create",
            "argoproj.io",
            "workflows",
            "",
            "ml-new"
        ));
        let labels = api.storage().lock().unwrap().namespace_labels("ml-new").unwrap();
        assert_eq!(
            (labels["team"].as_str(), labels["kubernetes.io/metadata.name"].as_str()),
            ("ml", "ml-new")
        );
        let missing = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            api.apply_manifests(&dir.path().join("none"))
        }));
        let message = missing.expect_err("a panic");
        let message = message.downcast_ref::<String>().unwrap();
        assert!(message.contains("none: no such file or directory"), "{message}");

        let (requests, writes) = (face.requests(), face.rbac_writes());
        let roles: Api<ClusterRole> = Api::all(client);
        roles.list(&Default::default()).await.expect("list");
        let role = cluster_role("extra", json!({}), json!([]));
        roles
            .patch("extra", &PatchParams::apply("scimgate"), &Patch::Apply(role))
            .await
            .expect("applied");
        assert_eq!((face.requests(), face.rbac_writes()), (requests + 2, writes + 1));
    }

    /// fieldsV1 as the API server writes it: `.` for a map owned beside its entries, and read
    /// back the same.
    #[test]
    fn fields_v1_encode_and_decode_as_upstream() {
        let obj = json!({"apiVersion": API_VERSION, "kind": "RoleBinding", "metadata": {"name": "x",
            "labels": {"a": "1", "b": "2"}}, "roleRef": {"kind": "ClusterRole", "name": "view"}});
        let mut managers = Vec::new();
        record_update(&mut managers, "kubectl-create", &json!({}), &obj);
        let mut written = obj.clone();
        put_managers(&mut written, managers.clone());
        let fields = &written["metadata"]["managedFields"][0]["fieldsV1"];
        assert_eq!(
            fields.to_string(),
            r#"{"f:metadata":{"f:labels":{".":{},"f:a":{},"f:b":{}}},"f:roleRef":{}}"#
        );
        let back = decode_managers(written["metadata"].get("managedFields"));
        assert_eq!(back[0].fields, managers[0].fields);
    }
}
