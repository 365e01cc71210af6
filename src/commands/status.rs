//! `ddsky status`: the agent container, what it discovered, and what it has not.

use super::{Context, Failure};
use crate::agent::{AgentClient, DiscoveredIds, Health, Status, Tags, Unless};
use crate::discovery::{self, DiscoveryReport, WaitFor};
use crate::engine::{ContainerInfo, RunningContainer};
use crate::exit;
use crate::reference::short_id;
use crate::restarts::{self, LastExit, RestartVerdict};
use crate::settings::StatusSettings;
use crate::startup::{self, HealthWaitError};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use tokio::time::Instant;

#[derive(Serialize)]
struct AgentView {
    name: String,
    id: String,
    image: String,
    state: String,
    health: Option<String>,
    started_at: Option<String>,
    /// Seconds since the container started, when it is running.
    uptime_seconds: Option<u64>,
    restarts: i64,
    /// What the restarts mean: none, recovered_healthy, restarted_starting, crash_loop.
    restart_verdict: RestartVerdict,
    /// The last exit (code, whether OOM-killed, when), when it ever exited.
    last_exit: Option<LastExit>,
    /// In a crash loop: the agent's last log lines, which say why it exits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    last_lines: Vec<String>,
    version: Option<String>,
    host_tags: Vec<String>,
}

#[derive(Serialize)]
struct ContainerView {
    id: String,
    name: String,
    image: String,
    discovered: bool,
    tags: Vec<String>,
    is_agent: bool,
}

#[derive(Serialize)]
struct StatusReport {
    agent: Option<AgentView>,
    containers: Vec<ContainerView>,
    expected: Vec<discovery::Expectation>,
}

