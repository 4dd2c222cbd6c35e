//! The command line: every flag also readable from a `SCIMGATE_*` environment variable.

use crate::store::Scope;
use crate::telemetry::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "scimgate",
    version,
    about = "SCIM-provisioned identities for Argo Workflows and Tekton admission"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: SCIM, admission and operations listeners.
    Serve(ServeArgs),
    /// Manage API bearer tokens (stored as hashes in the store).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write a CA and a serving certificate for <service>.<namespace>.svc and print the caBundle.
    Certs(CertsArgs),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The decision log: who submitted, approved or cancelled what, under which rule.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Play the API server: send manifests (or AdmissionReviews) to the webhooks and show the
    /// decision, the message and the stamp. Exit code 0 = allowed, 1 = denied.
    Review(ReviewArgs),
    /// Check that the cluster's Argo and Tekton, scimgate's webhook configurations and the policy
    /// agree. Exit code 0 = they agree, 1 = a mismatch (each named with its fix).
    ///
    /// Reads, through the Kubernetes API, the Deployments of Argo's workflow-controller and
    /// Argo Server and of Tekton Pipelines' controller in every namespace (by the names and
    /// labels of the upstream manifests, the argo-workflows Helm chart and OpenShift Pipelines)
    /// and the accounts they run as; and scimgate's Mutating- and ValidatingWebhookConfigurations.
    /// Then checks: each controller account is an `ownerStamp` delegate of the policy and each
    /// Argo Server account an `argoServer` one, and no delegate names an account nothing runs as;
    /// the webhooks' matchConditions name the controllers' accounts as the cluster runs them;
    /// every webhook of manifests/base/webhooks.yaml is registered, with a caBundle, and with
    /// the failurePolicy manifests/base ships (the deletes webhook `Fail` when the policy has
    /// `enforceDeletes: true`). Needs get/list on deployments, mutatingwebhookconfigurations,
    /// validatingwebhookconfigurations, and get on serviceaccounts and configmaps.
    ///
    /// Prints one line per check: `ok`, `MISMATCH` (what disagrees, what it breaks, and ` — fix:
    /// …`), or `note` (no mismatch: a product that is not installed, a pattern not checked);
    /// then a summary. With `-o json`: `{agree, mismatches, checks: [{status, area, message,
    /// fix, edit}]}`, where `edit` spells an account fix as data — `target` (`policy`, or
    /// `<Kind>/<configuration>` with `webhook` and `condition`) and `replace` with `with`, `add`
    /// or `remove` (the account as that target writes it). Exit code 2 when the cluster or the
    /// policy cannot be read.
    Doctor(DoctorArgs),
    /// The Kubernetes access the policy's `access:` section gives SCIM groups: what the
    /// reconciler would change, and what people can do through scimgate's bindings, and why.
    #[command(subcommand)]
    Access(AccessCommand),
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// What the access reconciler would create, change and delete, from the policy, the
    /// directory and the cluster; writes nothing. Exit code 1 when anything would change.
    Plan(AccessArgs),
    /// Who can do VERB on KIND in a namespace through scimgate's bindings, through which group
    /// and binding. KIND is a resource as `kubectl auth can-i` takes it (`workflows`,
    /// `pipelineruns.tekton.dev`, `pods/log`) or a kind scimgate admits (`Workflow`).
    WhoCan {
        verb: String,
        kind: String,
        /// The namespace (without: cluster-wide bindings only).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[command(flatten)]
        args: AccessArgs,
    },
    /// What USER (a userName in the directory, or a Kubernetes username) can do through
    /// scimgate's bindings: each binding, the group it comes through, and its role's rules.
    Of {
        user: String,
        #[command(flatten)]
        args: AccessArgs,
    },
}

