//! The file launcher (pkg/logs/launchers/file/launcher.go, 7.6x-7.7x) for the `type: file`
//! sources conf.d declared at start ([`super::filesource`] has the rules):
//! * when the sources are added (at start), each source's files start at its `start_position`
//!   (unset: the END), a registry offset winning over beginning/end;
//! * every `file_scan_period` (10 s) the scan lists the files again: a file not tailed yet starts
//!   from its registry offset, else from its BEGINNING; a tailed file whose path now names
//!   another inode, or a file shorter than what was read, gets a new tailer from 0 while the old
//!   one reads its old file for `close_timeout` (60 s) without touching the registry; a file no
//!   longer listed is stopped after one more 4 KiB read;
//! * each tailer has its own pipeline into the shared sender: `filename:`/`dirname:` tags, the
//!   source's `sourcecategory:` and `tags`, service/source from the source (service else
//!   `DD_SERVICE`), status `info`; the registry key is `file:<path>`, its `TailingMode` the
//!   source's `start_position` as written.

use super::filesource::{self, FileSource, Start, StartPosition};
use super::registry::Registry;
use super::sender::{self, Audit, Meta, Sender};
use super::tailer::{self, Progress};
use crate::discovery::Shared;
use crate::logline;
use crate::state::FileSourceStatus;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, OnceCell};
use tokio::task::JoinSet;

const LAUNCHER: &str = "pkg/logs/launchers/file/launcher.go:297 in startNewTailer";
const PROVIDER: &str = "pkg/logs/launchers/file/provider/file_provider.go:190 in FilesToTail";
const CHANNEL_SIZE: usize = 100;

/// Everything the file launcher needs.
pub struct FilesLaunch {
    pub sources: Vec<FileSource>,
    pub sender: Arc<OnceCell<Arc<Sender>>>,
    pub make_sender:
        Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, Arc<Sender>> + Send + Sync>,
    pub registry: Arc<Mutex<Registry>>,
    pub stop: watch::Receiver<bool>,
    pub progress_bytes: Arc<std::sync::atomic::AtomicU64>,
    pub shared: Arc<Shared>,
    pub hostname: String,
    pub dd_service: Option<String>,
    pub host_tags: Vec<String>,
    pub host_tags_until: Option<Instant>,
    pub batch_wait: Duration,
    pub scan_period: Duration,
    pub close_timeout: Duration,
    pub open_files_limit: usize,
}

/// One running tailer.
struct Tailed {
    source: usize,
    stop_tx: Arc<watch::Sender<bool>>,
    progress: Progress,
    /// (device, inode) of the file it opened.
    opened: (u64, u64),
    rotated: Arc<AtomicBool>,
}

struct Launcher {
    l: FilesLaunch,
    sender: Arc<Sender>,
    statuses: Vec<FileSourceStatus>,
    tailers: BTreeMap<String, Tailed>,
    tasks: JoinSet<()>,
    /// Old tailers of rotated files, still reading for `close_timeout`.
    rotated: Vec<Arc<watch::Sender<bool>>>,
}

/// Runs the file launcher until the logs agent stops; then stops every tailer (one more read
/// each) and waits for their pipelines to flush. Aborting it aborts them all.
pub async fn run(l: FilesLaunch) {
    let mut stop = l.stop.clone();
    let make = l.make_sender.clone();
    let sender = l.sender.get_or_init(|| make()).await.clone();
    let statuses = l
        .sources
        .iter()
        .map(|s| FileSourceStatus {
            name: s.name.clone(),
            path: s.path.clone(),
            service: s.service.clone(),
            source: s.source.clone(),
            tailing_mode: s.tailing_mode.clone(),
            status: match &s.error {
                Some(e) => format!("Error: {e}"),
                None => "Pending".into(),
            },
            inputs: Vec::new(),
            messages: Vec::new(),
        })
        .collect();
    let mut launcher = Launcher {
        l,
        sender,
        statuses,
        tailers: BTreeMap::new(),
        tasks: JoinSet::new(),
        rotated: Vec::new(),
    };
    for i in 0..launcher.l.sources.len() {
        if launcher.l.sources[i].error.is_none() {
            launcher.add_source(i);
        }
    }
    launcher.publish();
    let period = launcher.l.scan_period;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first_scan = true;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                launcher.scan(first_scan);
                first_scan = false;
                launcher.publish();
            }
            _ = stop.wait_for(|s| *s) => break,
        }
        // Finished tasks (stopped tailers) are reaped as they end.
        while launcher.tasks.try_join_next().is_some() {}
    }
    for t in launcher.tailers.values() {
        let _ = t.stop_tx.send(true);
    }
    for s in &launcher.rotated {
        let _ = s.send(true);
    }
    while launcher.tasks.join_next().await.is_some() {}
}

