//! How Go's `encoding/json` matches an object's keys to a struct's fields: exactly first, else
//! ignoring case with Unicode simple folding (Go `encoding/json/fold.go` `foldName`: ASCII
//! letters upper-cased, every other rune mapped to the smallest rune of its `unicode.SimpleFold`
//! orbit). The field names we read are ASCII, and the only non-ASCII runes whose orbit reaches
//! ASCII are U+017F LATIN SMALL LETTER LONG S (→ `S`) and U+212A KELVIN SIGN (→ `K`), so folding
//! a key for comparison with an ASCII name needs nothing more.
//!
//! Argo decodes its objects with Go: the workflow-controller through the unstructured converter
//! (k8s.io/apimachinery `runtime/converter.go`: exact keys) *except* inside types with their own
//! `UnmarshalJSON` — every `steps` list (`ParallelSteps` in argo-workflows
//! `pkg/apis/workflow/v1alpha1/workflow_types.go`) and so every inline template in a step — and
//! whenever the converter fails on a number where a string belongs (`FromUnstructuredObj` in
//! `workflow/util/util.go` then decodes the whole object with `encoding/json`), which anyone
//! writing the object can cause. So any key of an Argo object may be folded onto a field.
//! Tekton decodes with client-go's case-sensitive decoder (sigs.k8s.io/json), so this is Argo's.

/// Go's fold of `key` for comparison with an ASCII name, or `None` when it holds a rune that no
/// ASCII letter folds with (it can match no ASCII field name).
fn fold(key: &str) -> Option<String> {
    key.chars()
        .map(|c| match c {
            'a'..='z' => Some(c.to_ascii_uppercase()),
            '\u{17f}' => Some('S'),
            '\u{212a}' => Some('K'),
            c if c.is_ascii() => Some(c),
            _ => None,
        })
        .collect()
}

/// The field of `fields` that Go would decode `key` into: the one it equals, else the one it
/// folds to. Linear in the key (the names are a handful of short constants).
pub fn folds_to<'f>(key: &str, fields: &[&'f str]) -> Option<&'f str> {
    if let Some(f) = fields.iter().find(|f| **f == key) {
        return Some(f);
    }
    // Cheap rejection first: folding never changes a key's length in characters, and the
    // names are ASCII.
    let n = key.chars().count();
    if !fields.iter().any(|f| f.len() == n) {
        return None;
    }
    let folded = fold(key)?;
    fields
        .iter()
        .find(|f| f.len() == n && f.to_ascii_uppercase() == folded)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_follows_go() {
        let f = ["serviceAccountName", "inline", "templateRef", "kind"];
        assert_eq!(folds_to("serviceAccountName", &f), Some("serviceAccountName"));
        assert_eq!(folds_to("ServiceAccountName", &f), Some("serviceAccountName"));
        assert_eq!(folds_to("\u{17f}erviceAccountName", &f), Some("serviceAccountName"));
        assert_eq!(folds_to("INLINE", &f), Some("inline"));
        assert_eq!(folds_to("TemplateREF", &f), Some("templateRef"));
        assert_eq!(folds_to("\u{212a}ind", &f), Some("kind"), "KELVIN SIGN folds with k");
        // Other look-alikes do not fold onto ASCII in Go.
        assert_eq!(folds_to("\u{131}nline", &f), None, "dotless i");
        assert_eq!(folds_to("\u{130}nline", &f), None, "dotted capital I");
        assert_eq!(folds_to("serviceAccountNam", &f), None);
        assert_eq!(folds_to("inline ", &f), None);
    }
}
