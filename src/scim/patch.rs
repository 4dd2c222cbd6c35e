//! The SCIM PATCH engine (RFC 7644 §3.5.2): `add`, `remove` and `replace`, with and without
//! `path`, value-filter paths (`members[value eq "…"]`), sub-attribute paths and extension URNs.
//!
//! Atomic by construction: operations apply to a copy of the stored attributes, and the caller
//! keeps the copy only if every operation succeeded. Errors carry the RFC's `scimType`s
//! (`noTarget`, `invalidPath`, `invalidValue`, `mutability`). IdP quirks come from [`Quirks`].

use super::error::{Error, Result};
use super::filter::{Filter, Op};
use super::path::{resolve, RawPath, Resolved, Scope};
use super::quirks::Quirks;
use super::resource::{check_required, normalize_value};
use super::schema::{self, Attribute, Mutability, ResourceType, Schema, Type};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub op: OpKind,
    pub path: Option<String>,
    pub value: Option<Value>,
}

/// Most operations one PATCH request may carry.
pub const MAX_OPERATIONS: usize = 1000;

/// Parse a PatchOp request body.
pub fn parse(body: Value, q: &Quirks) -> Result<Vec<Operation>> {
    let Value::Object(mut body) = body else {
        return Err(Error::invalid_syntax("a PATCH body must be a JSON object"));
    };
    if let Some(schemas) = body.get("schemas") {
        let ok = schemas
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(schema::PATCH_OP)));
        if !ok {
            return Err(Error::invalid_syntax(format!(
                "'schemas' must contain {}",
                schema::PATCH_OP
            )));
        }
    }
    let key = schema::find_key(&body, "Operations").cloned();
    let ops = match key.and_then(|k| body.remove(&k)) {
        Some(Value::Array(ops)) => ops,
        _ => return Err(Error::invalid_syntax("'Operations' must be an array")),
    };
    if ops.is_empty() {
        return Err(Error::invalid_syntax("'Operations' is empty"));
    }
    if ops.len() > MAX_OPERATIONS {
        return Err(Error::invalid_syntax(format!("more than {MAX_OPERATIONS} operations")));
    }
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.into_iter().enumerate() {
        let Value::Object(mut op) = op else {
            return Err(Error::invalid_syntax(format!("operation {i} is not an object")));
        };
        let take =
            |op: &mut Map<String, Value>, name: &str| schema::find_key(op, name).cloned().and_then(|k| op.remove(&k));
        let kind = match take(&mut op, "op") {
            Some(Value::String(s)) => match s.as_str() {
                "add" => OpKind::Add,
                "remove" => OpKind::Remove,
                "replace" => OpKind::Replace,
                other if q.case_insensitive_ops && other.eq_ignore_ascii_case("add") => OpKind::Add,
                other if q.case_insensitive_ops && other.eq_ignore_ascii_case("remove") => OpKind::Remove,
                other if q.case_insensitive_ops && other.eq_ignore_ascii_case("replace") => OpKind::Replace,
                other => return Err(Error::invalid_syntax(format!("operation {i}: unknown op '{other}'"))),
            },
            _ => return Err(Error::invalid_syntax(format!("operation {i}: 'op' is missing"))),
        };
        let path = match take(&mut op, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => return Err(Error::invalid_path(format!("operation {i}: 'path' must be a string"))),
        };
        let value = take(&mut op, "value");
        if kind != OpKind::Remove && value.is_none() {
            return Err(Error::invalid_value(
                format!("operation {i}: '{kind:?}' needs a 'value'").to_lowercase(),
            ));
        }
        out.push(Operation { op: kind, path, value });
    }
    Ok(out)
}

