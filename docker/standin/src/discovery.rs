//! Container discovery through the Docker API on the mounted socket, like the agent's
//! workloadmeta docker collector: the events stream (start/die/destroy) keeps the inventory
//! current, and a full listing every few seconds repairs anything the stream missed.

use crate::config::Config;
use crate::logline;
use crate::state::ContainerRecord;
use crate::timefmt::now;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use bollard::Docker;
use futures_util::{stream, StreamExt};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
const RESYNC_EVERY: Duration = Duration::from_secs(5);
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
const INSPECT_CONCURRENCY: usize = 16;
const MAX_EVENT_FAILURES: u32 = 3;
/// How long a removal is remembered, so that a listing taken before it cannot resurrect it.
const TOMBSTONE_TTL_SECS: f64 = 60.0;
const LOG_SOURCE: &str =
    "comp/core/workloadmeta/collectors/internal/docker/docker.go:212 in handleContainerEvent";

/// The running containers the agent knows of.
#[derive(Default, Debug)]
pub struct Inventory {
    containers: HashMap<String, ContainerRecord>,
    /// id -> when it was removed.
    tombstones: HashMap<String, f64>,
    /// Why the Docker API cannot be used, if it cannot.
    pub docker_error: Option<String>,
}

impl Inventory {
    /// Containers in first-seen order.
    pub fn snapshot(&self) -> Vec<ContainerRecord> {
        let mut all: Vec<ContainerRecord> = self.containers.values().cloned().collect();
        all.sort_by(|a, b| {
            a.seen_at
                .total_cmp(&b.seen_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        all
    }

    /// Records a container seen running at `at`; a known one keeps its first-seen time.
    /// Returns whether it is new.
    pub fn upsert(&mut self, mut record: ContainerRecord, at: f64) -> bool {
        match self.containers.get_mut(&record.id) {
            Some(known) => {
                record.seen_at = known.seen_at;
                *known = record;
                false
            }
            None => {
                record.seen_at = at;
                self.tombstones.remove(&record.id);
                self.containers.insert(record.id.clone(), record);
                true
            }
        }
    }

    pub fn remove(&mut self, id: &str, at: f64) -> Option<ContainerRecord> {
        self.tombstones.insert(id.to_string(), at);
        self.containers.remove(id)
    }

    /// Whether a listing started at `listed_at` may add `id`: unknown, and not removed since.
    pub fn may_add(&self, id: &str, listed_at: f64) -> bool {
        !self.containers.contains_key(id) && self.tombstones.get(id).is_none_or(|&t| t < listed_at)
    }

    /// Drops the containers a listing started at `listed_at` no longer shows (those seen after
    /// the listing started are kept: the listing may predate them). Returns the dropped ones.
    pub fn reconcile(&mut self, running: &HashSet<String>, listed_at: f64) -> Vec<ContainerRecord> {
        let gone: Vec<String> = self
            .containers
            .values()
            .filter(|c| !running.contains(&c.id) && c.seen_at < listed_at)
            .map(|c| c.id.clone())
            .collect();
        self.tombstones
            .retain(|_, t| *t > listed_at - TOMBSTONE_TTL_SECS);
        gone.iter()
            .filter_map(|id| self.remove(id, listed_at))
            .collect()
    }
}

/// The inventory shared with the state writer, and the signal that it changed.
#[derive(Default)]
pub struct Shared {
    pub inventory: Mutex<Inventory>,
    pub changed: Notify,
    /// The logs agent's file sources: container id -> the json log it tails (`logsStats`).
    pub log_sources: Mutex<std::collections::BTreeMap<String, String>>,
    /// The conf.d file sources and what became of them.
    pub file_sources: Mutex<Vec<crate::state::FileSourceStatus>>,
}

impl Shared {
    /// Changes the logs agent's sources, and says the state changed.
    pub fn with_log_sources(
        &self,
        f: impl FnOnce(&mut std::collections::BTreeMap<String, String>),
    ) {
        f(&mut self.log_sources.lock().unwrap_or_else(|p| p.into_inner()));
        self.changed.notify_one();
    }

    /// Changes the file sources' statuses, and says the state changed.
    pub fn with_file_sources(&self, f: impl FnOnce(&mut Vec<crate::state::FileSourceStatus>)) {
        f(&mut self.file_sources.lock().unwrap_or_else(|p| p.into_inner()));
        self.changed.notify_one();
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inventory) -> T) -> T {
        let mut guard = self.inventory.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    fn set_docker_error(&self, error: Option<String>) {
        let changed = self.with(|inv| {
            let changed = inv.docker_error != error;
            inv.docker_error = error;
            changed
        });
        if changed {
            self.changed.notify_one();
        }
    }

    fn added(&self, record: &ContainerRecord) {
        logline::info(
            LOG_SOURCE,
            &format!(
                "new container {} (name: {}, image: {})",
                record.id, record.name, record.image
            ),
        );
        self.changed.notify_one();
    }

    fn removed(&self, record: &ContainerRecord) {
        logline::info(
            LOG_SOURCE,
            &format!("container {} ({}) is gone", record.id, record.name),
        );
        self.changed.notify_one();
    }
}

/// Runs discovery forever: connects (retrying every few seconds while the socket is missing or
/// the daemon unreachable), then follows events and resyncs.
pub async fn run(shared: Arc<Shared>, config: Arc<Config>) {
    let mut warned = false;
    let docker = loop {
        match connect().await {
            Ok(docker) => break docker,
            Err(e) => {
                if !warned {
                    logline::warn(
                        "pkg/logs/launchers/container/launcher.go:98 in Start",
                        &format!("Could not connect to the Docker daemon ({e}). Container logs won't be collected"),
                    );
                    warned = true;
                }
                shared.set_docker_error(Some(format!(
                    "temporary failure in dockerutil, will retry later: {e}"
                )));
                tokio::time::sleep(RESYNC_EVERY).await;
            }
        }
    };
    logline::info(
        "pkg/util/docker/docker_util.go:89 in init",
        &format!(
            "Connected to the Docker daemon (API version {})",
            docker.client_version()
        ),
    );
    shared.set_docker_error(None);
    tokio::join!(
        follow_events(&docker, &shared, &config),
        resync_forever(&docker, &shared, &config)
    );
}

async fn connect() -> Result<Docker, String> {
    if !Path::new(DOCKER_SOCKET).exists() {
        return Err(format!(
            "Docker socket {DOCKER_SOCKET} unavailable: no such file or directory"
        ));
    }
    let docker = Docker::connect_with_socket(DOCKER_SOCKET, 30, bollard::API_DEFAULT_VERSION)
        .map_err(|e| format!("cannot use {DOCKER_SOCKET}: {e}"))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| format!("cannot reach the Docker daemon at {DOCKER_SOCKET}: {e}"))
}

async fn follow_events(docker: &Docker, shared: &Shared, config: &Config) {
    // Replaying from `since` after a reconnection re-delivers a few events; handling is idempotent.
    let mut since = now() as i64 - 1;
    loop {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "event".to_string(),
                ["start", "die", "destroy"].map(String::from).to_vec(),
            ),
        ]);
        let options = EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        };
        let mut events = docker.events(Some(options));
        // An event bollard cannot decode is skipped; a stream that only fails is reopened.
        let mut failures = 0;
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(e) => {
                    failures = 0;
                    e
                }
                Err(e) => {
                    logline::warn(LOG_SOURCE, &format!("docker events stream: {e}"));
                    failures += 1;
                    if failures >= MAX_EVENT_FAILURES {
                        break;
                    }
                    continue;
                }
            };
            if let Some(t) = event.time {
                since = since.max(t);
            }
            let Some(id) = event.actor.and_then(|a| a.id) else {
                continue;
            };
            match event.action.as_deref() {
                Some("start") => {
                    if let Some(record) = inspect(docker, &id, config).await {
                        let new = shared.with(|inv| inv.upsert(record.clone(), now()));
                        if new {
                            shared.added(&record);
                        }
                    }
                }
                Some("die" | "destroy") => {
                    if let Some(record) = shared.with(|inv| inv.remove(&id, now())) {
                        shared.removed(&record);
                    }
                }
                _ => {}
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

async fn resync_forever(docker: &Docker, shared: &Shared, config: &Config) {
    loop {
        resync(docker, shared, config).await;
        tokio::time::sleep(RESYNC_EVERY).await;
    }
}

/// One full listing: adds running containers the events missed, drops vanished ones.
async fn resync(docker: &Docker, shared: &Shared, config: &Config) {
    let listed_at = now();
    let listing = match docker
        .list_containers(Some(ListContainersOptions::default()))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            shared.set_docker_error(Some(format!(
                "temporary failure in dockerutil, will retry later: {e}"
            )));
            return;
        }
    };
    shared.set_docker_error(None);
    let running: HashSet<String> = listing.into_iter().filter_map(|c| c.id).collect();
    let unknown: Vec<String> = shared.with(|inv| {
        running
            .iter()
            .filter(|id| inv.may_add(id, listed_at))
            .cloned()
            .collect()
    });
    let records: Vec<ContainerRecord> = stream::iter(unknown)
        .map(|id| async move { inspect(docker, &id, config).await })
        .buffer_unordered(INSPECT_CONCURRENCY)
        .filter_map(|r| async move { r })
        .collect()
        .await;
    for record in records {
        let new = shared
            .with(|inv| inv.may_add(&record.id, listed_at) && inv.upsert(record.clone(), now()));
        if new {
            shared.added(&record);
        }
    }
    for record in shared.with(|inv| inv.reconcile(&running, listed_at)) {
        shared.removed(&record);
    }
}

