//! The logs agent, as the real one collects container logs with `container_collect_all` and the
//! Docker log directory mounted (see /work/shared/datadog-agent.md, "Logs"):
//! * every container discovery sees through the socket (except `DD_CONTAINER_EXCLUDE`d ones) gets
//!   a file tailer on `<base>/containers/<id>/<id>-json.log` ([`config::LogsConfig::log_path`]),
//!   from its registry offset, else from the beginning of the file (the file launcher forces
//!   `beginning` for container sources); it stays tailed after the container exits, until the file
//!   is gone (checked every `file_scan_period`, 10 s);
//! * each container has its own pipeline: [`decoder`] -> [`sender`] (batches, HTTP, retries);
//! * the auditor writes [`registry`] every second and once more at stop;
//! * stop: one more read per tailer, flush, send, all within `stop_grace_period`.
//!
//! Deviation: when the file cannot be opened the real agent falls back to reading the container's
//! output through the Docker socket; the stand-in logs the same warning and does not collect it.

pub mod config;
pub mod decoder;
pub mod files;
pub mod filesource;
pub mod registry;
pub mod sender;
pub mod tailer;

use crate::config::Config;
use crate::discovery::Shared;
use crate::imageref::ImageRef;
use crate::logline;
use config::LogsConfig;
use registry::Registry;
use sender::{Meta, Sender};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How often new containers are looked for (the real launcher reacts to each new source).
const LAUNCH_EVERY: Duration = Duration::from_secs(1);
/// The auditor's flush period.
const AUDIT_EVERY: Duration = Duration::from_secs(1);
/// The pipeline's input channel (the real `logs_config.message_channel_size`).
const CHANNEL_SIZE: usize = 100;
const SOURCE: &str = "comp/logs/agent/agentimpl/agent.go:245 in stop";
const FACTORY_SOURCE: &str =
    "pkg/logs/launchers/container/tailerfactory/factory.go:95 in MakeTailer";

