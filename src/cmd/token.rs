//! `scimgate token create|list|revoke`: bearer tokens for the IdPs (scope `scim`) and auditors
//! (scope `audit`); only hashes are stored. Works with or without a server on the same store.

use super::open_store;
use crate::cli::TokenCommand;
use crate::token;
use anyhow::bail;

pub async fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create { store, name, scope } => {
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let store = open_store(&store).await?;
            let (record, secret) = token::create(&*store, &name, scope).await?;
            println!(
                "created token '{}' (scope {}, id {})",
                record.name,
                record.scope.as_str(),
                record.id
            );
            println!("{secret}");
        }
        TokenCommand::List { store } => {
            let store = open_store(&store).await?;
            println!("{:<24} {:<6} {:<36} {:<26} REVOKED", "NAME", "SCOPE", "ID", "CREATED");
            for t in store.tokens().await? {
                println!(
                    "{:<24} {:<6} {:<36} {:<26} {}",
                    t.name,
                    t.scope.as_str(),
                    t.id,
                    t.created_at,
                    t.revoked_at.as_deref().unwrap_or("-")
                );
            }
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
