//! The troubleshooting checklist as data: what was observed goes in ([`Facts`]), one verdict per check
//! comes out, each with its evidence and, when not ok, the fix. Pure; `commands::doctor` gathers.
//!
//! Layer: domain (see `src/layers.rs`): may use the core, the edges and other domain modules; never
//! `cli`, `settings` or `commands`.

use crate::agent_output::{says_not_up_yet, AgentStatus, ApiKeyState, HealthReport};
use crate::discovery::{self, DiscoveryReport};
use crate::engine::ContainerInfo;
use crate::ports::Conflict;
use crate::reconcile::is_managed;
use crate::reference::short_id;
use crate::restarts::{self, LastExit, RestartFacts, RestartVerdict};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    /// Could not run because an earlier check failed; never counts as passed.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub evidence: String,
    pub fix: Option<String>,
    /// Lines that back the evidence (a crash-looping agent's last log lines).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl Check {
    fn ok(name: &'static str, evidence: impl Into<String>) -> Self {
        Check {
            name,
            verdict: Verdict::Ok,
            evidence: evidence.into(),
            fix: None,
            details: vec![],
        }
    }
    fn warn(name: &'static str, evidence: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name,
            verdict: Verdict::Warn,
            evidence: evidence.into(),
            fix: Some(fix.into()),
            details: vec![],
        }
    }
    fn fail(name: &'static str, evidence: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name,
            verdict: Verdict::Fail,
            evidence: evidence.into(),
            fix: Some(fix.into()),
            details: vec![],
        }
    }
    fn skipped(name: &'static str, because: &str) -> Self {
        Check {
            name,
            verdict: Verdict::Skipped,
            evidence: format!("not checked: {because}"),
            fix: None,
            details: vec![],
        }
    }
}

#[derive(Debug, Clone)]
pub struct DockerFacts {
    pub host: String,
    pub api_version: String,
    pub server_version: Option<String>,
}

/// Whether the intake ports answer on the host's loopback.
#[derive(Debug, Clone, Default)]
pub struct PortFacts {
    pub apm_port: u16,
    pub apm: Option<Result<(), String>>,
    pub dogstatsd_port: u16,
    pub dogstatsd: Option<Result<(), String>>,
}

/// What the agent discovered of the expected containers, and every container's tags.
pub type Discovered = (DiscoveryReport, BTreeMap<String, Vec<String>>);

/// Everything doctor observed. `None` means "not asked", because something it depends on failed.
#[derive(Debug, Clone)]
pub struct Facts {
    pub docker: Result<DockerFacts, String>,
    pub cgroup_v2: bool,
    pub on_ec2: bool,
    pub agent_name: String,
    pub agent: Option<ContainerInfo>,
    pub health: Option<Result<HealthReport, String>>,
    pub status: Option<Result<AgentStatus, String>>,
    /// The tags `ddsky up` would set now.
    pub wanted_tags: Vec<String>,
    pub ports: PortFacts,
    pub expected: Option<Result<Discovered, String>>,
    /// How long the agent's container has been running (from Docker's StartedAt).
    pub agent_age: Option<Duration>,
    /// The host ports the agent needs that something holds; `None` when not looked at (the
    /// agent runs, so it holds them itself).
    pub port_conflicts: Option<Vec<Conflict>>,
    /// The agent container's last exit, when it ever exited.
    pub last_exit: Option<LastExit>,
    /// How long ago that was.
    pub since_last_exit: Option<Duration>,
    /// The agent's last log lines, read when it is in a crash loop.
    pub last_lines: Vec<String>,
}

/// For this long after its container starts, an agent that does not answer yet or whose components
/// have not had their first ping is "starting", not failing: the real agent is FAIL for 15-30 s
/// (every component, `healthcheck` included, until its first ping), sometimes longer.
pub const START_UP_GRACE: Duration = Duration::from_secs(60);

/// Mount points inside the agent that Datadog's recipe needs, and what each is for.
const REQUIRED_MOUNTS: [(&str, &str); 5] = [
    (
        "/var/run/docker.sock",
        "container discovery and the docker check",
    ),
    ("/host/proc", "host and process metrics"),
    ("/host/sys/fs/cgroup", "container metrics"),
    ("/var/lib/docker/containers", "container logs"),
    ("/opt/datadog-agent/run", "log positions across restarts"),
];

