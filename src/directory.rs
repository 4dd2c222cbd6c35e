//! The immutable in-memory identity snapshot that admission and SCIM reads use: users, groups,
//! agents, direct memberships in both directions, and indexes by userName, email, group
//! displayName, agent name and agent `subject`
//! (folded by [`crate::model::name::fold`], ASCII case only), by externalId (exact: it is
//! `caseExact`) and by id.
//!
//! Built from persistent maps (`imbl`), so a copy is O(1) and applying one change costs
//! O(size of the change · log n): provisioning 100k users one by one stays linear. Published with
//! `arc-swap` by the writer; readers take one `Arc` and never lock. No I/O here.

use crate::model::ResourceType;
use crate::store::{Change, Delta, Loaded, Record, Seq, Tombstone};
use imbl::{HashMap, OrdMap};
use serde_json::Value;
use std::sync::Arc;

type Id = Arc<str>;

/// The ids behind one non-unique key (an email, an externalId, a member's groups). Usually one
/// or two, so a shared slice rebuilt on change beats a persistent set, whose smallest node costs
/// about a kilobyte: at 100k users that was most of the process's memory.
type Ids = Arc<[Id]>;

fn with_id(ids: Option<&Ids>, id: &Id) -> Ids {
    match ids {
        Some(ids) if ids.contains(id) => ids.clone(),
        Some(ids) => ids.iter().cloned().chain(std::iter::once(id.clone())).collect(),
        None => Arc::from([id.clone()]),
    }
}

fn add_id<K: Ord + std::hash::Hash + Clone>(map: &mut impl IdsMap<K>, key: K, id: &Id) {
    let next = with_id(map.get_ids(&key), id);
    map.put(key, next);
}

/// The two persistent map kinds, as far as the id-slice indexes need them.
trait IdsMap<K> {
    fn get_ids(&self, k: &K) -> Option<&Ids>;
    fn put(&mut self, k: K, v: Ids);
    fn del(&mut self, k: &K);
}

impl<K: Ord + Clone> IdsMap<K> for OrdMap<K, Ids> {
    fn get_ids(&self, k: &K) -> Option<&Ids> {
        self.get(k)
    }
    fn put(&mut self, k: K, v: Ids) {
        self.insert(k, v);
    }
    fn del(&mut self, k: &K) {
        self.remove(k);
    }
}

impl<K: std::hash::Hash + Eq + Clone> IdsMap<K> for HashMap<K, Ids> {
    fn get_ids(&self, k: &K) -> Option<&Ids> {
        self.get(k)
    }
    fn put(&mut self, k: K, v: Ids) {
        self.insert(k, v);
    }
    fn del(&mut self, k: &K) {
        self.remove(k);
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub record: Record,
    pub user_name: Arc<str>,
    pub active: bool,
    pub external_id: Option<Arc<str>>,
    /// Folded ([`crate::model::name::fold`]).
    pub emails: Vec<Arc<str>>,
    /// The enterprise extension's `manager.value`: the owner of an agent user.
    pub manager: Option<Id>,
    /// The [`Mark`] attributes the user has, folded: what the policy can mark agent users by.
    pub marks: Box<[(Mark, Arc<str>)]>,
}

/// The single-valued string attributes of a User a policy may mark agent users by
/// (`identity.agents.users.attribute`), read once when the user is stored so that telling an
/// agent user from a person costs a lookup, not a parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mark {
    UserType,
    Title,
    EmployeeNumber,
    CostCenter,
    Organization,
    Division,
    Department,
}

impl Mark {
    pub const ALL: [Mark; 7] = [
        Mark::UserType,
        Mark::Title,
        Mark::EmployeeNumber,
        Mark::CostCenter,
        Mark::Organization,
        Mark::Division,
        Mark::Department,
    ];

    /// The attribute as SCIM names it, and whether it lives in the enterprise extension.
    pub fn attribute(self) -> (&'static str, bool) {
        match self {
            Mark::UserType => ("userType", false),
            Mark::Title => ("title", false),
            Mark::EmployeeNumber => ("employeeNumber", true),
            Mark::CostCenter => ("costCenter", true),
            Mark::Organization => ("organization", true),
            Mark::Division => ("division", true),
            Mark::Department => ("department", true),
        }
    }

