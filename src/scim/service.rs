//! SCIM resource operations — get, list/search, create, replace, patch, delete — over the
//! directory snapshot (reads) and the writer (writes). Routes and Bulk both call these, so the
//! rules live in one place: uniqueness, ETags, member existence, cascades on delete.
//!
//! Member ids that don't exist: a write naming one is rejected with 400 `invalidValue`, so a
//! group never points at nobody; deleting a user or group removes it from every group in the
//! same transaction.

use super::error::{Error, Result};
use super::filter::Filter;
use super::patch;
use super::path::{resolve, RawPath, Resolved, Scope};
use super::quirks::Quirks;
use super::resource::{self, Projection};
use super::schema::{self, ResourceType, Type};
use crate::directory::Snapshot;
use crate::model::name::{fold, user_name_problem};
use crate::store::{Change, Record};
use crate::writer::Writer;
use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Largest page we return; advertised as `filter.maxResults`.
pub const MAX_RESULTS: usize = 1000;
/// Page size when the client names none.
pub const DEFAULT_COUNT: usize = 100;

#[derive(Clone)]
pub struct Service {
    pub writer: Writer<super::Error>,
    pub quirks: Quirks,
}

/// What a list or `.search` asks for (RFC 7644 §3.4.2, §3.4.3).
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub filter: Option<String>,
    pub sort_by: Option<String>,
    pub descending: bool,
    pub start_index: usize,
    pub count: Option<usize>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

pub fn etag(record: &Record) -> String {
    format!("W/\"{}\"", record.version)
}

/// If-Match: `*` or a list of entity tags, one of which must be current.
pub fn check_if_match(if_match: Option<&str>, record: &Record) -> Result<()> {
    let Some(h) = if_match else { return Ok(()) };
    let current = etag(record);
    let strong = current.trim_start_matches("W/");
    let ok = h
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == current || t.trim_start_matches("W/") == strong);
    if ok {
        Ok(())
    } else {
        Err(Error::status(
            StatusCode::PRECONDITION_FAILED,
            format!("version is {current}, not {h}"),
        ))
    }
}

fn parse_body(record: &Record) -> Map<String, Value> {
    match serde_json::from_str(&record.body) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The attributes of a stored resource, without `schemas`, `id`, `meta`.
fn attributes_of(record: &Record) -> (Map<String, Value>, String) {
    let mut doc = parse_body(record);
    let created = doc
        .get("meta")
        .and_then(|m| m.get("created"))
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(crate::model::clock::now);
    doc.remove("schemas");
    doc.remove("id");
    doc.remove("meta");
    (doc, created)
}

/// The attribute that names a resource uniquely.
fn unique_attr(rt: ResourceType) -> &'static str {
    match rt {
        ResourceType::User => "userName",
        ResourceType::Group => "displayName",
        ResourceType::Agent => "name",
    }
}

/// The uniqueness key: userName / displayName / an agent's name folded as every lookup folds it
/// ([`fold`]).
fn unique_key(rt: ResourceType, attrs: &Map<String, Value>) -> Arc<str> {
    Arc::from(fold(
        attrs.get(unique_attr(rt)).and_then(Value::as_str).unwrap_or_default(),
    ))
}

/// A User's userName must not carry surrounding whitespace or control characters (400
/// `invalidValue`). Checked only when the write sets it (`old` is the stored one): a userName
/// stored before this rule must not stop an identity provider from deactivating its owner.
/// An Agent's `name` (what identity rules match by pattern) follows the same rule.
fn check_user_name(rt: ResourceType, attrs: &Map<String, Value>, old: Option<&Map<String, Value>>) -> Result<()> {
    if rt == ResourceType::Group {
        return Ok(());
    }
    let field = unique_attr(rt);
    let name = attrs.get(field);
    if old.is_some_and(|o| o.get(field) == name) {
        return Ok(());
    }
    let problem = name.and_then(Value::as_str).and_then(user_name_problem);
    match (problem, rt) {
        (Some(problem), ResourceType::Agent) => Err(Error::invalid_value(format!(
            "agent {}",
            problem.replacen("userName", "name", 2)
        ))),
        (Some(problem), _) => Err(Error::invalid_value(problem)),
        (None, _) => Ok(()),
    }
}

