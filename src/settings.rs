//! The edge between the command line and the core (ripgrep's raw args -> high-level args): clap's
//! arguments come in, validated settings in core types go out. Every input check is made here, before
//! anything runs (the rules themselves live with their concept: Docker's names in `reference`, the
//! tags' in `tags`), so the commands below receive values they can trust and never look at clap or
//! the environment's lists.
//!
//! Durations are the one exception: clap parses them (`cli::duration`), so a bad one is a usage error
//! rendered like every other bad flag value.
//!
//! Layer: input (see `src/layers.rs`): may use the core, the edges and the domain; never `commands`.

use crate::cli::{self, Cli, Command};
use crate::engine::DockerHost;
use crate::gpu::GpuMode;
use crate::output::Format;
use crate::reference;
use crate::registry::ImageList;
use crate::spec::{NetworkMode, API_KEY_ENV};
use crate::tags;
use std::ffi::OsString;
use std::time::Duration;

/// The local socket, when neither --docker-host nor DOCKER_HOST names a daemon.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Input ddsky refuses before it does anything; always a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The message names the value, what is wrong with it and the fix.
    #[error("{0}")]
    Invalid(String),
    #[error("--docker-host {host:?} is not supported: use unix:///path/to/docker.sock or tcp://host:port")]
    UnsupportedHost { host: String },
}

/// `--pull missing|always|never`: when `up` pulls the agent image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Missing,
    Always,
    Never,
}

/// What every command is given: the container, the daemon and the output form.
#[derive(Debug, Clone)]
pub struct Global {
    pub name: String,
    pub docker_host: DockerHost,
    pub format: Format,
    /// The longest one `agent` command in the agent container may take.
    pub agent_timeout: Duration,
}

/// One command's validated settings.
#[derive(Debug)]
pub enum CommandSettings {
    Up(Box<UpSettings>),
    Status(StatusSettings),
    Down(DownSettings),
    Run(Box<RunSettings>),
    Env(JobSettings),
    Doctor(DoctorSettings),
    Logs(LogsSettings),
    K8s(JobSettings),
    Verify(Box<VerifySettings>),
    Dashboard(Box<DashboardSettings>),
}

/// `ddsky dashboard`, validated: the identity the bodies are built from, the monitor's options,
/// where the API is.
#[derive(Debug, Clone)]
pub struct DashboardSettings {
    pub identity: crate::dashboard::Identity,
    pub run_id: Option<String>,
    /// `None`: --no-monitor.
    pub monitor: Option<crate::dashboard::MonitorOptions>,
    pub dry_run: bool,
    pub delete: bool,
    pub api_timeout: Duration,
    /// The whole command's bound.
    pub timeout: Duration,
    pub api: ApiSettings,
}

/// Where Datadog's API is and where its two keys are looked for (`verify`, `dashboard`): the
/// errors that name a refused key name these places.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub site: String,
    /// `https://api.<site>`, or DDSKY_API_URL.
    pub api_base: String,
    /// The web UI, for links.
    pub ui_base: String,
    pub key: KeySettings,
    pub app_key_secret_id: String,
}

impl ApiSettings {
    fn from_args(args: cli::ApiArgs) -> Result<Self, SettingsError> {
        let site = args.site.trim().to_owned();
        if site.is_empty() || site.contains(['/', ' ', ':']) {
            return Err(SettingsError::Invalid(format!(
                "DD_SITE / --site {site:?} is not a site; use e.g. datadoghq.com, datadoghq.eu, us5.datadoghq.com"
            )));
        }
        let api_base = match env_var("DDSKY_API_URL").filter(|v| !v.trim().is_empty()) {
            Some(url) => crate::verify::check_api_url(&url).map_err(SettingsError::Invalid)?,
            None => crate::verify::api_base(&site),
        };
        Ok(ApiSettings {
            ui_base: crate::verify::ui_base(&site),
            site,
            api_base,
            key: KeySettings {
                require_key: true,
                secret_id: args.key.secret_id,
                no_aws: args.key.no_aws,
                aws_region: args.key.aws_region,
                secret_timeout: args.key.secret_timeout,
            },
            app_key_secret_id: args.app_key_secret_id,
        })
    }
}

