//! What the cluster should hold for the policy's grants (`desired`), and what to create, change
//! and delete to get there from what it holds (`diff`). Pure: the reconciler and
//! `scimgate access plan` hand it the policy, a directory snapshot, the namespaces and the bindings
//! scimgate owns, as read.

use super::subjects;
use crate::directory::Snapshot;
use crate::policy::access::{Access, RoleRef};
use crate::policy::Policy;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// `(namespace, name)`; the namespace is empty for a ClusterRoleBinding.
pub type Key = (String, String);

/// One RBAC subject, as RoleBindings list them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: String,
    pub name: String,
    /// A ServiceAccount's namespace; empty otherwise.
    pub namespace: String,
}

impl Subject {
    pub fn user(name: &str) -> Subject {
        Subject {
            kind: "User".into(),
            name: name.into(),
            namespace: String::new(),
        }
    }
}

/// A binding scimgate owns, as far as it writes it: what the reconciler compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Empty for a ClusterRoleBinding.
    pub namespace: String,
    pub name: String,
    pub role: RoleRef,
    /// The group as the policy writes it (annotation [`super::GROUP`]).
    pub group: String,
    /// The grant (annotation [`super::GRANT`]).
    pub grant: String,
    /// Sorted. Shared: a grant's subjects are the same in every namespace it names.
    pub subjects: Arc<[Subject]>,
}

impl Binding {
    pub fn key(&self) -> Key {
        (self.namespace.clone(), self.name.clone())
    }

    pub fn kind(&self) -> &'static str {
        if self.namespace.is_empty() {
            "ClusterRoleBinding"
        } else {
            "RoleBinding"
        }
    }

    /// `namespace/name`, or `name` for a ClusterRoleBinding.
    pub fn display(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

/// The name of the binding for `group` and `role`: `scimgate:<group>:<role>` (a Role's with
/// `role:` before its name, so a Role and a ClusterRole of one name do not meet), lower-cased,
/// every character a DNS label would not take as `-`. When that changed anything, when a part
/// has a `:` of its own (group `a:b` with role `c` would read as group `a` with role `b:c`), or
/// when the name would pass 200 characters, a digest of the exact pair follows, so two grants
/// never share one.
pub fn binding_name(group: &str, role: &RoleRef) -> String {
    let marker = match role {
        RoleRef::ClusterRole(_) => "",
        RoleRef::Role(_) => "role:",
    };
    let exact = format!("scimgate:{group}:{marker}{}", role.name());
    let clean: String = exact
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' | ':' => c,
            _ => '-',
        })
        .collect();
    let colons = group.contains(':') || role.name().contains(':');
    if clean == exact && !colons && clean.len() <= 200 {
        return clean;
    }
    // Of the parts, not the name: `a:b` + `c` and `a` + `b:c` read the same joined.
    let digest = crate::policy::digest(format!("{group}\0{marker}\0{}", role.name()).as_bytes());
    let head: String = clean.chars().take(180).collect();
    format!("{head}-{}", &digest[..10])
}

/// What the cluster should hold: for each grant, one binding per namespace it names that exists
/// (or one ClusterRoleBinding), its subjects the usernames of the group's active members. Grants
/// whose group the directory lacks bind nobody (and are named in the returned notes); two grants
/// that come to the same binding are one.
pub fn desired(
    policy: &Policy,
    access: &Access,
    s: &Snapshot,
    namespaces: &[String],
) -> (BTreeMap<Key, Binding>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut notes = Vec::new();
    let mut members: HashMap<String, Arc<[Subject]>> = HashMap::new();
    let mut names: HashMap<std::sync::Arc<str>, Vec<String>> = HashMap::new();
    for grant in &access.grants {
        let folded = crate::model::name::fold(&grant.group);
        if !members.contains_key(&folded) {
            let users = subjects::active_members(s, &grant.group).unwrap_or_else(|| {
                notes.push(format!(
                    "group '{}' ({}) is not in the directory: its bindings have no subjects",
                    grant.group,
                    grant.describe()
                ));
                Vec::new()
            });
            let mut list: Vec<Subject> = users
                .iter()
                .flat_map(|u| {
                    names
                        .entry(u.record.id.clone())
                        .or_insert_with(|| subjects::usernames(s, policy, u))
                        .clone()
                })
                .map(|n| Subject::user(&n))
                .collect();
            list.sort();
            list.dedup();
            members.insert(folded.clone(), list.into());
        }
        let subjects = members.get(&folded).cloned().unwrap_or_else(|| Arc::from([]));
        let described = grant.describe();
        let name = binding_name(&folded, &grant.role);
        let scopes: Vec<String> = match &grant.namespaces {
            None => vec![String::new()],
            Some(globs) => namespaces
                .iter()
                .filter(|ns| crate::policy::access::reaches(globs, ns))
                .cloned()
                .collect(),
        };
        for namespace in scopes {
            let b = Binding {
                namespace,
                name: name.clone(),
                role: grant.role.clone(),
                group: grant.group.clone(),
                grant: described.clone(),
                subjects: subjects.clone(),
            };
            out.entry(b.key()).or_insert(b);
        }
    }
    (out, notes)
}

