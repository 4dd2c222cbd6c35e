//! The SCIM filter language (RFC 7644 §3.4.2.2): parser, resolution against our schemas, and
//! evaluation over stored resources.
//!
//! Accepts the whole RFC grammar — `eq ne co sw ew pr gt ge lt le`, `and`/`or`/`not`, grouping,
//! value paths, URN-qualified names, operators in any case — plus Entra ID's
//! `emails[type eq "work"].value eq "…"`, which is rewritten to the equivalent
//! `emails[type eq "work" and value eq "…"]`. Case exactness follows each attribute's schema.
//!
//! Single-quoted strings (`name eq 'Helpdesk bot'`), as every filter example of
//! draft-abbey-scim-agent-extension-00 §5.1.2 and §5.2.2 writes them, are accepted when the
//! `singleQuotedStrings` quirk is on (the default): RFC 7644 §3.4.2.2 allows only JSON strings,
//! but `'` has no other meaning in the grammar, so no RFC filter reads differently, and an IdP that
//! copies the draft is served rather than refused. With the quirk off they are `invalidFilter`.

use super::error::{Error, Result};
use super::path::{resolve, RawPath, Resolved, Scope};
use super::quirks::Quirks;
use super::schema::{Attribute, ResourceType, Type};
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// Longest filter we accept, in bytes.
pub const MAX_LEN: usize = 8 * 1024;
/// Deepest nesting of parentheses, `not` and value paths we accept.
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn parse(word: &str) -> Option<Op> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            _ => return None,
        })
    }
    fn ordering(self) -> bool {
        matches!(self, Op::Gt | Op::Ge | Op::Lt | Op::Le)
    }
    fn substring(self) -> bool {
        matches!(self, Op::Co | Op::Sw | Op::Ew)
    }
}

/// An attribute path inside a filter, with its schema definition once resolved.
#[derive(Debug, Clone)]
pub struct FilterPath {
    pub raw: RawPath,
    pub resolved: Option<Resolved>,
}

