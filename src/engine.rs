//! The only module that talks to Docker. Everything it returns is ddsky's own plain data; every error
//! says which operation failed on what, so a raw bollard error never reaches the user bare.
//!
//! Layer: edge (see `src/layers.rs`): may use the core only. It offers Docker's primitives and never
//! names what is built from them (the drain, discovery, the commands).

use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ContainerStateStatusEnum, HealthStatusEnum};
use bollard::query_parameters::{
    ContainerArchiveInfoOptions, CreateContainerOptions, CreateImageOptions,
    DownloadFromContainerOptions, EventsOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use bollard::{ClientVersion, Docker};
use futures_util::{Stream, StreamExt};
use std::collections::HashMap;
use std::time::Duration;

/// A look back at the daemon's events ends by itself at its `until`, which may be a second or two
/// ahead; past this it is abandoned.
const LAST_EXIT_WAIT: Duration = Duration::from_secs(3);
/// How long `ddsky` waits for the daemon to answer at all: a setup script must not hang on a dead socket.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// The API version ddsky's client is built with: Docker 20.10's, which has everything ddsky uses
/// (cgroupns needs 1.41). Note that bollard 0.21 does not put it in the request path (its URI
/// builder joins an absolute path onto the `/v1.41` base, which drops the prefix: ddsky sends
/// `GET /_ping`, not `GET /v1.41/_ping`), so every daemon answers at its own current version and
/// none refuses; `engine::tests::requests_carry_no_version_prefix` notices if that changes. Should a
/// daemon refuse the version (Docker 29's minimum is 1.44), ddsky speaks the minimum it names, with
/// no `GET /version` round trip (~10 ms of daemon work) on the runs where nothing is refused.
const FIELD_API: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};
/// The API version that added a health check's `StartInterval`; a daemon ignores it at older versions.
pub const START_INTERVAL_API: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 44,
};
/// Per-request timeout (seconds) for everything else; streams (pull, events, logs) are not bounded by it.
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// One exec's whole life. The agent's CLI answers in about a second; an exec whose container restarts
/// under it can leave its output stream open forever (Docker 20.10), which would hold `up`, and
/// SkyPilot's setup with it, past every deadline.
/// The default limit on one exec: the agent's CLI answers in well under a second on an idle node.
const EXEC_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a running exec's container is looked at (one inspect; most execs end before the first).
const EXEC_WATCH_EVERY: Duration = Duration::from_secs(1);

/// A Docker daemon address in a scheme ddsky speaks (`settings::docker_host` checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerHost {
    /// `unix:///path/to/docker.sock`
    Unix(String),
    /// `tcp://host:port` or `http://host:port`
    Http(String),
}

impl DockerHost {
    /// The address as the user gave it (DOCKER_HOST syntax).
    pub fn url(&self) -> &str {
        match self {
            DockerHost::Unix(url) | DockerHost::Http(url) => url,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker daemon at {host}: {cause}; check that Docker is running and this user may use it (root or the docker group), or point --docker-host/DOCKER_HOST at it")]
    Unreachable {
        host: String,
        #[source]
        cause: Cause,
    },
    /// The socket exists but its permissions refuse this user: typically a job image that runs as a
    /// non-root user, with the host's root-owned socket mounted in.
    #[error("{0}")]
    SocketRefused(SocketRefusal),
    #[error("pulling image {image} failed: {cause}; check the image name, your registry access and network, or use --pull never with an image that is already present")]
    Pull {
        image: String,
        #[source]
        cause: Cause,
    },
    #[error("image {image} is not present and --pull never was given; pull it first or drop --pull never")]
    ImageMissing { image: String },
    #[error("Docker refused to {action} container {name}: {cause}")]
    Container {
        action: &'static str,
        name: String,
        #[source]
        cause: Cause,
    },
    #[error("running `{command}` in container {name} failed: {cause}")]
    Exec {
        name: String,
        command: String,
        #[source]
        cause: Cause,
    },
    #[error("Docker request to {action} failed: {cause}")]
    Other {
        action: &'static str,
        #[source]
        cause: Cause,
    },
}

/// Why a Docker request failed: the daemon's (or the client's) own error, kept whole (reachable through
/// `Error::source`), or what ddsky saw when there was none. Its text is the
/// daemon's message without bollard's Debug noise, which the [`EngineError`] message embeds.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error("{}", cause(.0))]
    Docker(BollardError),
    #[error("{0}")]
    Seen(String),
}

impl From<BollardError> for Cause {
    fn from(e: BollardError) -> Self {
        Cause::Docker(e)
    }
}

impl From<String> for Cause {
    fn from(s: String) -> Self {
        Cause::Seen(s)
    }
}

impl From<&str> for Cause {
    fn from(s: &str) -> Self {
        Cause::Seen(s.to_owned())
    }
}

/// Renders a bollard error without its Debug noise.
fn cause(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        // bollard's own words, then the causes it leaves out ("client error (Connect)" says not
        // that the connection was refused), each once.
        other => crate::error_chain::one_line(other),
    }
}

fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// A connected Docker client (see [`FIELD_API`] for the API version it speaks).
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    host: DockerHost,
    /// The longest one exec may take (`--agent-timeout`).
    exec_timeout: Duration,
}

/// A container as ddsky needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// The image reference it was created from (`Config.Image`).
    pub image: String,
    pub image_id: String,
    pub labels: HashMap<String, String>,
    pub state: ContainerState,
    pub binds: Vec<String>,
    /// Where each mount lands inside the container (binds, volumes and --mount alike).
    pub mounts: Vec<String>,
    pub pid_mode: Option<String>,
    pub cgroupns_mode: Option<String>,
    /// `host`, `bridge`, ...
    pub network_mode: Option<String>,
    /// The agent's command API port when its env moves it (`DD_CMD_PORT`).
    pub cmd_port: Option<u16>,
    /// The json-file log on the host (`LogPath`); empty with other log drivers.
    pub log_path: Option<String>,
    /// When it was created (`Created`, RFC 3339): a restart keeps it, unlike `State.StartedAt`.
    pub created: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// Docker's status word: created, running, restarting, exited, ...
    pub status: String,
    pub running: bool,
    pub restarting: bool,
    /// Docker's health status when the container has a health check: starting, healthy, unhealthy.
    pub health: Option<String>,
    pub restart_count: i64,
    pub started_at: Option<String>,
    /// When it last exited (kept after Docker restarts it; Docker's zero time when it never did).
    pub finished_at: Option<String>,
    /// Docker's `ExitCode`: the last exit's code only while it is down; Docker resets it to 0 when
    /// it restarts the container (see [`Engine::last_exit_code`]).
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    /// Docker's `OOMKilled`: the kernel's OOM killer ended a process of the container; Docker keeps
    /// it set after a restart.
    pub oom_killed: bool,
}

/// A running container, from the list endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningContainer {
    pub id: String,
    pub name: String,
    pub image: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// What a pull reports as it goes, for a progress bar or plain lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    pub layer: Option<String>,
    pub status: String,
    pub current: Option<i64>,
    pub total: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created {
        id: String,
    },
    /// Someone else created a container of that name first.
    NameTaken,
}

/// A container lifecycle event, for waiting without polling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub id: String,
    pub action: String,
}