/// The record of a running container (None when it is gone or not running).
async fn inspect(docker: &Docker, id: &str, config: &Config) -> Option<ContainerRecord> {
    match docker.inspect_container(id, None).await {
        Ok(details) => record_from_inspect(details, config),
        // Removed between the event (or listing) and now: nothing to record.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => None,
        Err(e) => {
            logline::warn(
                LOG_SOURCE,
                &format!("could not inspect container {id}: {e}"),
            );
            None
        }
    }
}

fn record_from_inspect(
    details: ContainerInspectResponse,
    config: &Config,
) -> Option<ContainerRecord> {
    let state = details.state.unwrap_or_default();
    if state.running != Some(true) {
        return None;
    }
    let cfg = details.config.unwrap_or_default();
    let name = details
        .name
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let image = cfg.image.unwrap_or_default();
    Some(ContainerRecord {
        id: details.id?,
        excluded: config.is_excluded(&name, &image),
        logs_excluded: config.is_excluded_from_logs(&name, &image),
        name,
        image,
        image_id: details.image.unwrap_or_default(),
        labels: cfg.labels.unwrap_or_default().into_iter().collect(),
        pid: state.pid.unwrap_or(0),
        hostname: cfg.hostname.unwrap_or_default(),
        started_at: state.started_at.unwrap_or_default(),
        seen_at: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn upsert_keeps_first_seen_time() {
        let mut inv = Inventory::default();
        assert!(inv.upsert(rec("a"), 10.0));
        assert!(!inv.upsert(rec("a"), 20.0));
        assert_eq!(inv.snapshot()[0].seen_at, 10.0);
    }

    #[test]
    fn a_listing_cannot_resurrect_a_later_removal() {
        let mut inv = Inventory::default();
        inv.upsert(rec("a"), 10.0);
        inv.remove("a", 12.0);
        assert!(!inv.may_add("a", 11.0)); // listing started before the removal
        assert!(inv.may_add("a", 13.0));
        assert!(inv.may_add("b", 11.0));
    }

    #[test]
    fn reconcile_drops_only_what_the_listing_should_have_seen() {
        let mut inv = Inventory::default();
        inv.upsert(rec("old"), 10.0);
        inv.upsert(rec("fresh"), 21.0);
        inv.upsert(rec("kept"), 10.0);
        let running = HashSet::from(["kept".to_string()]);
        let gone = inv.reconcile(&running, 20.0);
        assert_eq!(
            gone.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            vec!["old"]
        );
        let ids: Vec<String> = inv.snapshot().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, vec!["kept", "fresh"]);
    }
}
