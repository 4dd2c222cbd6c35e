//! The shape of one SCIM resource: turning a client's body into our canonical stored form
//! (names as the schema spells them, types checked, read-only parts dropped) and rendering a
//! stored resource back out with `meta.location` and `attributes`/`excludedAttributes` applied.
//!
//! Stored form: a JSON object with `schemas`, `id`, optional `externalId`, core attributes in
//! schema order, extension objects keyed by URN, and `meta` without `location` (which depends on
//! the URL the client used).

use super::error::{Error, Result};
use super::path::{resolve, RawPath, Resolved, Scope};
use super::quirks::Quirks;
use super::schema::{self, Attribute, Mutability, ResourceType, Returned, Type};
use serde_json::{Map, Value};

/// Check and canonicalise one attribute value against its definition.
pub fn normalize_value(attr: &Attribute, value: Value, q: &Quirks) -> Result<Value> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    if attr.multi {
        let items = match value {
            Value::Array(items) => items,
            single => vec![single],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let v = normalize_single(attr, item, q)?;
            if !v.is_null() && !out.contains(&v) {
                out.push(v);
            }
        }
        return Ok(Value::Array(out));
    }
    normalize_single(attr, value, q)
}

fn normalize_single(attr: &Attribute, value: Value, q: &Quirks) -> Result<Value> {
    let wrong = |want: &str| Error::invalid_value(format!("'{}' must be {want}", attr.name));
    match attr.ty {
        Type::Complex => {
            let Value::Object(obj) = value else {
                return Err(wrong("an object"));
            };
            let mut out = Map::new();
            for (k, v) in obj {
                let Some(sub) = attr.sub_attr(&k) else { continue };
                if sub.mutability == Mutability::ReadOnly || v.is_null() {
                    continue;
                }
                let v = normalize_single(sub, v, q)?;
                out.insert(sub.name.to_string(), v);
            }
            // Keep sub-attributes in schema order so stored documents compare byte for byte.
            let mut ordered = Map::new();
            for sub in &attr.sub {
                if let Some(v) = out.remove(sub.name) {
                    ordered.insert(sub.name.to_string(), v);
                }
            }
            Ok(Value::Object(ordered))
        }
        Type::Boolean => match value {
            Value::Bool(_) => Ok(value),
            Value::String(s) if q.string_booleans && s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(s) if q.string_booleans && s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => Err(wrong("a boolean")),
        },
        Type::Integer => match &value {
            Value::Number(n) if n.is_i64() => Ok(value),
            _ => Err(wrong("an integer")),
        },
        Type::Decimal => match &value {
            Value::Number(_) => Ok(value),
            _ => Err(wrong("a number")),
        },
        Type::DateTime => match &value {
            Value::String(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => Ok(value),
            _ => Err(wrong("an RFC 3339 date-time")),
        },
        Type::Binary => match &value {
            Value::String(s) if base64_ok(s) => Ok(value),
            _ => Err(wrong("base64-encoded binary")),
        },
        Type::String | Type::Reference => match value {
            Value::String(_) => Ok(value),
            _ => Err(wrong("a string")),
        },
    }
}

fn base64_ok(s: &str) -> bool {
    use base64::Engine;
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .is_ok()
        || base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(compact.as_bytes())
            .is_ok()
}

/// An Agent body in either draft's words, turned into the one form we store and return
/// (draft-abbey-scim-agent-extension-00 §5.1.4): draft-wzdk-scim-agent-resource-00's
/// `agentUserName` becomes `name` (both present and different: 400 `invalidValue`), and abbey-00
/// §6.1's misspelt `protocols[].specifiationUrl` becomes §5.1.4's `specificationUrl`.
pub fn agent_aliases(body: &mut Map<String, Value>) -> Result<()> {
    if let Some(key) = schema::find_key(body, schema::AGENT_USER_NAME).cloned() {
        let alias = body.remove(&key).unwrap_or(Value::Null);
        match schema::find_key(body, "name").and_then(|k| body.get(k)) {
            Some(name) if !alias.is_null() && !name.is_null() && *name != alias => {
                return Err(Error::invalid_value(format!(
                    "'name' and '{}' name the same attribute and differ; send one",
                    schema::AGENT_USER_NAME
                )));
            }
            Some(name) if !name.is_null() => {}
            _ => {
                if let Some(k) = schema::find_key(body, "name").cloned() {
                    body.remove(&k);
                }
                body.insert("name".into(), alias);
            }
        }
    }
    if let Some(Value::Array(items)) = schema::find_key(body, "protocols")
        .cloned()
        .and_then(|k| body.get_mut(&k))
    {
        for o in items.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(typo) = schema::find_key(o, "specifiationUrl").cloned() {
                let v = o.remove(&typo).unwrap_or(Value::Null);
                if schema::find_key(o, "specificationUrl").is_none() {
                    o.insert("specificationUrl".into(), v);
                }
            }
        }
    }
    Ok(())
}

