//! Identity-provider quirks, each normalised in one place and each switchable, so a provider that
//! later fixes its behaviour doesn't break us. All are on by default; the config file's
//! `scim.quirks` section turns single ones off.
//!
//! Which code consults which switch:
//! - `resource::normalize_value`: `string_booleans`
//! - `resource::normalize`: `ignore_unknown_schemas`
//! - `patch`: `case_insensitive_ops`, `members_remove_by_value`, `dotted_keys`,
//!   `ignore_read_only_in_patch`, `create_filtered_element`, `single_quoted_strings` (value filters
//!   in paths)
//! - `filter::Filter::compile_with`: `single_quoted_strings`

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Quirks {
    /// Entra ID: PATCH ops spelled `"Add"`, `"Replace"`, `"Remove"`.
    pub case_insensitive_ops: bool,
    /// Entra ID (without `aadOptscim062020`): booleans sent as `"True"`/`"False"`.
    pub string_booleans: bool,
    /// Entra ID: `{"op":"Remove","path":"members","value":[{"value":"id"}]}` removes only the listed
    /// members instead of clearing the group.
    pub members_remove_by_value: bool,
    /// Entra ID (with `aadOptscim062020`): path-less replace with keys like `name.givenName` or
    /// `urn:…:enterprise:2.0:User:employeeNumber`.
    pub dotted_keys: bool,
    /// Entra ID: its own schema URNs and `meta` in request bodies are dropped, not rejected.
    pub ignore_unknown_schemas: bool,
    /// Okta: a path-less replace whose value carries the read-only `id` (or `meta`, `schemas`) has
    /// those keys ignored instead of rejected with `mutability`.
    pub ignore_read_only_in_patch: bool,
    /// Entra ID: `replace emails[type eq "work"].value` on a user without a work email adds
    /// `{"type":"work","value":…}` instead of failing with `noTarget`.
    pub create_filtered_element: bool,
    /// draft-abbey-scim-agent-extension-00 (§5.1.2, §5.2.2): filter strings in single quotes,
    /// `name eq 'Helpdesk bot'`, read as the JSON string RFC 7644 §3.4.2.2 asks for.
    pub single_quoted_strings: bool,
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            case_insensitive_ops: true,
            string_booleans: true,
            members_remove_by_value: true,
            dotted_keys: true,
            ignore_unknown_schemas: true,
            ignore_read_only_in_patch: true,
            create_filtered_element: true,
            single_quoted_strings: true,
        }
    }
}

impl Quirks {
    /// The RFC and nothing else: every quirk off.
    pub fn strict() -> Self {
        Quirks {
            case_insensitive_ops: false,
            string_booleans: false,
            members_remove_by_value: false,
            dotted_keys: false,
            ignore_unknown_schemas: false,
            ignore_read_only_in_patch: false,
            create_filtered_element: false,
            single_quoted_strings: false,
        }
    }
}
