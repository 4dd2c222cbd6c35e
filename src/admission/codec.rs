//! AdmissionReview in and out (`admission.k8s.io/v1`, and `v1beta1` answered in kind). Decoding
//! never panics: a body that is not an AdmissionReview is an HTTP 400 (what the API server
//! expects), an AdmissionReview whose request is malformed gets a well-formed denial.

use base64::Engine;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct UserInfo {
    pub username: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

/// The parts of an AdmissionRequest we use.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub uid: String,
    pub group: String,
    pub version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// `status` for a write of the status subresource; empty for the object itself.
    pub sub_resource: String,
    pub operation: Operation,
    pub user: UserInfo,
    pub object: Option<Value>,
    pub old_object: Option<Value>,
    pub dry_run: bool,
}

/// What came in: the envelope's version (to answer in) and the request, or why it is unusable.
#[derive(Debug)]
pub struct Review {
    pub api_version: String,
    pub uid: String,
    pub request: Result<Request, String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is not an AdmissionReview (apiVersion admission.k8s.io/v1 or v1beta1, kind AdmissionReview)")]
    NotAReview,
    #[error("the body nests arrays and objects deeper than {MAX_DEPTH} levels; no Kubernetes object does")]
    TooDeep,
    #[error("the body holds more than {MAX_TOKENS} JSON values; no AdmissionReview of a storable object does")]
    TooManyValues,
}

/// Deepest nesting of arrays and objects a review may have. The envelope adds 2 (review, request)
/// to the object's own depth; Argo and Tekton objects, inline templates and all, stay far below
/// 30. Kept under serde_json's own recursion limit (128) so the pre-check, not the parser, says no.
pub const MAX_DEPTH: usize = 100;

/// Most JSON values (counted as the `[`, `{`, `,` and `:` outside strings) a review may hold.
/// Every value costs ~100 bytes once decoded, whatever its size in the body: `[[],[],…]` is 3
/// bytes a value, so an 8 MiB body of it decoded into ~420 MB. Real reviews run 14–18 body bytes a
/// value (the captures in shared/corpus); an UPDATE carries two objects, each at most etcd's
/// default 1.5 MiB request limit to be storable at all, so even at 6 bytes a value (3× denser
/// than any capture: managedFields-heavy objects are the densest) a real review stays under this.
pub const MAX_TOKENS: usize = 512 * 1024;

/// What the pre-check found: how many values the body holds (the decode's memory is roughly
/// proportional to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub tokens: usize,
    pub depth: usize,
}

/// One pass over the bytes, no allocation: refuse bodies nested deeper than [`MAX_DEPTH`] or with
/// more than [`MAX_TOKENS`] values before serde_json builds a tree of them. Not a validator: the
/// parser still rejects what is not JSON.
pub fn shape(body: &[u8]) -> Result<Shape, Error> {
    let (mut depth, mut deepest, mut tokens) = (0usize, 0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                tokens += 1;
                if depth > MAX_DEPTH {
                    return Err(Error::TooDeep);
                }
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' | b':' => tokens += 1,
            _ => continue,
        }
        if tokens > MAX_TOKENS {
            return Err(Error::TooManyValues);
        }
    }
    Ok(Shape { tokens, depth: deepest })
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

pub fn decode(body: &[u8]) -> Result<Review, Error> {
    shape(body)?;
    let mut v: Value = serde_json::from_slice(body).map_err(|e| Error::NotJson(e.to_string()))?;
    let api_version = text(&v, "apiVersion").unwrap_or_default();
    if !matches!(api_version, "admission.k8s.io/v1" | "admission.k8s.io/v1beta1")
        || text(&v, "kind") != Some("AdmissionReview")
    {
        return Err(Error::NotAReview);
    }
    let api_version = api_version.to_string();
    let req = v.get_mut("request");
    let uid = req
        .as_deref()
        .and_then(|r| text(r, "uid"))
        .unwrap_or_default()
        .to_string();
    let request = match req {
        None | Some(Value::Null) => Err("the AdmissionReview has no request".to_string()),
        Some(r) => parse_request(r),
    };
    Ok(Review {
        api_version,
        uid,
        request,
    })
}