/// `ddsky verify`, validated: which run, where the API is, what to check.
#[derive(Debug, Clone)]
pub struct VerifySettings {
    /// The tags every node of the run carries, normalised.
    pub tags: Vec<String>,
    pub since: Duration,
    pub nodes: Option<u32>,
    /// Never empty (--expect, else DDSKY_EXPECT, else `metta`).
    pub expect: Vec<String>,
    pub gpus: bool,
    pub no_logs: bool,
    /// The job ran on the VM itself: no job container is expected.
    pub vm_mode: bool,
    pub wait: Option<Duration>,
    pub api: ApiSettings,
    /// The title of `ddsky dashboard`'s dashboard (DDSKY_ENV, DDSKY_SERVICE), to link to it.
    pub dashboard_title: String,
}

/// What `up`, `env`, `k8s` and `doctor` share: the job's tag inputs and where the agent listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// The `env` tag and DD_ENV.
    pub env: String,
    /// The `service` tag.
    pub service: String,
    /// Extra `key:value` host tags (--tag, else DDSKY_TAGS), checked; `tags::build` normalises them.
    pub tags: Vec<String>,
    pub network: NetworkMode,
    pub apm_port: u16,
    pub dogstatsd_port: u16,
}

/// Where the API key is looked for.
#[derive(Debug, Clone)]
pub struct KeySettings {
    pub require_key: bool,
    pub secret_id: String,
    pub no_aws: bool,
    pub aws_region: Option<String>,
    pub secret_timeout: Duration,
}

/// `ddsky up`, validated: the image reference is well-formed and the agent env parsed.
#[derive(Debug, Clone)]
pub struct UpSettings {
    pub agent: JobSettings,
    /// `--image`/DDSKY_IMAGE as a list; `None`: the default list for the cloud (`registry`).
    pub image: Option<ImageList>,
    /// How long a pull may go without progress before the next entry is tried.
    pub pull_timeout: Duration,
    pub site: String,
    pub gpus: GpuMode,
    pub dd_url: Option<String>,
    /// `--agent-env` (else DDSKY_AGENT_ENV) as (KEY, VALUE), DD_API_KEY refused.
    pub extra_env: Vec<(String, String)>,
    pub pull: PullPolicy,
    /// The host directory for the agent's run dir (its log positions), absolute.
    pub run_dir: String,
    /// On a host: where `ddsky run` writes the job's output for the agent's file sources, absolute.
    pub job_log_dir: String,
    /// The job runs on the VM itself: no job container to expect; `run` writes the job files.
    pub vm_mode: bool,
    pub replace: bool,
    pub timeout: Duration,
    /// The patterns given (--expect, else DDSKY_EXPECT); empty means `up`'s default, which depends
    /// on where ddsky runs.
    pub expect: Vec<String>,
    pub no_wait: bool,
    pub dry_run: bool,
    pub key: KeySettings,
}

#[derive(Debug, Clone)]
pub struct StatusSettings {
    /// The patterns given (--expect, else DDSKY_EXPECT).
    pub expect: Vec<String>,
    pub wait: Option<Duration>,
}

/// `ddsky run`, validated. The job always runs: `agent` is the agent's settings, or why monitoring
/// is off for this run (a bad value in the environment: the command line's own flags were checked
/// like any command's, before the job started).
#[derive(Debug)]
pub struct RunSettings {
    pub command: Vec<OsString>,
    /// The environment ddsky was started with, which the job inherits (ddsky may drop bad DDSKY_*
    /// values from its own).
    pub inherited_env: Vec<(OsString, OsString)>,
    /// The job's tag inputs and ports, for the variables `ddsky env` prints.
    pub job: JobSettings,
    pub agent: Result<UpSettings, String>,
    pub down: bool,
    pub down_timeout: Duration,
    pub no_drain: bool,
    /// The copy buffer's bound in bytes (--copy-buffer).
    pub copy_buffer: usize,
}

#[derive(Debug, Clone)]
pub struct DownSettings {
    /// The whole teardown: the drain, then the stop's grace.
    pub timeout: Duration,
    pub force: bool,
    /// Stop at once, without waiting for the job's logs to be sent.
    pub no_drain: bool,
}

