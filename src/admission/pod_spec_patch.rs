//! The service account an Argo `podSpecPatch` gives a pod, read the way Argo applies the patch.
//!
//! argo-workflows `workflow/util/util.go` `ApplyPodSpecPatch`: the patch text goes through
//! sigs.k8s.io/yaml (go-yaml v2, YAML 1.1: merge keys `<<`, tags such as `!!binary`) into JSON,
//! is strategic-merge-patched over the pod spec's JSON (`$patch` directives, `null` deletes a
//! key), and the result is decoded with Go's `encoding/json` — which matches a key to a field
//! ignoring case, with Unicode simple folding (`ServiceAccountName`, `ſerviceAccountName` and
//! `SERVICEACCOUNTNAME` all set `serviceAccountName`; which of several wins depends on the order
//! of keys after the merge). Rather than replay all of that, a patch whose account cannot be read
//! exactly is *unreadable*: it yields an account name that no `runAs` pattern but `*` matches,
//! and the denial says why.

use crate::admission::go_json;
use serde_yaml_ng::Value as Yaml;

/// PodSpec's fields naming the pod's service account; `serviceAccount` is the deprecated alias
/// (k8s.io/api `core/v1/types.go` `DeprecatedServiceAccount`).
const ACCOUNT_FIELDS: [&str; 2] = ["serviceAccountName", "serviceAccount"];

/// The account a pod runs as when its spec names none.
const DEFAULT: &str = "default";

/// The accounts `patch` sets (none when it leaves the pod's account alone), or the unreadable
/// marker naming why.
pub fn accounts(patch: &str) -> Vec<String> {
    match read(patch) {
        Ok(v) => v,
        Err(why) => vec![unreadable(&why)],
    }
}

/// The account name standing for a patch scimgate cannot read: no `runAs` pattern but `*`
/// matches it (patterns are Kubernetes names; this has spaces and parentheses).
pub fn unreadable(why: &str) -> String {
    format!("(podSpecPatch that scimgate cannot read: {why})")
}

fn read(patch: &str) -> Result<Vec<String>, String> {
    if patch.trim().is_empty() {
        return Ok(Vec::new());
    }
    // Templated text is substituted at run time: it could say anything.
    if patch.contains("{{") {
        return Err("it is templated ({{…}})".into());
    }
    let doc: Yaml = serde_yaml_ng::from_str(patch).map_err(|_| "it does not parse as YAML or JSON".to_string())?;
    plain(patch, &doc)?;
    let m = match doc {
        Yaml::Mapping(m) => m,
        Yaml::Null => return Ok(Vec::new()),
        _ => return Err("it is not a mapping".into()),
    };
    let mut out = Vec::new();
    for (k, v) in &m {
        let Yaml::String(k) = k else {
            return Err("it has a key that is not a string".into());
        };
        if k.starts_with('$') {
            return Err(format!("it has the strategic-merge directive '{k}'"));
        }
        if let Some(field) = go_json::folds_to(k, &ACCOUNT_FIELDS) {
            if k != field {
                return Err(format!(
                    "its key '{k}' is read by Argo as '{field}' (Go matches keys ignoring case)"
                ));
            }
            match v {
                Yaml::String(s) if !s.is_empty() => out.push(s.clone()),
                // `null` deletes the key: the pod falls back to the default account.
                Yaml::Null => out.push(DEFAULT.to_string()),
                Yaml::String(_) => {}
                _ => return Err(format!("its '{k}' is not a string")),
            }
        }
    }
    Ok(out)
}

