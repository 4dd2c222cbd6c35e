//! Attribute paths (RFC 7644 §3.10): `userName`, `name.givenName`, `urn:…:User:userName`,
//! `urn:…:enterprise:2.0:User:manager.value`, resolved against our schemas.

use super::error::{Error, Result};
use super::schema::{Attribute, ResourceType, Schema};

/// A parsed, not yet resolved, attribute path.
#[derive(Debug, Clone, PartialEq)]
pub struct RawPath {
    pub urn: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

impl RawPath {
    /// Split one path word. A URN prefix ends at the last ':'; the rest is `attr[.sub]`.
    pub fn parse(word: &str) -> Result<Self, String> {
        // `get`, not indexing: the fourth byte may sit inside a multi-byte character.
        let (urn, rest) = if word.len() > 4 && word.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) {
            match word.rfind(':') {
                Some(i) => (Some(word[..i].to_string()), &word[i + 1..]),
                None => (None, word),
            }
        } else {
            (None, word)
        };
        let mut parts = rest.split('.');
        let attr = parts.next().unwrap_or_default();
        let sub = parts.next();
        if parts.next().is_some() {
            return Err(format!("'{word}' has more than one sub-attribute level"));
        }
        let valid = |s: &str| {
            let mut chars = s.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '$')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
        };
        if !valid(attr) || sub.is_some_and(|s| !valid(s)) {
            return Err(format!("'{word}' is not an attribute path"));
        }
        Ok(RawPath {
            urn,
            attr: attr.to_string(),
            sub: sub.map(str::to_string),
        })
    }
}

/// Where in a resource an attribute lives.
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    /// `Some(urn)` when the attribute sits in an extension object keyed by its schema URN.
    pub extension: Option<&'static str>,
    pub attr: &'static Attribute,
    pub sub: Option<&'static Attribute>,
}

impl Resolved {
    /// The attribute whose type and flags apply to the values this path reaches.
    pub fn leaf(&self) -> &'static Attribute {
        self.sub.unwrap_or(self.attr)
    }
}

/// The scope names are resolved in: a whole resource, or the elements of one complex attribute
/// (inside a value filter `emails[type eq "work"]`).
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    Resource(ResourceType),
    Complex(&'static Attribute),
}

pub fn resolve(scope: Scope, raw: &RawPath, err: fn(String) -> Error) -> Result<Resolved> {
    match scope {
        Scope::Resource(rt) => {
            let (schema, attr) = rt
                .resolve(raw.urn.as_deref(), &raw.attr)
                .ok_or_else(|| err(format!("unknown attribute '{}' for {}", display(raw), rt.name())))?;
            let extension = schema.filter(|s| !std::ptr::eq(*s, rt.core())).map(|s: &Schema| s.id);
            let sub = match &raw.sub {
                None => None,
                Some(name) => Some(
                    attr.sub_attr(name)
                        .ok_or_else(|| err(format!("'{}' has no sub-attribute '{name}'", attr.name)))?,
                ),
            };
            Ok(Resolved { extension, attr, sub })
        }
        Scope::Complex(parent) => {
            if raw.urn.is_some() || raw.sub.is_some() {
                return Err(err(format!(
                    "'{}' inside a filter on '{}' must name one of its sub-attributes",
                    display(raw),
                    parent.name
                )));
            }
            let attr = parent
                .sub_attr(&raw.attr)
                .ok_or_else(|| err(format!("'{}' has no sub-attribute '{}'", parent.name, raw.attr)))?;
            Ok(Resolved {
                extension: None,
                attr,
                sub: None,
            })
        }
    }
}

fn display(raw: &RawPath) -> String {
    let mut s = String::new();
    if let Some(u) = &raw.urn {
        s.push_str(u);
        s.push(':');
    }
    s.push_str(&raw.attr);
    if let Some(sub) = &raw.sub {
        s.push('.');
        s.push_str(sub);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::ENTERPRISE_USER;

    #[test]
    fn splits_urn_attr_and_sub() {
        let p =
            RawPath::parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value").expect("parse");
        assert_eq!(p.urn.as_deref(), Some(ENTERPRISE_USER));
        assert_eq!((p.attr.as_str(), p.sub.as_deref()), ("manager", Some("value")));
        assert!(RawPath::parse("a.b.c").is_err());
        assert!(RawPath::parse("9abc").is_err());
        assert_eq!(RawPath::parse("$ref").map(|p| p.attr), Ok("$ref".to_string()));
        // Found by the patch fuzz target: a multi-byte character across byte 4.
        assert!(RawPath::parse("menқimbers").is_err());
    }
}
