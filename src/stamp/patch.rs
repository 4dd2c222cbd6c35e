//! The JSON Patch (RFC 6902) operations that put our keys on an object, and the label-safe form of
//! a value. Touches only `scimgate.io/*` keys (and, when asked, Argo's creator labels).

use super::vocabulary::is_ours;
use serde_json::{json, Map, Value};

/// A label value: at most 63 characters of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
pub fn label_safe(s: &str) -> String {
    let mapped: String = s
        .replace('@', ".at.")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cut: String = mapped.chars().take(63).collect();
    cut.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

/// JSON Pointer escaping of one key (RFC 6901).
pub fn pointer_key(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

/// More removals than this in one map are one `replace` of the map instead.
const MAX_REMOVES: usize = 32;

/// Patch operations that make `metadata.<field>` (annotations or labels) equal `want` for our
/// keys, removing any other `scimgate.io/*` key, and leaving foreign keys alone.
pub fn patch_map(object: &Value, field: &str, want: &Map<String, Value>) -> Vec<Value> {
    let current = object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_object);
    let Some(current) = current else {
        if want.is_empty() {
            return Vec::new();
        }
        return vec![json!({"op": "add", "path": format!("/metadata/{field}"), "value": want})];
    };
    let gone = current.keys().filter(|k| is_ours(k) && !want.contains_key(*k)).count();
    if gone > MAX_REMOVES {
        // Many keys of ours to drop (someone sent thousands): one replace of the whole map,
        // foreign keys kept, rather than a patch as long as the object.
        let mut whole: Map<String, Value> = current
            .iter()
            .filter(|(k, _)| !is_ours(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        whole.extend(want.iter().map(|(k, v)| (k.clone(), v.clone())));
        return vec![json!({"op": "replace", "path": format!("/metadata/{field}"), "value": whole})];
    }
    let mut ops = Vec::new();
    for k in current.keys().filter(|k| is_ours(k) && !want.contains_key(*k)) {
        ops.push(json!({"op": "remove", "path": format!("/metadata/{field}/{}", pointer_key(k))}));
    }
    for (k, v) in want {
        if current.get(k) != Some(v) {
            ops.push(json!({"op": "add", "path": format!("/metadata/{field}/{}", pointer_key(k)), "value": v}));
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_safe() {
        assert_eq!(label_safe("alice@example.com"), "alice.at.example.com");
        assert_eq!(label_safe(&"x".repeat(80)).len(), 63);
        assert_eq!(label_safe("-a b-"), "a_b");
    }

    #[test]
    fn patches_touch_only_our_keys() {
        let obj = json!({"metadata": {"annotations": {"scimgate.io/old": "x", "team": "ml", "scimgate.io/keep": "k"}}});
        let mut want = Map::new();
        want.insert("scimgate.io/keep".into(), json!("k"));
        want.insert("scimgate.io/new".into(), json!("n"));
        let ops = patch_map(&obj, "annotations", &want);
        assert_eq!(
            ops,
            vec![
                json!({"op": "remove", "path": "/metadata/annotations/scimgate.io~1old"}),
                json!({"op": "add", "path": "/metadata/annotations/scimgate.io~1new", "value": "n"}),
            ]
        );
        assert_eq!(
            patch_map(&json!({"metadata": {}}), "labels", &want)[0]["path"],
            "/metadata/labels"
        );
        // Thousands of ours to drop: one replace keeping the foreign keys.
        let mut many: Map<String, Value> = (0..1000).map(|i| (format!("scimgate.io/x{i}"), json!("v"))).collect();
        many.insert("team".into(), json!("ml"));
        let ops = patch_map(&json!({"metadata": {"labels": many}}), "labels", &want);
        assert_eq!(
            ops,
            vec![json!({"op": "replace", "path": "/metadata/labels",
                "value": {"team": "ml", "scimgate.io/keep": "k", "scimgate.io/new": "n"}})]
        );
    }
}
