//! `access:` in the policy file: which SCIM group gets which ClusterRole or Role, in which
//! namespaces (names and globs, like the rules' `namespaces`), or cluster-wide. The YAML model,
//! its validation, and the compiled form the access reconciler (`crate::access`) reads. Pure.

use super::glob::Glob;
use super::Mode;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AccessFile {
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    bindings: Vec<GrantFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GrantFile {
    group: String,
    #[serde(default)]
    cluster_role: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    namespaces: Option<Vec<String>>,
}

/// What a grant binds: a ClusterRole, or a Role of the same name in each namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RoleRef {
    ClusterRole(String),
    Role(String),
}

impl RoleRef {
    pub fn kind(&self) -> &'static str {
        match self {
            RoleRef::ClusterRole(_) => "ClusterRole",
            RoleRef::Role(_) => "Role",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            RoleRef::ClusterRole(n) | RoleRef::Role(n) => n,
        }
    }
}

/// One compiled grant: the group's active members (nested groups included) get `role`, in the
/// namespaces matching `namespaces` (a RoleBinding in each), or cluster-wide when `None` (a
/// ClusterRoleBinding).
#[derive(Debug, Clone)]
pub struct Grant {
    /// The group's displayName as the policy writes it; matched folded.
    pub group: String,
    pub role: RoleRef,
    pub namespaces: Option<Vec<Glob>>,
}

impl Grant {
    /// `group → Kind/name in patterns` (or `cluster-wide`): how records and plans name the grant.
    pub fn describe(&self) -> String {
        let scope = match &self.namespaces {
            Some(n) => {
                let names: Vec<&str> = n.iter().map(Glob::as_str).collect();
                format!("in {}", names.join(", "))
            }
            None => "cluster-wide".into(),
        };
        format!("{} → {} {} {scope}", self.group, self.role.kind(), self.role.name())
    }
}

/// The compiled `access:` section.
#[derive(Debug, Clone)]
pub struct Access {
    /// `dry-run`: the reconciler says what it would change and writes nothing. Default: enforce,
    /// whatever the policy's own `mode`.
    pub mode: Mode,
    pub grants: Vec<Grant>,
}

/// ClusterRoles that give a group the cluster: bound cluster-wide they are a warning, not an
/// error (a platform team may mean it).
const SWEEPING: [&str; 2] = ["cluster-admin", "admin"];

/// The ClusterRole `components/access` gives scimgate itself: granting it would hand a group the
/// power to rewrite every binding.
const OWN_ROLE: &str = "scimgate-access";

/// Namespaces a glob does not reach; only a grant naming one exactly does: the control plane's.
pub const RESERVED_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Whether a grant's `namespaces` reach `namespace`.
pub fn reaches(globs: &[Glob], namespace: &str) -> bool {
    let literal = |g: &Glob| !g.as_str().contains(['*', '?']);
    globs
        .iter()
        .any(|g| g.matches(namespace) && (literal(g) || !RESERVED_NAMESPACES.contains(&namespace)))
}

/// `access:` when the key is there — even empty (`access:` with everything under it commented
/// out reads as null): the section is then present with no grants, and scimgate withdraws what
/// it granted, rather than freezing the bindings as they are.
pub(super) fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<AccessFile>, D::Error> {
    Option::<AccessFile>::deserialize(d).map(|a| Some(a.unwrap_or_default()))
}