impl Engine {
    /// Connects to `host` (DOCKER_HOST syntax) within 1.5 s; a daemon that refuses the API version gets the minimum it names.
    pub async fn connect(docker_host: &DockerHost) -> Result<Self, EngineError> {
        let host = docker_host.url();
        let unreachable = |cause: Cause| EngineError::Unreachable {
            host: host.to_owned(),
            cause,
        };
        if let Some(path) = host.strip_prefix("unix://") {
            if !std::path::Path::new(path).exists() {
                return Err(unreachable(format!("no socket at {path}").into()));
            }
        }
        let docker = client(docker_host, &FIELD_API).map_err(|e| unreachable(e.into()))?;
        let answered = tokio::time::timeout(CONNECT_TIMEOUT, async {
            match docker.ping().await {
                Ok(_) => Ok(docker),
                Err(e) => match minimum_version(&e) {
                    Some(minimum) => {
                        let docker = client(docker_host, &minimum)?;
                        docker.ping().await.map(|_| docker)
                    }
                    None => Err(e),
                },
            }
        })
        .await;
        let docker = match answered {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                let text = describe_connect_error(&e);
                // hyper's error text hides the OS error: ask the socket itself why.
                let refused = |path: &str| {
                    is_permission_denied(&text)
                        || std::os::unix::net::UnixStream::connect(path)
                            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
                };
                return Err(match host.strip_prefix("unix://") {
                    Some(path) if refused(path) => {
                        EngineError::SocketRefused(SocketRefusal::observe(path))
                    }
                    _ => unreachable(text.into()),
                });
            }
            Err(_) => {
                return Err(unreachable(
                    format!(
                        "no answer within {}",
                        humantime::format_duration(CONNECT_TIMEOUT)
                    )
                    .into(),
                ))
            }
        };
        tracing::debug!(host, api = %docker.client_version(), "connected to Docker");
        Ok(Engine {
            docker,
            host: docker_host.clone(),
            exec_timeout: EXEC_TIMEOUT,
        })
    }

    /// The same client with another limit on each exec (`--agent-timeout`).
    pub fn with_exec_timeout(mut self, limit: Duration) -> Self {
        self.exec_timeout = limit;
        self
    }

    pub fn host(&self) -> &str {
        self.host.url()
    }

    /// The API version the client is built with (1.41, or the minimum a refusing daemon named).
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// The daemon's own version and the API version it answers at, e.g. (20.10.24, 1.41).
    pub async fn daemon_version(&self) -> Result<(String, Option<String>), EngineError> {
        let v = self
            .docker
            .version()
            .await
            .map_err(|e| EngineError::Other {
                action: "read the daemon version",
                cause: e.into(),
            })?;
        Ok((v.version.unwrap_or_default(), v.api_version))
    }

    /// What a container created on this daemon depends on: its data root (`GET /info`) and
    /// whether its API has `StartInterval` (`GET /version`), asked together. Only asked when
    /// creating: a no-op `up` must not pay for them.
    pub async fn daemon_facts(&self) -> Result<(String, bool), EngineError> {
        let (info, version) = tokio::join!(self.docker.info(), self.docker.version());
        let info = info.map_err(|e| EngineError::Other {
            action: "read daemon info",
            cause: e.into(),
        })?;
        let root = info
            .docker_root_dir
            .filter(|r| r.starts_with('/'))
            .unwrap_or_else(|| crate::spec::DEFAULT_DOCKER_ROOT.to_owned());
        // An unreadable version only costs the start interval.
        let start_interval = version
            .ok()
            .and_then(|v| v.api_version)
            .and_then(|v| parse_api_version(&v))
            .is_some_and(|v| v >= START_INTERVAL_API);
        Ok((root, start_interval))
    }

    /// The container of that name or id, or `None` when there is none.
    pub async fn inspect(&self, name: &str) -> Result<Option<ContainerInfo>, EngineError> {
        match self.docker.inspect_container(name, None).await {
            Ok(c) => Ok(Some(container_info(c))),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(EngineError::Container {
                action: "inspect",
                name: name.to_owned(),
                cause: e.into(),
            }),
        }
    }

    /// The local image's id, or `None` when the image is not present.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(Some(i.id.unwrap_or_default())),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(EngineError::Other {
                action: "inspect the image",
                cause: e.into(),
            }),
        }
    }

    /// Pulls `image`, reporting each progress message to `on_progress`.
    pub async fn pull(
        &self,
        image: &str,
        mut on_progress: impl FnMut(PullProgress),
    ) -> Result<(), EngineError> {
        let options = CreateImageOptions {
            from_image: Some(image.to_owned()),
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| EngineError::Pull {
                image: image.to_owned(),
                cause: e.into(),
            })?;
            on_progress(PullProgress {
                layer: info.id,
                status: info.status.unwrap_or_default(),
                current: info.progress_detail.as_ref().and_then(|p| p.current),
                total: info.progress_detail.as_ref().and_then(|p| p.total),
            });
        }
        // A pull stream can end without an error yet leave nothing behind (a daemon quirk with some
        // registries); only the image being there counts.
        match self.image_id(image).await? {
            Some(_) => Ok(()),
            None => Err(EngineError::Pull {
                image: image.to_owned(),
                cause: "the pull ended but the image is not present".into(),
            }),
        }
    }

    /// Creates the container; `start_interval_api` builds the client at API 1.44 (the daemon was
    /// asked and has it): a request at 1.41 would have the health check's `StartInterval` dropped.
    /// (bollard 0.21 puts no version in the path, so the daemon's own applies anyway; this keeps
    /// the create right should that change, see [`FIELD_API`].)
    pub async fn create(
        &self,
        name: &str,
        body: ContainerCreateBody,
        start_interval_api: bool,
    ) -> Result<CreateOutcome, EngineError> {
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            platform: String::new(),
        };
        let refused = |cause: Cause| EngineError::Container {
            action: "create",
            name: name.to_owned(),
            cause,
        };
        // Never below the version the daemon already asked for (its minimum, if it refused 1.41).
        let docker = if start_interval_api && self.docker.client_version() < START_INTERVAL_API {
            client(&self.host, &START_INTERVAL_API).map_err(|e| refused(e.into()))?
        } else {
            self.docker.clone()
        };
        match docker.create_container(Some(options), body).await {
            Ok(r) => Ok(CreateOutcome::Created { id: r.id }),
            Err(e) if status_of(&e) == Some(409) => Ok(CreateOutcome::NameTaken),
            Err(e) => Err(EngineError::Container {
                action: "create",
                name: name.to_owned(),
                cause: e.into(),
            }),
        }
    }

    pub async fn start(&self, id: &str) -> Result<(), EngineError> {
        match self.docker.start_container(id, None).await {
            // 304: already started, which is what we wanted.
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            Err(e) => Err(EngineError::Container {
                action: "start",
                name: id.to_owned(),
                cause: e.into(),
            }),
        }
    }

    /// SIGTERM, then SIGKILL after `grace`. A container already stopped or gone is fine.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), EngineError> {
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        match self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    signal: None,
                    t: Some(t),
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(304 | 404)) => Ok(()),
            Err(e) => Err(EngineError::Container {
                action: "stop",
                name: id.to_owned(),
                cause: e.into(),
            }),
        }
    }

    /// Removes the container (forcibly: callers stop it gracefully first). Already gone is fine.
    pub async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // 404: gone already; 409: removal already in progress (a racing `down`).
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(EngineError::Container {
                action: "remove",
                name: id.to_owned(),
                cause: e.into(),
            }),
        }
    }

    /// Runs `cmd` in the container and collects its output and exit code. An exec whose container
    /// stops or restarts under it never answers (its attach stays open, more so with the agent's
    /// host pid namespace), so the container is watched meanwhile and the exec given up at once.
    pub async fn exec(
        &self,
        container: &str,
        cmd: &[&str],
        env: &[&str],
    ) -> Result<ExecOutput, EngineError> {
        let failed = |cause: String| EngineError::Exec {
            name: container.to_owned(),
            command: cmd.join(" "),
            cause: cause.into(),
        };
        tokio::select! {
            done = tokio::time::timeout(self.exec_timeout, self.exec_unbounded(container, cmd, env)) => {
                done.unwrap_or_else(|_| {
                    Err(failed(format!(
                        "no answer within {} (the node's CPUs may be too busy: raise --agent-timeout)",
                        humantime::format_duration(self.exec_timeout)
                    )))
                })
            }
            why = self.until_stopped_or_restarted(container) => Err(failed(why.to_owned())),
        }
    }

    /// Returns once `container` is no longer the running container it was when called (stopped,
    /// restarting, started again, or removed); never while it runs on.
    async fn until_stopped_or_restarted(&self, container: &str) -> &'static str {
        let state = |c: bollard::models::ContainerInspectResponse| c.state.unwrap_or_default();
        let first = match self.docker.inspect_container(container, None).await {
            Ok(c) => state(c).started_at,
            Err(_) => None,
        };
        loop {
            tokio::time::sleep(EXEC_WATCH_EVERY).await;
            match self.docker.inspect_container(container, None).await {
                Ok(c) => {
                    let now = state(c);
                    if now.restarting == Some(true) || now.running != Some(true) {
                        return "the container stopped under it";
                    }
                    if first.is_some() && now.started_at != first {
                        return "the container restarted under it";
                    }
                }
                Err(e) if status_of(&e) == Some(404) => {
                    return "the container was removed under it"
                }
                // The daemon's own trouble: the exec's deadline still bounds the wait.
                Err(_) => {}
            }
        }
    }

    async fn exec_unbounded(
        &self,
        container: &str,
        cmd: &[&str],
        env: &[&str],
    ) -> Result<ExecOutput, EngineError> {
        let fail = |e: BollardError| EngineError::Exec {
            name: container.to_owned(),
            command: cmd.join(" "),
            cause: e.into(),
        };
        let created = self
            .docker
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(cmd.to_vec()),
                    env: (!env.is_empty()).then(|| env.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(fail)?;
        let options = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: Some(1 << 20),
        };
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&created.id, Some(options))
            .await
            .map_err(fail)?
        {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(fail)? {
                    bollard::container::LogOutput::StdErr { message } => {
                        stderr.extend_from_slice(&message)
                    }
                    other => stdout.extend_from_slice(&other.into_bytes()),
                }
            }
        }
        let inspected = self.docker.inspect_exec(&created.id).await.map_err(fail)?;
        Ok(ExecOutput {
            exit_code: inspected.exit_code.unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Every running container on the host.
    pub async fn running_containers(&self) -> Result<Vec<RunningContainer>, EngineError> {
        self.list_containers(false).await
    }

    /// Every container on the host, stopped ones too (a finished job's log is still there).
    pub async fn all_containers(&self) -> Result<Vec<RunningContainer>, EngineError> {
        self.list_containers(true).await
    }

    async fn list_containers(&self, all: bool) -> Result<Vec<RunningContainer>, EngineError> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all,
                ..Default::default()
            }))
            .await
            .map_err(|e| EngineError::Other {
                action: "list containers",
                cause: e.into(),
            })?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let id = c.id?;
                let name = c
                    .names
                    .unwrap_or_default()
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                Some(RunningContainer {
                    id,
                    name: name.trim_start_matches('/').to_owned(),
                    image: c.image.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// A small file inside a container (through its mounts too), by the archive API: works from
    /// inside another container, where the host's paths are out of reach. `None` when absent.
    pub async fn read_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>, EngineError> {
        let failed = |cause: Cause| EngineError::Container {
            action: "read a file of",
            name: id.to_owned(),
            cause,
        };
        let mut stream = self.docker.download_from_container(
            id,
            Some(DownloadFromContainerOptions {
                path: path.to_owned(),
            }),
        );
        let mut tarball = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => tarball.extend_from_slice(&bytes),
                Err(e) if status_of(&e) == Some(404) => return Ok(None),
                Err(e) => return Err(failed(e.into())),
            }
        }
        let mut archive = tar::Archive::new(tarball.as_slice());
        let entries = archive
            .entries()
            .map_err(|e| failed(Cause::Seen(format!("unreadable archive: {e}"))))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| failed(Cause::Seen(format!("unreadable archive: {e}"))))?;
            if entry.header().entry_type().is_file() {
                let mut body = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut body)
                    .map_err(|e| failed(Cause::Seen(format!("unreadable archive: {e}"))))?;
                return Ok(Some(body));
            }
        }
        Ok(None)
    }

    /// A file's size inside a container (a HEAD of the archive API: nothing is copied), `None`
    /// when absent.
    pub async fn file_size(&self, id: &str, path: &str) -> Result<Option<u64>, EngineError> {
        match self
            .docker
            .get_container_archive_info(
                id,
                Some(ContainerArchiveInfoOptions {
                    path: path.to_owned(),
                }),
            )
            .await
        {
            Ok(stat) => Ok(Some(u64::try_from(stat.size).unwrap_or(0))),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(EngineError::Container {
                action: "look at a file of",
                name: id.to_owned(),
                cause: e.into(),
            }),
        }
    }

    /// Container start/die/destroy events from now on, so waits can sleep until something changes.
    pub fn container_events(&self) -> impl Stream<Item = ContainerEvent> + Send + 'static {
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            (
                "event".to_owned(),
                vec![
                    "start".into(),
                    "die".into(),
                    "destroy".into(),
                    "health_status".into(),
                ],
            ),
        ]);
        let options = EventsOptions {
            since: None,
            until: None,
            filters: Some(filters),
        };
        self.docker
            .events(Some(options))
            .filter_map(|e| async move {
                let e = e.ok()?;
                Some(ContainerEvent {
                    id: e.actor?.id?,
                    action: e.action.unwrap_or_default(),
                })
            })
    }

    /// The code of the container's last exit, from its `die` event around `finished_at` (Docker's
    /// RFC 3339 `FinishedAt`): Docker resets `State.ExitCode` to 0 when it restarts a container, the
    /// event keeps it. `None` when the daemon no longer holds that event (it keeps only its last few
    /// hundred) or does not answer within a second or two.
    pub async fn last_exit_code(&self, id: &str, finished_at: &str) -> Option<i64> {
        let exited = humantime::parse_rfc3339_weak(finished_at).ok()?;
        let secs = exited.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            ("event".to_owned(), vec!["die".to_owned()]),
            ("container".to_owned(), vec![id.to_owned()]),
        ]);
        let options = EventsOptions {
            since: Some(secs.saturating_sub(1).to_string()),
            until: Some((secs + 2).to_string()),
            filters: Some(filters),
        };
        let events = self.docker.events(Some(options)).collect::<Vec<_>>();
        let events = tokio::time::timeout(LAST_EXIT_WAIT, events).await.ok()?;
        events
            .into_iter()
            .filter_map(Result::ok)
            .filter_map(|e| e.actor?.attributes?.get("exitCode")?.parse().ok())
            .last()
    }

    /// The container's log lines (stdout and stderr), the last `tail` of them or all, optionally following.
    pub fn logs(
        &self,
        id: &str,
        tail: Option<usize>,
        follow: bool,
        since_unix: Option<i32>,
    ) -> impl Stream<Item = Result<String, EngineError>> + Send + 'static {
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            since: since_unix.unwrap_or(0),
            until: 0,
            timestamps: false,
            tail: tail.map_or_else(|| "all".to_owned(), |n| n.to_string()),
        };
        let name = id.to_owned();
        self.docker.logs(id, Some(options)).map(move |chunk| {
            chunk
                .map(|c| String::from_utf8_lossy(&c.into_bytes()).into_owned())
                .map_err(|e| EngineError::Container {
                    action: "read the logs of",
                    name: name.clone(),
                    cause: e.into(),
                })
        })
    }

    /// The last `n` log lines, for error reports.
    pub async fn last_log_lines(&self, id: &str, n: usize) -> Vec<String> {
        let chunks: Vec<_> = self.logs(id, Some(n), false, None).collect().await;
        chunks
            .into_iter()
            .filter_map(Result::ok)
            .flat_map(|c| c.lines().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }

    /// Whether the daemon offers an NVIDIA runtime (nvidia-container-toolkit registered).
    pub async fn has_nvidia_runtime(&self) -> Result<bool, EngineError> {
        let info = self.docker.info().await.map_err(|e| EngineError::Other {
            action: "read daemon info",
            cause: e.into(),
        })?;
        Ok(info
            .runtimes
            .unwrap_or_default()
            .keys()
            .any(|k| k.contains("nvidia")))
    }
}

