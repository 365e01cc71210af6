//! `ddsky env`: the variables a job container needs so its traces, metrics and logs reach the agent
//! with the job's tags (`docker run --env-file <(ddsky env --format env-file) ...`).

use super::{identity, Context, Failure};
use crate::exit;
use crate::k8s;
use crate::output::Format;
use crate::placement::{self, Placement};
use crate::settings::JobSettings;
use std::collections::BTreeMap;

pub async fn run(ctx: &Context, job: JobSettings) -> Result<u8, Failure> {
    let vars = job_vars(&job).await?;
    let body = match ctx.format {
        Format::Json => {
            serde_json::to_string_pretty(&vars.iter().cloned().collect::<BTreeMap<_, _>>())
                .unwrap_or_default()
        }
        Format::EnvFile => vars
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n"),
        Format::Text | Format::Shell => vars
            .iter()
            .map(|(k, v)| format!("export {k}={}", shell_quote(v)))
            .collect::<Vec<_>>()
            .join("\n"),
    };
    crate::output::write_stdout(&body);
    Ok(exit::OK)
}

/// The variables for the job here: [`job_env`], and in a pod what the pod already has.
pub(super) async fn job_vars(job: &JobSettings) -> Result<Vec<(String, String)>, Failure> {
    let tags = identity::resolve(job).await?;
    let mut vars = job_env(job, &tags.tags);
    // In a pod, the pod_config of `ddsky k8s` set the node agent's address (downward API) and the
    // service tags: keep those, add the per-pod ones.
    if placement::detect(&placement::read_surroundings()) == Placement::Kubernetes {
        let mut warnings = Vec::new();
        vars = k8s::inside_pod(vars, crate::settings::env_var, &mut warnings);
        warnings.iter().for_each(|w| tracing::warn!("{w}"));
    }
    Ok(vars)
}

/// The job's side of the contract. Both network modes reach the agent at localhost: on the host
/// network directly, on a bridge through the ports published on 127.0.0.1 (SkyPilot's job container
/// uses --net=host). env and service travel as DD_ENV/DD_SERVICE, so DD_TAGS carries the rest.
/// `ddsky k8s` puts the same variables into the pods (DD_AGENT_HOST from the downward API instead).
pub(super) fn job_env(args: &JobSettings, tags: &[String]) -> Vec<(String, String)> {
    let value_of = |key: &str| {
        tags.iter()
            .find_map(|t| t.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
            .map(str::to_owned)
    };
    let mut vars = vec![
        ("DD_AGENT_HOST".to_owned(), "localhost".to_owned()),
        ("DD_TRACE_AGENT_PORT".to_owned(), args.apm_port.to_string()),
        (
            "DD_DOGSTATSD_PORT".to_owned(),
            args.dogstatsd_port.to_string(),
        ),
        (
            "DD_ENV".to_owned(),
            value_of("env").unwrap_or_else(|| args.env.clone()),
        ),
        (
            "DD_SERVICE".to_owned(),
            value_of("service").unwrap_or_else(|| args.service.clone()),
        ),
    ];
    if let Some(version) = value_of("git_ref") {
        vars.push(("DD_VERSION".to_owned(), version));
    }
    let rest: Vec<&str> = tags
        .iter()
        .map(String::as_str)
        .filter(|t| !t.starts_with("env:") && !t.starts_with("service:"))
        .collect();
    vars.push(("DD_TAGS".to_owned(), rest.join(" ")));
    vars
}

/// Single quotes, with embedded single quotes closed, escaped and reopened.
fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::NetworkMode;

    fn args() -> JobSettings {
        JobSettings {
            env: "production".into(),
            service: "skypilot-worker".into(),
            tags: vec![],
            network: NetworkMode::Host,
            apm_port: 8126,
            dogstatsd_port: 8125,
        }
    }

    #[test]
    fn job_env_carries_ports_identity_and_version() {
        let tags = [
            "env:production",
            "service:skypilot-worker",
            "metta_run_id:a.1",
            "git_ref:abc",
        ]
        .map(String::from);
        let vars: BTreeMap<_, _> = job_env(&args(), &tags).into_iter().collect();
        assert_eq!(vars["DD_AGENT_HOST"], "localhost");
        assert_eq!(vars["DD_TRACE_AGENT_PORT"], "8126");
        assert_eq!(vars["DD_DOGSTATSD_PORT"], "8125");
        assert_eq!(vars["DD_ENV"], "production");
        assert_eq!(vars["DD_SERVICE"], "skypilot-worker");
        assert_eq!(vars["DD_VERSION"], "abc");
        assert_eq!(vars["DD_TAGS"], "metta_run_id:a.1 git_ref:abc");
    }

    #[test]
    fn no_git_ref_means_no_version() {
        let vars: BTreeMap<_, _> = job_env(&args(), &["env:production".to_string()])
            .into_iter()
            .collect();
        assert!(!vars.contains_key("DD_VERSION"));
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
