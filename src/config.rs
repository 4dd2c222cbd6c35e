//! One validated `Config` for `serve`, from defaults, an optional YAML file, then flags and
//! `SCIMGATE_*` environment (which win). Everything is read and checked here, at start.

use crate::cli::ServeArgs;
use crate::listener::Limits;
use crate::scim::quirks::Quirks;
use crate::store::Location;
use crate::telemetry::LogFormat;
use crate::tls::CertFiles;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading config {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("config {path}: {cause}")]
    Parse { path: PathBuf, cause: serde_yaml_ng::Error },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use crate::freshness::{Replication, WhenStale};

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct ReplicationFile {
    poll_millis: Option<u64>,
    resync_seconds: Option<u64>,
    max_staleness_seconds: Option<u64>,
    when_stale: Option<WhenStale>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub dev: bool,
    pub data_dir: PathBuf,
    pub store: Location,
    pub replication: Replication,
    /// `None` only with `--dev`: the built-in example policy.
    pub policy: Option<PathBuf>,
    pub policy_reload: Duration,
    pub signing_key: PathBuf,
    pub admission_addr: SocketAddr,
    pub scim_addr: SocketAddr,
    pub ops_addr: SocketAddr,
    /// `None` with `--dev`: generated into `data_dir/tls` at start.
    pub tls: Option<CertFiles>,
    /// When set, the admission listener requires a client certificate chaining to this CA.
    pub admission_client_ca: Option<PathBuf>,
    /// With `admission_client_ca`: the DNS names a client certificate must carry (any, if empty).
    pub admission_client_names: Vec<String>,
    pub cert_reload: Duration,
    pub public_url: Option<String>,
    pub body_limit: usize,
    pub quirks: Quirks,
    pub log_format: LogFormat,
    /// Decision records older than this many days are deleted.
    pub audit_retention_days: u32,
    /// How long a stamp made in one webhook call counts as made for the same request in the
    /// later calls (re-invocation, validation). A stamp older than this on a new CREATE is replaced.
    pub stamp_max_age_seconds: i64,
    /// The kubeconfig to read owners of controller-created runs with; `None`: the kube client's
    /// standard configuration (in-cluster, then `KUBECONFIG`).
    pub kubeconfig: Option<PathBuf>,
    /// The workflow-controller's ConfigMap (`namespace`, `name`) whose `workflowDefaults` apply
    /// to every Workflow; `None`: not read (runs are judged as written).
    pub argo_controller_config_map: Option<(String, String)>,
    /// Connection cap and timeouts, the same on every listener.
    pub connections: Limits,
    /// What is done with the objects a departed person left (`offboarding:`).
    pub offboarding: crate::offboarding::Options,
    /// Identity reports for policy dashboards (`reports:`).
    pub reports: crate::reports::Options,
}

/// The YAML config file. Same names as the flags, in camelCase.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct File {
    data_dir: Option<PathBuf>,
    store: Option<String>,
    policy: Option<PathBuf>,
    policy_reload_seconds: Option<u64>,
    signing_key: Option<PathBuf>,
    admission_addr: Option<SocketAddr>,
    scim_addr: Option<SocketAddr>,
    ops_addr: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    admission_client_ca: Option<PathBuf>,
    admission_client_names: Vec<String>,
    cert_reload_seconds: Option<u64>,
    log_format: Option<LogFormat>,
    audit_retention_days: Option<u32>,
    stamp_max_age_seconds: Option<u32>,
    kubeconfig: Option<PathBuf>,
    connections: ConnectionsFile,
    scim: ScimFile,
    replication: ReplicationFile,
    argo: ArgoFile,
    offboarding: crate::offboarding::Options,
    reports: crate::reports::Options,
}

/// `argo:` how this install runs Argo Workflows.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct ArgoFile {
    /// `namespace/name` of the workflow-controller's ConfigMap (its `--configmap`); `""` reads none.
    controller_config_map: Option<String>,
}

