//! The drain's loop: reads the container logs' sizes, asks the agent once which it tails, then reads
//! its registry until every byte is sent (or only empty lines are left) or the budget runs out.
//! Generic over [`ContainerEngine`], so `up`'s converge drives it against its fake daemon in unit
//! tests; the verdict itself is the pure [`super::verdict`].

use super::{only_empty_messages, summary, verdict, DrainVerdict, JobLog, Registry, Tailing};
use crate::agent_output::parse_status_json;
use crate::engine::{ContainerEngine, ContainerInfo, EngineError};
use crate::joblog;
use crate::spec::REGISTRY_PATH;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often the registry is read while draining: the agent rewrites it every second.
const DRAIN_LOOK_EVERY: Duration = Duration::from_millis(500);

/// How long the logs' sizes may keep growing before the drain takes them as they are, and how
/// often they are looked at meanwhile.
const LOG_SETTLE: Duration = Duration::from_millis(1500);
const LOG_SETTLE_LOOK: Duration = Duration::from_millis(250);

/// The most of a log's unsent rest the drain reads to see whether it is only empty lines: a
/// job's trailing blank lines are a few dozen bytes each; more than this is a backlog to send.
const PEEK_MAX: u64 = 64 * 1024;

/// Silences the agent's own logging in front of its JSON answer (as `agent.rs` does).
const QUIET_ENV: [&str; 1] = ["DD_LOG_LEVEL=off"];

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

/// Every container log the agent may have to send before it stops: every container but the agent,
/// running or stopped since the agent was created (older ones were never its to send; one that
/// stopped while Docker restarted the agent is, as the registry carries over), json-file logged;
/// with its size once Docker has stopped adding to it.
async fn container_logs<E: ContainerEngine>(
    engine: &E,
    agent: &ContainerInfo,
) -> Result<Vec<JobLog>, EngineError> {
    let mut logs = Vec::new();
    for c in engine.all_containers().await? {
        if c.id == agent.id {
            continue;
        }
        let Some(info) = engine.inspect(&c.id).await? else {
            continue;
        };
        let ran_with_agent = info.state.running
            || match (
                &info.state.finished_at,
                agent.created.as_ref().or(agent.state.started_at.as_ref()),
            ) {
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
            size: None,
            labels: info.labels,
            grown: false,
            job_file: false,
        });
    }
    if logs.is_empty() {
        return Ok(logs);
    }
    // Docker writes a container's output to its log a moment after the container wrote it: take
    // the sizes once they stop growing (or after LOG_SETTLE), so the job's last lines are in them.
    // A container still writing is drained up to the size its log had then.
    let deadline = Instant::now() + LOG_SETTLE;
    let mut previous: Option<Vec<Option<u64>>> = None;
    loop {
        let mut sizes = Vec::with_capacity(logs.len());
        for log in &logs {
            // Read through the agent's own mount of the data root: ddsky may run in a container.
            sizes.push(engine.file_size(&agent.id, &log.path).await?);
        }
        if previous.as_ref() == Some(&sizes) || Instant::now() >= deadline {
            for (log, size) in logs.iter_mut().zip(sizes) {
                log.size = size;
            }
            return Ok(logs);
        }
        previous = Some(sizes);
        tokio::time::sleep(LOG_SETTLE_LOOK).await;
    }
}

