//! `scimgate audit query|who|verify`: the decision log (on a data dir or through a server's audit
//! API), who is behind live runs, and offline stamp verification.

use super::{cli_client, load_jwks, open_store, Denied};
use crate::stamp::{Signer, Verifier};
use crate::store::Location;
use anyhow::{bail, Context};
use std::path::Path;

pub async fn query(a: crate::cli::AuditQueryArgs) -> anyhow::Result<()> {
    let (records, next) = records(&a.log, a.filters).await?;
    print!("{}", crate::audit::query::render(&records, a.output));
    if let Some(n) = next {
        eprintln!("more: --after {n}");
    }
    Ok(())
}

/// The records `params` select, newest first, from a server's audit API (`url`) or the store;
/// and the `--after` of the next page when there may be more.
async fn records(
    log: &crate::cli::AuditLogArgs,
    params: crate::audit::query::Filters,
) -> anyhow::Result<(Vec<crate::audit::DecisionRecord>, Option<String>)> {
    use crate::audit::{api, query};
    match &log.url {
        Some(url) => {
            let token = log
                .token
                .as_deref()
                .context("--url needs --token (or SCIMGATE_AUDIT_TOKEN) with scope audit")?;
            let client = cli_client(log.ca.as_deref())?;
            let r = client
                .get(format!("{}/api/v1/decisions", url.trim_end_matches('/')))
                .bearer_auth(token)
                .query(&params)
                .send()
                .await?;
            let status = r.status();
            let body: serde_json::Value = r.json().await.context("the audit API did not answer JSON")?;
            if !status.is_success() {
                bail!("{status}: {}", body["error"].as_str().unwrap_or("error"));
            }
            let records = body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(query::from_json)
                .collect::<Vec<_>>();
            Ok((records, body["next"].as_str().map(String::from)))
        }
        None => {
            let store = open_store(&log.store).await?;
            let q = api::to_query(&*store, params).await?;
            let records = store.query_decisions(&q).await?;
            let next = (records.len() as u32 == q.limit.min(query::MAX_LIMIT))
                .then(|| records.last().map(|r| r.id.clone()))
                .flatten();
            Ok((records, next))
        }
    }
}

/// `scimgate audit offboarding USER`: the sweep's records for one person, oldest first.
pub async fn offboarding(a: crate::cli::AuditOffboardingArgs) -> anyhow::Result<()> {
    use crate::audit::query::{Filters, RecordAction, MAX_LIMIT};
    let filters = Filters {
        user: Some(a.user.clone()),
        action: Some(RecordAction::Offboard),
        limit: Some(MAX_LIMIT),
        ..Filters::default()
    };
    let (mut records, next) = records(&a.log, filters).await?;
    records.reverse();
    match a.output {
        crate::cli::Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&crate::offboarding::report::json(&records))?
        ),
        crate::cli::Output::Text => print!("{}", crate::offboarding::report::text(&a.user, &records)),
    }
    if next.is_some() {
        eprintln!("only the first {MAX_LIMIT} objects are shown");
    }
    Ok(())
}

