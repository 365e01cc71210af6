//! The daemon's configuration, read once from the environment (the real agent's `DD_*` settings
//! plus a few `STANDIN_*` knobs for tests) and validated here, at the edge.

use regex::Regex;
use std::collections::BTreeMap;

pub const DEFAULT_APM_PORT: u16 = 8126;
pub const DEFAULT_DOGSTATSD_PORT: u16 = 8125;
/// The real agent's `cmd_port`: its command API (the CLI's IPC endpoint) on localhost.
pub const DEFAULT_CMD_PORT: u16 = 5001;
/// Until the command API is up and the auth token written, every `agent` command fails.
pub const DEFAULT_STARTUP_SECS: f64 = 1.0;
/// The health catalog pings every 15 s and every component starts unhealthy: the first ping,
/// 15 s after the components register, is the earliest `agent health` can pass.
pub const DEFAULT_UNHEALTHY_SECS: f64 = 15.0;
pub const DEFAULT_DISCOVERY_DELAY_SECS: f64 = 1.0;
/// The aggregator flushes (and the forwarder sends) every 15 s.
pub const DEFAULT_FLUSH_SECS: f64 = 15.0;
/// The docker check runs every 15 s, the first time one interval after start.
pub const DEFAULT_CHECK_INTERVAL_SECS: f64 = 15.0;

#[derive(Debug)]
pub struct Config {
    pub api_key: ApiKey,
    /// `DD_TAGS` split on whitespace (commas do not split), then `env:<DD_ENV>`.
    pub host_tags: Vec<String>,
    pub env: Option<String>,
    pub site: String,
    /// `DD_DD_URL` without trailing `/`: when set, the forwarder really posts there.
    pub dd_url: Option<String>,
    pub hostname: String,
    pub hostname_provider: &'static str,
    pub apm_enabled: bool,
    pub apm_port: u16,
    pub dogstatsd_enabled: bool,
    pub dogstatsd_port: u16,
    pub logs_enabled: bool,
    pub process_collection_enabled: bool,
    /// `DD_CMD_PORT`: the command API's port on 127.0.0.1.
    pub cmd_port: u16,
    /// `STANDIN_STARTUP_SECS`: from start to the command API and auth token.
    pub startup_secs: f64,
    /// `STANDIN_UNHEALTHY_SECS`: from the components' registration to the first health ping.
    pub unhealthy_secs: f64,
    pub discovery_delay_secs: f64,
    /// `STANDIN_FLUSH_SECS`: the forwarder's flush period.
    pub flush_secs: f64,
    /// `STANDIN_CHECK_INTERVAL_SECS`: the docker check's period (and its first run's delay).
    pub check_interval_secs: f64,
    pub exclusions: Vec<Exclusion>,
    /// `DD_CONTAINER_INCLUDE`: a container matching one is never excluded (the agent's
    /// containers filter: include wins over exclude).
    pub inclusions: Vec<Exclusion>,
    /// `DD_CONTAINER_EXCLUDE_LOGS` / `DD_CONTAINER_INCLUDE_LOGS`: the same filter for log
    /// collection alone, added to the global lists (the agent's logs filter reads both pairs).
    pub log_exclusions: Vec<Exclusion>,
    pub log_inclusions: Vec<Exclusion>,
    /// `DD_CONTAINER_LABELS_AS_TAGS`: label name (lowercased) -> tag key.
    pub labels_as_tags: BTreeMap<String, String>,
    /// Problems found while reading the environment, logged as warnings at start.
    pub warnings: Vec<String>,
}

/// The API key. Its `Debug` never shows the key: only the last five characters ever leave it.
pub struct ApiKey(String);

impl ApiKey {
    /// The key itself, for the validation request and the `DD-API-KEY` header of the forwarder's requests only: never log it.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// What the agent prints: `API key ending with <suffix>`. A key of five characters or fewer
    /// would be printed whole, so it is masked instead.
    pub fn suffix(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() > 5 {
            chars[chars.len() - 5..].iter().collect()
        } else {
            "*****".to_string()
        }
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKey(ending with {})", self.suffix())
    }
}

/// One `DD_CONTAINER_EXCLUDE` entry.
#[derive(Debug)]
pub enum Exclusion {
    Name(Regex),
    Image(Regex),
}

