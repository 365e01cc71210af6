//! The agent container ddsky wants: settings and key in, the exact Docker create body out, plus a hash
//! of it that tells an up-to-date agent from one that must be recreated.
//!
//! Pure: this follows Datadog's documented `docker run` recipe (see shared/datadog-agent.md) field by field.
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

use crate::key::{hex, ApiKey, REDACTED};
use bollard::models::{
    ContainerCreateBody, DeviceRequest, HealthConfig, HostConfig, HostConfigCgroupnsModeEnum,
    HostConfigLogConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

/// Marks a container as ddsky's own: ddsky never touches a container without it (unless told to).
pub const LABEL_MANAGED_BY: &str = "io.ddsky.managed-by";
pub const MANAGED_BY_VALUE: &str = "ddsky";
/// The hash of everything ddsky asked for; a different hash means the container is stale.
pub const LABEL_SPEC_HASH: &str = "io.ddsky.spec-hash";
/// The ddsky version that created the container: informative only, outside the hash, so upgrading
/// ddsky does not restart every healthy agent.
pub const LABEL_VERSION: &str = "io.ddsky.version";
/// The daemon's data root the container was made with (its log mount follows it). A container lives
/// in its daemon's data root, so the value stays true for the container's whole life: a no-op `up`
/// reads it here instead of asking `GET /info`.
pub const LABEL_DOCKER_ROOT: &str = "io.ddsky.docker-root";
/// Set when `--gpus auto` fell back to an agent without GPUs because Docker refused the request;
/// later `up`s in auto mode keep the fallback instead of failing (and recreating) every time.
pub const LABEL_GPUS_REFUSED: &str = "io.ddsky.gpus-refused";
/// Labels that describe how the container was made rather than what was asked: not hashed.
const UNHASHED_LABELS: [&str; 4] = [
    LABEL_SPEC_HASH,
    LABEL_VERSION,
    LABEL_DOCKER_ROOT,
    LABEL_GPUS_REFUSED,
];

pub const API_KEY_ENV: &str = "DD_API_KEY";

pub const DEFAULT_APM_PORT: u16 = 8126;
pub const DEFAULT_DOGSTATSD_PORT: u16 = 8125;

/// Docker's default data root; `GET /info` `DockerRootDir` says where a daemon really keeps it.
pub const DEFAULT_DOCKER_ROOT: &str = "/var/lib/docker";

/// Where the agent keeps its log positions (the auditor's registry.json), inside its container.
pub const AGENT_RUN_DIR: &str = "/opt/datadog-agent/run";
/// The auditor's registry: per log file, the offset the intake acknowledged.
pub const REGISTRY_PATH: &str = "/opt/datadog-agent/run/registry.json";

/// How long the image's s6-overlay gives the agent after `docker stop` before it kills it: the
/// image sets neither, and s6's 3 s default can SIGKILL an agent still flushing its last logs.
/// Services grace first (the agent stops its pipelines and flushes), then the kill grace.
pub const S6_SERVICES_GRACE: Duration = Duration::from_secs(8);
pub const S6_KILL_GRACE: Duration = Duration::from_secs(2);
/// Docker's own grace for the container (`StopTimeout`): after s6's, so s6 ends the agent its way.
pub const AGENT_STOP_TIMEOUT: Duration = Duration::from_secs(12);
/// How long after its start the agent adds the host tags (the run's) to its metrics and logs itself,
/// while Datadog's backend does not know the brand-new host's tags yet.
pub const EXPECTED_TAGS_DURATION: &str = "15m";

/// The bind mounts of Datadog's recipe: the socket for discovery, /proc and cgroups for metrics,
/// the container log dir for logs, the run dir so log positions survive restarts, passwd for process names.
/// The logs are mounted at the same path inside: the agent opens the `LogPath` Docker reports.
#[cfg(test)]
pub fn binds(docker_root: &str, run_dir: &str) -> Vec<String> {
    binds_for(docker_root, run_dir, &DaemonAccess::DefaultSocket)
}

/// Where the agent finds its Docker socket, and what it mounts: see [`DaemonAccess`].
pub const AGENT_SOCKET: &str = "/var/run/docker.sock";

/// How the agent reaches the daemon ddsky talks to, so that it watches the same one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DaemonAccess {
    /// The host's /var/run/docker.sock, Datadog's recipe: ddsky talks to it, or ddsky runs in a
    /// container (where the path it was given means nothing on the host).
    #[default]
    DefaultSocket,
    /// Another unix socket on the host (rootless Docker, a second daemon): mounted at
    /// /var/run/docker.sock inside, and DOCKER_HOST says so.
    Socket(String),
    /// A `tcp://` daemon: the agent keeps the local socket and gets the same DOCKER_HOST, with
    /// DOCKER_TLS_VERIFY and DOCKER_CERT_PATH (mounted read-only at its path) when set.
    Tcp {
        host: String,
        tls_verify: Option<String>,
        cert_path: Option<String>,
    },
}