/// One tailed container.
struct Active {
    path: PathBuf,
    removed: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// The running logs agent.
pub struct Logs {
    cfg: Arc<LogsConfig>,
    stop_tx: watch::Sender<bool>,
    registry: Arc<Mutex<Registry>>,
    active: Arc<Mutex<HashMap<String, Active>>>,
    launcher: Option<JoinHandle<()>>,
    /// The conf.d file sources' launcher ([`files`]).
    files: JoinHandle<()>,
    auditor: JoinHandle<()>,
    /// Bytes read from all files since start (`logsStats` "Bytes Read").
    pub bytes_read: Arc<AtomicU64>,
}

/// The image's s6 step before the agent starts: `/conf.d/**.yaml` copied into
/// /etc/datadog-agent/conf.d ([`filesource::copy_custom_files`]).
pub fn copy_custom_files() {
    for copied in filesource::copy_custom_files(
        std::path::Path::new(filesource::CUSTOM_CONFD),
        std::path::Path::new(filesource::ETC_DIR),
    ) {
        // cp -v's line, as the image's init prints it.
        println!(
            "'{}' -> '{}'",
            copied
                .strip_prefix(filesource::ETC_DIR)
                .map(|r| std::path::Path::new("/").join(r))
                .unwrap_or_else(|_| copied.clone())
                .display(),
            copied.display()
        );
    }
}

/// conf.d read once, as the agent does at its start: every file source declared, refused ones
/// included (they show in `agent status` with their error and read nothing).
fn read_file_sources(confd: &std::path::Path) -> Vec<filesource::FileSource> {
    let mut sources = Vec::new();
    for (name, path) in filesource::read_confd(confd) {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let parsed = filesource::parse_logs_config(&name, &path.display().to_string(), &text);
        for w in &parsed.warnings {
            logline::warn(
                "comp/logs/agent/config/integration_config.go:200 in Validate",
                w,
            );
        }
        sources.extend(parsed.sources);
    }
    sources
}

/// The logs agent's sender, built once: the `{}` probe decides HTTP or "TCP" for the whole run.
async fn make_sender(config: Arc<Config>, cfg: Arc<LogsConfig>) -> Arc<Sender> {
    let mut sender = Sender::new(
        cfg.destination.clone(),
        config.api_key.reveal(),
        cfg.compression,
    );
    if !cfg.force_http && !sender.probe().await {
        sender.http = false;
        logline::warn(
            "comp/logs/agent/config/endpoints_builder.go:80 in BuildEndpoints",
            "You are currently sending Logs to Datadog through TCP (either because logs_config.force_use_tcp or logs_config.socks5_proxy_address is set or the HTTP connectivity test has failed). To benefit from increased reliability and better network performances, we strongly encourage switching over to compressed HTTPS which is now the default protocol.",
        );
    } else {
        logline::info(
            "comp/logs/agent/config/endpoints_builder.go:70 in BuildEndpoints",
            &format!("Sending logs to {} over HTTP", sender.url()),
        );
    }
    Arc::new(sender)
}

/// Starts the logs agent when `DD_LOGS_ENABLED` is set: conf.d's file sources, and every
/// container's output when `container_collect_all` is set too.
pub fn start(config: Arc<Config>, cfg: LogsConfig, shared: Arc<Shared>) -> Option<Logs> {
    if !cfg.enabled {
        return None;
    }
    for w in &cfg.warnings {
        logline::warn(
            "comp/logs/agent/config/config_keys.go:120 in LogsConfigKeys",
            w,
        );
    }
    let registry = Arc::new(Mutex::new(load_registry(&cfg.run_path)));
    let cfg = Arc::new(cfg);
    let (stop_tx, stop_rx) = watch::channel(false);
    let active = Arc::new(Mutex::new(HashMap::new()));
    let bytes_read = Arc::new(AtomicU64::new(0));
    let auditor = tokio::spawn(audit_forever(cfg.run_path.clone(), registry.clone()));
    let sender = Arc::new(tokio::sync::OnceCell::new());
    let make: Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, Arc<Sender>> + Send + Sync> = {
        let (config, cfg) = (config.clone(), cfg.clone());
        Arc::new(move || Box::pin(make_sender(config.clone(), cfg.clone())))
    };
    let started = Instant::now();
    if cfg.confd_poll_requested {
        logline::warn(
            "comp/core/autodiscovery/providers/config_reader.go:140 in ReadConfigFiles",
            "DD_AUTOCONF_CONFIG_FILES_POLL is not supported by the stand-in: conf.d is read once, at start",
        );
    }
    let file_sources = read_file_sources(&cfg.confd_path);
    let files = tokio::spawn(files::run(files::FilesLaunch {
        sources: file_sources,
        sender: sender.clone(),
        make_sender: make.clone(),
        registry: registry.clone(),
        stop: stop_rx.clone(),
        progress_bytes: bytes_read.clone(),
        shared: shared.clone(),
        hostname: config.hostname.clone(),
        dd_service: cfg.dd_service.clone(),
        host_tags: config.host_tags.clone(),
        host_tags_until: (!cfg.expected_tags.is_zero()).then(|| started + cfg.expected_tags),
        batch_wait: cfg.batch_wait,
        scan_period: cfg.file_scan_period,
        close_timeout: cfg.close_timeout,
        open_files_limit: cfg.open_files_limit,
    }));
    let launcher = cfg.container_collect_all.then(|| {
        tokio::spawn(launch_forever(Launch {
            config,
            cfg: cfg.clone(),
            shared,
            registry: registry.clone(),
            active: active.clone(),
            stop: stop_rx,
            bytes_read: bytes_read.clone(),
            started,
            sender,
            make_sender: make,
        }))
    });
    logline::info(
        "comp/logs/agent/agentimpl/agent.go:190 in start",
        "logs-agent started",
    );
    Some(Logs {
        cfg,
        stop_tx,
        registry,
        active,
        launcher,
        files,
        auditor,
        bytes_read,
    })
}

impl Logs {
    /// The clean stop: each tailer reads at most once more, pipelines flush and send, all within
    /// `stop_grace_period`; then the registry is written once more.
    pub async fn stop(self) {
        let _ = self.stop_tx.send(true);
        if let Some(launcher) = self.launcher {
            launcher.abort();
            let _ = launcher.await;
        }
        let mut handles: Vec<JoinHandle<()>> = self
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, a)| a.handle)
            .collect();
        // The file launcher stops its tailers itself (one more read each) and waits for them.
        handles.push(self.files);
        let aborts: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
        let all = futures_util::future::join_all(handles);
        if tokio::time::timeout(self.cfg.stop_grace, all)
            .await
            .is_err()
        {
            logline::warn(
                SOURCE,
                "Timed out when stopping logs-agent, forcing it to stop now: in-flight payloads are dropped",
            );
            for a in aborts {
                a.abort();
            }
        }
        self.auditor.abort();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Err(e) = registry::store(&self.cfg.run_path, &registry) {
            logline::warn(
                "comp/logs/auditor/impl/auditor.go:260 in flushRegistry",
                &format!("Cannot write the registry: {e}"),
            );
        }
        logline::info(SOURCE, "logs-agent stopped");
    }
}

