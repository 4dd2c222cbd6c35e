//! A digest of JSON that does not depend on how it was serialised: SHA-256 over a canonical form
//! (object keys sorted by their UTF-8 bytes, no whitespace, strings and numbers as serde_json
//! writes them). kube-apiserver re-encodes an object between the webhook calls of one request
//! (custom resources are Go maps, written with sorted keys), so the same object must digest the
//! same whatever order its keys arrive in. Linear in the value but for the key sorts.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The digest of `parts`, in order (each part framed, so `[a, b]` and `[ab]` differ), hex. Each
/// part is a value and the keys of its top-level object left out.
pub fn of(parts: &[(Option<&Value>, &[&str])]) -> String {
    let mut h = Sha256::new();
    for (p, skip) in parts {
        match p {
            Some(v) => {
                h.update(b"+");
                canonical(v, skip, &mut h);
            }
            None => h.update(b"-"),
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in h.finalize() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// The hasher as a byte sink, so serde_json writes scalars and keys straight into it.
struct Sink<'a>(&'a mut Sha256);

impl std::io::Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn canonical(v: &Value, skip: &[&str], h: &mut Sha256) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().filter(|k| !skip.contains(&k.as_str())).collect();
            keys.sort_unstable();
            h.update(b"{");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    h.update(b",");
                }
                // The key as a JSON string, as `scalar` would write it, without a copy.
                let _ = serde_json::to_writer(Sink(h), k.as_str());
                h.update(b":");
                if let Some(x) = m.get(k) {
                    canonical(x, &[], h);
                }
            }
            h.update(b"}");
        }
        Value::Array(a) => {
            h.update(b"[");
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    h.update(b",");
                }
                canonical(x, &[], h);
            }
            h.update(b"]");
        }
        other => scalar(other, h),
    }
}

fn scalar(v: &Value, h: &mut Sha256) {
    // serde_json writes a scalar infallibly; the sink never fails.
    let _ = serde_json::to_writer(Sink(h), v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter_content_does() {
        let a: Value = serde_json::from_str(r#"{"b": [1, {"y": 2, "x": "é"}], "a": null}"#).expect("json");
        let b: Value = serde_json::from_str(r#"{"a": null, "b": [1, {"x": "é", "y": 2}]}"#).expect("json");
        let one = |v: &Value| of(&[(Some(v), &[])]);
        assert_eq!(one(&a), one(&b));
        // The canonical form is serde_json's compact text of sorted keys, behind `+`: stamps
        // already in clusters carry digests of it (sha256 of `+{"a":null,"b":[1,{"x":"é","y":2}]}`).
        assert_eq!(
            one(&a),
            "2e0f619370af77dbdaf6a4e23f856a644a4f3171c47600c92d9dfe49080c2eca"
        );
        assert_ne!(one(&a), one(&json!({"a": null, "b": [1, {"x": "e", "y": 2}]})));
        assert_ne!(one(&json!([1, 2])), one(&json!([2, 1])));
        assert_ne!(of(&[(Some(&a), &[]), (None, &[])]), of(&[(None, &[]), (Some(&a), &[])]));
        // Left-out keys do not count, at the top only.
        assert_eq!(
            of(&[(Some(&json!({"a": 1, "m": 2})), &["m"])]),
            of(&[(Some(&json!({"a": 1, "m": 3})), &["m"])])
        );
        assert_ne!(
            of(&[(Some(&json!({"a": {"m": 1}})), &["m"])]),
            of(&[(Some(&json!({"a": {"m": 2}})), &["m"])])
        );
    }
}