/// The stored document for `attrs` as resource `id`, at `version`.
fn build(rt: ResourceType, id: &str, attrs: Map<String, Value>, created: &str, version: i64) -> Record {
    let mut doc = Map::new();
    doc.insert("schemas".into(), resource::schemas_of(rt, &attrs));
    doc.insert("id".into(), Value::String(id.to_string()));
    let key = unique_key(rt, &attrs);
    doc.extend(attrs);
    doc.insert(
        "meta".into(),
        json!({"resourceType": rt.name(), "created": created, "lastModified": crate::model::clock::now(), "version": format!("W/\"{version}\"")}),
    );
    Record {
        rt,
        id: Arc::from(id),
        unique_key: key,
        version,
        body: Arc::from(Value::Object(doc).to_string()),
    }
}

/// Uniqueness of userName / displayName, case-insensitively, against the snapshot. The store's
/// unique index is the final word; this gives the precise message.
fn check_unique(s: &Snapshot, rt: ResourceType, key: &str, own_id: Option<&str>) -> Result<()> {
    match s.by_unique_key(rt, key) {
        Some(other) if Some(&**other) != own_id => Err(Error::uniqueness(format!(
            "a{} {} with {} '{key}' already exists",
            if rt == ResourceType::Agent { "n" } else { "" },
            rt.name(),
            unique_attr(rt)
        ))),
        _ => Ok(()),
    }
}

/// Every member must exist; `type` is set from what it is.
fn check_members(s: &Snapshot, group_id: &str, attrs: &mut Map<String, Value>) -> Result<()> {
    let Some(Value::Array(members)) = attrs.get_mut("members") else {
        return Ok(());
    };
    for m in members.iter_mut() {
        let Some(obj) = m.as_object_mut() else { continue };
        let id = obj.get("value").and_then(Value::as_str).unwrap_or_default().to_string();
        if id.is_empty() {
            return Err(Error::invalid_value("every member needs a 'value' (the member's id)"));
        }
        if id == group_id {
            return Err(Error::invalid_value("a group cannot be a member of itself"));
        }
        let kind = if s.user(&id).is_some() {
            "User"
        } else if s.group(&id).is_some() {
            "Group"
        } else if s.agent(&id).is_some() {
            "Agent"
        } else {
            return Err(Error::invalid_value(format!(
                "member '{id}' is not a User, Group or Agent here"
            )));
        };
        obj.insert("type".into(), Value::String(kind.into()));
    }
    Ok(())
}