#[derive(Debug, Clone)]
pub struct DoctorSettings {
    pub agent: JobSettings,
    /// The patterns to check, never empty (--expect, else DDSKY_EXPECT, else `metta`).
    pub expect: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct LogsSettings {
    pub follow: bool,
    pub tail: Option<usize>,
    pub since: Option<Duration>,
}

// The clap mirrors of the core's value enums, converted.

impl From<cli::Format> for Format {
    fn from(f: cli::Format) -> Self {
        match f {
            cli::Format::Text => Self::Text,
            cli::Format::Json => Self::Json,
            cli::Format::Shell => Self::Shell,
            cli::Format::EnvFile => Self::EnvFile,
        }
    }
}

impl From<cli::PullPolicy> for PullPolicy {
    fn from(p: cli::PullPolicy) -> Self {
        match p {
            cli::PullPolicy::Missing => Self::Missing,
            cli::PullPolicy::Always => Self::Always,
            cli::PullPolicy::Never => Self::Never,
        }
    }
}

impl From<cli::GpuMode> for GpuMode {
    fn from(g: cli::GpuMode) -> Self {
        match g {
            cli::GpuMode::Auto => Self::Auto,
            cli::GpuMode::All => Self::All,
            cli::GpuMode::None => Self::None,
        }
    }
}

impl From<cli::NetworkMode> for NetworkMode {
    fn from(n: cli::NetworkMode) -> Self {
        match n {
            cli::NetworkMode::Host => Self::Host,
            cli::NetworkMode::Bridge => Self::Bridge,
        }
    }
}

/// Checks the whole command line, in the order a user reads it: the global flags, then the command's.
/// The command line, parsed, with what `ddsky run` needs to never let the environment stop its job.
pub struct Parsed {
    pub cli: Cli,
    /// `ddsky run` only: a bad value in the environment, which turns monitoring off for this run.
    pub env_problem: Option<String>,
    pub inherited_env: Vec<(OsString, OsString)>,
}

/// Why the command line itself is refused (exit 2).
#[derive(Debug)]
pub enum ParseError {
    Clap(clap::Error),
    Settings(SettingsError),
}

/// Parses the command line. `ddsky run` is lenient with the environment alone: when the command
/// line is valid but an environment twin (DDSKY_*, DD_SITE, DD_DD_URL, DOCKER_HOST) is not, the
/// twins are dropped from ddsky's own environment (the job still inherits them, from the snapshot
/// taken first) and the problem is returned, so the job runs without monitoring instead of not at
/// all. Called before any thread starts.
pub fn parse() -> Result<Parsed, ParseError> {
    use clap::{CommandFactory, FromArgMatches, Parser};
    let inherited_env: Vec<_> = std::env::vars_os().collect();
    let first = Cli::try_parse();
    let is_run = match &first {
        Ok(cli) => matches!(cli.command, Command::Run(_)),
        Err(_) => Cli::command()
            .ignore_errors(true)
            .try_get_matches()
            .is_ok_and(|m| m.subcommand_name() == Some("run")),
    };
    let problem = match &first {
        _ if !is_run => None,
        Err(e) => Some(first_line(&e.render().to_string())),
        Ok(cli) => validate_run(cli).err().map(|e| e.to_string()),
    };
    let Some(problem) = problem else {
        return first
            .map(|cli| Parsed {
                cli,
                env_problem: None,
                inherited_env: inherited_env.clone(),
            })
            .map_err(ParseError::Clap);
    };
    let mut command = Cli::command();
    let mut twins: Vec<String> = ["DDSKY_TAGS", "DDSKY_AGENT_ENV", "DDSKY_EXPECT"]
        .map(String::from)
        .to_vec();
    let run = command.find_subcommand_mut("run").map(|c| c.clone());
    for arg in command
        .get_arguments()
        .chain(run.iter().flat_map(|r| r.get_arguments()))
    {
        if let Some(var) = arg.get_env() {
            twins.push(var.to_string_lossy().into_owned());
        }
    }
    for var in twins {
        std::env::remove_var(var);
    }
    let matches = Cli::command().try_get_matches().map_err(ParseError::Clap)?;
    let cli = Cli::from_arg_matches(&matches).map_err(ParseError::Clap)?;
    validate_run(&cli).map_err(ParseError::Settings)?;
    Ok(Parsed {
        cli,
        env_problem: Some(problem),
        inherited_env,
    })
}

/// What `from_cli` would refuse of a `ddsky run` command line, checked before the job starts.
fn validate_run(cli: &Cli) -> Result<(), SettingsError> {
    Global::from_args(&cli.global)?;
    if let Command::Run(args) = &cli.command {
        if args.up.dry_run {
            return Err(SettingsError::Invalid(
                "--dry-run is for `ddsky up`; `ddsky run` always runs the job".into(),
            ));
        }
        UpSettings::from_args(args.up.clone())?;
        copy_buffer(&args.copy_buffer)?;
    }
    Ok(())
}

/// `--job-log-dir`, else `~/.ddsky/job-logs` (beside the binary the setup snippet installs; the
/// SkyPilot user may write there without root), else /tmp/ddsky-job-logs without a HOME.
fn job_log_dir(given: Option<&str>) -> Result<String, SettingsError> {
    let dir = match given.map(str::trim).filter(|d| !d.is_empty()) {
        Some(dir) => dir.to_owned(),
        None => match env_var("HOME").filter(|h| h.starts_with('/')) {
            Some(home) => format!("{}/.ddsky/job-logs", home.trim_end_matches('/')),
            None => "/tmp/ddsky-job-logs".to_owned(),
        },
    };
    if !dir.starts_with('/') || dir.contains(':') {
        return Err(SettingsError::Invalid(format!(
            "--job-log-dir {dir:?} must be an absolute host path without ':' (e.g. /home/ubuntu/.ddsky/job-logs)"
        )));
    }
    Ok(dir.trim_end_matches('/').to_owned())
}

/// The smallest and largest copy buffer: one read of the job's pipe, and more than any node
/// should give a log that does not keep up.
const COPY_BUFFER_MIN: u64 = 64 * 1024;
const COPY_BUFFER_MAX: u64 = 16 * 1024 * 1024 * 1024;

/// `--copy-buffer`: a size such as `64MiB` (bytesize's forms: B, KiB, MiB, GiB, KB, MB, ...).
pub fn copy_buffer(given: &str) -> Result<usize, SettingsError> {
    let bad = |why: &str| {
        SettingsError::Invalid(format!(
            "--copy-buffer {given:?} {why}: give a size from 64KiB to 16GiB, e.g. 64MiB or 1GiB"
        ))
    };
    let size: bytesize::ByteSize = given.trim().parse().map_err(|_| bad("is not a size"))?;
    if !(COPY_BUFFER_MIN..=COPY_BUFFER_MAX).contains(&size.as_u64()) {
        return Err(bad("is out of range"));
    }
    usize::try_from(size.as_u64()).map_err(|_| bad("is more than this machine can address"))
}

fn first_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid value")
        .to_owned()
}

