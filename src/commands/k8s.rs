//! `ddsky k8s`: run where a SkyPilot task is launched onto Kubernetes, it prints the task's
//! `config.kubernetes.pod_config` giving the pods the job's tags and the node agent's address.

use super::{env, identity, Context, Failure};
use crate::exit;
use crate::k8s;
use crate::output::Format;
use crate::settings::JobSettings;

pub async fn run(ctx: &Context, job: JobSettings) -> Result<u8, Failure> {
    let mut warnings = Vec::new();
    let identity = identity::read(&mut warnings).await;
    let identity = k8s::launch_identity(identity, &mut warnings);
    let tags = identity::tag(&job, &identity, warnings)?;
    let block = k8s::pod_config(&tags, &env::job_env(&job, &tags.tags));
    block.warnings.iter().for_each(|w| tracing::warn!("{w}"));
    crate::output::write_stdout(&render(ctx.format, &block.task));
    Ok(exit::OK)
}

/// YAML (the text form, to paste into a task) or JSON.
fn render(format: Format, task: &k8s::TaskConfig) -> String {
    const INFALLIBLE: &str = "a pod_config of strings always serialises";
    if format == Format::Json {
        serde_json::to_string_pretty(task).expect(INFALLIBLE)
    } else {
        serde_saphyr::to_string(task).expect(INFALLIBLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::NetworkMode;
    use crate::tags::{self, JobIdentity, TagRequest};

    fn rendered(format: Format, git_ref: &str) -> String {
        let args = JobSettings {
            env: "production".into(),
            service: "skypilot-worker".into(),
            tags: vec![],
            network: NetworkMode::Host,
            apm_port: 8126,
            dogstatsd_port: 8125,
        };
        let identity = JobIdentity {
            git_ref: Some(git_ref.into()),
            ..Default::default()
        };
        let request = TagRequest {
            env: args.env.clone(),
            service: args.service.clone(),
            extra: vec![],
        };
        let tags = tags::build(&request, &identity).unwrap();
        let block = k8s::pod_config(&tags, &env::job_env(&args, &tags.tags));
        render(format, &block.task)
    }

    #[test]
    fn yaml_and_json_say_the_same() {
        let yaml: serde_json::Value =
            serde_yaml_ng::from_str(&rendered(Format::Text, "abc")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&rendered(Format::Json, "abc")).unwrap();
        assert_eq!(yaml, json);
        assert_eq!(
            json["config"]["kubernetes"]["pod_config"]["metadata"]["labels"]
                ["tags.datadoghq.com/version"],
            "abc"
        );
    }

    #[test]
    fn yaml_quotes_what_a_yaml_1_1_reader_would_not_read_as_a_string() {
        // SkyPilot reads task YAML with PyYAML (YAML 1.1): plain `yes` is a bool, `2001-12-14` a date,
        // `1_000` and `12:30` numbers, and Kubernetes refuses an env value or label that is not a string.
        for value in [
            "yes",
            "on",
            "off",
            "2001-12-14",
            "1_000",
            "12:30",
            "8126",
            "1e5",
        ] {
            let yaml = rendered(Format::Text, value);
            assert!(
                yaml.contains(&format!("value: \"{value}\""))
                    || yaml.contains(&format!("value: '{value}'")),
                "{value} is not quoted:\n{yaml}"
            );
        }
        assert!(rendered(Format::Text, "abc").contains("value: abc"));
    }
}
