//! Glob patterns for namespaces, service accounts and template names: `*` matches any run of
//! characters, `?` one character, everything else itself. Compiled once when the policy loads.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    /// Literal pieces between `*`s; `?` is kept as a one-character wildcard inside them.
    parts: Vec<Vec<char>>,
    /// The same pieces as bytes, when the pattern is ASCII: an ASCII text is then matched without
    /// decoding or allocating (the access reconciler matches every grant against every
    /// namespace at each change).
    ascii: Option<Vec<Vec<u8>>>,
    anchored_start: bool,
    anchored_end: bool,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("an empty pattern matches nothing; remove it or use \"*\"".into());
        }
        if pattern.chars().any(|c| matches!(c, '[' | ']' | '{' | '}' | '\\')) {
            return Err(format!("'{pattern}': only '*' and '?' are wildcards here"));
        }
        let pieces: Vec<&str> = pattern.split('*').filter(|p| !p.is_empty()).collect();
        Ok(Glob {
            source: pattern.to_string(),
            anchored_start: !pattern.starts_with('*'),
            anchored_end: !pattern.ends_with('*'),
            parts: pieces.iter().map(|p| p.chars().collect()).collect(),
            ascii: pattern
                .is_ascii()
                .then(|| pieces.iter().map(|p| p.as_bytes().to_vec()).collect()),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, text: &str) -> bool {
        match &self.ascii {
            Some(parts) if text.is_ascii() => self.matches_in(parts, text.as_bytes(), b'?'),
            _ => {
                let text: Vec<char> = text.chars().collect();
                self.matches_in(&self.parts, &text, '?')
            }
        }
    }

    /// `text` against the pieces, `any` standing for one element.
    fn matches_in<T: PartialEq + Copy>(&self, parts: &[Vec<T>], text: &[T], any: T) -> bool {
        if parts.is_empty() {
            // "*" (or "**"): anything; a pattern of only literals is covered below.
            return !self.anchored_start || text.is_empty();
        }
        let eq = |piece: &[T], at: usize| {
            piece
                .iter()
                .enumerate()
                .all(|(i, c)| *c == any || text.get(at + i) == Some(c))
        };
        let mut pos = 0;
        for (i, piece) in parts.iter().enumerate() {
            let first = i == 0;
            let last = i == parts.len() - 1;
            if first && self.anchored_start {
                if piece.len() > text.len() || !eq(piece, 0) {
                    return false;
                }
                pos = piece.len();
                if last && self.anchored_end {
                    return pos == text.len();
                }
                continue;
            }
            if last && self.anchored_end {
                if piece.len() > text.len() || text.len() - piece.len() < pos {
                    return false;
                }
                return eq(piece, text.len() - piece.len());
            }
            let mut found = None;
            let mut at = pos;
            while at + piece.len() <= text.len() {
                if eq(piece, at) {
                    found = Some(at);
                    break;
                }
                at += 1;
            }
            match found {
                Some(at) => pos = at + piece.len(),
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("ml-*", "ml-prod", true),
            ("ml-*", "ml-", true),
            ("ml-*", "xml-prod", false),
            ("*-prod", "payments-prod", true),
            ("*-prod", "payments-production", false),
            ("prod", "prod", true),
            ("prod", "prod2", false),
            ("*", "", true),
            ("*", "anything", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a*b*c", "abc", true),
            ("ci:el-*", "ci:el-github", true),
            ("team-?", "team-a", true),
            ("team-?", "team-ab", false),
            ("*mid*", "has-mid-dle", true),
            ("ab*ab", "ab", false),
            // Not ASCII: matched by character, `?` one character whatever its bytes.
            ("team-?", "team-é", true),
            ("é*", "école", true),
            ("é*", "ecole", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(Glob::new(p).map(|g| g.matches(t)), Ok(*want), "{p} ~ {t}");
        }
        assert!(Glob::new("").is_err() && Glob::new("a[bc]").is_err());
    }
}