fn load_registry(run_path: &std::path::Path) -> Registry {
    let path = registry::registry_file(run_path);
    match std::fs::read_to_string(&path) {
        Ok(text) => Registry::parse(&text).unwrap_or_else(|e| {
            logline::warn(
                "comp/logs/auditor/impl/auditor.go:210 in recoverRegistry",
                &format!("Could not read {}: {e}", path.display()),
            );
            Registry::default()
        }),
        Err(_) => Registry::default(),
    }
}

async fn audit_forever(run_path: PathBuf, registry: Arc<Mutex<Registry>>) {
    let mut failing = false;
    loop {
        tokio::time::sleep(AUDIT_EVERY).await;
        let snapshot = registry.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match registry::store(&run_path, &snapshot) {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                logline::warn(
                    "comp/logs/auditor/impl/auditor.go:260 in flushRegistry",
                    &format!("Cannot write the registry in {}: {e}", run_path.display()),
                );
            }
            Err(_) => {}
        }
    }
}

struct Launch {
    config: Arc<Config>,
    cfg: Arc<LogsConfig>,
    shared: Arc<Shared>,
    registry: Arc<Mutex<Registry>>,
    active: Arc<Mutex<HashMap<String, Active>>>,
    stop: watch::Receiver<bool>,
    bytes_read: Arc<AtomicU64>,
    started: Instant,
    sender: Arc<tokio::sync::OnceCell<Arc<Sender>>>,
    make_sender:
        Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, Arc<Sender>> + Send + Sync>,
}

async fn launch_forever(l: Launch) {
    let make = l.make_sender.clone();
    let sender = l.sender.get_or_init(|| make()).await.clone();
    let mut seen: HashSet<String> = HashSet::new();
    let mut last_scan = Instant::now();
    loop {
        let containers = l
            .shared
            .inventory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .snapshot();
        for c in containers {
            if c.logs_excluded || !seen.insert(c.id.clone()) {
                continue;
            }
            launch_one(&l, &sender, c).await;
        }
        if last_scan.elapsed() >= l.cfg.file_scan_period {
            last_scan = Instant::now();
            let mut active = l.active.lock().unwrap_or_else(|p| p.into_inner());
            active.retain(|_, a| {
                if a.path.exists() {
                    true
                } else {
                    a.removed.store(true, Ordering::Relaxed);
                    false
                }
            });
            let tailed: HashSet<String> = active.keys().cloned().collect();
            drop(active);
            l.shared.with_log_sources(|sources| {
                sources.retain(|id, _| tailed.contains(id));
            });
        }
        tokio::time::sleep(LAUNCH_EVERY).await;
    }
}

async fn launch_one(l: &Launch, sender: &Arc<Sender>, c: crate::state::ContainerRecord) {
    let path = l.cfg.log_path(&c.id);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            logline::warn(
                FACTORY_SOURCE,
                &format!(
                    "Could not make file tailer for source container_collect_all (falling back to socket): open {}: {}",
                    path.display(),
                    go_error(&e)
                ),
            );
            logline::warn(
                FACTORY_SOURCE,
                &format!("the stand-in does not read logs through the socket: container {} is not collected", c.id),
            );
            return;
        }
    };
    let identifier = registry::identifier(&path);
    let start = resume_offset(
        &l.registry.lock().unwrap_or_else(|p| p.into_inner()),
        &identifier,
    );
    let short = ImageRef::parse(&c.image)
        .map(|i| i.short)
        .unwrap_or_else(|| c.image.clone());
    let meta = Meta {
        hostname: l.config.hostname.clone(),
        service: c
            .labels
            .get("com.datadoghq.tags.service")
            .cloned()
            .unwrap_or_else(|| short.clone()),
        source: short,
        tags: crate::model::container_tags(&c, &l.config.labels_as_tags),
        host_tags: l.config.host_tags.clone(),
        host_tags_until: (!l.cfg.expected_tags.is_zero()).then(|| l.started + l.cfg.expected_tags),
    };
    logline::info(
        "pkg/logs/tailers/file/tailer.go:260 in Start",
        &format!("Start tailing file: {} from offset {start}", path.display()),
    );
    let (tx, rx) = mpsc::channel(CHANNEL_SIZE);
    let removed = Arc::new(AtomicBool::new(false));
    let tail = tokio::spawn(tailer::tail(
        file,
        start,
        tx,
        l.stop.clone(),
        removed.clone(),
        l.bytes_read.clone(),
    ));
    let pipeline = tokio::spawn(sender::run_pipeline(
        rx,
        sender.clone(),
        meta,
        sender::Audit::new(identifier, registry::TAILING_MODE),
        l.registry.clone(),
        l.cfg.batch_wait,
    ));
    let handle = tokio::spawn(async move {
        // Aborting this task (past the grace period) must also end the two it waits for.
        struct AbortOnDrop(Vec<tokio::task::AbortHandle>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                for h in &self.0 {
                    h.abort();
                }
            }
        }
        let _guard = AbortOnDrop(vec![tail.abort_handle(), pipeline.abort_handle()]);
        let _ = tail.await;
        let _ = pipeline.await;
    });
    l.shared.with_log_sources(|sources| {
        sources.insert(c.id.clone(), path.display().to_string());
    });
    l.active.lock().unwrap_or_else(|p| p.into_inner()).insert(
        c.id.clone(),
        Active {
            path,
            removed,
            handle,
        },
    );
}