#[derive(Debug, Clone)]
pub enum Filter {
    Present(FilterPath),
    Compare(FilterPath, Op, Value),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attr[inner]`: true when some element of `attr` satisfies `inner`.
    ValuePath(FilterPath, Box<Filter>),
}

// ---------------------------------------------------------------- lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Word(String),
    Str(String),
}

/// The index of the quote closing the string that opens at `start` (with the quote character
/// found there), skipping quotes escaped by `\`.
fn closing(bytes: &[u8], start: usize) -> Result<usize> {
    let quote = bytes.get(start).copied();
    let mut escaped = false;
    for (i, b) in bytes.iter().enumerate().skip(start + 1) {
        match *b {
            b'\\' if !escaped => escaped = true,
            b if Some(b) == quote && !escaped => return Ok(i),
            _ => escaped = false,
        }
    }
    Err(Error::invalid_filter(format!("unterminated string at {start}")))
}

fn lex(input: &str, single_quotes: bool) -> Result<Vec<(usize, Tok)>> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push((i, Tok::LParen));
                i += 1
            }
            b')' => {
                out.push((i, Tok::RParen));
                i += 1
            }
            b'[' => {
                out.push((i, Tok::LBracket));
                i += 1
            }
            b']' => {
                out.push((i, Tok::RBracket));
                i += 1
            }
            b'"' => {
                let start = i;
                i = closing(bytes, start)?;
                let lit = &input[start..=i];
                let s: String = serde_json::from_str(lit)
                    .map_err(|e| Error::invalid_filter(format!("bad string at {start}: {e}")))?;
                out.push((start, Tok::Str(s)));
                i += 1;
            }
            b'\'' if single_quotes => {
                // Up to the next `'` not escaped by `\`; inside, `\'` is a quote and the rest reads
                // as a JSON string would.
                let start = i;
                i = closing(bytes, start)?;
                let inner = input[start + 1..i].replace("\\'", "'").replace('"', "\\\"");
                let s: String = serde_json::from_str(&format!("\"{inner}\""))
                    .map_err(|e| Error::invalid_filter(format!("bad string at {start}: {e}")))?;
                out.push((start, Tok::Str(s)));
                i += 1;
            }
            _ if c.is_ascii_alphanumeric() || matches!(c, b'_' | b':' | b'.' | b'$' | b'-' | b'+') => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b':' | b'.' | b'$' | b'-' | b'+'))
                {
                    i += 1;
                }
                out.push((start, Tok::Word(input[start..i].to_string())));
            }
            _ => {
                let ch = input[i..].chars().next().unwrap_or('?');
                return Err(Error::invalid_filter(format!("unexpected '{ch}' at {i}")));
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- parsing

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }
    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|(p, _)| *p).unwrap_or(self.end)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }
    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }
    fn fail<T>(&self, what: &str) -> Result<T> {
        Err(Error::invalid_filter(format!("{what} at {}", self.at())))
    }

    fn or(&mut self, depth: usize, in_brackets: bool) -> Result<Filter> {
        let mut left = self.and(depth, in_brackets)?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and(depth, in_brackets)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize, in_brackets: bool) -> Result<Filter> {
        let mut left = self.unary(depth, in_brackets)?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary(depth, in_brackets)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize, in_brackets: bool) -> Result<Filter> {
        if depth >= MAX_DEPTH {
            return self.fail(&format!("filter nests deeper than {MAX_DEPTH}"));
        }
        if self.keyword("not") && matches!(self.toks.get(self.pos + 1), Some((_, Tok::LParen))) {
            self.pos += 2;
            let inner = self.or(depth + 1, in_brackets)?;
            self.expect_rparen()?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let inner = self.or(depth + 1, in_brackets)?;
            self.expect_rparen()?;
            return Ok(inner);
        }
        self.attr_expr(depth, in_brackets)
    }

    fn expect_rparen(&mut self) -> Result<()> {
        match self.next() {
            Some(Tok::RParen) => Ok(()),
            _ => {
                self.pos -= 1;
                self.fail("expected ')'")
            }
        }
    }

    fn path(&mut self) -> Result<FilterPath> {
        let at = self.at();
        match self.next() {
            Some(Tok::Word(w)) => {
                let raw = RawPath::parse(&w).map_err(|e| Error::invalid_filter(format!("{e} at {at}")))?;
                Ok(FilterPath { raw, resolved: None })
            }
            _ => {
                self.pos -= 1;
                self.fail("expected an attribute name")
            }
        }
    }

    fn attr_expr(&mut self, depth: usize, in_brackets: bool) -> Result<Filter> {
        let path = self.path()?;
        if self.peek() == Some(&Tok::LBracket) {
            if in_brackets {
                return self.fail("value filters cannot nest");
            }
            if path.raw.sub.is_some() {
                return self.fail("a value filter applies to an attribute, not a sub-attribute");
            }
            self.pos += 1;
            let inner = self.or(depth + 1, true)?;
            match self.next() {
                Some(Tok::RBracket) => {}
                _ => {
                    self.pos -= 1;
                    return self.fail("expected ']'");
                }
            }
            // Entra ID: `emails[type eq "work"].value eq "x"` ≡ `emails[type eq "work" and value eq "x"]`.
            if let Some(Tok::Word(w)) = self.peek() {
                if let Some(sub) = w.strip_prefix('.') {
                    let sub = sub.to_string();
                    self.pos += 1;
                    let sub_path = FilterPath {
                        raw: RawPath::parse(&sub).map_err(Error::invalid_filter)?,
                        resolved: None,
                    };
                    let tail = self.comparison(sub_path)?;
                    return Ok(Filter::ValuePath(
                        path,
                        Box::new(Filter::And(Box::new(inner), Box::new(tail))),
                    ));
                }
            }
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        self.comparison(path)
    }

    fn comparison(&mut self, path: FilterPath) -> Result<Filter> {
        let at = self.at();
        let op = match self.next() {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("pr") => return Ok(Filter::Present(path)),
            Some(Tok::Word(w)) => match Op::parse(&w) {
                Some(op) => op,
                None => return Err(Error::invalid_filter(format!("unknown operator '{w}' at {at}"))),
            },
            _ => {
                self.pos -= 1;
                return self.fail("expected an operator");
            }
        };
        let at = self.at();
        let value = match self.next() {
            Some(Tok::Str(s)) => Value::String(s),
            Some(Tok::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => match serde_json::from_str::<serde_json::Number>(&w) {
                    Ok(n) => Value::Number(n),
                    Err(_) => {
                        return Err(Error::invalid_filter(format!(
                            "'{w}' at {at} is not a value (strings need quotes)"
                        )))
                    }
                },
            },
            _ => {
                self.pos -= 1;
                return self.fail("expected a value");
            }
        };
        Ok(Filter::Compare(path, op, value))
    }
}

