//! `scimgate access plan | who-can | of`: read the policy, the directory and the cluster, ask
//! `access::plan` or `access::explain`, print. `plan` is `Denied` (exit code 1) when anything
//! would change.

use super::Denied;
use crate::access::explain::{self, Bound, Request};
use crate::access::plan::{self, Change, Plan};
use crate::access::{read, subjects};
use crate::cli::{AccessArgs, AccessCommand, Output};
use crate::directory::Snapshot;
use crate::policy::Policy;
use anyhow::Context;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// What the cluster or the directory holds, as a terminal shows it: control characters escaped
/// (a binding's annotations, a subject's name, a role's rules are anyone's text who may write
/// them).
fn field(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

pub async fn run(cmd: AccessCommand) -> anyhow::Result<()> {
    match cmd {
        AccessCommand::Plan(a) => plan_command(a).await,
        AccessCommand::WhoCan {
            verb,
            kind,
            namespace,
            args,
        } => who_can(&verb, &kind, namespace.unwrap_or_default(), args).await,
        AccessCommand::Of { user, args } => of(&user, args).await,
    }
}

/// The policy (with an `access:` section), the directory and a client.
async fn inputs(a: &AccessArgs) -> anyhow::Result<(Policy, Snapshot, kube::Client)> {
    let policy = Policy::load(&a.policy)?;
    // Opening creates an embedded store that is not there: a mistyped --data-dir would read as
    // an empty directory (and plan to take everyone out).
    if a.store.store.is_none() && !a.store.data_dir.is_dir() {
        anyhow::bail!(
            "{} is not a data directory: point --data-dir at the server's, or --store at its database",
            a.store.data_dir.display()
        );
    }
    let store = super::open_store(&a.store).await?;
    let snapshot = Snapshot::from_loaded(store.load().await.context("reading the directory")?);
    let client = crate::cluster::client(a.kubeconfig.as_deref())
        .await?
        .context("no kubeconfig and not in a cluster: pass --kubeconfig FILE")?;
    Ok((policy, snapshot, client))
}

async fn plan_command(a: AccessArgs) -> anyhow::Result<()> {
    let (policy, snapshot, client) = inputs(&a).await?;
    let access = policy.access.clone().with_context(|| {
        format!(
            "{} has no access: section, so scimgate manages no bindings",
            a.policy.display()
        )
    })?;
    let (namespaces, observed) = read::cluster(&client).await.context("reading the cluster")?;
    let (desired, notes) = plan::desired(&policy, &access, &snapshot, &namespaces);
    let p = plan::diff(desired, &observed, &Default::default());
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&plan_json(&p, &notes, access.mode))?),
        Output::Text => print!("{}", plan_text(&p, &notes, access.mode)),
    }
    if !p.is_empty() {
        return Err(Denied.into());
    }
    Ok(())
}

fn change_line(verb: &str, c: &Change) -> String {
    let (granted, revoked) = c.people();
    let mut line = format!(
        "  {verb:<7} {:<18} {:<60} {} {}",
        c.to.kind(),
        field(&c.to.display()),
        c.to.role.kind(),
        field(c.to.role.name())
    );
    if !granted.is_empty() {
        let _ = write!(line, "\n          + {}", field(&granted.join(", ")));
    }
    if !revoked.is_empty() {
        let _ = write!(line, "\n          - {}", field(&revoked.join(", ")));
    }
    if let plan::Why::Drift { by } = &c.why {
        let _ = write!(
            line,
            "\n          (changed by {} since scimgate wrote it: put back)",
            by.join(", ")
        );
    }
    line
}

