//! `POST /Bulk` (RFC 7644 §3.7): many operations in one request, `bulkId` references between
//! them (`"bulkId:qwerty"` anywhere in a path or value), `failOnErrors`, and the advertised limits.
//! Each operation is an ordinary service call with its own transaction, as the RFC describes:
//! a bulk request is not atomic.

use super::error::{Error, Result};
use super::schema::{self, ResourceType};
use super::service::{self, Service};
use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Most operations in one bulk request; advertised in ServiceProviderConfig.
pub const MAX_OPERATIONS: usize = 1000;

struct Op {
    method: String,
    bulk_id: Option<String>,
    version: Option<String>,
    path: String,
    data: Option<Value>,
}

fn parse(body: Value) -> Result<(Vec<Op>, Option<usize>)> {
    let Value::Object(mut body) = body else {
        return Err(Error::invalid_syntax("a BulkRequest must be an object"));
    };
    let fail_on_errors = match schema::find_key(&body, "failOnErrors").and_then(|k| body.get(k)) {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| Error::invalid_value("'failOnErrors' must be a positive integer"))?,
        ),
    };
    let key = schema::find_key(&body, "Operations").cloned();
    let Some(Value::Array(ops)) = key.and_then(|k| body.remove(&k)) else {
        return Err(Error::invalid_syntax("'Operations' must be an array"));
    };
    if ops.len() > MAX_OPERATIONS {
        return Err(Error::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!("{} operations; at most {MAX_OPERATIONS} per bulk request", ops.len()),
        ));
    }
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.into_iter().enumerate() {
        let Value::Object(mut op) = op else {
            return Err(Error::invalid_syntax(format!("operation {i} is not an object")));
        };
        let mut take = |name: &str| schema::find_key(&op, name).cloned().and_then(|k| op.remove(&k));
        let text = |v: Option<Value>| v.and_then(|v| v.as_str().map(String::from));
        let method =
            text(take("method")).ok_or_else(|| Error::invalid_syntax(format!("operation {i}: 'method' is missing")))?;
        let path =
            text(take("path")).ok_or_else(|| Error::invalid_syntax(format!("operation {i}: 'path' is missing")))?;
        out.push(Op {
            method: method.to_ascii_uppercase(),
            bulk_id: text(take("bulkId")),
            version: text(take("version")),
            path,
            data: take("data"),
        });
    }
    Ok((out, fail_on_errors))
}

/// `bulkId:x` references in a string, path or nested value.
fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:") {
                out.push(id.to_string());
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        Value::Object(o) => o.values().for_each(|x| references(x, out)),
        _ => {}
    }
}

fn substitute(v: &mut Value, ids: &HashMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:").and_then(|b| ids.get(b)) {
                *s = id.clone();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, ids)),
        Value::Object(o) => o.values_mut().for_each(|x| substitute(x, ids)),
        _ => {}
    }
}

fn target(path: &str) -> Result<(ResourceType, Option<String>)> {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let rt = parts
        .next()
        .and_then(ResourceType::from_name)
        .ok_or_else(|| Error::invalid_path(format!("'{path}' is not /Users, /Groups or /Agents")))?;
    Ok((rt, parts.next().filter(|s| !s.is_empty()).map(String::from)))
}