pub fn evaluate(f: &Facts) -> Vec<Check> {
    let mut checks = Vec::new();
    let docker = match &f.docker {
        Ok(d) => {
            let server = d
                .server_version
                .as_deref()
                .map(|v| format!(", Docker {v}"))
                .unwrap_or_default();
            checks.push(Check::ok(
                "docker api",
                format!("{} answers, API {}{server}", d.host, d.api_version),
            ));
            true
        }
        Err(e) => {
            let fix = if e.to_lowercase().contains("permission denied") {
                "run as root or add this user to the docker group"
            } else {
                "start Docker (systemctl start docker), or point --docker-host/DOCKER_HOST at the daemon"
            };
            checks.push(Check::fail("docker api", e.clone(), fix));
            false
        }
    };

    let agent = f.agent.as_ref().filter(|_| docker);
    let restart_verdict = agent.map_or(RestartVerdict::None, |a| {
        let healthy = match &f.health {
            Some(Ok(h)) => h.healthy,
            _ => a.state.health.as_deref() == Some("healthy"),
        };
        restarts::verdict(&RestartFacts {
            restarts: a.state.restart_count,
            running: a.state.running,
            restarting: a.state.restarting,
            healthy,
            since_last_exit: f.since_last_exit,
        })
    });
    let crash_loop = restart_verdict == RestartVerdict::CrashLoop;
    // A container Docker is restarting, or that exits again and again, has no agent to ask.
    let running = agent.is_some_and(|a| a.state.running && !a.state.restarting) && !crash_loop;
    checks.push(match (docker, agent) {
        (false, _) => Check::skipped("agent container", "the Docker API is unreachable"),
        (true, None) => Check::fail(
            "agent container",
            format!("no container named {}", f.agent_name),
            "run `ddsky up`",
        ),
        (true, Some(a)) => agent_container(a, restart_verdict, f),
    });
    checks.push(match agent {
        None => Check::skipped("namespaces", "there is no agent container"),
        Some(a) => namespaces(a, f.cgroup_v2),
    });
    checks.push(match agent {
        None => Check::skipped("mounts", "there is no agent container"),
        Some(a) => mounts(a),
    });

    if let Some(conflicts) = f.port_conflicts.as_ref().filter(|c| !c.is_empty()) {
        let host_network = conflicts.iter().any(|c| c.needed.port_is_cmd());
        checks.push(Check::fail(
            "host ports",
            conflicts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            crate::ports::explain(conflicts, host_network)
                .split_once("nothing was created: ")
                .map_or_else(String::new, |(_, fix)| fix.to_owned()),
        ));
    } else if f.port_conflicts.is_some() {
        checks.push(Check::ok(
            "host ports",
            "the ports the agent binds are free",
        ));
    }

    let not_running = if crash_loop {
        "the agent is in a crash loop (see agent container)"
    } else {
        "the agent is not running"
    };
    let not_up_yet = match &f.health {
        Some(Ok(h)) => h.not_up_yet.is_some(),
        Some(Err(e)) => says_not_up_yet(e),
        None => false,
    };
    // Start-up: not answering yet, or its `healthcheck` pseudo-component not pinged yet (every
    // component is unhealthy until its first ping). Once that passed, what is unhealthy is real.
    let before_first_ping = matches!(&f.health, Some(Ok(h)) if h.unhealthy_components.iter().any(|c| c == "healthcheck"));
    let starting = running
        && f.agent_age.is_some_and(|age| age < START_UP_GRACE)
        && (not_up_yet || before_first_ping);
    // While the agent starts (or does not answer yet), what depends on its answers is skipped
    // with this one reason; the agent's own answer is in `agent health`, once.
    let still_starting = "the agent is still starting (see agent health)";
    checks.push(match (&f.health, running) {
        (_, false) => Check::skipped("agent health", not_running),
        (None, true) => Check::skipped("agent health", "`agent health` was not run"),
        (Some(Ok(h)), true) if h.healthy => Check::ok(
            "agent health",
            format!("{} healthy components", h.healthy_components.len()),
        ),
        (Some(health), true) if starting => {
            let answer = match health {
                Ok(h) => h.summary(),
                Err(e) => format!("`agent health` could not run: {e}"),
            };
            Check::warn(
                "agent health",
                format!(
                    "starting: the container started {} ago; {answer}",
                    humantime::format_duration(Duration::from_secs(
                        f.agent_age.unwrap_or_default().as_secs()
                    ))
                ),
                "the agent needs 15-30 s to pass its health check: check again in a minute, or wait with `ddsky status --wait 2m`",
            )
        }
        (Some(Err(e)), true) => Check::fail(
            "agent health",
            format!("`agent health` could not run: {e}"),
            "see `ddsky logs`",
        ),
        (Some(Ok(h)), true) => Check::fail(
            "agent health",
            h.summary(),
            crate::startup::unhealthy_hint(h),
        ),
    });

    let status = match (&f.status, running) {
        (_, false) => Err(not_running.to_owned()),
        (None, true) => Err("`agent status` was not run".to_owned()),
        (Some(Err(e)), true) if not_up_yet || says_not_up_yet(e) => Err(if starting {
            still_starting
        } else {
            "the agent does not answer (see agent health)"
        }
        .to_owned()),
        (Some(Err(e)), true) => {
            checks.push(Check::fail(
                "api key",
                format!("`agent status` failed: {e}"),
                "see `ddsky logs`",
            ));
            Err("`agent status` failed (see api key)".to_owned())
        }
        (Some(Ok(s)), true) => Ok(s),
    };
    match &status {
        Ok(s) => {
            checks.push(api_key(s));
            // The first payloads of a starting agent may fail and be retried: not a verdict yet.
            checks.push(match data_accepted(s) {
                c if starting && c.verdict == Verdict::Fail => Check {
                    verdict: Verdict::Warn,
                    fix: c
                        .fix
                        .map(|f| format!("the agent is still starting; if it stays: {f}")),
                    ..c
                },
                c => c,
            });
            let young = f.agent_age.is_some_and(|age| age < START_UP_GRACE);
            let socket = agent.is_some_and(|a| {
                a.mounts
                    .iter()
                    .any(|m| m.trim_end_matches('/') == "/var/run/docker.sock")
            });
            checks.push(docker_check(s, young, socket));
            checks.push(hostname(s, f.on_ec2));
            checks.push(host_tags(s, &f.wanted_tags));
            checks.push(logs_and_ports(s, &f.ports, starting));
        }
        Err(why) => {
            for name in [
                "api key",
                "data accepted",
                "docker check",
                "hostname",
                "host tags",
                "logs and ports",
            ] {
                if !checks.iter().any(|c| c.name == name) {
                    checks.push(Check::skipped(name, why));
                }
            }
        }
    }

    let expected_check = match (&f.expected, running) {
        (_, false) => Check::skipped("expected containers", not_running),
        (None, true) => Check::skipped("expected containers", "discovery was not checked"),
        (Some(Err(e)), true) if starting || not_up_yet || says_not_up_yet(e) => {
            Check::skipped("expected containers", still_starting)
        }
        (Some(Err(e)), true) => Check::fail(
            "expected containers",
            format!("cannot list what the agent discovered: {e}"),
            "see `ddsky logs`",
        ),
        (Some(Ok((report, tags))), true) => expected(report, tags),
    };
    // A container the agent has not listed yet, while it starts, is not a failure yet.
    checks.push(match expected_check {
        c if starting && c.verdict == Verdict::Fail => Check {
            verdict: Verdict::Warn,
            fix: Some("the agent is still starting: check again in a minute".into()),
            ..c
        },
        c => c,
    });
    checks
}