/// The job files of `ddsky run` on the VM that the agent may have to send (`joblog`): those in its
/// job directory begun since it started (one begun before was started at its end) or that its
/// registry knows; with their sizes, read through the agent's own mount. Listed by the agent's
/// shell (a glob, no other program): none without a shell or without the mount.
async fn job_files<E: ContainerEngine>(
    engine: &E,
    agent: &ContainerInfo,
    registry: &Registry,
) -> Result<Vec<JobLog>, EngineError> {
    if !agent.mounts.iter().any(|m| m == joblog::AGENT_JOB_DIR) {
        return Ok(Vec::new());
    }
    let argv = [
        "sh",
        "-c",
        r#"for f in "$1"/*.log; do [ -f "$f" ] && echo "$f"; done; exit 0"#,
        "sh",
        joblog::AGENT_JOB_DIR,
    ];
    let listed = match engine.exec(&agent.id, &argv, &[]).await {
        Ok(out) if out.exit_code == 0 => out.stdout,
        Ok(out) => {
            tracing::debug!(code = out.exit_code, "cannot list the job files");
            return Ok(Vec::new());
        }
        Err(e) => {
            tracing::debug!("cannot list the job files: {e}");
            return Ok(Vec::new());
        }
    };
    let started = agent.state.started_at.clone().unwrap_or_default();
    let mut files = Vec::new();
    for path in listed.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let name = path.rsplit('/').next().unwrap_or(path).to_owned();
        if joblog::begun_before(&name, &started) && registry.path_offset(path).is_none() {
            continue;
        }
        let size = engine.file_size(&agent.id, path).await?;
        files.push(JobLog {
            id: path.to_owned(),
            name,
            path: path.to_owned(),
            size,
            labels: HashMap::new(),
            grown: false,
            job_file: true,
        });
    }
    Ok(files)
}

/// Which containers the agent tails, from one `agent status --json`; unknown when it cannot say.
async fn tailing<E: ContainerEngine>(engine: &E, agent: &ContainerInfo) -> Tailing {
    let answer = engine
        .exec(&agent.id, &["agent", "status", "--json"], &QUIET_ENV)
        .await;
    match answer.map(|out| (out.exit_code, parse_status_json(&out.stdout))) {
        Ok((0, Ok(status))) => match (status.logs_enabled, status.log_sources) {
            (Some(false), _) => Tailing::Off,
            (_, Some(sources)) => Tailing::from_sources(&sources),
            (_, None) => Tailing::Unknown,
        },
        Ok((code, parsed)) => {
            tracing::debug!(
                code,
                ok = parsed.is_ok(),
                "the agent's status says nothing of its log sources: every log is waited for"
            );
            Tailing::Unknown
        }
        Err(e) => {
            tracing::debug!("cannot ask the agent which logs it tails: {e}");
            Tailing::Unknown
        }
    }
}

/// What a look at a log's unsent rest found.
enum Peeked {
    Bytes(Vec<u8>),
    /// The file is gone (its container removed): nothing more of it can be sent.
    Gone,
    /// The look failed (no `sh` in the image, an exec error): nothing learnt.
    Unknown,
}

/// Exit status of the look when the file is not there.
const GONE: i64 = 3;

/// Bytes `[offset, offset + len)` of a log, read inside the agent (its mount of the data root)
/// with `tail`/`head`, so only they cross the Docker API, however big the log.
async fn peek<E: ContainerEngine>(
    engine: &E,
    agent: &ContainerInfo,
    path: &str,
    offset: u64,
    len: u64,
) -> Peeked {
    let from = (offset + 1).to_string();
    let len_text = len.to_string();
    let argv = [
        "sh",
        "-c",
        r#"[ -e "$2" ] || exit 3; tail -c +"$1" "$2" | head -c "$3""#,
        "sh",
        &from,
        path,
        &len_text,
    ];
    match engine.exec(&agent.id, &argv, &[]).await {
        Ok(out) if out.exit_code == 0 && out.stdout.len() as u64 == len => {
            Peeked::Bytes(out.stdout.into_bytes())
        }
        Ok(out) if out.exit_code == GONE => Peeked::Gone,
        Ok(out) => {
            tracing::debug!(
                code = out.exit_code,
                got = out.stdout.len(),
                "cannot read the unsent rest of {path}"
            );
            Peeked::Unknown
        }
        Err(e) => {
            tracing::debug!("cannot read the unsent rest of {path}: {e}");
            Peeked::Unknown
        }
    }
}

async fn read_registry<E: ContainerEngine>(engine: &E, agent: &ContainerInfo) -> Registry {
    match engine.read_file(&agent.id, REGISTRY_PATH).await {
        Ok(Some(bytes)) => Registry::parse(&String::from_utf8_lossy(&bytes)).unwrap_or_else(|e| {
            tracing::debug!("{e}");
            Registry::default()
        }),
        Ok(None) => Registry::default(),
        Err(e) => {
            tracing::debug!("cannot read the agent's registry yet: {e}");
            Registry::default()
        }
    }
}

