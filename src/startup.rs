//! Waiting through the agent's start-up, as the real agent goes through it
//! (shared/datadog-agent.md, "Start-up"):
//! 1. not answering: for about a second its CLI has no auth token yet (older agents: cannot reach
//!    the agent), and every `agent` command fails with exit 255 - "not up yet", never a failure;
//! 2. answering, unhealthy: every component, `healthcheck` included, is unhealthy until its first
//!    ping, and pings come every 15 s from the agent's start, so `agent health` is FAIL for at
//!    least 15 s and often 30 s;
//! 3. healthy.
//!
//! Each `agent health` starts the agent's Go CLI (0.3-1 s of CPU) plus an exec, so the wait does not
//! poll blindly: health can only turn at a ping, so it asks often around each 15 s tick since the
//! container started and rarely in between. When to ask is pure ([`next_health_poll`]); only the
//! deadline turns "not ready" into a failure, and only the container dying ends the wait early.
//!
//! Layer: domain (see `src/layers.rs`): may use the core, the edges and other domain modules; never
//! `cli`, `settings` or `commands`.

use crate::agent::{AgentClient, DiscoveredIds, Health};
use crate::agent_output::HealthReport;
use crate::engine::{ContainerInfo, Engine, EngineError};
use crate::interrupt::{Interrupt, Interrupted};
use crate::restarts::{self, LastExit, RestartFacts};
use std::collections::HashSet;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// The agent's components report in ("ping") this often, counted from the agent's start.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// Around each ping tick (from a second before to three after, which covers the agent process
/// starting a little after its container), ask this often: the agent's readiness is seen within it.
pub const TICK_POLL_INTERVAL: Duration = Duration::from_millis(600);
const TICK_WINDOW_BEFORE: Duration = Duration::from_secs(1);
const TICK_WINDOW_AFTER: Duration = Duration::from_secs(3);
/// Between ticks, still ask this often, for an agent whose timing differs from the real one's.
pub const BETWEEN_TICKS_MAX_INTERVAL: Duration = Duration::from_secs(4);
/// While the agent does not answer at all (its first second or so), ask this often.
pub const NOT_ANSWERING_INTERVAL: Duration = Duration::from_millis(700);
/// The agent lists a running container about a second after its own start: from this age on, a
/// look at what it discovered (taken while health cannot pass yet) is worth taking.
const LIST_EARLY_FROM: Duration = Duration::from_secs(3);
/// However long the last command took, leave the agent this much air before the next.
const MIN_PAUSE: Duration = Duration::from_millis(100);
/// How many of the agent's last log lines an error report shows.
pub const AGENT_LOG_LINES: usize = 20;

/// How long to sleep before the next `agent health`, given how long the agent's container has
/// been running and whether the agent answered the last one (with its component lists).
pub fn next_health_poll(since_start: Duration, answering: bool) -> Duration {
    if !answering {
        return NOT_ANSWERING_INTERVAL;
    }
    let period = PING_INTERVAL.as_millis();
    let before = TICK_WINDOW_BEFORE.as_millis();
    let after = TICK_WINDOW_AFTER.as_millis();
    let t = since_start.as_millis();
    let tick = (t + before) / period;
    if tick >= 1 && t <= tick * period + after {
        return TICK_POLL_INTERVAL;
    }
    let next_window = (tick + 1) * period - before;
    let until_window = Duration::from_millis(u64::try_from(next_window - t).unwrap_or(u64::MAX));
    until_window.clamp(TICK_POLL_INTERVAL, BETWEEN_TICKS_MAX_INTERVAL)
}

/// How the agent container's start time is known: Docker's RFC 3339 `StartedAt`.
pub fn running_for(info: &ContainerInfo) -> Option<Duration> {
    let started = humantime::parse_rfc3339_weak(info.state.started_at.as_deref()?).ok()?;
    SystemTime::now().duration_since(started).ok()
}

