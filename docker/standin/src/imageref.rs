//! Splitting an image reference the way the agent's tagger does (`image_name`, `short_image`,
//! `image_tag`, `docker_image`).

#[derive(Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Repository including any registry: `gcr.io/datadoghq/agent`.
    pub name: String,
    /// Registry host when the reference names one: `gcr.io`.
    pub registry: String,
    /// Last path component: `agent`.
    pub short: String,
    /// Tag, `latest` when none is given.
    pub tag: String,
}

impl ImageRef {
    /// Parses `[registry/]path[:tag][@digest]`. A bare image id (`sha256:...`) has no name.
    pub fn parse(raw: &str) -> Option<ImageRef> {
        if raw.is_empty() || raw.starts_with("sha256:") {
            return None;
        }
        let without_digest = raw.split('@').next().unwrap_or(raw);
        let last_slash = without_digest.rfind('/');
        let (name, tag) = match without_digest.rfind(':') {
            Some(colon) if last_slash.is_none_or(|s| colon > s) => {
                (&without_digest[..colon], &without_digest[colon + 1..])
            }
            _ => (without_digest, "latest"),
        };
        let registry = match name.split_once('/') {
            Some((first, _))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                first
            }
            _ => "",
        };
        Some(ImageRef {
            name: name.to_string(),
            registry: registry.to_string(),
            short: name.rsplit('/').next().unwrap_or(name).to_string(),
            tag: tag.to_string(),
        })
    }

    /// `docker_image` tag value: `name:tag`.
    pub fn docker_image(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(raw: &str) -> (String, String, String, String) {
        let r = ImageRef::parse(raw).unwrap();
        (r.name, r.registry, r.short, r.tag)
    }

    #[test]
    fn splits_references() {
        let s = |v: &str| v.to_string();
        assert_eq!(parts("nginx"), (s("nginx"), s(""), s("nginx"), s("latest")));
        assert_eq!(
            parts("ddsky-test/metta:latest"),
            (s("ddsky-test/metta"), s(""), s("metta"), s("latest"))
        );
        assert_eq!(
            parts("gcr.io/datadoghq/agent:7"),
            (s("gcr.io/datadoghq/agent"), s("gcr.io"), s("agent"), s("7"))
        );
        assert_eq!(
            parts("localhost:5000/a/b"),
            (
                s("localhost:5000/a/b"),
                s("localhost:5000"),
                s("b"),
                s("latest")
            )
        );
        assert_eq!(
            parts("busybox:1.36@sha256:abc"),
            (s("busybox"), s(""), s("busybox"), s("1.36"))
        );
        assert_eq!(ImageRef::parse("sha256:0123"), None);
        assert_eq!(
            ImageRef::parse("datadog/agent:7").unwrap().docker_image(),
            "datadog/agent:7"
        );
    }
}