pub async fn who(a: crate::cli::AuditWhoArgs) -> anyhow::Result<()> {
    use crate::audit::who;
    let (ar, ns, name) = who::parse_target(&a.target, a.selector.is_some())?;
    let verifier = verifier(a.jwks.as_deref(), a.ca.as_deref(), &a.store).await?;
    let config = match &a.kubeconfig {
        Some(path) => {
            let kc =
                kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    let client = kube::Client::try_from(config)?;
    let store = match a.store.location().map_err(anyhow::Error::msg)? {
        Location::Embedded(dir) if !dir.join(crate::store::embedded::FILE).exists() => None,
        _ => Some(open_store(&a.store).await?),
    };
    let objects = match who::fetch(
        client.clone(),
        &ar,
        ns.as_deref(),
        name.as_deref(),
        a.selector.as_deref(),
    )
    .await
    {
        Ok(o) => o,
        // Gone: who deleted it, from the decision log.
        Err(e) => match (&store, &name) {
            (Some(store), Some(name)) => {
                let deletes = store
                    .query_decisions(&crate::model::DecisionQuery {
                        kind: Some(ar.kind.clone()),
                        namespace: ns.clone(),
                        name: Some(name.clone()),
                        action: Some("delete".into()),
                        limit: 10,
                        ..Default::default()
                    })
                    .await?;
                if deletes.is_empty() {
                    return Err(e);
                }
                if a.output == crate::cli::Output::Json {
                    let items: Vec<_> = deletes.iter().map(crate::audit::query::to_json).collect();
                    println!("{}", serde_json::to_string_pretty(&items)?);
                } else {
                    println!("{e}; the decision log has its deletion:");
                    for d in &deletes {
                        println!(
                            "  deleted    by {} ({}){} at {}: {} (decision {})",
                            d.requester,
                            d.user_id.as_deref().unwrap_or("-"),
                            d.on_behalf_of
                                .as_deref()
                                .map(|p| format!(" on behalf of {p}"))
                                .unwrap_or_default(),
                            d.at,
                            d.outcome,
                            d.id
                        );
                    }
                }
                return Ok(());
            }
            _ => return Err(e),
        },
    };
    let mut reports = Vec::new();
    let mut forged = false;
    for obj in &objects {
        let (mut report, f) = who::explain(&verifier, store.as_deref(), obj).await?;
        forged |= f;
        // A child with no stamp of its own: who is behind its owner.
        if let Some((kind, ns, name)) = who::owner_to_follow(&report, obj) {
            let (owner_ar, _, _) = who::parse_target(&format!("{ns}/{kind}/{name}"), false)?;
            if let Ok(owner) = who::fetch(client.clone(), &owner_ar, Some(&ns), Some(&name), None).await {
                if let Some(o) = owner.first() {
                    let (owner_report, _) = who::explain(&verifier, store.as_deref(), o).await?;
                    report["owner"] = owner_report;
                }
            }
        }
        reports.push(report);
    }
    if a.output == crate::cli::Output::Json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else if reports.is_empty() {
        println!("no {} matched", ar.plural);
    } else {
        for r in &reports {
            print!("{}", who::text(r));
        }
    }
    if forged {
        return Err(Denied.into());
    }
    Ok(())
}

/// The JWKS given, or the data dir's own keys.
async fn verifier(jwks: Option<&str>, ca: Option<&Path>, store: &crate::cli::StoreArgs) -> anyhow::Result<Verifier> {
    match jwks {
        Some(j) => load_jwks(j, ca).await,
        None => {
            let key = store.data_dir.join("keys/signing.key");
            if !key.exists() {
                bail!(
                    "no --jwks and no signing key at {}: pass --jwks FILE|URL",
                    key.display()
                );
            }
            Ok(Verifier::with_retired(
                &Signer::load_or_create(&key)?,
                &store.data_dir.join("keys/retired"),
            )?)
        }
    }
}

pub async fn verify(a: crate::cli::AuditVerifyArgs) -> anyhow::Result<()> {
    use crate::audit::verify;
    let verifier = verifier(a.jwks.as_deref(), a.ca.as_deref(), &a.store).await?;
    let Some(file) = &a.file else {
        return verify_log(&a, &verifier).await;
    };
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let mut findings = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = <serde_json::Value as serde::Deserialize>::deserialize(doc).context("parsing the kubectl output")?;
        findings.extend(
            verify::objects(&v)
                .into_iter()
                .map(|o| verify::verify_object(&verifier, o)),
        );
    }
    if a.output == crate::cli::Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&findings.iter().map(verify::to_json).collect::<Vec<_>>())?
        );
    } else {
        for f in &findings {
            println!("{}", verify::line(f));
        }
    }
    if findings.iter().any(verify::Finding::forged) {
        return Err(Denied.into());
    }
    Ok(())
}

/// `audit verify --log`: every chain, checkpoint and prune marker of the store's decision log.
async fn verify_log(a: &crate::cli::AuditVerifyArgs, verifier: &Verifier) -> anyhow::Result<()> {
    use crate::audit::chain;
    let (anchors, bad_anchors) = match &a.anchors {
        Some(file) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            chain::anchors::parse(&text, &file.display().to_string(), verifier)
        }
        None => (Vec::new(), Vec::new()),
    };
    if a.anchors.is_some() && anchors.is_empty() && bad_anchors.is_empty() {
        anyhow::bail!(
            "no anchors in the file: expected JSON log lines of decision-log marks or {} samples",
            chain::anchors::METRIC
        );
    }
    let store = open_store(&a.store).await?;
    let mut report = chain::verify(&*store, verifier, &anchors)
        .await
        .context("reading the decision log")?;
    report.problems.extend(bad_anchors);
    if a.output == crate::cli::Output::Json {
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "holds": report.holds(),
                "chains": report.chains,
                "records": report.records,
                "checkpoints": report.checkpoints,
                "legacy": report.legacy,
                "anchors": report.anchors,
                "unsignedTail": report.unsigned_tail,
                "problems": problems,
            }))?
        );
    } else {
        for p in &report.problems {
            println!("{p}");
        }
        for (replica, n) in &report.unsigned_tail {
            println!(
                "note      replica {replica}: its last {n} records are not yet under a signed checkpoint \
                 (a running replica signs within {} s; after a crash they stay unsigned)",
                chain::CHECKPOINT_EVERY.as_secs()
            );
        }
        if report.legacy > 0 {
            println!(
                "note      {} records predate the chains (written by an earlier version): they match the seal made \
                 at the upgrade, which is all that can be checked of them",
                report.legacy
            );
        }
        if a.anchors.is_some() {
            println!("note      {} anchors checked against the log", report.anchors);
        }
        println!(
            "{}: {} records in {} chains, {} signed checkpoints, {} problems",
            if report.holds() { "the log holds" } else { "TAMPERED" },
            report.records,
            report.chains,
            report.checkpoints,
            report.problems.len()
        );
    }
    if !report.holds() {
        return Err(Denied.into());
    }
    Ok(())
}
