//! The drain's loop: reads the job logs' sizes and the agent's registry through the engine until
//! every byte is sent or the budget runs out. Generic over [`ContainerEngine`], so `up`'s converge
//! drives it against its fake daemon in unit tests; the verdict itself is the pure [`super::verdict`].

use super::{summary, verdict, DrainVerdict, JobLog, Registry};
use crate::discovery::{self, Pattern};
use crate::engine::{ContainerEngine, ContainerInfo, EngineError};
use crate::spec::REGISTRY_PATH;
use std::time::{Duration, Instant};

/// How often the registry is read while draining: the agent rewrites it every second.
const DRAIN_LOOK_EVERY: Duration = Duration::from_millis(500);

/// How long the job logs' sizes may keep growing before the drain takes them as they are, and how
/// often they are looked at meanwhile.
const LOG_SETTLE: Duration = Duration::from_millis(1500);
const LOG_SETTLE_LOOK: Duration = Duration::from_millis(250);

/// What a drain found, for the report.
#[derive(Debug, Clone)]
pub struct Drained {
    pub verdict: DrainVerdict,
    pub took: Duration,
    pub budget: Duration,
}

impl Drained {
    pub fn summary(&self) -> String {
        summary(&self.verdict, self.took, self.budget)
    }
}

/// The job containers whose logs must be sent before the agent stops: those matching `patterns`,
/// running or stopped since the agent started (older ones were never its to send), json-file logged.
async fn job_logs<E: ContainerEngine>(
    engine: &E,
    agent: &ContainerInfo,
    patterns: &[Pattern],
) -> Result<Vec<JobLog>, EngineError> {
    let mut logs = Vec::new();
    for c in engine.all_containers().await? {
        if c.id == agent.id || !patterns.iter().any(|p| discovery::matches(&p.needle, &c)) {
            continue;
        }
        let Some(info) = engine.inspect(&c.id).await? else {
            continue;
        };
        let ran_with_agent = info.state.running
            || match (&info.state.finished_at, &agent.state.started_at) {
                // RFC 3339 in UTC from the same daemon: the text orders like the time.
                (Some(finished), Some(started)) => finished >= started,
                _ => true,
            };
        let Some(path) = info.log_path.clone().filter(|_| ran_with_agent) else {
            continue;
        };
        logs.push(JobLog {
            id: info.id,
            name: info.name,
            path,
            size: 0,
        });
    }
    if logs.is_empty() {
        return Ok(logs);
    }
    // Docker writes a container's output to its log a moment after the container wrote it: take
    // the sizes once they stop growing (or after LOG_SETTLE), so the job's last lines are in them.
    let deadline = Instant::now() + LOG_SETTLE;
    let mut previous: Option<Vec<Option<u64>>> = None;
    loop {
        let mut sizes = Vec::with_capacity(logs.len());
        for log in &logs {
            // Read through the agent's own mount of the data root: ddsky may run in a container.
            sizes.push(engine.file_size(&agent.id, &log.path).await?);
        }
        if previous.as_ref() == Some(&sizes) || Instant::now() >= deadline {
            let mut seen = Vec::new();
            for (mut log, size) in logs.into_iter().zip(sizes) {
                match size {
                    Some(size) => {
                        log.size = size;
                        seen.push(log);
                    }
                    None => {
                        tracing::debug!("{} is not visible in the agent; not drained", log.path)
                    }
                }
            }
            return Ok(seen);
        }
        previous = Some(sizes);
        tokio::time::sleep(LOG_SETTLE_LOOK).await;
    }
}

/// Waits until the agent has sent every byte the job containers had logged when this began, or
/// `budget` runs out. A registry that cannot be read counts as empty (nothing acknowledged yet).
pub async fn drain_logs<E: ContainerEngine>(
    engine: &E,
    agent: &ContainerInfo,
    patterns: &[Pattern],
    budget: Duration,
) -> Result<Drained, EngineError> {
    let start = Instant::now();
    let logs = job_logs(engine, agent, patterns).await?;
    loop {
        let registry = if logs.is_empty() {
            Registry::default()
        } else {
            match engine.read_file(&agent.id, REGISTRY_PATH).await {
                Ok(Some(bytes)) => Registry::parse(&String::from_utf8_lossy(&bytes))
                    .unwrap_or_else(|e| {
                        tracing::debug!("{e}");
                        Registry::default()
                    }),
                Ok(None) => Registry::default(),
                Err(e) => {
                    tracing::debug!("cannot read the agent's registry yet: {e}");
                    Registry::default()
                }
            }
        };
        let verdict = verdict(&registry, &logs);
        let took = start.elapsed();
        if verdict.done() || took + DRAIN_LOOK_EVERY > budget {
            return Ok(Drained {
                verdict,
                took,
                budget,
            });
        }
        tokio::time::sleep(DRAIN_LOOK_EVERY).await;
    }
}

/// [`drain_logs`] for a step that goes on whatever happens (`up` replacing an agent): the outcome is
/// one log line, a warning when something could not be sent.
pub async fn drain_and_log<E: ContainerEngine>(
    engine: &E,
    agent: &ContainerInfo,
    patterns: &[Pattern],
    budget: Duration,
) -> Option<Drained> {
    match drain_logs(engine, agent, patterns, budget).await {
        Ok(d) => {
            if d.verdict.done() {
                tracing::info!("{}", d.summary());
            } else {
                tracing::warn!("{}", d.summary());
            }
            Some(d)
        }
        Err(e) => {
            tracing::warn!("could not drain the job's logs before the stop: {e}");
            None
        }
    }
}
