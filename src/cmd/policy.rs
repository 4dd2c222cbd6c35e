//! `scimgate policy check|test|replay`: validate a policy file, evaluate manifests offline
//! against it and a data dir's identities, and re-evaluate recorded decisions under it.

use super::{open_store, Denied};
use crate::admission::{self, Decider};
use crate::cli::PolicyCommand;
use crate::cluster::argo_defaults::{ArgoDefaults, Defaults};
use crate::directory::Snapshot;
use crate::freshness::Freshness;
use crate::policy::Policy;
use crate::stamp::{Signer, Verifier};
use arc_swap::ArcSwap;
use std::sync::Arc;

/// The username an agent asks as: its `subject`, or the policy's agent username prefix + name.
fn agent_username(s: &Snapshot, p: &Policy, name: &str) -> anyhow::Result<String> {
    let agent = s
        .by_unique_key(crate::model::ResourceType::Agent, &crate::model::name::fold(name))
        .and_then(|id| s.agent(id))
        .ok_or_else(|| anyhow::anyhow!("no agent named '{name}' in the directory (SCIM /Agents)"))?;
    if let Some(sub) = &agent.subject {
        // A service account is its username as it is; an OIDC subject comes with the prefix.
        return Ok(
            match (&p.identity.username_prefix, sub.starts_with("system:serviceaccount:")) {
                (Some(prefix), false) => format!("{prefix}{sub}"),
                _ => sub.to_string(),
            },
        );
    }
    match &p.identity.agents.username_prefix {
        Some(prefix) => Ok(format!("{prefix}{}", agent.name)),
        None => anyhow::bail!(
            "agent '{name}' has no subject and the policy sets no identity.agents.usernamePrefix, so no Kubernetes username names it"
        ),
    }
}

pub async fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Test {
            file,
            policy: policy_file,
            store,
            user,
            agent,
            namespace,
        } => {
            let p = Policy::load(&policy_file)?;
            let store = open_store(&store).await?;
            let snapshot = Snapshot::from_loaded(store.load().await?);
            let user = match agent {
                Some(name) => agent_username(&snapshot, &p, &name)?,
                None => user,
            };
            let (signer, _) = Signer::generate()?;
            let decider = Decider {
                directory: Arc::new(ArcSwap::from_pointee(snapshot)),
                policy: Arc::new(ArcSwap::from_pointee(p)),
                verifier: Verifier::from_signer(&signer),
                signer: Arc::new(signer),
                freshness: Arc::new(Freshness::sole_writer()),
                stamp_max_age: crate::config::DEFAULT_STAMP_MAX_AGE_SECONDS,
                argo_defaults: ArgoDefaults::fixed(Defaults::NotRead),
            };
            let opts = super::review::Options {
                file: file.clone(),
                url: String::new(),
                ca: None,
                user,
                groups: vec![],
                operation: "CREATE".into(),
                old_file: None,
                namespace,
                dry_run: false,
                json: false,
            };
            let mut all_allowed = true;
            for request in super::review::requests(&opts)? {
                let body = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
                let review = crate::admission::codec::decode(body.to_string().as_bytes())?;
                let req = review.request.map_err(anyhow::Error::msg)?;
                let mut trace = admission::DecisionDraft::default();
                let answer = admission::decide_traced(
                    &decider,
                    &req,
                    &admission::Lookups::default(),
                    admission::Hook::Validate,
                    &mut trace,
                );
                all_allowed &= answer.allowed;
                let title = req.object.as_ref().map(super::review::title).unwrap_or_default();
                println!(
                    "{} {} {title}",
                    if answer.allowed { "ALLOWED" } else { "DENIED " },
                    req.kind
                );
                if let Some(m) = &answer.message {
                    println!("  {m}");
                }
                for (action, by) in trace.on_behalf_of.iter().filter(|_| answer.allowed) {
                    println!("  {} on behalf of {} (rule {})", action.as_str(), by.user_name, by.rule);
                }
                for w in &answer.warnings {
                    println!("  warning: {w}");
                }
            }
            if all_allowed {
                Ok(())
            } else {
                Err(Denied.into())
            }
        }
        PolicyCommand::Replay {
            policy: file,
            store,
            since,
            examples,
            output,
        } => {
            use crate::audit::{query, replay};
            let p = Policy::load(&file)?;
            let store = open_store(&store).await?;
            let from = query::parse_time(&since, chrono::Utc::now()).map_err(anyhow::Error::msg)?;
            let mut records = Vec::new();
            let mut after = None;
            loop {
                let q = query::DecisionQuery {
                    from: Some(from.clone()),
                    after: after.clone(),
                    limit: query::MAX_LIMIT,
                    ..Default::default()
                };
                let page = store.query_decisions(&q).await?;
                after = page.last().map(|r| r.id.clone());
                let full = page.len() as u32 == query::MAX_LIMIT;
                records.extend(page);
                if !full {
                    break;
                }
            }
            let report = replay::replay(&records, &p);
            if output == crate::cli::Output::Json {
                println!("{}", serde_json::to_string_pretty(&replay::to_json(&report, examples))?);
            } else {
                print!("{}", replay::to_text(&report, examples));
            }
            Ok(())
        }
        PolicyCommand::Check { file } => {
            let p = Policy::load(&file)?;
            for w in &p.warnings {
                println!("{}: warning: {w}", file.display());
            }
            println!(
                "{}: valid ({} rules, mode {:?}, digest {})",
                file.display(),
                p.rules.len(),
                p.mode,
                &p.digest[..12]
            );
            Ok(())
        }
    }
}
