//! The command line: clap types only, depending on nothing else of ddsky. `settings` turns these into
//! validated core settings; the value enums here are clap mirrors of the core's (which know nothing of
//! clap), converted there.
//!
//! Layer: input (see `src/layers.rs`): may use the core, the edges and the domain; never `commands`.

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "ddsky",
    version,
    args_override_self = true,
    about = "Run the Datadog Agent container beside a SkyPilot job, through the Docker API",
    long_about = "Run the Datadog Agent container beside a SkyPilot job, through the Docker API.\n\n\
        Exit codes: 0 ok or monitoring skipped, 1 runtime error, 2 usage, 3 agent not healthy in time, \
        4 expected container not discovered in time, 5 no agent container (status, logs), 130/143 interrupted."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The agent container every command acts on.
    #[arg(long, global = true, env = "DDSKY_NAME", default_value = "dd-agent")]
    pub name: String,

    /// The Docker daemon: unix:///path or tcp://host:port [default: the local socket].
    #[arg(long, global = true, env = "DOCKER_HOST", value_name = "URL")]
    pub docker_host: Option<String>,

    /// Output on stdout: human text, or one JSON document with a stable schema (see docs/commands.md);
    /// `ddsky env` also takes shell (the text form) and env-file; `ddsky k8s` prints YAML as text.
    #[arg(long, global = true, env = "DDSKY_FORMAT", value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// More log detail on stderr (-v debug, -vv trace); RUST_LOG wins when set.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// How long one `agent` command in the agent container may take to answer. Raise it on nodes
    /// whose CPUs the job keeps busy: each costs the agent's CLI some 300 ms of CPU.
    #[arg(long, global = true, env = "DDSKY_AGENT_TIMEOUT", default_value = "15s", value_parser = duration, value_name = "DURATION")]
    pub agent_timeout: Duration,

    /// Less log detail on stderr (-q warnings and errors only, -qq errors only).
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

/// The clap mirror of `output::Format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// `export KEY='value'` lines (ddsky env).
    Shell,
    /// `KEY=value` lines for `docker run --env-file` (ddsky env).
    EnvFile,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start (or keep) the agent container, wait until it is healthy and has discovered the job.
    Up(Box<UpArgs>),
    /// The agent's state, the containers it discovered, and those it has not.
    Status(StatusArgs),
    /// Stop the agent gracefully and remove its container.
    Down(DownArgs),
    /// Run the job under ddsky: its env, its output (also into this container's log when ddsky runs
    /// inside one, as in SkyPilot's runtime mode), its signals and its exit status; the agent is
    /// refreshed alongside, and with --down drained and stopped after the job.
    Run(Box<RunArgs>),
    /// What the job container needs to send traces, metrics and logs to the agent, correctly tagged.
    Env(EnvArgs),
    /// Run every troubleshooting check and say what is wrong and how to fix it.
    Doctor(DoctorArgs),
    /// The agent container's logs.
    Logs(LogsArgs),
    /// On Kubernetes: print the task's config.kubernetes.pod_config that gives the pods the job's tags
    /// and the node agent's address (run it where you launch the task).
    #[command(visible_alias = "kubernetes")]
    K8s(K8sArgs),
    /// From where the job was launched: prove that every node's metrics, container metrics and logs
    /// reached Datadog, tagged with the run (needs DD_API_KEY and DD_APP_KEY).
    Verify(VerifyArgs),
    /// From where the job is launched: make (or bring up to date) the one Datadog dashboard for
    /// every run and the idle-GPU monitor (needs DD_API_KEY and DD_APP_KEY; --dry-run needs neither).
    Dashboard(DashboardArgs),
}

/// The clap mirror of `settings::PullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    Missing,
    Always,
    Never,
}

/// `--gpus auto|all|none`; the clap mirror of `gpu::GpuMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GpuMode {
    /// All GPUs when the host has NVIDIA support (an nvidia runtime or /dev/nvidiactl), else none.
    Auto,
    /// All GPUs; an error when the host has no NVIDIA support.
    All,
    /// No GPUs.
    None,
}