/// What the access commands read: the policy, the directory, the cluster.
#[derive(Debug, Args)]
pub struct AccessArgs {
    /// The policy scimgate runs with.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// The store holding the directory scimgate serves from.
    #[command(flatten)]
    pub store: StoreArgs,
    /// kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The policy scimgate runs with (default: the ConfigMap scimgate-policy, key policy.yaml, in
    /// the namespace scimgate's webhooks call).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Manifest (YAML or JSON, several documents allowed) or AdmissionReview; `-` for stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// The admission listener (calls /mutate then /validate, as the API server does), or one
    /// endpoint ending in /mutate or /validate.
    #[arg(long, env = "SCIMGATE_REVIEW_URL", default_value = "https://localhost:8443")]
    pub url: String,
    /// CA that signed the serving certificate (default: ./scimgate-data/tls/ca.crt if present).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// userInfo.username, as the API server would put it (with your OIDC prefix).
    #[arg(long, default_value = "oidc:alice@example.com")]
    pub user: String,
    /// userInfo.groups, comma-separated (sent, never trusted by scimgate).
    #[arg(long, value_delimiter = ',', default_value = "system:authenticated")]
    pub groups: Vec<String>,
    /// CREATE or UPDATE.
    #[arg(long, default_value = "CREATE", value_parser = ["CREATE", "UPDATE"])]
    pub operation: String,
    /// The object before the change, for UPDATE.
    #[arg(long, value_name = "FILE")]
    pub old_file: Option<PathBuf>,
    /// Namespace for objects that name none (default: default).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Like `kubectl --dry-run=server`.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file; prints every problem with its place, exits 1 if there is one.
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Evaluate manifests or AdmissionReviews offline against a policy and the identity state
    /// in a data dir; nothing is recorded. Exit code 0 = allowed, 1 = denied.
    Test {
        /// Manifest (YAML/JSON, several documents allowed) or AdmissionReview; `-` for stdin.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// The policy to evaluate under.
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// The store whose users and groups to use.
        #[command(flatten)]
        store: StoreArgs,
        /// userInfo.username for manifests.
        #[arg(long, default_value = "oidc:alice@example.com")]
        user: String,
        /// Ask as this agent (its `name` in /Agents): the username is the agent's `subject`, or
        /// `identity.agents.usernamePrefix` + name when it has none. Overrides --user.
        #[arg(long, value_name = "NAME")]
        agent: Option<String>,
        /// Namespace for objects that name none.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Re-evaluate recorded decisions under another policy and show what flips.
    Replay {
        /// The policy to try.
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// The store holding the decision log.
        #[command(flatten)]
        store: StoreArgs,
        /// Only decisions newer than this: 7d, 12h, 30m, or an RFC 3339 time.
        #[arg(long, default_value = "7d")]
        since: String,
        /// Examples shown per direction.
        #[arg(long, default_value_t = 5)]
        examples: usize,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

/// Which store a command reads or writes: the embedded one in a data dir, or PostgreSQL.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// Data dir of the embedded store.
    #[arg(long, env = "SCIMGATE_DATA_DIR", default_value = "./scimgate-data")]
    pub data_dir: PathBuf,
    /// `embedded` (the data dir), or the postgres:// URL the servers use.
    #[arg(long, env = "SCIMGATE_STORE", value_name = "URL", hide_env_values = true)]
    pub store: Option<String>,
}

impl StoreArgs {
    pub fn location(&self) -> Result<crate::store::Location, String> {
        crate::store::Location::parse(self.store.as_deref(), &self.data_dir)
    }
}

#[derive(Debug, Args, Clone, Default)]
pub struct ServeArgs {
    /// Development mode: embedded store, self-signed CA and serving cert in DATA_DIR/tls,
    /// and a fresh SCIM token printed at start.
    #[arg(long, env = "SCIMGATE_DEV")]
    pub dev: bool,
    /// Directory for the embedded store and generated files.
    #[arg(long, env = "SCIMGATE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// YAML config file; flags and environment override it.
    #[arg(long, env = "SCIMGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Policy file (used by the admission webhooks).
    #[arg(long, env = "SCIMGATE_POLICY", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Identity store: `embedded` (default) or a postgres:// URL shared by several replicas.
    #[arg(long, env = "SCIMGATE_STORE", value_name = "URL", hide_env_values = true)]
    pub store: Option<String>,
    /// Admission webhook listener address (HTTPS: /mutate, /validate).
    #[arg(long, env = "SCIMGATE_ADMISSION_ADDR", value_name = "ADDR")]
    pub admission_addr: Option<SocketAddr>,
    /// SCIM listener address.
    #[arg(long, env = "SCIMGATE_SCIM_ADDR", value_name = "ADDR")]
    pub scim_addr: Option<SocketAddr>,
    /// Operations listener (healthz, readyz, metrics; plain HTTP).
    #[arg(long, env = "SCIMGATE_OPS_ADDR", value_name = "ADDR")]
    pub ops_addr: Option<SocketAddr>,
    /// Serving certificate (PEM). Reloaded when the file changes.
    #[arg(long, env = "SCIMGATE_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Serving certificate's private key (PEM).
    #[arg(long, env = "SCIMGATE_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The SCIM base URL as identity providers reach it, e.g. https://scim.example.com/scim/v2;
    /// used in meta.location. Defaults to https://<Host header>/scim/v2.
    #[arg(long, env = "SCIMGATE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "SCIMGATE_BODY_LIMIT", value_name = "BYTES")]
    pub body_limit: Option<usize>,
    /// Log format.
    #[arg(long, env = "SCIMGATE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Require a client certificate chaining to this CA (PEM) and naming the clientAuth extended
    /// key usage on the admission listener, so only the API server can ask (see `scimgate certs
    /// --api-server-client`). Reloaded when it changes.
    #[arg(long, env = "SCIMGATE_ADMISSION_CLIENT_CA", value_name = "FILE")]
    pub admission_client_ca: Option<PathBuf>,
    /// With --admission-client-ca: accept only client certificates for one of these DNS names.
    #[arg(
        long = "admission-client-name",
        env = "SCIMGATE_ADMISSION_CLIENT_NAME",
        value_name = "NAME",
        value_delimiter = ',',
        requires = "admission_client_ca"
    )]
    pub admission_client_names: Vec<String>,
    /// Kubeconfig for reading the owners of controller-created runs (CronWorkflows,
    /// PipelineRuns). Default: the in-cluster service account, else `KUBECONFIG` / ~/.kube/config.
    #[arg(long, env = "SCIMGATE_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// What is done with what a departed person left running (`offboarding.mode` in the config
    /// file; default report): `off`, `report` (Events and records, nothing changed) or `act`
    /// (suspend and cancel; needs manifests/components/offboarding).
    #[arg(long, env = "SCIMGATE_OFFBOARDING_MODE", value_enum, value_name = "MODE")]
    pub offboarding_mode: Option<crate::offboarding::Mode>,
    /// Write identity reports (OpenReports or PolicyReports) for policy dashboards
    /// (`reports.enabled` in the config file; default false; needs
    /// manifests/components/identity-reports).
    #[arg(long, env = "SCIMGATE_IDENTITY_REPORTS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub identity_reports: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints it once, as the last line of stdout.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// A name to recognise and revoke it by.
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value = "scim")]
        scope: Scope,
        /// When it stops working: a lifetime (`90d`, `12h`, `30m`) or an RFC 3339 time. Past
        /// it, the token is refused like an unknown one. Default: never.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
    },
    /// List tokens (names, scopes, status, dates, expiry, last use and last SCIM write as servers
    /// flush them, every 30 s and when they stop; never the tokens).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token by name or id; a running server stops honouring it within seconds.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// Name or id.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Service name.
    #[arg(long, default_value = "scimgate")]
    pub service: String,
    /// Namespace of the service.
    #[arg(long, default_value = "scimgate")]
    pub namespace: String,
    /// Directory to write ca.crt, ca.key, tls.crt, tls.key into, and signing.key (the stamp key
    /// replicas on a shared store mount; kept if it exists).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Additional DNS names or IPs for the serving certificate.
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Also issue kube-apiserver's client certificate (DNS name NAME, clientAuth only) and write
    /// the kubeconfig and AdmissionConfiguration its `--admission-control-config-file` reads.
    /// Serve with `--admission-client-ca ca.crt --admission-client-name NAME`.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "kube-apiserver")]
    pub api_server_client: Option<String>,
    /// Where the control-plane node will hold the written admission kubeconfig (the
    /// AdmissionConfiguration names it by this path).
    #[arg(long, value_name = "DIR", default_value = "/etc/kubernetes/scimgate")]
    pub control_plane_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Query decisions, newest first, from the local data dir or a server's audit API (--url).
    Query(Box<AuditQueryArgs>),
    /// Check the stamps on objects from `kubectl get -o json|yaml` (objects or Lists), offline.
    /// Exit code 1 when any stamp is forged or altered.
    Verify(AuditVerifyArgs),
    /// Who submitted, approved and cancelled a live run: its stamps, verified, and the matching
    /// decision records. Exit code 1 when a stamp is forged.
    Who(AuditWhoArgs),
    /// What the offboarding sweep found behind a departed person, and what it did or would do
    /// to each object (from the decision log, locally or through --url).
    Offboarding(AuditOffboardingArgs),
}