    /// A SCIM attribute path naming one (`userType`, `department`, or URN-qualified),
    /// ASCII-case-insensitively.
    pub fn from_path(path: &str) -> Option<Mark> {
        let (urn, name) = match path.rfind(':') {
            Some(i) => (Some(&path[..i]), &path[i + 1..]),
            None => (None, path),
        };
        Mark::ALL.into_iter().find(|m| {
            let (attr, enterprise) = m.attribute();
            let schema = if enterprise {
                crate::model::resource::ENTERPRISE_USER
            } else {
                "urn:ietf:params:scim:schemas:core:2.0:User"
            };
            attr.eq_ignore_ascii_case(name) && urn.is_none_or(|u| u.eq_ignore_ascii_case(schema))
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub record: Record,
    pub display_name: Arc<str>,
    pub external_id: Option<Arc<str>>,
    pub members: Vec<Id>,
}

/// An automation or AI agent (`/Agents`): it acts only within what one of its owners — Users, or
/// Groups whose active members count — may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub record: Record,
    pub name: Arc<str>,
    pub active: bool,
    pub agent_type: Option<Arc<str>>,
    /// What the agent signs in as (an OIDC `sub`, or `system:serviceaccount:<ns>:<name>`): case
    /// exact, as Kubernetes compares usernames.
    pub subject: Option<Arc<str>>,
    pub external_id: Option<Arc<str>>,
    /// Ids of the owning Users and Groups, as the IdP listed them.
    pub owners: Vec<Id>,
}

/// What a name resolves to, for admission: the three states matter separately.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<'a> {
    Active(&'a User),
    Inactive(&'a User),
    Deleted(&'a Tombstone),
    Unknown,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    users: OrdMap<Id, Arc<User>>,
    groups: OrdMap<Id, Arc<Group>>,
    agents: OrdMap<Id, Arc<Agent>>,
    // Point lookups on the hot path use hash maps: one hash and one key comparison instead of
    // a dozen string comparisons down a B-tree (a third of a filtered GET's time at 100k users).
    user_by_name: HashMap<Arc<str>, Id>,
    group_by_name: HashMap<Arc<str>, Id>,
    agent_by_name: HashMap<Arc<str>, Id>,
    agents_by_subject: OrdMap<Arc<str>, Ids>,
    users_by_email: OrdMap<Arc<str>, Ids>,
    /// userName, emails and externalId as the Argo Server writes them into each of its labels
    /// ([`argo_label`]), by the claim the label carries: its rewriting cannot be inverted, so the
    /// directory's values are rewritten instead.
    users_by_argo_label: OrdMap<(ArgoClaim, Arc<str>), Ids>,
    by_external_id: OrdMap<(ResourceType, Arc<str>), Ids>,
    /// member id (user or group) → groups that list it directly.
    member_of: HashMap<Id, Ids>,
    tombstones: OrdMap<Arc<str>, Arc<Tombstone>>,
    /// Deleted agents, by id.
    agent_tombstones: OrdMap<Id, Arc<Tombstone>>,
    /// Number of changes applied since start; grows with every published write.
    pub generation: u64,
    /// The store commit this snapshot reflects.
    pub seq: Seq,
    /// When this replica published it (`None` until published): what the access reconciler
    /// measures its lag from.
    pub published: Option<std::time::Instant>,
}

fn text(v: &Value, key: &str) -> Option<Arc<str>> {
    v.get(key).and_then(Value::as_str).map(Arc::from)
}

/// The `value`s of a multi-valued reference attribute (`members`, `owners`).
fn values(v: &Value, key: &str) -> Vec<Id> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("value")?.as_str())
                .map(Arc::from)
                .collect()
        })
        .unwrap_or_default()
}

/// A value as the Argo Server writes it into a label (argo-workflows `workflow/creator/creator.go`
/// `dnsFriendly`, emails with their first `@` as `.at.` before it): every character outside
/// `[-_.a-zA-Z0-9]` becomes `-`, past 63 characters the last 63 are kept, then non-alphanumerics
/// are trimmed from both ends.
pub fn argo_label(s: &str) -> String {
    let mapped: Vec<char> = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let kept: String = mapped[mapped.len().saturating_sub(63)..].iter().collect();
    kept.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

/// An email as Argo labels it: the first `@` as `.at.`, then [`argo_label`].
pub fn argo_email_label(email: &str) -> String {
    argo_label(&email.replacen('@', ".at.", 1))
}

/// The claim an Argo Server label carries (argo-workflows `workflow/creator/creator.go` `Label`):
/// `sub` in `…/creator` and `…/actor`, `email` in `…-email`, `preferred_username` in
/// `…-preferred-username`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ArgoClaim {
    Subject,
    Email,
    PreferredUsername,
}

