//! The report kinds on the emulator's HTTP face (`kube_face`): OpenReports (`openreports.io/
//! v1alpha1` `reports`, `clusterreports`) and PolicyReports (`wgpolicyk8s.io/v1alpha2`
//! `policyreports`, `clusterpolicyreports`), each served only once a test installs its CRDs
//! (`Reports::install`), as on a cluster without them — and the Lease whose holder writes them
//! (`coordination.k8s.io/v1` `leases`, always served) — API discovery (`GET /apis/<group>/
//! <version>`, an `APIResourceList`; apiserver pkg/endpoints/discovery/version.go) says which.
//! GET, LIST (label selector equality), POST (409 on an existing name) and PUT (409 on a stale
//! `resourceVersion`; registry/store.go `Create`, `Update`) of documents kept apart from the
//! emulator's store: no webhook of ours sees them.
//!
//! Every write is validated against the CRD's `openAPIV3Schema` from `tests/fixtures/
//! report-crds` (apiextensions-apiserver validates custom resources against it and answers 422,
//! `Invalid`), and — stricter than the API server, which would silently prune them — a field
//! the schema does not know is refused too, so nothing scimgate writes is lost on a cluster.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// `(group, plural)` → (kind, namespaced) of the four report kinds.
pub fn kind(group: &str, plural: &str) -> Option<(&'static str, bool)> {
    match (group, plural) {
        ("openreports.io", "reports") => Some(("Report", true)),
        ("openreports.io", "clusterreports") => Some(("ClusterReport", false)),
        ("wgpolicyk8s.io", "policyreports") => Some(("PolicyReport", true)),
        ("wgpolicyk8s.io", "clusterpolicyreports") => Some(("ClusterPolicyReport", false)),
        // The writer's Lease (built in: served on every cluster, no CRD to validate against).
        ("coordination.k8s.io", "leases") => Some(("Lease", true)),
        _ => None,
    }
}

/// `(group, plural, namespace, name)`.
type Key = (String, String, String, String);

/// What the face holds of the report kinds.
#[derive(Default)]
pub struct Reports {
    /// The group/versions whose CRDs are installed.
    served: Mutex<BTreeSet<String>>,
    stored: Mutex<BTreeMap<Key, Value>>,
    version: Mutex<u64>,
}