/// A client's POST/PUT body → the attributes we store (without `id`, `meta`, `schemas`).
pub fn normalize(rt: ResourceType, body: Value, q: &Quirks) -> Result<Map<String, Value>> {
    let Value::Object(mut body) = body else {
        return Err(Error::invalid_syntax("the request body must be a JSON object"));
    };
    if rt == ResourceType::Agent {
        agent_aliases(&mut body)?;
    }
    if let Some(schemas) = body
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("schemas"))
        .map(|(_, v)| v)
    {
        let list = schemas
            .as_array()
            .filter(|a| a.iter().all(Value::is_string))
            .ok_or_else(|| Error::invalid_syntax("'schemas' must be an array of URNs"))?;
        for urn in list.iter().filter_map(Value::as_str) {
            let known = urn.eq_ignore_ascii_case(rt.core().id)
                || rt.extensions().iter().any(|s| s.id.eq_ignore_ascii_case(urn));
            if !known && !q.ignore_unknown_schemas {
                return Err(Error::invalid_value(format!(
                    "schema '{urn}' is not one of {}'s",
                    rt.name()
                )));
            }
        }
    }
    let mut out = Map::new();
    for (key, value) in body {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(ext) = rt.extensions().iter().find(|s| s.id.eq_ignore_ascii_case(&key)) {
            let Value::Object(fields) = value else {
                return Err(Error::invalid_value(format!("'{}' must be an object", ext.id)));
            };
            let mut ext_out = Map::new();
            for (k, v) in fields {
                if let Some(attr) = ext.attr(&k) {
                    put(&mut ext_out, attr, v, q)?;
                }
            }
            let ordered = order(ext.attributes.iter(), ext_out);
            if !ordered.is_empty() {
                out.insert(ext.id.to_string(), Value::Object(ordered));
            }
            continue;
        }
        let raw = match RawPath::parse(&key) {
            Ok(r) if r.sub.is_none() => r,
            _ => continue,
        };
        match rt.resolve(raw.urn.as_deref(), &raw.attr) {
            Some((Some(s), attr)) if std::ptr::eq(s, rt.core()) => put(&mut out, attr, value, q)?,
            Some((None, attr)) if attr.name == "externalId" => put(&mut out, attr, value, q)?,
            Some(_) => {}
            None if raw.urn.is_some() && !q.ignore_unknown_schemas => {
                return Err(Error::invalid_value(format!(
                    "'{key}' belongs to a schema {} doesn't have",
                    rt.name()
                )));
            }
            None => {}
        }
    }
    let common = schema::COMMON.attr("externalId").into_iter();
    let mut ordered = order(common.chain(rt.core().attributes.iter()), out.clone());
    for ext in rt.extensions() {
        if let Some(v) = out.remove(ext.id) {
            ordered.insert(ext.id.to_string(), v);
        }
    }
    check_required(rt, &ordered)?;
    Ok(ordered)
}

