//! Asking the running agent what it knows, the supported way: `docker exec <agent> agent ...`.
//! Parsing lives in `agent_output`; this module only runs the commands and picks the output form.
//!
//! Layer: domain (see `src/layers.rs`): may use the core, the edges and other domain modules; never
//! `cli`, `settings` or `commands`.

use crate::agent_output::{self, AgentStatus, HealthReport, OutputError, WorkloadContainer};
use crate::batch::{self, BatchCommand};
use crate::engine::{Engine, EngineError, ExecOutput};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU8, Ordering};

/// Datadog's own tests run JSON commands with logging off so no log line lands in front of the JSON;
/// every command ddsky runs does the same, so no log line mixes into a text answer either.
const QUIET_ENV: [&str; 1] = ["DD_LOG_LEVEL=off"];

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Exec(#[from] EngineError),
    #[error("the agent's answer to `agent {command}` could not be read: {source}")]
    Output {
        command: &'static str,
        source: OutputError,
    },
    #[error("`agent {command}` failed (exit {code}): {detail}")]
    Failed {
        command: &'static str,
        code: i64,
        detail: String,
    },
}

impl AgentError {
    /// The agent answered that it is not up yet (no auth token yet, or its API not listening):
    /// a wait keeps waiting on this.
    pub fn is_not_up_yet(&self) -> bool {
        matches!(self, AgentError::Failed { detail, .. } if agent_output::says_not_up_yet(detail))
    }
}

/// A yes-or-no fact about this agent (does a command take `--json`, does its image have `sh`):
/// unknown until learnt, then remembered.
#[derive(Debug, Default)]
struct Learnt(AtomicU8);

impl Learnt {
    const YES: u8 = 1;
    const NO: u8 = 2;

    fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, yes: bool) {
        self.0
            .store(if yes { Self::YES } else { Self::NO }, Ordering::Relaxed);
    }
}

pub struct AgentClient {
    engine: Engine,
    container: String,
    json_workload: Learnt,
    json_tagger: Learnt,
    shell: Learnt,
}

/// One thing to ask the agent; asking it returns its [`Question::Answer`] (see [`AgentClient::ask`]).
pub trait Question: Copy {
    type Answer;

    /// The command that answers it (the form this agent is known to have).
    fn command(self, agent: &AgentClient) -> AgentCommand;

    /// Reads the command's output (running a fallback form when the agent lacks the first).
    async fn read(
        self,
        agent: &AgentClient,
        command: AgentCommand,
        out: Result<ExecOutput, EngineError>,
    ) -> Result<Self::Answer, AgentError>;
}

/// The containers the agent has discovered (`agent workload-list`, JSON when the agent has it).
#[derive(Debug, Clone, Copy)]
pub struct Workload;

/// The ids of the containers the agent has discovered (`agent workload-list`).
#[derive(Debug, Clone, Copy)]
pub struct DiscoveredIds;

/// Tags per container id (`agent tagger-list`, JSON when the agent has it).
#[derive(Debug, Clone, Copy)]
pub struct Tags;

/// `agent status --json`: version, host tags, key and forwarder state.
#[derive(Debug, Clone, Copy)]
pub struct Status;

/// `agent health`: exit 0 means healthy.
#[derive(Debug, Clone, Copy)]
pub struct Health;

impl Question for Workload {
    type Answer = Vec<WorkloadContainer>;

    fn command(self, agent: &AgentClient) -> AgentCommand {
        AgentCommand {
            name: "workload-list",
            json: agent.json_workload.get() != Learnt::NO,
        }
    }

    async fn read(
        self,
        agent: &AgentClient,
        command: AgentCommand,
        out: Result<ExecOutput, EngineError>,
    ) -> Result<Self::Answer, AgentError> {
        agent
            .json_or_text(
                command,
                out,
                &agent.json_workload,
                agent_output::parse_workload_list_json,
                agent_output::parse_workload_list_text,
            )
            .await
    }
}