/// The restart facts of the agent's container as inspected; `healthy` as known (Docker's word, or
/// the agent's own answer).
pub fn restart_facts(info: &ContainerInfo, healthy: bool) -> RestartFacts {
    let since_last_exit = restarts::finished_at(info.state.finished_at.as_deref())
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .map(|t| SystemTime::now().duration_since(t).unwrap_or_default());
    RestartFacts {
        restarts: info.state.restart_count,
        running: info.state.running,
        restarting: info.state.restarting,
        healthy,
        since_last_exit,
    }
}

/// The container's last exit, when it had one: its code from `State.ExitCode` while it is down,
/// else from Docker's `die` event (Docker resets the code to 0 when it restarts the container).
pub async fn last_exit(engine: &Engine, info: &ContainerInfo) -> Option<LastExit> {
    let at = restarts::finished_at(info.state.finished_at.as_deref())?.to_owned();
    let down = !info.state.running || info.state.restarting;
    let code = if down {
        info.state.exit_code
    } else {
        engine.last_exit_code(&info.id, &at).await
    };
    Some(LastExit {
        code,
        oom_killed: info.state.oom_killed,
        at,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum HealthWaitError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    /// The container stopped or keeps restarting: waiting longer cannot help.
    #[error("the agent container {what}")]
    Exited {
        what: &'static str,
        exit_code: Option<i64>,
        last_lines: Vec<String>,
    },
    #[error("the agent container disappeared")]
    Gone,
    /// The deadline passed; `last` is the agent's last answer.
    #[error("the agent is not healthy after {waited:?}: {}", last.summary())]
    Timeout {
        waited: Duration,
        last: HealthReport,
    },
}

/// Healthy, and what the agent had discovered while it was still starting.
#[derive(Debug, Default)]
pub struct Healthy {
    pub report: HealthReport,
    /// With `list_early`: the container ids `agent workload-list` gave between health checks
    /// (health cannot pass then), so discovery is known the moment health passes.
    pub listed_early: Option<HashSet<String>>,
}

/// Asks `agent health` until it passes or `deadline`. `known` is the container as just inspected
/// (saves one inspect). `list_early`: once, while the agent answers but cannot pass before its
/// next ping, also ask what it discovered.
pub async fn wait_healthy(
    engine: &Engine,
    agent: &AgentClient,
    id: &str,
    deadline: Instant,
    known: Option<ContainerInfo>,
    list_early: bool,
    interrupt: &Interrupt,
) -> Result<Healthy, HealthWaitError> {
    let first = match known {
        Some(c) => c,
        None => engine.inspect(id).await?.ok_or(HealthWaitError::Gone)?,
    };
    let restarts_before = first.state.restart_count;
    let started = Instant::now();
    // The container's age now, as an instant: ticks are counted from its start.
    let container_start = started
        .checked_sub(running_for(&first).unwrap_or_default())
        .unwrap_or(started);
    let mut info = first;
    let mut listed_early = None;
    loop {
        let restarted = info.state.restarting || info.state.restart_count > restarts_before;
        if !info.state.running || restarted {
            let last_lines = engine.last_log_lines(id, AGENT_LOG_LINES).await;
            return Err(HealthWaitError::Exited {
                what: if restarted {
                    "keeps exiting (Docker restarts it and it exits again: a crash loop)"
                } else {
                    "stopped"
                },
                // Docker resets the code to 0 once it restarted the container: only a down one's is real.
                exit_code: info
                    .state
                    .exit_code
                    .filter(|_| !info.state.running || info.state.restarting),
                last_lines,
            });
        }
        // Polls are spaced start to start: a command that takes long (a loaded node) does not
        // stretch the interval around a tick. A signal must not wait for an exec (one can hang
        // while the container restarts).
        let asked_at = Instant::now();
        let report = match interrupt.run(agent.ask(Health)).await? {
            Ok(r) => r,
            // The container may have died between the inspect and the exec: the next inspect says.
            Err(e) => {
                tracing::debug!("agent health could not run: {e}");
                HealthReport {
                    other_error: Some(e.to_string()),
                    ..HealthReport::default()
                }
            }
        };
        if report.healthy {
            return Ok(Healthy {
                report,
                listed_early,
            });
        }
        if Instant::now() >= deadline {
            return Err(HealthWaitError::Timeout {
                waited: Instant::now() - started,
                last: report,
            });
        }
        let answering = report.not_up_yet.is_none() && !report.unhealthy_components.is_empty();
        let age = asked_at - container_start;
        let interval = next_health_poll(age, answering);
        if list_early
            && listed_early.is_none()
            && answering
            && age >= LIST_EARLY_FROM
            && interval > TICK_POLL_INTERVAL
        {
            match agent.ask(DiscoveredIds).await {
                Ok(ids) => listed_early = Some(ids),
                Err(e) => tracing::debug!("agent workload-list could not run yet: {e}"),
            }
        }
        let pause = interval.saturating_sub(asked_at.elapsed()).max(MIN_PAUSE);
        tracing::debug!(answer = %report.summary(), ?pause, "agent not healthy yet");
        let now = Instant::now();
        interrupt
            .run(tokio::time::sleep(
                pause.min(deadline.saturating_duration_since(now)),
            ))
            .await?;
        info = engine.inspect(id).await?.ok_or(HealthWaitError::Gone)?;
    }
}

/// The hint for an unhealthy agent: `forwarder` alone (once start-up is over) is nearly always the
/// API key; every component unhealthy is start-up not finished.
pub fn unhealthy_hint(health: &HealthReport) -> String {
    let components = &health.unhealthy_components;
    if health.not_up_yet.is_some() || health.other_error.is_some() {
        "the agent has not answered `agent health` yet; see `ddsky logs`, or wait longer with --timeout".into()
    } else if components.iter().any(|c| c == "healthcheck") {
        "the agent is still starting (every component is unhealthy until its first 15 s ping); wait longer with --timeout".into()
    } else if components.iter().any(|c| c == "forwarder") {
        "`forwarder` unhealthy usually means the API key is not valid for this --site; check the key and DD_SITE".into()
    } else if components.is_empty() {
        "the agent did not answer `agent health`; see `ddsky logs`".into()
    } else {
        "see `ddsky logs`, or wait longer with --timeout".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_silent_agent_is_asked_often_but_not_continuously() {
        assert_eq!(next_health_poll(ms(0), false), NOT_ANSWERING_INTERVAL);
        assert_eq!(next_health_poll(ms(600_000), false), NOT_ANSWERING_INTERVAL);
    }

    #[test]
    fn around_each_ping_tick_the_agent_is_asked_within_a_second() {
        for t in [
            14_000, 15_000, 16_500, 18_000, 29_000, 31_000, 33_000, 150_000,
        ] {
            let pause = next_health_poll(ms(t), true);
            assert!(pause <= ms(1000), "at {t} ms: {pause:?}");
        }
    }

    #[test]
    fn between_ticks_it_waits_for_the_next_window_but_never_long() {
        // Before the first tick: nothing can pass yet.
        assert_eq!(
            next_health_poll(ms(1_000), true),
            BETWEEN_TICKS_MAX_INTERVAL
        );
        // Close to a window: sleep just until it opens.
        assert_eq!(next_health_poll(ms(12_000), true), ms(2_000));
        assert_eq!(
            next_health_poll(ms(25_000), true),
            BETWEEN_TICKS_MAX_INTERVAL
        );
        assert_eq!(next_health_poll(ms(13_700), true), TICK_POLL_INTERVAL);
    }

    #[test]
    fn a_thirty_second_start_costs_well_under_one_command_a_second() {
        // Simulate: not answering for the first second, healthy at the second tick (30 s).
        let mut t = ms(0);
        let mut commands = 0;
        let ready = ms(30_200);
        let mut seen = None;
        while seen.is_none() {
            commands += 1;
            if t >= ready {
                seen = Some(t);
                break;
            }
            t += next_health_poll(t, t >= ms(1_000));
        }
        let seen = seen.unwrap();
        assert!(
            seen - ready <= ms(1_000),
            "seen {seen:?} after ready {ready:?}"
        );
        assert!(commands < 30 * 2 / 3, "{commands} commands in 30 s");
    }
}