/// Waits until the agent has sent every line the containers it tails had logged when this began
/// (trailing empty lines, which it never sends, aside), or `budget` runs out. A registry that
/// cannot be read counts as empty (nothing acknowledged yet).
pub async fn drain_logs<E: ContainerEngine>(
    engine: &E,
    agent: &ContainerInfo,
    budget: Duration,
) -> Result<Drained, EngineError> {
    let start = Instant::now();
    let mut logs = container_logs(engine, agent).await?;
    let registry = read_registry(engine, agent).await;
    logs.extend(job_files(engine, agent, &registry).await?);
    let tailing = if logs.iter().any(|l| l.size.is_some_and(|s| s > 0)) {
        tailing(engine, agent).await
    } else {
        Tailing::Unknown
    };
    let mut blank_from: HashMap<String, u64> = HashMap::new();
    let mut peeked: HashMap<String, u64> = HashMap::new();
    let mut last_offsets: HashMap<String, u64> = HashMap::new();
    loop {
        let registry = if logs.is_empty() {
            Registry::default()
        } else {
            read_registry(engine, agent).await
        };
        // An offset past the size taken at the start: grown since (a container still writing),
        // or a rotated file? The file's size now tells.
        for log in logs.iter_mut().filter(|l| !l.grown) {
            let (Some(size), Some(offset)) = (log.size, registry.offset_of(log)) else {
                continue;
            };
            if offset > size {
                let now = engine.file_size(&agent.id, &log.path).await?;
                log.grown = now.is_some_and(|now| now >= offset);
            }
        }
        let mut v = verdict(&registry, &logs, &tailing, &blank_from);
        // An offset that stayed put since the last look, short of the size: the agent may be
        // done, with only empty lines left, which it never sends. One look at those bytes each.
        let mut learnt = false;
        let mut gone = Vec::new();
        for (c, bytes) in v.unsent() {
            let Some(log) = logs.iter().find(|l| l.id == c.id) else {
                continue;
            };
            let Some(offset) = registry.offset_of(log) else {
                continue;
            };
            let stalled = last_offsets.insert(c.id.clone(), offset) == Some(offset);
            if !stalled || bytes > PEEK_MAX || peeked.get(&c.id) == Some(&offset) {
                continue;
            }
            peeked.insert(c.id.clone(), offset);
            let blank = |rest: &[u8]| {
                if log.job_file {
                    joblog::only_blank_lines(rest)
                } else {
                    only_empty_messages(rest)
                }
            };
            match peek(engine, agent, &log.path, offset, bytes).await {
                Peeked::Bytes(rest) if blank(&rest) => {
                    blank_from.insert(c.id.clone(), offset);
                    learnt = true;
                }
                Peeked::Gone => gone.push(c.id.clone()),
                Peeked::Bytes(_) | Peeked::Unknown => {}
            }
        }
        for log in logs.iter_mut().filter(|l| gone.contains(&l.id)) {
            log.size = None;
            learnt = true;
        }
        if learnt {
            v = verdict(&registry, &logs, &tailing, &blank_from);
        }
        let took = start.elapsed();
        if v.done() || took + DRAIN_LOOK_EVERY > budget {
            return Ok(Drained {
                verdict: v,
                took,
                budget,
            });
        }
        tokio::time::sleep(DRAIN_LOOK_EVERY).await;
    }
}

/// [`drain_logs`] for a step that goes on whatever happens: the outcome is one log line, a
/// warning when something could not be sent.
pub async fn drain_and_log<E: ContainerEngine>(
    engine: &E,
    agent: &ContainerInfo,
    budget: Duration,
) -> Option<Drained> {
    match drain_logs(engine, agent, budget).await {
        Ok(d) => {
            if d.verdict.done() {
                tracing::info!("{}", d.summary());
            } else {
                tracing::warn!("{}", d.summary());
            }
            Some(d)
        }
        Err(e) => {
            tracing::warn!("could not drain the logs before the stop: {e}");
            None
        }
    }
}
