//! `agent` / `agent run`: the long-running stand-in. It validates its configuration, checks the
//! host mounts, opens the APM and DogStatsD ports, follows containers through the Docker API and
//! keeps the state file fresh until SIGTERM/SIGINT. After the start-up phase
//! ([`Config::startup_secs`]) it binds the command API on 127.0.0.1:`DD_CMD_PORT` (exiting when
//! the port is taken, as the real agent does), writes the auth token the CLI needs, registers the
//! health components and starts the forwarder ([`crate::forwarder`]).

use crate::config::{Config, ConfigError};
use crate::discovery::{self, Shared};
use crate::forwarder;
use crate::listeners::{self, Counters};
use crate::logline;
use crate::state::{self, AgentState, ApmStats, DogstatsdStats};
use crate::timefmt::now;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// The state file is rewritten at least this often (the subcommands treat it as stale after 3 s).
const HEARTBEAT: Duration = Duration::from_millis(500);
const HOST_PROC: &str = "/host/proc";
const HOST_CGROUP: &str = "/host/sys/fs/cgroup";
const RUN_SOURCE: &str = "cmd/agent/subcommands/run/command.go:471 in startAgent";
const API_SOURCE: &str = "comp/api/api/apiimpl/server.go:96 in startServers";

/// Runs the daemon; returns only on failure to start (a signal ends the process with 0).
pub fn run() -> i32 {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(ConfigError::NoApiKey) => {
            logline::error(RUN_SOURCE, "no API key configured, exiting");
            eprintln!("Error: no API key configured, exiting");
            return 1;
        }
    };
    // The real agent (7.40+) exits when it cannot determine a hostname, e.g. in a bridged container
    // that cannot reach EC2 instance metadata; STANDIN_NO_HOSTNAME=1 stands for that host.
    let no_hostname = std::env::var("STANDIN_NO_HOSTNAME").is_ok_and(|v| v == "1");
    if no_hostname && std::env::var("DD_HOSTNAME").map_or(true, |h| h.trim().is_empty()) {
        let msg =
            "Error while getting hostname, exiting: unable to reliably determine the host name. \
                   You can define one in the agent config file or in your hosts file";
        logline::error(RUN_SOURCE, msg);
        eprintln!("Error: {msg}");
        return 1;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return 1;
        }
    };
    let code = runtime.block_on(serve(config));
    // Exit without dropping the runtime: open Docker streams must not delay the stop.
    std::process::exit(code)
}

/// Everything that goes into the state file besides the inventory.
struct Fixed {
    config: Arc<Config>,
    started_at: f64,
    mount_errors: Vec<String>,
    apm: ApmStats,
    dogstatsd: DogstatsdStats,
    /// The docker check is scheduled (the socket was there at start).
    docker_check: bool,
    /// When the command API came up.
    api_up_at: Arc<Mutex<Option<f64>>>,
    /// The forwarder's counters and key check, updated by [`forwarder::run`].
    forwarder: Arc<forwarder::Shared>,
}