impl DaemonAccess {
    /// The environment the agent needs to use that daemon.
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            DaemonAccess::DefaultSocket => vec![],
            DaemonAccess::Socket(_) => {
                vec![("DOCKER_HOST".into(), format!("unix://{AGENT_SOCKET}"))]
            }
            DaemonAccess::Tcp {
                host,
                tls_verify,
                cert_path,
            } => {
                let mut env = vec![("DOCKER_HOST".into(), host.clone())];
                if let Some(v) = tls_verify {
                    env.push(("DOCKER_TLS_VERIFY".into(), v.clone()));
                }
                if let Some(c) = cert_path {
                    env.push(("DOCKER_CERT_PATH".into(), c.clone()));
                }
                env
            }
        }
    }

    /// In words, for logs and doctor.
    pub fn describe(&self) -> String {
        match self {
            DaemonAccess::DefaultSocket => AGENT_SOCKET.to_string(),
            DaemonAccess::Socket(path) => format!("{path} (mounted at {AGENT_SOCKET})"),
            DaemonAccess::Tcp { host, .. } => format!("{host} (DOCKER_HOST)"),
        }
    }
}

/// [`binds`] for a daemon reached through `access`.
pub fn binds_for(docker_root: &str, run_dir: &str, access: &DaemonAccess) -> Vec<String> {
    let logs = format!("{}/containers", docker_root.trim_end_matches('/'));
    let socket = match access {
        DaemonAccess::Socket(path) => path.as_str(),
        _ => AGENT_SOCKET,
    };
    let mut binds = vec![
        format!("{socket}:{AGENT_SOCKET}:ro"),
        "/proc/:/host/proc/:ro".into(),
        "/sys/fs/cgroup/:/host/sys/fs/cgroup:ro".into(),
        format!("{logs}:{logs}:ro"),
        format!("{run_dir}:{AGENT_RUN_DIR}:rw"),
        "/etc/passwd:/etc/passwd:ro".into(),
    ];
    if let DaemonAccess::Tcp {
        cert_path: Some(certs),
        ..
    } = access
    {
        binds.push(format!("{certs}:{certs}:ro"));
    }
    binds
}

/// What the daemon that will run the agent is like, learnt only when a container is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonFacts {
    /// `DockerRootDir` from `GET /info`.
    pub docker_root: String,
    /// The daemon's API is 1.44+, so it honours a health check's `StartInterval`.
    pub start_interval: bool,
    /// `--gpus auto` fell back to no GPUs because Docker refused them (the refusal, for the label).
    pub gpus_refused: Option<String>,
}

impl Default for DaemonFacts {
    fn default() -> Self {
        DaemonFacts {
            docker_root: DEFAULT_DOCKER_ROOT.into(),
            start_interval: false,
            gpus_refused: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The agent shares the host network: the job reaches it at localhost, and it reaches EC2 metadata.
    Host,
    /// The default bridge, with APM and DogStatsD published on 127.0.0.1 only.
    Bridge,
}

/// Everything the user decides about the agent, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    pub name: String,
    /// The image list's identity (`registry::ImageList::identity`: the references, comma-separated):
    /// hashed as the body's `Image`, so the mirror that answered is no change; the body names the
    /// list's first reference until [`AgentSpec::with_image`] names the one pulled or present.
    pub image: String,
    pub site: String,
    pub network: NetworkMode,
    pub apm_port: u16,
    pub dogstatsd_port: u16,
    /// Normalised tags for DD_TAGS.
    pub tags: Vec<String>,
    /// The `env` tag's value, also given as DD_ENV.
    pub env: String,
    /// Request every NVIDIA GPU and turn on GPU monitoring.
    pub gpus: bool,
    /// The intake override (DD_DD_URL), for proxies and private intakes.
    pub dd_url: Option<String>,
    /// Extra `KEY=VALUE` for the agent, after ddsky's own (Docker keeps the last of duplicates).
    pub extra_env: Vec<(String, String)>,
    /// The host directory mounted as the agent's run dir (its log positions).
    pub run_dir: String,
    /// How the agent reaches the daemon ddsky talks to (its socket, or DOCKER_HOST).
    pub daemon: DaemonAccess,
    /// On a host: the job log directory whose conf.d and job files the agent mounts read-only
    /// (`joblog`), so it tails what `ddsky run` writes of a job on the VM itself.
    pub job_logs: Option<String>,
}

/// The container ddsky would create: the body exactly as sent, and the hash stored in its labels.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub name: String,
    pub body: ContainerCreateBody,
    pub hash: String,
    /// How the agent reaches the daemon (its binds follow it in [`AgentSpec::for_daemon`]).
    pub daemon: DaemonAccess,
}

