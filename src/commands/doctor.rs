//! `ddsky doctor`: gathers the facts (Docker, the agent container, the agent's own answers, the ports)
//! and lets `crate::doctor` judge them.

use super::{identity, Context, Failure};
use crate::agent::{AgentClient, DiscoveredIds, Health, Status, Tags};
use crate::discovery::{self, Pattern};
use crate::doctor::{self, Check, DockerFacts, Facts, PortFacts, Verdict};
use crate::exit;
use crate::ports;
use crate::restarts::{self, RestartVerdict};
use crate::settings::DoctorSettings;
use crate::spec::NetworkMode;
use crate::startup;
use serde::Serialize;
use std::time::Duration;

const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

pub async fn run(ctx: &Context, args: DoctorSettings) -> Result<u8, Failure> {
    let tags = identity::resolve(&args.agent).await?;
    let patterns = Pattern::all(&args.expect);
    let mut facts = Facts {
        docker: Err(String::new()),
        cgroup_v2: std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        on_ec2: on_ec2(),
        agent_name: ctx.name.clone(),
        agent: None,
        health: None,
        status: None,
        wanted_tags: tags.tags,
        ports: PortFacts {
            apm_port: args.agent.apm_port,
            dogstatsd_port: args.agent.dogstatsd_port,
            ..Default::default()
        },
        expected: None,
        agent_age: None,
        port_conflicts: None,
        last_exit: None,
        since_last_exit: None,
        last_lines: vec![],
    };
    match ctx.interrupt.run(ctx.connect()).await? {
        Err(e) => facts.docker = Err(e.to_string()),
        Ok(engine) => {
            // The daemon answers at its own API version (ddsky's requests carry none), so that
            // is the one to report; the client's only when the daemon would not say.
            let (server_version, server_api) = match engine.daemon_version().await {
                Ok((version, api)) => (Some(version), api),
                Err(_) => (None, None),
            };
            facts.docker = Ok(DockerFacts {
                host: engine.host().to_owned(),
                api_version: server_api.unwrap_or_else(|| engine.api_version()),
                server_version,
            });
            facts.agent = engine.inspect(&ctx.name).await?;
            facts.agent_age = facts.agent.as_ref().and_then(startup::running_for);
            let mut crash_loop = false;
            if let Some(info) = &facts.agent {
                let docker_healthy = info.state.health.as_deref() == Some("healthy");
                let restart = startup::restart_facts(info, docker_healthy);
                facts.since_last_exit = restart.since_last_exit;
                facts.last_exit = startup::last_exit(&engine, info).await;
                // A crash loop's reason is in the agent's own last lines; nothing else will answer.
                crash_loop = restarts::verdict(&restart) == RestartVerdict::CrashLoop;
                if crash_loop {
                    facts.last_lines = engine
                        .last_log_lines(&info.id, startup::AGENT_LOG_LINES)
                        .await;
                }
            }
            // An agent that is not up (absent, stopped, restarting) may be kept down by
            // something holding its ports: look, as `up` does before it creates one.
            let agent_up = facts
                .agent
                .as_ref()
                .is_some_and(|a| a.state.running && !a.state.restarting);
            if !agent_up {
                let agent = facts.agent.as_ref();
                let host_network = agent.map_or(args.agent.network == NetworkMode::Host, |a| {
                    a.network_mode.as_deref() == Some("host")
                });
                let needed = ports::needed(
                    host_network,
                    agent
                        .and_then(|a| a.cmd_port)
                        .unwrap_or(ports::DEFAULT_CMD_PORT),
                    args.agent.apm_port,
                    args.agent.dogstatsd_port,
                );
                let mut conflicts = ports::conflicts(&needed);
                super::up::name_containers(&engine, &mut conflicts).await;
                facts.port_conflicts = Some(conflicts);
            }
            if let Some(info) = facts
                .agent
                .as_ref()
                .filter(|a| a.state.running && !a.state.restarting && !crash_loop)
            {
                let agent = AgentClient::new(engine.clone(), info.id.clone());
                let (running, (discovered, tags, status, health), apm, dogstatsd) = tokio::join!(
                    engine.running_containers(),
                    agent.ask((DiscoveredIds, Tags, Status, Health)),
                    probe_tcp(args.agent.apm_port),
                    bound_udp(args.agent.dogstatsd_port),
                );
                let expected = running.map_err(|e| e.to_string()).and_then(|running| {
                    let discovered = discovered.map_err(|e| e.to_string())?;
                    let report = discovery::evaluate(&patterns, &running, &discovered, &info.id);
                    Ok((report, tags.unwrap_or_default()))
                });
                facts.health = Some(health.map_err(|e| e.to_string()));
                facts.status = Some(status.map_err(|e| e.to_string()));
                facts.expected = Some(expected);
                facts.ports.apm = Some(apm);
                facts.ports.dogstatsd = Some(dogstatsd);
            }
        }
    }
    let checks = doctor::evaluate(&facts);
    let failed = checks.iter().any(|c| c.verdict == Verdict::Fail);
    let report = DoctorReport {
        ok: !failed,
        checks: &checks,
    };
    crate::output::emit(ctx.format, &report, || text(&checks));
    Ok(if failed { exit::FAILURE } else { exit::OK })
}

#[derive(Serialize)]
struct DoctorReport<'a> {
    ok: bool,
    checks: &'a [Check],
}

fn text(checks: &[Check]) -> String {
    let mut lines = Vec::new();
    for c in checks {
        let mark = match c.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
            Verdict::Skipped => "skip",
        };
        lines.push(format!("[{mark}] {}: {}", c.name, c.evidence));
        if let Some(fix) = &c.fix {
            lines.push(format!("       fix: {fix}"));
        }
        if !c.details.is_empty() {
            lines.push("       its last log lines:".to_owned());
            lines.extend(c.details.iter().map(|l| format!("         {l}")));
        }
    }
    lines.join("\n")
}

/// EC2 (Nitro and Xen) as the machine tells it, without asking instance metadata.
fn on_ec2() -> bool {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .to_lowercase()
    };
    read("/sys/devices/virtual/dmi/id/board_vendor").contains("amazon")
        || read("/sys/hypervisor/uuid").starts_with("ec2")
}

async fn probe_tcp(port: u16) -> Result<(), String> {
    match tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("nothing accepts connections ({e})")),
        Err(_) => Err("no answer".into()),
    }
}

/// Whether something is bound to the DogStatsD port, from the kernel's socket table: sending a
/// probe would become a (billable) custom metric in the user's Datadog account.
async fn bound_udp(port: u16) -> Result<(), String> {
    match ports::is_bound(port, ports::Proto::Udp) {
        Some(true) => Ok(()),
        Some(false) => Err(format!(
            "nothing is bound to {port}/udp in this network namespace"
        )),
        None => Err("cannot read /proc/net/udp to check".into()),
    }
}
