//! The job's identity and tags, shared by `up` (the agent's host tags), `env` (the job's tracer env)
//! and `k8s` (the pods' metadata and env).

use super::Failure;
use crate::settings::JobSettings;
use crate::tags::{self, JobIdentity, TagRequest, TagSet};
use std::time::Duration;

/// `git rev-parse` must never hold up a setup script.
const GIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads the environment (and git, when METTA_GIT_REF is unset), builds and normalises the tags,
/// and warns about everything that was dropped or changed.
pub async fn resolve(args: &JobSettings) -> Result<TagSet, Failure> {
    let mut warnings = Vec::new();
    let identity = read(&mut warnings).await;
    tag(args, &identity, warnings)
}

/// The job's identity from the environment (and git, when METTA_GIT_REF is unset); what was not
/// usable is said in `warnings`.
pub async fn read(warnings: &mut Vec<String>) -> JobIdentity {
    let mut identity = JobIdentity::from_env(crate::settings::env_var, warnings);
    if identity.git_ref.is_none() {
        identity.git_ref = git_head().await;
    }
    if let Some(info) =
        crate::settings::env_var("SKYPILOT_CLUSTER_INFO").filter(|v| !v.trim().is_empty())
    {
        match tags::cluster_tags(&info) {
            Ok(pairs) => identity.cluster = pairs,
            Err(why) => warnings.push(format!("SKYPILOT_CLUSTER_INFO is not usable ({why}); the cluster, cloud, region and zone tags are left out")),
        }
    }
    identity
}

/// The tags of `identity` with the flags' env, service and extra tags, normalised; logs `warnings`
/// and every change normalisation made.
pub fn tag(
    args: &JobSettings,
    identity: &JobIdentity,
    warnings: Vec<String>,
) -> Result<TagSet, Failure> {
    let request = TagRequest {
        env: args.env.clone(),
        service: args.service.clone(),
        extra: args.tags.clone(),
    };
    let tags = tags::build(&request, identity).map_err(|e| Failure::Usage(e.to_string()))?;
    warnings
        .iter()
        .chain(&tags.warnings)
        .for_each(|w| tracing::warn!("{w}"));
    Ok(tags)
}

/// The commit checked out in the working directory, if git is there and answers quickly.
async fn git_head() -> Option<String> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(["rev-parse", "HEAD"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(GIT_TIMEOUT, cmd.output())
        .await
        .ok()?
        .ok()?;
    let head = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    let is_sha =
        out.status.success() && head.len() == 40 && head.chars().all(|c| c.is_ascii_hexdigit());
    if is_sha {
        tracing::debug!("git_ref from `git rev-parse HEAD`: {head}");
    }
    is_sha.then_some(head)
}