pub async fn run(ctx: &Context, args: StatusSettings) -> Result<u8, Failure> {
    let patterns = discovery::Pattern::all(&args.expect);
    let engine = ctx.engine().await?;
    let Some(info) = engine.inspect(&ctx.name).await? else {
        let running = engine.running_containers().await?;
        let report = StatusReport {
            agent: None,
            containers: containers(&running, "", &HashSet::new(), &BTreeMap::new()),
            expected: discovery::evaluate(&patterns, &running, &HashSet::new(), "").expected,
        };
        print(ctx, &report);
        return Ok(exit::NO_AGENT);
    };

    let agent = AgentClient::new(engine.clone(), info.id.clone());
    let docker_healthy = info.state.health.as_deref() == Some("healthy");
    let last_exit = startup::last_exit(&engine, &info).await;
    let verdict = restarts::verdict(&startup::restart_facts(&info, docker_healthy));
    // Down, or exiting again and again: asking the agent cannot work (an exec into a restarting
    // container fails), and a crash loop's own last lines say why.
    let crash_loop = verdict == RestartVerdict::CrashLoop;
    if !info.state.running || info.state.restarting || crash_loop {
        let (running, last_lines) = tokio::join!(engine.running_containers(), async {
            if crash_loop {
                engine
                    .last_log_lines(&info.id, startup::AGENT_LOG_LINES)
                    .await
            } else {
                vec![]
            }
        });
        let running = running?;
        let mut view = agent_view(&info, None, vec![], last_exit, verdict);
        view.last_lines = last_lines;
        let report = StatusReport {
            agent: Some(view),
            containers: containers(&running, &info.id, &HashSet::new(), &BTreeMap::new()),
            expected: discovery::evaluate(&patterns, &running, &HashSet::new(), &info.id).expected,
        };
        print(ctx, &report);
        return Ok(if crash_loop {
            exit::AGENT_CRASHED
        } else {
            exit::UNHEALTHY
        });
    }

    // With --wait: first the agent's start-up (right after `up --no-wait` it does not even answer
    // yet), then discovery. The agent's version and host tags (which do not change meanwhile) are
    // read while waiting for discovery, and the wait's last look is reused: after discovery only
    // the tags are left to ask.
    let mut waited_health = None;
    let (look, early_status) = match args.wait {
        Some(wait) => {
            let deadline = Instant::now() + wait;
            if info.state.health.as_deref() != Some("healthy") {
                match startup::wait_healthy(
                    &engine,
                    &agent,
                    &info.id,
                    deadline,
                    Some(info.clone()),
                    false,
                    &ctx.interrupt,
                )
                .await
                {
                    Ok(h) => waited_health = Some(h.report.healthy),
                    Err(HealthWaitError::Timeout { waited, last }) => {
                        tracing::warn!(
                            "the agent is not healthy after {}; its last answer: {}",
                            humantime::format_duration(std::time::Duration::from_secs(
                                waited.as_secs()
                            )),
                            last.summary()
                        );
                        waited_health = Some(false);
                    }
                    Err(e) => return Err(Failure::from_health_wait(&ctx.name, e)),
                }
            }
            if waited_health == Some(false) {
                (None, None)
            } else {
                let (look, status) = tokio::join!(
                    discovery::wait(
                        &engine,
                        &agent,
                        &patterns,
                        deadline,
                        WaitFor::EveryPattern,
                        None,
                        &ctx.interrupt
                    ),
                    agent.ask(Status),
                );
                let look = look?;
                if let Some(e) = &look.agent_error {
                    tracing::warn!("the agent did not list what it discovered in time: {e}");
                }
                // A status asked before the agent answered is asked again below.
                (
                    Some(look).filter(|l| l.discovered.is_some()),
                    Some(status).filter(Result::is_ok),
                )
            }
        }
        None => (None, None),
    };

    // Everything else in one round: one exec into the agent (see `AgentClient::ask`) beside one
    // container listing, each skipped when the wait already answered it. Docker's `healthy` is
    // trusted (its check runs every 30 s); anything else is asked of the agent itself.
    let trust_docker = docker_healthy || waited_health.is_some();
    let (seen_running, seen_discovered) = look
        .map(|l| (l.running, l.discovered.unwrap_or_default()))
        .unzip();
    let questions = (
        Unless::known(seen_discovered.map(Ok), DiscoveredIds),
        Tags,
        Unless::known(early_status, Status),
        (!trust_docker).then_some(Health),
    );
    let (running, (workload, tags, status, health)) = tokio::join!(
        async {
            match seen_running {
                Some(running) => Ok(running),
                None => engine.running_containers().await,
            }
        },
        agent.ask(questions),
    );
    let running = running?;
    // An agent that is not up yet answers every command the same way: say it once.
    let not_up_yet = [
        workload.as_ref().err(),
        tags.as_ref().err(),
        status.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    .find(|e| e.is_not_up_yet())
    .map(ToString::to_string);
    if let Some(e) = &not_up_yet {
        tracing::warn!(
            "the agent is not answering yet (it is starting; `--wait` waits for it): {e}"
        );
    }
    let warn = |what: &str, e: &dyn std::fmt::Display| {
        if not_up_yet.is_none() {
            tracing::warn!("{what}: {e}");
        }
    };
    let discovered: HashSet<String> = workload.unwrap_or_else(|e| {
        warn("cannot list what the agent discovered", &e);
        HashSet::new()
    });
    let tags = tags.unwrap_or_else(|e| {
        warn("cannot read the agent's tags", &e);
        BTreeMap::new()
    });
    let (version, host_tags) = match status {
        Ok(s) => (s.version, s.host_tags),
        Err(e) => {
            warn("cannot read `agent status`", &e);
            (None, vec![])
        }
    };
    let healthy = match health {
        None => waited_health.unwrap_or(info.state.health.as_deref() == Some("healthy")),
        Some(Ok(h)) => h.healthy,
        Some(Err(e)) => {
            warn("cannot run `agent health`", &e);
            false
        }
    };

    let expected = discovery::evaluate(&patterns, &running, &discovered, &info.id);
    let report = StatusReport {
        agent: Some(agent_view(
            &info,
            version,
            host_tags,
            last_exit,
            restarts::verdict(&startup::restart_facts(&info, healthy)),
        )),
        containers: containers(&running, &info.id, &discovered, &tags),
        expected: expected.expected.clone(),
    };
    print(ctx, &report);
    Ok(exit_code(healthy, &expected, args.wait.is_some()))
}

fn exit_code(healthy: bool, expected: &DiscoveryReport, waited: bool) -> u8 {
    if !healthy {
        exit::UNHEALTHY
    } else if waited && !expected.all_discovered() {
        exit::NOT_DISCOVERED
    } else {
        exit::OK
    }
}

fn agent_view(
    info: &ContainerInfo,
    version: Option<String>,
    host_tags: Vec<String>,
    last_exit: Option<LastExit>,
    restart_verdict: RestartVerdict,
) -> AgentView {
    AgentView {
        name: info.name.clone(),
        id: info.id.clone(),
        image: info.image.clone(),
        state: info.state.status.clone(),
        health: info.state.health.clone(),
        started_at: info.state.started_at.clone(),
        uptime_seconds: info
            .state
            .started_at
            .as_deref()
            .filter(|_| info.state.running)
            .and_then(uptime),
        restarts: info.state.restart_count,
        restart_verdict,
        last_exit,
        last_lines: vec![],
        version,
        host_tags,
    }
}

/// Time since Docker's RFC 3339 `StartedAt`.
fn uptime(started_at: &str) -> Option<u64> {
    let started = humantime::parse_rfc3339(started_at).ok()?;
    std::time::SystemTime::now()
        .duration_since(started)
        .ok()
        .map(|d| d.as_secs())
}

fn containers(
    running: &[RunningContainer],
    agent_id: &str,
    discovered: &HashSet<String>,
    tags: &BTreeMap<String, Vec<String>>,
) -> Vec<ContainerView> {
    running
        .iter()
        .map(|c| ContainerView {
            id: c.id.clone(),
            name: c.name.clone(),
            image: c.image.clone(),
            discovered: discovered.contains(&c.id),
            tags: tags.get(&c.id).cloned().unwrap_or_default(),
            is_agent: c.id == agent_id,
        })
        .collect()
}

fn print(ctx: &Context, report: &StatusReport) {
    crate::output::emit(ctx.format, report, || text(ctx, report));
}

fn text(ctx: &Context, r: &StatusReport) -> String {
    let mut lines = Vec::new();
    match &r.agent {
        None => lines.push(format!(
            "agent: no container named {} (start it with `ddsky up`)",
            ctx.name
        )),
        Some(a) => {
            // Between two exits Docker says `running (starting)`: in a loop that word misleads.
            let state = if a.restart_verdict == RestartVerdict::CrashLoop {
                "in a".to_owned()
            } else {
                format!(
                    "{}{},",
                    a.state,
                    a.health
                        .as_deref()
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default()
                )
            };
            lines.push(format!(
                "agent: {} ({}) {state} {}, image {}, version {}",
                a.name,
                short_id(&a.id),
                restarts::describe(a.restart_verdict, a.restarts, a.last_exit.as_ref()),
                a.image,
                a.version.as_deref().unwrap_or("unknown"),
            ));
            if let Some(advice) = restarts::advice(a.restart_verdict, a.last_exit.as_ref()) {
                lines.push(format!("  {advice}"));
            }
            if !a.last_lines.is_empty() {
                lines.push("its last log lines:".to_owned());
                lines.extend(a.last_lines.iter().map(|l| format!("  {l}")));
            }
            if let Some(up) = a.uptime_seconds {
                lines.push(format!(
                    "up {}",
                    humantime::format_duration(std::time::Duration::from_secs(up))
                ));
            }
            lines.push(format!(
                "host tags: {}",
                if a.host_tags.is_empty() {
                    "(none reported)".to_owned()
                } else {
                    a.host_tags.join(" ")
                }
            ));
        }
    }
    lines.push(format!("containers ({} running):", r.containers.len()));
    for c in &r.containers {
        let state = if c.is_agent {
            "the agent itself"
        } else {
            discovery::discovered_word(c.discovered)
        };
        lines.push(format!(
            "  {} {} ({}): {state}",
            short_id(&c.id),
            c.name,
            c.image
        ));
        if !c.tags.is_empty() {
            lines.push(format!("      tags: {}", c.tags.join(" ")));
        }
    }
    for e in &r.expected {
        let verdict = if e.discovered {
            "discovered".to_owned()
        } else if e.matches.is_empty() {
            "no running container matches".to_owned()
        } else {
            format!(
                "{} of {} matching containers discovered",
                e.matches.iter().filter(|m| m.discovered).count(),
                e.matches.len()
            )
        };
        lines.push(format!("expected {:?}: {verdict}", e.pattern));
    }
    lines.join("\n")
}
