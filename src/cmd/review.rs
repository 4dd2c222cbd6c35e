//! `scimgate review`: plays the Kubernetes API server against a running scimgate, so the
//! webhooks can be tried without a cluster. Wraps manifests in AdmissionReviews (or sends ready
//! ones), calls `/mutate` then `/validate` over HTTP/2 with the CA verified and the API server's
//! default 10 s timeout, and reports what a person would see: allowed or denied, the message,
//! warnings, audit annotations and the stamp as a readable diff.
//!
//! It calls the webhooks the way kube-apiserver does (k8s.io/apiserver): every call carries a new
//! `request.uid` (`pkg/admission/plugin/webhook/request/admissionreview.go`,
//! `CreateAdmissionObjects`); on CREATE the mutating call sees the object without `uid` and
//! `creationTimestamp` and, with `generateName`, without a name; the name, `uid`,
//! `creationTimestamp` and `generation` are set before the validating call
//! (`pkg/registry/generic/registry/store.go`, `Store.create`; `pkg/storage/names/generate.go`).

use super::Denied;
use anyhow::{bail, Context};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The API server's default webhook timeout.
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Options {
    pub file: PathBuf,
    pub url: String,
    pub ca: Option<PathBuf>,
    pub user: String,
    pub groups: Vec<String>,
    pub operation: String,
    pub old_file: Option<PathBuf>,
    pub namespace: Option<String>,
    pub dry_run: bool,
    pub json: bool,
}

fn read(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Every document in a YAML or JSON stream.
fn documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).context("parsing the manifest")?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

fn plural(kind: &str) -> String {
    format!("{}s", kind.to_lowercase())
}

/// The alphabet and length of the suffix kube-apiserver appends to `generateName`
/// (k8s.io/apimachinery `pkg/util/rand/rand.go`, `String`; k8s.io/apiserver
/// `pkg/storage/names/generate.go`: the base is cut to 58 characters).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A name as the API server generates it from `generateName`.
pub fn generated_name(base: &str) -> String {
    use rand::Rng;
    let mut cut = base.len().min(crate::stamp::claims::GENERATED_BASE_MAX);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut rng = rand::rng();
    let suffix: String = (0..crate::stamp::claims::GENERATED_SUFFIX)
        .map(|_| char::from(NAME_ALPHABET[rng.random_range(0..NAME_ALPHABET.len())]))
        .collect();
    format!("{}{suffix}", &base[..cut])
}

/// What the API server does to a new object between the mutating and the validating webhooks:
/// the generated name, `uid`, `creationTimestamp`, and `generation` 1 for a custom resource
/// (k8s.io/apiextensions-apiserver `pkg/registry/customresource/strategy.go`, `PrepareForCreate`).
fn finish_create(obj: &mut Value) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        if let Some(base) = meta.get("generateName").and_then(Value::as_str) {
            let generated = generated_name(base);
            meta.insert("name".into(), json!(generated));
        }
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert(
        "creationTimestamp".into(),
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    );
    meta.insert("generation".into(), json!(1));
}

/// The AdmissionRequest the API server would send for `obj`.
pub fn request_for(obj: &Value, old: Option<&Value>, o: &Options) -> Value {
    let api = obj["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api.split_once('/').unwrap_or(("", api));
    let kind = obj["kind"].as_str().unwrap_or_default();
    let ns = o
        .namespace
        .clone()
        .or_else(|| obj["metadata"]["namespace"].as_str().map(String::from))
        .unwrap_or_else(|| "default".into());
    let mut object = obj.clone();
    if let Some(meta) = object["metadata"].as_object_mut() {
        if kind != "ClusterWorkflowTemplate" {
            meta.insert("namespace".into(), json!(ns));
        }
        if o.operation == "CREATE" {
            // System fields a client sent are wiped before admission (k8s.io/apiserver
            // `pkg/endpoints/handlers/create.go` → `rest.WipeObjectMetaSystemFields`).
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                meta.remove(k);
            }
        }
    }
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": plural(kind)});
    json!({
        "uid": uuid::Uuid::new_v4().to_string(),
        "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "name": obj["metadata"]["name"].as_str().unwrap_or_default(),
        "namespace": if kind == "ClusterWorkflowTemplate" { Value::Null } else { json!(ns) },
        "operation": o.operation,
        "userInfo": {"username": o.user, "groups": o.groups},
        "object": object, "oldObject": old, "dryRun": o.dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": if o.operation == "UPDATE" { "UpdateOptions" } else { "CreateOptions" }},
    })
}

fn client(ca: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .https_only(true)
        .use_rustls_tls();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading CA {}", ca.display()))?;
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).context("the CA file is not PEM")?);
    }
    Ok(b.build()?)
}

async fn call(c: &reqwest::Client, url: &str, request: &Value) -> anyhow::Result<Value> {
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
    let r = c
        .post(url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("calling {url}"))?;
    let status = r.status();
    let text = r.text().await?;
    if !status.is_success() {
        bail!("{url} answered {status}: {}", text.trim());
    }
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{url} did not answer JSON"))?;
    if v["response"]["uid"] != request["uid"] {
        bail!(
            "{url} answered for uid {} instead of {}",
            v["response"]["uid"],
            request["uid"]
        );
    }
    Ok(v["response"].clone())
}

fn decode_patch(response: &Value) -> anyhow::Result<Vec<Value>> {
    let Some(p) = response["patch"].as_str() else {
        return Ok(Vec::new());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(p)
        .context("patch is not base64")?;
    serde_json::from_slice(&bytes).context("patch is not a JSON Patch")
}

fn apply(obj: &mut Value, ops: &[Value]) -> anyhow::Result<()> {
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops.to_vec())).context("not an RFC 6902 patch")?;
    json_patch::patch(obj, &patch).context("the patch does not apply to the object")?;
    Ok(())
}

