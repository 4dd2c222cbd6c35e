//! Which Deployments are Argo's and Tekton's, and the accounts they run as: the names and labels
//! the upstream installs give them, however the install names its release or namespace.
//!
//! - argo-workflows `manifests/base/workflow-controller/workflow-controller-deployment.yaml`:
//!   Deployment `workflow-controller`, label `app: workflow-controller`, account `argo`;
//!   `manifests/base/argo-server/argo-server-deployment.yaml`: `argo-server`, `app: argo-server`,
//!   account `argo-server` (the namespace-install the same, in its own namespace).
//! - argo-helm `charts/argo-workflows/templates/_helpers.tpl`: `<fullname>-workflow-controller`
//!   and `<fullname>-server` (fullname `argo-workflows` for a release of that name), labelled
//!   `app.kubernetes.io/part-of: argo-workflows` with `app.kubernetes.io/component:
//!   workflow-controller` or `server`; each runs as an account of its own Deployment's name
//!   (`controllerServiceAccountName`, `serverServiceAccountName`).
//! - tektoncd/pipeline `config/controller.yaml`: Deployment `tekton-pipelines-controller`,
//!   `app.kubernetes.io/part-of: tekton-pipelines`, `app.kubernetes.io/component: controller`,
//!   account `tekton-pipelines-controller` — namespace `tekton-pipelines` upstream,
//!   `openshift-pipelines` under OpenShift Pipelines.

use serde_json::Value;
use std::fmt;

/// A service account, `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Account {
    pub namespace: String,
    pub name: String,
}

impl Account {
    pub fn new(namespace: &str, name: &str) -> Account {
        Account {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// `system:serviceaccount:<ns>:<name>`, as the API server names it in `userInfo.username`.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    /// The account a username names, if it is a service account's.
    pub fn from_username(username: &str) -> Option<Account> {
        let (ns, name) = username.strip_prefix("system:serviceaccount:")?.split_once(':')?;
        Some(Account::new(ns, name))
    }

    /// `<ns>:<name>`, as a policy names it.
    pub fn in_policy(&self) -> String {
        format!("{}:{}", self.namespace, self.name)
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What a Deployment is to scimgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    ArgoController,
    ArgoServer,
    TektonController,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::ArgoController, Role::ArgoServer, Role::TektonController];

    pub fn label(self) -> &'static str {
        match self {
            Role::ArgoController => "Argo's workflow-controller",
            Role::ArgoServer => "the Argo Server",
            Role::TektonController => "Tekton Pipelines' controller",
        }
    }

    /// What it is, after "no".
    pub fn noun(self) -> &'static str {
        match self {
            Role::ArgoController => "Argo workflow-controller",
            Role::ArgoServer => "Argo Server",
            Role::TektonController => "Tekton Pipelines controller",
        }
    }

    /// How it is looked for, for a message saying none was found.
    pub fn looked_for(self) -> &'static str {
        match self {
            Role::ArgoController => {
                "a Deployment named workflow-controller or *-workflow-controller, or labelled app=workflow-controller or app.kubernetes.io/component=workflow-controller"
            }
            Role::ArgoServer => {
                "a Deployment named argo-server, or labelled app=argo-server or app.kubernetes.io/part-of=argo-workflows,app.kubernetes.io/component=server"
            }
            Role::TektonController => {
                "a Deployment named tekton-pipelines-controller, or labelled app.kubernetes.io/part-of=tekton-pipelines,app.kubernetes.io/component=controller"
            }
        }
    }

    /// The account the upstream install runs it as (what manifests/base and the example policy
    /// name).
    pub fn upstream(self) -> Account {
        match self {
            Role::ArgoController => Account::new("argo", "argo"),
            Role::ArgoServer => Account::new("argo", "argo-server"),
            Role::TektonController => Account::new("tekton-pipelines", "tekton-pipelines-controller"),
        }
    }

    /// Which controller an account that runs nothing was meant for, by its name.
    pub fn guess(account: &Account) -> Option<Role> {
        let text = format!("{}:{}", account.namespace, account.name);
        if text.contains("tekton") || account.namespace.contains("pipelines") {
            Some(Role::TektonController)
        } else if account.name.ends_with("server") && text.contains("argo") {
            Some(Role::ArgoServer)
        } else if text.contains("argo") || text.contains("workflow") {
            Some(Role::ArgoController)
        } else {
            None
        }
    }
}

