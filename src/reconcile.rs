//! What `up` must do, given the container that exists (if any) and the spec it wants. Pure.
//!
//! Layer: domain (see `src/layers.rs`): may use the core, the edges and other domain modules; never
//! `cli`, `settings` or `commands`.

use crate::engine::ContainerInfo;
use crate::spec::{LABEL_MANAGED_BY, LABEL_SPEC_HASH, MANAGED_BY_VALUE};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// No container of that name: create and start it.
    Create,
    /// A stale (or, with --replace, foreign) container: stop, remove, create, start.
    Recreate,
    /// Ours and up to date but not running: start it.
    Start,
    /// Ours, up to date and running: nothing to do.
    None,
    /// No API key: do nothing, successfully.
    Skip,
}

impl Action {
    /// The action as a verb for text output.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Recreate => "recreate",
            Action::Start => "start",
            Action::None => "leave as is",
            Action::Skip => "skip",
        }
    }
}

/// Why the existing container is being replaced, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Act(Action, &'static str),
    /// A container of that name that ddsky did not create, and no --replace.
    Foreign {
        image: String,
    },
}

pub fn is_managed(c: &ContainerInfo) -> bool {
    c.labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

/// `image_changed`: with `--pull always`, the pulled image differs from the one the container runs.
pub fn decide(
    existing: Option<&ContainerInfo>,
    wanted_hash: &str,
    replace: bool,
    image_changed: bool,
) -> Decision {
    let Some(c) = existing else {
        return Decision::Act(Action::Create, "no agent container yet");
    };
    if !is_managed(c) {
        return if replace {
            Decision::Act(
                Action::Recreate,
                "replacing a container ddsky did not create (--replace)",
            )
        } else {
            Decision::Foreign {
                image: c.image.clone(),
            }
        };
    }
    if c.labels.get(LABEL_SPEC_HASH).map(String::as_str) != Some(wanted_hash) {
        return Decision::Act(
            Action::Recreate,
            "its settings changed (tags, image, key or flags)",
        );
    }
    if image_changed {
        return Decision::Act(Action::Recreate, "a newer image was pulled");
    }
    if matches!(c.state.status.as_str(), "dead" | "removing") {
        return Decision::Act(Action::Recreate, "the container is dead");
    }
    if c.state.running || c.state.restarting {
        Decision::Act(Action::None, "already running with the same settings")
    } else {
        Decision::Act(Action::Start, "it exists but is stopped")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ContainerState;
    use std::collections::HashMap;

    fn container(managed: bool, hash: &str, status: &str) -> ContainerInfo {
        let mut labels = HashMap::new();
        if managed {
            labels.insert(LABEL_MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string());
            labels.insert(LABEL_SPEC_HASH.to_string(), hash.to_string());
        }
        ContainerInfo {
            id: "id".into(),
            name: "dd-agent".into(),
            image: "datadog/agent:7".into(),
            image_id: "sha256:1".into(),
            labels,
            state: ContainerState {
                status: status.into(),
                running: status == "running",
                restarting: status == "restarting",
                health: None,
                restart_count: 0,
                started_at: None,
                finished_at: None,
                exit_code: None,
                error: None,
                oom_killed: false,
            },
            binds: vec![],
            mounts: vec![],
            pid_mode: None,
            cgroupns_mode: None,
            network_mode: None,
            cmd_port: None,
            log_path: None,
            created: None,
        }
    }

    fn action(d: Decision) -> Action {
        match d {
            Decision::Act(a, _) => a,
            Decision::Foreign { .. } => panic!("unexpected foreign"),
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(action(decide(None, "h", false, false)), Action::Create);
        // (hash label, state, --recreate) of a ddsky container against the wanted hash "h".
        let cases = [
            ("h", "running", false, Action::None),
            ("h", "restarting", false, Action::None),
            ("h", "exited", false, Action::Start),
            ("h", "created", false, Action::Start),
            ("old", "running", false, Action::Recreate),
            ("h", "running", true, Action::Recreate),
            ("h", "dead", false, Action::Recreate),
        ];
        for (hash, state, recreate, expected) in cases {
            let existing = container(true, hash, state);
            assert_eq!(
                action(decide(Some(&existing), "h", false, recreate)),
                expected,
                "{hash} {state} recreate={recreate}"
            );
        }
    }

    #[test]
    fn foreign_containers_are_left_alone_unless_replace() {
        let foreign = container(false, "", "running");
        assert_eq!(
            decide(Some(&foreign), "h", false, false),
            Decision::Foreign {
                image: "datadog/agent:7".into()
            }
        );
        assert_eq!(
            action(decide(Some(&foreign), "h", true, false)),
            Action::Recreate
        );
    }

    #[test]
    fn a_managed_label_with_another_value_is_foreign() {
        let mut c = container(true, "h", "running");
        c.labels
            .insert(LABEL_MANAGED_BY.into(), "someone-else".into());
        assert!(matches!(
            decide(Some(&c), "h", false, false),
            Decision::Foreign { .. }
        ));
    }
}