impl AgentSpec {
    /// The body with the key's value replaced, safe to print.
    pub fn redacted_body(&self) -> ContainerCreateBody {
        with_key_value(&self.body, REDACTED)
    }

    /// The spec for this daemon: the logs mount under its data root, the start interval where its
    /// API has one, and labels saying so. The hash stays the daemon-independent one: a container
    /// only ever exists in the data root it was made in, and a start interval changes nothing
    /// once the agent runs.
    pub fn for_daemon(&self, facts: &DaemonFacts) -> AgentSpec {
        let mut body = self.body.clone();
        let default_logs = format!("{DEFAULT_DOCKER_ROOT}/containers");
        let logs = format!("{}/containers", facts.docker_root.trim_end_matches('/'));
        if let Some(binds) = body.host_config.as_mut().and_then(|hc| hc.binds.as_mut()) {
            for bind in binds.iter_mut() {
                if bind.starts_with(&format!("{default_logs}:")) {
                    *bind = format!("{logs}:{logs}:ro");
                }
            }
        }
        // The agent looks for container logs under /var/lib/docker unless told where the data root is
        // (findDockerLogPath); without this it falls back to the socket, and its registry then
        // holds no byte offsets to drain against.
        if logs != default_logs {
            if let Some(env) = body.env.as_mut() {
                env.push(format!(
                    "DD_LOGS_CONFIG_DOCKER_PATH_OVERRIDE={}",
                    facts.docker_root.trim_end_matches('/')
                ));
            }
        }
        if facts.start_interval {
            if let Some(check) = body.healthcheck.as_mut() {
                check.start_interval = Some(nanos(HEALTH_START_INTERVAL));
            }
        }
        let labels = body.labels.get_or_insert_with(HashMap::new);
        labels.insert(LABEL_DOCKER_ROOT.into(), facts.docker_root.clone());
        if let Some(refusal) = &facts.gpus_refused {
            labels.insert(LABEL_GPUS_REFUSED.into(), refusal.clone());
        }
        AgentSpec {
            name: self.name.clone(),
            body,
            hash: self.hash.clone(),
            daemon: self.daemon.clone(),
        }
    }