fn put(out: &mut Map<String, Value>, attr: &Attribute, value: Value, q: &Quirks) -> Result<()> {
    let v = normalize_value(attr, value, q)?;
    match attr.mutability {
        Mutability::ReadOnly | Mutability::WriteOnly => {}
        _ if v.is_null() || v.as_array().is_some_and(Vec::is_empty) => {}
        _ => {
            out.insert(attr.name.to_string(), v);
        }
    }
    Ok(())
}

fn order<'a>(attrs: impl Iterator<Item = &'a Attribute>, mut from: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for a in attrs {
        if let Some(v) = from.remove(a.name) {
            out.insert(a.name.to_string(), v);
        }
    }
    out
}

/// Required attributes present and non-empty.
pub fn check_required(rt: ResourceType, attrs: &Map<String, Value>) -> Result<()> {
    for a in rt.core().attributes.iter().filter(|a| a.required) {
        match attrs.get(a.name) {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            Some(v) if !v.is_null() && !v.is_string() => {}
            _ => return Err(Error::invalid_value(format!("'{}' is required", a.name))),
        }
    }
    Ok(())
}

/// Attribute values present in both that differ, for attributes marked immutable.
pub fn check_immutable(rt: ResourceType, old: &Map<String, Value>, new: &Map<String, Value>) -> Result<()> {
    for a in rt
        .core()
        .attributes
        .iter()
        .filter(|a| a.mutability == Mutability::Immutable)
    {
        if let (Some(o), Some(n)) = (old.get(a.name), new.get(a.name)) {
            if o != n {
                return Err(Error::mutability(format!("'{}' is immutable", a.name)));
            }
        }
    }
    Ok(())
}

/// `schemas`: the core schema plus each extension the resource carries.
pub fn schemas_of(rt: ResourceType, attrs: &Map<String, Value>) -> Value {
    let mut list = vec![Value::String(rt.core().id.to_string())];
    for ext in rt.extensions() {
        if attrs.contains_key(ext.id) {
            list.push(Value::String(ext.id.to_string()));
        }
    }
    Value::Array(list)
}

/// `attributes` / `excludedAttributes` of RFC 7644 §3.4.2.5, resolved once per request.
#[derive(Debug, Default, Clone)]
pub struct Projection {
    include: Vec<Resolved>,
    exclude: Vec<Resolved>,
}

