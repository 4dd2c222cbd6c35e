//! Groups become access: for each grant of the policy's `access:` section (group → ClusterRole
//! or Role, in namespaces or cluster-wide), a RoleBinding (or ClusterRoleBinding) whose subjects
//! are the group's active members, nested groups included, named as the API server names them
//! (`subjects`). `plan` says what the cluster should hold and how it differs from what it holds;
//! `reconcile` keeps it so, on the replica holding the access Lease; `explain` answers who can
//! do what through these bindings.
//!
//! Must not: touch a binding it does not own — one without [`LABEL`] — not even one that has the
//! name it would give its own (it creates with a POST, which fails on an existing name, rather
//! than an apply, which would adopt it); act on a partial view of the cluster (it plans only once
//! every watch has listed); or grant anyone the directory does not hold as active.

pub mod explain;
pub mod object;
pub mod plan;
pub mod read;
pub mod reconcile;
pub mod subjects;

/// The label on every binding scimgate owns, and its value: what the reconciler watches, and the
/// only bindings it changes or deletes.
pub const LABEL: &str = "scimgate.io/managed-by";
pub const LABEL_VALUE: &str = "scimgate-access";
/// The grant a binding is for, as the policy wrote it (`group → ClusterRole x in ml-*`), and its
/// group: for people reading the binding, and for `access of`/`who-can`.
pub const GRANT: &str = "scimgate.io/access-grant";
pub const GROUP: &str = "scimgate.io/access-group";
/// The field manager of scimgate's writes (server-side apply and creates).
pub const FIELD_MANAGER: &str = "scimgate";
/// The Lease whose holder writes the bindings.
pub const LEASE: &str = "scimgate-access";
/// The hook and action of the decision records a change of someone's access leaves.
pub const HOOK: &str = "access";
pub const ACTION: &str = "access";
/// The API group of RBAC.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