/// What converging the agent container (and draining the old one's logs first) needs from Docker,
/// as a trait so `up`'s decisions and the drain are tested against a fake daemon; [`Engine`] is the
/// real one.
// Every caller runs on the current-thread runtime, so the futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait ContainerEngine {
    async fn inspect(&self, name: &str) -> Result<Option<ContainerInfo>, EngineError>;
    async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError>;
    async fn pull(
        &self,
        image: &str,
        on_progress: &mut dyn FnMut(PullProgress),
    ) -> Result<(), EngineError>;
    async fn create(
        &self,
        name: &str,
        body: ContainerCreateBody,
        start_interval_api: bool,
    ) -> Result<CreateOutcome, EngineError>;
    async fn start(&self, id: &str) -> Result<(), EngineError>;
    async fn stop(&self, id: &str, grace: Duration) -> Result<(), EngineError>;
    async fn remove(&self, id: &str) -> Result<(), EngineError>;
    async fn daemon_facts(&self) -> Result<(String, bool), EngineError>;
    async fn all_containers(&self) -> Result<Vec<RunningContainer>, EngineError>;
    async fn file_size(&self, id: &str, path: &str) -> Result<Option<u64>, EngineError>;
    async fn read_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>, EngineError>;
    async fn exec(
        &self,
        container: &str,
        cmd: &[&str],
        env: &[&str],
    ) -> Result<ExecOutput, EngineError>;
}