async fn serve(config: Config) -> i32 {
    let started_at = now();
    let (mut sigterm, mut sigint) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("Error: cannot handle signals: {e}");
            return 1;
        }
    };
    // The image's cont-init step, before the agent starts: /conf.d's yaml files into conf.d.
    crate::logs::copy_custom_files();
    let logs_config = crate::logs::config::LogsConfig::from_env();
    let dir = state::state_dir();
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| {
        state::write_atomic(
            &state::pid_file(&dir),
            std::process::id().to_string().as_bytes(),
        )
    }) {
        logline::error(
            RUN_SOURCE,
            &format!("cannot write to {}: {e}", dir.display()),
        );
        eprintln!("Error: cannot write to {}: {e}", dir.display());
        return 1;
    }

    logline::info(
        RUN_SOURCE,
        &format!("Starting Datadog Agent v{}", crate::VERSION),
    );
    logline::info(
        "pkg/util/hostname/hostname.go:96 in Get",
        &format!("Hostname is: {}", config.hostname),
    );
    logline::info(
        RUN_SOURCE,
        &format!("Host tags: [{}]", config.host_tags.join(" ")),
    );
    for warning in &config.warnings {
        logline::warn("pkg/config/setup/config.go:1820 in LoadDatadog", warning);
    }
    let mount_errors = check_mounts();

    let counters = Arc::new(Counters::default());
    let apm = open_apm(&config, &counters).await;
    let dogstatsd = open_dogstatsd(&config, &counters).await;

    let docker_check = Path::new(discovery::DOCKER_SOCKET).exists();
    if !docker_check {
        logline::info(
            "comp/core/autodiscovery/autodiscoveryimpl/autoconfig.go:497 in LoadAndRun",
            "Docker socket not found: the docker check is not scheduled",
        );
    }

    let config = Arc::new(config);
    let shared = Arc::new(Shared::default());
    tokio::spawn(discovery::run(shared.clone(), config.clone()));
    let fixed = Fixed {
        config: config.clone(),
        started_at,
        mount_errors,
        apm,
        dogstatsd,
        docker_check,
        api_up_at: Arc::new(Mutex::new(None)),
        forwarder: Arc::new(forwarder::Shared::default()),
    };
    let api_up_at = fixed.api_up_at.clone();
    let forwarder_shared = fixed.forwarder.clone();
    tokio::spawn(write_forever(dir.clone(), fixed, shared.clone(), counters));

    // The start-up phase: until the command API is up and the auth token written, every CLI
    // command fails.
    let startup = tokio::time::sleep(Duration::from_secs_f64(config.startup_secs));
    tokio::select! {
        _ = startup => {}
        _ = sigterm.recv() => return terminate(&dir, &logs_config, None).await,
        _ = sigint.recv() => return terminate(&dir, &logs_config, None).await,
    }
    let cmd_api = match std::net::TcpListener::bind(("127.0.0.1", config.cmd_port))
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .and_then(tokio::net::TcpListener::from_std)
    {
        Ok(l) => l,
        Err(e) => {
            let msg = format!(
                "Error while starting api server, exiting: unable to create the api server: listen tcp 127.0.0.1:{}: bind: {}",
                config.cmd_port,
                bind_error_text(&e)
            );
            logline::error(RUN_SOURCE, &msg);
            eprintln!("Error: {msg}");
            stop(&dir);
            return 1;
        }
    };
    logline::info(
        API_SOURCE,
        &format!(
            "Started HTTP server 'CMD API Server' on 127.0.0.1:{}",
            config.cmd_port
        ),
    );
    tokio::spawn(async move {
        // Connections are accepted and closed: the CLI only needs the port to answer.
        while let Ok((conn, _)) = cmd_api.accept().await {
            drop(conn);
        }
    });
    if let Err(e) = write_auth_token() {
        logline::error(
            API_SOURCE,
            &format!(
                "cannot write the auth token {}: {e}",
                state::auth_token_file().display()
            ),
        );
    }
    *api_up_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(now());
    shared.changed.notify_one();
    let notify = shared.clone();
    // The docker check's containers: running, past the discovery delay, not excluded (the
    // agent's own container never reports), and only while the check is scheduled at all.
    let inventory = shared.clone();
    let check_config = config.clone();
    tokio::spawn(forwarder::run(
        config.clone(),
        forwarder_shared,
        move || notify.changed.notify_one(),
        move || {
            if !docker_check {
                return Vec::new();
            }
            let now = now();
            let all = inventory
                .inventory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .snapshot();
            all.into_iter()
                .filter(|c| !c.excluded && c.seen_at + check_config.discovery_delay_secs <= now)
                .map(|c| {
                    let tags = crate::model::container_tags(&c, &check_config.labels_as_tags);
                    (c.id, tags)
                })
                .collect()
        },
    ));
    let logs = crate::logs::start(config.clone(), logs_config.clone(), shared.clone());

    tokio::select! {
        _ = sigterm.recv() => {}
        _ = sigint.recv() => {}
    }
    terminate(&dir, &logs_config, logs).await
}