/// Where a container's file is tailed from: the registry's offset (what was sent before a restart,
/// an OOM kill included: at most the last second is sent again), else the beginning.
fn resume_offset(registry: &Registry, identifier: &str) -> u64 {
    registry.offset(identifier).unwrap_or(0)
}

/// Go's wording of the usual open errors.
fn go_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// s6-overlay's end of the story: `S6_SERVICES_GRACETIME` after SIGTERM the agent is SIGKILLed.
/// The stand-in prints what s6 prints and exits at once (no flush, no registry write).
pub fn arm_s6_kill(grace: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(grace);
        let msg = b"AGENT EXITED WITH CODE 256, SIGNAL 9\n";
        // SAFETY: writing a static buffer to fd 1, then ending the process without unwinding
        // (as SIGKILL would: no destructors, no flush).
        unsafe {
            libc::write(1, msg.as_ptr().cast(), msg.len());
            libc::_exit(137);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A restarted agent reads the registry its killed self last wrote and tails each file from
    /// there: the lines sent before are not sent again, the rest all are; a file it has no entry
    /// for is read from its beginning.
    #[tokio::test]
    async fn a_restart_resumes_each_file_from_the_registry_and_a_new_one_from_the_beginning() {
        let dir = std::env::temp_dir().join(format!("standin-resume-{}", std::process::id()));
        let run_path = dir.join("run");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c-json.log");
        let line = |i: usize| {
            format!(
                "{}\n",
                serde_json::json!({"log": format!("line {i}\n"), "stream": "stdout"})
            )
        };
        let mut f = std::fs::File::create(&path).unwrap();
        let mut sent_up_to = 0;
        for i in 1..=10 {
            f.write_all(line(i).as_bytes()).unwrap();
            if i == 4 {
                sent_up_to = f.metadata().unwrap().len();
            }
        }
        drop(f);
        let id = registry::identifier(&path);
        let mut before = Registry::default();
        before.acknowledge(&id, sent_up_to, 1, 1, registry::TAILING_MODE);
        registry::store(&run_path, &before).unwrap();

        // The new process starts from the file on disk.
        let after = load_registry(&run_path);
        assert_eq!(resume_offset(&after, &id), sent_up_to);
        assert_eq!(resume_offset(&after, "file:/elsewhere/new-json.log"), 0);

        let tailed = |start: u64| {
            let path = path.clone();
            async move {
                let (stop_tx, stop_rx) = watch::channel(false);
                let (tx, mut rx) = mpsc::channel(100);
                let file = tokio::fs::File::open(&path).await.unwrap();
                let tail = tokio::spawn(tailer::tail(
                    file,
                    start,
                    tx,
                    stop_rx,
                    Arc::new(AtomicBool::new(false)),
                    Arc::new(AtomicU64::new(0)),
                ));
                let mut got = Vec::new();
                while got.len() < 10 {
                    match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
                        Ok(Some(m)) => got.push(m.content),
                        _ => break,
                    }
                }
                let _ = stop_tx.send(true);
                let _ = tail.await;
                got
            }
        };
        let resumed = tailed(resume_offset(&after, &id)).await;
        let want: Vec<String> = (5..=10).map(|i| format!("line {i}")).collect();
        assert_eq!(resumed, want);
        let fresh = tailed(resume_offset(&Registry::default(), &id)).await;
        assert_eq!(fresh.len(), 10);
        assert_eq!(fresh[0], "line 1");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
