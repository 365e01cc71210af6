//! Report: what `up` prints, as text and as the three JSON shapes docs/commands.md calls stable (`up`,
//! `up` skipped, `up --dry-run`). Pure: the values come in, the documents go out.

use crate::discovery::{self, DiscoveryReport};
use crate::key::FoundKey;
use crate::reconcile::Action;
use crate::reference::short_id;
use crate::registry::{self, ImageList};
use serde::Serialize;

/// Where the key came from and its last characters: all any output shows of it.
#[derive(Debug, Serialize)]
pub struct KeySummary {
    pub source: String,
    pub ending: String,
}

impl KeySummary {
    pub fn of(found: &FoundKey) -> Self {
        KeySummary {
            source: found.source.to_string(),
            ending: found.key.ending().to_owned(),
        }
    }
}

/// `up` without monitoring: nothing was created, and why.
#[derive(Debug, Serialize)]
pub struct Skipped<'a> {
    pub action: Action,
    pub name: &'a str,
    pub image: &'a str,
    pub tags: &'a [String],
    pub api_key: Option<KeySummary>,
    pub container: Option<()>,
    pub reasons: &'a [String],
}

impl<'a> Skipped<'a> {
    pub fn new(name: &'a str, image: &'a str, tags: &'a [String], reasons: &'a [String]) -> Self {
        Skipped {
            action: Action::Skip,
            name,
            image,
            tags,
            api_key: None,
            container: None,
            reasons,
        }
    }

    pub fn text(&self) -> String {
        format!(
            "monitoring skipped, nothing created: {}",
            self.reasons.join("; ")
        )
    }
}

/// One reference of the image list, as `--dry-run` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageEntry {
    pub reference: String,
    pub registry: String,
    /// Whether the image is here already; `null` when Docker was not reachable.
    pub present: Option<bool>,
}

impl ImageEntry {
    pub fn list(images: &ImageList, present: &[Option<bool>]) -> Vec<ImageEntry> {
        images
            .entries()
            .iter()
            .zip(present.iter().copied().chain(std::iter::repeat(None)))
            .map(|(r, present)| ImageEntry {
                reference: r.clone(),
                registry: registry::registry_of(r).to_owned(),
                present,
            })
            .collect()
    }

    /// The reference `up` would run: the first present one (unless --pull always), else the first.
    pub fn would_use(entries: &[ImageEntry], pull_always: bool) -> &str {
        entries
            .iter()
            .find(|e| !pull_always && e.present == Some(true))
            .or(entries.first())
            .map_or("", |e| e.reference.as_str())
    }
}

/// `up --dry-run`: what would be done, and the exact container body (key redacted).
#[derive(Debug, Serialize)]
pub struct DryRun<'a> {
    pub action: Action,
    pub reason: String,
    pub name: &'a str,
    /// The reference the agent would run.
    pub image: &'a str,
    /// Every reference `up` tries, in order, and which are present.
    pub images: Vec<ImageEntry>,
    pub tags: &'a [String],
    pub api_key: KeySummary,
    pub container: bollard::models::ContainerCreateBody,
}

impl DryRun<'_> {
    pub fn text(&self) -> String {
        let body = serde_json::to_string_pretty(&self.container).unwrap_or_default();
        let images: Vec<String> = self
            .images
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let here = match e.present {
                    Some(true) => "present",
                    Some(false) => "not present",
                    None => "not checked",
                };
                format!("  {}. {} ({}, {here})", i + 1, e.reference, e.registry)
            })
            .collect();
        format!(
            "dry run: would {action} agent {name} ({reason})\nimage: {image}\nimages, tried in order:\n{images}\ntags: {tags}\napi key: from {source}, ending {ending}\ncontainer:\n{body}",
            action = self.action.verb(),
            name = self.name,
            reason = self.reason,
            image = self.image,
            images = images.join("\n"),
            tags = self.tags.join(" "),
            source = self.api_key.source,
            ending = self.api_key.ending,
        )
    }
}