/// Refuse what go-yaml v2 would read differently from us: merge keys (`<<`, which pull another
/// mapping's keys in) and tags (`!!binary` decodes base64 into a key, `!!merge` makes a merge
/// key). Our parser resolves the standard tags silently, so tags are found by their one
/// character: a tag's `!` is not content, so every `!` of the text must reappear in a parsed
/// string (comments and anchors holding one are refused too, harmlessly), and no escape may
/// make a `!` the text does not show. Aliases are resolved alike by both parsers. Linear in
/// the document.
fn plain(text: &str, doc: &Yaml) -> Result<(), String> {
    fn walk(v: &Yaml, bangs: &mut usize) -> Result<(), String> {
        match v {
            Yaml::Tagged(t) => Err(format!("it uses the YAML tag {}", t.tag)),
            Yaml::String(s) => {
                *bangs += s.matches('!').count();
                Ok(())
            }
            Yaml::Sequence(s) => s.iter().try_for_each(|x| walk(x, bangs)),
            Yaml::Mapping(m) => m.iter().try_for_each(|(k, v)| {
                if matches!(k, Yaml::String(s) if s == "<<") {
                    return Err("it uses a YAML merge key (<<)".into());
                }
                walk(k, bangs)?;
                walk(v, bangs)
            }),
            _ => Ok(()),
        }
    }
    let mut bangs = 0;
    walk(doc, &mut bangs)?;
    let escaped = ["\\x21", "\\u0021", "\\U00000021"].iter().any(|e| text.contains(e));
    if escaped || text.matches('!').count() != bangs {
        return Err("it may use a YAML tag (!…)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreadable_because(patch: &str, why: &str) {
        let got = accounts(patch);
        assert!(
            got.len() == 1 && got[0].starts_with("(podSpecPatch") && got[0].contains(why),
            "{patch:?} → {got:?}, expected unreadable because {why}"
        );
    }

    #[test]
    fn exact_keys_are_read_as_written() {
        assert_eq!(accounts("serviceAccountName: ml-runner\n"), vec!["ml-runner"]);
        assert_eq!(accounts(r#"{"serviceAccount": "old"}"#), vec!["old"]);
        assert_eq!(
            accounts("containers:\n- name: main\n  resources: {limits: {cpu: '1'}}\n"),
            Vec::<String>::new()
        );
        assert_eq!(accounts(""), Vec::<String>::new());
        assert_eq!(
            accounts("serviceAccountName: null\n"),
            vec!["default"],
            "null deletes the key"
        );
    }

    /// Every variant the second review used to run a pod as another account.
    #[test]
    fn keys_go_folds_merge_keys_tags_and_directives_are_unreadable() {
        for key in [
            "ServiceAccountName",
            "SERVICEACCOUNTNAME",
            "serviceaccountname",
            "\u{17f}erviceAccountName",
            "\u{17f}ERVICEACCOUNT",
            "ServiceAccount",
        ] {
            unreadable_because(&format!("{{\"{key}\": \"cluster-admin\"}}"), "read by Argo as");
            unreadable_because(&format!("{key}: cluster-admin\n"), "read by Argo as");
        }
        unreadable_because("\"\\u017ferviceAccountName\": cluster-admin\n", "read by Argo as");
        unreadable_because("<<: {serviceAccountName: cluster-admin}\n", "merge key");
        unreadable_because(
            "base: &b {serviceAccountName: cluster-admin}\nspec:\n  <<: *b\n",
            "merge key",
        );
        unreadable_because("? !!binary c2VydmljZUFjY291bnROYW1l\n: cluster-admin\n", "tag");
        unreadable_because("!!merge <<: {serviceAccountName: cluster-admin}\n", "merge key");
        unreadable_because("a: \"x\\x21\"\nb: !!str c\n", "tag");
        // A `!` that is content is no tag.
        assert_eq!(
            accounts("serviceAccountName: ml-runner\nx: \"done!\"\ny: [a!b]\n"),
            vec!["ml-runner"]
        );
        unreadable_because("$patch: replace\nserviceAccountName: x\n", "directive");
        unreadable_because("serviceAccountName: \"{{inputs.parameters.sa}}\"\n", "templated");
        unreadable_because("{{inputs.parameters.patch}}", "templated");
        unreadable_because("serviceAccountName: [a]\n", "not a string");
        unreadable_because("- a\n", "not a mapping");
        unreadable_because("a: [\n", "does not parse");
        unreadable_because("serviceAccountName: a\nserviceAccountName: b\n", "does not parse");
    }
}
