//! Asking the running agent what it knows, the supported way: `docker exec <agent> agent ...`.
//! Parsing lives in `agent_output`; this module only runs the commands and picks the output form.

use crate::agent_output::{self, AgentStatus, HealthReport, OutputError, WorkloadContainer};
use crate::engine::{Engine, EngineError, ExecOutput};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};

/// Datadog's own tests run JSON commands with logging off so no log line lands in front of the JSON.
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

/// Whether this agent understands `--json` on a command: learnt once, then remembered.
#[derive(Debug, Default)]
struct JsonSupport(AtomicU8);

impl JsonSupport {
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
    json_workload: JsonSupport,
    json_tagger: JsonSupport,
}

impl AgentClient {
    pub fn new(engine: Engine, container: impl Into<String>) -> Self {
        AgentClient {
            engine,
            container: container.into(),
            json_workload: JsonSupport::default(),
            json_tagger: JsonSupport::default(),
        }
    }

    async fn run(&self, args: &[&str], env: &[&str]) -> Result<ExecOutput, EngineError> {
        let mut cmd = vec!["agent"];
        cmd.extend_from_slice(args);
        self.engine.exec(&self.container, &cmd, env).await
    }

    /// `agent health`: exit 0 means healthy.
    pub async fn health(&self) -> Result<HealthReport, AgentError> {
        let out = self.run(&["health"], &[]).await?;
        Ok(agent_output::parse_health(
            out.exit_code,
            &out.stdout,
            &out.stderr,
        ))
    }

    /// The containers the agent has discovered (`agent workload-list`, JSON when the agent has it).
    pub async fn workload_containers(&self) -> Result<Vec<WorkloadContainer>, AgentError> {
        self.json_or_text(
            "workload-list",
            &self.json_workload,
            agent_output::parse_workload_list_json,
            agent_output::parse_workload_list_text,
        )
        .await
    }

    /// Tags per container id (`agent tagger-list`, JSON when the agent has it).
    pub async fn container_tags(&self) -> Result<BTreeMap<String, Vec<String>>, AgentError> {
        self.json_or_text(
            "tagger-list",
            &self.json_tagger,
            agent_output::parse_tagger_list_json,
            agent_output::parse_tagger_list_text,
        )
        .await
    }

    /// Runs `agent <command> --json` unless this agent is known not to have it, and falls back to the
    /// text form (remembering that) when the agent answers `unknown flag: --json`.
    async fn json_or_text<T>(
        &self,
        command: &'static str,
        support: &JsonSupport,
        parse_json: fn(&str) -> Result<T, OutputError>,
        parse_text: fn(&str) -> T,
    ) -> Result<T, AgentError> {
        if support.get() != JsonSupport::NO {
            let out = self.run(&[command, "--json"], &QUIET_ENV).await?;
            if out.exit_code == 0 {
                support.set(true);
                return parse_json(&out.stdout)
                    .map_err(|source| AgentError::Output { command, source });
            }
            if !agent_output::json_flag_unsupported(&out.stdout, &out.stderr) {
                return Err(failed(command, &out));
            }
            tracing::debug!("this agent has no `{command} --json`; reading the text form");
            support.set(false);
        }
        let out = self.run(&[command], &[]).await?;
        if out.exit_code != 0 {
            return Err(failed(command, &out));
        }
        Ok(parse_text(&out.stdout))
    }

    /// `agent status --json`: version, host tags, key and forwarder state.
    pub async fn status(&self) -> Result<AgentStatus, AgentError> {
        const COMMAND: &str = "status";
        let out = self.run(&[COMMAND, "--json"], &QUIET_ENV).await?;
        if out.exit_code != 0 {
            return Err(failed(COMMAND, &out));
        }
        agent_output::parse_status_json(&out.stdout).map_err(|source| AgentError::Output {
            command: COMMAND,
            source,
        })
    }
}

fn failed(command: &'static str, out: &ExecOutput) -> AgentError {
    let text = if out.stderr.trim().is_empty() {
        &out.stdout
    } else {
        &out.stderr
    };
    let detail = agent_output::strip_ansi(text)
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
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