    /// The spec created from `reference`, one entry of the image list: the hash is the list's.
    pub fn with_image(&self, reference: &str) -> AgentSpec {
        let mut spec = self.clone();
        spec.body.image = Some(reference.to_owned());
        spec
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The image's own check runs `agent health` every 30 s: each run is an exec plus a Go CLI start
/// (~0.3-1 s of CPU), for the agent's whole life on a training node, so never more often than that.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(30);
/// The real agent needs 15-30 s to pass `agent health` (its components ping every 15 s): failures
/// in the first two minutes do not count.
pub const HEALTH_START_PERIOD: Duration = Duration::from_secs(120);
/// Within the start period, where the daemon supports it (API 1.44+), look every 5 s so Docker's
/// status turns `healthy` soon after the agent does.
pub const HEALTH_START_INTERVAL: Duration = Duration::from_secs(5);

/// The image's check (`agent health` every 30 s, 5 s timeout, 2 retries), plus a start period.
/// ddsky's own waits never depend on it: they ask `agent health` themselves.
fn health_check() -> HealthConfig {
    HealthConfig {
        test: Some(vec!["CMD".into(), "agent".into(), "health".into()]),
        interval: Some(nanos(HEALTH_INTERVAL)),
        timeout: Some(nanos(Duration::from_secs(5))),
        retries: Some(2),
        start_period: Some(nanos(HEALTH_START_PERIOD)),
        start_interval: None,
    }
}

/// Builds the create body and its hash.
pub fn agent_spec(settings: &AgentSettings, key: &ApiKey) -> AgentSpec {
    let mut env: Vec<(String, String)> = vec![
        (API_KEY_ENV.into(), key.expose().into()),
        ("DD_SITE".into(), settings.site.clone()),
        ("DD_TAGS".into(), settings.tags.join(" ")),
        ("DD_ENV".into(), settings.env.clone()),
        ("DD_LOGS_ENABLED".into(), "true".into()),
        ("DD_LOGS_CONFIG_CONTAINER_COLLECT_ALL".into(), "true".into()),
        ("DD_APM_ENABLED".into(), "true".into()),
        ("DD_APM_NON_LOCAL_TRAFFIC".into(), "true".into()),
        ("DD_DOGSTATSD_NON_LOCAL_TRAFFIC".into(), "true".into()),
        (
            "DD_PROCESS_CONFIG_PROCESS_COLLECTION_ENABLED".into(),
            "true".into(),
        ),
        (
            "DD_CONTAINER_EXCLUDE".into(),
            format!("name:^{}$", regex_escape(&settings.name)),
        ),
        // Logs over HTTP always: its sends are acknowledged, so the registry's offsets mean "sent"
        // (what the drain before a stop waits for), and a failed start-up probe cannot switch the
        // agent to TCP for its whole life.
        ("DD_LOGS_CONFIG_FORCE_USE_HTTP".into(), "true".into()),
        (
            "DD_EXPECTED_TAGS_DURATION".into(),
            EXPECTED_TAGS_DURATION.into(),
        ),
        (
            "DD_LOGS_CONFIG_EXPECTED_TAGS_DURATION".into(),
            EXPECTED_TAGS_DURATION.into(),
        ),
        (
            "S6_SERVICES_GRACETIME".into(),
            S6_SERVICES_GRACE.as_millis().to_string(),
        ),
        (
            "S6_KILL_GRACETIME".into(),
            S6_KILL_GRACE.as_millis().to_string(),
        ),
    ];
    // On the host network the ports are the agent's own listeners; on a bridge they are published.
    if settings.network == NetworkMode::Host {
        if settings.apm_port != DEFAULT_APM_PORT {
            env.push(("DD_APM_RECEIVER_PORT".into(), settings.apm_port.to_string()));
        }
        if settings.dogstatsd_port != DEFAULT_DOGSTATSD_PORT {
            env.push((
                "DD_DOGSTATSD_PORT".into(),
                settings.dogstatsd_port.to_string(),
            ));
        }
    }
    if settings.gpus {
        env.push(("DD_GPU_ENABLED".into(), "true".into()));
    }
    if settings.job_logs.is_some() {
        env.push((
            "DD_LOGS_CONFIG_FILE_SCAN_PERIOD".into(),
            crate::joblog::FILE_SCAN_PERIOD_SECS.into(),
        ));
    }
    if let Some(url) = &settings.dd_url {
        env.push(("DD_DD_URL".into(), url.clone()));
    }
    env.extend(settings.daemon.env());
    for (k, v) in &settings.extra_env {
        env.retain(|(existing, _)| existing != k);
        env.push((k.clone(), v.clone()));
    }

    let apm = format!("{DEFAULT_APM_PORT}/tcp");
    let dogstatsd = format!("{DEFAULT_DOGSTATSD_PORT}/udp");
    let (network_mode, exposed_ports, port_bindings) = match settings.network {
        NetworkMode::Host => ("host", None, None),
        NetworkMode::Bridge => {
            let bind = |port: u16| {
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(port.to_string()),
                }])
            };
            let bindings = HashMap::from([
                (apm.clone(), bind(settings.apm_port)),
                (dogstatsd.clone(), bind(settings.dogstatsd_port)),
            ]);
            ("bridge", Some(vec![apm, dogstatsd]), Some(bindings))
        }
    };

    let mut binds = binds_for(DEFAULT_DOCKER_ROOT, &settings.run_dir, &settings.daemon);
    if let Some(dir) = &settings.job_logs {
        binds.extend(crate::joblog::binds(dir));
    }
    let host_config = HostConfig {
        binds: Some(binds),
        pid_mode: Some("host".into()),
        cgroupns_mode: Some(HostConfigCgroupnsModeEnum::HOST),
        network_mode: Some(network_mode.into()),
        port_bindings,
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        }),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".into(), "10m".into()),
                ("max-file".into(), "3".into()),
            ])),
        }),
        device_requests: settings.gpus.then(|| {
            vec![DeviceRequest {
                driver: Some(String::new()),
                count: Some(-1),
                capabilities: Some(vec![vec!["gpu".into()]]),
                ..Default::default()
            }]
        }),
        ..Default::default()
    };

    let mut body = ContainerCreateBody {
        image: Some(settings.image.clone()),
        env: Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()),
        exposed_ports,
        healthcheck: Some(health_check()),
        stop_timeout: Some(AGENT_STOP_TIMEOUT.as_secs() as i64),
        labels: Some(HashMap::from([
            (LABEL_MANAGED_BY.into(), MANAGED_BY_VALUE.into()),
            (LABEL_VERSION.into(), env!("CARGO_PKG_VERSION").into()),
        ])),
        host_config: Some(host_config),
        ..Default::default()
    };
    let hash = spec_hash(&body, key);
    // The list was hashed; Docker is given one reference.
    let first = settings.image.split(',').next().unwrap_or_default().trim();
    body.image = Some(first.to_owned());
    body.labels
        .get_or_insert_with(HashMap::new)
        .insert(LABEL_SPEC_HASH.into(), hash.clone());
    AgentSpec {
        name: settings.name.clone(),
        body,
        hash,
        daemon: settings.daemon.clone(),
    }
}