/// `--network host|bridge`; the clap mirror of `spec::NetworkMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkMode {
    /// The agent shares the host network: the job reaches it at localhost, and it reaches EC2 metadata.
    Host,
    /// The default bridge, with APM and DogStatsD published on 127.0.0.1 only.
    Bridge,
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 30s, 3m, 1m30s)"))
}

/// What both `up` and `env` need: the job's tags and where the agent listens.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// The `env` tag and DD_ENV.
    #[arg(long, env = "DDSKY_ENV", default_value = "production")]
    pub env: String,

    /// The `service` tag.
    #[arg(long, env = "DDSKY_SERVICE", default_value = "skypilot-worker")]
    pub service: String,

    /// An extra host tag, key:value (repeatable) [env: DDSKY_TAGS, space-separated, used when no --tag is given].
    #[arg(long = "tag", value_name = "KEY:VALUE")]
    pub tags: Vec<String>,

    /// Network of the agent: host (the job reaches it at localhost) or bridge (ports published on 127.0.0.1).
    #[arg(long, env = "DDSKY_NETWORK", value_enum, default_value_t = NetworkMode::Host)]
    pub network: NetworkMode,

    /// APM (traces) port on the host.
    #[arg(long, env = "DDSKY_APM_PORT", default_value_t = crate::spec::DEFAULT_APM_PORT)]
    pub apm_port: u16,

    /// DogStatsD (UDP) port on the host.
    #[arg(long, env = "DDSKY_DOGSTATSD_PORT", default_value_t = crate::spec::DEFAULT_DOGSTATSD_PORT)]
    pub dogstatsd_port: u16,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub agent: AgentArgs,

    /// The agent image: one reference or a comma-separated list tried in order, the next when a
    /// pull fails [default: Datadog's registries for the cloud in SKYPILOT_CLUSTER_INFO, Docker Hub
    /// last, tag 7].
    #[arg(long, env = "DDSKY_IMAGE", value_name = "REF[,REF...]")]
    pub image: Option<String>,

    /// How long a pull may go without any progress before the next registry of the list is tried.
    #[arg(long, env = "DDSKY_PULL_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub pull_timeout: Duration,

    /// The Datadog site to send to.
    #[arg(long, env = "DD_SITE", default_value = "datadoghq.com")]
    pub site: String,

    /// GPU monitoring: request the host's NVIDIA GPUs for the agent and set DD_GPU_ENABLED.
    #[arg(long, env = "DDSKY_GPUS", value_enum, default_value_t = GpuMode::Auto)]
    pub gpus: GpuMode,

    /// Intake URL override for proxies and private intakes (the agent's DD_DD_URL).
    #[arg(long, env = "DD_DD_URL", value_name = "URL")]
    pub dd_url: Option<String>,

    /// Extra agent setting, KEY=VALUE (repeatable), e.g. DD_HOSTNAME=node-1 [env: DDSKY_AGENT_ENV,
    /// space-separated, used when no --agent-env is given]
    #[arg(long = "agent-env", value_name = "KEY=VALUE")]
    pub agent_env: Vec<String>,

    /// When to pull the image.
    #[arg(long, env = "DDSKY_PULL", value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,

    /// The host directory the agent keeps its log positions in (its registry.json), mounted as its
    /// /opt/datadog-agent/run: a restarted agent resumes where it stopped, and the drain before a
    /// stop reads it.
    #[arg(long, env = "DDSKY_RUN_DIR", default_value = crate::spec::AGENT_RUN_DIR, value_name = "PATH")]
    pub run_dir: String,

    /// On a host: the directory where `ddsky run` writes the job's output for the agent to tail
    /// (SkyPilot's default mode, the job on the VM itself), with the agent's conf.d for it; mounted
    /// read-only into the agent [default: ~/.ddsky/job-logs].
    #[arg(long, env = "DDSKY_JOB_LOG_DIR", value_name = "PATH")]
    pub job_log_dir: Option<String>,

    /// Remove a container of the same name that ddsky did not create.
    #[arg(long, env = "DDSKY_REPLACE", value_parser = clap::builder::BoolishValueParser::new())]
    pub replace: bool,

    /// How long to wait for the agent to be healthy and the job discovered.
    #[arg(long, env = "DDSKY_TIMEOUT", default_value = "3m", value_parser = duration)]
    pub timeout: Duration,

    /// A container the agent must discover: id prefix, name, image repository, or `self` (the container
    /// ddsky runs in) (repeatable) [default: metta, plus self inside a container]
    /// [env: DDSKY_EXPECT, space-separated, used when no --expect is given].
    #[arg(long = "expect", value_name = "PATTERN")]
    pub expect: Vec<String>,

    /// The job runs on the VM itself (SkyPilot's default mode, no `image_id: docker:`): `up` expects
    /// no job container (it waits for health only), and `ddsky run` writes the job's output to
    /// files the agent tails (see --job-log-dir).
    #[arg(long, env = "DDSKY_VM_MODE", value_parser = clap::builder::BoolishValueParser::new())]
    pub vm_mode: bool,

    /// Return once the container runs, without waiting for health or discovery.
    #[arg(long, env = "DDSKY_NO_WAIT", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_wait: bool,

    /// Resolve everything and print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Nothing ddsky fails at (no key, no Docker, a refused agent, a closed or blocked \
    container log) stops, delays or changes the job: each is one warning line, and ddsky exits with \
    the job's exit status (a signal death as 128+n; 127 when the command is not found)."
)]
pub struct RunArgs {
    #[command(flatten)]
    pub up: UpArgs,

