//! `scimgate doctor`: read the cluster and the policy, run `doctor::check`, print the report;
//! `Denied` (exit code 1) when anything disagrees.

use super::Denied;
use crate::cli::{DoctorArgs, Output};
use crate::doctor;
use anyhow::Context;

pub async fn run(a: DoctorArgs) -> anyhow::Result<()> {
    let client = crate::cluster::client(a.kubeconfig.as_deref())
        .await?
        .context("no kubeconfig and not in a cluster: pass --kubeconfig FILE")?;
    let mut cluster = doctor::read::cluster(&client).await?;
    let (policy, source) = match &a.policy {
        Some(path) => (crate::policy::Policy::load(path)?, path.display().to_string()),
        None => doctor::read::policy(&client, &cluster).await?,
    };
    doctor::read::accounts(&client, &policy, &mut cluster).await?;
    let report = doctor::check(&cluster, &policy, &source)?;
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report.json())?),
        Output::Text => print!("{}", report.text()),
    }
    if report.mismatches() > 0 {
        return Err(Denied.into());
    }
    Ok(())
}
