//! `scimgate token create|list|revoke`: bearer tokens for the IdPs (scope `scim`) and auditors
//! (scope `audit`); only hashes are stored. Works with or without a server on the same store.

use super::open_store;
use crate::cli::TokenCommand;
use crate::token;
use anyhow::bail;

pub async fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            store,
            name,
            scope,
            expires,
        } => {
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let expires_at = expires
                .as_deref()
                .map(|e| token::parse_expiry(e, chrono::Utc::now()))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
            let store = open_store(&store).await?;
            let (record, secret) = token::create_expiring(&*store, &name, scope, expires_at).await?;
            println!(
                "created token '{}' (scope {}, id {}, expires {})",
                record.name,
                record.scope.as_str(),
                record.id,
                record.expires_at.as_deref().unwrap_or("never")
            );
            println!("{secret}");
        }
        TokenCommand::List { store } => {
            let store = open_store(&store).await?;
            let now = crate::model::clock::now();
            print!("{}", list(&store.tokens().await?, &now));
        }
        TokenCommand::Revoke { store, name } => {
            let store = open_store(&store).await?;
            if !store.revoke_token(&name, &crate::model::clock::now()).await? {
                bail!("no live token named or with id '{name}'");
            }
            println!(
                "revoked '{name}'; running servers stop accepting it within {}s",
                token::REFRESH.as_secs()
            );
        }
    }
    Ok(())
}

/// `token list`'s table: one line a token, `-` for a time it has not got.
fn list(tokens: &[crate::store::TokenRecord], now: &str) -> String {
    let row = |cells: [&str; 9]| {
        format!(
            "{:<24} {:<6} {:<8} {:<24} {:<24} {:<24} {:<24} {:<24} {}\n",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6], cells[7], cells[8]
        )
    };
    let mut out = row([
        "NAME",
        "SCOPE",
        "STATUS",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "LAST WRITE",
        "REVOKED",
        "ID",
    ]);
    for t in tokens {
        let status = if t.revoked_at.is_some() {
            "revoked"
        } else if t.expired_at(now) {
            "expired"
        } else {
            "live"
        };
        let or_dash = |t: &Option<String>| t.as_deref().unwrap_or("-").to_string();
        out.push_str(&row([
            &t.name,
            t.scope.as_str(),
            status,
            &t.created_at,
            t.expires_at.as_deref().unwrap_or("never"),
            &or_dash(&t.last_used_at),
            &or_dash(&t.last_write_at),
            &or_dash(&t.revoked_at),
            &t.id,
        ]));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::store::{Scope, TokenRecord};

    #[test]
    fn lists_status_expiry_and_use() {
        let rec = |name: &str, expires: Option<&str>, revoked: Option<&str>, used: Option<&str>| TokenRecord {
            id: format!("id-{name}"),
            name: name.into(),
            scope: Scope::Scim,
            hash: [0; 32],
            created_at: "2026-01-01T00:00:00.000Z".into(),
            revoked_at: revoked.map(String::from),
            expires_at: expires.map(String::from),
            last_used_at: used.map(String::from),
            last_write_at: None,
        };
        let now = "2026-03-01T00:00:00.000Z";
        let out = super::list(
            &[
                rec(
                    "okta",
                    Some("2026-04-01T00:00:00.000Z"),
                    None,
                    Some("2026-02-01T00:00:00.000Z"),
                ),
                rec("entra", Some("2026-02-01T00:00:00.000Z"), None, None),
                rec("old", None, Some("2026-01-02T00:00:00.000Z"), None),
            ],
            now,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("NAME") && lines[0].contains("LAST WRITE"), "{out}");
        let okta: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            okta,
            [
                "okta",
                "scim",
                "live",
                "2026-01-01T00:00:00.000Z",
                "2026-04-01T00:00:00.000Z",
                "2026-02-01T00:00:00.000Z",
                "-",
                "-",
                "id-okta"
            ]
        );
        assert!(lines[2].split_whitespace().nth(2) == Some("expired"), "{out}");
        assert!(lines[3].split_whitespace().nth(2) == Some("revoked"), "{out}");
        assert!(lines[3].split_whitespace().nth(4) == Some("never"), "{out}");
    }
}