impl Launcher {
    fn publish(&self) {
        let statuses = self.statuses.clone();
        self.l.shared.with_file_sources(|s| *s = statuses);
    }

    fn set_error(&mut self, source: usize, e: &str) {
        self.statuses[source].status = format!("Error: {e}");
    }

    /// `addSource` -> `launchTailers`: the files matching now start at the source's position.
    fn add_source(&mut self, i: usize) {
        if self.tailers.len() >= self.l.open_files_limit {
            return;
        }
        let files = match filesource::collect_files(&self.l.sources[i]) {
            Ok(f) => f,
            Err(e) => {
                self.set_error(i, &e);
                logline::warn(
                    "pkg/logs/launchers/file/launcher.go:260 in launchTailers",
                    &format!("Could not collect files: {e}"),
                );
                return;
            }
        };
        let mode = self.l.sources[i].start_position();
        for path in files {
            if self.tailers.len() >= self.l.open_files_limit {
                return;
            }
            if self.tailers.contains_key(&path) {
                continue;
            }
            self.start_new_tailer(&path, i, mode);
        }
    }

    /// `FilesToTail` (greedy, by name): each source in order, up to `open_files_limit` files.
    fn files_to_tail(&mut self, log_errors: bool) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for i in 0..self.l.sources.len() {
            if self.l.sources[i].error.is_some() {
                continue;
            }
            let wildcard = self.l.sources[i].is_wildcard();
            match filesource::collect_files(&self.l.sources[i]) {
                Ok(files) => {
                    let total = files.len();
                    let mut tracked = 0;
                    for f in files {
                        if out.len() >= self.l.open_files_limit {
                            break;
                        }
                        out.push((f, i));
                        tracked += 1;
                    }
                    if wildcard {
                        self.statuses[i].messages = vec![format!(
                            "{tracked} files tailed out of {total} files matching"
                        )];
                    }
                }
                Err(e) => {
                    self.set_error(i, &e);
                    if wildcard {
                        self.statuses[i].messages =
                            vec!["0 files tailed out of 0 files matching".into()];
                    }
                    if log_errors {
                        logline::warn(PROVIDER, &format!("Could not collect files: {e}"));
                    }
                }
            }
        }
        out
    }

    /// `scan`: rotation, stopping, and new files from their registry offset or the beginning.
    fn scan(&mut self, first: bool) {
        let files = self.files_to_tail(first);
        let mut keep = std::collections::HashSet::new();
        for (path, source) in &files {
            let Some(t) = self.tailers.get(path) else {
                continue;
            };
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            let now = (meta.dev(), meta.ino());
            let read = t.progress.read_offset.load(Ordering::Relaxed);
            if filesource::did_rotate(t.opened, now, meta.len(), read) {
                logline::info(
                    "pkg/logs/launchers/file/launcher.go:380 in restartTailerAfterFileRotation",
                    &format!("Log rotation happened to {path}"),
                );
                let old = self.tailers.remove(path).expect("looked up above");
                old.rotated.store(true, Ordering::Relaxed);
                let stop_tx = old.stop_tx.clone();
                let close_timeout = self.l.close_timeout;
                self.rotated.push(stop_tx.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(close_timeout).await;
                    let _ = stop_tx.send(true);
                });
                if !self.start_at(path, *source, Start::At(0)) {
                    continue;
                }
            }
            keep.insert(path.clone());
        }
        let gone: Vec<String> = self
            .tailers
            .keys()
            .filter(|p| !keep.contains(*p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(t) = self.tailers.remove(&path) {
                let _ = t.stop_tx.send(true);
                self.statuses[t.source].inputs.retain(|p| *p != path);
            }
        }
        self.rotated.retain(|s| s.receiver_count() > 0);
        for (path, source) in files {
            if !self.tailers.contains_key(&path) && self.tailers.len() < self.l.open_files_limit {
                self.start_new_tailer(&path, source, StartPosition::Beginning);
            }
        }
    }

    /// `startNewTailer`: the position from the mode and the registry, then the tailer.
    fn start_new_tailer(&mut self, path: &str, source: usize, mode: StartPosition) -> bool {
        let identifier = format!("file:{path}");
        let start = {
            let registry = self.l.registry.lock().unwrap_or_else(|p| p.into_inner());
            filesource::start_at(mode, registry.position(&identifier))
        };
        self.start_at(path, source, start)
    }

    fn start_at(&mut self, path: &str, source: usize, start: Start) -> bool {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                let msg = format!("open {path}: {}", filesource::go_error(&e));
                self.set_error(source, &msg);
                logline::warn(LAUNCHER, &msg);
                return false;
            }
        };
        let Ok(meta) = file.metadata() else {
            return false;
        };
        let (offset, whence) = match start {
            Start::At(o) => (o, 0),
            Start::End => (meta.len(), 2),
        };
        logline::info(
            LAUNCHER,
            &format!(
                "Starting a new tailer for: {path} (offset: {}, whence: {whence}) for tailer key {path}",
                if whence == 2 { 0 } else { offset }
            ),
        );
        let src = &self.l.sources[source];
        let (base, dir) = filesource::base_and_dir(path);
        let mut tags = vec![format!("filename:{base}"), format!("dirname:{dir}")];
        if let Some(c) = &src.sourcecategory {
            tags.push(format!("sourcecategory:{c}"));
        }
        tags.extend(src.tags.iter().cloned());
        let meta_out = Meta {
            hostname: self.l.hostname.clone(),
            service: src
                .service
                .clone()
                .or_else(|| self.l.dd_service.clone())
                .unwrap_or_default(),
            source: src.source.clone().unwrap_or_default(),
            tags,
            host_tags: self.l.host_tags.clone(),
            host_tags_until: self.l.host_tags_until,
        };
        let audit = Audit::new(format!("file:{path}"), &src.tailing_mode);
        let rotated = audit.rotated.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let progress = Progress {
            bytes_read: self.l.progress_bytes.clone(),
            read_offset: Arc::default(),
        };
        let (tx, rx) = mpsc::channel(CHANNEL_SIZE);
        let tail = tailer::tail_with(
            tokio::fs::File::from_std(file),
            offset,
            super::decoder::Decoder::plain(offset),
            tx,
            stop_rx,
            Arc::new(AtomicBool::new(false)),
            progress.clone(),
        );
        let pipeline = sender::run_pipeline(
            rx,
            self.sender.clone(),
            meta_out,
            audit,
            self.l.registry.clone(),
            self.l.batch_wait,
        );
        self.tasks.spawn(async move {
            tokio::join!(tail, pipeline);
        });
        self.tailers.insert(
            path.to_string(),
            Tailed {
                source,
                stop_tx: Arc::new(stop_tx),
                progress,
                opened: (meta.dev(), meta.ino()),
                rotated,
            },
        );
        let status = &mut self.statuses[source];
        status.status = "OK".into();
        if !status.inputs.iter().any(|p| p == path) {
            status.inputs.push(path.to_string());
        }
        true
    }
}