pub fn from_cli(
    cli: Cli,
    env_problem: Option<String>,
    inherited_env: Vec<(OsString, OsString)>,
) -> Result<(Global, CommandSettings), SettingsError> {
    let global = Global::from_args(&cli.global)?;
    let env_only = matches!(global.format, Format::Shell | Format::EnvFile);
    if env_only && !matches!(cli.command, Command::Env(_)) {
        return Err(SettingsError::Invalid(
            "--format shell and env-file are for `ddsky env`; use text or json".into(),
        ));
    }
    let command = match cli.command {
        Command::Up(args) => CommandSettings::Up(Box::new(UpSettings::from_args(*args)?)),
        Command::Status(args) => CommandSettings::Status(StatusSettings {
            expect: or_env_list(&args.expect, "DDSKY_EXPECT"),
            wait: args.wait,
        }),
        Command::Down(args) => CommandSettings::Down(DownSettings {
            timeout: args.timeout,
            force: args.force,
            no_drain: args.no_drain,
        }),
        Command::Run(args) => {
            let args = *args;
            CommandSettings::Run(Box::new(RunSettings {
                command: args.command,
                inherited_env,
                job: JobSettings::from_args(&args.up.agent)?,
                agent: match env_problem {
                    Some(problem) => Err(problem),
                    None => UpSettings::from_args(args.up).map_err(|e| e.to_string()),
                },
                down: args.down,
                down_timeout: args.down_timeout,
                no_drain: args.no_drain,
                copy_buffer: copy_buffer(&args.copy_buffer)?,
            }))
        }
        Command::Env(args) => CommandSettings::Env(JobSettings::from_args(&args.agent)?),
        Command::K8s(args) => CommandSettings::K8s(JobSettings::from_args(&args.agent)?),
        Command::Doctor(args) => {
            let given = or_env_list(&args.expect, "DDSKY_EXPECT");
            CommandSettings::Doctor(DoctorSettings {
                agent: JobSettings::from_args(&args.agent)?,
                expect: if given.is_empty() {
                    vec![args.default_expect]
                } else {
                    given
                },
            })
        }
        Command::Verify(args) => {
            CommandSettings::Verify(Box::new(VerifySettings::from_args(args)?))
        }
        Command::Dashboard(args) => {
            CommandSettings::Dashboard(Box::new(DashboardSettings::from_args(args)?))
        }
        Command::Logs(args) => CommandSettings::Logs(LogsSettings {
            follow: args.follow,
            tail: args.tail,
            since: args.since,
        }),
    };
    Ok((global, command))
}