/// Where one operation points.
enum Target {
    /// A whole extension object (`path` is the extension's URN).
    Extension(&'static Schema),
    Attr {
        at: Resolved,
        filter: Option<Box<Filter>>,
        sub: Option<&'static Attribute>,
    },
}

fn parse_path(rt: ResourceType, path: &str, q: &Quirks) -> Result<Target> {
    let path = path.trim();
    if let Some(ext) = rt.extensions().iter().find(|s| s.id.eq_ignore_ascii_case(path)) {
        return Ok(Target::Extension(ext));
    }
    let (head, filter, tail) = match path.find('[') {
        None => (path, None, None),
        Some(open) => {
            let close = path
                .rfind(']')
                .ok_or_else(|| Error::invalid_path(format!("'{path}': missing ']'")))?;
            if close < open {
                return Err(Error::invalid_path(format!("'{path}': misplaced ']'")));
            }
            let tail = &path[close + 1..];
            let tail = match tail.strip_prefix('.') {
                Some(sub) => Some(sub),
                None if tail.is_empty() => None,
                None => return Err(Error::invalid_path(format!("'{path}': unexpected '{tail}' after ']'"))),
            };
            (&path[..open], Some(&path[open + 1..close]), tail)
        }
    };
    let raw = RawPath::parse(head).map_err(Error::invalid_path)?;
    let at = resolve(Scope::Resource(rt), &raw, Error::invalid_path)?;
    let Some(filter) = filter else {
        return Ok(Target::Attr {
            at,
            filter: None,
            sub: None,
        });
    };
    if at.sub.is_some() || at.attr.ty != Type::Complex {
        return Err(Error::invalid_path(format!(
            "'{path}': a value filter needs a complex attribute"
        )));
    }
    let mut f = Filter::parse_with(filter, q.single_quoted_strings)
        .map_err(|e| Error::invalid_path(format!("'{path}': {}", e.detail)))?;
    f.resolve(Scope::Complex(at.attr))
        .map_err(|e| Error::invalid_path(format!("'{path}': {}", e.detail)))?;
    let sub = match tail {
        None => None,
        Some(name) => Some(
            at.attr
                .sub_attr(name)
                .ok_or_else(|| Error::invalid_path(format!("'{}' has no sub-attribute '{name}'", at.attr.name)))?,
        ),
    };
    Ok(Target::Attr {
        at,
        filter: Some(Box::new(f)),
        sub,
    })
}

/// Apply `ops` to `attrs` (the stored attributes without `id`, `meta`, `schemas`).
/// On error `attrs` may be partly changed: callers apply to a copy.
pub fn apply(rt: ResourceType, attrs: &mut Map<String, Value>, ops: &[Operation], q: &Quirks) -> Result<()> {
    for op in ops {
        match (&op.path, op.op) {
            (None, OpKind::Remove) => return Err(Error::no_target("'remove' needs a 'path'")),
            (None, kind) => {
                let Some(Value::Object(fields)) = &op.value else {
                    return Err(Error::invalid_value(
                        "an operation without 'path' needs an object 'value'",
                    ));
                };
                for (key, value) in fields {
                    pathless(rt, attrs, kind, key, value.clone(), q)?;
                }
            }
            (Some(path), kind) => {
                let target = parse_path(rt, path, q)?;
                apply_one(attrs, kind, target, op.value.clone(), q)?;
            }
        }
    }
    tidy(attrs);
    check_required(rt, attrs)
}

/// One key of a path-less `add`/`replace` value.
fn pathless(
    rt: ResourceType,
    attrs: &mut Map<String, Value>,
    kind: OpKind,
    key: &str,
    value: Value,
    q: &Quirks,
) -> Result<()> {
    if ["id", "meta", "schemas"].iter().any(|k| k.eq_ignore_ascii_case(key)) {
        if q.ignore_read_only_in_patch {
            return Ok(());
        }
        return Err(Error::mutability(format!("'{key}' is read-only")));
    }
    if let Some(ext) = rt.extensions().iter().find(|s| s.id.eq_ignore_ascii_case(key)) {
        return apply_one(attrs, kind, Target::Extension(ext), Some(value), q);
    }
    let dotted = key.contains('.') || key.to_ascii_lowercase().starts_with("urn:");
    if dotted && !q.dotted_keys {
        return Err(Error::invalid_path(format!("'{key}' is a path; send it as 'path'")));
    }
    let target = parse_path(rt, key, q)?;
    apply_one(attrs, kind, target, Some(value), q)
}

fn container<'a>(attrs: &'a mut Map<String, Value>, at: &Resolved) -> Result<&'a mut Map<String, Value>> {
    match at.extension {
        None => Ok(attrs),
        Some(urn) => attrs
            .entry(urn.to_string())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| Error::invalid_value(format!("'{urn}' is not an object"))),
    }
}

fn check_writable(attr: &Attribute, existing: Option<&Value>, new: Option<&Value>) -> Result<()> {
    match attr.mutability {
        Mutability::ReadOnly => Err(Error::mutability(format!("'{}' is read-only", attr.name))),
        Mutability::Immutable if existing.is_some_and(|e| !e.is_null() && Some(e) != new) => {
            Err(Error::mutability(format!("'{}' is immutable", attr.name)))
        }
        _ => Ok(()),
    }
}