impl Projection {
    pub fn parse(rt: ResourceType, attributes: Option<&str>, excluded: Option<&str>) -> Result<Projection> {
        let list = |s: Option<&str>| -> Result<Vec<Resolved>> {
            let mut out = Vec::new();
            for name in s
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let raw = RawPath::parse(name).map_err(Error::invalid_value)?;
                // RFC 7644 asks us to ignore names we don't know rather than fail the request.
                if let Ok(r) = resolve(Scope::Resource(rt), &raw, Error::invalid_value) {
                    out.push(r);
                } else if let Some(ext) = rt.extensions().iter().find(|e| e.id.eq_ignore_ascii_case(name)) {
                    // A whole extension: every attribute in it.
                    for attr in &ext.attributes {
                        out.push(Resolved {
                            extension: Some(ext.id),
                            attr,
                            sub: None,
                        });
                    }
                }
            }
            Ok(out)
        };
        Ok(Projection {
            include: list(attributes)?,
            exclude: list(excluded)?,
        })
    }

    pub fn excludes(&self, attr: &str) -> bool {
        self.exclude
            .iter()
            .any(|r| r.extension.is_none() && r.sub.is_none() && r.attr.name == attr)
            || (!self.include.is_empty()
                && !self
                    .include
                    .iter()
                    .any(|r| r.extension.is_none() && r.attr.name == attr))
    }

    /// Apply to a rendered resource.
    pub fn apply(&self, rt: ResourceType, mut res: Map<String, Value>) -> Map<String, Value> {
        if !self.include.is_empty() {
            let mut out = Map::new();
            for (key, value) in std::mem::take(&mut res) {
                if let Some(ext) = rt.extensions().iter().find(|s| s.id == key) {
                    let Value::Object(fields) = value else { continue };
                    let kept: Map<String, Value> = fields
                        .into_iter()
                        .filter_map(|(k, v)| {
                            let attr = ext.attr(&k)?;
                            let picks: Vec<&Resolved> = self
                                .include
                                .iter()
                                .filter(|r| r.extension == Some(ext.id) && r.attr.name == attr.name)
                                .collect();
                            keep(attr, v, &picks).map(|v| (k, v))
                        })
                        .collect();
                    if !kept.is_empty() {
                        out.insert(key, Value::Object(kept));
                    }
                    continue;
                }
                let Some((_, attr)) = rt.resolve(None, &key) else {
                    if key == "schemas" {
                        out.insert(key, value);
                    }
                    continue;
                };
                if attr.returned == Returned::Always {
                    out.insert(key, value);
                    continue;
                }
                let picks: Vec<&Resolved> = self
                    .include
                    .iter()
                    .filter(|r| r.extension.is_none() && r.attr.name == attr.name)
                    .collect();
                if let Some(v) = keep(attr, value, &picks) {
                    out.insert(key, v);
                }
            }
            res = out;
        }
        for r in &self.exclude {
            if r.attr.returned == Returned::Always {
                continue;
            }
            let container = match r.extension {
                Some(urn) => match res.get_mut(urn).and_then(Value::as_object_mut) {
                    Some(c) => c,
                    None => continue,
                },
                None => &mut res,
            };
            match r.sub {
                None => {
                    container.remove(r.attr.name);
                }
                Some(sub) if sub.returned != Returned::Always => match container.get_mut(r.attr.name) {
                    Some(Value::Object(o)) => {
                        o.remove(sub.name);
                    }
                    Some(Value::Array(items)) => {
                        for o in items.iter_mut().filter_map(Value::as_object_mut) {
                            o.remove(sub.name);
                        }
                    }
                    _ => {}
                },
                Some(_) => {}
            }
            if let Some(urn) = r.extension {
                if res.get(urn).and_then(Value::as_object).is_some_and(Map::is_empty) {
                    res.remove(urn);
                }
            }
        }
        res
    }
}