impl Question for DiscoveredIds {
    type Answer = HashSet<String>;

    fn command(self, agent: &AgentClient) -> AgentCommand {
        Workload.command(agent)
    }

    async fn read(
        self,
        agent: &AgentClient,
        command: AgentCommand,
        out: Result<ExecOutput, EngineError>,
    ) -> Result<Self::Answer, AgentError> {
        let listed = Workload.read(agent, command, out).await?;
        Ok(listed.into_iter().map(|c| c.id).collect())
    }
}

impl Question for Tags {
    type Answer = BTreeMap<String, Vec<String>>;

    fn command(self, agent: &AgentClient) -> AgentCommand {
        AgentCommand {
            name: "tagger-list",
            json: agent.json_tagger.get() != Learnt::NO,
        }
    }

    async fn read(
        self,
        agent: &AgentClient,
        command: AgentCommand,
        out: Result<ExecOutput, EngineError>,
    ) -> Result<Self::Answer, AgentError> {
        agent
            .json_or_text(
                command,
                out,
                &agent.json_tagger,
                agent_output::parse_tagger_list_json,
                agent_output::parse_tagger_list_text,
            )
            .await
    }
}

impl Question for Status {
    type Answer = AgentStatus;

    fn command(self, _: &AgentClient) -> AgentCommand {
        AgentCommand {
            name: "status",
            json: true,
        }
    }

    async fn read(
        self,
        _: &AgentClient,
        command: AgentCommand,
        out: Result<ExecOutput, EngineError>,
    ) -> Result<Self::Answer, AgentError> {
        let out = out?;
        if out.exit_code != 0 {
            return Err(failed(command.name, &out));
        }
        agent_output::parse_status_json(&out.stdout).map_err(|source| AgentError::Output {
            command: command.name,
            source,
        })
    }
}

impl Question for Health {
    type Answer = HealthReport;

    fn command(self, _: &AgentClient) -> AgentCommand {
        AgentCommand {
            name: "health",
            json: false,
        }
    }

    async fn read(
        self,
        _: &AgentClient,
        _: AgentCommand,
        out: Result<ExecOutput, EngineError>,
    ) -> Result<Self::Answer, AgentError> {
        let out = out?;
        Ok(agent_output::parse_health(
            out.exit_code,
            &out.stdout,
            &out.stderr,
        ))
    }
}

/// A question whose answer the caller may already have: asked only when it does not.
#[derive(Debug)]
pub enum Unless<Q: Question> {
    Known(Result<Q::Answer, AgentError>),
    Ask(Q),
}

impl<Q: Question> Unless<Q> {
    /// `question`, unless `known` already answers it.
    pub fn known(known: Option<Result<Q::Answer, AgentError>>, question: Q) -> Self {
        match known {
            Some(answer) => Unless::Known(answer),
            None => Unless::Ask(question),
        }
    }
}

/// The output of one command of a batch, in the order the batch's questions gave their commands.
type Reply = (AgentCommand, Result<ExecOutput, EngineError>);

/// What can be asked in one round: a [`Question`], an optional one (`Option<Q>`, answered
/// `Option<..>`), one that may be known already ([`Unless`]), or a tuple of these (answered by a
/// tuple of their answers).
pub trait Questions {
    type Answers;

    /// Appends the commands these questions need, in order.
    fn commands(&self, agent: &AgentClient, out: &mut Vec<AgentCommand>);

    /// Reads the answers from the replies to the commands [`Questions::commands`] gave, in order.
    async fn answers(
        self,
        agent: &AgentClient,
        replies: &mut std::vec::IntoIter<Reply>,
    ) -> Self::Answers;
}

/// The reply to `command`, the next one given; `run_all` answers every command, and were one
/// missing it is run on its own rather than assumed.
async fn next_reply(
    agent: &AgentClient,
    replies: &mut std::vec::IntoIter<Reply>,
    command: AgentCommand,
) -> Reply {
    match replies.next() {
        Some(reply) => reply,
        None => (command, agent.run(command).await),
    }
}