    /// After the job ends, drain the agent (until it has sent the job's log) and stop it.
    #[arg(long, env = "DDSKY_RUN_DOWN", value_parser = clap::builder::BoolishValueParser::new())]
    pub down: bool,

    /// With --down: the whole teardown, drain and stop (inside SkyPilot's 30 s cancel window).
    #[arg(long, env = "DDSKY_DOWN_TIMEOUT", default_value = "20s", value_parser = duration)]
    pub down_timeout: Duration,

    /// With --down: stop at once, without waiting for the job's last lines to be sent.
    #[arg(long, env = "DDSKY_NO_DRAIN", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_drain: bool,

    /// Inside a container (SkyPilot's runtime mode): the most of the job's output held for the
    /// container's log while the log is slower than the job (e.g. 64MiB, 512MiB, 1GiB); only beyond
    /// it are lines dropped, and counted.
    #[arg(
        long,
        env = "DDSKY_COPY_BUFFER",
        default_value = "64MiB",
        value_name = "SIZE"
    )]
    pub copy_buffer: String,

    /// The job: a program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Fail (exit 1) instead of skipping when no API key is found.
    #[arg(long, env = "DDSKY_REQUIRE_KEY", value_parser = clap::builder::BoolishValueParser::new())]
    pub require_key: bool,

    /// The AWS Secrets Manager secret holding the key, asked when DD_API_KEY is unset.
    #[arg(long, env = "DDSKY_SECRET_ID", default_value = "datadog/api-key")]
    pub secret_id: String,

    /// Do not ask AWS Secrets Manager.
    #[arg(long, env = "DDSKY_NO_AWS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_aws: bool,

    /// AWS region of the secret [default: the SDK's chain, else us-east-1].
    #[arg(long, env = "DDSKY_AWS_REGION")]
    pub aws_region: Option<String>,

    /// Upper bound on the whole secret lookup, credentials and instance metadata included.
    #[arg(long, env = "DDSKY_SECRET_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub secret_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
}

