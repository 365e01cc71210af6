//! Asking the running agent what it knows, the supported way: `docker exec <agent> agent ...`.
//! Parsing lives in `agent_output`; this module only runs the commands and picks the output form.

use crate::agent_output::{self, AgentStatus, HealthReport, OutputError, WorkloadContainer};
use crate::batch::{self, BatchCommand};
use crate::engine::{Engine, EngineError, ExecOutput};
use std::collections::BTreeMap;
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

/// What a caller wants to know from the agent in one round (one exec where the image has a shell).
#[derive(Debug, Clone, Copy, Default)]
pub struct Questions {
    pub workload: bool,
    pub tags: bool,
    pub status: bool,
    pub health: bool,
}

/// The answers to the [`Questions`] asked; `None` for those not asked.
#[derive(Debug, Default)]
pub struct Answers {
    pub workload: Option<Result<Vec<WorkloadContainer>, AgentError>>,
    pub tags: Option<Result<BTreeMap<String, Vec<String>>, AgentError>>,
    pub status: Option<Result<AgentStatus, AgentError>>,
    pub health: Option<Result<HealthReport, AgentError>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Question {
    Workload,
    Tags,
    Status,
    Health,
}

/// One `agent <name> [--json]` invocation, run with the agent's logging off.
#[derive(Debug, Clone, Copy)]
struct AgentCommand {
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
    pub async fn ask(&self, questions: Questions) -> Answers {
        let asked: Vec<Question> = [
            (questions.workload, Question::Workload),
            (questions.tags, Question::Tags),
            (questions.status, Question::Status),
            (questions.health, Question::Health),
        ]
        .into_iter()
        .filter_map(|(wanted, q)| wanted.then_some(q))
        .collect();
        let commands: Vec<AgentCommand> = asked.iter().map(|q| self.command(*q)).collect();
        let outputs = self.run_all(&commands).await;
        let mut answers = Answers::default();
        for ((question, command), output) in asked.into_iter().zip(commands).zip(outputs) {
            match question {
                Question::Workload => {
                    answers.workload = Some(self.workload_from(Some((command, output))).await)
                }
                Question::Tags => {
                    answers.tags = Some(self.tags_from(Some((command, output))).await)
                }
                Question::Status => answers.status = Some(read_status(output)),
                Question::Health => answers.health = Some(read_health(output)),
            }
        }
        answers
    }

    fn command(&self, question: Question) -> AgentCommand {
        let json_unless_known_absent = |s: &Learnt| s.get() != Learnt::NO;
        match question {
            Question::Workload => AgentCommand {
                name: "workload-list",
                json: json_unless_known_absent(&self.json_workload),
            },
            Question::Tags => AgentCommand {
                name: "tagger-list",
                json: json_unless_known_absent(&self.json_tagger),
            },
            Question::Status => AgentCommand {
                name: "status",
                json: true,
            },
            Question::Health => AgentCommand {
                name: "health",
                json: false,
            },
        }
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
        futures::future::join_all(commands.iter().map(|c| self.run(*c))).await
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

    /// `agent health`: exit 0 means healthy.
    pub async fn health(&self) -> Result<HealthReport, AgentError> {
        read_health(self.run(self.command(Question::Health)).await)
    }

    /// The containers the agent has discovered (`agent workload-list`, JSON when the agent has it).
    pub async fn workload_containers(&self) -> Result<Vec<WorkloadContainer>, AgentError> {
        self.workload_from(None).await
    }

    /// `agent status --json`: version, host tags, key and forwarder state.
    pub async fn status(&self) -> Result<AgentStatus, AgentError> {
        read_status(self.run(self.command(Question::Status)).await)
    }

    async fn workload_from(
        &self,
        answered: Option<(AgentCommand, Result<ExecOutput, EngineError>)>,
    ) -> Result<Vec<WorkloadContainer>, AgentError> {
        self.json_or_text(
            Question::Workload,
            &self.json_workload,
            answered,
            agent_output::parse_workload_list_json,
            agent_output::parse_workload_list_text,
        )
        .await
    }

    /// Tags per container id (`agent tagger-list`, JSON when the agent has it).
    async fn tags_from(
        &self,
        answered: Option<(AgentCommand, Result<ExecOutput, EngineError>)>,
    ) -> Result<BTreeMap<String, Vec<String>>, AgentError> {
        self.json_or_text(
            Question::Tags,
            &self.json_tagger,
            answered,
            agent_output::parse_tagger_list_json,
            agent_output::parse_tagger_list_text,
        )
        .await
    }

    /// Reads the answer to `agent <command> --json` (running it unless `answered`) unless this agent
    /// is known not to have `--json`, and falls back to the text form (remembering that) when the
    /// agent answers `unknown flag: --json`.
    async fn json_or_text<T>(
        &self,
        question: Question,
        support: &Learnt,
        answered: Option<(AgentCommand, Result<ExecOutput, EngineError>)>,
        parse_json: fn(&str) -> Result<T, OutputError>,
        parse_text: fn(&str) -> T,
    ) -> Result<T, AgentError> {
        let (command, out) = match answered {
            Some(answer) => answer,
            None => {
                let command = self.command(question);
                (command, self.run(command).await)
            }
        };
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

fn read_health(out: Result<ExecOutput, EngineError>) -> Result<HealthReport, AgentError> {
    let out = out?;
    Ok(agent_output::parse_health(
        out.exit_code,
        &out.stdout,
        &out.stderr,
    ))
}

fn read_status(out: Result<ExecOutput, EngineError>) -> Result<AgentStatus, AgentError> {
    const COMMAND: &str = "status";
    let out = out?;
    if out.exit_code != 0 {
        return Err(failed(COMMAND, &out));
    }
    agent_output::parse_status_json(&out.stdout).map_err(|source| AgentError::Output {
        command: COMMAND,
        source,
    })
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