/// An Agent's references. Each owner must be a User or Group that exists (400 `invalidValue`
/// naming it), gets its `type` from what it is, and is listed once; `$ref` is computed when
/// rendering, never stored. `parent` must be another Agent, and not one below this one.
///
/// Only references the write adds are checked: an owner deleted since it was listed stays
/// listed (admission treats it as gone), and must not stop an IdP from deactivating the agent.
fn check_agent(
    s: &Snapshot,
    agent_id: &str,
    attrs: &mut Map<String, Value>,
    old: Option<&Map<String, Value>>,
) -> Result<()> {
    let listed = |attr: &str| -> std::collections::HashSet<String> {
        old.and_then(|o| o.get(attr))
            .map(|v| match v {
                Value::Array(items) => items
                    .iter()
                    .filter_map(|e| e.get("value")?.as_str())
                    .map(String::from)
                    .collect(),
                other => other
                    .get("value")
                    .and_then(Value::as_str)
                    .map(String::from)
                    .into_iter()
                    .collect(),
            })
            .unwrap_or_default()
    };
    let known_owners = listed("owners");
    if let Some(Value::Array(owners)) = attrs.get_mut("owners") {
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(owners.len());
        for mut owner in std::mem::take(owners) {
            let Some(obj) = owner.as_object_mut() else { continue };
            let id = obj.get("value").and_then(Value::as_str).unwrap_or_default().to_string();
            if id.is_empty() {
                return Err(Error::invalid_value(
                    "every owner needs a 'value' (the owning User's or Group's id)",
                ));
            }
            if !seen.insert(id.clone()) {
                continue;
            }
            obj.remove("$ref");
            let kind = if s.user(&id).is_some() {
                Some("User")
            } else if s.group(&id).is_some() {
                Some("Group")
            } else {
                None
            };
            match kind {
                Some(kind) => {
                    obj.insert("type".into(), Value::String(kind.into()));
                }
                None if known_owners.contains(&id) => {
                    // Gone since it was listed: keep what was stored about it.
                    let stored = old
                        .and_then(|o| o.get("owners"))
                        .and_then(Value::as_array)
                        .and_then(|a| a.iter().find(|e| e.get("value").and_then(Value::as_str) == Some(&id)))
                        .and_then(|e| e.get("type"))
                        .cloned();
                    match stored {
                        Some(t) => obj.insert("type".into(), t),
                        None => obj.remove("type"),
                    };
                }
                None => {
                    let what = if s.agent(&id).is_some() {
                        "an Agent; owners are Users or Groups"
                    } else {
                        "neither a User nor a Group here"
                    };
                    return Err(Error::invalid_value(format!("owner '{id}' is {what}")));
                }
            }
            out.push(owner);
        }
        *owners = out;
        if owners.is_empty() {
            attrs.remove("owners");
        }
    }
    let known_parent = listed("parent");
    if let Some(parent) = attrs.get_mut("parent") {
        let Some(obj) = parent.as_object_mut() else {
            return Err(Error::invalid_value("'parent' must be an object"));
        };
        obj.remove("$ref");
        let id = obj.get("value").and_then(Value::as_str).unwrap_or_default().to_string();
        if id.is_empty() {
            return Err(Error::invalid_value("'parent' needs a 'value' (the parent Agent's id)"));
        }
        if !known_parent.contains(&id) {
            if id == agent_id {
                return Err(Error::invalid_value("an agent cannot be its own parent"));
            }
            if s.agent(&id).is_none() {
                return Err(Error::invalid_value(format!("parent '{id}' is not an Agent here")));
            }
            // Walk up from the new parent: reaching this agent would make a cycle. At most one
            // step per agent, so linear however the stored parents point.
            let mut at = id.clone();
            for _ in 0..=s.count(ResourceType::Agent) {
                let Some(next) = s
                    .record(ResourceType::Agent, &at)
                    .map(parse_body)
                    .and_then(|d| d.get("parent")?.get("value")?.as_str().map(String::from))
                else {
                    break;
                };
                if next == agent_id {
                    return Err(Error::invalid_value(format!(
                        "parent '{id}' is below this agent; agent hierarchies cannot loop"
                    )));
                }
                at = next;
            }
        }
    }
    Ok(())
}

/// Remove `id` from every group listing it: the cascade of a delete.
fn drop_memberships(s: &Snapshot, id: &str, changes: &mut Vec<Change>) {
    for gid in s.direct_groups(id) {
        let Some(g) = s.group(&gid) else { continue };
        let (mut attrs, created) = attributes_of(&g.record);
        if let Some(Value::Array(members)) = attrs.get_mut("members") {
            members.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
            if members.is_empty() {
                attrs.remove("members");
            }
        }
        let record = build(ResourceType::Group, &gid, attrs, &created, g.record.version + 1);
        changes.push(Change::Put {
            record,
            previous: Some(g.record.version),
        });
    }
}

fn missing(rt: ResourceType, id: &str) -> Error {
    Error::not_found(format!("{} '{id}' not found", rt.name()))
}

fn put_record(changes: Vec<Change>, rt: ResourceType, id: &str) -> Result<Record> {
    changes
        .into_iter()
        .find_map(|c| match c {
            Change::Put { record, .. } if record.rt == rt && &*record.id == id => Some(record),
            _ => None,
        })
        .ok_or_else(|| Error::status(StatusCode::INTERNAL_SERVER_ERROR, "write produced no resource"))
}