#[derive(Debug, Args)]
pub struct K8sArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub agent: AgentArgs,

    /// A container the agent must have discovered (repeatable) [default: metta] [env: DDSKY_EXPECT].
    #[arg(long = "expect", value_name = "PATTERN")]
    pub expect: Vec<String>,

    #[arg(skip = String::from("metta"))]
    pub default_expect: String,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep streaming until the container stops or Ctrl-C.
    #[arg(short, long)]
    pub follow: bool,

    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,

    /// Only lines from the last DUR (e.g. 10m).
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub since: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A container that must be discovered: id prefix, name, or image repository (repeatable)
    /// [env: DDSKY_EXPECT, space-separated, used when no --expect is given].
    #[arg(long = "expect", value_name = "PATTERN")]
    pub expect: Vec<String>,

    /// Wait up to this long for the expected containers to be discovered (exit 4 if not).
    #[arg(long, value_parser = duration)]
    pub wait: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// The whole teardown: first the drain (until the agent has sent the job containers' logs),
    /// then the stop's grace (up to 12 s, at most half of this) before the agent is killed.
    #[arg(long, env = "DDSKY_DOWN_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub timeout: Duration,

    /// Also stop and remove a container of that name that ddsky did not create.
    #[arg(long)]
    pub force: bool,

    /// Stop at once, without waiting for the agent to send the job's last log lines (they may be lost).
    #[arg(long, env = "DDSKY_NO_DRAIN", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_drain: bool,

    /// Accepted for older scripts and ignored: the drain covers every container whose log the
    /// agent tails, whatever its image or name.
    #[arg(long = "expect", value_name = "PATTERN", hide = true)]
    pub expect: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The run: hosts tagged metta_run_id:ID.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,

    /// The cluster: hosts tagged skypilot_cluster:NAME.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,

    /// Another tag every node carries, key:value (repeatable). At least one of --run-id, --cluster,
    /// --tag is needed.
    #[arg(long = "tag", value_name = "KEY:VALUE")]
    pub tags: Vec<String>,

    /// The window looked at: a node is silent when it sent no point in it.
    #[arg(long, default_value = "10m", value_parser = duration)]
    pub since: Duration,

    /// How many nodes to expect [default: the skypilot_num_nodes tag the nodes carry].
    #[arg(long, value_name = "N")]
    pub nodes: Option<u32>,

    /// The job's container: its name or image repository (repeatable) [default: metta]
    /// [env: DDSKY_EXPECT, space-separated, used when no --expect is given].
    #[arg(long = "expect", value_name = "PATTERN")]
    pub expect: Vec<String>,

    /// Check GPU metrics on every node (nodes that report GPUs are always checked).
    #[arg(long)]
    pub gpus: bool,

    /// Do not check logs (an account without Log Management).
    #[arg(long)]
    pub no_logs: bool,

    /// The job ran on the VM itself (SkyPilot's default mode, no `image_id: docker:`; see
    /// docker/skypilot/vm-mode.yaml): no job container is expected, its column says "not expected".
    #[arg(long, env = "DDSKY_VM_MODE", value_parser = clap::builder::BoolishValueParser::new())]
    pub vm_mode: bool,

    /// Look again until every node is ok or this long has passed (looks 15 s apart).
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub wait: Option<Duration>,

    #[command(flatten)]
    pub api: ApiArgs,
}

