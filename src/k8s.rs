//! SkyPilot on Kubernetes: the job's identity as the `config.kubernetes.pod_config` block of a task.
//!
//! There the Datadog Agent is a DaemonSet installed by the cluster's admins (Helm chart or Operator),
//! and a workload tags its own pods. This module turns the job's tags and `ddsky env`'s variables into
//! Datadog's documented pod metadata and env, which SkyPilot merges into every pod of the task:
//! - the annotation `ad.datadoghq.com/tags`, a JSON object tag -> value, values kept whole;
//! - the unified service tagging labels `tags.datadoghq.com/env|service|version`, values normalised
//!   to Kubernetes' label rules (each change is a warning: Kubernetes refuses the pod otherwise);
//! - the env: DD_AGENT_HOST from the downward API (`status.hostIP`, the node, where the DaemonSet
//!   listens), the APM and DogStatsD ports, DD_ENV, DD_SERVICE, DD_VERSION.
//!
//! One pod_config serves every pod of the task and is printed where the task is launched, so what
//! differs per pod or exists only at run time (the node rank, SkyPilot's task id, node count and
//! cluster) is left out of it: `ddsky env` inside each pod adds those ([`inside_pod`] decides what
//! it keeps of the pod's own env).
//!
//! Pure.
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

use crate::tags::{JobIdentity, TagSet};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// The pod annotation the agent reads a pod's tags from.
pub const TAGS_ANNOTATION: &str = "ad.datadoghq.com/tags";
/// Kubernetes' limit on a label value.
pub const MAX_LABEL_VALUE_LEN: usize = 63;
/// The variable the pod_config fills from the downward API instead of a value.
const AGENT_HOST_VAR: &str = "DD_AGENT_HOST";
/// `ddsky env`'s variables that only `ddsky env` inside each pod can give (its rank and task id).
const PER_POD_VARS: [&str; 1] = ["DD_TAGS"];
/// Unified service tagging: label `tags.datadoghq.com/<name>` from the variable of the same meaning.
const SERVICE_LABELS: [(&str, &str); 3] = [
    ("env", "DD_ENV"),
    ("service", "DD_SERVICE"),
    ("version", "DD_VERSION"),
];
/// Tags carried by the labels and DD_ENV / DD_SERVICE rather than the annotation (as `ddsky env`
/// leaves them out of DD_TAGS).
const LABELLED_TAGS: [&str; 2] = ["env", "service"];

/// The identity the launching machine may put into a pod_config: what SkyPilot sets only inside a
/// job (task id, rank, node count, cluster) is the launcher's own there, when set at all, never the
/// pods'. Those are left out, with a warning when they were there.
pub fn launch_identity(identity: JobIdentity, warnings: &mut Vec<String>) -> JobIdentity {
    let mut dropped: Vec<&str> = [
        ("skypilot_task_id", identity.task_id.is_some()),
        ("skypilot_node_rank", identity.node_rank.is_some()),
        ("skypilot_num_nodes", identity.num_nodes.is_some()),
    ]
    .into_iter()
    .filter_map(|(tag, set)| set.then_some(tag))
    .collect();
    dropped.extend(identity.cluster.iter().map(|(k, _)| k.as_str()));
    if !dropped.is_empty() {
        warnings.push(format!(
            "{} left out of the pod_config: SkyPilot sets them inside a job, so here they describe the job \
             running `ddsky k8s`, not the pods it launches (`ddsky env` in each pod adds the pod's own)",
            dropped.join(", ")
        ));
    }
    JobIdentity {
        metta_run_id: identity.metta_run_id,
        git_ref: identity.git_ref,
        ..JobIdentity::default()
    }
}

/// The block to put into a task, and what had to change to make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodConfigBlock {
    pub task: TaskConfig,
    pub warnings: Vec<String>,
}

/// `config: {kubernetes: {pod_config: ...}}`, as a SkyPilot task YAML spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskConfig {
    pub config: Config,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    pub kubernetes: KubernetesConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubernetesConfig {
    pub pod_config: PodConfig,
}