/// sha256 over the canonical JSON of the body, with the key replaced by its digest and without the
/// labels that describe how it was made (the hash itself, ddsky's version, the daemon's facts).
fn spec_hash(body: &ContainerCreateBody, key: &ApiKey) -> String {
    let mut hashed = with_key_value(body, &format!("sha256:{}", key.digest()));
    if let Some(labels) = hashed.labels.as_mut() {
        labels.retain(|k, _| !UNHASHED_LABELS.contains(&k.as_str()));
    }
    let value = serde_json::to_value(&hashed).unwrap_or(Value::Null);
    let mut canonical = String::new();
    write_canonical(&value, &mut canonical);
    hex(&Sha256::digest(canonical.as_bytes()))
}

/// JSON with object keys sorted, whatever map type serde_json was built with: HashMap fields
/// (labels, ports) would otherwise serialise in a different order on every run.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn with_key_value(body: &ContainerCreateBody, value: &str) -> ContainerCreateBody {
    let mut copy = body.clone();
    let prefix = format!("{API_KEY_ENV}=");
    if let Some(env) = copy.env.as_mut() {
        for entry in env.iter_mut().filter(|e| e.starts_with(&prefix)) {
            *entry = format!("{prefix}{value}");
        }
    }
    copy
}

/// Escapes the characters a Docker container name can hold that mean something in a regex.
fn regex_escape(name: &str) -> String {
    name.chars().fold(String::new(), |mut out, c| {
        if !c.is_ascii_alphanumeric() && c != '_' && c != '-' {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::test_key;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn settings() -> AgentSettings {
        AgentSettings {
            name: "dd-agent".into(),
            image: "datadog/agent:7".into(),
            site: "datadoghq.com".into(),
            network: NetworkMode::Host,
            apm_port: DEFAULT_APM_PORT,
            dogstatsd_port: DEFAULT_DOGSTATSD_PORT,
            tags: vec!["env:production".into(), "service:skypilot-worker".into()],
            env: "production".into(),
            gpus: false,
            dd_url: None,
            extra_env: vec![],
            run_dir: AGENT_RUN_DIR.into(),
            daemon: DaemonAccess::DefaultSocket,
            job_logs: None,
        }
    }

    fn env_of(spec: &AgentSpec) -> Vec<String> {
        spec.body.env.clone().unwrap()
    }

    #[test]
    fn a_host_with_a_job_log_directory_mounts_it_and_scans_for_new_job_files_every_second() {
        let plain = agent_spec(&settings(), &test_key(KEY));
        assert!(!env_of(&plain)
            .iter()
            .any(|e| e.starts_with("DD_LOGS_CONFIG_FILE_SCAN_PERIOD=")));
        let spec = agent_spec(
            &AgentSettings {
                job_logs: Some("/home/u/.ddsky/job-logs".into()),
                ..settings()
            },
            &test_key(KEY),
        );
        assert!(env_of(&spec).contains(&"DD_LOGS_CONFIG_FILE_SCAN_PERIOD=1".to_string()));
        let binds = spec
            .body
            .host_config
            .as_ref()
            .unwrap()
            .binds
            .clone()
            .unwrap();
        for bind in crate::joblog::binds("/home/u/.ddsky/job-logs") {
            assert!(binds.contains(&bind), "{bind} in {binds:?}");
        }
        assert_ne!(spec.hash, plain.hash);
    }

    #[test]
    fn follows_the_recipe() {
        let spec = agent_spec(&settings(), &test_key(KEY));
        let hc = spec.body.host_config.as_ref().unwrap();
        assert_eq!(
            hc.binds.as_ref().unwrap(),
            &binds("/var/lib/docker", "/opt/datadog-agent/run")
        );
        assert!(hc
            .binds
            .as_ref()
            .unwrap()
            .contains(&"/var/lib/docker/containers:/var/lib/docker/containers:ro".to_string()));
        assert_eq!(hc.pid_mode.as_deref(), Some("host"));
        assert_eq!(hc.cgroupns_mode, Some(HostConfigCgroupnsModeEnum::HOST));
        assert_eq!(hc.network_mode.as_deref(), Some("host"));
        assert_eq!(
            hc.restart_policy.as_ref().unwrap().name,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        assert_eq!(
            hc.log_config.as_ref().unwrap().typ.as_deref(),
            Some("json-file")
        );
        assert!(hc.port_bindings.is_none() && hc.device_requests.is_none());
        let env = env_of(&spec);
        for expected in [
            format!("DD_API_KEY={KEY}").as_str(),
            "DD_SITE=datadoghq.com",
            "DD_TAGS=env:production service:skypilot-worker",
            "DD_ENV=production",
            "DD_LOGS_ENABLED=true",
            "DD_LOGS_CONFIG_CONTAINER_COLLECT_ALL=true",
            "DD_APM_ENABLED=true",
            "DD_APM_NON_LOCAL_TRAFFIC=true",
            "DD_DOGSTATSD_NON_LOCAL_TRAFFIC=true",
            "DD_PROCESS_CONFIG_PROCESS_COLLECTION_ENABLED=true",
            "DD_CONTAINER_EXCLUDE=name:^dd-agent$",
            "DD_LOGS_CONFIG_FORCE_USE_HTTP=true",
            "DD_EXPECTED_TAGS_DURATION=15m",
            "DD_LOGS_CONFIG_EXPECTED_TAGS_DURATION=15m",
            "S6_SERVICES_GRACETIME=8000",
            "S6_KILL_GRACETIME=2000",
        ] {
            assert!(env.iter().any(|e| e == expected), "missing {expected}");
        }
        // s6 ends the agent its way before Docker's own grace runs out.
        assert!(S6_SERVICES_GRACE + S6_KILL_GRACE < AGENT_STOP_TIMEOUT);
        assert_eq!(spec.body.stop_timeout, Some(12));
        assert!(!env
            .iter()
            .any(|e| e.starts_with("DD_LOGS_CONFIG_DOCKER_PATH_OVERRIDE")));
        assert!(!env
            .iter()
            .any(|e| e.starts_with("DD_APM_RECEIVER_PORT") || e.starts_with("DD_GPU_ENABLED")));
        let labels = spec.body.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_MANAGED_BY], MANAGED_BY_VALUE);
        assert_eq!(labels[LABEL_SPEC_HASH], spec.hash);
        let hcheck = spec.body.healthcheck.as_ref().unwrap();
        assert_eq!(hcheck.test.as_ref().unwrap(), &["CMD", "agent", "health"]);
        assert_eq!(hcheck.interval.unwrap(), nanos(Duration::from_secs(30)));
        assert!(hcheck.start_period.unwrap() > 0);
    }

    #[test]
    fn body_serialises_with_docker_field_names() {
        let spec = agent_spec(&settings(), &test_key(KEY));
        let json = serde_json::to_value(spec.redacted_body()).unwrap();
        assert_eq!(json["HostConfig"]["PidMode"], "host");
        assert_eq!(json["HostConfig"]["CgroupnsMode"], "host");
        assert_eq!(
            json["HostConfig"]["RestartPolicy"]["Name"],
            "unless-stopped"
        );
        assert!(json["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "DD_API_KEY=<redacted>"));
        assert!(!json.to_string().contains(KEY));
    }

    #[test]
    fn bridge_publishes_on_loopback_only() {
        let s = AgentSettings {
            network: NetworkMode::Bridge,
            apm_port: 18126,
            ..settings()
        };
        let spec = agent_spec(&s, &test_key(KEY));
        let hc = spec.body.host_config.as_ref().unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("bridge"));
        let bindings = hc.port_bindings.as_ref().unwrap();
        let apm = bindings["8126/tcp"].as_ref().unwrap();
        assert_eq!(apm[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(apm[0].host_port.as_deref(), Some("18126"));
        assert_eq!(
            bindings["8125/udp"].as_ref().unwrap()[0]
                .host_port
                .as_deref(),
            Some("8125")
        );
        assert!(!env_of(&spec)
            .iter()
            .any(|e| e.starts_with("DD_APM_RECEIVER_PORT")));
    }

    #[test]
    fn host_network_moves_the_listeners_for_custom_ports() {
        let s = AgentSettings {
            apm_port: 18126,
            dogstatsd_port: 18125,
            ..settings()
        };
        let env = env_of(&agent_spec(&s, &test_key(KEY)));
        assert!(env.contains(&"DD_APM_RECEIVER_PORT=18126".to_string()));
        assert!(env.contains(&"DD_DOGSTATSD_PORT=18125".to_string()));
    }

    #[test]
    fn gpus_request_every_device() {
        let spec = agent_spec(
            &AgentSettings {
                gpus: true,
                ..settings()
            },
            &test_key(KEY),
        );
        let req = &spec
            .body
            .host_config
            .as_ref()
            .unwrap()
            .device_requests
            .as_ref()
            .unwrap()[0];
        assert_eq!(req.count, Some(-1));
        assert_eq!(req.capabilities, Some(vec![vec!["gpu".to_string()]]));
        assert!(env_of(&spec).contains(&"DD_GPU_ENABLED=true".to_string()));
    }

    #[test]
    fn the_health_check_is_no_more_often_than_the_images() {
        let spec = agent_spec(&settings(), &test_key(KEY));
        let check = spec.body.healthcheck.as_ref().unwrap();
        assert_eq!(check.interval, Some(nanos(Duration::from_secs(30))));
        assert_eq!(
            check.start_interval, None,
            "unknown daemon: no StartInterval"
        );
        let facts = DaemonFacts {
            start_interval: true,
            ..DaemonFacts::default()
        };
        let on_new_daemon = spec.for_daemon(&facts);
        let check = on_new_daemon.body.healthcheck.as_ref().unwrap();
        assert_eq!(check.interval, Some(nanos(Duration::from_secs(30))));
        assert_eq!(check.start_interval, Some(nanos(HEALTH_START_INTERVAL)));
        assert_eq!(on_new_daemon.hash, spec.hash);
    }

    #[test]
    fn the_logs_mount_follows_the_data_root_which_stays_out_of_the_hash() {
        let spec = agent_spec(&settings(), &test_key(KEY));
        let facts = DaemonFacts {
            docker_root: "/mnt/nvme/docker/".into(),
            ..DaemonFacts::default()
        };
        let placed = spec.for_daemon(&facts);
        let binds = placed
            .body
            .host_config
            .as_ref()
            .unwrap()
            .binds
            .clone()
            .unwrap();
        assert!(
            binds.contains(
                &"/mnt/nvme/docker/containers:/mnt/nvme/docker/containers:ro".to_string()
            ),
            "{binds:?}"
        );
        assert!(!binds.iter().any(|b| b.starts_with("/var/lib/docker")));
        assert!(
            env_of(&placed)
                .contains(&"DD_LOGS_CONFIG_DOCKER_PATH_OVERRIDE=/mnt/nvme/docker".to_string()),
            "the agent must look for container logs under the moved data root"
        );
        let labels = placed.body.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_DOCKER_ROOT], "/mnt/nvme/docker/");
        assert_eq!(labels[LABEL_SPEC_HASH], spec.hash);
        assert_eq!(placed.hash, spec.hash);
    }

    #[test]
    fn another_ddsky_version_hashes_the_same_spec_the_same() {
        let key = test_key(KEY);
        let spec = agent_spec(&settings(), &key);
        let mut other_version = spec.body.clone();
        other_version
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_VERSION.into(), "0.0.1-older".into());
        assert_eq!(spec_hash(&other_version, &key), spec.hash);
        let mut other_env = spec.body.clone();
        other_env.env.as_mut().unwrap().push("DD_X=1".into());
        assert_ne!(spec_hash(&other_env, &key), spec.hash);
    }

    #[test]
    fn extra_env_overrides_ddsky_defaults() {
        let s = AgentSettings {
            extra_env: vec![("DD_SITE".into(), "datadoghq.eu".into())],
            ..settings()
        };
        let env = env_of(&agent_spec(&s, &test_key(KEY)));
        assert_eq!(
            env.iter()
                .filter(|e| e.starts_with("DD_SITE="))
                .collect::<Vec<_>>(),
            ["DD_SITE=datadoghq.eu"]
        );
    }

    #[test]
    fn exclusion_regex_escapes_the_name() {
        let env = env_of(&agent_spec(
            &AgentSettings {
                name: "dd.agent".into(),
                ..settings()
            },
            &test_key(KEY),
        ));
        assert!(env.contains(&r"DD_CONTAINER_EXCLUDE=name:^dd\.agent$".to_string()));
    }

    #[test]
    fn hash_is_stable_and_tracks_every_input() {
        let key = test_key(KEY);
        let base = agent_spec(&settings(), &key).hash;
        assert_eq!(
            base,
            agent_spec(&settings(), &key).hash,
            "same input, same hash"
        );
        let variants = [
            AgentSettings {
                tags: vec!["env:production".into()],
                ..settings()
            },
            AgentSettings {
                image: "datadog/agent:7.70.0".into(),
                ..settings()
            },
            AgentSettings {
                network: NetworkMode::Bridge,
                ..settings()
            },
            AgentSettings {
                site: "datadoghq.eu".into(),
                ..settings()
            },
            AgentSettings {
                gpus: true,
                ..settings()
            },
            AgentSettings {
                apm_port: 9126,
                ..settings()
            },
            AgentSettings {
                dd_url: Some("http://127.0.0.1:1".into()),
                ..settings()
            },
        ];
        for v in variants {
            assert_ne!(agent_spec(&v, &key).hash, base, "{v:?}");
        }
        assert_ne!(
            agent_spec(&settings(), &test_key(&"f".repeat(32))).hash,
            base,
            "a rotated key changes the hash"
        );
    }

    #[test]
    fn the_mirror_that_answered_is_no_change_but_the_list_is() {
        let key = test_key(KEY);
        let list = AgentSettings {
            image: "a.io/agent:7,b.io/agent:7".into(),
            ..settings()
        };
        let spec = agent_spec(&list, &key);
        assert_eq!(spec.body.image.as_deref(), Some("a.io/agent:7"));
        let from_b = spec.with_image("b.io/agent:7");
        assert_eq!(from_b.body.image.as_deref(), Some("b.io/agent:7"));
        assert_eq!(from_b.hash, spec.hash);
        assert_eq!(
            from_b
                .for_daemon(&DaemonFacts::default())
                .body
                .labels
                .unwrap()[LABEL_SPEC_HASH],
            spec.hash
        );
        let other_list = AgentSettings {
            image: "b.io/agent:7,a.io/agent:7".into(),
            ..settings()
        };
        assert_ne!(agent_spec(&other_list, &key).hash, spec.hash);
        // A single reference hashes as it always did.
        assert_eq!(
            agent_spec(&settings(), &key).body.image.as_deref(),
            Some("datadog/agent:7")
        );
    }

    #[test]
    fn the_agent_watches_the_daemon_ddsky_talks_to() {
        let key = test_key(KEY);
        let default = agent_spec(&settings(), &key);
        let other = agent_spec(
            &AgentSettings {
                daemon: DaemonAccess::Socket("/run/user/1000/docker.sock".into()),
                ..settings()
            },
            &key,
        );
        let binds = |s: &AgentSpec| s.body.host_config.clone().unwrap().binds.unwrap();
        assert!(binds(&default).contains(&"/var/run/docker.sock:/var/run/docker.sock:ro".into()));
        assert!(!env_of(&default)
            .iter()
            .any(|e| e.starts_with("DOCKER_HOST=")));
        assert!(
            binds(&other).contains(&"/run/user/1000/docker.sock:/var/run/docker.sock:ro".into())
        );
        assert!(env_of(&other).contains(&"DOCKER_HOST=unix:///var/run/docker.sock".into()));
        assert_ne!(other.hash, default.hash);
        let placed = other.for_daemon(&DaemonFacts::default());
        assert!(
            binds(&placed).contains(&"/run/user/1000/docker.sock:/var/run/docker.sock:ro".into())
        );

        let tcp = agent_spec(
            &AgentSettings {
                daemon: DaemonAccess::Tcp {
                    host: "tcp://10.0.0.5:2376".into(),
                    tls_verify: Some("1".into()),
                    cert_path: Some("/etc/docker/certs".into()),
                },
                ..settings()
            },
            &key,
        );
        let env = env_of(&tcp);
        for e in [
            "DOCKER_HOST=tcp://10.0.0.5:2376",
            "DOCKER_TLS_VERIFY=1",
            "DOCKER_CERT_PATH=/etc/docker/certs",
        ] {
            assert!(env.contains(&e.to_string()), "{env:?}");
        }
        assert!(binds(&tcp).contains(&"/etc/docker/certs:/etc/docker/certs:ro".into()));
    }

    #[test]
    fn labels_never_hold_the_key() {
        let spec = agent_spec(&settings(), &test_key(KEY));
        assert!(!serde_json::to_string(&spec.body.labels)
            .unwrap()
            .contains(KEY));
    }
}