fn describe(op: &Value) -> String {
    let path = op["path"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches('/')
        .replace('/', ".")
        .replace("~1", "/")
        .replace("~0", "~");
    match op["op"].as_str() {
        Some("remove") => format!("- {path}"),
        _ => match &op["value"] {
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| format!("+ {path}.{k}: {}", short(v)))
                .collect::<Vec<_>>()
                .join("\n"),
            v => format!("+ {path}: {}", short(v)),
        },
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.len() > 72 {
        let mut cut = 69;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &s[..cut])
    } else {
        s
    }
}

/// The AdmissionRequests for `o.file`: its AdmissionReviews as they are, its manifests wrapped.
pub fn requests(o: &Options) -> anyhow::Result<Vec<Value>> {
    let docs = documents(&read(&o.file)?)?;
    if docs.is_empty() {
        bail!("{} holds no documents", o.file.display());
    }
    let old = match &o.old_file {
        Some(p) => documents(&read(p)?)?.into_iter().next(),
        None => None,
    };
    Ok(docs
        .into_iter()
        .map(|doc| {
            if doc["kind"] == "AdmissionReview" {
                doc["request"].clone()
            } else {
                request_for(&doc, old.as_ref(), o)
            }
        })
        .collect())
}

/// `name` or `generateName` of an object, for output.
pub fn title(obj: &Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .or(obj["metadata"]["generateName"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// Run the review; returns whether everything was allowed.
pub async fn run(o: &Options) -> anyhow::Result<bool> {
    let requests = requests(o)?;
    let c = client(o.ca.as_deref())?;
    let base = o.url.trim_end_matches('/');
    let (mutate, validate) = if base.ends_with("/validate") {
        (None, base.to_string())
    } else if base.ends_with("/mutate") {
        (Some(base.to_string()), String::new())
    } else {
        (Some(format!("{base}/mutate")), format!("{base}/validate"))
    };
    let mut all_allowed = true;
    let mut outputs = Vec::new();
    for request in requests {
        let title = format!(
            "{} {}",
            request["kind"]["kind"].as_str().unwrap_or("?"),
            request["object"]["metadata"]["name"]
                .as_str()
                .or(request["object"]["metadata"]["generateName"].as_str())
                .unwrap_or("?")
        );
        let mut object = request["object"].clone();
        let mut responses = Vec::new();
        let mut ops = Vec::new();
        let mut allowed = true;
        // Every webhook call has a uid of its own, as kube-apiserver gives it.
        let fresh = |mut r: Value, object: &Value| {
            r["uid"] = json!(uuid::Uuid::new_v4().to_string());
            r["object"] = object.clone();
            r["name"] = json!(object["metadata"]["name"].as_str().unwrap_or_default());
            r
        };
        if let Some(url) = &mutate {
            let r = call(&c, url, &fresh(request.clone(), &object)).await?;
            allowed &= r["allowed"].as_bool() == Some(true);
            ops = decode_patch(&r)?;
            if allowed {
                apply(&mut object, &ops)?;
            }
            responses.push(json!({"webhook": "mutate", "response": r}));
        }
        if allowed && request["operation"] == "CREATE" {
            finish_create(&mut object);
        }
        if allowed && !validate.is_empty() {
            let r = call(&c, &validate, &fresh(request.clone(), &object)).await?;
            allowed &= r["allowed"].as_bool() == Some(true);
            responses.push(json!({"webhook": "validate", "response": r}));
        }
        all_allowed &= allowed;
        if o.json {
            outputs.push(json!({"object": title, "allowed": allowed, "responses": responses, "patchedObject": object}));
            continue;
        }
        println!("{} {title}", if allowed { "ALLOWED" } else { "DENIED " });
        for r in responses.iter().map(|r| &r["response"]) {
            if let Some(m) = r["status"]["message"].as_str() {
                println!("  {m}");
            }
            for w in r["warnings"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                println!("  warning: {w}");
            }
        }
        let audit = responses
            .last()
            .map(|r| r["response"]["auditAnnotations"].clone())
            .unwrap_or(Value::Null);
        if let Some(a) = audit.as_object().filter(|a| !a.is_empty()) {
            let list: Vec<String> = a.iter().map(|(k, v)| format!("{k}={}", short(v))).collect();
            println!("  audit: {}", list.join(" "));
        }
        if allowed && !ops.is_empty() {
            println!("  stamp:");
            for op in &ops {
                for line in describe(op).lines() {
                    println!("    {line}");
                }
            }
        }
    }
    if o.json {
        println!("{}", serde_json::to_string_pretty(&outputs)?);
    }
    Ok(all_allowed)
}

/// `scimgate review` from its arguments: the dev CA by default, exit code 1 on a denial.
pub async fn command(a: crate::cli::ReviewArgs) -> anyhow::Result<()> {
    let ca = a.ca.clone().or_else(|| {
        let dev = Path::new(crate::config::DEFAULT_DATA_DIR).join("tls/ca.crt");
        dev.exists().then_some(dev)
    });
    let opts = Options {
        file: a.file,
        url: a.url,
        ca,
        user: a.user,
        groups: a.groups,
        operation: a.operation,
        old_file: a.old_file,
        namespace: a.namespace,
        dry_run: a.dry_run,
        json: a.output == crate::cli::Output::Json,
    };
    if run(&opts).await? {
        Ok(())
    } else {
        Err(Denied.into())
    }
}