impl Filter {
    /// Parse a filter without resolving attribute names: RFC 7644 only.
    pub fn parse(input: &str) -> Result<Filter> {
        Filter::parse_with(input, false)
    }

    /// Parse, with single-quoted strings accepted when `single_quotes` (the quirk).
    pub fn parse_with(input: &str, single_quotes: bool) -> Result<Filter> {
        if input.len() > MAX_LEN {
            return Err(Error::invalid_filter(format!("filter longer than {MAX_LEN} bytes")));
        }
        let toks = lex(input, single_quotes)?;
        let mut p = Parser {
            toks,
            pos: 0,
            end: input.len(),
        };
        if p.peek().is_none() {
            return Err(Error::invalid_filter("empty filter"));
        }
        let f = p.or(0, false)?;
        if p.pos < p.toks.len() {
            return p.fail("unexpected trailing input");
        }
        Ok(f)
    }

    /// Parse and resolve for one resource type: RFC 7644 only.
    pub fn compile(input: &str, rt: ResourceType) -> Result<Filter> {
        Filter::compile_with(input, rt, &Quirks::strict())
    }

    /// Parse and resolve for one resource type, with the quirks that touch filters.
    pub fn compile_with(input: &str, rt: ResourceType, q: &Quirks) -> Result<Filter> {
        let mut f = Filter::parse_with(input, q.single_quoted_strings)?;
        f.resolve(Scope::Resource(rt))?;
        Ok(f)
    }

    /// Bind every path to its schema attribute and reject operators that make no sense for its type.
    pub fn resolve(&mut self, scope: Scope) -> Result<()> {
        match self {
            Filter::Present(p) => {
                p.resolved = Some(resolve(scope, &p.raw, Error::invalid_filter)?);
                Ok(())
            }
            Filter::Compare(p, op, value) => {
                let r = resolve(scope, &p.raw, Error::invalid_filter)?;
                let leaf = compared_attr(&r);
                check_operator(leaf, *op, value)?;
                p.resolved = Some(r);
                Ok(())
            }
            Filter::And(a, b) | Filter::Or(a, b) => {
                a.resolve(scope)?;
                b.resolve(scope)
            }
            Filter::Not(a) => a.resolve(scope),
            Filter::ValuePath(p, inner) => {
                let r = resolve(scope, &p.raw, Error::invalid_filter)?;
                if r.attr.ty != Type::Complex {
                    return Err(Error::invalid_filter(format!(
                        "'{}' is not complex; it has no value filter",
                        r.attr.name
                    )));
                }
                inner.resolve(Scope::Complex(r.attr))?;
                p.resolved = Some(r);
                Ok(())
            }
        }
    }

    /// Whether any path in the filter names `attr` at the top level (case-insensitive).
    pub fn mentions(&self, attr: &str) -> bool {
        match self {
            Filter::Present(p) | Filter::Compare(p, _, _) | Filter::ValuePath(p, _) => {
                p.raw.attr.eq_ignore_ascii_case(attr)
            }
            Filter::And(a, b) | Filter::Or(a, b) => a.mentions(attr) || b.mentions(attr),
            Filter::Not(a) => a.mentions(attr),
        }
    }

    /// A top-level `attr eq "value"` conjunct (possibly under `and`) that an index can answer.
    /// Returns the canonical attribute name (with sub-attribute, e.g. `emails.value`) and the value.
    pub fn index_hint(&self) -> Option<(String, &str)> {
        match self {
            Filter::Compare(p, Op::Eq, Value::String(v))
                if p.raw.urn.is_none() || p.resolved.is_some_and(|r| r.extension.is_none()) =>
            {
                let r = p.resolved?;
                let name = match r.sub {
                    Some(s) => format!("{}.{}", r.attr.name, s.name),
                    None => r.attr.name.to_string(),
                };
                Some((name, v.as_str()))
            }
            Filter::And(a, b) => a.index_hint().or_else(|| b.index_hint()),
            _ => None,
        }
    }

