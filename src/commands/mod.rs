//! The commands: orchestration only. Each turns validated arguments into calls on the engine, the
//! agent and the pure core, and returns an exit code or a [`Failure`].
//!
//! Layer: commands (see `src/layers.rs`): may use every layer below; only `main` uses it.

mod dashboard;
mod doctor;
mod down;
mod env;
mod identity;
mod k8s;
mod logs;
mod run;
mod status;
mod teardown;
mod up;
mod verify;

use crate::agent::AgentError;
use crate::discovery::WaitError;
use crate::engine::{DockerHost, Engine, EngineError};
use crate::exit;
use crate::interrupt::{Interrupt, Interrupted};
use crate::output::Format;
use crate::settings::{CommandSettings, Global, SettingsError};
use crate::startup::{self, HealthWaitError};
use std::time::Duration;

/// What every command needs besides its own settings.
pub struct Context {
    pub name: String,
    pub docker_host: DockerHost,
    pub format: Format,
    /// The longest one `agent` command in the agent container may take.
    pub agent_timeout: Duration,
    pub interrupt: Interrupt,
    /// Results go to stdout; `ddsky run` turns this off for its agent's refresh, since stdout
    /// carries the job's output there: the result's first line is logged instead.
    pub results_on_stdout: bool,
}

impl Context {
    pub fn new(global: Global, interrupt: Interrupt) -> Self {
        Context {
            name: global.name,
            docker_host: global.docker_host,
            format: global.format,
            agent_timeout: global.agent_timeout,
            interrupt,
            results_on_stdout: true,
        }
    }

    /// Prints a command's result, or logs its first line when stdout belongs to someone else.
    pub fn emit<T: serde::Serialize>(&self, json: &T, text: impl FnOnce() -> String) {
        if self.results_on_stdout {
            crate::output::emit(self.format, json, text);
        } else if let Some(line) = text().lines().next() {
            tracing::info!("{line}");
        }
    }

    pub async fn engine(&self) -> Result<Engine, Failure> {
        Ok(self.interrupt.run(self.connect()).await??)
    }

    /// The daemon's client, uninterruptible, with this run's limit on `agent` commands.
    pub async fn connect(&self) -> Result<Engine, EngineError> {
        Engine::connect(&self.docker_host)
            .await
            .map(|engine| engine.with_exec_timeout(self.agent_timeout))
    }
}

pub async fn run(ctx: &Context, command: CommandSettings) -> Result<u8, Failure> {
    match command {
        CommandSettings::Env(job) => env::run(ctx, job).await,
        CommandSettings::Doctor(settings) => doctor::run(ctx, settings).await,
        CommandSettings::Logs(settings) => logs::run(ctx, settings).await,
        CommandSettings::Up(settings) => up::run(ctx, *settings).await,
        CommandSettings::Status(settings) => status::run(ctx, settings).await,
        CommandSettings::Down(settings) => down::run(ctx, settings).await,
        CommandSettings::Run(settings) => run::run(ctx, *settings).await,
        CommandSettings::K8s(job) => k8s::run(ctx, job).await,
        CommandSettings::Verify(settings) => verify::run(ctx, *settings).await,
        CommandSettings::Dashboard(settings) => dashboard::run(ctx, *settings).await,
    }
}

/// Everything that can end a command early, each with its exit code and a message that says what
/// failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("a container named {name} exists that ddsky did not create (image {image}); ddsky leaves it alone: remove it yourself, choose another --name, or pass {flag} to let ddsky replace it")]
    Foreign {
        name: String,
        image: String,
        flag: &'static str,
    },
    #[error("the agent container {name} {what} during start-up{code}{gone}; its last log lines follow; fix the cause (often the key, the hostname or a mount) and run `ddsky up` again",
        code = exit_code.map(|c| format!(" (exit code {c})")).unwrap_or_default(),
        gone = if *removed { " and was removed" } else { "" })]
    AgentExited {
        name: String,
        what: &'static str,
        exit_code: Option<i64>,
        last_lines: Vec<String>,
        removed: bool,
    },
    #[error("the agent container stopped while ddsky waited for it to discover {what}; see `ddsky logs` for why, then run `ddsky up`")]
    AgentStopped { what: String },
    #[error("the agent container {name} disappeared while ddsky was waiting for it (removed by someone else?); run `ddsky up` again")]
    AgentGone { name: String },
    #[error("the agent {name} is not healthy after {waited}; its last answer: {answer}; {hint}")]
    Unhealthy {
        name: String,
        waited: String,
        answer: String,
        hint: String,
    },
    #[error("{0}")]
    Gpu(String),
    #[error("{0}")]
    PortsTaken(String),
    #[error("no Datadog API key and --require-key was given: {reasons}")]
    KeyRequired { reasons: String },
    #[error("{name} kept changing under {attempts} concurrent `ddsky up` runs, each a step ahead of this one; run `ddsky up` again once they are done")]
    LostRaces { name: String, attempts: u32 },
    #[error("no registry of the image list gave the agent image, nothing was created: {refusals}; wait for the rate limit to pass, check the network, or give --image a registry this node can pull from (a pull-through cache)")]
    PullsRefused { refusals: String },
    #[error("no agent container named {name}; start it with `ddsky up`")]
    NoAgent { name: String },
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    /// `ddsky verify`: Datadog's API refused (a key, a permission) or failed; the message names
    /// which key and permission, never a key.
    #[error("{0}")]
    Api(String),
}

impl From<WaitError> for Failure {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Engine(e) => Failure::Engine(e),
            WaitError::Agent(e) => Failure::Agent(e),
            WaitError::Interrupted(i) => Failure::Interrupted(i),
            WaitError::AgentStopped { what } => Failure::AgentStopped { what },
        }
    }
}

impl Failure {
    /// What a failed wait for health means for the user.
    pub fn from_health_wait(name: &str, e: HealthWaitError) -> Self {
        let name = name.to_owned();
        match e {
            HealthWaitError::Engine(e) => Failure::Engine(e),
            HealthWaitError::Interrupted(i) => Failure::Interrupted(i),
            HealthWaitError::Gone => Failure::AgentGone { name },
            HealthWaitError::Exited {
                what,
                exit_code,
                last_lines,
            } => Failure::AgentExited {
                name,
                what,
                exit_code,
                last_lines,
                removed: false,
            },
            HealthWaitError::Timeout { waited, last } => Failure::Unhealthy {
                name,
                waited: humantime::format_duration(Duration::from_secs(waited.as_secs()))
                    .to_string(),
                answer: last.summary(),
                hint: startup::unhealthy_hint(&last),
            },
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Settings(_) | Failure::Usage(_) => exit::USAGE,
            Failure::Unhealthy { .. } => exit::UNHEALTHY,
            Failure::NoAgent { .. } => exit::NO_AGENT,
            Failure::AgentExited { .. } => exit::AGENT_CRASHED,
            Failure::Interrupted(Interrupted(signal)) => signal.exit_code(),
            Failure::Engine(_)
            | Failure::Agent(_)
            | Failure::Gpu(_)
            | Failure::PortsTaken(_)
            | Failure::Foreign { .. }
            | Failure::AgentGone { .. }
            | Failure::AgentStopped { .. }
            | Failure::LostRaces { .. }
            | Failure::PullsRefused { .. }
            | Failure::KeyRequired { .. }
            | Failure::Api(_) => exit::FAILURE,
        }
    }

    /// Lines to print after the one-line error (the agent's own last words).
    pub fn details(&self) -> &[String] {
        match self {
            Failure::AgentExited { last_lines, .. } => last_lines,
            _ => &[],
        }
    }
}