fn agent_container(a: &ContainerInfo, restart_verdict: RestartVerdict, f: &Facts) -> Check {
    const NAME: &str = "agent container";
    let health = a.state.health.as_deref().unwrap_or("no health check");
    let evidence = format!(
        "{} ({}), {}, {health}, {}, image {}",
        a.name,
        short_id(&a.id),
        a.state.status,
        restarts::describe(restart_verdict, a.state.restart_count, f.last_exit.as_ref()),
        a.image
    );
    let advice = restarts::advice(restart_verdict, f.last_exit.as_ref());
    if restart_verdict == RestartVerdict::CrashLoop {
        return Check {
            details: f.last_lines.clone(),
            ..Check::fail(NAME, evidence, advice.unwrap_or_default())
        };
    }
    if !a.state.running {
        return Check::fail(
            NAME,
            evidence,
            "run `ddsky up` to start it, and `ddsky logs` to see why it stopped",
        );
    }
    if !is_managed(a) {
        return Check::warn(
            NAME,
            evidence,
            "not created by ddsky: `ddsky up --replace` puts ddsky's agent in its place",
        );
    }
    if let Some(advice) = advice {
        return Check::warn(NAME, evidence, advice);
    }
    Check::ok(NAME, evidence)
}

fn namespaces(a: &ContainerInfo, cgroup_v2: bool) -> Check {
    const NAME: &str = "namespaces";
    let pid = a.pid_mode.as_deref().unwrap_or("private");
    let cgroupns = a
        .cgroupns_mode
        .as_deref()
        .filter(|m| !m.is_empty())
        .unwrap_or("default");
    let evidence = format!(
        "cgroup v{} host; agent pid namespace {pid}, cgroup namespace {cgroupns}",
        if cgroup_v2 { 2 } else { 1 }
    );
    if pid != "host" {
        return Check::fail(
            NAME,
            evidence,
            "process and container metrics need the host PID namespace: `ddsky up --replace`",
        );
    }
    if cgroup_v2 && cgroupns != "host" {
        return Check::fail(NAME, evidence, "on cgroup v2 the agent needs --cgroupns host for container metrics: `ddsky up --replace`");
    }
    Check::ok(NAME, evidence)
}

/// The host socket the agent watches: the source of its /var/run/docker.sock bind (and the
/// DOCKER_HOST it is given, when that is not the socket), as `ddsky up` mounts it.
fn agent_socket(a: &ContainerInfo) -> Option<String> {
    let source = a.binds.iter().find_map(|b| {
        let mut parts = b.split(':');
        let (src, dst) = (parts.next()?, parts.next()?);
        (dst.trim_end_matches('/') == "/var/run/docker.sock").then(|| src.to_owned())
    })?;
    Some(if source == "/var/run/docker.sock" {
        source
    } else {
        format!("{source} (mounted at /var/run/docker.sock)")
    })
}

fn mounts(a: &ContainerInfo) -> Check {
    const NAME: &str = "mounts";
    // The container logs are mounted at the daemon's data root (an NVMe volume on ML AMIs, a second
    // daemon's own root), which ddsky recorded on the agent when it created it.
    let logs = a
        .labels
        .get(crate::spec::LABEL_DOCKER_ROOT)
        .map(|root| format!("{}/containers", root.trim_end_matches('/')));
    let missing: Vec<String> = REQUIRED_MOUNTS
        .iter()
        .map(|(dest, why)| match (&logs, *dest) {
            (Some(logs), "/var/lib/docker/containers") => (logs.as_str(), *why),
            _ => (*dest, *why),
        })
        .filter(|(dest, _)| !a.mounts.iter().any(|m| m.trim_end_matches('/') == *dest))
        .map(|(dest, why)| format!("{dest} ({why})"))
        .collect();
    if missing.is_empty() {
        let socket = agent_socket(a).unwrap_or_else(|| "/var/run/docker.sock".into());
        Check::ok(NAME, format!("docker socket {socket}, /host/proc, /host/sys/fs/cgroup, container logs and run dir are mounted"))
    } else {
        let fix = if is_managed(a) {
            "`ddsky up` recreates the agent with every mount"
        } else {
            "`ddsky up --replace` recreates the agent with every mount"
        };
        Check::fail(NAME, format!("missing: {}", missing.join(", ")), fix)
    }
}