fn apply_one(
    attrs: &mut Map<String, Value>,
    kind: OpKind,
    target: Target,
    value: Option<Value>,
    q: &Quirks,
) -> Result<()> {
    match target {
        Target::Extension(ext) => {
            if kind == OpKind::Remove {
                attrs.remove(ext.id);
                return Ok(());
            }
            let Some(Value::Object(fields)) = value else {
                return Err(Error::invalid_value(format!("'{}' takes an object", ext.id)));
            };
            for (k, v) in fields {
                // A serialised extension object may carry its own `schemas`; it names nothing to change.
                if k.eq_ignore_ascii_case("schemas") {
                    continue;
                }
                let attr = ext
                    .attr(&k)
                    .ok_or_else(|| Error::invalid_path(format!("'{}' has no attribute '{k}'", ext.id)))?;
                let at = Resolved {
                    extension: Some(ext.id),
                    attr,
                    sub: None,
                };
                apply_one(
                    attrs,
                    kind,
                    Target::Attr {
                        at,
                        filter: None,
                        sub: None,
                    },
                    Some(v),
                    q,
                )?;
            }
            Ok(())
        }
        Target::Attr { at, filter: None, .. } => whole(attrs, kind, at, value, q),
        Target::Attr {
            at,
            filter: Some(f),
            sub,
        } => filtered(attrs, kind, at, &f, sub, value, q),
    }
}

/// Operations on `attr` or `attr.sub` with no value filter.
fn whole(attrs: &mut Map<String, Value>, kind: OpKind, at: Resolved, value: Option<Value>, q: &Quirks) -> Result<()> {
    let attr = at.attr;
    let c = container(attrs, &at)?;
    if let Some(sub) = at.sub {
        return sub_everywhere(c, kind, attr, sub, value, q);
    }
    if attr.mutability == Mutability::WriteOnly {
        // Accepted (Okta sets passwords) and checked, never stored.
        if let Some(v) = value {
            normalize_value(attr, v, q)?;
        }
        return Ok(());
    }
    match kind {
        OpKind::Remove => {
            check_writable(attr, None, None)?;
            if let (true, Some(v), true) = (
                attr.multi && attr.ty == Type::Complex,
                &value,
                q.members_remove_by_value,
            ) {
                // Entra's legacy form: remove only the listed values, never clear the attribute.
                let gone = normalize_value(attr, v.clone(), q)?;
                let ids: Vec<&Value> = gone
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.get("value"))
                    .collect();
                if let Some(Value::Array(items)) = c.get_mut(attr.name) {
                    items.retain(|e| !e.get("value").is_some_and(|v| ids.contains(&v)));
                }
                return Ok(());
            }
            c.remove(attr.name);
            Ok(())
        }
        OpKind::Add | OpKind::Replace => {
            let v = normalize_value(attr, value.unwrap_or(Value::Null), q)?;
            check_writable(attr, c.get(attr.name), Some(&v))?;
            match (attr.multi, attr.ty, kind) {
                (true, _, OpKind::Add) => {
                    let slot = c
                        .entry(attr.name.to_string())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if !slot.is_array() {
                        *slot = Value::Array(Vec::new());
                    }
                    if let (Value::Array(items), Value::Array(new)) = (slot, v) {
                        for item in new {
                            let dup = items.iter().any(|e| same_element(attr, e, &item));
                            if !dup {
                                items.push(item);
                            }
                        }
                        one_primary(items);
                    }
                }
                (false, Type::Complex, _) => {
                    // RFC 7644 §3.5.2.1/3: sub-attributes not named are left as they are.
                    let slot = c
                        .entry(attr.name.to_string())
                        .or_insert_with(|| Value::Object(Map::new()));
                    match (slot, v) {
                        (Value::Object(old), Value::Object(new)) => old.extend(new),
                        (slot, v) => *slot = v,
                    }
                }
                (_, _, _) => {
                    if let Value::Array(items) = &mut v.clone() {
                        one_primary(items);
                        c.insert(attr.name.to_string(), Value::Array(items.clone()));
                    } else {
                        c.insert(attr.name.to_string(), v);
                    }
                }
            }
            Ok(())
        }
    }
}