/// A partial Pod: SkyPilot merges maps key by key, `env` by name, and a container without a name
/// into the pod's first container (the one that runs the task).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodConfig {
    pub metadata: Metadata,
    pub spec: PodSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Metadata {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodSpec {
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    pub env: Vec<EnvVar>,
}

/// A Kubernetes `EnvVar`: a literal value or one from the downward API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    pub field_ref: FieldRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    pub field_path: String,
}

/// The pod_config for `tags` (the launch identity's, see [`launch_identity`]) and `job_env` (what
/// `ddsky env` prints for them, in its order).
pub fn pod_config(tags: &TagSet, job_env: &[(String, String)]) -> PodConfigBlock {
    let mut warnings = Vec::new();
    let annotations = annotation(tags, &mut warnings)
        .map(|json| BTreeMap::from([(TAGS_ANNOTATION.to_owned(), json)]))
        .unwrap_or_default();
    let value_of = |name: &str| job_env.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let mut labels = BTreeMap::new();
    for (label, var) in SERVICE_LABELS {
        let Some(raw) = value_of(var) else { continue };
        let key = format!("tags.datadoghq.com/{label}");
        let normalized = label_value(raw);
        match &normalized.value {
            Some(value) => {
                if !normalized.changes.is_empty() {
                    warnings.push(format!(
                        "label {key}: {raw:?} became {value:?} ({}); {var} keeps {raw:?}, so the pods' \
                         metrics and logs may say {value:?} where their traces say {raw:?}: choose a value \
                         Kubernetes accepts",
                        join(&normalized.changes)
                    ));
                }
                labels.insert(key, value.clone());
            }
            None => warnings.push(format!(
                "label {key} left out: {raw:?} has no letter or digit Kubernetes accepts in a label value \
                 ({}); {var} still carries it",
                join(&normalized.changes)
            )),
        }
    }
    let env = job_env
        .iter()
        .filter(|(name, _)| !PER_POD_VARS.contains(&name.as_str()))
        .map(|(name, value)| {
            if name == AGENT_HOST_VAR {
                // The node's IP: the DaemonSet's APM and DogStatsD hostPorts listen there.
                EnvVar {
                    name: name.clone(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: FieldRef {
                            field_path: "status.hostIP".into(),
                        },
                    }),
                }
            } else {
                EnvVar {
                    name: name.clone(),
                    value: Some(value.clone()),
                    value_from: None,
                }
            }
        })
        .collect();
    PodConfigBlock {
        task: TaskConfig {
            config: Config {
                kubernetes: KubernetesConfig {
                    pod_config: PodConfig {
                        metadata: Metadata {
                            annotations,
                            labels,
                        },
                        spec: PodSpec {
                            containers: vec![Container { env }],
                        },
                    },
                },
            },
        },
        warnings,
    }
}

/// The annotation's JSON object, tags in their order: every tag but env and service (the labels and
/// DD_ENV / DD_SERVICE carry those), values as Datadog's tag rules left them. None when no tag is left.
fn annotation(tags: &TagSet, warnings: &mut Vec<String>) -> Option<String> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for tag in &tags.tags {
        let Some((key, value)) = tag.split_once(':') else {
            warnings.push(format!(
                "tag {tag:?} has no value; left out of the {TAGS_ANNOTATION} annotation"
            ));
            continue;
        };
        if LABELLED_TAGS.contains(&key) {
            continue;
        }
        if let Some((_, first)) = pairs.iter().find(|(k, _)| *k == key) {
            warnings.push(format!(
                "tag {tag:?} left out of the {TAGS_ANNOTATION} annotation: it holds one value per tag, \
                 and {key} is already {first:?}"
            ));
            continue;
        }
        pairs.push((key, value));
    }
    (!pairs.is_empty()).then(|| {
        serde_json::to_string(&InOrder(&pairs)).expect("a map of strings always serialises")
    })
}

/// A JSON object whose keys stay in the given order (serde_json's own map sorts them).
struct InOrder<'a>(&'a [(&'a str, &'a str)]);

impl Serialize for InOrder<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// One thing Kubernetes' label rules changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelChange {
    IllegalCharacters,
    Truncated,
    Ends,
}