/// A Deployment of Argo or Tekton, and the account its pods run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub role: Role,
    /// `namespace/name` of the Deployment.
    pub deployment: String,
    pub account: Account,
}

/// What `deployment` (a Deployment as the API serves it) is, if it is one of ours.
pub fn classify(deployment: &Value) -> Option<Component> {
    let meta = |k: &str| deployment.pointer(&format!("/metadata/{k}")).and_then(Value::as_str);
    let (namespace, name) = (meta("namespace")?, meta("name")?);
    let label = |k: &str| {
        ["/metadata/labels", "/spec/template/metadata/labels"]
            .iter()
            .find_map(|p| deployment.pointer(p).and_then(|l| l.get(k)).and_then(Value::as_str))
    };
    let part_of = label("app.kubernetes.io/part-of");
    let component = label("app.kubernetes.io/component");
    let app = label("app");
    let role = if name == "tekton-pipelines-controller"
        || (part_of == Some("tekton-pipelines") && component == Some("controller"))
    {
        Role::TektonController
    } else if name == "workflow-controller"
        || name.ends_with("-workflow-controller")
        || app == Some("workflow-controller")
        || component == Some("workflow-controller")
    {
        Role::ArgoController
    } else if name == "argo-server"
        || app == Some("argo-server")
        || (part_of == Some("argo-workflows") && component == Some("server"))
    {
        Role::ArgoServer
    } else {
        return None;
    };
    let spec = deployment.pointer("/spec/template/spec");
    // The account a pod runs as: serviceAccountName, else the deprecated serviceAccount, else
    // `default` (k8s.io/api core/v1 PodSpec).
    let account = ["serviceAccountName", "serviceAccount"]
        .iter()
        .find_map(|k| spec.and_then(|s| s.get(k)).and_then(Value::as_str))
        .filter(|a| !a.is_empty())
        .unwrap_or("default");
    Some(Component {
        role,
        deployment: format!("{namespace}/{name}"),
        account: Account::new(namespace, account),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(ns: &str, name: &str, labels: Value, sa: Option<&str>) -> Value {
        json!({"metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": {"template": {"metadata": {"labels": {}}, "spec": {"serviceAccountName": sa}}}})
    }

    #[test]
    fn upstream_helm_and_openshift_names_are_recognised() {
        let found = |d: Value| classify(&d).map(|c| (c.role, c.account.to_string()));
        assert_eq!(
            found(deployment("argo", "workflow-controller", json!({}), Some("argo"))),
            Some((Role::ArgoController, "argo/argo".into()))
        );
        let helm = json!({"app.kubernetes.io/part-of": "argo-workflows", "app.kubernetes.io/component": "server"});
        assert_eq!(
            found(deployment(
                "ci",
                "wf-argo-workflows-server",
                helm,
                Some("wf-argo-workflows-server")
            )),
            Some((Role::ArgoServer, "ci/wf-argo-workflows-server".into()))
        );
        assert_eq!(
            found(deployment(
                "openshift-pipelines",
                "tekton-pipelines-controller",
                json!({}),
                None
            )),
            Some((Role::TektonController, "openshift-pipelines/default".into()))
        );
        let webhook =
            json!({"app.kubernetes.io/part-of": "tekton-pipelines", "app.kubernetes.io/component": "webhook"});
        assert_eq!(
            found(deployment(
                "tekton-pipelines",
                "tekton-pipelines-webhook",
                webhook,
                None
            )),
            None
        );
        assert_eq!(found(deployment("web", "server", json!({"app": "server"}), None)), None);
    }

    #[test]
    fn accounts_that_run_nothing_are_guessed_by_name() {
        let guess = |ns: &str, name: &str| Role::guess(&Account::new(ns, name));
        assert_eq!(guess("argo", "argo"), Some(Role::ArgoController));
        assert_eq!(guess("argo", "argo-server"), Some(Role::ArgoServer));
        assert_eq!(
            guess("tekton-pipelines", "tekton-pipelines-controller"),
            Some(Role::TektonController)
        );
        assert_eq!(guess("ci", "deployer"), None);
    }
}