/// `name.givenName` (singular complex) or `emails.type` (every element of a multi-valued one).
fn sub_everywhere(
    c: &mut Map<String, Value>,
    kind: OpKind,
    attr: &Attribute,
    sub: &Attribute,
    value: Option<Value>,
    q: &Quirks,
) -> Result<()> {
    check_writable(attr, None, None)?;
    let v = match kind {
        OpKind::Remove => None,
        _ => Some(normalize_value(sub, value.unwrap_or(Value::Null), q)?),
    };
    if attr.multi {
        let Some(Value::Array(items)) = c.get_mut(attr.name) else {
            return match kind {
                OpKind::Remove => Ok(()),
                _ => Err(Error::no_target(format!(
                    "'{}' has no values to set '{}' on; use a value filter",
                    attr.name, sub.name
                ))),
            };
        };
        for e in items.iter_mut().filter_map(Value::as_object_mut) {
            set_sub(e, sub, v.clone())?;
        }
        return Ok(());
    }
    let slot = c
        .entry(attr.name.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    match slot {
        Value::Object(o) => set_sub(o, sub, v),
        _ => Err(Error::invalid_path(format!("'{}' is not an object", attr.name))),
    }
}

fn set_sub(element: &mut Map<String, Value>, sub: &Attribute, v: Option<Value>) -> Result<()> {
    check_writable(sub, element.get(sub.name), v.as_ref())?;
    match v {
        None | Some(Value::Null) => {
            element.remove(sub.name);
        }
        Some(v) => {
            element.insert(sub.name.to_string(), v);
        }
    }
    Ok(())
}

/// Operations on `attr[filter]` or `attr[filter].sub`.
fn filtered(
    attrs: &mut Map<String, Value>,
    kind: OpKind,
    at: Resolved,
    f: &Filter,
    sub: Option<&'static Attribute>,
    value: Option<Value>,
    q: &Quirks,
) -> Result<()> {
    let attr = at.attr;
    check_writable(attr, None, None)?;
    let c = container(attrs, &at)?;
    let new_value = match (kind, sub) {
        (OpKind::Remove, _) => None,
        (_, Some(sub)) => Some(normalize_value(sub, value.unwrap_or(Value::Null), q)?),
        (_, None) if attr.multi => {
            let v = normalize_value(attr, value.unwrap_or(Value::Null), q)?;
            match v {
                Value::Array(mut items) if items.len() == 1 => items.pop(),
                _ => {
                    return Err(Error::invalid_value(format!(
                        "a filtered '{}' takes one value",
                        attr.name
                    )))
                }
            }
        }
        (_, None) => Some(normalize_value(attr, value.unwrap_or(Value::Null), q)?),
    };
    let matching = |e: &Value| e.as_object().is_some_and(|o| f.matches(o));
    let hits = match c.get(attr.name) {
        Some(Value::Array(items)) => items.iter().filter(|e| matching(e)).count(),
        Some(e @ Value::Object(_)) => usize::from(matching(e)),
        _ => 0,
    };
    if hits == 0 {
        if kind != OpKind::Remove && q.create_filtered_element && attr.multi {
            if let Some(mut element) = element_from_filter(f) {
                match (sub, new_value) {
                    (Some(sub), Some(v)) => {
                        element.insert(sub.name.to_string(), v);
                    }
                    (None, Some(Value::Object(v))) => element.extend(v),
                    _ => {}
                }
                let slot = c
                    .entry(attr.name.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(items) = slot {
                    items.push(Value::Object(element));
                }
                return Ok(());
            }
        }
        return Err(Error::no_target(format!(
            "no value of '{}' matches the filter",
            attr.name
        )));
    }
    let edit = |e: &mut Value| -> Result<bool> {
        // Returns whether to keep the element.
        if !matching(e) {
            return Ok(true);
        }
        match (kind, sub, e) {
            (OpKind::Remove, None, _) => Ok(false),
            (_, Some(sub), Value::Object(o)) => {
                set_sub(o, sub, new_value.clone())?;
                Ok(true)
            }
            (OpKind::Replace, None, e) => {
                *e = new_value.clone().unwrap_or(Value::Null);
                Ok(true)
            }
            (OpKind::Add, None, Value::Object(o)) => {
                if let Some(Value::Object(v)) = &new_value {
                    o.extend(v.clone());
                }
                Ok(true)
            }
            _ => Ok(true),
        }
    };
    match c.get_mut(attr.name) {
        Some(Value::Array(items)) => {
            let mut kept = Vec::with_capacity(items.len());
            for mut e in std::mem::take(items) {
                if edit(&mut e)? {
                    kept.push(e);
                }
            }
            one_primary(&mut kept);
            *items = kept;
        }
        Some(e) => {
            let keep = edit(e)?;
            if !keep {
                c.remove(attr.name);
            }
        }
        None => {}
    }
    Ok(())
}

/// `type eq "work" and …`: the element those equalities describe, for Entra's "replace a work
/// email that isn't there yet".
fn element_from_filter(f: &Filter) -> Option<Map<String, Value>> {
    match f {
        Filter::Compare(p, Op::Eq, v) if !v.is_null() => {
            let name = p.resolved?.attr.name;
            let mut m = Map::new();
            m.insert(name.to_string(), v.clone());
            Some(m)
        }
        Filter::And(a, b) => {
            let mut m = element_from_filter(a)?;
            m.extend(element_from_filter(b)?);
            Some(m)
        }
        _ => None,
    }
}

/// Two values of a multi-valued attribute are the same value: for references (`members`) the id
/// decides, otherwise the whole value.
fn same_element(attr: &Attribute, a: &Value, b: &Value) -> bool {
    if attr
        .sub_attr("value")
        .is_some_and(|v| v.mutability == Mutability::Immutable)
    {
        return a.get("value").is_some() && a.get("value") == b.get("value");
    }
    a == b
}

/// RFC 7643 §2.4: at most one `primary: true`; the last one set wins.
fn one_primary(items: &mut [Value]) {
    let last = items.iter().rposition(|e| e.get("primary") == Some(&Value::Bool(true)));
    if let Some(last) = last {
        for (i, e) in items.iter_mut().enumerate() {
            if i != last {
                if let Some(o) = e.as_object_mut() {
                    if o.get("primary") == Some(&Value::Bool(true)) {
                        o.remove("primary");
                    }
                }
            }
        }
    }
}

/// Drop attributes left empty: `[]`, `{}`, `null` mean unassigned.
fn tidy(attrs: &mut Map<String, Value>) {
    attrs.retain(|_, v| match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => {
            o.retain(|_, v| !v.is_null() && !v.as_array().is_some_and(Vec::is_empty));
            !o.is_empty()
        }
        _ => true,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::error::ScimType;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn user() -> Map<String, Value> {
        obj(
            json!({"externalId": "e1", "userName": "alice@contoso.com", "name": {"familyName": "Liddell", "givenName": "Alice"},
            "active": true, "emails": [{"value": "alice@contoso.com", "type": "work", "primary": true}]}),
        )
    }

    fn group() -> Map<String, Value> {
        obj(
            json!({"displayName": "ml-engineers", "members": [{"value": "u1", "type": "User"}, {"value": "u2", "type": "User"}]}),
        )
    }

    fn run(rt: ResourceType, start: Map<String, Value>, body: Value, q: &Quirks) -> Result<Value> {
        let ops = parse(body, q)?;
        let mut attrs = start;
        apply(rt, &mut attrs, &ops, q)?;
        Ok(Value::Object(attrs))
    }

    fn patch(ops: Value) -> Value {
        json!({"schemas": [schema::PATCH_OP], "Operations": ops})
    }

    /// (name, resource type, start, operations, expected attributes).
    type Case = (&'static str, ResourceType, Map<String, Value>, Value, Value);

    fn cases() -> Vec<Case> {
        let u = user();
        let g = group();
        vec![
            (
                "entra: capitalised ops, filter path, string boolean",
                ResourceType::User,
                u.clone(),
                json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "alice@fabrikam.com"},
                {"op": "Replace", "path": "name.familyName", "value": "Liddell-Hart"},
                {"op": "Replace", "path": "active", "value": "False"}]),
                json!({"externalId": "e1", "userName": "alice@contoso.com", "name": {"familyName": "Liddell-Hart", "givenName": "Alice"},
                "active": false, "emails": [{"value": "alice@fabrikam.com", "type": "work", "primary": true}]}),
            ),
            (
                "entra: path-less replace with dotted keys and extension URN",
                ResourceType::User,
                u.clone(),
                json!([
                {"op": "replace", "value": {"name.givenName": "Al", "active": false,
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "701"}}]),
                json!({"externalId": "e1", "userName": "alice@contoso.com", "name": {"familyName": "Liddell", "givenName": "Al"},
                "active": false, "emails": [{"value": "alice@contoso.com", "type": "work", "primary": true}],
                schema::ENTERPRISE_USER: {"employeeNumber": "701"}}),
            ),
            (
                "okta: path-less deactivate",
                ResourceType::User,
                u.clone(),
                json!([{"op": "replace", "value": {"active": false}}]),
                json!({"externalId": "e1", "userName": "alice@contoso.com", "name": {"familyName": "Liddell", "givenName": "Alice"},
                "active": false, "emails": [{"value": "alice@contoso.com", "type": "work", "primary": true}]}),
            ),
            (
                "entra: replace missing work email creates it",
                ResourceType::User,
                obj(json!({"userName": "b"})),
                json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "b@x.com"}]),
                json!({"userName": "b", "emails": [{"type": "work", "value": "b@x.com"}]}),
            ),
            (
                "rfc: add to multi-valued appends",
                ResourceType::User,
                u.clone(),
                json!([{"op": "add", "path": "emails", "value": [{"value": "a@home.org", "type": "home", "primary": true}]}]),
                json!({"externalId": "e1", "userName": "alice@contoso.com", "name": {"familyName": "Liddell", "givenName": "Alice"},
                "active": true, "emails": [{"value": "alice@contoso.com", "type": "work"}, {"value": "a@home.org", "type": "home", "primary": true}]}),
            ),
            (
                "rfc: remove sub-attribute",
                ResourceType::User,
                u.clone(),
                json!([{"op": "remove", "path": "name.givenName"}]),
                json!({"externalId": "e1", "userName": "alice@contoso.com", "name": {"familyName": "Liddell"},
                "active": true, "emails": [{"value": "alice@contoso.com", "type": "work", "primary": true}]}),
            ),
            (
                "rfc: remove by filter leaves attribute unassigned",
                ResourceType::User,
                u.clone(),
                json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]),
                json!({"externalId": "e1", "userName": "alice@contoso.com", "name": {"familyName": "Liddell", "givenName": "Alice"}, "active": true}),
            ),
            (
                "rfc: replace complex merges sub-attributes",
                ResourceType::User,
                u.clone(),
                json!([{"op": "replace", "path": "name", "value": {"middleName": "P"}}]),
                json!({"externalId": "e1", "userName": "alice@contoso.com", "name": {"familyName": "Liddell", "givenName": "Alice", "middleName": "P"},
                "active": true, "emails": [{"value": "alice@contoso.com", "type": "work", "primary": true}]}),
            ),
            (
                "entra: add members",
                ResourceType::Group,
                g.clone(),
                json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": "u3"}]}]),
                json!({"displayName": "ml-engineers", "members": [{"value": "u1", "type": "User"}, {"value": "u2", "type": "User"}, {"value": "u3"}]}),
            ),
            (
                "adding an existing member changes nothing",
                ResourceType::Group,
                g.clone(),
                json!([{"op": "add", "path": "members", "value": [{"value": "u1"}]}]),
                json!({"displayName": "ml-engineers", "members": [{"value": "u1", "type": "User"}, {"value": "u2", "type": "User"}]}),
            ),
            (
                "entra legacy: remove listed members only",
                ResourceType::Group,
                g.clone(),
                json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "u1"}]}]),
                json!({"displayName": "ml-engineers", "members": [{"value": "u2", "type": "User"}]}),
            ),
            (
                "entra with flag: remove by filter",
                ResourceType::Group,
                g.clone(),
                json!([{"op": "remove", "path": "members[value eq \"u2\"]"}]),
                json!({"displayName": "ml-engineers", "members": [{"value": "u1", "type": "User"}]}),
            ),
            (
                "okta: rename carrying id, remove by filter, add",
                ResourceType::Group,
                g.clone(),
                json!([
                {"op": "replace", "value": {"id": "g1", "displayName": "ml-eng"}},
                {"op": "remove", "path": "members[value eq \"u1\"]"},
                {"op": "add", "path": "members", "value": [{"value": "u9", "display": "bob@example.com"}]}]),
                json!({"displayName": "ml-eng", "members": [{"value": "u2", "type": "User"}, {"value": "u9", "display": "bob@example.com"}]}),
            ),
            (
                "replace members replaces all",
                ResourceType::Group,
                g.clone(),
                json!([{"op": "replace", "path": "members", "value": [{"value": "u7"}]}]),
                json!({"displayName": "ml-engineers", "members": [{"value": "u7"}]}),
            ),
            (
                "remove members clears the group",
                ResourceType::Group,
                g.clone(),
                json!([{"op": "remove", "path": "members"}]),
                json!({"displayName": "ml-engineers"}),
            ),
            (
                "urn-qualified core path",
                ResourceType::User,
                obj(json!({"userName": "a"})),
                json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:core:2.0:User:displayName", "value": "A"}]),
                json!({"userName": "a", "displayName": "A"}),
            ),
            (
                "whole extension by URN",
                ResourceType::User,
                obj(json!({"userName": "a"})),
                json!([{"op": "add", "path": schema::ENTERPRISE_USER, "value": {"department": "R&D", "manager": {"value": "m1"}}}]),
                json!({"userName": "a", schema::ENTERPRISE_USER: {"department": "R&D", "manager": {"value": "m1"}}}),
            ),
            (
                "externalId replace",
                ResourceType::User,
                obj(json!({"userName": "a"})),
                json!([{"op": "replace", "path": "externalId", "value": "x"}]),
                json!({"userName": "a", "externalId": "x"}),
            ),
            (
                "password accepted, not stored",
                ResourceType::User,
                obj(json!({"userName": "a"})),
                json!([{"op": "replace", "path": "password", "value": "pw"}]),
                json!({"userName": "a"}),
            ),
        ]
    }

    #[test]
    fn table() {
        for (name, rt, start, ops, want) in cases() {
            let got = run(rt, start, patch(ops), &Quirks::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn errors_carry_scim_types() {
        let q = Quirks::default();
        let cases: Vec<(&str, ResourceType, Value, ScimType)> = vec![
            (
                "remove without path",
                ResourceType::User,
                json!([{"op": "remove"}]),
                ScimType::NoTarget,
            ),
            (
                "filter matches nothing",
                ResourceType::Group,
                json!([{"op": "remove", "path": "members[value eq \"nobody\"]"}]),
                ScimType::NoTarget,
            ),
            (
                "unknown attribute",
                ResourceType::User,
                json!([{"op": "replace", "path": "shoeSize", "value": 9}]),
                ScimType::InvalidPath,
            ),
            (
                "bad filter in path",
                ResourceType::User,
                json!([{"op": "replace", "path": "emails[type eq]", "value": "x"}]),
                ScimType::InvalidPath,
            ),
            (
                "wrong type",
                ResourceType::User,
                json!([{"op": "replace", "path": "active", "value": "maybe"}]),
                ScimType::InvalidValue,
            ),
            (
                "read-only path",
                ResourceType::User,
                json!([{"op": "replace", "path": "id", "value": "x"}]),
                ScimType::Mutability,
            ),
            (
                "read-only groups",
                ResourceType::User,
                json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}]),
                ScimType::Mutability,
            ),
            (
                "immutable member id",
                ResourceType::Group,
                json!([{"op": "replace", "path": "members[value eq \"u1\"].value", "value": "u5"}]),
                ScimType::Mutability,
            ),
            (
                "removing a required attribute",
                ResourceType::User,
                json!([{"op": "remove", "path": "userName"}]),
                ScimType::InvalidValue,
            ),
        ];
        for (name, rt, ops, want) in cases {
            let start = if rt == ResourceType::User { user() } else { group() };
            let err = run(rt, start, patch(ops), &q).err();
            assert_eq!(err.and_then(|e| e.scim_type), Some(want), "{name}");
        }
    }

    #[test]
    fn quirks_off_means_rfc_only() {
        let strict = Quirks::strict();
        let body = patch(json!([{"op": "Replace", "path": "active", "value": false}]));
        assert!(parse(body, &strict).is_err());
        let body = patch(json!([{"op": "replace", "value": {"id": "x", "displayName": "y"}}]));
        assert_eq!(
            run(ResourceType::Group, group(), body, &strict)
                .err()
                .and_then(|e| e.scim_type),
            Some(ScimType::Mutability)
        );
        let body = patch(json!([{"op": "remove", "path": "members", "value": [{"value": "u1"}]}]));
        assert_eq!(
            run(ResourceType::Group, group(), body, &strict).ok(),
            Some(json!({"displayName": "ml-engineers"}))
        );
    }
}