impl fmt::Display for LabelChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LabelChange::IllegalCharacters => {
                "characters other than A-Z, a-z, 0-9 and - _ . became _"
            }
            LabelChange::Truncated => "cut to 63 characters",
            LabelChange::Ends => "a label value begins and ends with a letter or digit",
        })
    }
}

fn join(changes: &[LabelChange]) -> String {
    changes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelValue {
    /// `None` when nothing valid is left (an empty label value is allowed, but tags nothing).
    pub value: Option<String>,
    pub changes: Vec<LabelChange>,
}

/// Kubernetes' rules for a label value: at most 63 characters of `[A-Za-z0-9-_.]`, beginning and
/// ending with `[A-Za-z0-9]`. Other characters become `_` (as in Datadog's tag rules), then the value
/// is cut to 63 characters, then trimmed to letters or digits at both ends.
pub fn label_value(raw: &str) -> LabelValue {
    let mut changes = Vec::new();
    let mut out: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                if !changes.contains(&LabelChange::IllegalCharacters) {
                    changes.push(LabelChange::IllegalCharacters);
                }
                '_'
            }
        })
        .collect();
    // All ASCII now: byte length is character count.
    if out.len() > MAX_LABEL_VALUE_LEN {
        changes.push(LabelChange::Truncated);
        out.truncate(MAX_LABEL_VALUE_LEN);
    }
    let trimmed = out.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.len() != out.len() {
        changes.push(LabelChange::Ends);
    }
    LabelValue {
        value: (!trimmed.is_empty()).then(|| trimmed.to_owned()),
        changes,
    }
}