impl ContainerEngine for Engine {
    async fn inspect(&self, name: &str) -> Result<Option<ContainerInfo>, EngineError> {
        Engine::inspect(self, name).await
    }
    async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError> {
        Engine::image_id(self, image).await
    }
    async fn pull(
        &self,
        image: &str,
        on_progress: &mut dyn FnMut(PullProgress),
    ) -> Result<(), EngineError> {
        Engine::pull(self, image, on_progress).await
    }
    async fn create(
        &self,
        name: &str,
        body: ContainerCreateBody,
        start_interval_api: bool,
    ) -> Result<CreateOutcome, EngineError> {
        Engine::create(self, name, body, start_interval_api).await
    }
    async fn start(&self, id: &str) -> Result<(), EngineError> {
        Engine::start(self, id).await
    }
    async fn stop(&self, id: &str, grace: Duration) -> Result<(), EngineError> {
        Engine::stop(self, id, grace).await
    }
    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        Engine::remove(self, id).await
    }
    async fn daemon_facts(&self) -> Result<(String, bool), EngineError> {
        Engine::daemon_facts(self).await
    }
    async fn all_containers(&self) -> Result<Vec<RunningContainer>, EngineError> {
        Engine::all_containers(self).await
    }
    async fn file_size(&self, id: &str, path: &str) -> Result<Option<u64>, EngineError> {
        Engine::file_size(self, id, path).await
    }
    async fn read_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>, EngineError> {
        Engine::read_file(self, id, path).await
    }
    async fn exec(
        &self,
        container: &str,
        cmd: &[&str],
        env: &[&str],
    ) -> Result<ExecOutput, EngineError> {
        Engine::exec(self, container, cmd, env).await
    }
}