impl Service {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.writer.snapshot()
    }

    /// The resource as of every write acknowledged before this call, on any replica.
    pub async fn get(&self, rt: ResourceType, id: &str) -> Result<Record> {
        self.writer
            .current()
            .await?
            .record(rt, id)
            .cloned()
            .ok_or_else(|| missing(rt, id))
    }

    pub async fn create(&self, rt: ResourceType, body: Value) -> Result<Record> {
        let attrs = resource::normalize(rt, body, &self.quirks)?;
        let id = uuid::Uuid::new_v4().to_string();
        let pid = id.clone();
        let plan = Box::new(move |s: &Snapshot| {
            let mut attrs = attrs.clone();
            check_user_name(rt, &attrs, None)?;
            check_unique(s, rt, &unique_key(rt, &attrs), None)?;
            match rt {
                ResourceType::Group => check_members(s, &pid, &mut attrs)?,
                ResourceType::Agent => check_agent(s, &pid, &mut attrs, None)?,
                ResourceType::User => {}
            }
            Ok(vec![Change::Put {
                record: build(rt, &pid, attrs, &crate::model::clock::now(), 1),
                previous: None,
            }])
        });
        put_record(self.writer.write(plan).await?, rt, &id)
    }

    pub async fn replace(&self, rt: ResourceType, id: &str, body: Value, if_match: Option<String>) -> Result<Record> {
        let new = resource::normalize(rt, body, &self.quirks)?;
        self.update(rt, id, if_match, move |old| {
            resource::check_immutable(rt, old, &new)?;
            Ok(new.clone())
        })
        .await
    }

    pub async fn patch(&self, rt: ResourceType, id: &str, body: Value, if_match: Option<String>) -> Result<Record> {
        let ops = patch::parse(body, &self.quirks)?;
        let quirks = self.quirks;
        self.update(rt, id, if_match, move |old| {
            let mut attrs = old.clone();
            patch::apply(rt, &mut attrs, &ops, &quirks)?;
            Ok(attrs)
        })
        .await
    }

    /// PUT and PATCH: `edit` turns the stored attributes into the new ones; the rules after it
    /// (uniqueness, members, versions, no-op detection) are the same for both.
    async fn update(
        &self,
        rt: ResourceType,
        id: &str,
        if_match: Option<String>,
        edit: impl Fn(&Map<String, Value>) -> Result<Map<String, Value>> + Send + Sync + 'static,
    ) -> Result<Record> {
        let pid = id.to_string();
        let plan = Box::new(move |s: &Snapshot| {
            let old = s.record(rt, &pid).ok_or_else(|| missing(rt, &pid))?;
            check_if_match(if_match.as_deref(), old)?;
            let (old_attrs, created) = attributes_of(old);
            let mut attrs = edit(&old_attrs)?;
            check_user_name(rt, &attrs, Some(&old_attrs))?;
            check_unique(s, rt, &unique_key(rt, &attrs), Some(&pid))?;
            match rt {
                ResourceType::Group => check_members(s, &pid, &mut attrs)?,
                ResourceType::Agent => check_agent(s, &pid, &mut attrs, Some(&old_attrs))?,
                ResourceType::User => {}
            }
            if attrs == old_attrs {
                return Ok(Vec::new());
            }
            Ok(vec![Change::Put {
                record: build(rt, &pid, attrs, &created, old.version + 1),
                previous: Some(old.version),
            }])
        });
        let changes = self.writer.write(plan).await?;
        if changes.is_empty() {
            return self.snapshot().record(rt, id).cloned().ok_or_else(|| missing(rt, id));
        }
        put_record(changes, rt, id)
    }

    pub async fn delete(&self, rt: ResourceType, id: &str, if_match: Option<String>) -> Result<()> {
        let pid = id.to_string();
        let plan = Box::new(move |s: &Snapshot| {
            let old = s.record(rt, &pid).ok_or_else(|| missing(rt, &pid))?;
            check_if_match(if_match.as_deref(), old)?;
            let mut changes = Vec::new();
            drop_memberships(s, &pid, &mut changes);
            changes.push(Change::Delete { record: old.clone() });
            Ok(changes)
        });
        self.writer.write(plan).await.map(|_| ())
    }

    /// A ListResponse for one resource type, or for all of them (`rt: None`, root-level `.search`).
    pub async fn list(&self, rt: Option<ResourceType>, q: &ListQuery, base: &str) -> Result<Value> {
        let s = self.writer.current().await?;
        let types: Vec<ResourceType> = match rt {
            Some(rt) => vec![rt],
            None => ResourceType::ALL.to_vec(),
        };
        let count = q.count.unwrap_or(DEFAULT_COUNT).min(MAX_RESULTS);
        let start = q.start_index.max(1);
        let mut total = 0usize;
        let mut page: Vec<Value> = Vec::new();
        let mut errors = Vec::new();
        for rt in types.iter().copied() {
            let projection = Projection::parse(rt, q.attributes.as_deref(), q.excluded_attributes.as_deref())?;
            let filter = match &q.filter {
                Some(f) => match Filter::compile_with(f, rt, &self.quirks) {
                    Ok(f) => Some(f),
                    Err(e) if types.len() > 1 => {
                        errors.push(e);
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                None => None,
            };
            let sort = match &q.sort_by {
                Some(name) => {
                    let raw = RawPath::parse(name).map_err(Error::invalid_value)?;
                    Some(resolve(Scope::Resource(rt), &raw, Error::invalid_value)?)
                }
                None => None,
            };
            let skip = start.saturating_sub(1).saturating_sub(total);
            let room = count.saturating_sub(page.len());
            if filter.is_none() && sort.is_none() {
                // Nothing to evaluate: count without parsing, render only the page.
                total += s.count(rt);
                for r in s.records(rt).skip(skip).take(room) {
                    page.push(Value::Object(render(&s, r, base, &projection)));
                }
                continue;
            }
            let mut hits: Vec<Hit> = Vec::new();
            let needs_groups = filter.as_ref().is_some_and(|f| f.mentions("groups"))
                || q.sort_by.as_deref().is_some_and(|n| n.eq_ignore_ascii_case("groups"));
            for r in candidates(&s, rt, filter.as_ref()) {
                let doc = if needs_groups {
                    with_computed(&s, r, base, true)
                } else {
                    parse_body(r)
                };
                if filter.as_ref().is_none_or(|f| f.matches(&doc)) {
                    hits.push((r, doc));
                }
            }
            if let Some(key) = sort {
                let mut keyed: Vec<_> = hits.into_iter().map(|h| (sort_key(&h.1, &key), h)).collect();
                keyed.sort_by(|a, b| match (&a.0, &b.0) {
                    (Some(x), Some(y)) => {
                        let o = x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal);
                        if q.descending {
                            o.reverse()
                        } else {
                            o
                        }
                    }
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                });
                hits = keyed.into_iter().map(|(_, h)| h).collect();
            }
            total += hits.len();
            for (r, _) in hits.into_iter().skip(skip).take(room) {
                page.push(Value::Object(render(&s, r, base, &projection)));
            }
        }
        if let (Some(e), true) = (errors.first(), errors.len() == types.len()) {
            return Err(e.clone());
        }
        Ok(json!({
            "schemas": [schema::LIST_RESPONSE],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": page.len(),
            "Resources": page,
        }))
    }
}