impl User {
    /// The user's value of `mark`, folded.
    pub fn mark(&self, mark: Mark) -> Option<&str> {
        self.marks.iter().find(|(m, _)| *m == mark).map(|(_, v)| &**v)
    }

    /// Every label value the Argo Server could have written for this person, by claim: as
    /// subject their externalId or userName (the SCIM id is looked up directly), as email each
    /// email and a userName that is one, as preferred username their userName or an email.
    fn argo_labels(&self) -> Vec<(ArgoClaim, Arc<str>)> {
        let emails = || self.emails.iter().map(|e| e.as_ref());
        let name_as_email = self.user_name.contains('@').then_some(self.user_name.as_ref());
        let candidates = [(ArgoClaim::Subject, argo_label(&self.user_name))]
            .into_iter()
            .chain(self.external_id.iter().map(|x| (ArgoClaim::Subject, argo_label(x))))
            .chain(
                emails()
                    .chain(name_as_email)
                    .map(|e| (ArgoClaim::Email, argo_email_label(e))),
            )
            .chain(
                std::iter::once(self.user_name.as_ref())
                    .chain(emails())
                    .map(|n| (ArgoClaim::PreferredUsername, argo_label(n))),
            );
        let mut out: Vec<(ArgoClaim, Arc<str>)> = Vec::new();
        for (c, l) in candidates.filter(|(_, l)| !l.is_empty()) {
            if !out.iter().any(|(oc, o)| *oc == c && **o == *l) {
                out.push((c, Arc::from(l)));
            }
        }
        out
    }

    fn from_record(record: Record) -> User {
        let doc: Value = serde_json::from_str(&record.body).unwrap_or(Value::Null);
        let emails = doc
            .get("emails")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.get("value")?.as_str())
                    .map(|s| Arc::from(crate::model::name::fold(s)))
                    .collect()
            })
            .unwrap_or_default();
        let enterprise = doc.get(crate::model::resource::ENTERPRISE_USER);
        let manager = enterprise
            .and_then(|e| e.get("manager"))
            .and_then(|m| m.get("value"))
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(Arc::from);
        let marks = Mark::ALL
            .into_iter()
            .filter_map(|m| {
                let (attr, in_enterprise) = m.attribute();
                let scope = if in_enterprise { enterprise? } else { &doc };
                let v = scope.get(attr)?.as_str()?;
                Some((m, Arc::from(crate::model::name::fold(v))))
            })
            .collect();
        User {
            manager,
            marks,
            user_name: text(&doc, "userName").unwrap_or_else(|| record.unique_key.clone()),
            // A user without `active` is active: RFC 7643 leaves it to the provider, and IdPs send it.
            active: doc.get("active").and_then(Value::as_bool).unwrap_or(true),
            external_id: text(&doc, "externalId"),
            emails,
            record,
        }
    }
}

impl Group {
    fn from_record(record: Record) -> Group {
        let doc: Value = serde_json::from_str(&record.body).unwrap_or(Value::Null);
        let members = values(&doc, "members");
        Group {
            display_name: text(&doc, "displayName").unwrap_or_else(|| record.unique_key.clone()),
            external_id: text(&doc, "externalId"),
            members,
            record,
        }
    }
}

impl Agent {
    fn from_record(record: Record) -> Agent {
        let doc: Value = serde_json::from_str(&record.body).unwrap_or(Value::Null);
        let owners = values(&doc, "owners");
        Agent {
            name: text(&doc, "name").unwrap_or_else(|| record.unique_key.clone()),
            active: doc.get("active").and_then(Value::as_bool).unwrap_or(true),
            agent_type: text(&doc, "agentType"),
            subject: text(&doc, "subject").filter(|s| !s.is_empty()),
            external_id: text(&doc, "externalId"),
            owners,
            record,
        }
    }
}