/// Of `value` for `attr`, what an `attributes=` list selecting `picks` keeps.
fn keep(attr: &Attribute, value: Value, picks: &[&Resolved]) -> Option<Value> {
    if picks.is_empty() {
        return None;
    }
    if picks.iter().any(|r| r.sub.is_none()) || attr.ty != Type::Complex {
        return Some(value);
    }
    let trim = |o: Map<String, Value>| -> Map<String, Value> {
        o.into_iter()
            .filter(|(k, _)| {
                picks.iter().any(|r| r.sub.is_some_and(|s| s.name == k))
                    || attr.sub_attr(k).is_some_and(|s| s.returned == Returned::Always)
            })
            .collect()
    };
    match value {
        Value::Object(o) => Some(Value::Object(trim(o))),
        Value::Array(items) => Some(Value::Array(
            items
                .into_iter()
                .map(|v| match v {
                    Value::Object(o) => Value::Object(trim(o)),
                    other => other,
                })
                .collect(),
        )),
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn entra_create_user_body_normalises() {
        let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", schema::ENTERPRISE_USER],
            "externalId": "0a21f0f2", "UserName": "alice@contoso.com", "active": "True",
            "emails": [{"primary": true, "type": "work", "value": "alice@contoso.com"}],
            "meta": {"resourceType": "User"}, "name": {"formatted": "Alice", "FAMILYNAME": "Liddell"},
            "roles": [], "password": "secret", "groups": [{"value": "x"}],
            schema::ENTERPRISE_USER: {"employeeNumber": "701"}});
        let out = normalize(ResourceType::User, body, &Quirks::default()).expect("normalize");
        assert_eq!(
            Value::Object(out),
            json!({"externalId": "0a21f0f2", "userName": "alice@contoso.com",
                "name": {"formatted": "Alice", "familyName": "Liddell"}, "active": true,
                "emails": [{"value": "alice@contoso.com", "type": "work", "primary": true}],
                schema::ENTERPRISE_USER: {"employeeNumber": "701"}})
        );
    }

    #[test]
    fn wrong_types_and_missing_required_are_invalid_value() {
        let q = Quirks::default();
        for body in [
            json!({"userName": 5}),
            json!({"userName": "a", "active": "yes"}),
            json!({"userName": "a", "emails": "x@y"}),
            json!({"displayName": "no userName"}),
            json!({"userName": "a", "name": "Alice"}),
        ] {
            let err = normalize(ResourceType::User, body.clone(), &q).err();
            assert_eq!(
                err.and_then(|e| e.scim_type),
                Some(super::super::error::ScimType::InvalidValue),
                "{body}"
            );
        }
        let strict = normalize(
            ResourceType::User,
            json!({"userName": "a", "active": "False"}),
            &Quirks::strict(),
        );
        assert!(strict.is_err());
    }

    #[test]
    fn agent_bodies_of_both_drafts_normalise_to_one_form() {
        let q = Quirks::default();
        // draft-wzdk-scim-agent-resource-00's words (as secondary sources quote them).
        let wzdk = json!({"schemas": [schema::AGENT], "externalId": "agent-7", "agentUserName": "analysis-agent-7",
            "displayName": "Analysis agent", "active": false});
        assert_eq!(
            Value::Object(normalize(ResourceType::Agent, wzdk, &q).expect("wzdk")),
            json!({"externalId": "agent-7", "name": "analysis-agent-7", "displayName": "Analysis agent", "active": false})
        );
        // abbey-00 §6.1's misspelt sub-attribute, and read-only `groups` dropped.
        let abbey = json!({"name": "Clippy", "protocols": [{"type": "A2A", "specifiationUrl": "https://x/card.json"}],
            "groups": [{"value": "g"}], "owners": [{"value": "u1", "$ref": "../Users/u1", "display": "Alice"}]});
        assert_eq!(
            Value::Object(normalize(ResourceType::Agent, abbey, &q).expect("abbey")),
            json!({"name": "Clippy", "owners": [{"value": "u1", "$ref": "../Users/u1", "display": "Alice"}],
                "protocols": [{"type": "A2A", "specificationUrl": "https://x/card.json"}]})
        );
        for bad in [
            json!({"agentType": "Assistant"}),
            json!({"name": "a", "agentUserName": "b"}),
            json!({"name": "a", "owners": "u1"}),
            json!({"name": "a", "active": "maybe"}),
            json!({"name": 7}),
        ] {
            let err = normalize(ResourceType::Agent, bad.clone(), &q).err();
            assert_eq!(
                err.and_then(|e| e.scim_type),
                Some(super::super::error::ScimType::InvalidValue),
                "{bad}"
            );
        }
        let same = json!({"name": "a", "agentUserName": "a"});
        assert!(normalize(ResourceType::Agent, same, &q).is_ok());
    }

    #[test]
    fn projection_honours_returned_always_and_sub_attributes() {
        let res = obj(
            json!({"schemas": [schema::USER], "id": "1", "userName": "a", "name": {"givenName": "A", "familyName": "B"},
            "emails": [{"value": "a@x", "type": "work"}], "meta": {"resourceType": "User"}}),
        );
        let p = Projection::parse(ResourceType::User, Some("name.givenName,emails.value"), None).expect("parse");
        assert_eq!(
            Value::Object(p.apply(ResourceType::User, res.clone())),
            json!({"schemas": [schema::USER], "id": "1", "name": {"givenName": "A"}, "emails": [{"value": "a@x"}]})
        );
        let p = Projection::parse(ResourceType::User, None, Some("id,emails,name.familyName")).expect("parse");
        let out = p.apply(ResourceType::User, res);
        assert!(out.contains_key("id") && !out.contains_key("emails"));
        assert_eq!(out["name"], json!({"givenName": "A"}));
    }
}