impl Global {
    pub fn from_args(args: &cli::GlobalArgs) -> Result<Self, SettingsError> {
        reference::validate_container_name(&args.name).map_err(SettingsError::Invalid)?;
        Ok(Global {
            name: args.name.clone(),
            docker_host: docker_host(args.docker_host.as_deref())?,
            format: args.format.into(),
            agent_timeout: positive(args.agent_timeout, "--agent-timeout")?,
        })
    }
}

impl JobSettings {
    pub fn from_args(args: &cli::AgentArgs) -> Result<Self, SettingsError> {
        let tags = or_env_list(&args.tags, "DDSKY_TAGS");
        for tag in &tags {
            tags::check_extra(tag).map_err(|e| SettingsError::Invalid(e.to_string()))?;
        }
        Ok(JobSettings {
            env: args.env.clone(),
            service: args.service.clone(),
            tags,
            network: args.network.into(),
            apm_port: args.apm_port,
            dogstatsd_port: args.dogstatsd_port,
        })
    }
}

impl UpSettings {
    pub fn from_args(args: cli::UpArgs) -> Result<Self, SettingsError> {
        let image = args
            .image
            .as_deref()
            .filter(|i| !i.trim().is_empty())
            .map(ImageList::parse)
            .transpose()
            .map_err(SettingsError::Invalid)?;
        let extra_env = or_env_list(&args.agent_env, "DDSKY_AGENT_ENV")
            .iter()
            .map(|e| parse_agent_env(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SettingsError::Invalid)?;
        if !args.run_dir.starts_with('/') || args.run_dir.contains(':') {
            return Err(SettingsError::Invalid(format!(
                "--run-dir {:?} must be an absolute host path without ':' (e.g. /opt/datadog-agent/run)",
                args.run_dir
            )));
        }
        let job_log_dir = job_log_dir(args.job_log_dir.as_deref())?;
        // The tags are checked last, as `up` always did.
        let agent = JobSettings::from_args(&args.agent)?;
        Ok(UpSettings {
            agent,
            image,
            pull_timeout: args.pull_timeout,
            site: args.site,
            gpus: args.gpus.into(),
            dd_url: args.dd_url,
            extra_env,
            pull: args.pull.into(),
            run_dir: args.run_dir,
            job_log_dir,
            vm_mode: args.vm_mode,
            replace: args.replace,
            timeout: args.timeout,
            expect: or_env_list(&args.expect, "DDSKY_EXPECT"),
            no_wait: args.no_wait,
            dry_run: args.dry_run,
            key: KeySettings {
                require_key: args.key.require_key,
                secret_id: args.key.secret_id,
                no_aws: args.key.no_aws,
                aws_region: args.key.aws_region,
                secret_timeout: args.key.secret_timeout,
            },
        })
    }
}

impl VerifySettings {
    pub fn from_args(args: cli::VerifyArgs) -> Result<Self, SettingsError> {
        let tags = crate::verify::selector_tags(
            args.run_id.as_deref(),
            args.cluster.as_deref(),
            &args.tags,
        )
        .map_err(SettingsError::Invalid)?;
        let api = ApiSettings::from_args(args.api)?;
        if args.since < Duration::from_secs(1) {
            return Err(SettingsError::Invalid(
                "--since must be at least 1s (e.g. 10m)".into(),
            ));
        }
        if args.nodes == Some(0) {
            return Err(SettingsError::Invalid(
                "--nodes 0 expects nothing; give the run's node count or leave it out".into(),
            ));
        }
        let given = or_env_list(&args.expect, "DDSKY_EXPECT");
        Ok(VerifySettings {
            tags,
            since: args.since,
            nodes: args.nodes,
            expect: if given.is_empty() {
                vec!["metta".into()]
            } else {
                given
            },
            gpus: args.gpus,
            no_logs: args.no_logs,
            vm_mode: args.vm_mode,
            wait: args.wait,
            api,
            dashboard_title: dashboard_title_from_env(),
        })
    }
}

/// A `--env` / `--service` value as `up` tags the nodes with it (Datadog's tag rules: lowercase, ...).
fn tag_value(key: &str, value: &str) -> Result<String, SettingsError> {
    tags::normalize(&format!("{key}:{}", value.trim()))
        .tag
        .and_then(|t| t.strip_prefix(&format!("{key}:")).map(str::to_owned))
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            SettingsError::Invalid(format!(
                "--{key} {value:?} is not a tag value; give the value `ddsky up` tags the nodes with (e.g. production)"
            ))
        })
}