/// Where Argo's manifests put the controller's ConfigMap (`manifests/base/workflow-controller`).
const ARGO_CONTROLLER_CONFIG_MAP: &str = "argo/workflow-controller-configmap";

fn argo_config_map(f: &ArgoFile) -> Result<Option<(String, String)>> {
    match f.controller_config_map.as_deref().unwrap_or(ARGO_CONTROLLER_CONFIG_MAP) {
        "" => Ok(None),
        text => match text.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Some((ns.to_string(), name.to_string())))
            }
            _ => Err(Error::Invalid(format!(
                "argo.controllerConfigMap must be namespace/name (or \"\" to read none), not {text:?}"
            ))),
        },
    }
}

/// `connections:` what each listener (admission, SCIM, operations) lets its clients hold.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct ConnectionsFile {
    max_per_listener: Option<usize>,
    idle_timeout_seconds: Option<u64>,
    header_read_timeout_seconds: Option<u64>,
    body_read_timeout_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct ScimFile {
    public_url: Option<String>,
    body_limit: Option<usize>,
    quirks: Quirks,
}

pub const DEFAULT_DATA_DIR: &str = "./scimgate-data";
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// How long a stamp made in one call of a request is taken as that request's in its later calls
/// (re-invocation, validation), unless configured otherwise.
pub const DEFAULT_STAMP_MAX_AGE_SECONDS: i64 = 60;

fn read_file(path: &Path) -> Result<File> {
    let text = std::fs::read_to_string(path).map_err(|cause| Error::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    serde_yaml_ng::from_str(&text).map_err(|cause| Error::Parse {
        path: path.to_path_buf(),
        cause,
    })
}

impl Config {
    pub fn from_args(args: &ServeArgs) -> Result<Config> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None => File::default(),
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let store = Location::parse(args.store.clone().or(file.store).as_deref(), &data_dir).map_err(Error::Invalid)?;
        let replication = replication(&file.replication)?;
        let tls = match (
            args.tls_cert.clone().or(file.tls_cert),
            args.tls_key.clone().or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(CertFiles { cert, key }),
            (None, None) if args.dev => None,
            (None, None) => {
                return Err(Error::Invalid(
                    "no serving certificate: pass --tls-cert and --tls-key (see `scimgate certs`), or use --dev".into(),
                ))
            }
            _ => return Err(Error::Invalid("--tls-cert and --tls-key go together".into())),
        };
        let admission_client_ca = args.admission_client_ca.clone().or(file.admission_client_ca);
        let admission_client_names = if args.admission_client_names.is_empty() {
            file.admission_client_names
        } else {
            args.admission_client_names.clone()
        };
        if admission_client_ca.is_none() && !admission_client_names.is_empty() {
            return Err(Error::Invalid(
                "admissionClientNames needs admissionClientCa: names are checked on certificates that CA signed".into(),
            ));
        }
        let public_url = args.public_url.clone().or(file.scim.public_url);
        if let Some(u) = &public_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(Error::Invalid(format!(
                    "--public-url must be an http(s) URL, not '{u}'"
                )));
            }
        }
        let body_limit = args.body_limit.or(file.scim.body_limit).unwrap_or(DEFAULT_BODY_LIMIT);
        if body_limit < 1024 {
            return Err(Error::Invalid(format!(
                "--body-limit {body_limit} is too small to hold a SCIM request"
            )));
        }
        let reload = file.cert_reload_seconds.unwrap_or(10);
        if reload == 0 {
            return Err(Error::Invalid("certReloadSeconds must be at least 1".into()));
        }
        let policy = args.policy.clone().or(file.policy);
        if policy.is_none() && !args.dev {
            return Err(Error::Invalid(
                "no policy: pass --policy FILE (see `scimgate policy check`), or use --dev for the example".into(),
            ));
        }
        let policy_reload = file.policy_reload_seconds.unwrap_or(5);
        if policy_reload == 0 {
            return Err(Error::Invalid("policyReloadSeconds must be at least 1".into()));
        }
        let connections = connections(&file.connections)?;
        Ok(Config {
            connections,
            dev: args.dev,
            signing_key: file.signing_key.unwrap_or_else(|| data_dir.join("keys/signing.key")),
            data_dir,
            store,
            replication,
            policy,
            policy_reload: Duration::from_secs(policy_reload),
            admission_addr: args
                .admission_addr
                .or(file.admission_addr)
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 8443))),
            scim_addr: args
                .scim_addr
                .or(file.scim_addr)
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 9443))),
            ops_addr: args
                .ops_addr
                .or(file.ops_addr)
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 9090))),
            tls,
            admission_client_ca,
            admission_client_names,
            cert_reload: Duration::from_secs(reload),
            public_url,
            body_limit,
            quirks: file.scim.quirks,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            audit_retention_days: match file.audit_retention_days.unwrap_or(90) {
                0 => return Err(Error::Invalid("auditRetentionDays must be at least 1".into())),
                d => d,
            },
            stamp_max_age_seconds: match file
                .stamp_max_age_seconds
                .map_or(DEFAULT_STAMP_MAX_AGE_SECONDS, i64::from)
            {
                0 => return Err(Error::Invalid("stampMaxAgeSeconds must be at least 1".into())),
                s => s,
            },
            kubeconfig: args.kubeconfig.clone().or(file.kubeconfig),
            argo_controller_config_map: argo_config_map(&file.argo)?,
            offboarding: crate::offboarding::Options {
                mode: args.offboarding_mode.unwrap_or(file.offboarding.mode),
                ..file.offboarding
            },
            reports: crate::reports::Options {
                enabled: args.identity_reports.unwrap_or(file.reports.enabled),
                ..file.reports
            },
        })
    }
}