/// `ddsky env` inside a Kubernetes pod. The pod's env came from the pod_config (`ddsky k8s` at launch):
/// DD_AGENT_HOST is the node's IP from the downward API, and `localhost` would be wrong (the agent is
/// the node's DaemonSet, not in the pod); the ports, DD_ENV, DD_SERVICE and DD_VERSION are what the
/// pods' labels say. So every variable of `vars` the pod already has is kept as the pod has it (a
/// different value of ddsky's is a warning); the per-pod ones (DD_TAGS: rank, task id) are ddsky's;
/// DD_AGENT_HOST missing from the pod is left out, with a warning naming the fix.
pub fn inside_pod(
    vars: Vec<(String, String)>,
    pod_env: impl Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Vec<(String, String)> {
    vars.into_iter()
        .filter_map(|(name, ours)| {
            if PER_POD_VARS.contains(&name.as_str()) {
                return Some((name, ours));
            }
            match pod_env(&name).filter(|v| !v.trim().is_empty()) {
                Some(pod) => {
                    if pod != ours && name != AGENT_HOST_VAR {
                        warnings.push(format!(
                            "{name}={pod:?} of this pod is kept (ddsky's settings here say {ours:?}); \
                             the pod_config printed by `ddsky k8s` at launch sets it"
                        ));
                    }
                    Some((name, pod))
                }
                None if name == AGENT_HOST_VAR => {
                    warnings.push(format!(
                        "{AGENT_HOST_VAR} is not set in this pod, and on Kubernetes the node's agent is not at \
                         localhost: give the task the pod_config of `ddsky k8s` ({AGENT_HOST_VAR} from the \
                         downward API, status.hostIP); {AGENT_HOST_VAR} is left out"
                    ));
                    None
                }
                None => Some((name, ours)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::{self, TagRequest};
    use serde_json::{json, Value};

    fn tags_of(identity: &JobIdentity, extra: &[&str]) -> TagSet {
        tags::build(
            &TagRequest {
                env: "production".into(),
                service: "skypilot-worker".into(),
                extra: extra.iter().map(|s| s.to_string()).collect(),
            },
            identity,
        )
        .unwrap()
    }

    /// What `ddsky env` prints for `tags` (its rule, simplified: the tests pass what they mean).
    fn env_of(tags: &TagSet) -> Vec<(String, String)> {
        let mut vars = vec![
            ("DD_AGENT_HOST".to_owned(), "localhost".to_owned()),
            ("DD_TRACE_AGENT_PORT".to_owned(), "8126".to_owned()),
            ("DD_DOGSTATSD_PORT".to_owned(), "8125".to_owned()),
            (
                "DD_ENV".to_owned(),
                tags.value_of("env").unwrap().to_owned(),
            ),
            (
                "DD_SERVICE".to_owned(),
                tags.value_of("service").unwrap().to_owned(),
            ),
        ];
        if let Some(v) = tags.value_of("git_ref") {
            vars.push(("DD_VERSION".to_owned(), v.to_owned()));
        }
        vars.push(("DD_TAGS".to_owned(), "whatever".to_owned()));
        vars
    }

    fn block(identity: &JobIdentity, extra: &[&str]) -> (Value, Vec<String>) {
        let tags = tags_of(identity, extra);
        let b = pod_config(&tags, &env_of(&tags));
        (serde_json::to_value(&b.task).unwrap(), b.warnings)
    }

    fn pod(v: &Value) -> &Value {
        &v["config"]["kubernetes"]["pod_config"]
    }

    fn annotation_of(v: &Value) -> Value {
        serde_json::from_str(
            pod(v)["metadata"]["annotations"][TAGS_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap()
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn the_whole_block_for_a_metta_run() {
        let identity = JobIdentity {
            metta_run_id: Some("alice.20250829.141502".into()),
            git_ref: Some(SHA.into()),
            ..Default::default()
        };
        let (v, warnings) = block(&identity, &[]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            v,
            json!({"config": {"kubernetes": {"pod_config": {
                "metadata": {
                    "annotations": {TAGS_ANNOTATION: format!(r#"{{"metta_run_id":"alice.20250829.141502","git_ref":"{SHA}"}}"#)},
                    "labels": {
                        "tags.datadoghq.com/env": "production",
                        "tags.datadoghq.com/service": "skypilot-worker",
                        "tags.datadoghq.com/version": SHA,
                    },
                },
                "spec": {"containers": [{"env": [
                    {"name": "DD_AGENT_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                    {"name": "DD_TRACE_AGENT_PORT", "value": "8126"},
                    {"name": "DD_DOGSTATSD_PORT", "value": "8125"},
                    {"name": "DD_ENV", "value": "production"},
                    {"name": "DD_SERVICE", "value": "skypilot-worker"},
                    {"name": "DD_VERSION", "value": SHA},
                ]}]},
            }}}})
        );
    }

    #[test]
    fn missing_sources_leave_their_tag_label_and_variable_out() {
        let (v, warnings) = block(&JobIdentity::default(), &[]);
        assert!(warnings.is_empty(), "{warnings:?}");
        let meta = &pod(&v)["metadata"];
        // Only env and service: nothing for the annotation, no version label, no DD_VERSION.
        assert!(meta.get("annotations").is_none(), "{meta}");
        assert_eq!(
            meta["labels"],
            json!({"tags.datadoghq.com/env": "production", "tags.datadoghq.com/service": "skypilot-worker"})
        );
        let names: Vec<&str> = pod(&v)["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "DD_AGENT_HOST",
                "DD_TRACE_AGENT_PORT",
                "DD_DOGSTATSD_PORT",
                "DD_ENV",
                "DD_SERVICE"
            ]
        );
    }

    #[test]
    fn long_values_are_whole_in_the_annotation_and_cut_in_labels_with_a_warning() {
        let long_ref = "a".repeat(150);
        let identity = JobIdentity {
            metta_run_id: Some(format!("run.{}", "x".repeat(120))),
            git_ref: Some(long_ref.clone()),
            ..Default::default()
        };
        let (v, warnings) = block(&identity, &[]);
        let ann = annotation_of(&v);
        assert_eq!(ann["metta_run_id"], format!("run.{}", "x".repeat(120)));
        assert_eq!(ann["git_ref"], long_ref);
        let version = pod(&v)["metadata"]["labels"]["tags.datadoghq.com/version"]
            .as_str()
            .unwrap();
        assert_eq!(version, "a".repeat(63));
        // DD_VERSION keeps the tag's value: only the label is bound by Kubernetes' rules.
        let env = pod(&v)["spec"]["containers"][0]["env"].as_array().unwrap();
        assert!(env.contains(&json!({"name": "DD_VERSION", "value": long_ref})));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("tags.datadoghq.com/version") && warnings[0].contains("cut to 63")
        );
    }

    #[test]
    fn odd_values_are_kept_in_the_annotation_and_normalised_for_labels() {
        // Datadog's rules first (as for `up`): lowercase, `/` and `:` allowed, unicode letters kept.
        let identity = JobIdentity {
            metta_run_id: Some("Alice/Exp:1 \"quoted\" é".into()),
            ..Default::default()
        };
        let tags = tags_of(&identity, &["team:ml/research", "url:http://x"]);
        let mut vars = env_of(&tags);
        // A service with a `/` and a trailing `.`, an env of only what labels refuse.
        vars.iter_mut().for_each(|(k, v)| match k.as_str() {
            "DD_SERVICE" => *v = "ml/trainer.".into(),
            "DD_ENV" => *v = "prod/é".into(),
            _ => {}
        });
        vars.push(("DD_VERSION".into(), "-v1.2+build.".into()));
        let b = pod_config(&tags, &vars);
        let v = serde_json::to_value(&b.task).unwrap();
        let ann = annotation_of(&v);
        assert_eq!(ann["metta_run_id"], "alice/exp:1__quoted__é");
        assert_eq!(ann["team"], "ml/research");
        assert_eq!(ann["url"], "http://x", "a value keeps its own colons");
        let labels = &pod(&v)["metadata"]["labels"];
        assert_eq!(labels["tags.datadoghq.com/service"], "ml_trainer");
        assert_eq!(labels["tags.datadoghq.com/env"], "prod");
        assert_eq!(labels["tags.datadoghq.com/version"], "v1.2_build");
        // One warning per changed label, naming the label, the before and after, and the rule.
        assert_eq!(b.warnings.len(), 3, "{:?}", b.warnings);
        assert!(b
            .warnings
            .iter()
            .any(|w| w.contains("tags.datadoghq.com/service")
                && w.contains("\"ml/trainer.\"")
                && w.contains("\"ml_trainer\"")
                && w.contains("became _")));
        // The annotation is one JSON string a YAML writer must quote, not a nested map.
        assert!(pod(&v)["metadata"]["annotations"][TAGS_ANNOTATION].is_string());
    }

    #[test]
    fn a_label_value_with_nothing_left_is_left_out_with_a_warning() {
        let tags = tags_of(&JobIdentity::default(), &[]);
        let mut vars = env_of(&tags);
        vars.iter_mut()
            .filter(|(k, _)| k == "DD_ENV")
            .for_each(|(_, v)| *v = "ü".into());
        let b = pod_config(&tags, &vars);
        let v = serde_json::to_value(&b.task).unwrap();
        assert!(pod(&v)["metadata"]["labels"]
            .get("tags.datadoghq.com/env")
            .is_none());
        assert!(b.warnings[0].contains("tags.datadoghq.com/env left out"));
    }

    #[test]
    fn one_value_per_key_in_the_annotation() {
        let (v, warnings) = block(&JobIdentity::default(), &["team:a", "team:b"]);
        assert_eq!(annotation_of(&v), json!({"team": "a"}));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("team:b") && warnings[0].contains("\"a\""));
    }

    #[test]
    fn a_tag_without_value_is_left_out_of_the_annotation() {
        // METTA_RUN_ID=":::" normalises to the bare tag `metta_run_id`.
        let identity = JobIdentity {
            metta_run_id: Some(":::".into()),
            ..Default::default()
        };
        let (v, warnings) = block(&identity, &[]);
        assert!(pod(&v)["metadata"].get("annotations").is_none());
        assert!(warnings.iter().any(|w| w.contains("has no value")));
    }

    #[test]
    fn per_pod_values_are_not_in_the_pod_config() {
        let mut warnings = vec![];
        let identity = launch_identity(
            JobIdentity {
                metta_run_id: Some("r".into()),
                task_id: Some("sky-1".into()),
                node_rank: Some("0".into()),
                num_nodes: Some("2".into()),
                git_ref: Some("g".into()),
                cluster: vec![("cloud".into(), "aws".into())],
            },
            &mut warnings,
        );
        assert_eq!(
            identity,
            JobIdentity {
                metta_run_id: Some("r".into()),
                git_ref: Some("g".into()),
                ..Default::default()
            }
        );
        assert_eq!(warnings.len(), 1);
        for tag in [
            "skypilot_task_id",
            "skypilot_node_rank",
            "skypilot_num_nodes",
            "cloud",
        ] {
            assert!(warnings[0].contains(tag), "{tag}: {warnings:?}");
        }
        // Nothing to leave out: nothing said.
        let mut quiet = vec![];
        launch_identity(JobIdentity::default(), &mut quiet);
        assert!(quiet.is_empty());
        // DD_TAGS (rank, task id) is `ddsky env`'s inside each pod.
        let (v, _) = block(&JobIdentity::default(), &[]);
        let env = pod(&v)["spec"]["containers"][0]["env"].as_array().unwrap();
        assert!(env.iter().all(|e| e["name"] != "DD_TAGS"));
    }

    #[test]
    fn label_rules() {
        let ok = |s: &str| label_value(s).value;
        assert_eq!(ok("production").as_deref(), Some("production"));
        assert_eq!(label_value("a-b_c.D9").changes, vec![]);
        assert_eq!(ok("_x_").as_deref(), Some("x"));
        assert_eq!(ok("a b").as_deref(), Some("a_b"));
        assert_eq!(ok("---"), None);
        assert_eq!(ok(""), None);
        assert_eq!(ok("日本").as_deref(), None);
        // Cut first, then trimmed: the result never ends in what the cut exposed.
        let v = ok(&format!("{}-{}", "a".repeat(62), "b".repeat(10))).unwrap();
        assert_eq!(v, "a".repeat(62));
        let n = label_value(&"é".repeat(100));
        assert_eq!(n.value, None);
        assert!(n.changes.contains(&LabelChange::Truncated));
        for raw in ["x".repeat(200), "ab/cd:ef".into(), " z ".into()] {
            let v = ok(&raw).unwrap();
            assert!(v.len() <= MAX_LABEL_VALUE_LEN);
            assert!(v.chars().next().unwrap().is_ascii_alphanumeric());
            assert!(v.chars().last().unwrap().is_ascii_alphanumeric());
        }
    }

    fn pod_env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn ours() -> Vec<(String, String)> {
        [
            ("DD_AGENT_HOST", "localhost"),
            ("DD_TRACE_AGENT_PORT", "8126"),
            ("DD_ENV", "production"),
            ("DD_TAGS", "skypilot_node_rank:1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec()
    }

    #[test]
    fn inside_a_pod_the_downward_api_host_is_kept_and_per_pod_tags_added() {
        let mut warnings = vec![];
        let vars = inside_pod(
            ours(),
            pod_env(&[
                ("DD_AGENT_HOST", "10.0.3.7"),
                ("DD_TRACE_AGENT_PORT", "8126"),
                ("DD_ENV", "production"),
                ("DD_TAGS", "stale:1"),
            ]),
            &mut warnings,
        );
        let vars: BTreeMap<_, _> = vars.into_iter().collect();
        assert_eq!(vars["DD_AGENT_HOST"], "10.0.3.7");
        assert_eq!(vars["DD_TAGS"], "skypilot_node_rank:1");
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn inside_a_pod_a_different_setting_of_the_pod_wins_with_a_warning() {
        let mut warnings = vec![];
        let vars = inside_pod(
            ours(),
            pod_env(&[
                ("DD_AGENT_HOST", "10.0.3.7"),
                ("DD_TRACE_AGENT_PORT", "9126"),
            ]),
            &mut warnings,
        );
        let vars: BTreeMap<_, _> = vars.into_iter().collect();
        assert_eq!(vars["DD_TRACE_AGENT_PORT"], "9126");
        assert_eq!(vars["DD_ENV"], "production", "unset in the pod: ddsky's");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("DD_TRACE_AGENT_PORT=\"9126\""));
    }

    #[test]
    fn inside_a_pod_without_the_downward_api_host_it_is_left_out_not_localhost() {
        let mut warnings = vec![];
        let vars = inside_pod(ours(), pod_env(&[("DD_AGENT_HOST", " ")]), &mut warnings);
        assert!(vars.iter().all(|(k, _)| k != "DD_AGENT_HOST"));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("ddsky k8s") && warnings[0].contains("status.hostIP"));
    }
}
