//! Ready: after converge, wait until the agent is healthy, then until it has discovered the expected
//! containers that run (testcontainers' wait strategies: health first, then discovery).

use super::Failure;
use crate::agent::AgentClient;
use crate::agent_output::HealthReport;
use crate::discovery::{self, DiscoveryReport, Pattern, WaitFor};
use crate::engine::{ContainerInfo, Engine};
use crate::interrupt::Interrupt;
use crate::placement::{self, Placement};
use crate::reconcile::Action;
use crate::startup;
use std::time::Duration;
use tokio::time::Instant;

/// What ready waits on: the agent container `up` converged, and for how long.
pub struct Waiting<'a> {
    pub name: &'a str,
    pub id: &'a str,
    pub action: Action,
    /// For a no-op `up`, the container as converge saw it.
    pub unchanged: Option<ContainerInfo>,
    pub timeout: Duration,
}

/// Waits until the agent is healthy, then until it lists the expected containers that run; returns
/// whether it is healthy and what it discovered.
pub async fn wait_for_agent(
    engine: &Engine,
    interrupt: &Interrupt,
    agent_container: Waiting<'_>,
    patterns: &[Pattern],
) -> Result<(bool, DiscoveryReport), Failure> {
    let Waiting {
        name,
        id,
        action,
        unchanged,
        timeout,
    } = agent_container;
    let agent = AgentClient::new(engine.clone(), id.to_owned());
    let deadline = Instant::now() + timeout;
    let started = Instant::now();
    let health = match wait_healthy(
        name,
        engine,
        &agent,
        id,
        deadline,
        unchanged,
        !patterns.is_empty(),
        interrupt,
    )
    .await
    {
        // An agent this run created that cannot even start would crash-loop forever under
        // unless-stopped: remove it (its last words are in the error) rather than leave it behind.
        Err(Failure::AgentExited {
            name,
            what,
            exit_code,
            last_lines,
            ..
        }) if matches!(action, Action::Create | Action::Recreate) => {
            let removed = engine.remove(id).await.is_ok();
            return Err(Failure::AgentExited {
                name,
                what,
                exit_code,
                last_lines,
                removed,
            });
        }
        other => other?,
    };
    tracing::info!(
        "agent {} healthy after {}",
        name,
        humantime::format_duration(round(started.elapsed()))
    );

    let look = discovery::wait(
        engine,
        &agent,
        patterns,
        deadline,
        WaitFor::MatchedOnly,
        health.listed_early,
        interrupt,
    )
    .await?;
    if let Some(e) = &look.agent_error {
        tracing::warn!("the agent did not list what it discovered in time: {e}");
    }
    Ok((health.report.healthy, look.report))
}

/// The user's patterns, or the default: the Metta job, plus ddsky's own container when ddsky runs in
/// one it can name (a stray /.dockerenv on a VM image must not add a pattern nobody can satisfy).
/// `self` becomes that container's id; asked for where it cannot be known, it is dropped with a warning.
pub fn expectations(given: &[String], placement: &Placement) -> Vec<Pattern> {
    let defaults: Vec<String> = if placement::knows_own_container(placement) {
        vec!["metta".into(), "self".into()]
    } else {
        vec!["metta".into()]
    };
    let texts = if given.is_empty() { &defaults } else { given };
    texts
        .iter()
        .filter_map(|text| {
            if text != "self" {
                return Some(Pattern::new(text));
            }
            match placement {
                Placement::Container { own_id: Some(id), .. } => Some(Pattern { label: "self".into(), needle: id.clone() }),
                Placement::Container { id_hint: Some(hint), .. } => Some(Pattern { label: "self".into(), needle: hint.clone() }),
                Placement::Container { .. } => {
                    tracing::warn!("cannot tell which container ddsky runs in (no id in its cgroup or mounts); `self` is not checked");
                    None
                }
                _ => {
                    tracing::warn!("ddsky is not running in a container; `--expect self` is ignored");
                    None
                }
            }
        })
        .collect()
}

/// Waits until `agent health` passes. A no-op `up` (`unchanged`: the container as converge saw it)
/// trusts Docker's `healthy`, which costs no exec: Docker runs the image's check every 30 s, so that
/// word is at most a check old, and turning healthy is what the image's check lags on, not what it
/// lets through. Anything else (`starting`, `unhealthy`, no word) is asked of the agent itself.
#[allow(clippy::too_many_arguments)] // each is one fact of this wait; a struct would only rename them
async fn wait_healthy(
    name: &str,
    engine: &Engine,
    agent: &AgentClient,
    id: &str,
    deadline: Instant,
    unchanged: Option<ContainerInfo>,
    list_early: bool,
    interrupt: &Interrupt,
) -> Result<startup::Healthy, Failure> {
    if unchanged
        .as_ref()
        .is_some_and(|c| c.state.health.as_deref() == Some("healthy"))
    {
        return Ok(startup::Healthy {
            report: HealthReport {
                healthy: true,
                ..Default::default()
            },
            listed_early: None,
        });
    }
    startup::wait_healthy(
        engine, agent, id, deadline, unchanged, list_early, interrupt,
    )
    .await
    .map_err(|e| Failure::from_health_wait(name, e))
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64 / 100 * 100)
}