impl Snapshot {
    pub fn from_loaded(loaded: Loaded) -> Snapshot {
        let mut s = Snapshot::default();
        for t in loaded.tombstones {
            s.tombstones.insert(t.unique_key.clone(), Arc::new(t));
        }
        for t in loaded.agent_tombstones {
            s.agent_tombstones.insert(t.id.clone(), Arc::new(t));
        }
        for record in loaded.records {
            s.put(record);
        }
        s.seq = loaded.seq;
        s
    }

    /// Bring this snapshot up to `delta.seq` with what other writers committed.
    pub fn apply_delta(&mut self, delta: &Delta) {
        // Deletions first: a user deleted and re-created under the same name comes back as a put.
        for (rt, id, tombstone) in &delta.deletes {
            let record = match rt {
                ResourceType::User => self.users.get(id).map(|u| u.record.clone()),
                ResourceType::Group => self.groups.get(id).map(|g| g.record.clone()),
                ResourceType::Agent => self.agents.get(id).map(|a| a.record.clone()),
            };
            if let Some(record) = record {
                self.delete(&record);
            }
            match (rt, tombstone) {
                (ResourceType::User, Some(t)) => {
                    self.tombstones.insert(t.unique_key.clone(), Arc::new(t.clone()));
                }
                (ResourceType::Agent, Some(t)) => {
                    self.agent_tombstones.insert(t.id.clone(), Arc::new(t.clone()));
                }
                _ => {}
            }
            self.generation += 1;
        }
        for record in &delta.puts {
            if self
                .record(record.rt, &record.id)
                .is_some_and(|r| r.version == record.version)
            {
                continue;
            }
            self.put(record.clone());
            self.generation += 1;
        }
        self.seq = delta.seq;
    }

    pub fn apply(&mut self, changes: &[Change]) {
        for c in changes {
            match c {
                Change::Put { record, .. } => self.put(record.clone()),
                Change::Delete { record } => self.delete(record),
            }
            self.generation += 1;
        }
    }

    fn put(&mut self, record: Record) {
        match record.rt {
            ResourceType::User => {
                let user = User::from_record(record);
                if let Some(old) = self.users.get(&user.record.id).cloned() {
                    self.unindex_user(&old);
                }
                self.tombstones.remove(&user.record.unique_key);
                self.user_by_name
                    .insert(user.record.unique_key.clone(), user.record.id.clone());
                for e in &user.emails {
                    add_id(&mut self.users_by_email, e.clone(), &user.record.id);
                }
                for l in user.argo_labels() {
                    add_id(&mut self.users_by_argo_label, l, &user.record.id);
                }
                if let Some(x) = &user.external_id {
                    add_id(
                        &mut self.by_external_id,
                        (ResourceType::User, x.clone()),
                        &user.record.id,
                    );
                }
                self.users.insert(user.record.id.clone(), Arc::new(user));
            }
            ResourceType::Group => {
                let group = Group::from_record(record);
                let old = self.groups.get(&group.record.id).cloned();
                if let Some(old) = &old {
                    self.unindex_group(old, &group.members);
                }
                let id = group.record.id.clone();
                self.group_by_name.insert(group.record.unique_key.clone(), id.clone());
                if let Some(x) = &group.external_id {
                    add_id(&mut self.by_external_id, (ResourceType::Group, x.clone()), &id);
                }
                let before: std::collections::HashSet<&Id> = old.iter().flat_map(|g| g.members.iter()).collect();
                for m in group.members.iter().filter(|m| !before.contains(m)) {
                    add_id(&mut self.member_of, m.clone(), &id);
                }
                self.groups.insert(id, Arc::new(group));
            }
            ResourceType::Agent => {
                let agent = Agent::from_record(record);
                if let Some(old) = self.agents.get(&agent.record.id).cloned() {
                    self.unindex_agent(&old);
                }
                let id = agent.record.id.clone();
                self.agent_by_name.insert(agent.record.unique_key.clone(), id.clone());
                if let Some(sub) = &agent.subject {
                    add_id(&mut self.agents_by_subject, sub.clone(), &id);
                }
                if let Some(x) = &agent.external_id {
                    add_id(&mut self.by_external_id, (ResourceType::Agent, x.clone()), &id);
                }
                self.agents.insert(id, Arc::new(agent));
            }
        }
    }

