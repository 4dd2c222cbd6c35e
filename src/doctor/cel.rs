//! The accounts a webhook's `matchConditions` name: every comparison of
//! `request.userInfo.username` with a string (`== '…'`) or a list of strings (`in ['…', …]`), and
//! the operation it is conjoined with (`request.operation == 'UPDATE' && …`), read from the CEL
//! text. Not a CEL evaluator: a tokenizer and the two forms manifests/base/webhooks.yaml writes.

/// One account named by a condition, and the operations it applies to (empty: any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    pub condition: String,
    pub operations: Vec<String>,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Str(String),
    /// An identifier or a dotted path (`request.userInfo.username`), or a number.
    Word(String),
    /// `==`, `!=`, `&&`, `||`, `<=`, `>=`, or one punctuation character.
    Op(String),
}

const USERNAME: &str = "request.userInfo.username";
const OPERATION: &str = "request.operation";

/// Every account `expression` (the condition named `condition`) compares the username with.
pub fn mentions(condition: &str, expression: &str) -> Vec<Mention> {
    let toks = tokenize(expression);
    let mut out = Vec::new();
    for i in 0..toks.len() {
        let usernames = match (&toks[i], toks.get(i + 1), toks.get(i + 2)) {
            (Tok::Word(w), Some(op), Some(rhs)) if w == USERNAME => compared(op, rhs, &toks[i + 2..]),
            (Tok::Str(s), Some(Tok::Op(op)), Some(Tok::Word(w))) if op == "==" && w == USERNAME => vec![s.clone()],
            _ => continue,
        };
        let operations = operations_before(&toks, i);
        out.extend(usernames.into_iter().map(|username| Mention {
            condition: condition.to_string(),
            operations: operations.clone(),
            username,
        }));
    }
    out
}

/// The strings after `username ==` or `username in [`.
fn compared(op: &Tok, rhs: &Tok, rest: &[Tok]) -> Vec<String> {
    match (op, rhs) {
        (Tok::Op(o), Tok::Str(s)) if o == "==" => vec![s.clone()],
        (Tok::Word(w), Tok::Op(b)) if w == "in" && b == "[" => string_list(&rest[1..]),
        _ => Vec::new(),
    }
}

/// `'a', 'b']`: the strings up to the closing bracket.
fn string_list(toks: &[Tok]) -> Vec<String> {
    let mut out = Vec::new();
    for t in toks {
        match t {
            Tok::Str(s) => out.push(s.clone()),
            Tok::Op(o) if o == "," => {}
            _ => break,
        }
    }
    out
}

/// The operations the term at `at` is conjoined with: walking back through its conjunction and
/// the groups that enclose it, `request.operation == 'X'` or `request.operation in ['X', …]`. A
/// `||` ends the conjunction within its group (the search goes on outside the group, whose
/// conjuncts still apply); nested groups before the term are skipped.
fn operations_before(toks: &[Tok], at: usize) -> Vec<String> {
    let mut depth = 0usize;
    let mut skipping = false;
    for j in (0..at).rev() {
        match &toks[j] {
            Tok::Op(o) if matches!(o.as_str(), ")" | "]" | "}") => depth += 1,
            Tok::Op(o) if matches!(o.as_str(), "(" | "[" | "{") => match depth {
                0 => skipping = false,
                _ => depth -= 1,
            },
            Tok::Op(o) if o == "||" && depth == 0 => skipping = true,
            Tok::Word(w) if w == OPERATION && depth == 0 && !skipping => {
                if let (Some(op), Some(rhs)) = (toks.get(j + 1), toks.get(j + 2)) {
                    return compared(op, rhs, &toks[j + 2..]);
                }
            }
            _ => {}
        }
    }
    Vec::new()
}

fn tokenize(text: &str) -> Vec<Tok> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let (s, next) = string(&chars, i);
            toks.push(Tok::Str(s));
            i = next;
        } else if c.is_alphanumeric() || c == '_' || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            toks.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = if ["==", "!=", "&&", "||", "<=", ">="].contains(&two.as_str()) {
                two
            } else {
                c.to_string()
            };
            i += op.chars().count();
            toks.push(Tok::Op(op));
        }
    }
    toks
}

/// The string literal opening at `start` (its quote), with `\` escapes taken literally, and the
/// index after its closing quote.
fn string(chars: &[char], start: usize) -> (String, usize) {
    let quote = chars[start];
    let mut s = String::new();
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && i + 1 < chars.len() {
            i += 1;
        }
        s.push(chars[i]);
        i += 1;
    }
    (s, i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(expr: &str) -> Vec<(String, String)> {
        mentions("c", expr)
            .into_iter()
            .map(|m| (m.operations.join("|"), m.username))
            .collect()
    }

    #[test]
    fn equality_and_lists_with_their_operation() {
        let expr = "!(request.operation == 'UPDATE' && request.userInfo.username in [\n 'a:b', \"c\"]) &&\n\
                    !(request.operation == 'CREATE' && request.userInfo.username == 'd' && has(object.x) &&\n\
                      object.metadata.ownerReferences.exists(r, r.kind == 'PipelineRun'))";
        assert_eq!(
            pairs(expr),
            [("UPDATE", "a:b"), ("UPDATE", "c"), ("CREATE", "d")].map(|(o, u)| (o.to_string(), u.to_string()))
        );
    }

    #[test]
    fn an_operation_counts_for_its_conjunction_and_the_groups_around_it() {
        assert_eq!(
            pairs("(request.operation == 'UPDATE') || request.userInfo.username == 'x'"),
            [(String::new(), "x".to_string())]
        );
        assert_eq!(
            pairs("request.operation in ['CREATE', 'UPDATE'] && (a || request.userInfo.username == 'y')"),
            [("CREATE|UPDATE".to_string(), "y".to_string())]
        );
        assert_eq!(
            pairs("'z' == request.userInfo.username && request.operation == 'DELETE'"),
            [(String::new(), "z".to_string())]
        );
    }

    #[test]
    fn escapes_and_unterminated_text_do_not_panic() {
        assert_eq!(
            pairs(r"request.userInfo.username == 'it\'s'"),
            [(String::new(), "it's".to_string())]
        );
        assert!(pairs("request.userInfo.username == 'open").len() == 1);
        assert!(pairs("request.userInfo.username in [").is_empty());
        assert!(pairs("request.userInfo.username").is_empty());
    }
}