fn api_key(s: &AgentStatus) -> Check {
    const NAME: &str = "api key";
    match &s.api_key {
        ApiKeyState::Valid { ending } => Check::ok(NAME, format!("API key ending with {ending} is valid")),
        ApiKeyState::Invalid { ending, reason } => Check::fail(
            NAME,
            format!("API key ending with {ending}: {reason}"),
            "set a valid API key for this site (DD_API_KEY or the datadog/api-key secret), then `ddsky up`",
        ),
        ApiKeyState::Unknown => Check::warn(NAME, "the agent has not validated the key yet (or cannot reach the validation endpoint)", "check again in a minute; if it stays, check the network path to the intake"),
    }
}

fn data_accepted(s: &AgentStatus) -> Check {
    const NAME: &str = "data accepted";
    let t = &s.transactions;
    let codes: Vec<String> = t
        .http_errors_by_code
        .iter()
        .map(|(code, n)| format!("HTTP {code} x{n}"))
        .collect();
    let evidence = format!(
        "{} payloads accepted, {} failed{}{}",
        t.success,
        t.errors,
        if t.dropped_on_input > 0 {
            format!(", {} dropped", t.dropped_on_input)
        } else {
            String::new()
        },
        if codes.is_empty() {
            String::new()
        } else {
            format!(" ({})", codes.join(", "))
        }
    );
    if t.success == 0 && (t.errors > 0 || t.http_errors > 0) {
        let fix = if t.http_errors_by_code.keys().any(|c| c == "403") {
            "the intake refuses the key (403): check the key and --site / --dd-url"
        } else {
            "the intake is failing: check the network path, proxy and --dd-url"
        };
        Check::fail(NAME, evidence, fix)
    } else if t.success == 0 {
        Check::warn(NAME, evidence, "nothing sent yet: check again in a minute")
    } else if t.errors > 0 {
        Check::warn(
            NAME,
            evidence,
            "some payloads fail: check the network path and `ddsky logs`",
        )
    } else {
        Check::ok(NAME, evidence)
    }
}

/// `young`: the agent started less than a minute ago. `socket`: the Docker socket is mounted.
fn docker_check(s: &AgentStatus, young: bool, socket: bool) -> Check {
    const NAME: &str = "docker check";
    match &s.docker_check {
        // Without the socket the agent never schedules the check.
        None if !socket => Check::fail(NAME, "the docker check is not scheduled: the agent has no Docker socket", "`ddsky up` recreates the agent with the socket mounted"),
        // With it, the agent lists the check only after its first run, ~15 s after start.
        None if young => Check::warn(NAME, "not run yet (the agent started less than a minute ago)", "check again in a minute"),
        None => Check::warn(NAME, "the docker check is not scheduled", "the agent needs the Docker socket mounted: `ddsky up`"),
        Some(c) => match c.last_error.as_deref().filter(|e| !e.is_empty()) {
            Some(error) => Check::fail(
                NAME,
                format!("{} runs, {} errors, last error: {error}", c.total_runs, c.total_errors),
                "check the socket and cgroup mounts (doctor's mounts check); `ddsky up` recreates them",
            ),
            None if c.total_runs == 0 => Check::warn(NAME, "not run yet", "check again in 15 s"),
            None => Check::ok(NAME, format!("{} runs, {} errors, no last error", c.total_runs, c.total_errors)),
        },
    }
}

fn hostname(s: &AgentStatus, on_ec2: bool) -> Check {
    const NAME: &str = "hostname";
    match s.hostname.as_deref().filter(|h| !h.is_empty()) {
        Some(h) => Check::ok(
            NAME,
            format!(
                "{h}{}",
                s.hostname_provider
                    .as_deref()
                    .map(|p| format!(" (from {p})"))
                    .unwrap_or_default()
            ),
        ),
        None => {
            let fix = if on_ec2 {
                "on EC2 the agent reads the instance id from instance metadata: use the host network (the default), or set the IMDS hop limit to 2, or pass --agent-env DD_HOSTNAME=<name>"
            } else {
                "pass --agent-env DD_HOSTNAME=<name>"
            };
            Check::fail(NAME, "the agent has no hostname", fix)
        }
    }
}

fn host_tags(s: &AgentStatus, wanted: &[String]) -> Check {
    const NAME: &str = "host tags";
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|t| !s.host_tags.contains(t))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Check::ok(NAME, format!("all {} tags present", wanted.len()))
    } else {
        Check::fail(
            NAME,
            format!("missing or stale: {}", missing.join(" ")),
            "run `ddsky up` to give the agent this job's tags",
        )
    }
}

/// A starting agent may answer `status` before its APM and DogStatsD listeners are bound (on a busy
/// host the order is not fixed): ports not bound yet then warn; log collection off never waits.
fn logs_and_ports(s: &AgentStatus, p: &PortFacts, starting: bool) -> Check {
    const NAME: &str = "logs and ports";
    let mut problems = Vec::new();
    let mut fine = Vec::new();
    let mut logs_off = false;
    match s.logs_enabled {
        Some(true) => fine.push("logs enabled".to_owned()),
        Some(false) | None => {
            logs_off = true;
            problems.push("log collection is off".to_owned())
        }
    }
    for (what, how, port, result) in [
        ("APM", "answers on 127.0.0.1:", p.apm_port, &p.apm),
        (
            "DogStatsD",
            "is bound on port ",
            p.dogstatsd_port,
            &p.dogstatsd,
        ),
    ] {
        match result {
            Some(Ok(())) => fine.push(format!("{what} {how}{port}")),
            Some(Err(e)) => problems.push(format!("{what} on port {port}: {e}")),
            None => {}
        }
    }
    let fix = "`ddsky up` recreates the agent with logs, APM and DogStatsD on (check --apm-port / --dogstatsd-port)";
    if problems.is_empty() {
        Check::ok(NAME, fine.join(", "))
    } else if starting && !logs_off {
        Check {
            verdict: Verdict::Warn,
            fix: Some(format!("the agent is still starting; if it stays: {fix}")),
            ..Check::fail(NAME, problems.join("; "), fix)
        }
    } else {
        Check::fail(NAME, problems.join("; "), fix)
    }
}