    fn delete(&mut self, record: &Record) {
        match record.rt {
            ResourceType::User => {
                if let Some(old) = self.users.remove(&record.id) {
                    self.unindex_user(&old);
                    self.tombstones.insert(
                        old.record.unique_key.clone(),
                        Arc::new(Tombstone {
                            id: old.record.id.clone(),
                            unique_key: old.record.unique_key.clone(),
                            deleted_at: crate::model::clock::now(),
                        }),
                    );
                }
            }
            ResourceType::Group => {
                if let Some(old) = self.groups.remove(&record.id) {
                    self.unindex_group(&old, &[]);
                }
            }
            ResourceType::Agent => {
                if let Some(old) = self.agents.remove(&record.id) {
                    self.unindex_agent(&old);
                    self.agent_tombstones.insert(
                        old.record.id.clone(),
                        Arc::new(Tombstone {
                            id: old.record.id.clone(),
                            unique_key: old.record.unique_key.clone(),
                            deleted_at: crate::model::clock::now(),
                        }),
                    );
                }
            }
        }
    }

    fn unindex_agent(&mut self, old: &Agent) {
        if self.agent_by_name.get(&old.record.unique_key) == Some(&old.record.id) {
            self.agent_by_name.remove(&old.record.unique_key);
        }
        if let Some(sub) = &old.subject {
            drop_from(&mut self.agents_by_subject, sub, &old.record.id);
        }
        if let Some(x) = &old.external_id {
            drop_from(
                &mut self.by_external_id,
                &(ResourceType::Agent, x.clone()),
                &old.record.id,
            );
        }
    }

    fn unindex_user(&mut self, old: &User) {
        if self.user_by_name.get(&old.record.unique_key) == Some(&old.record.id) {
            self.user_by_name.remove(&old.record.unique_key);
        }
        for e in &old.emails {
            drop_from(&mut self.users_by_email, e, &old.record.id);
        }
        for l in old.argo_labels() {
            drop_from(&mut self.users_by_argo_label, &l, &old.record.id);
        }
        if let Some(x) = &old.external_id {
            drop_from(
                &mut self.by_external_id,
                &(ResourceType::User, x.clone()),
                &old.record.id,
            );
        }
    }

    /// Remove a group's indexes, except member edges it keeps (`keep`).
    fn unindex_group(&mut self, old: &Group, keep: &[Id]) {
        if self.group_by_name.get(&old.record.unique_key) == Some(&old.record.id) {
            self.group_by_name.remove(&old.record.unique_key);
        }
        if let Some(x) = &old.external_id {
            drop_from(
                &mut self.by_external_id,
                &(ResourceType::Group, x.clone()),
                &old.record.id,
            );
        }
        let keep: std::collections::HashSet<&Id> = keep.iter().collect();
        for m in old.members.iter().filter(|m| !keep.contains(m)) {
            drop_from(&mut self.member_of, m, &old.record.id);
        }
    }

    // ------------------------------------------------------------ reads

    /// Every user, by id.
    pub fn users(&self) -> impl Iterator<Item = (&Id, &Arc<User>)> {
        self.users.iter()
    }

    /// Every deleted agent (`unique_key` holds its name).
    pub fn agent_tombstones(&self) -> impl Iterator<Item = &Arc<Tombstone>> {
        self.agent_tombstones.values()
    }

    /// Every deleted user whose userName no one has taken since.
    pub fn tombstones(&self) -> impl Iterator<Item = &Arc<Tombstone>> {
        self.tombstones.values()
    }

    pub fn user(&self, id: &str) -> Option<&Arc<User>> {
        self.users.get(id)
    }
    pub fn group(&self, id: &str) -> Option<&Arc<Group>> {
        self.groups.get(id)
    }
    pub fn record(&self, rt: ResourceType, id: &str) -> Option<&Record> {
        match rt {
            ResourceType::User => self.users.get(id).map(|u| &u.record),
            ResourceType::Group => self.groups.get(id).map(|g| &g.record),
            ResourceType::Agent => self.agents.get(id).map(|a| &a.record),
        }
    }
    pub fn agent(&self, id: &str) -> Option<&Arc<Agent>> {
        self.agents.get(id)
    }
    /// Every agent, by id.
    pub fn agents(&self) -> impl Iterator<Item = (&Id, &Arc<Agent>)> {
        self.agents.iter()
    }
    /// Agents whose `subject` is exactly `subject`.
    pub fn agents_by_subject(&self, subject: &str) -> Vec<Id> {
        self.agents_by_subject
            .get(subject)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
    pub fn user_count(&self) -> usize {
        self.users.len()
    }
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }
    pub fn count(&self, rt: ResourceType) -> usize {
        match rt {
            ResourceType::User => self.users.len(),
            ResourceType::Group => self.groups.len(),
            ResourceType::Agent => self.agents.len(),
        }
    }