fn plan_text(p: &Plan, notes: &[String], mode: crate::policy::Mode) -> String {
    let mut out = format!(
        "access plan (mode {}): {} to create, {} to change, {} to delete, {} as they should be\n",
        mode.as_str(),
        p.create.len(),
        p.update.len(),
        p.delete.len(),
        p.unchanged.len()
    );
    for c in &p.create {
        let _ = writeln!(out, "{}", change_line("create", c));
    }
    for c in &p.update {
        let _ = writeln!(out, "{}", change_line("change", c));
    }
    for b in &p.delete {
        let users: Vec<&str> = b.subjects.iter().map(|s| s.name.as_str()).collect();
        let _ = writeln!(
            out,
            "  delete  {:<18} {:<60} - {}",
            b.kind(),
            field(&b.display()),
            field(&users.join(", "))
        );
    }
    for n in notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

fn plan_json(p: &Plan, notes: &[String], mode: crate::policy::Mode) -> Value {
    let change = |c: &Change| {
        let (granted, revoked) = c.people();
        json!({"kind": c.to.kind(), "namespace": c.to.namespace, "name": c.to.name,
            "role": {"kind": c.to.role.kind(), "name": c.to.role.name()}, "grant": c.to.grant,
            "add": granted, "remove": revoked,
            "drift": matches!(c.why, plan::Why::Drift { .. })})
    };
    json!({
        "mode": mode.as_str(),
        "create": p.create.iter().map(change).collect::<Vec<_>>(),
        "change": p.update.iter().map(change).collect::<Vec<_>>(),
        "delete": p.delete.iter().map(|b| json!({"kind": b.kind(), "namespace": b.namespace, "name": b.name})).collect::<Vec<_>>(),
        "unchanged": p.unchanged.len(),
        "notes": notes,
    })
}

/// The bindings and their roles' rules.
async fn bound(client: &kube::Client) -> anyhow::Result<Vec<Bound>> {
    let (_, observed) = read::cluster(client).await.context("reading the cluster")?;
    read::bound(client, observed).await.context("reading the roles")
}

async fn who_can(verb: &str, kind: &str, namespace: String, a: AccessArgs) -> anyhow::Result<()> {
    let (policy, snapshot, client) = inputs(&a).await?;
    let (group, resource, subresource) = explain::resource(kind).map_err(anyhow::Error::msg)?;
    let r = Request {
        verb: verb.into(),
        group,
        resource,
        subresource,
        namespace,
    };
    let bound = bound(&client).await?;
    let who = explain::who_can(&r, &bound);
    let person = |name: &str| subjects::person_named(&snapshot, &policy, name).map(|p| p.user_name);
    let what = format!(
        "{} {}{}{}",
        r.verb,
        r.resource,
        if r.subresource.is_empty() {
            String::new()
        } else {
            format!("/{}", r.subresource)
        },
        if r.group.is_empty() {
            String::new()
        } else {
            format!(".{}", r.group)
        }
    );
    let place = if r.namespace.is_empty() {
        "cluster-wide".to_string()
    } else {
        format!("in {}", r.namespace)
    };
    match a.output {
        Output::Json => {
            let list: Vec<Value> = who
                .iter()
                .map(|(s, via)| {
                    json!({"kind": s.kind, "name": s.name, "userName": person(&s.name),
                    "via": via.iter().map(|b| json!({"binding": b.binding.display(), "kind": b.binding.kind(),
                        "group": b.binding.group, "role": b.binding.role.name()})).collect::<Vec<_>>()})
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"request": what, "namespace": r.namespace, "subjects": list}))?
            );
        }
        Output::Text => {
            println!("who can {what} {place} through scimgate's bindings: {}", who.len());
            for (s, via) in &who {
                let name = person(&s.name).map_or(s.name.clone(), |u| format!("{u} ({})", s.name));
                let name = field(&name);
                for b in via {
                    println!(
                        "  {name:<40} group {:<20} {} {} → {} {}",
                        field(&b.binding.group),
                        b.binding.kind(),
                        field(&b.binding.display()),
                        b.binding.role.kind(),
                        field(b.binding.role.name())
                    );
                }
            }
        }
    }
    Ok(())
}

/// A userName, and whether the IdP has them active.
fn state_of(user_name: &str, active: bool) -> String {
    if active {
        user_name.to_string()
    } else {
        format!("{user_name} (not active in the identity provider)")
    }
}

async fn of(user: &str, a: AccessArgs) -> anyhow::Result<()> {
    let (policy, snapshot, client) = inputs(&a).await?;
    // A userName (active or not), else a Kubernetes username as the API server names someone.
    let user_named = snapshot
        .by_unique_key(crate::model::ResourceType::User, &crate::model::name::fold(user))
        .and_then(|id| snapshot.user(id));
    let (shown, usernames) = match user_named {
        Some(u) => (
            state_of(&u.user_name, u.active),
            subjects::usernames(&snapshot, &policy, u),
        ),
        None => match subjects::person_named(&snapshot, &policy, user) {
            Some(p) => (
                state_of(&p.user_name, p.state == subjects::State::Active),
                vec![user.to_string()],
            ),
            None => (user.to_string(), vec![user.to_string()]),
        },
    };
    let bound = bound(&client).await?;
    let mine = explain::of(&usernames, &bound);
    match a.output {
        Output::Json => {
            let list: Vec<Value> = mine
                .iter()
                .map(|b| {
                    json!({"kind": b.binding.kind(), "namespace": b.binding.namespace, "name": b.binding.name,
                    "group": b.binding.group, "grant": b.binding.grant,
                    "role": {"kind": b.binding.role.kind(), "name": b.binding.role.name()},
                    "rules": b.rules.as_deref().map(explain::rule_lines)})
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"user": shown, "usernames": usernames, "bindings": list}))?
            );
        }
        Output::Text => {
            println!(
                "{shown} ({}) through scimgate's bindings: {}",
                usernames.join(", "),
                if mine.is_empty() {
                    "nothing".to_string()
                } else {
                    format!("{} binding(s)", mine.len())
                }
            );
            for b in &mine {
                println!(
                    "  {} {}  via group {}  → {} {}",
                    b.binding.kind(),
                    field(&b.binding.display()),
                    field(&b.binding.group),
                    b.binding.role.kind(),
                    field(b.binding.role.name())
                );
                match &b.rules {
                    Some(rules) => explain::rule_lines(rules)
                        .iter()
                        .for_each(|l| println!("      {}", field(l))),
                    None => println!(
                        "      (the {} does not exist: it grants nothing)",
                        b.binding.role.kind()
                    ),
                }
            }
        }
    }
    Ok(())
}