/// A failed request: code, reason, message.
pub type Failure = (u16, &'static str, String);

impl Reports {
    /// Install the CRDs of `api_version` (`openreports.io/v1alpha1` or `wgpolicyk8s.io/v1alpha2`).
    pub fn install(&self, api_version: &str) {
        self.served.lock().expect("served").insert(api_version.to_string());
    }

    /// Every stored report (not the Leases).
    pub fn all(&self) -> Vec<Value> {
        let stored = self.stored.lock().expect("stored");
        stored.values().filter(|d| d["kind"] != "Lease").cloned().collect()
    }

    /// The Lease `namespace/name`, if any.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        let key = (
            "coordination.k8s.io".into(),
            "leases".into(),
            namespace.into(),
            name.into(),
        );
        self.stored.lock().expect("stored").get(&key).cloned()
    }

    fn serves(&self, group: &str, version: &str) -> bool {
        (group, version) == ("coordination.k8s.io", "v1")
            || self
                .served
                .lock()
                .expect("served")
                .contains(&format!("{group}/{version}"))
    }

    /// `GET /apis/<group>/<version>`: the resources of a served report group/version.
    pub fn discovery(&self, group: &str, version: &str) -> Option<Value> {
        if !self.serves(group, version) {
            return None;
        }
        let resources: Vec<Value> = ["reports", "clusterreports", "policyreports", "clusterpolicyreports"]
            .into_iter()
            .filter_map(|plural| kind(group, plural).map(|k| (plural, k)))
            .map(|(plural, (kind, namespaced))| {
                json!({"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind,
                    "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]})
            })
            .collect();
        Some(json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": format!("{group}/{version}"), "resources": resources}))
    }

    fn known(&self, group: &str, version: &str, plural: &str) -> Result<(&'static str, bool), Failure> {
        match kind(group, plural) {
            Some(k) if self.serves(group, version) => Ok(k),
            _ => Err((
                404,
                "NotFound",
                "the server could not find the requested resource".into(),
            )),
        }
    }

    pub fn get(&self, group: &str, version: &str, plural: &str, ns: &str, name: &str) -> Result<Value, Failure> {
        self.known(group, version, plural)?;
        let key = (group.to_string(), plural.to_string(), ns.to_string(), name.to_string());
        self.stored
            .lock()
            .expect("stored")
            .get(&key)
            .cloned()
            .ok_or_else(|| (404, "NotFound", format!("{plural}.{group} \"{name}\" not found")))
    }

    /// A `<Kind>List` of the documents in `ns` (every namespace with `None`) whose labels have
    /// every `key=value` of `labels`.
    pub fn list(
        &self,
        (group, version, plural): (&str, &str, &str),
        ns: Option<&str>,
        labels: &[(String, Option<String>)],
    ) -> Result<Value, Failure> {
        let (kind, _) = self.known(group, version, plural)?;
        let has = |o: &Value, (k, v): &(String, Option<String>)| match (&o["metadata"]["labels"][k], v) {
            (Value::String(here), Some(want)) => here == want,
            (Value::String(_), None) => true,
            _ => false,
        };
        let items: Vec<Value> = self
            .stored
            .lock()
            .expect("stored")
            .iter()
            .filter(|((g, p, n, _), o)| {
                g == group && p == plural && ns.is_none_or(|ns| ns == n) && labels.iter().all(|l| has(o, l))
            })
            .map(|(_, o)| o.clone())
            .collect();
        let rv = self.version.lock().expect("version").to_string();
        Ok(
            json!({"apiVersion": format!("{group}/{version}"), "kind": format!("{kind}List"),
            "metadata": {"resourceVersion": rv}, "items": items}),
        )
    }

    /// POST (`replace: false`) or PUT of `doc` as `ns/name`.
    pub fn write(
        &self,
        (group, version, plural): (&str, &str, &str),
        ns: &str,
        name: Option<&str>,
        mut doc: Value,
        replace: bool,
    ) -> Result<Value, Failure> {
        let (kind, namespaced) = self.known(group, version, plural)?;
        if namespaced == ns.is_empty() {
            return Err((404, "NotFound", format!("{plural}.{group}: wrong scope")));
        }
        let name = name
            .map(str::to_string)
            .or_else(|| doc["metadata"]["name"].as_str().map(str::to_string))
            .unwrap_or_default();
        if doc["kind"] != kind || doc["apiVersion"] != format!("{group}/{version}") {
            return Err((
                400,
                "BadRequest",
                format!("the object is not a {group}/{version} {kind}"),
            ));
        }
        if let Err(why) = if kind == "Lease" { Ok(()) } else { validate(&doc) } {
            return Err((422, "Invalid", format!("{kind}.{group} \"{name}\" is invalid: {why}")));
        }
        let key = (group.to_string(), plural.to_string(), ns.to_string(), name.clone());
        let mut stored = self.stored.lock().expect("stored");
        let before = stored.get(&key);
        match (replace, before) {
            (false, Some(_)) => return Err((409, "AlreadyExists", format!("{plural}.{group} \"{name}\" already exists"))),
            (true, None) => return Err((404, "NotFound", format!("{plural}.{group} \"{name}\" not found"))),
            (true, Some(b)) if b["metadata"]["resourceVersion"] != doc["metadata"]["resourceVersion"] => {
                return Err((409, "Conflict", format!(
                    "Operation cannot be fulfilled on {plural}.{group} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                )))
            }
            _ => {}
        }
        let mut version = self.version.lock().expect("version");
        *version += 1;
        doc["metadata"]["resourceVersion"] = json!(version.to_string());
        doc["metadata"]["name"] = json!(name);
        if namespaced {
            doc["metadata"]["namespace"] = json!(ns);
        }
        stored.insert(key, doc.clone());
        Ok(doc)
    }
}

/// Whether `doc` is valid under its kind's CRD schema, unknown fields refused; why not.
pub fn validate(doc: &Value) -> Result<(), String> {
    static SCHEMAS: std::sync::OnceLock<BTreeMap<(String, String), jsonschema::Validator>> = std::sync::OnceLock::new();
    let schemas = SCHEMAS.get_or_init(load);
    let key = (
        doc["apiVersion"].as_str().unwrap_or_default().to_string(),
        doc["kind"].as_str().unwrap_or_default().to_string(),
    );
    let validator = schemas.get(&key).ok_or_else(|| format!("no CRD for {key:?}"))?;
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn load() -> BTreeMap<(String, String), jsonschema::Validator> {
    use serde::Deserialize;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report-crds");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).expect("report CRDs").flatten() {
        if e.path().extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).expect("read");
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let Ok(crd) = Value::deserialize(doc) else { continue };
            let group = crd["spec"]["group"].as_str().unwrap_or_default();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
            for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
                let Some(schema) = v.pointer("/schema/openAPIV3Schema") else {
                    continue;
                };
                let mut schema = schema.clone();
                no_unknown_fields(&mut schema);
                let api = format!("{group}/{}", v["name"].as_str().unwrap_or_default());
                let validator = jsonschema::validator_for(&schema).expect("a valid schema");
                out.insert((api, kind.to_string()), validator);
            }
        }
    }
    assert!(
        out.len() >= 4,
        "the four report kinds: {:?}",
        out.keys().collect::<Vec<_>>()
    );
    out
}

/// Where a structural schema lists an object's properties, fields beyond them would be pruned by
/// the API server: refuse them instead (`metadata` is the API server's own, left open).
fn no_unknown_fields(schema: &mut Value) {
    let Some(m) = schema.as_object_mut() else { return };
    if m.contains_key("properties")
        && !m.contains_key("additionalProperties")
        && m.get("x-kubernetes-preserve-unknown-fields") != Some(&Value::Bool(true))
    {
        m.insert("additionalProperties".into(), Value::Bool(false));
    }
    for (k, v) in m.iter_mut() {
        match k.as_str() {
            "properties" => {
                for (name, p) in v.as_object_mut().into_iter().flatten() {
                    if name != "metadata" {
                        no_unknown_fields(p);
                    }
                }
            }
            "items" | "additionalProperties" => no_unknown_fields(v),
            _ => {}
        }
    }
}
