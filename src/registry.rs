//! Where the agent image comes from: the ordered list of references `up` tries (Datadog's
//! registries by cloud, Docker Hub last), the registry each names, and what a refused pull meant.
//! Pure; the pulling loop is in `commands::up::converge`.
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

use crate::reference;

/// The agent's tag, the same in every registry.
pub const AGENT_TAG: &str = "7";

/// Datadog's registries for the agent image (shared/datadog-agent.md, "Registries").
const DATADOG: &str = "registry.datadoghq.com/agent";
const ECR_PUBLIC: &str = "public.ecr.aws/datadog/agent";
const GCR: &str = "gcr.io/datadoghq/agent";
const ACR: &str = "datadoghq.azurecr.io/agent";
const DOCKER_HUB: &str = "docker.io/datadog/agent";

/// The references `up` tries in order: one or more, each a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageList(Vec<String>);

impl ImageList {
    /// `--image`/DDSKY_IMAGE: one reference or a comma-separated list (blanks around commas ignored).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let entries: Vec<String> = raw.split(',').map(|e| e.trim().to_owned()).collect();
        if entries.iter().any(String::is_empty) {
            return Err(format!(
                "--image {raw:?} has an empty entry; give one reference or a comma-separated list such as registry.datadoghq.com/agent:7,docker.io/datadog/agent:7"
            ));
        }
        for e in &entries {
            reference::validate_image_reference(e)?;
        }
        let mut unique: Vec<String> = Vec::new();
        for e in entries {
            if !unique.contains(&e) {
                unique.push(e);
            }
        }
        Ok(ImageList(unique))
    }

    pub fn entries(&self) -> &[String] {
        &self.0
    }

    pub fn first(&self) -> &str {
        &self.0[0]
    }

    /// What the spec hash keys on: the list as given, so the same list gives the same agent
    /// whichever mirror answered (a single reference is hashed exactly as before lists existed).
    pub fn identity(&self) -> String {
        self.0.join(",")
    }
}

impl std::fmt::Display for ImageList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

/// The default list for the cloud SkyPilot reports (SKYPILOT_CLUSTER_INFO's `cloud`, any case):
/// the cloud's own registry first (in-region, no pull charge), Datadog's next, Docker Hub (rate
/// limited per IP address) last; no cloud known: Datadog's registry first.
pub fn default_images(cloud: Option<&str>) -> ImageList {
    let cloud = cloud.map(|c| c.trim().to_ascii_lowercase());
    let mut repos = match cloud.as_deref() {
        Some("aws") => vec![ECR_PUBLIC, DATADOG, GCR],
        Some("gcp") => vec![GCR, DATADOG, ECR_PUBLIC],
        Some("azure") => vec![ACR, DATADOG, ECR_PUBLIC],
        _ => vec![DATADOG, ECR_PUBLIC, GCR],
    };
    repos.push(DOCKER_HUB);
    ImageList(
        repos
            .into_iter()
            .map(|r| format!("{r}:{AGENT_TAG}"))
            .collect(),
    )
}

/// The registry a reference names: its first component when that is a host (has a `.` or `:`, or
/// is `localhost`), else Docker Hub.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// Why a pull failed, read from the daemon's message (or ddsky's own bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullRefusal {
    /// `toomanyrequests` / HTTP 429.
    RateLimited,
    /// The registry answered 5xx.
    ServerError,
    /// The repository or tag is not there (`manifest unknown`, `name unknown`, `not found`).
    NotFound,
    /// Authentication needed or refused.
    Denied,
    /// Nothing answered (DNS, refused connection, network).
    Unreachable,
    /// No progress within ddsky's bound.
    TimedOut,
    Other,
}

impl PullRefusal {
    pub fn describe(self) -> &'static str {
        match self {
            PullRefusal::RateLimited => "rate limited",
            PullRefusal::ServerError => "server error",
            PullRefusal::NotFound => "image not found",
            PullRefusal::Denied => "access denied",
            PullRefusal::Unreachable => "unreachable",
            PullRefusal::TimedOut => "timed out",
            PullRefusal::Other => "failed",
        }
    }
}

