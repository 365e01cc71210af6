//! The logs agent's settings, read from the environment (the real `logs_config.*` keys through
//! their `DD_LOGS_CONFIG_*` variables, plus s6-overlay's grace times). Pure: unit-tested here.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_DOCKER_BASE: &str = "/var/lib/docker";
pub const DEFAULT_RUN_PATH: &str = "/opt/datadog-agent/run";
pub const DEFAULT_BATCH_WAIT: Duration = Duration::from_secs(5);
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(30);
/// `logs_config.file_scan_period`.
pub const DEFAULT_FILE_SCAN_PERIOD: Duration = Duration::from_secs(10);
/// `logs_config.close_timeout`.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(60);
/// s6-overlay v2's default `S6_SERVICES_GRACETIME` (ms).
pub const DEFAULT_S6_GRACE_MS: u64 = 3000;

/// Where the logs go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Plain HTTP to a loopback intake: `http://host:port`.
    Http { base: String },
    /// Anything the stand-in does not reach (no URL, TLS, a non-loopback host): every send fails.
    NoNetwork { url: String, why: String },
}

#[derive(Clone, Debug)]
pub struct LogsConfig {
    /// `DD_LOGS_ENABLED`: the logs agent runs (conf.d file sources are collected).
    pub enabled: bool,
    /// `DD_LOGS_CONFIG_CONTAINER_COLLECT_ALL` as well: every container's output is collected.
    pub container_collect_all: bool,
    /// `DD_LOGS_CONFIG_FILE_SCAN_PERIOD` (seconds, a float; 10): the file launcher's scan.
    pub file_scan_period: Duration,
    /// `DD_LOGS_CONFIG_CLOSE_TIMEOUT` (seconds; 60): how long a rotated file is still read.
    pub close_timeout: Duration,
    /// `DD_LOGS_CONFIG_OPEN_FILES_LIMIT` (500): files tailed at once.
    pub open_files_limit: usize,
    /// `DD_CONFD_PATH` (`confd_path`), else /etc/datadog-agent/conf.d.
    pub confd_path: PathBuf,
    /// `DD_SERVICE`: a file source without `service` takes it.
    pub dd_service: Option<String>,
    /// `DD_AUTOCONF_CONFIG_FILES_POLL=true` was asked for: the stand-in does not poll conf.d
    /// (it says so at start), so a file added later is never seen, the stricter behaviour.
    pub confd_poll_requested: bool,
    pub destination: Destination,
    /// `DD_LOGS_CONFIG_FORCE_USE_HTTP`: skip the start-up probe.
    pub force_http: bool,
    /// `DD_LOGS_CONFIG_USE_COMPRESSION` (default true): gzip level 6.
    pub compression: bool,
    /// `DD_LOGS_CONFIG_DOCKER_PATH_OVERRIDE`, else /var/lib/docker.
    pub docker_base: PathBuf,
    /// `DD_LOGS_CONFIG_RUN_PATH`, else /opt/datadog-agent/run.
    pub run_path: PathBuf,
    /// `DD_LOGS_CONFIG_EXPECTED_TAGS_DURATION`: host tags on logs this long after start.
    pub expected_tags: Duration,
    /// `DD_LOGS_CONFIG_BATCH_WAIT` (seconds, 1-10).
    pub batch_wait: Duration,
    /// `DD_LOGS_CONFIG_STOP_GRACE_PERIOD` (seconds).
    pub stop_grace: Duration,
    /// `S6_SERVICES_GRACETIME` (ms): SIGKILL this long after SIGTERM.
    pub s6_grace: Duration,
    pub warnings: Vec<String>,
}

impl LogsConfig {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> LogsConfig {
        let non_empty = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let flag = |k: &str| non_empty(k).map(|v| crate::config::parse_bool(&v));
        let mut warnings = Vec::new();
        let enabled = flag("DD_LOGS_ENABLED").unwrap_or(false);
        let container_collect_all =
            enabled && flag("DD_LOGS_CONFIG_CONTAINER_COLLECT_ALL").unwrap_or(false);
        let no_ssl = flag("DD_LOGS_CONFIG_LOGS_NO_SSL").unwrap_or(false);
        let destination = destination(non_empty("DD_LOGS_CONFIG_LOGS_DD_URL").as_deref(), no_ssl);