    /// Evaluate against a resource (or, inside a value filter, one element of a complex attribute).
    pub fn matches(&self, obj: &Map<String, Value>) -> bool {
        match self {
            Filter::And(a, b) => a.matches(obj) && b.matches(obj),
            Filter::Or(a, b) => a.matches(obj) || b.matches(obj),
            Filter::Not(a) => !a.matches(obj),
            Filter::Present(p) => {
                let Some(r) = p.resolved else { return false };
                let mut found = false;
                for_each_value(obj, &r, &mut |v| found |= present(v));
                found
            }
            Filter::Compare(p, op, want) => {
                let Some(r) = p.resolved else { return false };
                let leaf = compared_attr(&r);
                let mut any_eq = false;
                let mut any_match = false;
                for_each_value(obj, &r, &mut |v| {
                    if *op == Op::Ne {
                        any_eq |= compare(leaf, Op::Eq, v, want);
                    } else {
                        any_match |= compare(leaf, *op, v, want);
                    }
                });
                if *op == Op::Ne {
                    !any_eq
                } else {
                    any_match
                }
            }
            Filter::ValuePath(p, inner) => {
                let Some(r) = p.resolved else { return false };
                let container = match r.extension {
                    Some(urn) => obj.get(urn).and_then(Value::as_object),
                    None => Some(obj),
                };
                match container.and_then(|c| c.get(r.attr.name)) {
                    Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).any(|e| inner.matches(e)),
                    Some(Value::Object(e)) => inner.matches(e),
                    _ => false,
                }
            }
        }
    }
}

/// The attribute whose values a comparison actually looks at: `emails eq "x"` compares `emails.value`.
fn compared_attr(r: &Resolved) -> &'static Attribute {
    match r.sub {
        Some(s) => s,
        None if r.attr.ty == Type::Complex && r.attr.multi => r.attr.sub_attr("value").unwrap_or(r.attr),
        None => r.attr,
    }
}

fn check_operator(attr: &Attribute, op: Op, value: &Value) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid_filter(format!("'{}': {why}", attr.name)));
    match attr.ty {
        Type::Complex => bad("a complex attribute cannot be compared; name a sub-attribute"),
        Type::Boolean if op != Op::Eq && op != Op::Ne => bad("booleans support only eq and ne"),
        Type::Boolean if !matches!(value, Value::Bool(_) | Value::Null) && !is_bool_string(value) => {
            bad("compare booleans with true or false")
        }
        Type::Binary if op.ordering() => bad("binary values cannot be ordered"),
        Type::Integer | Type::Decimal if op.substring() => bad("numbers support no substring operators"),
        _ if op.ordering() && matches!(value, Value::Bool(_) | Value::Null) => {
            bad("ordering needs a string, number or date")
        }
        _ => Ok(()),
    }
}