impl Exclusion {
    pub fn matches(&self, name: &str, image: &str) -> bool {
        match self {
            Exclusion::Name(re) => re.is_match(name),
            Exclusion::Image(re) => re.is_match(image),
        }
    }
}

/// Why the daemon refuses to start.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    NoApiKey,
}

impl Config {
    /// Reads the configuration through `get` (the process environment in production).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let non_empty = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let api_key = non_empty("DD_API_KEY").ok_or(ConfigError::NoApiKey)?;
        let mut warnings = Vec::new();

        let env = non_empty("DD_ENV");
        let mut host_tags: Vec<String> = get("DD_TAGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if let Some(env) = &env {
            let tag = format!("env:{env}");
            if !host_tags.contains(&tag) {
                host_tags.push(tag);
            }
        }

        let (hostname, hostname_provider) = match non_empty("DD_HOSTNAME") {
            Some(h) => (h, "configuration"),
            None => (system_hostname(), "os"),
        };

        let mut port = |key: &str, default: u16| match non_empty(key) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                warnings.push(format!("invalid {key} {v:?}, using {default}"));
                default
            }),
        };
        let apm_port = port("DD_APM_RECEIVER_PORT", DEFAULT_APM_PORT);
        let cmd_port = port("DD_CMD_PORT", DEFAULT_CMD_PORT);
        let dogstatsd_port = port("DD_DOGSTATSD_PORT", DEFAULT_DOGSTATSD_PORT);

        let mut secs = |key: &str, default: f64| match non_empty(key) {
            None => default,
            Some(v) => match v.parse::<f64>() {
                Ok(s) if s.is_finite() && s >= 0.0 => s,
                _ => {
                    warnings.push(format!("invalid {key} {v:?}, using {default}"));
                    default
                }
            },
        };
        let unhealthy_secs = secs("STANDIN_UNHEALTHY_SECS", DEFAULT_UNHEALTHY_SECS);
        let discovery_delay_secs =
            secs("STANDIN_DISCOVERY_DELAY_SECS", DEFAULT_DISCOVERY_DELAY_SECS);
        let startup_secs = secs("STANDIN_STARTUP_SECS", DEFAULT_STARTUP_SECS);
        // A zero period would spin: at least 100 ms.
        let flush_secs = secs("STANDIN_FLUSH_SECS", DEFAULT_FLUSH_SECS).max(0.1);
        let check_interval_secs =
            secs("STANDIN_CHECK_INTERVAL_SECS", DEFAULT_CHECK_INTERVAL_SECS).max(0.1);

        let flag = |key: &str| non_empty(key).map(|v| parse_bool(&v));
        let process_collection_enabled = flag("DD_PROCESS_CONFIG_PROCESS_COLLECTION_ENABLED")
            .or_else(|| flag("DD_PROCESS_AGENT_ENABLED"))
            .unwrap_or(false);

        let exclusions = parse_exclusions(
            "DD_CONTAINER_EXCLUDE",
            &get("DD_CONTAINER_EXCLUDE").unwrap_or_default(),
            &mut warnings,
        );
        let inclusions = parse_exclusions(
            "DD_CONTAINER_INCLUDE",
            &get("DD_CONTAINER_INCLUDE").unwrap_or_default(),
            &mut warnings,
        );
        let log_exclusions = parse_exclusions(
            "DD_CONTAINER_EXCLUDE_LOGS",
            &get("DD_CONTAINER_EXCLUDE_LOGS").unwrap_or_default(),
            &mut warnings,
        );
        let log_inclusions = parse_exclusions(
            "DD_CONTAINER_INCLUDE_LOGS",
            &get("DD_CONTAINER_INCLUDE_LOGS").unwrap_or_default(),
            &mut warnings,
        );
        let labels_as_tags = match non_empty("DD_CONTAINER_LABELS_AS_TAGS") {
            None => BTreeMap::new(),
            Some(v) => match serde_json::from_str::<BTreeMap<String, String>>(&v) {
                Ok(m) => m.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect(),
                Err(e) => {
                    warnings.push(format!("invalid DD_CONTAINER_LABELS_AS_TAGS: {e}"));
                    BTreeMap::new()
                }
            },
        };

        Ok(Config {
            api_key: ApiKey(api_key),
            host_tags,
            env,
            site: non_empty("DD_SITE").unwrap_or_else(|| "datadoghq.com".to_string()),
            dd_url: non_empty("DD_DD_URL").map(|u| u.trim_end_matches('/').to_string()),
            hostname,
            hostname_provider,
            apm_enabled: flag("DD_APM_ENABLED").unwrap_or(true),
            apm_port,
            dogstatsd_enabled: flag("DD_USE_DOGSTATSD").unwrap_or(true),
            dogstatsd_port,
            logs_enabled: flag("DD_LOGS_ENABLED").unwrap_or(false),
            process_collection_enabled,
            cmd_port,
            startup_secs,
            unhealthy_secs,
            discovery_delay_secs,
            flush_secs,
            check_interval_secs,
            exclusions,
            inclusions,
            log_exclusions,
            log_inclusions,
            labels_as_tags,
            warnings,
        })
    }

    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Whether `DD_CONTAINER_EXCLUDE` excludes this container (name without leading `/`) and
    /// `DD_CONTAINER_INCLUDE` does not take it back.
    pub fn is_excluded(&self, name: &str, image: &str) -> bool {
        self.exclusions.iter().any(|e| e.matches(name, image))
            && !self.inclusions.iter().any(|e| e.matches(name, image))
    }

    /// Whether the logs filter excludes this container: the global lists plus the `_LOGS` ones,
    /// include winning over exclude as in [`Config::is_excluded`].
    pub fn is_excluded_from_logs(&self, name: &str, image: &str) -> bool {
        let matches = |list: &[Exclusion]| list.iter().any(|e| e.matches(name, image));
        (matches(&self.exclusions) || matches(&self.log_exclusions))
            && !(matches(&self.inclusions) || matches(&self.log_inclusions))
    }
}