/// `up` done: the container, its health, and what it discovered.
#[derive(Debug, Serialize)]
pub struct Up<'a> {
    pub action: Action,
    pub name: &'a str,
    pub id: &'a str,
    pub image: &'a str,
    pub tags: &'a [String],
    pub api_key: KeySummary,
    /// `null` with --no-wait.
    pub healthy: Option<bool>,
    #[serde(flatten)]
    pub expected: &'a DiscoveryReport,
}

impl Up<'_> {
    pub fn text(&self) -> String {
        let verb = match self.action {
            Action::Create => "created",
            Action::Recreate => "recreated",
            Action::Start => "started",
            Action::None | Action::Skip => "already up",
        };
        let health = match self.healthy {
            Some(true) => "healthy",
            Some(false) => "not healthy",
            None => "not waiting for health (--no-wait; check with `ddsky status`)",
        };
        let mut lines = vec![
            format!(
                "agent {} {verb} ({}, image {}), {health}",
                self.name,
                short_id(self.id),
                self.image
            ),
            format!("tags: {}", self.tags.join(" ")),
            format!(
                "api key: from {}, ending {}",
                self.api_key.source, self.api_key.ending
            ),
        ];
        for m in self.expected.expected.iter().flat_map(|e| e.matches.iter()) {
            let state = discovery::discovered_word(m.discovered);
            lines.push(format!(
                "container {} ({}, {}) {state}",
                m.name,
                short_id(&m.id),
                m.image
            ));
        }
        for pattern in self.expected.unmatched() {
            lines.push(format!(
                "no running container matches {pattern:?} yet: the agent will discover it when it starts; check with `ddsky status --expect {pattern} --wait 2m`"
            ));
        }
        if !self.expected.matched_are_discovered() {
            let pending: Vec<&str> = self
                .expected
                .undiscovered()
                .map(|m| m.name.as_str())
                .collect();
            lines.push(format!(
                "not discovered in time: {}; see `ddsky status`",
                pending.join(", ")
            ));
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    //! Snapshots of the stable JSON shapes, in tests/fixtures/. A change to one of these files is a
    //! change to a documented interface: `UPDATE_FIXTURES=1 cargo test --bins report` rewrites them.
    use super::*;
    use crate::discovery::{Expectation, MatchedContainer};
    use crate::key::{test_key, KeySource};
    use crate::spec::{self, AgentSettings, NetworkMode};

    /// Compares as JSON values: key order inside maps Docker's types keep in a HashMap is not stable.
    fn assert_snapshot(file: &str, value: &impl Serialize) {
        let version = env!("CARGO_PKG_VERSION");
        let rendered = serde_json::to_string_pretty(value)
            .unwrap()
            .replace(&format!("\"{version}\""), "\"<version>\"");
        let actual: serde_json::Value = serde_json::from_str(&rendered).unwrap();
        let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("UPDATE_FIXTURES").is_some() {
            std::fs::write(&path, rendered + "\n").unwrap();
        }
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (UPDATE_FIXTURES=1 writes it)"));
        let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(actual, expected, "{file} changed: a stable JSON shape");
    }

    fn found() -> FoundKey {
        FoundKey {
            key: test_key("0123456789abcdef0123456789abcdef"),
            source: KeySource::AwsSecretsManager {
                secret_id: "datadog/api-key".into(),
            },
        }
    }

    fn tags() -> Vec<String> {
        [
            "env:production",
            "service:skypilot-worker",
            "metta_run_id:run.1",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn up_json() {
        let tags = tags();
        let expected = DiscoveryReport {
            expected: vec![
                Expectation {
                    pattern: "metta".into(),
                    matches: vec![MatchedContainer {
                        id: "4f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a"
                            .into(),
                        name: "metta-job".into(),
                        image: "metta/train:latest".into(),
                        discovered: true,
                    }],
                    discovered: true,
                },
                Expectation {
                    pattern: "eval".into(),
                    matches: vec![],
                    discovered: false,
                },
            ],
        };
        let up = Up {
            action: Action::Create,
            name: "dd-agent",
            id: "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a4f1c2a9b8d7e6f5a4b3c2d1e0f",
            image: "datadog/agent:7",
            tags: &tags,
            api_key: KeySummary::of(&found()),
            healthy: Some(true),
            expected: &expected,
        };
        assert_snapshot("up.json", &up);
        assert_eq!(
            up.text(),
            "agent dd-agent created (9a8b7c6d5e4f, image datadog/agent:7), healthy\n\
             tags: env:production service:skypilot-worker metta_run_id:run.1\n\
             api key: from aws-secrets-manager:datadog/api-key, ending bcdef\n\
             container metta-job (4f1c2a9b8d7e, metta/train:latest) discovered\n\
             no running container matches \"eval\" yet: the agent will discover it when it starts; check with `ddsky status --expect eval --wait 2m`"
        );
        let no_wait = Up {
            healthy: None,
            action: Action::None,
            expected: &DiscoveryReport::default(),
            ..up
        };
        assert_snapshot("up-no-wait.json", &no_wait);
    }

    #[test]
    fn up_skip_json() {
        let tags = tags();
        let reasons = vec![
            "DD_API_KEY is not set".to_owned(),
            "AWS Secrets Manager: no credentials".to_owned(),
        ];
        let skipped = Skipped::new("dd-agent", "datadog/agent:7", &tags, &reasons);
        assert_snapshot("up-skip.json", &skipped);
        assert_eq!(
            skipped.text(),
            "monitoring skipped, nothing created: DD_API_KEY is not set; AWS Secrets Manager: no credentials"
        );
    }

    #[test]
    fn up_dry_run_json() {
        let tags = tags();
        let found = found();
        let images = registry::default_images(Some("aws"));
        let settings = AgentSettings {
            name: "dd-agent".into(),
            image: images.identity(),
            site: "datadoghq.com".into(),
            network: NetworkMode::Host,
            apm_port: spec::DEFAULT_APM_PORT,
            dogstatsd_port: spec::DEFAULT_DOGSTATSD_PORT,
            tags: tags.clone(),
            env: "production".into(),
            gpus: false,
            dd_url: None,
            extra_env: vec![],
            run_dir: crate::spec::AGENT_RUN_DIR.into(),
            daemon: spec::DaemonAccess::DefaultSocket,
            job_logs: None,
        };
        let entries =
            ImageEntry::list(&images, &[Some(false), Some(true), Some(false), Some(true)]);
        let image = ImageEntry::would_use(&entries, false).to_owned();
        assert_eq!(image, "registry.datadoghq.com/agent:7", "the first present");
        assert_eq!(
            ImageEntry::would_use(&entries, true),
            "public.ecr.aws/datadog/agent:7",
            "--pull always pulls the first"
        );
        let spec = spec::agent_spec(&settings, &found.key).with_image(&image);
        let dry = DryRun {
            action: Action::Create,
            reason: "no agent container yet".into(),
            name: "dd-agent",
            image: &image,
            images: entries,
            tags: &tags,
            api_key: KeySummary::of(&found),
            container: spec.redacted_body(),
        };
        assert_snapshot("up-dry-run.json", &dry);
        let json = serde_json::to_string(&dry).unwrap();
        assert!(!json.contains(found.key.expose()), "the key never shows");
        assert!(dry
            .text()
            .starts_with("dry run: would create agent dd-agent (no agent container yet)\n"));
        assert!(
            dry.text().contains(
                "image: registry.datadoghq.com/agent:7\nimages, tried in order:\n  \
                 1. public.ecr.aws/datadog/agent:7 (public.ecr.aws, not present)\n  \
                 2. registry.datadoghq.com/agent:7 (registry.datadoghq.com, present)\n  \
                 3. gcr.io/datadoghq/agent:7 (gcr.io, not present)\n  \
                 4. docker.io/datadog/agent:7 (docker.io, present)\n"
            ),
            "{}",
            dry.text()
        );
    }
}