/// A matching record and its parsed document.
type Hit<'a> = (&'a Record, Map<String, Value>);

#[derive(Debug, PartialEq, PartialOrd)]
enum SortKey {
    Bool(bool),
    Num(f64),
    Text(String),
}

/// RFC 7644 §3.4.2.3: multi-valued attributes sort by their primary (else first) value.
fn sort_key(doc: &Map<String, Value>, key: &Resolved) -> Option<SortKey> {
    let container = match key.extension {
        Some(urn) => doc.get(urn)?.as_object()?,
        None => doc,
    };
    let mut v = container.get(key.attr.name)?;
    if let Value::Array(items) = v {
        v = items
            .iter()
            .find(|e| e.get("primary") == Some(&Value::Bool(true)))
            .or_else(|| items.first())?;
    }
    let leaf = match key.sub {
        Some(sub) => {
            v = v.get(sub.name)?;
            sub
        }
        None if key.attr.ty == Type::Complex => {
            v = v.get("value")?;
            key.attr.sub_attr("value")?
        }
        None => key.attr,
    };
    match v {
        Value::Bool(b) => Some(SortKey::Bool(*b)),
        Value::Number(n) => n.as_f64().map(SortKey::Num),
        Value::String(s) if leaf.case_exact => Some(SortKey::Text(s.clone())),
        Value::String(s) => Some(SortKey::Text(fold(s))),
        _ => None,
    }
}

/// The records a filter can possibly match: by index when it has an `eq` on an indexed
/// attribute, otherwise all of them.
fn candidates<'a>(s: &'a Snapshot, rt: ResourceType, filter: Option<&Filter>) -> Vec<&'a Record> {
    let hint = filter.and_then(Filter::index_hint);
    let ids: Option<Vec<Arc<str>>> = match (rt, hint.as_ref().map(|(a, v)| (a.as_str(), *v))) {
        (_, Some(("id", v))) => Some(vec![Arc::from(v)]),
        (ResourceType::User, Some(("userName", v)))
        | (ResourceType::Group, Some(("displayName", v)))
        | (ResourceType::Agent, Some(("name", v))) => {
            Some(s.by_unique_key(rt, &fold(v)).cloned().into_iter().collect())
        }
        (ResourceType::Agent, Some(("subject", v))) => Some(s.agents_by_subject(v)),
        (_, Some(("externalId", v))) => Some(s.by_external_id(rt, v)),
        (ResourceType::User, Some(("emails", v) | ("emails.value", v))) => Some(s.users_by_email(v)),
        (ResourceType::Group, Some(("members", v) | ("members.value", v))) => Some(s.direct_groups(v)),
        _ => None,
    };
    match ids {
        Some(mut ids) => {
            ids.sort();
            ids.iter().filter_map(|id| s.record(rt, id)).collect()
        }
        None => s.records(rt).collect(),
    }
}