impl AccessFile {
    /// Compile, adding what is wrong to `problems` and what is risky to `warnings`.
    pub(super) fn compile(self, problems: &mut Vec<String>, warnings: &mut Vec<String>) -> Access {
        let mut grants = Vec::new();
        for (i, g) in self.bindings.into_iter().enumerate() {
            let at = format!("access.bindings[{i}]");
            if g.group.trim().is_empty() {
                problems.push(format!("{at}: group is required (a SCIM group's displayName)"));
            }
            let role = match (g.cluster_role, g.role) {
                (Some(c), None) if !c.trim().is_empty() => RoleRef::ClusterRole(c),
                (None, Some(r)) if !r.trim().is_empty() => RoleRef::Role(r),
                (Some(_), Some(_)) => {
                    problems.push(format!(
                        "{at}: names both clusterRole and role; a binding refers to one"
                    ));
                    continue;
                }
                _ => {
                    problems.push(format!("{at}: names no clusterRole or role to grant"));
                    continue;
                }
            };
            if let Some(bad) = [role.name(), g.group.as_str()]
                .into_iter()
                .find(|n| n.contains(['/', '%']))
            {
                problems.push(format!(
                    "{at}: '{bad}' has '/' or '%', which no Kubernetes object name may have"
                ));
            }
            let namespaces = match g.namespaces {
                Some(list) if list.is_empty() => {
                    problems.push(format!(
                        "{at}: namespaces is an empty list, which grants nothing; remove it for cluster-wide or name some"
                    ));
                    continue;
                }
                Some(list) => Some(
                    list.iter()
                        .filter_map(|p| {
                            Glob::new(p)
                                .map_err(|e| problems.push(format!("{at}: namespaces: {e}")))
                                .ok()
                        })
                        .collect(),
                ),
                None => None,
            };
            if role.name() == OWN_ROLE || role.name().starts_with("system:") {
                problems.push(format!(
                    "{at}: {} is not a role to grant a group (scimgate's own, or the API server's)",
                    role.name()
                ));
            }
            if namespaces.is_none() && matches!(role, RoleRef::Role(_)) {
                problems.push(format!(
                    "{at}: a Role lives in a namespace; say which (namespaces), or grant a clusterRole"
                ));
            }
            if namespaces.is_none() && SWEEPING.contains(&role.name()) && matches!(role, RoleRef::ClusterRole(_)) {
                warnings.push(format!(
                    "{at}: grants ClusterRole {} cluster-wide to every member of {}: all of the cluster",
                    role.name(),
                    g.group
                ));
            }
            grants.push(Grant {
                group: g.group,
                role,
                namespaces,
            });
        }
        Access {
            // Not the policy's own mode: putting admission in dry-run must not stop revocations.
            mode: self.mode.unwrap_or(Mode::Enforce),
            grants,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::{Mode, Policy};

    fn with_access(access: &str) -> Result<Policy, String> {
        let text = format!(
            "apiVersion: scimgate.io/v1\nkind: Policy\nrules:\n  - name: r\n    allow: [submit]\n    groups: [g]\n{access}"
        );
        Policy::parse(&text, "p.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn grants_compile_with_their_scope_and_enforce_by_default() {
        let p = with_access(
            "access:\n  bindings:\n    - group: ml-engineers\n      clusterRole: scimgate-runs-submit\n      namespaces: [\"ml-*\"]\n    - group: platform\n      clusterRole: view\n",
        )
        .unwrap();
        let a = p.access.unwrap();
        assert_eq!(a.mode, Mode::Enforce);
        assert_eq!(a.grants.len(), 2);
        assert!(a.grants[0].namespaces.as_ref().unwrap()[0].matches("ml-team"));
        assert!(a.grants[1].namespaces.is_none());
        assert_eq!(a.grants[1].describe(), "platform → ClusterRole view cluster-wide");
    }

    #[test]
    fn no_access_section_is_none_and_an_empty_one_is_no_grants() {
        assert!(with_access("").unwrap().access.is_none());
        let a = with_access("access:\n  mode: dry-run\n").unwrap().access.unwrap();
        assert!(a.grants.is_empty());
        assert_eq!(a.mode, Mode::DryRun);
        // Everything under it commented out: present, with nothing granted.
        let a = with_access("access:\n#  bindings:\n").unwrap().access.unwrap();
        assert!(a.grants.is_empty());
        assert_eq!(a.mode, Mode::Enforce);
    }

    #[test]
    fn mistakes_are_named() {
        let e = with_access(
            "access:\n  bindings:\n    - group: a\n      role: r\n    - group: b\n    - group: c\n      clusterRole: x\n      role: y\n    - group: d\n      clusterRole: v\n      namespaces: []\n    - group: e/f\n      clusterRole: v\n    - group: g\n      clusterRole: scimgate-access\n",
        )
        .unwrap_err();
        for part in [
            "bindings[0]: a Role lives in a namespace",
            "bindings[1]: names no clusterRole or role",
            "bindings[2]: names both",
            "bindings[3]: namespaces is an empty list",
            "bindings[4]: 'e/f' has '/'",
            "bindings[5]: scimgate-access is not a role to grant",
        ] {
            assert!(e.contains(part), "{part} in {e}");
        }
    }

    #[test]
    fn cluster_admin_for_a_group_is_a_warning() {
        let p = with_access("access:\n  bindings:\n    - group: ops\n      clusterRole: cluster-admin\n").unwrap();
        assert!(
            p.warnings.iter().any(|w| w.contains("cluster-admin cluster-wide")),
            "{:?}",
            p.warnings
        );
    }
}