/// A client for `host` speaking `version`, without asking the daemon anything.
fn client(host: &DockerHost, version: &ClientVersion) -> Result<Docker, BollardError> {
    match host {
        DockerHost::Unix(url) => Docker::connect_with_unix(url, REQUEST_TIMEOUT_SECS, version),
        DockerHost::Http(url) => Docker::connect_with_http(url, REQUEST_TIMEOUT_SECS, version),
    }
}

/// `1.44` -> 1.44; anything else -> `None`.
fn parse_api_version(v: &str) -> Option<ClientVersion> {
    let (major, minor) = v.trim().split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

/// The version a daemon asks for when it refuses ours; moby's version middleware answers 400 "client
/// version 1.41 is too old. Minimum supported API version is 1.44, please upgrade your client to a
/// newer version".
fn minimum_version(e: &BollardError) -> Option<ClientVersion> {
    let BollardError::DockerResponseServerError {
        status_code: 400,
        message,
    } = e
    else {
        return None;
    };
    let named = message.split("Minimum supported API version is").nth(1)?;
    parse_api_version(named.trim().split([',', ' ']).next()?)
}

fn is_permission_denied(text: &str) -> bool {
    let text = text.to_lowercase();
    text.contains("permission denied") || text.contains("os error 13")
}

/// Who was refused by which socket, and so what fixes it: the socket's group added to the user (in a
/// container: `docker run --group-add <gid>`, i.e. SkyPilot's `config.docker.run_options`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketRefusal {
    pub path: String,
    /// This process's uid and supplementary groups, when /proc/self/status could tell.
    pub uid: Option<u32>,
    pub groups: Vec<u32>,
    /// The socket's owning group and permission bits, when it could be stat'ed.
    pub socket_gid: Option<u32>,
    pub socket_mode: Option<u32>,
}

impl SocketRefusal {
    /// Reads the facts (the socket's stat, /proc/self/status); never fails.
    fn observe(path: &str) -> Self {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let (uid, groups) = caller_ids(&status);
        SocketRefusal {
            path: path.to_owned(),
            uid,
            groups,
            socket_gid: meta.as_ref().map(|m| m.gid()),
            socket_mode: meta.as_ref().map(|m| m.mode() & 0o777),
        }
    }
}