/// The title of `ddsky dashboard`'s dashboard for the identity in DDSKY_ENV / DDSKY_SERVICE (the
/// defaults `up` and `dashboard` use when they are unset), which `verify` links to.
fn dashboard_title_from_env() -> String {
    let value = |var: &str, key: &str, default: &str| {
        let given = env_var(var).filter(|v| !v.trim().is_empty());
        tag_value(key, given.as_deref().unwrap_or(default)).unwrap_or_else(|_| default.to_owned())
    };
    crate::dashboard::dashboard_title(&crate::dashboard::Identity {
        env: value("DDSKY_ENV", "env", "production"),
        service: value("DDSKY_SERVICE", "service", "skypilot-worker"),
    })
}

impl DashboardSettings {
    pub fn from_args(args: cli::DashboardArgs) -> Result<Self, SettingsError> {
        use crate::dashboard;
        let invalid = SettingsError::Invalid;
        let identity = dashboard::Identity {
            env: tag_value("env", &args.env)?,
            service: tag_value("service", &args.service)?,
        };
        if let Some(run) = &args.run_id {
            if run.trim().is_empty() {
                return Err(invalid(
                    "--run-id is empty; give the run's metta_run_id".into(),
                ));
            }
        }
        let monitor = if args.no_monitor {
            None
        } else {
            let idle_below = dashboard::check_idle_below(args.idle_below).map_err(invalid)?;
            dashboard::evaluation_window(args.idle_for).map_err(invalid)?;
            let notify = args
                .notify
                .iter()
                .map(|n| dashboard::notify_handle(n))
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?;
            Some(dashboard::MonitorOptions {
                idle_below,
                idle_for: args.idle_for,
                startup_grace: args.startup_grace,
                notify,
            })
        };
        if args.api_timeout < Duration::from_secs(1) || args.timeout < Duration::from_secs(1) {
            return Err(invalid(
                "--api-timeout and --timeout must be at least 1s (e.g. 30s, 3m)".into(),
            ));
        }
        let api = ApiSettings::from_args(args.api)?;
        Ok(DashboardSettings {
            identity,
            run_id: args.run_id.map(|r| r.trim().to_owned()),
            monitor,
            dry_run: args.dry_run,
            delete: args.delete,
            api_timeout: args.api_timeout,
            timeout: args.timeout,
            api,
        })
    }
}

/// The daemon to talk to: the flag (or DOCKER_HOST) when set and not blank, else the local socket;
/// only the schemes ddsky speaks.
/// A duration that is not zero (a zero limit would fail every command at once).
fn positive(limit: Duration, flag: &str) -> Result<Duration, SettingsError> {
    if limit.is_zero() {
        return Err(SettingsError::Invalid(format!(
            "{flag} 0s gives every command no time: give a duration such as 15s or 1m"
        )));
    }
    Ok(limit)
}

pub fn docker_host(given: Option<&str>) -> Result<DockerHost, SettingsError> {
    let host = given
        .filter(|h| !h.trim().is_empty())
        .unwrap_or(DEFAULT_DOCKER_HOST)
        .to_owned();
    if host.starts_with("unix://") {
        Ok(DockerHost::Unix(host))
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Ok(DockerHost::Http(host))
    } else {
        Err(SettingsError::UnsupportedHost { host })
    }
}