/// Why a binding is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The policy or the directory asks for it.
    Asked,
    /// Someone changed (or deleted) the binding since scimgate wrote it: it is put back. The
    /// field managers other than scimgate's that hold fields of it (empty: deleted, or unknown).
    Drift { by: Vec<String> },
}

/// One binding to create or change: what it becomes, what it was (as observed; `None`: absent).
#[derive(Debug, Clone)]
pub struct Change {
    pub to: Binding,
    pub was: Option<Binding>,
    pub why: Why,
}

impl Change {
    /// Usernames the change gives the role, and those it takes it from.
    pub fn people(&self) -> (Vec<&str>, Vec<&str>) {
        let before: &[Subject] = self.was.as_ref().map_or(&[], |b| &*b.subjects);
        people_between(before, &self.to.subjects)
    }
}

/// The `User` subjects of `after` not in `before`, and those of `before` not in `after`.
pub fn people_between<'a>(before: &'a [Subject], after: &'a [Subject]) -> (Vec<&'a str>, Vec<&'a str>) {
    let users = |l: &'a [Subject]| -> std::collections::BTreeSet<&'a str> {
        l.iter().filter(|s| s.kind == "User").map(|s| s.name.as_str()).collect()
    };
    let (b, a) = (users(before), users(after));
    (a.difference(&b).copied().collect(), b.difference(&a).copied().collect())
}

/// A binding scimgate owns, as observed, with the field managers other than scimgate's that
/// hold any of its fields.
#[derive(Debug, Clone)]
pub struct Observed {
    pub binding: Binding,
    pub others: Vec<String>,
    /// What a write of it is conditional on.
    pub resource_version: String,
    pub uid: String,
}

/// What to do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub create: Vec<Change>,
    pub update: Vec<Change>,
    pub delete: Vec<Binding>,
    /// Bindings that are as they should be.
    pub unchanged: Vec<Binding>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// From `observed` to `desired`. `last` is what this replica last wrote or found as it should be,