/// The real uid and the supplementary groups from `/proc/<pid>/status` text.
fn caller_ids(status: &str) -> (Option<u32>, Vec<u32>) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::split_whitespace)
    };
    let uid = field("Uid:").and_then(|mut f| f.next()?.parse().ok());
    let groups = field("Groups:")
        .map(|f| f.filter_map(|g| g.parse().ok()).collect())
        .unwrap_or_default();
    (uid, groups)
}

impl std::fmt::Display for SocketRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = match self.uid {
            Some(uid) => {
                let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
                let groups = if groups.is_empty() {
                    "none".into()
                } else {
                    groups.join(",")
                };
                format!("uid {uid}, groups {groups}")
            }
            None => "this user".into(),
        };
        write!(
            f,
            "the Docker socket {} refused this user ({who}): permission denied",
            self.path
        )?;
        match self.socket_gid {
            Some(gid) => {
                let mode = self.socket_mode.map(|m| format!(", mode {m:o}")).unwrap_or_default();
                write!(
                    f,
                    "; the socket belongs to group {gid}{mode}. Give the container ddsky runs in that group: \
                     `docker run --group-add {gid}`, in a SkyPilot task \
                     `config: {{docker: {{run_options: [\"--group-add {gid}\"]}}}}` \
                     (on a host: add the user to group {gid}), or run as root"
                )
            }
            None => write!(
                f,
                "; give the container ddsky runs in the socket's group (`docker run --group-add <gid>`, \
                 the gid from `stat -c %g {}` on the host), or run as root",
                self.path
            ),
        }
    }
}

fn describe_connect_error(e: &BollardError) -> String {
    let text = cause(e);
    if is_permission_denied(&text) {
        format!("{text} (this user may not use the socket: run as root or join the docker group)")
    } else {
        text
    }
}

fn container_info(c: bollard::models::ContainerInspectResponse) -> ContainerInfo {
    let state = c.state.unwrap_or_default();
    let config = c.config.unwrap_or_default();
    // An agent's env carries its key: whatever ddsky prints from here on must not repeat it.
    let key_prefix = format!("{}=", crate::spec::API_KEY_ENV);
    for value in config
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.strip_prefix(&key_prefix))
    {
        crate::redact::register(value);
    }
    let cmd_port = config
        .env
        .iter()
        .flatten()
        .rev()
        .find_map(|e| e.strip_prefix("DD_CMD_PORT="))
        .and_then(|p| p.trim().parse().ok());
    let host = c.host_config.unwrap_or_default();
    ContainerInfo {
        id: c.id.unwrap_or_default(),
        name: c
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        image: config.image.unwrap_or_default(),
        image_id: c.image.unwrap_or_default(),
        created: c.created.clone(),
        labels: config.labels.unwrap_or_default(),
        state: ContainerState {
            status: state
                .status
                .map_or_else(|| "unknown".to_owned(), |s| status_word(s).to_owned()),
            running: state.running.unwrap_or(false),
            restarting: state.restarting.unwrap_or(false),
            health: state
                .health
                .and_then(|h| h.status)
                .and_then(health_word)
                .map(str::to_owned),
            restart_count: c.restart_count.unwrap_or(0),
            started_at: state.started_at,
            finished_at: state.finished_at,
            exit_code: state.exit_code,
            error: state.error.filter(|e| !e.is_empty()),
            oom_killed: state.oom_killed.unwrap_or(false),
        },
        binds: host.binds.unwrap_or_default(),
        mounts: c
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.destination)
            .collect(),
        pid_mode: host.pid_mode,
        cgroupns_mode: host.cgroupns_mode.map(|m| m.to_string()),
        network_mode: host.network_mode,
        cmd_port,
        log_path: c.log_path.filter(|p| !p.is_empty()),
    }
}

fn status_word(s: ContainerStateStatusEnum) -> &'static str {
    match s {
        ContainerStateStatusEnum::CREATED => "created",
        ContainerStateStatusEnum::RUNNING => "running",
        ContainerStateStatusEnum::PAUSED => "paused",
        ContainerStateStatusEnum::RESTARTING => "restarting",
        ContainerStateStatusEnum::REMOVING => "removing",
        ContainerStateStatusEnum::EXITED => "exited",
        ContainerStateStatusEnum::DEAD => "dead",
        _ => "unknown",
    }
}