fn is_bool_string(v: &Value) -> bool {
    matches!(v.as_str(), Some(s) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false"))
}

/// Visit every value a resolved path reaches in `obj`: through extension objects, arrays, and
/// (for `emails eq …`) the `value` sub-attribute of multi-valued complex attributes.
fn for_each_value(obj: &Map<String, Value>, r: &Resolved, f: &mut dyn FnMut(&Value)) {
    let container = match r.extension {
        Some(urn) => match obj.get(urn).and_then(Value::as_object) {
            Some(c) => c,
            None => return,
        },
        None => obj,
    };
    let Some(v) = container.get(r.attr.name) else { return };
    let sub_name = match r.sub {
        Some(s) => Some(s.name),
        None if r.attr.ty == Type::Complex && r.attr.multi => Some("value"),
        None => None,
    };
    let mut visit = |item: &Value| match sub_name {
        Some(name) => {
            if let Some(x) = item.as_object().and_then(|o| o.get(name)) {
                f(x)
            }
        }
        None => f(item),
    };
    match v {
        Value::Array(items) => items.iter().for_each(&mut visit),
        other => visit(other),
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn compare(attr: &Attribute, op: Op, have: &Value, want: &Value) -> bool {
    match (have, want) {
        (_, Value::Null) => match op {
            Op::Eq => have.is_null(),
            _ => false,
        },
        (Value::Bool(h), Value::Bool(w)) => op == Op::Eq && h == w,
        (Value::Bool(h), Value::String(w)) if is_bool_string(want) => {
            op == Op::Eq && (*h == w.eq_ignore_ascii_case("true"))
        }
        (Value::Number(h), Value::Number(w)) => match (h.as_f64(), w.as_f64()) {
            (Some(h), Some(w)) => ordered(op, h.partial_cmp(&w)),
            _ => false,
        },
        (Value::String(h), Value::String(w)) => {
            if attr.ty == Type::DateTime && op.ordering() | (op == Op::Eq) {
                if let (Ok(h), Ok(w)) = (
                    chrono::DateTime::parse_from_rfc3339(h),
                    chrono::DateTime::parse_from_rfc3339(w),
                ) {
                    return ordered(op, Some(h.cmp(&w)));
                }
            }
            if attr.case_exact {
                string_op(op, h, w)
            } else {
                // The same folding as the uniqueness keys and indexes, so `userName eq` finds
                // exactly the user a create with that userName would conflict with.
                string_op(op, &crate::model::name::fold(h), &crate::model::name::fold(w))
            }
        }
        _ => false,
    }
}

fn string_op(op: Op, h: &str, w: &str) -> bool {
    match op {
        Op::Eq => h == w,
        Op::Ne => h != w,
        Op::Co => h.contains(w),
        Op::Sw => h.starts_with(w),
        Op::Ew => h.ends_with(w),
        _ => ordered(op, Some(h.cmp(w))),
    }
}

fn ordered(op: Op, ord: Option<Ordering>) -> bool {
    let Some(ord) = ord else { return false };
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Map<String, Value> {
        let v = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "Bjensen",
            "userName": "bjensen@example.com",
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "title": "Tour Guide",
            "userType": "Employee",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984", "manager": {"value": "26118915"}},
            "meta": {"resourceType": "User", "created": "2011-08-01T18:29:49.793Z", "lastModified": "2011-08-01T18:29:49.793Z", "version": "W/\"3\""}
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    /// (name, filter, expected) over the RFC 7644 §3.4.2.2 examples and IdP request shapes.
    const CASES: &[(&str, &str, bool)] = &[
        ("rfc: userName eq", r#"userName eq "bjensen@example.com""#, true),
        (
            "userName is case-insensitive",
            r#"userName eq "BJensen@Example.COM""#,
            true,
        ),
        ("operators in any case", r#"userName EQ "bjensen@example.com""#, true),
        ("externalId is case-exact", r#"externalId eq "bjensen""#, false),
        ("externalId exact match", r#"externalId eq "Bjensen""#, true),
        (
            "id is case-exact",
            r#"id eq "2819C223-7F76-453A-919D-413861904646""#,
            false,
        ),
        ("rfc: name.familyName co", r#"name.familyName co "ens""#, true),
        ("rfc: userName sw", r#"userName sw "J""#, false),
        ("sw matches prefix", r#"userName sw "bj""#, true),
        ("ew", r#"userName ew "example.com""#, true),
        (
            "rfc: urn-qualified",
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "bje""#,
            true,
        ),
        ("rfc: title pr", "title pr", true),
        ("absent pr", "nickName pr", false),
        (
            "rfc: meta.lastModified gt",
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            true,
        ),
        (
            "rfc: meta.lastModified ge",
            r#"meta.lastModified ge "2011-08-01T18:29:49.793Z""#,
            true,
        ),
        (
            "rfc: meta.lastModified lt",
            r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
            false,
        ),
        (
            "dates compare as instants",
            r#"meta.lastModified eq "2011-08-01T20:29:49.793+02:00""#,
            true,
        ),
        ("rfc: and with pr", r#"title pr and userType eq "Employee""#, true),
        ("rfc: or", r#"title pr or userType eq "Intern""#, true),
        (
            "rfc: userType ne and not",
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            false,
        ),
        (
            "rfc: grouping",
            r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
            true,
        ),
        (
            "rfc: value path",
            r#"emails[type eq "work" and value co "@example.com"]"#,
            true,
        ),
        (
            "value path no match",
            r#"emails[type eq "home" and value co "@example.com"]"#,
            false,
        ),
        (
            "rfc: value path or",
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
            true,
        ),
        (
            "entra: value path then sub-attr",
            r#"emails[type eq "work"].value eq "bjensen@example.com""#,
            true,
        ),
        (
            "entra: value path then sub-attr, other element",
            r#"emails[type eq "work"].value eq "babs@jensen.org""#,
            false,
        ),
        ("multi-valued compares value", r#"emails eq "babs@jensen.org""#, true),
        ("boolean", "active eq true", true),
        ("boolean as string", r#"active eq "True""#, true),
        ("boolean ne", "active ne true", false),
        ("ne on absent attribute", r#"nickName ne "x""#, true),
        (
            "extension attribute",
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#,
            true,
        ),
        (
            "extension sub-attribute",
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915""#,
            true,
        ),
        (
            "not binds tighter than and",
            r#"not (active eq false) and title pr"#,
            true,
        ),
        (
            "and binds tighter than or",
            r#"title eq "x" and active eq false or userType eq "Employee""#,
            true,
        ),
        ("string ordering", r#"userName gt "a""#, true),
        ("null compares absent", "nickName eq null", false),
        ("escaped quote in string", r#"title ne "Tour \"Guide\"""#, true),
    ];

    #[test]
    fn table() {
        let u = user();
        for (name, input, want) in CASES {
            let f = Filter::compile(input, ResourceType::User).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(f.matches(&u), *want, "{name}: {input}");
        }
    }

    const BAD: &[(&str, &str)] = &[
        ("empty", ""),
        ("unknown op", r#"userName xx "a""#),
        ("missing value", "userName eq"),
        ("unquoted string", "userName eq bjensen"),
        ("unterminated string", r#"userName eq "abc"#),
        ("unbalanced paren", r#"(userName eq "a""#),
        ("trailing", r#"userName eq "a" )"#),
        ("unknown attribute", r#"shoeSize eq "9""#),
        ("unknown sub-attribute", r#"name.nick eq "x""#),
        ("nested value filter", r#"emails[type[value eq "x"] eq "y"]"#),
        ("boolean gt", "active gt true"),
        ("complex compared", r#"name eq "x""#),
        ("value filter on simple", r#"userName[value eq "x"]"#),
        ("stray char", r#"userName eq "a" & title pr"#),
        ("dangling and", r#"userName eq "a" and"#),
        ("group attr on user", r#"members eq "x""#),
    ];

    #[test]
    fn rejects_with_invalid_filter() {
        for (name, input) in BAD {
            let err = Filter::compile(input, ResourceType::User)
                .err()
                .unwrap_or_else(|| panic!("{name} accepted"));
            assert_eq!(
                err.scim_type,
                Some(super::super::error::ScimType::InvalidFilter),
                "{name}"
            );
        }
    }

    #[test]
    fn depth_and_length_limits() {
        let deep = format!("{}title pr{}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
        assert!(Filter::compile(&deep, ResourceType::User).is_err());
        let ok = format!("{}title pr{}", "(".repeat(MAX_DEPTH - 1), ")".repeat(MAX_DEPTH - 1));
        assert!(Filter::compile(&ok, ResourceType::User).is_ok());
        let long = format!(r#"userName eq "{}""#, "a".repeat(MAX_LEN));
        assert!(Filter::compile(&long, ResourceType::User).is_err());
    }

    #[test]
    fn single_quoted_strings_are_a_quirk() {
        // draft-abbey-scim-agent-extension-00 §5.1.2 writes its filters this way.
        let q = Quirks::default();
        let f = Filter::compile_with("name eq 'Helpdesk bot'", ResourceType::Agent, &q).expect("abbey filter");
        assert_eq!(f.index_hint(), Some(("name".to_string(), "Helpdesk bot")));
        let agent = |name: &str| -> Map<String, Value> {
            match serde_json::json!({"name": name}) {
                Value::Object(m) => m,
                _ => Map::new(),
            }
        };
        assert!(f.matches(&agent("HELPDESK BOT")));
        let f = Filter::compile_with(r#"name eq 'it\'s "q"'"#, ResourceType::Agent, &q).expect("escapes");
        assert!(f.matches(&agent(r#"it's "q""#)));
        for strict in [
            Filter::compile("name eq 'Helpdesk bot'", ResourceType::Agent),
            Filter::compile_with("name eq 'x'", ResourceType::Agent, &Quirks::strict()),
            Filter::compile_with("name eq 'open", ResourceType::Agent, &q),
        ] {
            assert_eq!(
                strict.err().and_then(|e| e.scim_type),
                Some(super::super::error::ScimType::InvalidFilter)
            );
        }
    }

    #[test]
    fn entra_group_membership_filter_uses_an_index_hint() {
        let f = Filter::compile(r#"id eq "g1" and members eq "u1""#, ResourceType::Group).expect("compile");
        assert_eq!(f.index_hint(), Some(("id".to_string(), "g1")));
        let g = json!({"id": "g1", "displayName": "x", "members": [{"value": "u1"}]});
        assert!(f.matches(g.as_object().expect("object")));
        let f = Filter::compile(r#"members eq "U1""#, ResourceType::Group).expect("compile");
        assert!(!f.matches(g.as_object().expect("object")), "member ids are case-exact");
    }
}