/// SIGTERM/SIGINT: s6-overlay's kill is armed first (the stop races it), then the logs agent
/// stops cleanly if it can ([`crate::logs::Logs::stop`]), then the rest ([`stop`]).
async fn terminate(
    dir: &Path,
    logs_config: &crate::logs::config::LogsConfig,
    logs: Option<crate::logs::Logs>,
) -> i32 {
    crate::logs::arm_s6_kill(logs_config.s6_grace);
    if let Some(logs) = logs {
        logs.stop().await;
    }
    stop(dir)
}

/// Removes the state and pid files (the auth token stays, as the real agent's does); returns 0.
fn stop(dir: &Path) -> i32 {
    for path in [state::state_file(dir), state::pid_file(dir)] {
        let _ = std::fs::remove_file(path);
    }
    logline::info(RUN_SOURCE, "Agent stopped");
    0
}

/// Go's wording of the usual bind errors.
fn bind_error_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => "address already in use".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

/// Writes a fresh random token, readable by the CLI (kept when it already exists, as the agent
/// keeps its token across restarts).
fn write_auth_token() -> std::io::Result<()> {
    let path = state::auth_token_file();
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut rng = crate::rng::Rng::from_entropy();
    let token: String = (0..4).map(|_| format!("{:016x}", rng.next_u64())).collect();
    state::write_atomic(&path, token.as_bytes())
}

/// Errors the docker check reports when the host's /proc or cgroup tree is not mounted.
fn check_mounts() -> Vec<String> {
    let mut errors = Vec::new();
    if !is_populated_dir(Path::new(HOST_PROC)) {
        errors.push(format!("unable to read {HOST_PROC}: no such file or directory (mount the host's /proc at {HOST_PROC})"));
    }
    if !is_populated_dir(Path::new(HOST_CGROUP)) {
        errors.push(format!(
            "No mountPoints were detected, current cgroup root is: {HOST_CGROUP}"
        ));
    }
    for e in &errors {
        logline::warn(
            "pkg/collector/corechecks/containers/docker/check.go:118 in Configure",
            e,
        );
    }
    errors
}

fn is_populated_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_some())
}

async fn open_apm(config: &Config, counters: &Arc<Counters>) -> ApmStats {
    let mut stats = ApmStats {
        enabled: config.apm_enabled,
        port: config.apm_port,
        ..Default::default()
    };
    if !config.apm_enabled {
        return stats;
    }
    let source = "pkg/trace/api/api.go:241 in Start";
    match listeners::start_apm(config.apm_port, counters.clone()).await {
        Ok(()) => {
            stats.listening = true;
            logline::emit(
                "TRACE",
                logline::Level::Info,
                source,
                &format!("Listening for traces at http://0.0.0.0:{}", config.apm_port),
            );
        }
        Err(e) => {
            let msg = format!("listen tcp 0.0.0.0:{}: {e}", config.apm_port);
            logline::emit(
                "TRACE",
                logline::Level::Warn,
                source,
                &format!("could not start the trace receiver: {msg}"),
            );
            stats.error = Some(msg);
        }
    }
    stats
}

async fn open_dogstatsd(config: &Config, counters: &Arc<Counters>) -> DogstatsdStats {
    let mut stats = DogstatsdStats {
        enabled: config.dogstatsd_enabled,
        port: config.dogstatsd_port,
        ..Default::default()
    };
    if !config.dogstatsd_enabled {
        return stats;
    }
    let source = "comp/dogstatsd/listeners/udp.go:99 in NewUDPListener";
    match listeners::start_dogstatsd(config.dogstatsd_port, counters.clone()).await {
        Ok(()) => {
            stats.listening = true;
            logline::info(
                source,
                &format!(
                    "dogstatsd-udp: 0.0.0.0:{} successfully initialized",
                    config.dogstatsd_port
                ),
            );
        }
        Err(e) => {
            let msg = format!("listen udp 0.0.0.0:{}: {e}", config.dogstatsd_port);
            logline::warn(source, &format!("dogstatsd-udp: can't listen: {msg}"));
            stats.error = Some(msg);
        }
    }
    stats
}