/// A repeatable flag's values, or its environment twin split on whitespace when the flag is absent.
/// (clap's own env support would split the flag's values too, breaking `--tag "team:a b"`.)
pub fn or_env_list(given: &[String], var: &str) -> Vec<String> {
    if !given.is_empty() {
        return given.to_vec();
    }
    env_var(var)
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// An environment variable as text. Invalid UTF-8 is not fatal: each bad byte sequence becomes U+FFFD
/// (which tag normalisation turns into `_`) and a warning says so.
pub fn env_var(name: &str) -> Option<String> {
    let raw = std::env::var_os(name)?;
    match raw.into_string() {
        Ok(s) => Some(s),
        Err(raw) => {
            tracing::warn!("{name} is not valid UTF-8; invalid bytes were replaced");
            Some(raw.to_string_lossy().into_owned())
        }
    }
}

/// Parses `KEY=VALUE` for `--agent-env`; DD_API_KEY is refused there so the key has one way in.
pub fn parse_agent_env(raw: &str) -> Result<(String, String), String> {
    let (k, v) = raw.split_once('=').ok_or_else(|| {
        format!(
            "--agent-env {k:?} is not KEY=VALUE",
            k = raw.split('=').next().unwrap_or("")
        )
    })?;
    let valid_key = !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !k.starts_with(|c: char| c.is_ascii_digit());
    if !valid_key {
        return Err(format!(
            "--agent-env {k:?}: the name must be letters, digits and _; pass it as KEY=VALUE"
        ));
    }
    if k == API_KEY_ENV {
        return Err("--agent-env DD_API_KEY is not accepted; give the key through DD_API_KEY or AWS Secrets Manager".into());
    }
    Ok((k.to_owned(), v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_mode_parses_like_the_flag() {
        use clap::ValueEnum;
        let from_str = |s| cli::GpuMode::from_str(s, false).map(GpuMode::from);
        assert_eq!(from_str("auto"), Ok(GpuMode::Auto));
        assert_eq!(from_str("all"), Ok(GpuMode::All));
        assert_eq!(from_str("none"), Ok(GpuMode::None));
        assert!(from_str("some").is_err());
        assert_eq!(GpuMode::default(), GpuMode::Auto);
    }

    #[test]
    fn bad_tags_are_refused_before_anything_runs() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["ddsky", "env", "--tag", "nocolon"]).unwrap();
        let err = from_cli(cli, None, vec![]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tag \"nocolon\" is not key:value; pass it as --tag key:value"
        );
        let cli = Cli::try_parse_from(["ddsky", "up", "--tag", "env:x"]).unwrap();
        assert!(from_cli(cli, None, vec![])
            .unwrap_err()
            .to_string()
            .contains("use --env instead"));
    }

    #[test]
    fn copy_buffer_sizes_are_checked_before_the_job_starts() {
        assert_eq!(copy_buffer("64MiB").unwrap(), 64 * 1024 * 1024);
        assert_eq!(copy_buffer("1 GiB").unwrap(), 1 << 30);
        assert_eq!(copy_buffer("100MB").unwrap(), 100_000_000);
        for bad in ["lots", "", "1KiB", "100GiB", "-5MiB"] {
            let e = copy_buffer(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("--copy-buffer") && e.contains("e.g. 64MiB"),
                "{e}"
            );
        }
    }

    #[test]
    fn docker_hosts() {
        assert_eq!(
            docker_host(None).unwrap(),
            DockerHost::Unix(DEFAULT_DOCKER_HOST.into())
        );
        assert_eq!(
            docker_host(Some("  ")).unwrap(),
            DockerHost::Unix(DEFAULT_DOCKER_HOST.into())
        );
        assert_eq!(
            docker_host(Some("tcp://127.0.0.1:2375")).unwrap(),
            DockerHost::Http("tcp://127.0.0.1:2375".into())
        );
        assert!(matches!(
            docker_host(Some("ssh://host")),
            Err(SettingsError::UnsupportedHost { .. })
        ));
    }

    #[test]
    fn agent_env_parsing() {
        assert_eq!(
            parse_agent_env("DD_HOSTNAME=node-1").unwrap(),
            ("DD_HOSTNAME".into(), "node-1".into())
        );
        assert_eq!(parse_agent_env("A=b=c").unwrap().1, "b=c");
        assert!(parse_agent_env("NOVALUE").is_err());
        assert!(parse_agent_env("1A=x").is_err());
        assert!(parse_agent_env("DD_API_KEY=x")
            .unwrap_err()
            .contains("not accepted"));
    }
}