/// Where a command reads the decision log: a store, or a server's audit API.
#[derive(Debug, Args)]
pub struct AuditLogArgs {
    /// The store to read (ignored with --url).
    #[command(flatten)]
    pub store: StoreArgs,
    /// A server's SCIM listener, e.g. https://scimgate.example.com:9443, to query remotely.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A token with scope `audit`, for --url.
    #[arg(long, env = "SCIMGATE_AUDIT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA of the server's certificate, for --url.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AuditOffboardingArgs {
    /// The person: userName or SCIM id.
    pub user: String,
    #[command(flatten)]
    pub log: AuditLogArgs,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct AuditWhoArgs {
    /// NAMESPACE/KIND/NAME (KIND/NAME for ClusterWorkflowTemplates); NAMESPACE/KIND with --selector.
    pub target: String,
    /// A label selector over the stamp labels, e.g. scimgate.io/submitted-by=alice.at.example.com.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The JWKS (file or URL); default: the signing key in --data-dir.
    #[arg(long, value_name = "FILE|URL")]
    pub jwks: Option<String>,
    /// CA for an https JWKS URL.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The decision log (and, in the data dir, the signing key); an absent embedded store is
    /// skipped.
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// kubectl output, JSON or YAML; `-` for stdin.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        required_unless_present = "log",
        conflicts_with = "log"
    )]
    pub file: Option<PathBuf>,
    /// Check the decision log instead: every replica's hash chain, its signed checkpoints, prune
    /// marks and references to other replicas' checkpoints, and the seal over records from before
    /// the chains; names edited, inserted and removed records. Exit code 1 when any.
    #[arg(long)]
    pub log: bool,
    /// With --log: anchors collected outside the database — the JSON log lines every decision-log
    /// mark is published with (`--log-format json`), and/or Prometheus samples of
    /// scimgate_decision_log_checkpoint — each of which must be in the log (or pruned past).
    /// Finds a chain removed whole, cut short, or a database replaced by an older copy.
    #[arg(long, value_name = "FILE", requires = "log")]
    pub anchors: Option<PathBuf>,
    /// The store whose log to check, with --log.
    #[command(flatten)]
    pub store: StoreArgs,
    /// The JWKS: a file, or an https URL such as https://scimgate.example.com:9443/.well-known/jwks.json.
    /// With --log, defaults to the data dir's signing key (and its retired keys).
    #[arg(long, value_name = "FILE|URL", required_unless_present = "log")]
    pub jwks: Option<String>,
    /// CA for an https JWKS URL.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct AuditQueryArgs {
    #[command(flatten)]
    pub log: AuditLogArgs,
    #[command(flatten)]
    pub filters: crate::audit::query::Filters,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: crate::audit::query::Format,
}

/// How a command prints its result: for people, or as JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}
