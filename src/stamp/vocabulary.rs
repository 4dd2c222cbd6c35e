//! The stamp's vocabulary: the one table action → annotation prefix → attestation field. Every
//! `scimgate.io/*` key scimgate writes or reads is spelled here and nowhere else; the stamper,
//! the `/validate` check, `audit verify` and `audit who` all read this table.

use crate::policy::Action;

/// The domain every key of ours lives under.
pub const PREFIX: &str = "scimgate.io/";

/// What one action writes on an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub action: Action,
    /// `submitted`, `approved`, `cancelled`, `updated`: the `<prefix>-by`, `-by-id`, `-at` keys.
    pub prefix: &'static str,
    /// The annotation (without [`PREFIX`]) holding the compact JWS over this action's stamp.
    pub attestation: &'static str,
    /// The annotation (without [`PREFIX`]) holding `allow:<rule>` or `dry-run-deny:<rule>`.
    pub decision: &'static str,
    /// What people call the event (`audit who`).
    pub event: &'static str,
    /// The annotation (without [`PREFIX`]) naming the person whose rights carried an agent's
    /// action (their userName; the attestation has their SCIM id too).
    pub on_behalf_of: &'static str,
}

/// Submit first: later stamps add to it and leave it as it was.
pub const TABLE: [Entry; 4] = [
    Entry {
        action: Action::Submit,
        prefix: "submitted",
        on_behalf_of: "on-behalf-of",
        attestation: "attestation",
        decision: "decision",
        event: "submitted",
    },
    Entry {
        action: Action::Approve,
        prefix: "approved",
        on_behalf_of: "approved-on-behalf-of",
        attestation: "approval-attestation",
        decision: "approved-decision",
        event: "approved",
    },
    Entry {
        action: Action::Cancel,
        prefix: "cancelled",
        on_behalf_of: "cancelled-on-behalf-of",
        attestation: "cancel-attestation",
        decision: "cancelled-decision",
        event: "cancelled",
    },
    Entry {
        action: Action::Update,
        prefix: "updated",
        on_behalf_of: "updated-on-behalf-of",
        attestation: "update-attestation",
        decision: "updated-decision",
        event: "updated",
    },
];

/// Only on the submit stamp: the person's SCIM groups at the time.
pub const SUBMITTED_GROUPS: &str = "scimgate.io/submitted-groups";
/// Only on the submit stamp of a run a controller started for an owner whose spec someone else
/// changed since it was submitted: the owner's submitter (the run itself is the changer's).
pub const OWNER_SUBMITTED_BY: &str = "scimgate.io/owner-submitted-by";
/// Labels the submit stamp sets, for server-side selection (`-l scimgate.io/submitted-by=…`).
pub const LABEL_BY: &str = "scimgate.io/submitted-by";
pub const LABEL_BY_ID: &str = "scimgate.io/submitted-by-id";

/// Offboarding's stamp (`stamp::offboard`), no action of a person: scimgate's own service
/// account suspended or cancelled the object because the person behind it departed. The
/// attestation, and the two annotations people read beside it (who departed and how; when).
pub const OFFBOARD_ATTESTATION: &str = "scimgate.io/offboard-attestation";
pub const OFFBOARDED: &str = "scimgate.io/offboarded";
pub const OFFBOARDED_AT: &str = "scimgate.io/offboarded-at";

impl Entry {
    /// The submit stamp's entry, the one every run has.
    pub const SUBMIT: &'static Entry = &TABLE[0];

    /// The entry of an action that stamps; a delete leaves no object to stamp.
    pub fn of(action: Action) -> Option<&'static Entry> {
        match action {
            Action::Submit => Some(&TABLE[0]),
            Action::Approve => Some(&TABLE[1]),
            Action::Cancel => Some(&TABLE[2]),
            Action::Update => Some(&TABLE[3]),
            Action::Delete => None,
        }
    }

    /// The full annotation key of this action's attestation.
    pub fn attestation_key(&self) -> String {
        format!("{PREFIX}{}", self.attestation)
    }
    pub fn decision_key(&self) -> String {
        format!("{PREFIX}{}", self.decision)
    }
    pub fn by_key(&self) -> String {
        format!("{PREFIX}{}-by", self.prefix)
    }
    pub fn by_id_key(&self) -> String {
        format!("{PREFIX}{}-by-id", self.prefix)
    }
    pub fn at_key(&self) -> String {
        format!("{PREFIX}{}-at", self.prefix)
    }
    pub fn on_behalf_of_key(&self) -> String {
        format!("{PREFIX}{}", self.on_behalf_of)
    }
}

impl Entry {
    /// Whether `key` is one of the annotations this action's stamp writes.
    pub fn owns(&self, key: &str) -> bool {
        [
            self.attestation_key(),
            self.decision_key(),
            self.by_key(),
            self.by_id_key(),
            self.at_key(),
            self.on_behalf_of_key(),
        ]
        .iter()
        .any(|k| k == key)
            || (self.action == Action::Submit && (key == SUBMITTED_GROUPS || key == OWNER_SUBMITTED_BY))
    }
}

/// Whether a label or annotation key is ours.
pub fn is_ours(key: &str) -> bool {
    key.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_one_entry_and_keys_do_not_collide() {
        let mut keys = std::collections::BTreeSet::new();
        for e in &TABLE {
            assert_eq!(Entry::of(e.action), Some(e));
            for k in [
                e.attestation_key(),
                e.decision_key(),
                e.by_key(),
                e.by_id_key(),
                e.at_key(),
                e.on_behalf_of_key(),
            ] {
                assert!(is_ours(&k));
                assert!(keys.insert(k.clone()), "{k} spelled twice");
            }
        }
        for k in [
            SUBMITTED_GROUPS,
            OWNER_SUBMITTED_BY,
            OFFBOARD_ATTESTATION,
            OFFBOARDED,
            OFFBOARDED_AT,
        ] {
            assert!(is_ours(k) && !keys.contains(k), "{k}");
            assert!(TABLE.iter().all(|e| !e.owns(k) || e.action == Action::Submit), "{k}");
        }
    }
}
