//! What the agent "knows" at a given instant, derived from the state file: health components,
//! the containers discovered so far, their tags, check run counts.

use crate::imageref::ImageRef;
use crate::state::{AgentState, ContainerRecord};
use std::collections::BTreeMap;

/// The agent's health components (sorted, as `agent health` prints them).
pub const COMPONENTS: [&str; 19] = [
    "ad-autoconfig",
    "ad-config-provider-docker",
    "ad-containerlistener",
    "ad-servicelistening",
    "aggregator",
    "collector-queue-15s",
    "dogstatsd-main",
    "forwarder",
    "healthprobe-http-handler",
    "logs-agent",
    "metadata-agent_checks",
    "metadata-host",
    "metadata-inventories",
    "metadata-resources",
    "tagger-docker",
    "tagger-store",
    "workloadmeta-docker",
    "workloadmeta-puller",
    "workloadmeta-store",
];

/// Components still unhealthy while the agent warms up.
pub const WARMUP_UNHEALTHY: [&str; 4] = [
    "ad-containerlistener",
    "aggregator",
    "collector-queue-15s",
    "forwarder",
];

/// How often the docker check runs.
pub const CHECK_INTERVAL_SECS: f64 = 15.0;

pub const LABEL_AD_TAGS: &str = "com.datadoghq.ad.tags";

#[derive(Debug, PartialEq, Eq)]
pub struct Health {
    pub healthy: Vec<&'static str>,
    pub unhealthy: Vec<&'static str>,
}

pub fn health(state: &AgentState, now: f64) -> Health {
    let warming_up = now - state.started_at < state.unhealthy_secs;
    let (unhealthy, healthy) = COMPONENTS.iter().partition(|c| {
        (warming_up && WARMUP_UNHEALTHY.contains(c)) || (**c == "forwarder" && !state.api_key_valid)
    });
    Health { healthy, unhealthy }
}

/// Running containers the agent has had for at least the discovery delay.
pub fn visible_containers(state: &AgentState, now: f64) -> Vec<&ContainerRecord> {
    state
        .containers
        .iter()
        .filter(|c| c.seen_at + state.discovery_delay_secs <= now)
        .collect()
}

/// Runs of the docker check so far (the first one right at start).
pub fn check_runs(state: &AgentState, now: f64) -> u64 {
    1 + ((now - state.started_at).max(0.0) / CHECK_INTERVAL_SECS) as u64
}

/// The tags the tagger's `workloadmeta-container` source gives a container: the automatic
/// container tags, unified service tagging labels, `com.datadoghq.ad.tags` and
/// `DD_CONTAINER_LABELS_AS_TAGS`. Sorted and de-duplicated.
pub fn container_tags(
    c: &ContainerRecord,
    labels_as_tags: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut tags = vec![
        format!("container_id:{}", c.id),
        format!("container_name:{}", c.name),
    ];
    if let Some(image) = ImageRef::parse(&c.image) {
        tags.push(format!("docker_image:{}", image.docker_image()));
        tags.push(format!("image_name:{}", image.name));
        tags.push(format!("image_tag:{}", image.tag));
        tags.push(format!("short_image:{}", image.short));
    }
    if !c.image_id.is_empty() {
        tags.push(format!("image_id:{}", c.image_id));
    }
    for key in ["env", "service", "version"] {
        if let Some(v) = c.labels.get(&format!("com.datadoghq.tags.{key}")) {
            tags.push(format!("{key}:{v}"));
        }
    }
    if let Some(raw) = c.labels.get(LABEL_AD_TAGS) {
        if let Ok(list) = serde_json::from_str::<Vec<String>>(raw) {
            tags.extend(list.into_iter().filter(|t| !t.is_empty()));
        }
    }
    for (label, value) in &c.labels {
        if let Some(key) = labels_as_tags.get(&label.to_lowercase()) {
            tags.push(format!("{key}:{value}"));
        }
    }
    tags.sort();
    tags.dedup();
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AgentState {
        AgentState {
            started_at: 100.0,
            unhealthy_secs: 2.0,
            api_key_valid: true,
            discovery_delay_secs: 1.0,
            ..Default::default()
        }
    }

    #[test]
    fn warms_up_then_passes() {
        let s = state();
        let h = health(&s, 101.0);
        assert_eq!(h.unhealthy, WARMUP_UNHEALTHY.to_vec());
        assert_eq!(h.healthy.len(), COMPONENTS.len() - WARMUP_UNHEALTHY.len());
        let h = health(&s, 102.0);
        assert!(h.unhealthy.is_empty());
        assert_eq!(h.healthy, COMPONENTS.to_vec());
    }

    #[test]
    fn invalid_key_keeps_forwarder_unhealthy() {
        let s = AgentState {
            api_key_valid: false,
            ..state()
        };
        assert_eq!(health(&s, 500.0).unhealthy, vec!["forwarder"]);
    }

    #[test]
    fn discovery_delay_and_check_runs() {
        let mut s = state();
        s.containers = vec![
            ContainerRecord {
                id: "old".into(),
                seen_at: 100.0,
                ..Default::default()
            },
            ContainerRecord {
                id: "new".into(),
                seen_at: 100.5,
                ..Default::default()
            },
        ];
        let ids = |now| {
            visible_containers(&s, now)
                .iter()
                .map(|c| c.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(101.2), vec!["old"]);
        assert_eq!(ids(101.5), vec!["old", "new"]);
        assert_eq!(check_runs(&s, 100.0), 1);
        assert_eq!(check_runs(&s, 131.0), 3);
    }

    #[test]
    fn container_tags_are_sorted_and_complete() {
        let c = ContainerRecord {
            id: "abc".into(),
            name: "job-1".into(),
            image: "ddsky-test/metta:latest".into(),
            image_id: "sha256:ff".into(),
            labels: BTreeMap::from([
                (
                    LABEL_AD_TAGS.to_string(),
                    r#"["team:ml","k:v"]"#.to_string(),
                ),
                (
                    "com.datadoghq.tags.service".to_string(),
                    "trainer".to_string(),
                ),
                ("Run-Id".to_string(), "7".to_string()),
            ]),
            ..Default::default()
        };
        let map = BTreeMap::from([("run-id".to_string(), "run_id".to_string())]);
        assert_eq!(
            container_tags(&c, &map),
            vec![
                "container_id:abc",
                "container_name:job-1",
                "docker_image:ddsky-test/metta:latest",
                "image_id:sha256:ff",
                "image_name:ddsky-test/metta",
                "image_tag:latest",
                "k:v",
                "run_id:7",
                "service:trainer",
                "short_image:metta",
                "team:ml",
            ]
        );
    }
}