fn connections(f: &ConnectionsFile) -> Result<Limits> {
    let d = Limits::default();
    let seconds = |v: Option<u64>, name: &str, default: Duration| match v {
        None => Ok(default),
        Some(0) => Err(Error::Invalid(format!("connections.{name} must be at least 1"))),
        Some(n) => Ok(Duration::from_secs(n)),
    };
    let max_connections = match f.max_per_listener {
        None => d.max_connections,
        Some(n) if (1..=1_000_000).contains(&n) => n,
        Some(n) => {
            return Err(Error::Invalid(format!(
                "connections.maxPerListener must be between 1 and 1000000, not {n}"
            )))
        }
    };
    Ok(Limits {
        max_connections,
        idle_timeout: seconds(f.idle_timeout_seconds, "idleTimeoutSeconds", d.idle_timeout)?,
        header_read_timeout: seconds(
            f.header_read_timeout_seconds,
            "headerReadTimeoutSeconds",
            d.header_read_timeout,
        )?,
        body_read_timeout: seconds(
            f.body_read_timeout_seconds,
            "bodyReadTimeoutSeconds",
            d.body_read_timeout,
        )?,
    })
}

fn replication(f: &ReplicationFile) -> Result<Replication> {
    let d = Replication::default();
    let positive = |v: Option<u64>, name: &str, default: Duration, unit: fn(u64) -> Duration| match v {
        None => Ok(default),
        Some(0) => Err(Error::Invalid(format!("replication.{name} must be at least 1"))),
        Some(n) => Ok(unit(n)),
    };
    let r = Replication {
        poll: positive(f.poll_millis, "pollMillis", d.poll, Duration::from_millis)?,
        resync: positive(f.resync_seconds, "resyncSeconds", d.resync, Duration::from_secs)?,
        max_staleness: positive(
            f.max_staleness_seconds,
            "maxStalenessSeconds",
            d.max_staleness,
            Duration::from_secs,
        )?,
        when_stale: f.when_stale.unwrap_or_default(),
    };
    if r.max_staleness <= r.poll {
        return Err(Error::Invalid(
            "replication.maxStalenessSeconds must be longer than replication.pollMillis".into(),
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration file example in docs/operations.md names only fields that exist, with
    /// values they take: the page cannot drift from the program.
    #[test]
    fn the_documented_config_file_parses() {
        let page = include_str!("../docs/operations.md");
        let section = page.split("## Configuration").nth(1).expect("the section");
        let yaml = section
            .split("```yaml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("a yaml block");
        let file: File = serde_yaml_ng::from_str(yaml).expect("the documented file parses");
        assert_eq!(file.offboarding, crate::offboarding::Options::default());
        assert_eq!(file.reports, crate::reports::Options::default());
        assert_eq!(
            file.argo.controller_config_map.as_deref(),
            Some(ARGO_CONTROLLER_CONFIG_MAP)
        );
    }

    #[test]
    fn offboarding_modes_and_options_are_read_and_an_unknown_one_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, "offboarding:\n  mode: act\n").expect("write");
        let args = ServeArgs {
            dev: true,
            config: Some(cfg.clone()),
            ..Default::default()
        };
        let c = Config::from_args(&args).expect("act");
        assert_eq!(c.offboarding.mode, crate::offboarding::Mode::Act);
        // The flag (or SCIMGATE_OFFBOARDING_MODE, as components/offboarding sets it) wins.
        let flagged = ServeArgs {
            offboarding_mode: Some(crate::offboarding::Mode::Off),
            ..args.clone()
        };
        assert_eq!(
            Config::from_args(&flagged).expect("off").offboarding.mode,
            crate::offboarding::Mode::Off
        );
        std::fs::write(&cfg, "offboarding:\n  mode: report\n  runningRuns: cancel\n").expect("write");
        let c = Config::from_args(&args).expect("report");
        assert_eq!(c.offboarding.running_runs, crate::offboarding::RunningRuns::Cancel);
        std::fs::write(&cfg, "offboarding:\n  mode: sweep\n").expect("write");
        assert!(Config::from_args(&args).is_err(), "an unknown mode is refused");
    }

    #[test]
    fn dev_needs_no_certificate_but_serve_does() {
        let dev = ServeArgs {
            dev: true,
            ..Default::default()
        };
        let c = Config::from_args(&dev).expect("dev config");
        assert_eq!(
            (c.tls, c.store, c.body_limit),
            (
                None,
                Location::Embedded(PathBuf::from(DEFAULT_DATA_DIR)),
                DEFAULT_BODY_LIMIT
            )
        );
        let err = Config::from_args(&ServeArgs::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--tls-cert"), "{err}");
    }

    #[test]
    fn file_values_apply_and_flags_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "dataDir: /var/lib/x\nscim:\n  bodyLimit: 2048\n  quirks:\n    stringBooleans: false\n",
        )
        .expect("write");
        let args = ServeArgs {
            dev: true,
            config: Some(path.clone()),
            body_limit: Some(4096),
            ..Default::default()
        };
        let c = Config::from_args(&args).expect("config");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/x"));
        assert_eq!(c.body_limit, 4096);
        assert!(!c.quirks.string_booleans && c.quirks.case_insensitive_ops);
        std::fs::write(&path, "scim:\n  quirk: {}\n").expect("write");
        let err = Config::from_args(&args)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn replication_settings_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        let args = ServeArgs {
            dev: true,
            config: Some(path.clone()),
            store: Some("postgres://scimgate:secret@db:5432/scimgate".into()),
            ..Default::default()
        };
        std::fs::write(&path, "replication:\n  maxStalenessSeconds: 5\n  whenStale: allow\n").expect("write");
        let c = Config::from_args(&args).expect("config");
        assert_eq!(c.replication.max_staleness, Duration::from_secs(5));
        assert_eq!(c.replication.when_stale, WhenStale::Allow);
        assert_eq!(
            c.store.describe(),
            "PostgreSQL at postgres://scimgate:***@db:5432/scimgate"
        );
        std::fs::write(&path, "replication:\n  maxStalenessSeconds: 1\n  pollMillis: 2000\n").expect("write");
        let err = Config::from_args(&args)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("maxStalenessSeconds must be longer"), "{err}");
        let bad = ServeArgs {
            store: Some("mysql://x".into()),
            ..args
        };
        let err = Config::from_args(&bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("--store must be"), "{err}");
    }
}