async fn execute(
    svc: &Service,
    op: &Op,
    data: Option<Value>,
    base: &str,
) -> Result<(StatusCode, Option<crate::store::Record>)> {
    let (rt, id) = target(&op.path)?;
    let need_data = || {
        data.clone()
            .ok_or_else(|| Error::invalid_syntax(format!("{} needs 'data'", op.method)))
    };
    match (op.method.as_str(), id) {
        ("POST", None) => {
            if op.bulk_id.is_none() {
                return Err(Error::invalid_syntax("POST in a bulk request needs a 'bulkId'"));
            }
            Ok((StatusCode::CREATED, Some(svc.create(rt, need_data()?).await?)))
        }
        ("PUT", Some(id)) => Ok((
            StatusCode::OK,
            Some(svc.replace(rt, &id, need_data()?, op.version.clone()).await?),
        )),
        ("PATCH", Some(id)) => Ok((
            StatusCode::OK,
            Some(svc.patch(rt, &id, need_data()?, op.version.clone()).await?),
        )),
        ("DELETE", Some(id)) => {
            svc.delete(rt, &id, op.version.clone()).await?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        (m, _) => Err(Error::invalid_path(format!(
            "{m} {} is not a bulk operation we accept (base {base})",
            op.path
        ))),
    }
}

/// Run a BulkRequest; returns the HTTP status and the BulkResponse.
pub async fn run(svc: &Service, body: Value, base: &str) -> Result<(StatusCode, Value)> {
    if let Value::Object(o) = &body {
        if let Some(s) = o.get("schemas") {
            if !s
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(schema::BULK_REQUEST)))
            {
                return Err(Error::invalid_syntax(format!(
                    "'schemas' must contain {}",
                    schema::BULK_REQUEST
                )));
            }
        }
    }
    let (ops, fail_on_errors) = parse(body)?;
    let declared: std::collections::HashSet<&str> = ops.iter().filter_map(|o| o.bulk_id.as_deref()).collect();
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut results: Vec<Option<Value>> = vec![None; ops.len()];
    let mut pending: Vec<usize> = (0..ops.len()).collect();
    let mut errors = 0usize;
    'passes: loop {
        let mut progressed = false;
        let mut still = Vec::new();
        for i in pending {
            let op = &ops[i];
            let mut refs = Vec::new();
            if let Some(d) = &op.data {
                references(d, &mut refs);
            }
            references(
                &Value::String(op.path.rsplit('/').next().unwrap_or_default().to_string()),
                &mut refs,
            );
            if let Some(missing) = refs.iter().find(|r| !declared.contains(r.as_str())) {
                results[i] = Some(failure(
                    op,
                    &Error::invalid_value(format!("bulkId '{missing}' is not defined in this request")),
                ));
                errors += 1;
                progressed = true;
            } else if refs.iter().any(|r| !ids.contains_key(r)) {
                still.push(i);
                continue;
            } else {
                let mut data = op.data.clone();
                if let Some(d) = &mut data {
                    substitute(d, &ids);
                }
                let mut path = Value::String(op.path.clone());
                if let Some(last) = op
                    .path
                    .rsplit('/')
                    .next()
                    .and_then(|l| l.strip_prefix("bulkId:"))
                    .and_then(|b| ids.get(b))
                {
                    path = Value::String(format!(
                        "{}/{last}",
                        op.path.rsplit_once('/').map(|p| p.0).unwrap_or_default()
                    ));
                }
                let resolved = Op {
                    path: path.as_str().unwrap_or_default().to_string(),
                    ..clone_op(op)
                };
                match execute(svc, &resolved, data, base).await {
                    Ok((status, record)) => {
                        let mut entry = Map::new();
                        entry.insert("method".into(), json!(op.method));
                        if let Some(b) = &op.bulk_id {
                            entry.insert("bulkId".into(), json!(b));
                        }
                        if let Some(r) = &record {
                            if let Some(b) = &op.bulk_id {
                                ids.insert(b.clone(), r.id.to_string());
                            }
                            entry.insert("location".into(), json!(format!("{base}/{}/{}", r.rt.endpoint(), r.id)));
                            entry.insert("version".into(), json!(service::etag(r)));
                        }
                        entry.insert("status".into(), json!(status.as_u16().to_string()));
                        results[i] = Some(Value::Object(entry));
                    }
                    Err(e) => {
                        results[i] = Some(failure(op, &e));
                        errors += 1;
                    }
                }
                progressed = true;
            }
            if fail_on_errors.is_some_and(|n| errors >= n) {
                break 'passes;
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if !progressed {
            for i in pending.drain(..) {
                results[i] = Some(failure(
                    &ops[i],
                    &Error::status(
                        StatusCode::CONFLICT,
                        "bulkId references form a cycle or name a failed operation",
                    ),
                ));
            }
            break;
        }
    }
    let done: Vec<Value> = results.into_iter().flatten().collect();
    Ok((
        StatusCode::OK,
        json!({"schemas": [schema::BULK_RESPONSE], "Operations": done}),
    ))
}

fn clone_op(op: &Op) -> Op {
    Op {
        method: op.method.clone(),
        bulk_id: op.bulk_id.clone(),
        version: op.version.clone(),
        path: op.path.clone(),
        data: None,
    }
}

fn failure(op: &Op, e: &Error) -> Value {
    let mut entry = Map::new();
    entry.insert("method".into(), json!(op.method));
    if let Some(b) = &op.bulk_id {
        entry.insert("bulkId".into(), json!(b));
    }
    entry.insert("status".into(), json!(e.status.as_u16().to_string()));
    entry.insert("response".into(), e.body());
    Value::Object(entry)
}