macro_rules! single_questions {
    ($($q:ty),*) => {$(
        impl Questions for $q {
            type Answers = Result<<$q as Question>::Answer, AgentError>;

            fn commands(&self, agent: &AgentClient, out: &mut Vec<AgentCommand>) {
                out.push(self.command(agent));
            }

            async fn answers(
                self,
                agent: &AgentClient,
                replies: &mut std::vec::IntoIter<Reply>,
            ) -> Self::Answers {
                let (command, out) = next_reply(agent, replies, self.command(agent)).await;
                self.read(agent, command, out).await
            }
        }

        impl Questions for Option<$q> {
            type Answers = Option<Result<<$q as Question>::Answer, AgentError>>;

            fn commands(&self, agent: &AgentClient, out: &mut Vec<AgentCommand>) {
                if let Some(q) = self {
                    q.commands(agent, out);
                }
            }

            async fn answers(
                self,
                agent: &AgentClient,
                replies: &mut std::vec::IntoIter<Reply>,
            ) -> Self::Answers {
                match self {
                    Some(q) => Some(q.answers(agent, replies).await),
                    None => None,
                }
            }
        }

        impl Questions for Unless<$q> {
            type Answers = Result<<$q as Question>::Answer, AgentError>;

            fn commands(&self, agent: &AgentClient, out: &mut Vec<AgentCommand>) {
                if let Unless::Ask(q) = self {
                    q.commands(agent, out);
                }
            }

            async fn answers(
                self,
                agent: &AgentClient,
                replies: &mut std::vec::IntoIter<Reply>,
            ) -> Self::Answers {
                match self {
                    Unless::Known(answer) => answer,
                    Unless::Ask(q) => q.answers(agent, replies).await,
                }
            }
        }
    )*};
}

single_questions!(Workload, DiscoveredIds, Tags, Status, Health);

macro_rules! tuple_questions {
    ($($name:ident),+) => {
        impl<$($name: Questions),+> Questions for ($($name,)+) {
            type Answers = ($($name::Answers,)+);

            #[allow(non_snake_case)]
            fn commands(&self, agent: &AgentClient, out: &mut Vec<AgentCommand>) {
                let ($($name,)+) = self;
                $($name.commands(agent, out);)+
            }

            #[allow(non_snake_case)]
            async fn answers(
                self,
                agent: &AgentClient,
                replies: &mut std::vec::IntoIter<Reply>,
            ) -> Self::Answers {
                let ($($name,)+) = self;
                ($($name.answers(agent, replies).await,)+)
            }
        }
    };
}

tuple_questions!(A, B);
tuple_questions!(A, B, C);
tuple_questions!(A, B, C, D);

/// One `agent <name> [--json]` invocation, run with the agent's logging off.
#[derive(Debug, Clone, Copy)]
pub struct AgentCommand {
    name: &'static str,
    json: bool,
}

impl AgentCommand {
    fn argv(self) -> Vec<&'static str> {
        let mut argv = vec!["agent", self.name];
        if self.json {
            argv.push("--json");
        }
        argv
    }

    fn env(self) -> &'static [&'static str] {
        &QUIET_ENV
    }
}

impl AgentClient {
    pub fn new(engine: Engine, container: impl Into<String>) -> Self {
        AgentClient {
            engine,
            container: container.into(),
            json_workload: Learnt::default(),
            json_tagger: Learnt::default(),
            shell: Learnt::default(),
        }
    }

    /// The agent container's id (or name) this client asks.
    pub fn container(&self) -> &str {
        &self.container
    }

    async fn run(&self, command: AgentCommand) -> Result<ExecOutput, EngineError> {
        self.engine
            .exec(&self.container, &command.argv(), command.env())
            .await
    }