        let int = |k: &str, warnings: &mut Vec<String>| -> Option<u64> {
            let v = non_empty(k)?;
            match v.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    warnings.push(format!("invalid {k} {v:?}, using the default"));
                    None
                }
            }
        };
        let batch_wait = match int("DD_LOGS_CONFIG_BATCH_WAIT", &mut warnings) {
            None => DEFAULT_BATCH_WAIT,
            Some(n) if (1..=10).contains(&n) => Duration::from_secs(n),
            Some(n) => {
                warnings.push(format!(
                    "Invalid batch_wait: {n} should be in [1, 10], fallback on 5"
                ));
                DEFAULT_BATCH_WAIT
            }
        };
        let stop_grace = int("DD_LOGS_CONFIG_STOP_GRACE_PERIOD", &mut warnings)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_STOP_GRACE);
        let s6_grace = Duration::from_millis(
            int("S6_SERVICES_GRACETIME", &mut warnings).unwrap_or(DEFAULT_S6_GRACE_MS),
        );
        // Accepted and validated, but the stand-in kills at S6_SERVICES_GRACETIME alone.
        let _ = int("S6_KILL_GRACETIME", &mut warnings);
        let expected_tags = match non_empty("DD_LOGS_CONFIG_EXPECTED_TAGS_DURATION") {
            None => Duration::ZERO,
            Some(v) => parse_duration(&v).unwrap_or_else(|| {
                warnings.push(format!(
                    "invalid DD_LOGS_CONFIG_EXPECTED_TAGS_DURATION {v:?}, using 0"
                ));
                Duration::ZERO
            }),
        };
        let file_scan_period = match non_empty("DD_LOGS_CONFIG_FILE_SCAN_PERIOD") {
            None => DEFAULT_FILE_SCAN_PERIOD,
            Some(v) => match v.parse::<f64>() {
                Ok(n) if n.is_finite() && n > 0.0 => Duration::from_secs_f64(n),
                _ => {
                    warnings.push(format!(
                        "invalid DD_LOGS_CONFIG_FILE_SCAN_PERIOD {v:?}, using the default"
                    ));
                    DEFAULT_FILE_SCAN_PERIOD
                }
            },
        };
        let close_timeout = int("DD_LOGS_CONFIG_CLOSE_TIMEOUT", &mut warnings)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_CLOSE_TIMEOUT);
        let open_files_limit = int("DD_LOGS_CONFIG_OPEN_FILES_LIMIT", &mut warnings)
            .map(|n| n as usize)
            .unwrap_or(super::filesource::OPEN_FILES_LIMIT);
        LogsConfig {
            enabled,
            container_collect_all,
            file_scan_period,
            close_timeout,
            open_files_limit,
            confd_path: non_empty("DD_CONFD_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(super::filesource::DEFAULT_CONFD)),
            dd_service: non_empty("DD_SERVICE"),
            confd_poll_requested: flag("DD_AUTOCONF_CONFIG_FILES_POLL").unwrap_or(false),
            destination,
            force_http: flag("DD_LOGS_CONFIG_FORCE_USE_HTTP").unwrap_or(false),
            compression: flag("DD_LOGS_CONFIG_USE_COMPRESSION").unwrap_or(true),
            docker_base: non_empty("DD_LOGS_CONFIG_DOCKER_PATH_OVERRIDE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DOCKER_BASE)),
            run_path: non_empty("DD_LOGS_CONFIG_RUN_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_PATH)),
            expected_tags,
            batch_wait,
            stop_grace,
            s6_grace,
            warnings,
        }
    }

    pub fn from_env() -> LogsConfig {
        LogsConfig::from_lookup(|k| std::env::var(k).ok())
    }

    /// `<base>/containers/<id>/<id>-json.log`, as the tailer factory's findDockerLogPath.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.docker_base
            .join("containers")
            .join(id)
            .join(format!("{id}-json.log"))
    }
}

/// `DD_LOGS_CONFIG_LOGS_DD_URL` read as the logs endpoints config reads it: the scheme decides
/// TLS; a bare `host:port` is TLS unless `no_ssl`. The stand-in speaks plain HTTP to loopback only.
pub fn destination(url: Option<&str>, no_ssl: bool) -> Destination {
    let Some(url) = url else {
        return Destination::NoNetwork {
            url: "https://agent-http-intake.logs.datadoghq.com:443".into(),
            why: "no DD_LOGS_CONFIG_LOGS_DD_URL: the Datadog intake is not reachable from here"
                .into(),
        };
    };
    let (tls, rest) = match url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        Some((scheme, _)) => {
            return Destination::NoNetwork {
                url: url.into(),
                why: format!("unsupported scheme {scheme:?}"),
            }
        }
        None => (!no_ssl, url),
    };
    let host_port = rest.split('/').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let shown = format!("{}://{host_port}", if tls { "https" } else { "http" });
    if tls {
        Destination::NoNetwork {
            url: shown,
            why: "the stand-in speaks plain http only".into(),
        }
    } else if !loopback {
        Destination::NoNetwork {
            url: shown,
            why: format!("{host} is not a loopback address: the stand-in never sends there"),
        }
    } else {
        Destination::Http { base: shown }
    }
}