/// The stored document plus what the server computes: `meta.location`, a user's or agent's
/// `groups`, the `$ref` of group members and of an agent's owners and parent.
/// `with_groups: false` skips computing `groups` (when the response excludes them).
fn with_computed(s: &Snapshot, r: &Record, base: &str, with_groups: bool) -> Map<String, Value> {
    let mut doc = parse_body(r);
    let location = format!("{base}/{}/{}", r.rt.endpoint(), r.id);
    if let Some(Value::Object(meta)) = doc.get_mut("meta") {
        meta.insert("location".into(), Value::String(location));
    }
    match r.rt {
        ResourceType::User | ResourceType::Agent => {
            if r.rt == ResourceType::Agent {
                // Owners may have been deleted since: their stored `type` still says where they were.
                if let Some(Value::Array(owners)) = doc.get_mut("owners") {
                    for o in owners.iter_mut().filter_map(Value::as_object_mut) {
                        let Some(id) = o.get("value").and_then(Value::as_str).map(String::from) else {
                            continue;
                        };
                        let group = s.group(&id).is_some()
                            || (s.user(&id).is_none() && o.get("type").and_then(Value::as_str) == Some("Group"));
                        let endpoint = if group { "Groups" } else { "Users" };
                        put_ref(o, format!("{base}/{endpoint}/{id}"));
                    }
                }
                if let Some(Value::Object(p)) = doc.get_mut("parent") {
                    if let Some(id) = p.get("value").and_then(Value::as_str).map(String::from) {
                        put_ref(p, format!("{base}/Agents/{id}"));
                    }
                }
            }
            let groups: Vec<Value> = if with_groups {
                s.groups_of(&r.id)
                    .into_iter()
                    .map(|(g, direct)| {
                        json!({"value": &*g.record.id, "$ref": format!("{base}/Groups/{}", g.record.id),
                               "display": &*g.display_name, "type": if direct { "direct" } else { "indirect" }})
                    })
                    .collect()
            } else {
                Vec::new()
            };
            if !groups.is_empty() {
                let meta = doc.remove("meta");
                doc.insert("groups".into(), Value::Array(groups));
                if let Some(meta) = meta {
                    doc.insert("meta".into(), meta);
                }
            }
        }
        ResourceType::Group => {
            if let Some(Value::Array(members)) = doc.get_mut("members") {
                for m in members.iter_mut().filter_map(Value::as_object_mut) {
                    let Some(id) = m.get("value").and_then(Value::as_str).map(String::from) else {
                        continue;
                    };
                    let endpoint = if s.group(&id).is_some() {
                        "Groups"
                    } else if s.agent(&id).is_some() {
                        "Agents"
                    } else {
                        "Users"
                    };
                    put_ref(m, format!("{base}/{endpoint}/{id}"));
                }
            }
        }
    }
    doc
}

/// `$ref` right after `value`, before `display` and `type`, as in RFC 7643's examples; one sent
/// by the client and stored is replaced.
fn put_ref(m: &mut Map<String, Value>, url: String) {
    let rest: Vec<(String, Value)> = std::mem::take(m).into_iter().filter(|(k, _)| k != "$ref").collect();
    let mut url = Some(url);
    for (k, v) in rest {
        let after = k == "value";
        m.insert(k, v);
        if after {
            if let Some(u) = url.take() {
                m.insert("$ref".into(), Value::String(u));
            }
        }
    }
}

/// A stored record as the client sees it.
pub fn render(s: &Snapshot, r: &Record, base: &str, projection: &Projection) -> Map<String, Value> {
    projection.apply(r.rt, with_computed(s, r, base, !projection.excludes("groups")))
}