/// Go's `strconv.ParseBool` as used by the agent's config (anything else is false).
pub fn parse_bool(v: &str) -> bool {
    matches!(v.trim(), "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn parse_exclusions(key: &str, raw: &str, warnings: &mut Vec<String>) -> Vec<Exclusion> {
    let mut out = Vec::new();
    for token in raw.split_whitespace() {
        let (kind, pattern) = match token.split_once(':') {
            Some(kp) => kp,
            None => {
                warnings.push(format!("{key}: ignoring {token:?} (no prefix)"));
                continue;
            }
        };
        let re = match Regex::new(pattern) {
            Ok(re) => re,
            Err(e) => {
                warnings.push(format!("{key}: invalid regex {pattern:?}: {e}"));
                continue;
            }
        };
        match kind {
            "name" => out.push(Exclusion::Name(re)),
            "image" => out.push(Exclusion::Image(re)),
            // kube_namespace: and friends have no meaning outside Kubernetes.
            _ => {}
        }
    }
    out
}

/// The machine's hostname (the UTS namespace's: the host's with `--network host`).
fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname NUL-terminates on success
    // (and we stop at the buffer's end otherwise).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn refuses_missing_or_blank_key() {
        assert_eq!(config(&[]).unwrap_err(), ConfigError::NoApiKey);
        assert_eq!(
            config(&[("DD_API_KEY", "  ")]).unwrap_err(),
            ConfigError::NoApiKey
        );
    }

    #[test]
    fn key_suffix_never_shows_the_key() {
        let c = config(&[("DD_API_KEY", "0123456789abcdef0123456789ABCDEF")]).unwrap();
        assert_eq!(c.api_key.suffix(), "BCDEF");
        let c = config(&[("DD_API_KEY", "not-a-real-key")]).unwrap();
        assert_eq!(c.api_key.suffix(), "l-key");
        assert!(!format!("{:?}", c.api_key).contains("not-a-real-key"));
        let c = config(&[("DD_API_KEY", "abc")]).unwrap();
        assert_eq!(c.api_key.suffix(), "*****");
    }

    #[test]
    fn tags_split_on_spaces_only_and_env_is_appended() {
        let c = config(&[
            ("DD_API_KEY", "k"),
            ("DD_TAGS", " a:b,c:d  e:f "),
            ("DD_ENV", "prod"),
        ])
        .unwrap();
        assert_eq!(c.host_tags, vec!["a:b,c:d", "e:f", "env:prod"]);
        let c = config(&[
            ("DD_API_KEY", "k"),
            ("DD_TAGS", "env:prod"),
            ("DD_ENV", "prod"),
        ])
        .unwrap();
        assert_eq!(c.host_tags, vec!["env:prod"]);
    }

    #[test]
    fn ports_delays_and_flags() {
        let c = config(&[
            ("DD_API_KEY", "k"),
            ("DD_APM_RECEIVER_PORT", "18126"),
            ("DD_DOGSTATSD_PORT", "x"),
            ("STANDIN_UNHEALTHY_SECS", "0.5"),
            ("STANDIN_DISCOVERY_DELAY_SECS", "0"),
            ("DD_LOGS_ENABLED", "true"),
            ("DD_PROCESS_AGENT_ENABLED", "true"),
            ("DD_HOSTNAME", "node-1"),
        ])
        .unwrap();
        assert_eq!(
            (c.apm_port, c.dogstatsd_port),
            (18126, DEFAULT_DOGSTATSD_PORT)
        );
        assert_eq!((c.unhealthy_secs, c.discovery_delay_secs), (0.5, 0.0));
        assert_eq!(c.cmd_port, DEFAULT_CMD_PORT);
        assert!(c.logs_enabled && c.process_collection_enabled && c.apm_enabled);
        assert_eq!(
            (c.hostname.as_str(), c.hostname_provider),
            ("node-1", "configuration")
        );
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn real_timings_by_default_and_knobs_shorten_them() {
        let c = config(&[("DD_API_KEY", "k")]).unwrap();
        assert_eq!(
            (
                c.startup_secs,
                c.unhealthy_secs,
                c.flush_secs,
                c.check_interval_secs
            ),
            (1.0, 15.0, 15.0, 15.0)
        );
        let c = config(&[
            ("DD_API_KEY", "k"),
            ("DD_CMD_PORT", "25001"),
            ("STANDIN_STARTUP_SECS", "0.2"),
            ("STANDIN_FLUSH_SECS", "0"),
            ("STANDIN_CHECK_INTERVAL_SECS", "2"),
        ])
        .unwrap();
        assert_eq!(c.cmd_port, 25001);
        assert_eq!(
            (c.startup_secs, c.flush_secs, c.check_interval_secs),
            (0.2, 0.1, 2.0)
        );
    }

    #[test]
    fn dd_url_is_optional_and_loses_its_trailing_slash() {
        assert_eq!(config(&[("DD_API_KEY", "k")]).unwrap().dd_url, None);
        assert_eq!(
            config(&[("DD_API_KEY", "k"), ("DD_DD_URL", " ")])
                .unwrap()
                .dd_url,
            None
        );
        let c = config(&[("DD_API_KEY", "k"), ("DD_DD_URL", "http://127.0.0.1:9/")]).unwrap();
        assert_eq!(c.dd_url.as_deref(), Some("http://127.0.0.1:9"));
    }

    #[test]
    fn exclusions_match_name_or_image() {
        let c = config(&[
            ("DD_API_KEY", "k"),
            (
                "DD_CONTAINER_EXCLUDE",
                "name:^dd-agent$ image:^busybox bogus kube_namespace:.*",
            ),
        ])
        .unwrap();
        assert!(c.is_excluded("dd-agent", "x"));
        assert!(!c.is_excluded("dd-agent-2", "x"));
        assert!(c.is_excluded("job", "busybox:latest"));
        assert_eq!(c.exclusions.len(), 2);
    }

    #[test]
    fn an_inclusion_wins_over_an_exclusion() {
        let c = config(&[
            ("DD_API_KEY", "k"),
            ("DD_CONTAINER_EXCLUDE", "name:.*"),
            ("DD_CONTAINER_INCLUDE", "name:^test-"),
        ])
        .unwrap();
        assert!(!c.is_excluded("test-job", "x"));
        assert!(c.is_excluded("other", "x"));
    }

    #[test]
    fn the_logs_filter_adds_its_own_lists_to_the_global_ones() {
        let c = config(&[
            ("DD_API_KEY", "k"),
            ("DD_CONTAINER_EXCLUDE", "name:^dd-agent$"),
            ("DD_CONTAINER_EXCLUDE_LOGS", "name:.*"),
            ("DD_CONTAINER_INCLUDE_LOGS", "name:^test-"),
        ])
        .unwrap();
        assert!(!c.is_excluded_from_logs("test-job", "x"));
        assert!(c.is_excluded_from_logs("other", "x"));
        assert!(c.is_excluded_from_logs("dd-agent", "x"));
        // Only logs: the containers filter elsewhere (tagger, checks) is the global one.
        assert!(!c.is_excluded("other", "x"));
    }
}