fn health_word(s: HealthStatusEnum) -> Option<&'static str> {
    match s {
        HealthStatusEnum::STARTING => Some("starting"),
        HealthStatusEnum::HEALTHY => Some("healthy"),
        HealthStatusEnum::UNHEALTHY => Some("unhealthy"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;
    use std::sync::{Arc, Mutex};

    /// A daemon on a unix socket that answers each request with the next of `answers` (status,
    /// JSON body) and records the request lines.
    struct FakeDaemon {
        host: DockerHost,
        requests: Arc<Mutex<Vec<String>>>,
        _dir: tempfile::TempDir,
    }

    impl FakeDaemon {
        fn start(answers: Vec<(u16, &'static str)>) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("docker.sock");
            let listener = UnixListener::bind(&path).unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let seen = Arc::clone(&requests);
            std::thread::spawn(move || {
                for (status, body) in answers {
                    let Ok((stream, _)) = listener.accept() else {
                        return;
                    };
                    let mut reader = BufReader::new(&stream);
                    let mut line = String::new();
                    let _ = reader.read_line(&mut line);
                    seen.lock().unwrap().push(line.trim_end().to_owned());
                    // The rest of the head; these requests have no body.
                    let mut header = String::new();
                    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                        header.clear();
                    }
                    let _ = write!(
                        &stream,
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nApi-Version: 1.52\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
            FakeDaemon {
                host: DockerHost::Unix(format!("unix://{}", path.display())),
                requests,
                _dir: dir,
            }
        }

        fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }
    }

    fn connect(daemon: &FakeDaemon) -> Result<Engine, EngineError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(Engine::connect(&daemon.host))
    }

    /// What every daemon from 20.10 to 29 accepts today. If a bollard upgrade puts `/v1.41` back
    /// into the path, Docker 29 refuses it and the refusal path below is what keeps ddsky working.
    #[test]
    fn requests_carry_no_version_prefix() {
        let daemon = FakeDaemon::start(vec![(200, "\"OK\"")]);
        let engine = connect(&daemon).unwrap();
        assert_eq!(daemon.requests(), vec!["GET /_ping HTTP/1.1".to_owned()]);
        assert_eq!(engine.api_version(), "1.41");
    }

    #[test]
    fn a_daemon_that_refuses_the_version_is_spoken_to_at_the_minimum_it_names() {
        let daemon = FakeDaemon::start(vec![
            (
                400,
                r#"{"message":"client version 1.41 is too old. Minimum supported API version is 1.44, please upgrade your client to a newer version"}"#,
            ),
            (200, "\"OK\""),
        ]);
        let engine = connect(&daemon).unwrap();
        assert_eq!(engine.api_version(), "1.44");
        assert_eq!(daemon.requests().len(), 2, "{:?}", daemon.requests());
    }

    #[test]
    fn other_refusals_are_errors_not_version_changes() {
        let daemon = FakeDaemon::start(vec![(400, r#"{"message":"bad request"}"#)]);
        let err = connect(&daemon).err().expect("refused");
        assert!(err.to_string().contains("bad request"), "{err}");
        assert_eq!(daemon.requests().len(), 1);
    }

    #[test]
    fn the_minimum_version_is_read_from_the_refusal() {
        let refusal = |message: &str| BollardError::DockerResponseServerError {
            status_code: 400,
            message: message.into(),
        };
        let named = minimum_version(&refusal(
            "client version 1.41 is too old. Minimum supported API version is 1.44, please upgrade your client to a newer version",
        ));
        assert_eq!(named.map(|v| v.to_string()).as_deref(), Some("1.44"));
        assert!(minimum_version(&refusal("Minimum supported API version is 1.52")).is_some());
        assert!(minimum_version(&refusal("no such container")).is_none());
        assert!(minimum_version(&BollardError::DockerResponseServerError {
            status_code: 500,
            message: "Minimum supported API version is 1.44".into(),
        })
        .is_none());
    }

    #[test]
    fn caller_ids_come_from_proc_status() {
        let status = "Name:\tddsky\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t1000 27 \n";
        assert_eq!(caller_ids(status), (Some(1000), vec![1000, 27]));
        assert_eq!(caller_ids("Groups:\t\n"), (None, vec![]));
    }

    #[test]
    fn a_refused_socket_names_the_user_the_group_and_the_fix() {
        let refusal = SocketRefusal {
            path: "/var/run/docker.sock".into(),
            uid: Some(1000),
            groups: vec![1000],
            socket_gid: Some(999),
            socket_mode: Some(0o660),
        };
        let text = refusal.to_string();
        assert!(!text.contains('\n'), "one line: {text}");
        for part in [
            "/var/run/docker.sock refused this user (uid 1000, groups 1000)",
            "permission denied",
            "group 999, mode 660",
            "--group-add 999",
            "run_options: [\"--group-add 999\"]",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
        let unknown = SocketRefusal {
            uid: None,
            socket_gid: None,
            socket_mode: None,
            groups: vec![],
            ..refusal
        };
        assert!(unknown
            .to_string()
            .contains("stat -c %g /var/run/docker.sock"));
    }

    #[test]
    fn permission_denied_is_recognised_in_either_wording() {
        assert!(is_permission_denied(
            "error trying to connect: Permission denied (os error 13)"
        ));
        assert!(is_permission_denied("connect: os error 13"));
        assert!(!is_permission_denied(
            "No such file or directory (os error 2)"
        ));
    }
}