/// by key: a binding that differs from it was changed by someone else (drift). Without it (at
/// start, or after taking over), a binding that differs from what is desired and has fields
/// another manager holds counts as drift.
pub fn diff(desired: BTreeMap<Key, Binding>, observed: &BTreeMap<Key, Observed>, last: &HashMap<Key, Binding>) -> Plan {
    let mut plan = Plan::default();
    let wanted: std::collections::HashSet<Key> = desired.keys().cloned().collect();
    for (key, to) in desired {
        match observed.get(&key) {
            None => plan.create.push(Change {
                why: if last.contains_key(&key) {
                    Why::Drift { by: Vec::new() }
                } else {
                    Why::Asked
                },
                was: None,
                to,
            }),
            Some(o) if o.binding == to => plan.unchanged.push(to),
            Some(o) => {
                let drift = match last.get(&key) {
                    Some(l) => *l != o.binding,
                    None => !o.others.is_empty(),
                };
                plan.update.push(Change {
                    why: if drift {
                        Why::Drift { by: o.others.clone() }
                    } else {
                        Why::Asked
                    },
                    was: Some(o.binding.clone()),
                    to,
                });
            }
        }
    }
    for (key, o) in observed {
        if !wanted.contains(key) {
            plan.delete.push(o.binding.clone());
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResourceType;
    use crate::store::{Change as Put, Record};

    fn put(rt: ResourceType, id: &str, body: serde_json::Value) -> Put {
        let key = body["userName"]
            .as_str()
            .or(body["displayName"].as_str())
            .unwrap_or_default();
        Put::Put {
            record: Record {
                rt,
                id: id.into(),
                unique_key: crate::model::name::fold(key).into(),
                version: 1,
                body: body.to_string().into(),
            },
            previous: None,
        }
    }

    fn world() -> (Policy, Snapshot) {
        let policy = Policy::parse(
            "apiVersion: scimgate.io/v1\nkind: Policy\nidentity:\n  usernamePrefix: 'oidc:'\nrules:\n  - name: r\n    allow: [submit]\n    groups: [g]\naccess:\n  bindings:\n    - group: ML-Engineers\n      clusterRole: scimgate-runs-submit\n      namespaces: ['ml-*']\n    - group: platform\n      clusterRole: view\n    - group: nobody-here\n      role: reader\n      namespaces: [prod]\n",
            "p.yaml",
        )
        .unwrap();
        let mut s = Snapshot::default();
        let user = |id: &str, name: &str, active: bool| {
            put(
                ResourceType::User,
                id,
                serde_json::json!({"userName": name, "active": active}),
            )
        };
        let group = |id: &str, name: &str, members: &[&str]| {
            let m: Vec<_> = members.iter().map(|m| serde_json::json!({"value": m})).collect();
            put(
                ResourceType::Group,
                id,
                serde_json::json!({"displayName": name, "members": m}),
            )
        };
        s.apply(&[
            user("u1", "alice@example.com", true),
            user("u2", "bob@example.com", true),
            user("u3", "carol@example.com", false),
            group("g1", "ml-engineers", &["u1", "u3", "g3"]),
            group("g3", "ml-interns", &["u2", "g1"]),
            group("g2", "platform", &["u2"]),
        ]);
        (policy, s)
    }

    fn users(b: &Binding) -> Vec<&str> {
        b.subjects.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn a_grant_binds_the_active_members_of_the_group_and_its_nested_groups_where_it_says() {
        let (policy, s) = world();
        let namespaces = ["ml-team", "ml-research", "prod", "default"].map(String::from);
        let (desired, notes) = desired(&policy, policy.access.as_ref().unwrap(), &s, &namespaces);
        let keys: Vec<(&str, &str)> = desired.keys().map(|(n, b)| (n.as_str(), b.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("", "scimgate:platform:view"),
                ("ml-research", "scimgate:ml-engineers:scimgate-runs-submit"),
                ("ml-team", "scimgate:ml-engineers:scimgate-runs-submit"),
                ("prod", "scimgate:nobody-here:role:reader"),
            ]
        );
        let ml = &desired[&(
            "ml-team".to_string(),
            "scimgate:ml-engineers:scimgate-runs-submit".to_string(),
        )];
        // carol is deactivated; bob comes through the nested (and cyclic) ml-interns.
        assert_eq!(users(ml), ["oidc:alice@example.com", "oidc:bob@example.com"]);
        assert_eq!(ml.role, RoleRef::ClusterRole("scimgate-runs-submit".into()));
        assert_eq!(ml.kind(), "RoleBinding");
        assert_eq!(
            desired[&(String::new(), "scimgate:platform:view".to_string())].kind(),
            "ClusterRoleBinding"
        );
        assert!(users(&desired[&("prod".to_string(), "scimgate:nobody-here:role:reader".to_string())]).is_empty());
        assert!(notes.iter().any(|n| n.contains("'nobody-here'")), "{notes:?}");
    }

    #[test]
    fn the_diff_creates_changes_deletes_and_tells_drift_from_a_directory_change() {
        let (policy, s) = world();
        let (desired, _) = desired(&policy, policy.access.as_ref().unwrap(), &s, &["ml-team".to_string()]);
        let ml = desired[&(
            "ml-team".to_string(),
            "scimgate:ml-engineers:scimgate-runs-submit".to_string(),
        )]
            .clone();
        let observe = |b: &Binding, others: &[&str]| Observed {
            binding: b.clone(),
            others: others.iter().map(|o| o.to_string()).collect(),
            resource_version: "1".into(),
            uid: "u".into(),
        };
        let mut fewer = ml.clone();
        fewer.subjects = fewer.subjects[..1].into();
        let mut stale = ml.clone();
        stale.name = "scimgate:old:view".into();
        let observed = BTreeMap::from([(ml.key(), observe(&fewer, &[])), (stale.key(), observe(&stale, &[]))]);
        let p = diff(desired.clone(), &observed, &HashMap::new());
        assert_eq!(p.create.len(), 1, "the ClusterRoleBinding");
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].why, Why::Asked);
        assert_eq!(p.update[0].people(), (vec!["oidc:bob@example.com"], vec![]));
        assert_eq!(p.delete, [stale.clone()]);
        // What scimgate wrote last was the full list: someone else took bob out.
        let last = HashMap::from([(ml.key(), ml.clone())]);
        let p = diff(desired.clone(), &observed, &last);
        assert!(matches!(p.update[0].why, Why::Drift { .. }));
        // Without a memory, a change by another field manager is drift; none is not.
        let observed = BTreeMap::from([(ml.key(), observe(&fewer, &["kubectl-edit"]))]);
        let p = diff(desired.clone(), &observed, &HashMap::new());
        assert_eq!(
            p.update[0].why,
            Why::Drift {
                by: vec!["kubectl-edit".into()]
            }
        );
        // Deleted since scimgate wrote it: created again, as drift.
        let p = diff(desired, &BTreeMap::new(), &last);
        let again = p.create.iter().find(|c| c.to.key() == ml.key()).unwrap();
        assert!(matches!(again.why, Why::Drift { .. }));
    }

    #[test]
    fn binding_names_are_readable_and_never_shared() {
        assert_eq!(
            binding_name("ml-engineers", &RoleRef::ClusterRole("view".into())),
            "scimgate:ml-engineers:view"
        );
        assert_eq!(
            binding_name("ml-engineers", &RoleRef::Role("view".into())),
            "scimgate:ml-engineers:role:view"
        );
        let a = binding_name("ml engineers", &RoleRef::ClusterRole("view".into()));
        let b = binding_name("ml_engineers", &RoleRef::ClusterRole("view".into()));
        assert!(a.starts_with("scimgate:ml-engineers:view-") && a != b, "{a} {b}");
        let (c, d) = (
            binding_name("ci:tekton", &RoleRef::ClusterRole("view".into())),
            binding_name("ci", &RoleRef::ClusterRole("tekton:view".into())),
        );
        assert!(c != d && c.starts_with("scimgate:ci:tekton:view-"), "{c} {d}");
        let long = binding_name(&"x".repeat(300), &RoleRef::ClusterRole("view".into()));
        assert!(long.len() <= 200, "{}", long.len());
    }
}