    /// All records of a type in stable (id) order.
    pub fn records(&self, rt: ResourceType) -> Box<dyn Iterator<Item = &Record> + '_> {
        match rt {
            ResourceType::User => Box::new(self.users.values().map(|u| &u.record)),
            ResourceType::Group => Box::new(self.groups.values().map(|g| &g.record)),
            ResourceType::Agent => Box::new(self.agents.values().map(|a| &a.record)),
        }
    }

    /// Id owning a unique key (userName / displayName folded by [`crate::model::name::fold`]).
    pub fn by_unique_key(&self, rt: ResourceType, key: &str) -> Option<&Id> {
        match rt {
            ResourceType::User => self.user_by_name.get(key),
            ResourceType::Group => self.group_by_name.get(key),
            ResourceType::Agent => self.agent_by_name.get(key),
        }
    }

    pub fn by_external_id(&self, rt: ResourceType, external_id: &str) -> Vec<Id> {
        self.by_external_id
            .get(&(rt, Arc::from(external_id)))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn users_by_email(&self, email: &str) -> Vec<Id> {
        self.users_by_email
            .get(crate::model::name::fold(email).as_str())
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Users the Argo Server would write as `label` for `claim` (`User::argo_labels`).
    pub fn users_by_argo_label(&self, claim: ArgoClaim, label: &str) -> Vec<Id> {
        let mut ids: Vec<Id> = self
            .users_by_argo_label
            .get(&(claim, Arc::from(label)))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        // A SCIM id (what scimgate's own creator label holds) is label-safe as it is.
        if let Some(u) = self.users.get(label).filter(|_| claim == ArgoClaim::Subject) {
            if !ids.contains(&u.record.id) {
                ids.push(u.record.id.clone());
            }
        }
        ids
    }

    /// Groups listing `member` directly.
    pub fn direct_groups(&self, member: &str) -> Vec<Id> {
        let mut v: Vec<Id> = self
            .member_of
            .get(member)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Every group `member` is in, directly or through nested groups, each with whether the
    /// membership is direct. Cycles in group nesting are tolerated.
    pub fn groups_of(&self, member: &str) -> Vec<(Arc<Group>, bool)> {
        let mut out: Vec<(Arc<Group>, bool)> = Vec::new();
        let mut seen: std::collections::HashSet<Id> = std::collections::HashSet::new();
        let mut frontier: Vec<(Id, bool)> = self.direct_groups(member).into_iter().map(|g| (g, true)).collect();
        while let Some((gid, direct)) = frontier.pop() {
            if !seen.insert(gid.clone()) {
                continue;
            }
            if let Some(g) = self.groups.get(&gid) {
                out.push((g.clone(), direct));
                frontier.extend(self.direct_groups(&gid).into_iter().map(|p| (p, false)));
            }
        }
        out.sort_by(|a, b| a.0.display_name.cmp(&b.0.display_name));
        out
    }

    /// Resolve a person by userName, case-insensitively as [`crate::model::name::fold`] folds
    /// (ASCII only: a look-alike such as KELVIN SIGN for `k` is nobody's userName but its own),
    /// telling deleted and deactivated apart.
    pub fn lookup_user_name(&self, user_name: &str) -> Lookup<'_> {
        let key = crate::model::name::fold(user_name);
        if let Some(u) = self.user_by_name.get(key.as_str()).and_then(|id| self.users.get(id)) {
            return if u.active {
                Lookup::Active(u)
            } else {
                Lookup::Inactive(u)
            };
        }
        match self.tombstones.get(key.as_str()) {
            Some(t) => Lookup::Deleted(t),
            None => Lookup::Unknown,
        }
    }
}

fn drop_from<K: Ord + std::hash::Hash + Clone>(map: &mut impl IdsMap<K>, key: &K, id: &Id) {
    let Some(ids) = map.get_ids(key) else { return };
    if !ids.contains(id) {
        return;
    }
    let rest: Ids = ids.iter().filter(|x| *x != id).cloned().collect();
    if rest.is_empty() {
        map.del(key);
    } else {
        map.put(key.clone(), rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(rt: ResourceType, id: &str, key: &str, body: serde_json::Value) -> Record {
        Record {
            rt,
            id: id.into(),
            unique_key: key.into(),
            version: 1,
            body: body.to_string().into(),
        }
    }

    fn user(id: &str, name: &str, active: bool) -> Change {
        let r = rec(
            ResourceType::User,
            id,
            &crate::model::name::fold(name),
            serde_json::json!({"userName": name, "active": active, "emails": [{"value": format!("{name}@X.com")}]}),
        );
        Change::Put {
            record: r,
            previous: None,
        }
    }

    fn group(id: &str, name: &str, members: &[&str]) -> Change {
        let m: Vec<_> = members.iter().map(|m| serde_json::json!({"value": m})).collect();
        let r = rec(
            ResourceType::Group,
            id,
            &crate::model::name::fold(name),
            serde_json::json!({"displayName": name, "members": m}),
        );
        Change::Put {
            record: r,
            previous: Some(1),
        }
    }

    #[test]
    fn nested_groups_resolve_transitively_and_tolerate_cycles() {
        let mut s = Snapshot::default();
        s.apply(&[
            user("u1", "Alice", true),
            group("g1", "ml", &["u1"]),
            group("g2", "eng", &["g1"]),
            group("g3", "all", &["g2", "g3"]),
        ]);
        let names: Vec<(String, bool)> = s
            .groups_of("u1")
            .iter()
            .map(|(g, d)| (g.display_name.to_string(), *d))
            .collect();
        assert_eq!(
            names,
            vec![("all".into(), false), ("eng".into(), false), ("ml".into(), true)]
        );
        // Membership change touches only the changed edges.
        s.apply(&[group("g1", "ml", &[])]);
        assert!(s.groups_of("u1").is_empty());
        assert_eq!(s.direct_groups("g1"), vec![Arc::<str>::from("g2")]);
    }

    #[test]
    fn lookup_tells_active_inactive_deleted_unknown_apart() {
        let mut s = Snapshot::default();
        s.apply(&[user("u1", "Alice", true), user("u2", "Bob", false)]);
        assert!(matches!(s.lookup_user_name("ALICE"), Lookup::Active(u) if &*u.record.id == "u1"));
        assert!(matches!(s.lookup_user_name("bob"), Lookup::Inactive(_)));
        let del = Change::Delete {
            record: s.record(ResourceType::User, "u1").cloned().expect("u1"),
        };
        s.apply(&[del]);
        assert!(matches!(s.lookup_user_name("alice"), Lookup::Deleted(t) if &*t.id == "u1"));
        assert_eq!(s.lookup_user_name("carol"), Lookup::Unknown);
        assert!(s.users_by_email("alice@x.com").is_empty());
        assert_eq!(s.users_by_email("BOB@x.com"), vec![Arc::<str>::from("u2")]);
    }

    #[test]
    fn names_fold_ascii_case_only() {
        let mut s = Snapshot::default();
        s.apply(&[user("u1", "Kate", true)]);
        assert!(matches!(s.lookup_user_name("KATE"), Lookup::Active(u) if &*u.record.id == "u1"));
        // KELVIN SIGN lower-cases to `k` in Unicode: a look-alike, not kate.
        assert_eq!(s.lookup_user_name("\u{212A}ate"), Lookup::Unknown);
        assert_eq!(s.lookup_user_name("\u{212A}ATE"), Lookup::Unknown);
        assert_eq!(s.users_by_email("KATE@x.COM"), vec![Arc::<str>::from("u1")]);
        assert!(s.users_by_email("\u{212A}ate@x.com").is_empty());
        s.apply(&[user("u2", "\u{212A}ate", true)]);
        assert!(matches!(s.lookup_user_name("\u{212A}ATE"), Lookup::Active(u) if &*u.record.id == "u2"));
        assert!(matches!(s.lookup_user_name("kate"), Lookup::Active(u) if &*u.record.id == "u1"));
    }

    #[test]
    fn a_copy_is_independent_of_later_changes() {
        let mut s = Snapshot::default();
        s.apply(&[user("u1", "Alice", true)]);
        let before = s.clone();
        s.apply(&[user("u2", "Bob", true)]);
        assert_eq!((before.user_count(), s.user_count()), (1, 2));
    }
}