fn expected(report: &DiscoveryReport, tags: &BTreeMap<String, Vec<String>>) -> Check {
    const NAME: &str = "expected containers";
    if report.expected.is_empty() {
        return Check::ok(NAME, "none expected");
    }
    let mut lines = Vec::new();
    for m in report.expected.iter().flat_map(|e| e.matches.iter()) {
        let t = tags.get(&m.id).map(|t| t.join(" ")).unwrap_or_default();
        let state = discovery::discovered_word(m.discovered);
        lines.push(format!(
            "{} ({}) {state}{}",
            m.name,
            short_id(&m.id),
            if t.is_empty() {
                String::new()
            } else {
                format!(", tags: {t}")
            }
        ));
    }
    let unmatched: Vec<&str> = report.unmatched().collect();
    if !unmatched.is_empty() {
        lines.push(format!(
            "no running container matches {}",
            unmatched.join(", ")
        ));
    }
    let evidence = lines.join("; ");
    if report.undiscovered().next().is_some() {
        Check::fail(
            NAME,
            evidence,
            "the agent does not see it: check the docker socket mount and `ddsky logs`",
        )
    } else if !unmatched.is_empty() {
        Check::warn(NAME, evidence, "start the job container, or fix the --expect pattern (id prefix, name or image repository)")
    } else {
        Check::ok(NAME, evidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent_output::{CheckRuns, TransactionCounts};
    use crate::discovery::{evaluate as discover, Pattern};
    use crate::engine::{ContainerState, RunningContainer};
    use crate::spec::{LABEL_MANAGED_BY, MANAGED_BY_VALUE};
    use std::collections::{HashMap, HashSet};

    const JOB: &str = "ab";

    fn agent() -> ContainerInfo {
        ContainerInfo {
            id: "f".repeat(64),
            name: "dd-agent".into(),
            image: "datadog/agent:7".into(),
            image_id: "sha256:1".into(),
            labels: HashMap::from([(LABEL_MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string())]),
            state: ContainerState {
                status: "running".into(),
                running: true,
                restarting: false,
                health: Some("healthy".into()),
                restart_count: 0,
                started_at: None,
                finished_at: None,
                exit_code: None,
                error: None,
                oom_killed: false,
            },
            binds: vec![],
            mounts: REQUIRED_MOUNTS
                .iter()
                .map(|(m, _)| m.to_string())
                .chain(["/etc/passwd".to_string()])
                .collect(),
            pid_mode: Some("host".into()),
            cgroupns_mode: Some("host".into()),
            network_mode: None,
            cmd_port: None,
            log_path: None,
            created: None,
        }
    }

    fn healthy_facts() -> Facts {
        let job = RunningContainer {
            id: JOB.repeat(32),
            name: "job".into(),
            image: "metta:latest".into(),
        };
        let report = discover(
            &Pattern::all(&["metta".into()]),
            std::slice::from_ref(&job),
            &HashSet::from([job.id.clone()]),
            "",
        );
        Facts {
            docker: Ok(DockerFacts {
                host: "unix:///var/run/docker.sock".into(),
                api_version: "1.41".into(),
                server_version: Some("20.10.24".into()),
            }),
            cgroup_v2: true,
            on_ec2: false,
            agent_name: "dd-agent".into(),
            agent: Some(agent()),
            health: Some(Ok(HealthReport {
                healthy: true,
                healthy_components: vec!["forwarder".into()],
                ..Default::default()
            })),
            status: Some(Ok(AgentStatus {
                version: Some("7.99.0".into()),
                hostname: Some("i-0abc".into()),
                hostname_provider: Some("aws".into()),
                host_tags: vec!["env:production".into(), "metta_run_id:r1".into()],
                api_key: ApiKeyState::Valid {
                    ending: "bcdef".into(),
                },
                transactions: TransactionCounts {
                    success: 3,
                    ..Default::default()
                },
                docker_check: Some(CheckRuns {
                    total_runs: 2,
                    total_errors: 0,
                    last_error: None,
                }),
                logs_enabled: Some(true),
                log_sources: None,
            })),
            wanted_tags: vec!["env:production".into(), "metta_run_id:r1".into()],
            ports: PortFacts {
                apm_port: 8126,
                apm: Some(Ok(())),
                dogstatsd_port: 8125,
                dogstatsd: Some(Ok(())),
            },
            expected: Some(Ok((report, BTreeMap::new()))),
            agent_age: Some(Duration::from_secs(3600)),
            port_conflicts: None,
            last_exit: None,
            since_last_exit: None,
            last_lines: vec![],
        }
    }

    fn verdict(checks: &[Check], name: &str) -> Verdict {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}"))
            .verdict
    }

    fn status(f: &mut Facts) -> &mut AgentStatus {
        f.status.as_mut().unwrap().as_mut().unwrap()
    }

    #[test]
    fn a_healthy_setup_passes_every_check() {
        let checks = evaluate(&healthy_facts());
        assert_eq!(checks.len(), 12);
        for c in &checks {
            assert_eq!(c.verdict, Verdict::Ok, "{c:?}");
        }
    }

    const AUTH_TOKEN: &str = "`agent health` failed (exit 255): Error: unable to fetch auth token (please check that the Agent is running, this file is normally generated during the first run of the Agent service.): open /etc/datadog-agent/auth_token: no such file or directory";

    /// The agent's first second: no auth token, every command fails the same way.
    fn not_up_yet_facts(age: u64) -> Facts {
        let mut f = healthy_facts();
        f.agent_age = Some(Duration::from_secs(age));
        f.health = Some(Ok(crate::agent_output::parse_health(
            255,
            "",
            "Error: unable to fetch auth token (please check that the Agent is running, this file is normally generated during the first run of the Agent service.): open /etc/datadog-agent/auth_token: no such file or directory",
        )));
        f.status = Some(Err(AUTH_TOKEN.replace("health", "status")));
        f.expected = Some(Err(AUTH_TOKEN.replace("health", "workload-list")));
        f
    }

    #[test]
    fn in_its_first_seconds_the_agent_is_starting_and_the_reason_is_said_once() {
        let checks = evaluate(&not_up_yet_facts(2));
        let health = checks.iter().find(|c| c.name == "agent health").unwrap();
        assert_eq!(health.verdict, Verdict::Warn, "{health:?}");
        assert!(
            health
                .evidence
                .starts_with("starting: the container started 2s ago"),
            "{health:?}"
        );
        assert!(
            health.evidence.contains("unable to fetch auth token"),
            "{health:?}"
        );
        assert!(
            !checks.iter().any(|c| c.verdict == Verdict::Fail),
            "{checks:#?}"
        );
        let auth_token_lines = checks
            .iter()
            .filter(|c| c.evidence.contains("auth token"))
            .count();
        assert_eq!(auth_token_lines, 1, "{checks:#?}");
        assert_eq!(verdict(&checks, "api key"), Verdict::Skipped);
        assert_eq!(verdict(&checks, "expected containers"), Verdict::Skipped);
        assert!(checks
            .iter()
            .filter(|c| c.verdict == Verdict::Skipped)
            .all(|c| c.evidence.contains("still starting")));
    }

    #[test]
    fn unhealthy_while_starting_warns_with_the_components_never_an_empty_list() {
        let mut f = healthy_facts();
        f.agent_age = Some(Duration::from_secs(8));
        f.health = Some(Ok(HealthReport {
            unhealthy_components: vec!["forwarder".into(), "healthcheck".into()],
            ..Default::default()
        }));
        status(&mut f).api_key = ApiKeyState::Unknown;
        status(&mut f).docker_check = None;
        status(&mut f).transactions = TransactionCounts::default();
        f.expected = Some(Ok((
            discover(
                &Pattern::all(&["metta".into()]),
                &[RunningContainer {
                    id: JOB.repeat(32),
                    name: "job".into(),
                    image: "metta:latest".into(),
                }],
                &HashSet::new(),
                "",
            ),
            BTreeMap::new(),
        )));
        let checks = evaluate(&f);
        let health = checks.iter().find(|c| c.name == "agent health").unwrap();
        assert_eq!(health.verdict, Verdict::Warn);
        assert!(
            health
                .evidence
                .ends_with("unhealthy: forwarder, healthcheck"),
            "{health:?}"
        );
        assert!(
            !checks.iter().any(|c| c.verdict == Verdict::Fail),
            "{checks:#?}"
        );
        assert_eq!(verdict(&checks, "expected containers"), Verdict::Warn);
        let docker = checks.iter().find(|c| c.name == "docker check").unwrap();
        assert!(docker.evidence.contains("not run yet"), "{docker:?}");
    }

    #[test]
    fn failed_first_payloads_of_a_starting_agent_warn_an_invalid_key_still_fails() {
        let mut f = healthy_facts();
        f.agent_age = Some(Duration::from_secs(5));
        f.health = Some(Ok(HealthReport {
            unhealthy_components: vec!["healthcheck".into()],
            ..Default::default()
        }));
        status(&mut f).transactions = TransactionCounts {
            errors: 1,
            ..Default::default()
        };
        status(&mut f).api_key = ApiKeyState::Invalid {
            ending: "bcdef".into(),
            reason: "API Key invalid".into(),
        };
        let checks = evaluate(&f);
        assert_eq!(verdict(&checks, "data accepted"), Verdict::Warn);
        assert_eq!(verdict(&checks, "api key"), Verdict::Fail);
        f.agent_age = Some(Duration::from_secs(600));
        assert_eq!(verdict(&evaluate(&f), "data accepted"), Verdict::Fail);
    }

    #[test]
    fn a_young_agent_past_its_first_ping_with_an_unhealthy_forwarder_fails() {
        let mut f = healthy_facts();
        f.agent_age = Some(Duration::from_secs(20));
        f.health = Some(Ok(HealthReport {
            unhealthy_components: vec!["forwarder".into()],
            ..Default::default()
        }));
        let checks = evaluate(&f);
        let health = checks.iter().find(|c| c.name == "agent health").unwrap();
        assert_eq!(health.verdict, Verdict::Fail);
        assert!(
            health.fix.as_deref().unwrap().contains("API key"),
            "{health:?}"
        );
    }

    #[test]
    fn after_the_first_minute_an_agent_that_does_not_answer_fails() {
        let checks = evaluate(&not_up_yet_facts(300));
        let health = checks.iter().find(|c| c.name == "agent health").unwrap();
        assert_eq!(health.verdict, Verdict::Fail, "{health:?}");
        assert!(health.evidence.contains("not answering yet"), "{health:?}");
        assert_eq!(
            checks
                .iter()
                .filter(|c| c.evidence.contains("auth token"))
                .count(),
            1,
            "{checks:#?}"
        );
    }

    #[test]
    fn taken_ports_fail_naming_the_holder_and_the_way_out() {
        let mut f = healthy_facts();
        f.agent = None;
        f.port_conflicts = Some(vec![Conflict {
            needed: crate::ports::needed(true, 5001, 8126, 8125)[0].clone(),
            holders: vec![crate::ports::Holder {
                pid: Some(812),
                command: Some("agent: /opt/datadog-agent/bin/agent/agent run".into()),
                ..Default::default()
            }],
        }]);
        let checks = evaluate(&f);
        let c = checks.iter().find(|c| c.name == "host ports").unwrap();
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(
            c.evidence.contains("5001/tcp") && c.evidence.contains("process 812"),
            "{c:?}"
        );
        assert!(
            c.fix.as_deref().unwrap().contains("--network bridge"),
            "{c:?}"
        );
        f.port_conflicts = Some(vec![]);
        assert_eq!(verdict(&evaluate(&f), "host ports"), Verdict::Ok);
    }

    #[test]
    fn docker_unreachable_skips_everything_else() {
        let f = Facts {
            docker: Err("cannot reach the Docker daemon".into()),
            ..healthy_facts()
        };
        let checks = evaluate(&f);
        assert_eq!(checks[0].verdict, Verdict::Fail);
        assert!(
            checks[1..].iter().all(|c| c.verdict == Verdict::Skipped),
            "{checks:?}"
        );
    }

    #[test]
    fn an_absent_agent_fails_and_its_checks_are_skipped_not_passed() {
        let f = Facts {
            agent: None,
            health: None,
            status: None,
            expected: None,
            ..healthy_facts()
        };
        let checks = evaluate(&f);
        assert_eq!(verdict(&checks, "agent container"), Verdict::Fail);
        for name in [
            "mounts",
            "agent health",
            "api key",
            "host tags",
            "expected containers",
        ] {
            assert_eq!(verdict(&checks, name), Verdict::Skipped, "{name}");
        }
    }

    #[test]
    fn a_stopped_agent_fails_with_the_fix() {
        let mut f = healthy_facts();
        f.agent.as_mut().unwrap().state.running = false;
        f.agent.as_mut().unwrap().state.status = "exited".into();
        let checks = evaluate(&f);
        let c = checks.iter().find(|c| c.name == "agent container").unwrap();
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.fix.as_deref().unwrap().contains("ddsky up"));
        assert_eq!(verdict(&checks, "api key"), Verdict::Skipped);
    }

    #[test]
    fn a_crash_looping_agent_fails_with_its_last_lines_and_is_not_asked() {
        let mut f = healthy_facts();
        let state = &mut f.agent.as_mut().unwrap().state;
        state.status = "restarting".into();
        state.restarting = true;
        state.restart_count = 4;
        state.health = Some("unhealthy".into());
        f.health = None;
        f.status = None;
        f.since_last_exit = Some(Duration::from_secs(1));
        f.last_exit = Some(LastExit {
            code: Some(1),
            oom_killed: false,
            at: "2026-12-06T20:00:00Z".into(),
        });
        f.last_lines = vec!["Error: no API key configured, exiting".into()];
        let checks = evaluate(&f);
        let c = checks.iter().find(|c| c.name == "agent container").unwrap();
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(
            c.evidence
                .contains("crash loop: restarted 4 times (last exit: exit code 1"),
            "{}",
            c.evidence
        );
        assert_eq!(c.details, f.last_lines);
        let health = checks.iter().find(|c| c.name == "agent health").unwrap();
        assert_eq!(health.verdict, Verdict::Skipped);
        assert!(
            health.evidence.contains("crash loop"),
            "{}",
            health.evidence
        );
    }

    #[test]
    fn an_oom_kill_it_recovered_from_warns_with_the_memory_settings() {
        let mut f = healthy_facts();
        f.agent.as_mut().unwrap().state.restart_count = 1;
        f.since_last_exit = Some(Duration::from_secs(600));
        f.last_exit = Some(LastExit {
            code: Some(137),
            oom_killed: true,
            at: "2026-12-06T20:00:00Z".into(),
        });
        let checks = evaluate(&f);
        let c = checks.iter().find(|c| c.name == "agent container").unwrap();
        assert_eq!(c.verdict, Verdict::Warn);
        assert!(
            c.evidence
                .contains("restarted once (last exit: exit code 137, OOM-killed"),
            "{}",
            c.evidence
        );
        let fix = c.fix.as_deref().unwrap();
        assert!(
            fix.contains("DD_CHECK_RUNNERS") && fix.contains("DD_LOGS_CONFIG_OPEN_FILES_LIMIT"),
            "{fix}"
        );
        assert_eq!(verdict(&checks, "agent health"), Verdict::Ok);
    }

    #[test]
    fn a_missing_socket_mount_is_named() {
        let mut f = healthy_facts();
        f.agent
            .as_mut()
            .unwrap()
            .mounts
            .retain(|m| m != "/var/run/docker.sock");
        let c = evaluate(&f)
            .into_iter()
            .find(|c| c.name == "mounts")
            .unwrap();
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.evidence.contains("/var/run/docker.sock"), "{c:?}");
    }

    #[test]
    fn the_logs_mount_is_looked_for_under_the_agents_data_root() {
        let mut f = healthy_facts();
        let agent = f.agent.as_mut().unwrap();
        agent.labels.insert(
            crate::spec::LABEL_DOCKER_ROOT.into(),
            "/mnt/nvme/docker".into(),
        );
        let mounts_check = |f: &Facts| {
            evaluate(f)
                .into_iter()
                .find(|c| c.name == "mounts")
                .unwrap()
        };
        let c = mounts_check(&f);
        assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
        assert!(c.evidence.contains("/mnt/nvme/docker/containers"), "{c:?}");
        let agent = f.agent.as_mut().unwrap();
        agent.mounts.retain(|m| m != "/var/lib/docker/containers");
        agent.mounts.push("/mnt/nvme/docker/containers".into());
        assert_eq!(mounts_check(&f).verdict, Verdict::Ok);
    }

    #[test]
    fn private_namespaces_fail_on_cgroup_v2() {
        let mut f = healthy_facts();
        f.agent.as_mut().unwrap().cgroupns_mode = Some("private".into());
        assert_eq!(verdict(&evaluate(&f), "namespaces"), Verdict::Fail);
        f.cgroup_v2 = false;
        assert_eq!(verdict(&evaluate(&f), "namespaces"), Verdict::Ok);
        f.agent.as_mut().unwrap().pid_mode = None;
        assert_eq!(verdict(&evaluate(&f), "namespaces"), Verdict::Fail);
    }

    #[test]
    fn an_invalid_key_and_a_refusing_intake_fail() {
        let mut f = healthy_facts();
        status(&mut f).api_key = ApiKeyState::Invalid {
            ending: "bcdef".into(),
            reason: "API Key invalid".into(),
        };
        status(&mut f).transactions = TransactionCounts {
            success: 0,
            errors: 4,
            http_errors: 4,
            http_errors_by_code: BTreeMap::from([("403".into(), 4)]),
            ..Default::default()
        };
        let checks = evaluate(&f);
        assert_eq!(verdict(&checks, "api key"), Verdict::Fail);
        let data = checks.iter().find(|c| c.name == "data accepted").unwrap();
        assert_eq!(data.verdict, Verdict::Fail);
        assert!(
            data.evidence.contains("HTTP 403 x4") && data.fix.as_deref().unwrap().contains("403"),
            "{data:?}"
        );
    }

    #[test]
    fn stale_host_tags_name_the_missing_ones() {
        let mut f = healthy_facts();
        f.wanted_tags.push("metta_run_id:r2".into());
        let c = evaluate(&f)
            .into_iter()
            .find(|c| c.name == "host tags")
            .unwrap();
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(
            c.evidence.contains("metta_run_id:r2")
                && c.fix.as_deref().unwrap().contains("ddsky up")
        );
    }

    #[test]
    fn an_undiscovered_container_fails_and_a_missing_one_warns() {
        let mut f = healthy_facts();
        let job = RunningContainer {
            id: JOB.repeat(32),
            name: "job".into(),
            image: "metta:latest".into(),
        };
        let undiscovered = discover(
            &Pattern::all(&["metta".into()]),
            &[job],
            &HashSet::new(),
            "",
        );
        f.expected = Some(Ok((undiscovered, BTreeMap::new())));
        assert_eq!(verdict(&evaluate(&f), "expected containers"), Verdict::Fail);
        let absent = discover(&Pattern::all(&["metta".into()]), &[], &HashSet::new(), "");
        f.expected = Some(Ok((absent, BTreeMap::new())));
        assert_eq!(verdict(&evaluate(&f), "expected containers"), Verdict::Warn);
    }

    #[test]
    fn docker_check_errors_and_missing_hostname_fail_with_the_ec2_hint() {
        let mut f = healthy_facts();
        status(&mut f).docker_check = Some(CheckRuns {
            total_runs: 3,
            total_errors: 3,
            last_error: Some("No mountPoints were detected".into()),
        });
        status(&mut f).hostname = None;
        f.on_ec2 = true;
        let checks = evaluate(&f);
        assert_eq!(verdict(&checks, "docker check"), Verdict::Fail);
        let h = checks.iter().find(|c| c.name == "hostname").unwrap();
        assert_eq!(h.verdict, Verdict::Fail);
        assert!(h.fix.as_deref().unwrap().contains("hop limit"));
    }

    #[test]
    fn ports_not_bound_yet_while_starting_warn_and_logs_off_still_fails() {
        let mut f = healthy_facts();
        // Before the first health ping: every component unhealthy, `healthcheck` among them.
        f.agent_age = Some(Duration::from_secs(3));
        f.health = Some(Ok(HealthReport {
            unhealthy_components: vec!["healthcheck".into()],
            ..Default::default()
        }));
        f.ports.apm = Some(Err("nothing accepts connections".into()));
        let ports = |f: &Facts| {
            evaluate(f)
                .into_iter()
                .find(|c| c.name == "logs and ports")
                .unwrap()
        };
        let c = ports(&f);
        assert_eq!(c.verdict, Verdict::Warn, "{c:?}");
        assert!(c.evidence.contains("APM"), "{c:?}");
        assert!(c.fix.unwrap().starts_with("the agent is still starting"));
        status(&mut f).logs_enabled = Some(false);
        assert_eq!(ports(&f).verdict, Verdict::Fail);
    }

    #[test]
    fn closed_ports_and_disabled_logs_fail() {
        let mut f = healthy_facts();
        f.ports.apm = Some(Err("nothing accepts connections".into()));
        status(&mut f).logs_enabled = Some(false);
        let c = evaluate(&f)
            .into_iter()
            .find(|c| c.name == "logs and ports")
            .unwrap();
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(
            c.evidence.contains("APM") && c.evidence.contains("log collection is off"),
            "{c:?}"
        );
    }
}