/// A Go duration (`15m`, `1h30m`, `2.5s`, `500ms`); a bare number is seconds, as the logs config
/// multiplies `expected_tags_duration` by a second.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(n) = v.parse::<f64>() {
        return (n.is_finite() && n >= 0.0).then(|| Duration::from_secs_f64(n));
    }
    let mut total = 0.0f64;
    let mut rest = v;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * factor;
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> LogsConfig {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LogsConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn logs_need_dd_logs_enabled_and_containers_need_collect_all_too() {
        let files_only = cfg(&[("DD_LOGS_ENABLED", "true")]);
        assert!(files_only.enabled && !files_only.container_collect_all);
        let neither = cfg(&[("DD_LOGS_CONFIG_CONTAINER_COLLECT_ALL", "true")]);
        assert!(!neither.enabled && !neither.container_collect_all);
        let c = cfg(&[
            ("DD_LOGS_ENABLED", "true"),
            ("DD_LOGS_CONFIG_CONTAINER_COLLECT_ALL", "true"),
        ]);
        assert!(c.enabled && c.container_collect_all && c.compression && !c.force_http);
        assert_eq!(
            (c.file_scan_period, c.close_timeout, c.open_files_limit),
            (Duration::from_secs(10), Duration::from_secs(60), 500)
        );
        assert_eq!(c.confd_path, PathBuf::from("/etc/datadog-agent/conf.d"));
        assert_eq!(c.dd_service, None);
        let quick = cfg(&[
            ("DD_LOGS_CONFIG_FILE_SCAN_PERIOD", "0.5"),
            ("DD_SERVICE", "trainer"),
        ]);
        assert_eq!(quick.file_scan_period, Duration::from_millis(500));
        assert_eq!(quick.dd_service.as_deref(), Some("trainer"));
        let bad = cfg(&[("DD_LOGS_CONFIG_FILE_SCAN_PERIOD", "0")]);
        assert_eq!(bad.file_scan_period, Duration::from_secs(10));
        assert_eq!(bad.warnings.len(), 1);
        assert_eq!(
            (c.batch_wait, c.stop_grace, c.s6_grace, c.expected_tags),
            (
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_millis(3000),
                Duration::ZERO
            )
        );
        assert_eq!(
            c.log_path("abc"),
            PathBuf::from("/var/lib/docker/containers/abc/abc-json.log")
        );
        assert!(matches!(c.destination, Destination::NoNetwork { .. }));
    }

    #[test]
    fn only_plain_http_to_loopback_is_reached() {
        let http = |b: &str| Destination::Http { base: b.into() };
        assert_eq!(
            destination(Some("http://127.0.0.1:1234"), false),
            http("http://127.0.0.1:1234")
        );
        assert_eq!(
            destination(Some("http://localhost:80/"), false),
            http("http://localhost:80")
        );
        assert_eq!(
            destination(Some("127.0.0.1:1234"), true),
            http("http://127.0.0.1:1234")
        );
        for (url, no_ssl) in [
            ("127.0.0.1:1234", false),
            ("https://127.0.0.1:1234", true),
            ("http://10.0.0.1:80", false),
            ("http://169.254.169.254:80", false),
            ("http://example.com:80", false),
            ("tcp://127.0.0.1:1", false),
        ] {
            assert!(
                matches!(
                    destination(Some(url), no_ssl),
                    Destination::NoNetwork { .. }
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn knobs_and_their_bounds() {
        let c = cfg(&[
            ("DD_LOGS_CONFIG_BATCH_WAIT", "1"),
            ("DD_LOGS_CONFIG_STOP_GRACE_PERIOD", "2"),
            ("S6_SERVICES_GRACETIME", "500"),
            ("DD_LOGS_CONFIG_EXPECTED_TAGS_DURATION", "15m"),
            ("DD_LOGS_CONFIG_DOCKER_PATH_OVERRIDE", "/mnt/nvme/docker"),
            ("DD_LOGS_CONFIG_USE_COMPRESSION", "false"),
        ]);
        assert_eq!(c.batch_wait, Duration::from_secs(1));
        assert_eq!(c.stop_grace, Duration::from_secs(2));
        assert_eq!(c.s6_grace, Duration::from_millis(500));
        assert_eq!(c.expected_tags, Duration::from_secs(900));
        assert!(!c.compression);
        assert_eq!(
            c.log_path("x"),
            PathBuf::from("/mnt/nvme/docker/containers/x/x-json.log")
        );
        let c = cfg(&[("DD_LOGS_CONFIG_BATCH_WAIT", "30")]);
        assert_eq!(c.batch_wait, Duration::from_secs(5));
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("100000"), Some(Duration::from_secs(100000)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5x"), None);
    }
}