/// Classifies the daemon's pull error message.
pub fn classify(message: &str) -> PullRefusal {
    let m = message.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if has(&["toomanyrequests", "too many requests", "429", "rate limit"]) {
        PullRefusal::RateLimited
    } else if has(&["timeout", "timed out", "deadline exceeded"]) {
        PullRefusal::TimedOut
    } else if has(&[
        "500 internal",
        "502 bad gateway",
        "503 service",
        "504 gateway",
        "status: 5",
        "status code 5",
        "internal server error",
        "service unavailable",
    ]) {
        PullRefusal::ServerError
    } else if has(&[
        "manifest unknown",
        "name unknown",
        "not found",
        "repository does not exist",
    ]) {
        PullRefusal::NotFound
    } else if has(&[
        "unauthorized",
        "denied",
        "forbidden",
        "authentication required",
    ]) {
        PullRefusal::Denied
    } else if has(&[
        "connection refused",
        "no such host",
        "network is unreachable",
        "no route to host",
        "connection reset",
        "eof",
    ]) {
        PullRefusal::Unreachable
    } else {
        PullRefusal::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(cloud: Option<&str>) -> Vec<String> {
        default_images(cloud).entries().to_vec()
    }

    #[test]
    fn the_default_list_follows_the_cloud_with_docker_hub_last() {
        assert_eq!(
            list(Some("AWS")),
            [
                "public.ecr.aws/datadog/agent:7",
                "registry.datadoghq.com/agent:7",
                "gcr.io/datadoghq/agent:7",
                "docker.io/datadog/agent:7"
            ]
        );
        assert_eq!(list(Some("aws")), list(Some("AWS")));
        assert_eq!(list(Some("gcp"))[0], "gcr.io/datadoghq/agent:7");
        assert_eq!(list(Some("GCP"))[1], "registry.datadoghq.com/agent:7");
        assert_eq!(list(Some("Azure"))[0], "datadoghq.azurecr.io/agent:7");
        assert_eq!(list(Some("azure"))[1], "registry.datadoghq.com/agent:7");
        for other in [None, Some("kubernetes"), Some("lambda"), Some("")] {
            assert_eq!(
                list(other)[0],
                "registry.datadoghq.com/agent:7",
                "{other:?}"
            );
        }
        for cloud in [None, Some("aws"), Some("gcp"), Some("azure")] {
            let l = list(cloud);
            assert_eq!(l.last().unwrap(), "docker.io/datadog/agent:7");
            assert!(l.iter().all(|r| r.ends_with(":7")), "{l:?}");
            assert_eq!(
                l.iter().filter(|r| r.contains("docker.io")).count(),
                1,
                "{l:?}"
            );
            assert!(ImageList::parse(&default_images(cloud).identity()).is_ok());
        }
    }

    #[test]
    fn image_lists_parse_in_order() {
        let l = ImageList::parse("a.io/x:7, b.io/x:7 ,datadog/agent:7").unwrap();
        assert_eq!(l.entries(), ["a.io/x:7", "b.io/x:7", "datadog/agent:7"]);
        assert_eq!(l.first(), "a.io/x:7");
        assert_eq!(l.identity(), "a.io/x:7,b.io/x:7,datadog/agent:7");
        assert_eq!(
            ImageList::parse("datadog/agent:7").unwrap().identity(),
            "datadog/agent:7"
        );
        assert_eq!(
            ImageList::parse("a.io/x:7,a.io/x:7").unwrap().entries(),
            ["a.io/x:7"]
        );
        assert!(ImageList::parse("a.io/x:7,,b.io/x:7")
            .unwrap_err()
            .contains("empty entry"));
        assert!(ImageList::parse("").is_err());
        assert!(ImageList::parse("a.io/x:7,Not Valid").is_err());
    }

    #[test]
    fn registries_are_named() {
        assert_eq!(registry_of("datadog/agent:7"), "docker.io");
        assert_eq!(registry_of("agent:7"), "docker.io");
        assert_eq!(registry_of("docker.io/datadog/agent:7"), "docker.io");
        assert_eq!(
            registry_of("public.ecr.aws/datadog/agent:7"),
            "public.ecr.aws"
        );
        assert_eq!(
            registry_of("127.0.0.1:5000/datadog/agent:7"),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_of("localhost/agent:7"), "localhost");
    }

    #[test]
    fn pull_errors_are_classified_from_the_daemons_words() {
        let cases = [
            ("toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limits", PullRefusal::RateLimited),
            ("received unexpected HTTP status: 500 Internal Server Error", PullRefusal::ServerError),
            ("received unexpected HTTP status: 503 Service Unavailable", PullRefusal::ServerError),
            ("manifest for 127.0.0.1:5000/agent:7 not found: manifest unknown: manifest unknown", PullRefusal::NotFound),
            ("pull access denied for nosuch/agent, repository does not exist or may require 'docker login': denied: requested access to the resource is denied", PullRefusal::NotFound),
            ("unauthorized: authentication required", PullRefusal::Denied),
            ("Get \"https://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused", PullRefusal::Unreachable),
            ("Get \"https://x.invalid/v2/\": dial tcp: lookup x.invalid: no such host", PullRefusal::Unreachable),
            ("Get \"https://r/v2/\": net/http: request canceled while waiting for connection (Client.Timeout exceeded while awaiting headers)", PullRefusal::TimedOut),
            ("no space left on device", PullRefusal::Other),
        ];
        for (message, want) in cases {
            assert_eq!(classify(message), want, "{message}");
        }
    }
}
