//! Docker's identifiers, in one place: container ids (and their short form), container names, and
//! image references (their grammar and their repository part). Pure. `settings` applies the checks to
//! the user's input; discovery and the reports use the rest.
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

/// A full container id: 64 hex characters, returned lowercase; anything else is not one. Docker,
/// the agent's output and cgroup paths all name containers this way.
pub fn full_container_id(s: &str) -> Option<String> {
    let s = s.trim();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// The 12-character form Docker prints.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The repository part of an image reference: last path component, without tag or digest.
/// `751442549699.dkr.ecr.us-east-1.amazonaws.com/metta:latest` -> `metta`.
pub fn image_repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// Docker's own rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_container_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() >= 2
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!("container name {name:?} is not valid: use letters, digits, '_', '.' and '-', starting with a letter or digit (e.g. dd-agent)"))
    }
}

/// Rejects image references Docker would refuse, before anything is created. Lenient on purpose:
/// registry hosts, ports, paths, tags and digests all pass; whitespace, shell syntax and `..` do not.
pub fn validate_image_reference(image: &str) -> Result<(), String> {
    let fix = "use a reference like datadog/agent:7 or registry:5000/datadog/agent:7";
    if image.is_empty() || image.len() > 512 {
        return Err(format!(
            "image reference {image:?} is empty or too long; {fix}"
        ));
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@');
    let (name, _digest) = image.split_once('@').unwrap_or((image, ""));
    if repository_path(name)
        .chars()
        .any(|c| c.is_ascii_uppercase())
    {
        return Err(format!(
            "image reference {image:?} is not valid: the repository name must be lowercase; {fix}"
        ));
    }
    let valid = image.chars().all(allowed)
        && !image.contains("..")
        && !image.contains("//")
        && !image.starts_with(['/', '.', '-', ':', '@'])
        && !image.ends_with(['/', ':', '@'])
        && name.split('/').all(|part| !part.is_empty());
    if valid {
        Ok(())
    } else {
        Err(format!("image reference {image:?} is not valid; {fix}"))
    }
}

/// The part of `registry/path/repo:tag` that Docker requires in lowercase: the path without the
/// registry host (a first component with a dot or port, or localhost) and without the tag.
fn repository_path(name: &str) -> &str {
    let untagged = match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    };
    match untagged.split_once('/') {
        Some((host, path)) if host.contains(['.', ':']) || host == "localhost" => path,
        _ => untagged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_container_ids() {
        let id = "8c2b5d3b9e7a41f0c6d2e1a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4";
        assert_eq!(full_container_id(id).as_deref(), Some(id));
        assert_eq!(full_container_id(&id.to_uppercase()).as_deref(), Some(id));
        assert_eq!(full_container_id(&format!(" {id}\n")).as_deref(), Some(id));
        assert_eq!(full_container_id(&id[1..]), None);
        assert_eq!(full_container_id(&format!("{}z", &id[1..])), None);
        assert_eq!(full_container_id(&format!("{id}0")), None);
    }

    #[test]
    fn container_names() {
        assert!(validate_container_name("dd-agent").is_ok());
        assert!(validate_container_name("a.b_c-1").is_ok());
        for bad in [
            "",
            "x",
            "/dd-agent",
            "dd/agent",
            "-dd",
            "dd agent",
            "dd$agent",
        ] {
            assert!(validate_container_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_references() {
        for good in [
            "datadog/agent:7",
            "gcr.io/datadoghq/agent:7",
            "127.0.0.1:5000/datadog/agent:7",
            "agent@sha256:abc",
            "public.ecr.aws/datadog/agent",
        ] {
            assert!(validate_image_reference(good).is_ok(), "{good}");
        }
        assert!(
            validate_image_reference("Registry.Example.com:5000/datadog/agent:Latest").is_ok(),
            "host and tag may have capitals"
        );
        for bad in [
            "",
            "$(rm -rf /)",
            "../agent",
            "datadog//agent",
            "agent:",
            "a b",
            "/agent",
            "agent;ls",
            "a/../b",
            "Datadog/Agent:7",
        ] {
            assert!(validate_image_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_repository_is_the_last_component_without_tag() {
        assert_eq!(
            image_repository("751442549699.dkr.ecr.us-east-1.amazonaws.com/metta:latest"),
            "metta"
        );
        assert_eq!(image_repository("metta"), "metta");
        assert_eq!(image_repository("127.0.0.1:5000/team/metta:v1"), "metta");
        assert_eq!(image_repository("metta@sha256:abcd"), "metta");
        assert_eq!(image_repository("registry:5000/metta"), "metta");
    }
}