    /// Asks everything in `questions` at once: one exec running the commands in parallel through
    /// the container's `sh` (see [`crate::batch`]), or one exec per command when it has none.
    /// Asking for X returns an X: `agent.ask((Tags, Health))` answers `(Result<tags>, Result<health>)`.
    pub async fn ask<Q: Questions>(&self, questions: Q) -> Q::Answers {
        let mut commands = Vec::new();
        questions.commands(self, &mut commands);
        let outputs = self.run_all(&commands).await;
        let replies: Vec<Reply> = commands.into_iter().zip(outputs).collect();
        questions.answers(self, &mut replies.into_iter()).await
    }

    async fn run_all(&self, commands: &[AgentCommand]) -> Vec<Result<ExecOutput, EngineError>> {
        if commands.len() > 1 && self.shell.get() != Learnt::NO {
            if let Some(outputs) = self.run_batch(commands).await {
                self.shell.set(true);
                return outputs.into_iter().map(Ok).collect();
            }
            tracing::debug!("the agent container cannot run a batch through sh; one exec each");
            self.shell.set(false);
        }
        futures_util::future::join_all(commands.iter().map(|c| self.run(*c))).await
    }

    async fn run_batch(&self, commands: &[AgentCommand]) -> Option<Vec<ExecOutput>> {
        let argvs: Vec<Vec<&str>> = commands.iter().map(|c| c.argv()).collect();
        let batch: Vec<BatchCommand<'_>> = commands
            .iter()
            .zip(&argvs)
            .map(|(c, argv)| BatchCommand { env: c.env(), argv })
            .collect();
        let marker = batch::marker(batch::fresh_nonce());
        let script = batch::script(&marker, &batch);
        match self
            .engine
            .exec(&self.container, &["sh", "-c", &script], &[])
            .await
        {
            Ok(out) => batch::split(&out.stdout, &marker, commands.len()),
            Err(e) => {
                tracing::debug!("batch exec failed: {e}");
                None
            }
        }
    }

    /// Reads the answer to `agent <command> --json` unless this agent
    /// is known not to have `--json`, and falls back to the text form (remembering that) when the
    /// agent answers `unknown flag: --json`.
    async fn json_or_text<T>(
        &self,
        command: AgentCommand,
        out: Result<ExecOutput, EngineError>,
        support: &Learnt,
        parse_json: fn(&str) -> Result<T, OutputError>,
        parse_text: fn(&str) -> T,
    ) -> Result<T, AgentError> {
        let name = command.name;
        let out = out?;
        if !command.json {
            return read_text(name, &out, parse_text);
        }
        if out.exit_code == 0 {
            support.set(true);
            return parse_json(&out.stdout).map_err(|source| AgentError::Output {
                command: name,
                source,
            });
        }
        if !agent_output::json_flag_unsupported(&out.stdout, &out.stderr) {
            return Err(failed(name, &out));
        }
        tracing::debug!("this agent has no `{name} --json`; reading the text form");
        support.set(false);
        let text = AgentCommand { name, json: false };
        read_text(name, &self.run(text).await?, parse_text)
    }
}

fn read_text<T>(
    command: &'static str,
    out: &ExecOutput,
    parse_text: fn(&str) -> T,
) -> Result<T, AgentError> {
    if out.exit_code != 0 {
        return Err(failed(command, out));
    }
    Ok(parse_text(&out.stdout))
}

fn failed(command: &'static str, out: &ExecOutput) -> AgentError {
    let text = if out.stderr.trim().is_empty() {
        &out.stdout
    } else {
        &out.stderr
    };
    let text = agent_output::strip_ansi(text);
    // "Not up yet" is the line that matters (older agents add a "Make sure..." line after it).
    let detail = text
        .lines()
        .map(str::trim)
        .find(|l| agent_output::says_not_up_yet(l))
        .or_else(|| text.lines().map(str::trim).rfind(|l| !l.is_empty()))
        .unwrap_or("no output")
        .chars()
        .take(300)
        .collect();
    AgentError::Failed {
        command,
        code: out.exit_code,
        detail,
    }
}
