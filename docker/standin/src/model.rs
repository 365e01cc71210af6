//! What the agent "knows" at a given instant, derived from the state file: health components,
//! the containers discovered so far, their tags, check run counts.

use crate::imageref::ImageRef;
use crate::state::{AgentState, ContainerRecord};
use std::collections::BTreeMap;

/// The agent's health components (sorted, as `agent health` prints them), the health catalog's
/// own `healthcheck` included.
pub const COMPONENTS: [&str; 20] = [
    "ad-autoconfig",
    "ad-config-provider-docker",
    "ad-containerlistener",
    "ad-servicelistening",
    "aggregator",
    "collector-queue-15s",
    "dogstatsd-main",
    "forwarder",
    "healthcheck",
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

/// The health catalog's ping period (pkg/status/health: `pingFrequency`).
pub const PING_SECS: f64 = 15.0;

pub const LABEL_AD_TAGS: &str = "com.datadoghq.ad.tags";

#[derive(Debug, PartialEq, Eq)]
pub struct Health {
    pub healthy: Vec<&'static str>,
    pub unhealthy: Vec<&'static str>,
}

/// Every component registers unhealthy (its channel full) and turns healthy at the first ping
/// after it started reading: all of them at the first ping, `unhealthy_secs` after registration
/// (15 s by default). The forwarder reads only once the key validation has ended, and never after
/// a 403.
pub fn health(state: &AgentState, now: f64) -> Health {
    let Some(registered) = state.api_up_at else {
        return Health {
            healthy: vec![],
            unhealthy: COMPONENTS.to_vec(),
        };
    };
    // A test's health gate holds the first ping; it never comes earlier than the real one.
    let Some(released) = state.health_gate.not_before() else {
        return Health {
            healthy: vec![],
            unhealthy: COMPONENTS.to_vec(),
        };
    };
    let first_ping = (registered + state.unhealthy_secs).max(released);
    let pinged_since = |t: f64| now >= next_ping(first_ping, t);
    let (healthy, unhealthy) = COMPONENTS.iter().partition(|c| {
        if **c == "forwarder" {
            state
                .key_check
                .is_some_and(|k| !k.verdict.keeps_forwarder_unhealthy() && pinged_since(k.at))
        } else {
            now >= first_ping
        }
    });
    Health { healthy, unhealthy }
}

/// The first ping at or after `t`, pings being at `first_ping + k * PING_SECS`.
fn next_ping(first_ping: f64, t: f64) -> f64 {
    if t <= first_ping {
        first_ping
    } else {
        first_ping + ((t - first_ping) / PING_SECS).ceil() * PING_SECS
    }
}

/// Running containers the agent has had for at least the discovery delay.
pub fn visible_containers(state: &AgentState, now: f64) -> Vec<&ContainerRecord> {
    state
        .containers
        .iter()
        .filter(|c| c.seen_at + state.discovery_delay_secs <= now)
        .collect()
}

/// Runs of the docker check so far: none without the Docker socket (the check is not scheduled),
/// else one per interval, the first one interval after start
/// (or once a test's check gate has opened, if that is later), then one per interval.
pub fn check_runs(state: &AgentState, now: f64) -> u64 {
    if !state.docker_check || state.check_interval_secs <= 0.0 {
        return 0;
    }
    match check_first_run(state) {
        Some(first) if now >= first => 1 + ((now - first) / state.check_interval_secs) as u64,
        _ => 0,
    }
}

/// When the docker check first ran (or will): one interval after start, or when the check gate
/// opened if later; `None` while the gate holds it.
pub fn check_first_run(state: &AgentState) -> Option<f64> {
    let released = state.check_gate.not_before()?;
    Some((state.started_at + state.check_interval_secs).max(released))
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

    use crate::state::{KeyCheck, KeyVerdict};

    fn state() -> AgentState {
        AgentState {
            started_at: 100.0,
            api_up_at: Some(101.0),
            unhealthy_secs: 15.0,
            key_check: Some(KeyCheck {
                verdict: KeyVerdict::Valid,
                at: 101.2,
            }),
            discovery_delay_secs: 1.0,
            docker_check: true,
            check_interval_secs: 15.0,
            ..Default::default()
        }
    }

    #[test]
    fn everything_is_unhealthy_until_the_first_ping() {
        let s = state();
        for now in [100.0, 101.0, 115.9] {
            let h = health(&s, now);
            assert!(h.healthy.is_empty(), "{now}");
            assert_eq!(h.unhealthy, COMPONENTS.to_vec());
            assert!(h.unhealthy.contains(&"healthcheck"));
        }
        let before_api = AgentState {
            api_up_at: None,
            ..state()
        };
        assert_eq!(health(&before_api, 500.0).unhealthy.len(), COMPONENTS.len());
        let h = health(&s, 116.0);
        assert!(h.unhealthy.is_empty(), "{h:?}");
        assert_eq!(h.healthy, COMPONENTS.to_vec());
    }

    #[test]
    fn the_forwarder_waits_for_the_validation_and_a_403_keeps_it_unhealthy() {
        let late = AgentState {
            key_check: Some(KeyCheck {
                verdict: KeyVerdict::Valid,
                at: 120.0,
            }),
            ..state()
        };
        assert_eq!(health(&late, 116.0).unhealthy, vec!["forwarder"]);
        assert_eq!(health(&late, 130.9).unhealthy, vec!["forwarder"]);
        assert!(health(&late, 131.0).unhealthy.is_empty());
        let pending = AgentState {
            key_check: None,
            ..state()
        };
        assert_eq!(health(&pending, 500.0).unhealthy, vec!["forwarder"]);
        for (verdict, unhealthy) in [
            (KeyVerdict::Invalid, vec!["forwarder"]),
            (KeyVerdict::UnexpectedCode, vec![]),
            (KeyVerdict::Unreachable, vec![]),
        ] {
            let s = AgentState {
                key_check: Some(KeyCheck { verdict, at: 102.0 }),
                ..state()
            };
            assert_eq!(health(&s, 500.0).unhealthy, unhealthy, "{verdict:?}");
        }
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
        assert_eq!(check_runs(&s, 100.0), 0);
        assert_eq!(check_runs(&s, 114.9), 0);
        assert_eq!(check_runs(&s, 115.0), 1);
        assert_eq!(check_runs(&s, 131.0), 2);
        s.docker_check = false;
        assert_eq!(check_runs(&s, 1000.0), 0);
    }

    #[test]
    fn a_gate_holds_the_first_ping_and_the_first_check_run_never_shortens_them() {
        use crate::gate::GateState;
        let mut s = state();
        s.health_gate = GateState::Closed;
        s.check_gate = GateState::Closed;
        assert_eq!(health(&s, 10_000.0).unhealthy, COMPONENTS.to_vec());
        assert_eq!(check_runs(&s, 10_000.0), 0);
        // Opened early: the real 15 s still hold.
        s.health_gate = GateState::OpenedAt(102.0);
        s.check_gate = GateState::OpenedAt(102.0);
        assert_eq!(health(&s, 115.9).unhealthy, COMPONENTS.to_vec());
        assert!(health(&s, 116.0).unhealthy.is_empty());
        assert_eq!(check_runs(&s, 114.9), 0);
        assert_eq!(check_runs(&s, 115.0), 1);
        // Opened late: the phase ends then, and the forwarder waits for that ping too.
        s.health_gate = GateState::OpenedAt(140.0);
        s.check_gate = GateState::OpenedAt(140.0);
        assert_eq!(health(&s, 139.9).unhealthy, COMPONENTS.to_vec());
        assert!(health(&s, 140.0).unhealthy.is_empty());
        assert_eq!(check_runs(&s, 139.9), 0);
        assert_eq!(check_runs(&s, 140.0), 1);
        assert_eq!(check_runs(&s, 155.0), 2);
        assert_eq!(check_first_run(&s), Some(140.0));
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