/// Rewrites the state file on every inventory change and at least every [`HEARTBEAT`].
async fn write_forever(dir: PathBuf, fixed: Fixed, shared: Arc<Shared>, counters: Arc<Counters>) {
    let mut failing = false;
    let mut announced_health = false;
    loop {
        let state = snapshot(&fixed, &shared, &counters);
        match state::store(&dir, &state) {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                logline::error(
                    RUN_SOURCE,
                    &format!("cannot write the state file in {}: {e}", dir.display()),
                );
            }
            Err(_) => {}
        }
        let first_ping = state.api_up_at.map(|t| t + state.unhealthy_secs);
        if !announced_health && first_ping.is_some_and(|p| state.heartbeat >= p) {
            announced_health = true;
            let health = crate::model::health(&state, state.heartbeat);
            let source = "comp/core/healthprobe/impl/healthprobe.go:95 in healthHandler";
            if health.unhealthy.is_empty() {
                logline::info(
                    source,
                    &format!(
                        "Agent health: all {} components healthy",
                        health.healthy.len()
                    ),
                );
            } else {
                logline::warn(
                    source,
                    &format!(
                        "Agent health: unhealthy components: {}",
                        health.unhealthy.join(", ")
                    ),
                );
            }
        }
        tokio::select! {
            _ = shared.changed.notified() => {}
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
}

fn snapshot(fixed: &Fixed, shared: &Shared, counters: &Counters) -> AgentState {
    let (containers, docker_error) = {
        let inventory = shared.inventory.lock().unwrap_or_else(|p| p.into_inner());
        (inventory.snapshot(), inventory.docker_error.clone())
    };
    let config = &fixed.config;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let forwarder = fixed
        .forwarder
        .stats
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let key_check = *fixed
        .forwarder
        .key_check
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let api_up_at = *fixed.api_up_at.lock().unwrap_or_else(|p| p.into_inner());
    AgentState {
        version: crate::VERSION.to_string(),
        pid: std::process::id(),
        started_at: fixed.started_at,
        heartbeat: now(),
        hostname: config.hostname.clone(),
        hostname_provider: config.hostname_provider.to_string(),
        host_tags: config.host_tags.clone(),
        env: config.env.clone(),
        site: config.site.clone(),
        api_key_suffix: config.api_key.suffix(),
        api_up_at,
        key_check,
        unhealthy_secs: config.unhealthy_secs,
        discovery_delay_secs: config.discovery_delay_secs,
        docker_check: fixed.docker_check,
        check_interval_secs: config.check_interval_secs,
        logs_enabled: config.logs_enabled,
        log_sources: shared
            .log_sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        file_sources: shared
            .file_sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        apm_enabled: config.apm_enabled,
        process_collection_enabled: config.process_collection_enabled,
        labels_as_tags: config.labels_as_tags.clone(),
        check_errors: fixed
            .mount_errors
            .iter()
            .cloned()
            .chain(docker_error)
            .collect(),
        apm: ApmStats {
            connections: load(&counters.apm_connections),
            requests: load(&counters.apm_requests),
            bytes: load(&counters.apm_bytes),
            ..fixed.apm.clone()
        },
        dogstatsd: DogstatsdStats {
            packets: load(&counters.dsd_packets),
            bytes: load(&counters.dsd_bytes),
            metric_samples: load(&counters.dsd_metric_samples),
            ..fixed.dogstatsd.clone()
        },
        forwarder,
        containers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_worded_as_go_words_it() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let err = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap_err();
        assert_eq!(bind_error_text(&err), "address already in use");
    }

    #[test]
    fn the_auth_token_is_written_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("standin-token-{}", std::process::id()));
        let path = dir.join("auth_token");
        std::env::set_var("DD_AUTH_TOKEN_FILE_PATH", &path);
        write_auth_token().unwrap();
        let token = std::fs::read_to_string(&path).unwrap();
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        write_auth_token().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), token);
        std::env::remove_var("DD_AUTH_TOKEN_FILE_PATH");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
