//! `ddsky down`: graceful teardown of ddsky's own agent, after it has sent the job's last lines.

use super::teardown::{self, Ending};
use super::{Context, Failure};
use crate::drain::{self, Drained};
use crate::engine::{ContainerInfo, Engine};
use crate::exit;
use crate::reconcile::is_managed;
use crate::reference::short_id;
use crate::settings::DownSettings;
use crate::spec::AGENT_STOP_TIMEOUT;
use serde::Serialize;
use std::time::Duration;

#[derive(Serialize)]
struct DownReport<'a> {
    name: &'a str,
    /// `removed`, or `absent` when there was nothing to do.
    result: &'static str,
    id: Option<String>,
    /// The drain before the stop; null when skipped (--no-drain, no agent, agent not running).
    drain: Option<DrainReport>,
    /// The agent was killed before it finished stopping (its last data may be lost).
    killed: bool,
}

#[derive(Serialize)]
struct DrainReport {
    done: bool,
    seconds: f64,
    containers: Vec<DrainedContainer>,
}

#[derive(Serialize)]
struct DrainedContainer {
    name: String,
    id: String,
    /// `sent` (every line, trailing empty lines aside), `unsent` (the budget ran out), `skipped`
    /// (the agent does not tail it; see `reason`) or `not_checked` (read through the Docker socket).
    state: &'static str,
    /// Bytes of its log the agent had not sent when the drain ended (0 when all were sent);
    /// null when skipped or not checked.
    unsent_bytes: Option<u64>,
    /// Why it was skipped.
    reason: Option<String>,
}

impl DrainReport {
    fn of(d: &Drained) -> Self {
        DrainReport {
            done: d.verdict.done(),
            seconds: (d.took.as_secs_f64() * 10.0).round() / 10.0,
            containers: d
                .verdict
                .containers
                .iter()
                .map(|c| {
                    let (state, unsent_bytes, reason) = match &c.state {
                        drain::LogState::Sent => ("sent", Some(0), None),
                        drain::LogState::Unsent { bytes } => ("unsent", Some(*bytes), None),
                        drain::LogState::NotComparable => ("not_checked", None, None),
                        drain::LogState::Skipped { reason } => {
                            ("skipped", None, Some(reason.clone()))
                        }
                    };
                    DrainedContainer {
                        name: c.name.clone(),
                        id: c.id.clone(),
                        state,
                        unsent_bytes,
                        reason,
                    }
                })
                .collect(),
        }
    }
}

pub async fn run(ctx: &Context, args: DownSettings) -> Result<u8, Failure> {
    let engine = ctx.engine().await?;
    let Some(info) = engine.inspect(&ctx.name).await? else {
        let report = DownReport {
            name: &ctx.name,
            result: "absent",
            id: None,
            drain: None,
            killed: false,
        };
        crate::output::emit(ctx.format, &report, || {
            format!("no agent container named {}; nothing to do", ctx.name)
        });
        return Ok(exit::OK);
    };
    if !is_managed(&info) && !args.force {
        return Err(Failure::Foreign {
            name: ctx.name.clone(),
            image: info.image,
            flag: "--force",
        });
    }
    let ended = drain_and_stop(&engine, &info, args.timeout, !args.no_drain).await?;
    engine.remove(&info.id).await?;
    let report = DownReport {
        name: &ctx.name,
        result: "removed",
        id: Some(info.id.clone()),
        drain: ended.drained.as_ref().map(DrainReport::of),
        killed: ended.ending == Ending::Killed,
    };
    crate::output::emit(ctx.format, &report, || {
        let drained = ended
            .drained
            .as_ref()
            .map(|d| format!("; {}", d.summary()))
            .unwrap_or_default();
        format!(
            "agent {} ({}) stopped and removed{drained}",
            ctx.name,
            short_id(&info.id)
        )
    });
    Ok(exit::OK)
}

/// How a teardown went.
pub struct Ended {
    pub drained: Option<Drained>,
    pub ending: Ending,
}

/// Drains the job's logs (unless told not to, or the agent is not running: then nothing can send),
/// then stops the agent, all within `total`. Each step's outcome is one log line.
pub async fn drain_and_stop(
    engine: &Engine,
    agent: &ContainerInfo,
    total: Duration,
    drain: bool,
) -> Result<Ended, Failure> {
    let (budget, grace) = drain::split_budget(total, AGENT_STOP_TIMEOUT);
    let drained = if drain && agent.state.running {
        drain::drain_and_log(engine, agent, budget).await
    } else {
        None
    };
    tracing::info!(
        "stopping agent {} (up to {} before it is killed)",
        agent.name,
        humantime::format_duration(grace)
    );
    let ending = teardown::stop(engine, agent, grace).await?;
    if ending == Ending::Killed {
        tracing::warn!(
            "the agent was killed before it finished stopping ({}); data it had not sent yet may be lost",
            teardown::KILLED_LINE
        );
    }
    Ok(Ended { drained, ending })
}