/// Takes `object` and `oldObject` out of `r` rather than copying them.
fn parse_request(r: &mut Value) -> Result<Request, String> {
    let mut take = |key: &str| -> Result<Option<Value>, String> {
        match r.get_mut(key).map(Value::take) {
            None | Some(Value::Null) => Ok(None),
            Some(o @ Value::Object(_)) => Ok(Some(o)),
            Some(_) => Err(format!("request.{key} is not an object")),
        }
    };
    let object = take("object")?;
    let old_object = take("oldObject")?;
    let r = &*r;
    let uid = text(r, "uid")
        .filter(|u| !u.is_empty())
        .ok_or("request.uid is missing")?;
    let kind = r.get("kind").ok_or("request.kind is missing")?;
    let operation = match text(r, "operation") {
        Some("CREATE") => Operation::Create,
        Some("UPDATE") => Operation::Update,
        Some("DELETE") => Operation::Delete,
        Some("CONNECT") => Operation::Connect,
        other => {
            return Err(format!(
                "request.operation {other:?} is not CREATE, UPDATE, DELETE or CONNECT"
            ))
        }
    };
    let user = r.get("userInfo").ok_or("request.userInfo is missing")?;
    let groups = match user.get("groups") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(g)) => g.iter().filter_map(Value::as_str).map(String::from).collect(),
        Some(_) => return Err("request.userInfo.groups is not a list".into()),
    };
    Ok(Request {
        uid: uid.to_string(),
        group: text(kind, "group").unwrap_or_default().to_string(),
        version: text(kind, "version").unwrap_or_default().to_string(),
        kind: text(kind, "kind").ok_or("request.kind.kind is missing")?.to_string(),
        namespace: text(r, "namespace").unwrap_or_default().to_string(),
        name: text(r, "name").unwrap_or_default().to_string(),
        sub_resource: text(r, "subResource").unwrap_or_default().to_string(),
        operation,
        user: UserInfo {
            username: text(user, "username").unwrap_or_default().to_string(),
            groups,
        },
        object,
        old_object,
        dry_run: r.get("dryRun").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// One admission answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub allowed: bool,
    pub message: Option<String>,
    pub warnings: Vec<String>,
    pub audit: Map<String, Value>,
    /// RFC 6902 operations, for the mutating webhook.
    pub patch: Vec<Value>,
}

impl Answer {
    pub fn allow() -> Answer {
        Answer {
            allowed: true,
            ..Default::default()
        }
    }
    pub fn deny(message: impl Into<String>) -> Answer {
        Answer {
            allowed: false,
            message: Some(message.into()),
            ..Default::default()
        }
    }
}

/// The AdmissionReview response, in the request's API version.
pub fn encode(api_version: &str, uid: &str, a: &Answer) -> Value {
    let mut resp = json!({"uid": uid, "allowed": a.allowed});
    let Some(r) = resp.as_object_mut() else { return resp };
    if !a.allowed {
        r.insert(
            "status".into(),
            json!({"code": 403, "reason": "Forbidden", "message": a.message.clone().unwrap_or_default()}),
        );
    } else if let Some(m) = &a.message {
        r.insert("status".into(), json!({"code": 200, "message": m}));
    }
    if !a.warnings.is_empty() {
        r.insert("warnings".into(), json!(a.warnings));
    }
    if !a.audit.is_empty() {
        r.insert("auditAnnotations".into(), Value::Object(a.audit.clone()));
    }
    if a.allowed && !a.patch.is_empty() {
        r.insert("patchType".into(), json!("JSONPatch"));
        let bytes = serde_json::to_vec(&a.patch).unwrap_or_default();
        r.insert(
            "patch".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
        );
    }
    json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": resp})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_inputs_are_told_apart() {
        assert!(matches!(decode(b"{not json"), Err(Error::NotJson(_))));
        assert_eq!(decode(br#"{"kind": "Pod"}"#).err(), Some(Error::NotAReview));
        let r = decode(br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#).expect("review");
        assert_eq!(r.request.err().as_deref(), Some("the AdmissionReview has no request"));
        let r = decode(br#"{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "x", "kind": {"kind": "Workflow"}, "operation": "PATCH", "userInfo": {}}}"#)
            .expect("review");
        assert_eq!(
            (r.api_version.as_str(), r.uid.as_str()),
            ("admission.k8s.io/v1beta1", "x")
        );
        assert!(r.request.err().is_some_and(|e| e.contains("PATCH")));
        let r = decode(br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "x", "kind": {"kind": "Workflow"}, "operation": "CREATE", "userInfo": {"groups": "admins"}}}"#)
            .expect("review");
        assert!(r.request.is_err());
    }

    #[test]
    fn shapes_no_object_has_are_refused_before_parsing() {
        let flat = format!("[{}[]]", "[],".repeat(MAX_TOKENS));
        assert_eq!(shape(flat.as_bytes()).err(), Some(Error::TooManyValues));
        assert_eq!(decode(flat.as_bytes()).err(), Some(Error::TooManyValues));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(decode(deep.as_bytes()).err(), Some(Error::TooDeep));
        // Brackets, commas and colons inside strings (escaped quotes too) are not structure.
        let s = format!(r#"{{"a": "{}\\\"[{{", "b": [1, 2]}}"#, "[,:{".repeat(MAX_TOKENS));
        assert_eq!(shape(s.as_bytes()), Ok(Shape { tokens: 6, depth: 2 }));
    }

    #[test]
    fn every_corpus_capture_decodes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/admissionreview");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("corpus dir").flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read");
            // Bare AdmissionRequests (no envelope) are wrapped the way the API server sends them.
            let v: Value = serde_json::from_slice(&bytes).expect("json");
            let wrapped = if v.get("request").is_some() {
                v
            } else {
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": v})
            };
            let r = decode(wrapped.to_string().as_bytes()).expect("review");
            let req = r.request.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!req.uid.is_empty() && !req.kind.is_empty(), "{}", path.display());
            n += 1;
        }
        assert_eq!(n, 7, "all seven captures");
    }

    #[test]
    fn answers_carry_uid_status_and_patch() {
        let mut a = Answer::deny("no");
        a.audit.insert("decision".into(), json!("deny"));
        let v = encode("admission.k8s.io/v1", "u-1", &a);
        assert_eq!(v["response"]["uid"], "u-1");
        assert_eq!(v["response"]["status"]["code"], 403);
        let mut a = Answer::allow();
        a.patch
            .push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
        let v = encode("admission.k8s.io/v1beta1", "u-2", &a);
        assert_eq!(
            (v["apiVersion"].as_str(), v["response"]["patchType"].as_str()),
            (Some("admission.k8s.io/v1beta1"), Some("JSONPatch"))
        );
    }
}