/// Where Datadog's API is and where its two keys are found (`verify`, `dashboard`).
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The Datadog site (the API is https://api.<site>; DDSKY_API_URL overrides it).
    #[arg(long, env = "DD_SITE", default_value = "datadoghq.com")]
    pub site: String,

    /// The AWS Secrets Manager secret holding the application key, asked when DD_APP_KEY is unset.
    #[arg(
        long,
        env = "DDSKY_APP_KEY_SECRET_ID",
        default_value = "datadog/app-key"
    )]
    pub app_key_secret_id: String,

    #[command(flatten)]
    pub key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// The job's `env` tag, as `ddsky up` sets it: the dashboard's default and the monitor's scope.
    #[arg(long, env = "DDSKY_ENV", default_value = "production")]
    pub env: String,

    /// The job's `service` tag, as `ddsky up` sets it.
    #[arg(long, env = "DDSKY_SERVICE", default_value = "skypilot-worker")]
    pub service: String,

    /// Print the dashboard's URL already filtered to this run (metta_run_id).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,

    /// The monitor alerts when a node's GPUs are busy (SM activity, %) less than this on average.
    #[arg(long, value_name = "PERCENT", default_value_t = 5.0)]
    pub idle_below: f64,

    /// ... over this long (whole minutes, 1m to 24h).
    #[arg(long, value_name = "DUR", default_value = "30m", value_parser = duration)]
    pub idle_for: Duration,

    /// A new run's node is not judged this long after its first GPU data (data loading, compilation).
    #[arg(long, value_name = "DUR", default_value = "30m", value_parser = duration)]
    pub startup_grace: Duration,

    /// Where the monitor's alerts go: @slack-CHANNEL, @pagerduty-SERVICE, @you@example.com
    /// (repeatable). Without it the monitor notifies no one (the options are the whole wanted state).
    #[arg(long, value_name = "HANDLE")]
    pub notify: Vec<String>,

    /// Make no monitor (and leave any existing one alone).
    #[arg(long)]
    pub no_monitor: bool,

    /// Send nothing (no key needed): print the request bodies as they would be sent.
    #[arg(long, conflicts_with = "delete")]
    pub dry_run: bool,

    /// Delete the dashboard and the monitor ddsky made, and nothing else.
    #[arg(long)]
    pub delete: bool,

    /// Bound on each request to Datadog's API, answer included.
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = duration)]
    pub api_timeout: Duration,

    /// Bound on the whole command: every request, its retries and the waits a 429 asks for.
    #[arg(long, value_name = "DUR", default_value = "3m", value_parser = duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub api: ApiArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        let a = Cli::try_parse_from(["ddsky", "--name", "x1", "status"]).unwrap();
        let b =
            Cli::try_parse_from(["ddsky", "status", "--name", "x1", "--format", "json"]).unwrap();
        assert_eq!(a.global.name, "x1");
        assert_eq!(b.global.name, "x1");
        assert_eq!(b.global.format, Format::Json);
    }

    #[test]
    fn up_defaults() {
        let cli = Cli::try_parse_from(["ddsky", "up"]).unwrap();
        let Command::Up(up) = cli.command else {
            panic!()
        };
        assert!(
            up.expect.is_empty(),
            "the default is applied by up, which knows where it runs"
        );
        assert_eq!(up.gpus, GpuMode::Auto);
        assert_eq!(up.timeout, Duration::from_secs(180));
        assert_eq!(up.image, None, "the list by cloud is chosen by up");
        assert_eq!(up.pull_timeout, Duration::from_secs(60));
        assert_eq!(up.agent.network, NetworkMode::Host);
        assert_eq!(up.key.secret_timeout, Duration::from_secs(10));
    }

    #[test]
    fn run_takes_ups_flags_and_the_job_after_two_dashes() {
        let cli = Cli::try_parse_from([
            "ddsky", "run", "--down", "--image", "x/y:1", "--", "python", "train.py", "--lr", "3",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!()
        };
        assert!(run.down);
        assert_eq!(run.up.image.as_deref(), Some("x/y:1"));
        assert_eq!(run.command, ["python", "train.py", "--lr", "3"]);
        assert!(
            Cli::try_parse_from(["ddsky", "run"]).is_err(),
            "a job is required"
        );
        assert!(Cli::try_parse_from(["ddsky", "run", "--bogus", "--", "true"]).is_err());
    }

    #[test]
    fn dashboard_defaults() {
        let cli = Cli::try_parse_from(["ddsky", "dashboard"]).unwrap();
        let Command::Dashboard(d) = cli.command else {
            panic!()
        };
        assert_eq!(d.idle_below, 5.0);
        assert_eq!(d.idle_for, Duration::from_secs(30 * 60));
        assert_eq!(d.startup_grace, Duration::from_secs(30 * 60));
        assert!(d.notify.is_empty() && !d.no_monitor && !d.dry_run && !d.delete);
        let cli = Cli::try_parse_from([
            "ddsky",
            "dashboard",
            "--notify",
            "@a",
            "--notify",
            "b",
            "--idle-for",
            "1h",
        ])
        .unwrap();
        let Command::Dashboard(d) = cli.command else {
            panic!()
        };
        assert_eq!(d.notify, ["@a", "b"]);
        assert_eq!(d.idle_for, Duration::from_secs(3600));
        assert!(Cli::try_parse_from(["ddsky", "dashboard", "--dry-run", "--delete"]).is_err());
    }

    #[test]
    fn bad_durations_are_usage_errors() {
        let err = Cli::try_parse_from(["ddsky", "up", "--timeout", "soon"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
