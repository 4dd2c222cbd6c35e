//! How names compare: userName, emails, group displayName — in uniqueness keys, indexes,
//! admission lookups, audit queries, policy names and SCIM filters on `caseExact: false`
//! attributes. One function, so what is written and what is looked up can never fold apart.

/// The case-insensitive form of a name: ASCII letters lower-cased, every other character kept.
///
/// ASCII only, not Unicode lower-casing: the identity providers compare these names that way, and
/// full lower-casing turns look-alikes into someone else — KELVIN SIGN (U+212A) becomes `k`, so
/// `\u{212A}ate@example.com` would be kate. RFC 7643 leaves the folding of `caseExact: false`
/// strings to the service provider.
pub fn fold(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Why `user_name` cannot be a userName, if it cannot: surrounding whitespace or a control
/// character makes a name that looks like another one (or like none) in every log and review.
pub fn user_name_problem(user_name: &str) -> Option<String> {
    if user_name.starts_with(char::is_whitespace) || user_name.ends_with(char::is_whitespace) {
        return Some(format!(
            "userName {user_name:?} has leading or trailing whitespace; send it trimmed"
        ));
    }
    user_name.chars().find(|c| c.is_control()).map(|c| {
        format!(
            "userName {user_name:?} contains the control character U+{:04X}; control characters are not allowed in a userName",
            u32::from(c)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_is_ascii_only() {
        assert_eq!(fold("KATE@Example.COM"), "kate@example.com");
        // Characters whose Unicode case mapping or folding lands in ASCII stay what they are:
        // KELVIN SIGN lower-cases to `k`, dotted capital I to `i` plus a combining dot, dotless i
        // and long s upper-case to `I` and `S` (and long s case-folds to `s`).
        for look_alike in ["\u{212A}ate", "\u{0130}van", "\u{0131}van", "\u{017F}am", "\u{212B}sa"] {
            assert_eq!(fold(look_alike), look_alike, "{look_alike:?}");
        }
        assert_eq!("\u{212A}ate".to_lowercase(), "kate");
        assert_ne!(fold("\u{212A}ATE"), fold("KATE"));
        assert_eq!(fold("Ärger"), "Ärger");
    }

    #[test]
    fn user_names_with_surrounding_whitespace_or_control_characters_are_refused() {
        for bad in [
            " kate@example.com",
            "kate@example.com\n",
            "kate@example.com ",
            "\tkate",
            "kate\u{00A0}",
            "ka\u{0000}te",
            "ka\u{001B}te",
            "ka\u{007F}te",
            "ka\u{0085}te",
        ] {
            assert!(user_name_problem(bad).is_some(), "{bad:?}");
        }
        for good in ["kate@example.com", "Kate Smith", "\u{212A}ate@example.com", "ärger"] {
            assert_eq!(user_name_problem(good), None, "{good:?}");
        }
        let detail = user_name_problem("ka\u{0007}te").unwrap_or_default();
        assert!(detail.contains("U+0007"), "{detail}");
    }
}
