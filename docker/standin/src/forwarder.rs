//! The forwarder, as comp/forwarder/defaultforwarder does it:
//! * at start it validates the API key with `GET <intake>/api/v1/validate?api_key=...` (the
//!   outcome goes to `forwarderStats.APIKeyStatus` / `APIKeyFailure` and decides the `forwarder`
//!   health component; see [`KeyVerdict`]);
//! * it sends the host-metadata payload (which carries the host tags) right away, then flushes a
//!   series payload every flush period (15 s); payloads are zlib-compressed JSON with the
//!   `DD-API-KEY` header;
//! * it counts each transaction's outcome the way `forwarderStats.Transactions` does: a 403 is an
//!   HTTP error and a dropped transaction, not an error; no answer is an error by type, and the
//!   transaction is retried at the next flush.
//!
//! The intake is `DD_DD_URL` (plain `http://` only: the tests run one on 127.0.0.1). Without it the
//! stand-in is an agent without network: nothing leaves the container, the validation is
//! "unreachable" and every transaction a connection error.

use crate::config::Config;
use crate::logline;
use crate::state::{ForwarderStats, KeyCheck, KeyVerdict};
use bytes::Bytes;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The validation endpoint, below the intake.
pub const VALIDATE_PATH: &str = "/api/v1/validate";
/// Where the series go, and the endpoint's name in `SuccessByEndpoint`.
pub const SERIES: Endpoint = Endpoint {
    path: "/api/v2/series",
    name: "series_v2",
};
/// Where the host metadata goes (the v5 `/intake/` payload).
pub const HOST_METADATA: Endpoint = Endpoint {
    path: "/intake/",
    name: "intake",
};
/// The metric each series payload carries.
pub const METRIC: &str = "datadog.agent.running";
/// The host metadata is sent at start, then this often.
pub const HOST_METADATA_INTERVAL: Duration = Duration::from_secs(1800);
/// Bound on one request, answer included (the real `forwarder_timeout` is 20 s).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on connecting, below [`TIMEOUT`] so that an unreachable intake counts as a connection error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Transactions kept for retry; beyond, the oldest is dropped.
pub const RETRY_QUEUE_CAP: usize = 64;

/// The keys of `ErrorsByType`, all shown (zero when nothing happened), as the real agent does.
pub const ERROR_TYPES: [&str; 5] = [
    "ConnectionErrors",
    "DNSErrors",
    "SentRequestErrors",
    "TLSErrors",
    "WroteRequestErrors",
];

const SOURCE: &str =
    "comp/forwarder/defaultforwarder/transaction/transaction.go:433 in internalProcess";
const HEALTH_SOURCE: &str =
    "comp/forwarder/defaultforwarder/forwarder_health.go:165 in healthCheckLoop";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub path: &'static str,
    pub name: &'static str,
}

/// One payload to send: already compressed.
#[derive(Clone, Debug, PartialEq)]
pub struct Transaction {
    pub endpoint: Endpoint,
    pub body: Vec<u8>,
}

/// How one request ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer; `bytes` is the size of the payload sent.
    Accepted { status: u16, bytes: u64 },
    /// Any other HTTP status.
    HttpError { status: u16 },
    /// No HTTP answer: `kind` is one of [`ERROR_TYPES`].
    Failed { kind: &'static str, message: String },
}

/// The validation endpoint's answer read the way `validateAPIKey` reads it.
pub fn verdict(outcome: &Outcome) -> KeyVerdict {
    match outcome {
        Outcome::Accepted { status: 200, .. } => KeyVerdict::Valid,
        Outcome::HttpError { status: 403 } => KeyVerdict::Invalid,
        Outcome::Accepted { .. } | Outcome::HttpError { .. } => KeyVerdict::UnexpectedCode,
        Outcome::Failed { .. } => KeyVerdict::Unreachable,
    }
}

/// A series payload: `datadog.agent.running` for the host. Host tags are NOT on the series: the
/// backend applies the ones the host metadata carries.
pub fn series_payload(hostname: &str, timestamp: i64) -> Value {
    json!({
        "series": [{
            "metric": METRIC,
            "type": 3,
            "points": [{ "timestamp": timestamp, "value": 1 }],
            "resources": [{ "name": hostname, "type": "host" }],
            "tags": [format!("version:{}", crate::VERSION)],
        }]
    })
}

/// Host system metrics, as the agent's cpu, load and memory checks report them (one point each per
/// flush; `system.cpu.user` is a rate, so it first appears at the second flush, as the real cpu
/// check needs two samples).
pub fn system_series(hostname: &str, timestamp: i64, second_sample: bool) -> Vec<Value> {
    let load = std::fs::read_to_string("/host/proc/loadavg")
        .or_else(|_| std::fs::read_to_string("/proc/loadavg"))
        .ok()
        .and_then(|l| {
            l.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let mut metrics = vec![("system.load.1", load), ("system.mem.used", 1024.0)];
    if second_sample {
        metrics.push(("system.cpu.user", 1.5));
    }
    metrics
        .into_iter()
        .map(|(metric, value)| gauge(metric, hostname, timestamp, value, Vec::new()))
        .collect()
}

/// The docker check's container metrics for one running container, tagged with the container's
/// tags (container_name, image_name, short_image, container_id, ...) and `runtime:docker`.
/// `docker.cpu.usage` is a rate: the caller sends it only for containers seen at the previous run.
pub fn container_series(
    hostname: &str,
    timestamp: i64,
    container_tags: &[String],
    with_rate: bool,
) -> Vec<Value> {
    let mut tags = container_tags.to_vec();
    tags.push("runtime:docker".to_string());
    let mut metrics = vec![("docker.mem.rss", 4096.0)];
    if with_rate {
        metrics.push(("docker.cpu.usage", 0.5));
    }
    metrics
        .into_iter()
        .map(|(metric, value)| gauge(metric, hostname, timestamp, value, tags.clone()))
        .collect()
}

fn gauge(metric: &str, hostname: &str, timestamp: i64, value: f64, tags: Vec<String>) -> Value {
    json!({
        "metric": metric,
        "type": 3,
        "points": [{ "timestamp": timestamp, "value": value }],
        "resources": [{ "name": hostname, "type": "host" }],
        "tags": tags,
    })
}

/// The host-metadata payload (v5 `/intake/`): the host tags travel here, under `host-tags.system`.
pub fn host_metadata_payload(config: &Config, timestamp: i64) -> Value {
    json!({
        "apiKey": config.api_key.reveal(),
        "agentVersion": crate::VERSION,
        "internalHostname": config.hostname,
        "os": "linux",
        "timestamp": timestamp,
        "meta": {
            "hostname": config.hostname,
            "host_aliases": [],
            "timezones": ["UTC"],
        },
        "host-tags": { "system": config.host_tags },
        "systemStats": { "machine": "x86_64", "platform": "linux", "processor": "" },
    })
}

/// zlib, as the agent's default `serializer_compressor_kind` (Content-Encoding: deflate).
pub fn compress(payload: &Value) -> Vec<u8> {
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(&serde_json::to_vec(payload).unwrap_or_default());
    encoder.finish().unwrap_or_default()
}

/// Adds one transaction's outcome to the counters; returns whether it is to be retried.
pub fn record(stats: &mut ForwarderStats, endpoint: Endpoint, outcome: &Outcome) -> bool {
    let bump = |map: &mut std::collections::BTreeMap<String, u64>, key: &str, by: u64| {
        *map.entry(key.to_string()).or_default() += by;
    };
    match outcome {
        Outcome::Accepted { bytes, .. } => {
            stats.success += 1;
            bump(&mut stats.success_by_endpoint, endpoint.name, 1);
            bump(&mut stats.success_bytes_by_endpoint, endpoint.name, *bytes);
            false
        }
        Outcome::HttpError { status } => {
            if *status >= 400 {
                stats.http_errors += 1;
                bump(&mut stats.http_errors_by_code, &status.to_string(), 1);
            }
            if matches!(status, 400 | 403 | 404 | 413) {
                // Retrying would not help: the transaction is dropped.
                stats.dropped += 1;
                bump(&mut stats.dropped_by_endpoint, endpoint.name, 1);
                false
            } else {
                stats.errors += 1;
                stats.requeued += 1;
                true
            }
        }
        Outcome::Failed { kind, .. } => {
            stats.errors += 1;
            bump(&mut stats.errors_by_type, kind, 1);
            stats.requeued += 1;
            true
        }
    }
}

/// Where the forwarder sends.
pub enum Intake {
    /// `DD_DD_URL`.
    Http {
        client: Box<Client<HttpConnector, Full<Bytes>>>,
        base: String,
        api_key: String,
    },
    /// No `DD_DD_URL`: the Datadog site, which this stand-in never reaches (no network).
    Offline { site: String },
}

impl Intake {
    pub fn new(dd_url: Option<&str>, site: &str, api_key: &str) -> Intake {
        match dd_url {
            Some(base) => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
                Intake::Http {
                    client: Box::new(Client::builder(TokioExecutor::new()).build(connector)),
                    base: base.trim_end_matches('/').to_string(),
                    api_key: api_key.to_string(),
                }
            }
            None => Intake::Offline {
                site: site.to_string(),
            },
        }
    }

    /// The intake's URL for `path`, as logged.
    pub fn url(&self, path: &str) -> String {
        match self {
            Intake::Http { base, .. } => format!("{base}{path}"),
            Intake::Offline { site } => format!(
                "https://{}-app.agent.{site}{path}",
                crate::VERSION.replace('.', "-")
            ),
        }
    }

    /// `GET /api/v1/validate?api_key=...`.
    pub async fn validate(&self) -> Outcome {
        match self {
            Intake::Http {
                client, api_key, ..
            } => {
                let url = format!("{}?api_key={api_key}", self.url(VALIDATE_PATH));
                let request = hyper::Request::get(url.as_str())
                    .header("User-Agent", format!("datadog-agent/{}", crate::VERSION))
                    .body(Full::new(Bytes::new()));
                exchange(client, request, 0).await
            }
            Intake::Offline { site } => offline(&format!("api.{site}")),
        }
    }

    /// One POST of a transaction.
    pub async fn send(&self, tx: &Transaction) -> Outcome {
        match self {
            Intake::Http {
                client, api_key, ..
            } => {
                let request = hyper::Request::post(self.url(tx.endpoint.path).as_str())
                    .header("DD-API-KEY", api_key.as_str())
                    .header("Content-Type", "application/json")
                    .header("Content-Encoding", "deflate")
                    .header("User-Agent", format!("datadog-agent/{}", crate::VERSION))
                    .header("DD-Agent-Version", crate::VERSION)
                    .body(Full::new(Bytes::from(tx.body.clone())));
                exchange(client, request, tx.body.len() as u64).await
            }
            Intake::Offline { .. } => offline(&self.url("")),
        }
    }
}

/// What a host without network gets for any request.
fn offline(host: &str) -> Outcome {
    Outcome::Failed {
        kind: "ConnectionErrors",
        message: format!("dial tcp: lookup {host}: connect: network is unreachable"),
    }
}

/// Sends one request, bounded by [`TIMEOUT`] (the answer's body is read and dropped).
async fn exchange(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: Result<hyper::Request<Full<Bytes>>, hyper::http::Error>,
    bytes: u64,
) -> Outcome {
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Failed {
                kind: "ConnectionErrors",
                message: format!("invalid URL: {e}"),
            }
        }
    };
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        // Drain the answer so the connection can be reused; its content does not matter.
        let _ = response.into_body().collect().await;
        Ok::<u16, hyper_util::client::legacy::Error>(status)
    };
    match tokio::time::timeout(TIMEOUT, exchange).await {
        Ok(Ok(status)) if (200..300).contains(&status) => Outcome::Accepted { status, bytes },
        Ok(Ok(status)) => Outcome::HttpError { status },
        Ok(Err(e)) => Outcome::Failed {
            kind: error_kind(&e),
            message: error_chain(&e),
        },
        Err(_) => Outcome::Failed {
            kind: "SentRequestErrors",
            message: "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                .to_string(),
        },
    }
}

fn error_kind(e: &hyper_util::client::legacy::Error) -> &'static str {
    if !e.is_connect() {
        "SentRequestErrors"
    } else if error_chain(e).contains("dns error") {
        "DNSErrors"
    } else {
        "ConnectionErrors"
    }
}

/// The error and its sources, `: `-joined (what Go prints for a wrapped error).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// The log line for a transaction's outcome: an error for each failure, an info line when
/// transactions start (again) to succeed. Never contains the key.
fn log_outcome(url: &str, outcome: &Outcome, previous_ok: bool) {
    match outcome {
        Outcome::Accepted { status, .. } if !previous_ok => logline::info(
            SOURCE,
            &format!("Successfully posted payload to \"{url}\" (HTTP {status})"),
        ),
        Outcome::Accepted { .. } => {}
        Outcome::HttpError { status: 403 } => logline::error(
            SOURCE,
            &format!("API Key invalid, dropping transaction for {url}"),
        ),
        Outcome::HttpError { status } if matches!(status, 400 | 404 | 413) => logline::error(
            SOURCE,
            &format!(
                "Error code \"{status} {}\" received while sending transaction to \"{url}\", dropping it",
                reason(*status)
            ),
        ),
        Outcome::HttpError { status } => logline::error(
            SOURCE,
            &format!(
                "error \"{status} {}\" while sending transaction to \"{url}\", rescheduling it",
                reason(*status)
            ),
        ),
        Outcome::Failed { message, .. } => logline::error(
            SOURCE,
            &format!("Error while sending transaction, rescheduling it: Post \"{url}\": {message}"),
        ),
    }
}

fn log_verdict(suffix: &str, verdict: KeyVerdict, outcome: &Outcome) {
    let key = format!("API key ending with {suffix}");
    match (verdict, outcome) {
        (KeyVerdict::Valid, _) => logline::info(HEALTH_SOURCE, &format!("{key} is valid")),
        (KeyVerdict::Invalid, _) => {
            logline::error(HEALTH_SOURCE, &format!("{key}: API Key invalid"));
            logline::error(
                HEALTH_SOURCE,
                "No valid api key found, reporting the forwarder as unhealthy.",
            );
        }
        (_, Outcome::HttpError { status }) => logline::warn(
            HEALTH_SOURCE,
            &format!(
                "{key}: Unexpected response code from the apikey validation endpoint: {status}"
            ),
        ),
        (_, Outcome::Failed { message, .. }) => logline::warn(
            HEALTH_SOURCE,
            &format!("{key}: Unable to reach the API Key validation endpoint: {message}"),
        ),
        _ => {}
    }
}

fn reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// The forwarder's counters and the key check, shared with the state writer.
#[derive(Default)]
pub struct Shared {
    pub stats: Mutex<ForwarderStats>,
    pub key_check: Mutex<Option<KeyCheck>>,
}

/// Validates the key, then sends forever: the host metadata now and every
/// [`HOST_METADATA_INTERVAL`], a series every flush period, failed transactions again at the next
/// flush. `on_change` runs after each change to `shared`.
pub async fn run(
    config: Arc<Config>,
    shared: Arc<Shared>,
    on_change: impl Fn() + Send + Sync + 'static,
    containers: impl Fn() -> Vec<(String, Vec<String>)> + Send + Sync + 'static,
) {
    let intake = Arc::new(Intake::new(
        config.dd_url.as_deref(),
        &config.site,
        config.api_key.reveal(),
    ));
    let on_change = Arc::new(on_change);
    logline::info(
        "comp/forwarder/defaultforwarder/default_forwarder.go:424 in Start",
        &format!(
            "Forwarder started, sending to 1 endpoint(s) with 1 worker(s) each: \"{}\" (1 api key(s))",
            intake.url("")
        ),
    );
    if config
        .dd_url
        .as_deref()
        .is_some_and(|u| !u.starts_with("http://"))
    {
        logline::warn(
            "comp/forwarder/defaultforwarder/default_forwarder.go:430 in Start",
            "the stand-in forwarder only speaks plain http: every request will fail",
        );
    }
    {
        let (intake, shared, on_change, suffix) = (
            intake.clone(),
            shared.clone(),
            on_change.clone(),
            config.api_key.suffix(),
        );
        tokio::spawn(async move {
            let outcome = intake.validate().await;
            let verdict = verdict(&outcome);
            log_verdict(&suffix, verdict, &outcome);
            *shared.key_check.lock().unwrap_or_else(|p| p.into_inner()) = Some(KeyCheck {
                verdict,
                at: crate::timefmt::now(),
            });
            on_change();
        });
    }

    let flush = Duration::from_secs_f64(config.flush_secs);
    let mut flush_ticker = tokio::time::interval_at(tokio::time::Instant::now() + flush, flush);
    flush_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut metadata_ticker = tokio::time::interval(HOST_METADATA_INTERVAL);
    metadata_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry: VecDeque<Transaction> = VecDeque::new();
    let mut previous_ok = false;
    let mut flushes = 0u64;
    let mut seen_before: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        let now = crate::timefmt::now() as i64;
        let mut batch: Vec<(Transaction, bool)> = Vec::new();
        tokio::select! {
            _ = metadata_ticker.tick() => {
                batch.push((Transaction {
                    endpoint: HOST_METADATA,
                    body: compress(&host_metadata_payload(&config, now)),
                }, false));
            }
            _ = flush_ticker.tick() => {
                batch.extend(retry.drain(..).map(|tx| (tx, true)));
                let mut payload = series_payload(&config.hostname, now);
                let mut extra = system_series(&config.hostname, now, flushes > 0);
                let running = containers();
                for (id, tags) in &running {
                    extra.extend(container_series(&config.hostname, now, tags, seen_before.contains(id)));
                }
                seen_before = running.into_iter().map(|(id, _)| id).collect();
                flushes += 1;
                if let Some(series) = payload["series"].as_array_mut() {
                    series.extend(extra);
                }
                batch.push((Transaction {
                    endpoint: SERIES,
                    body: compress(&payload),
                }, false));
            }
        }
        for (tx, is_retry) in batch {
            let outcome = intake.send(&tx).await;
            log_outcome(&intake.url(tx.endpoint.path), &outcome, previous_ok);
            previous_ok = matches!(outcome, Outcome::Accepted { .. });
            let mut stats = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
            if is_retry {
                stats.retried += 1;
            }
            if record(&mut stats, tx.endpoint, &outcome) {
                retry.push_back(tx);
                if retry.len() > RETRY_QUEUE_CAP {
                    if let Some(evicted) = retry.pop_front() {
                        stats.dropped += 1;
                        *stats
                            .dropped_by_endpoint
                            .entry(evicted.endpoint.name.to_string())
                            .or_default() += 1;
                    }
                }
            }
            stats.retry_queue_size = retry.len() as u64;
            drop(stats);
            on_change();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::ZlibDecoder;
    use std::io::Read;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn series_carry_no_host_tags_and_host_metadata_does() {
        let v = series_payload("node-1", 1_700_000_000);
        assert_eq!(v["series"][0]["metric"], METRIC);
        assert_eq!(v["series"][0]["resources"][0]["name"], "node-1");
        assert_eq!(v["series"][0]["tags"].as_array().unwrap().len(), 1);

        let config = Config::from_lookup(|k| match k {
            "DD_API_KEY" => Some("0123456789abcdef0123456789abcdef".into()),
            "DD_TAGS" => Some("a:b c:d".into()),
            "DD_HOSTNAME" => Some("node-1".into()),
            _ => None,
        })
        .unwrap();
        let v = host_metadata_payload(&config, 1);
        assert_eq!(v["host-tags"]["system"], json!(["a:b", "c:d"]));
        assert_eq!(v["internalHostname"], "node-1");
        assert_eq!(v["meta"]["hostname"], "node-1");
    }

    #[test]
    fn system_and_container_series_carry_the_host_and_container_tags() {
        let first = system_series("node-1", 5, false);
        assert!(first.iter().all(|s| s["metric"] != "system.cpu.user"));
        let next = system_series("node-1", 5, true);
        assert!(next.iter().any(|s| s["metric"] == "system.cpu.user"));
        assert!(next.iter().all(|s| s["resources"][0]["name"] == "node-1"));
        let tags = vec![
            "container_name:job".to_string(),
            "short_image:metta".to_string(),
        ];
        let c = container_series("node-1", 5, &tags, true);
        let cpu = c
            .iter()
            .find(|s| s["metric"] == "docker.cpu.usage")
            .unwrap();
        assert_eq!(
            cpu["tags"],
            json!(["container_name:job", "short_image:metta", "runtime:docker"])
        );
        assert!(container_series("node-1", 5, &tags, false)
            .iter()
            .all(|s| s["metric"] != "docker.cpu.usage"));
    }

    #[test]
    fn payloads_are_zlib_compressed_json() {
        let payload = json!({"a": [1, 2, 3], "b": "x".repeat(1000)});
        let body = compress(&payload);
        assert!(body.len() < 200, "{}", body.len());
        let mut text = String::new();
        ZlibDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), payload);
    }

    #[test]
    fn the_validation_answer_decides_the_verdict() {
        let ok = Outcome::Accepted {
            status: 200,
            bytes: 0,
        };
        assert_eq!(verdict(&ok), KeyVerdict::Valid);
        assert_eq!(
            verdict(&Outcome::HttpError { status: 403 }),
            KeyVerdict::Invalid
        );
        assert_eq!(
            verdict(&Outcome::HttpError { status: 500 }),
            KeyVerdict::UnexpectedCode
        );
        assert_eq!(
            verdict(&Outcome::Accepted {
                status: 202,
                bytes: 0
            }),
            KeyVerdict::UnexpectedCode
        );
        assert_eq!(
            verdict(&offline("api.datadoghq.com")),
            KeyVerdict::Unreachable
        );
        assert_eq!(KeyVerdict::Valid.text(), "API Key valid");
        assert_eq!(KeyVerdict::Invalid.text(), "API Key invalid");
        assert!(KeyVerdict::UnexpectedCode.is_failure() && !KeyVerdict::Unreachable.is_failure());
    }

    #[test]
    fn counts_like_the_real_forwarder() {
        let mut s = ForwarderStats::default();
        let ok = |bytes| Outcome::Accepted { status: 202, bytes };
        assert!(!record(&mut s, SERIES, &ok(10)));
        assert!(!record(&mut s, HOST_METADATA, &ok(5)));
        assert_eq!((s.success, s.errors), (2, 0));
        assert_eq!(s.success_by_endpoint["series_v2"], 1);
        assert_eq!(s.success_bytes_by_endpoint["intake"], 5);

        // A 403 is an HTTP error and a drop, not an error, and is not retried.
        assert!(!record(&mut s, SERIES, &Outcome::HttpError { status: 403 }));
        assert_eq!((s.errors, s.http_errors, s.dropped), (0, 1, 1));
        assert_eq!(s.http_errors_by_code["403"], 1);
        assert_eq!(s.dropped_by_endpoint["series_v2"], 1);

        // A 500 is retried; so is no answer.
        assert!(record(&mut s, SERIES, &Outcome::HttpError { status: 500 }));
        assert!(record(&mut s, SERIES, &offline("x")));
        assert_eq!(
            (s.success, s.errors, s.http_errors, s.dropped),
            (2, 2, 2, 1)
        );
        assert_eq!(s.errors_by_type["ConnectionErrors"], 1);
        assert_eq!(s.requeued, 2);
    }

    /// Answers `status` to one request and hands back the request's head and body.
    async fn intake(status: u16) -> (String, tokio::task::JoinHandle<(String, Vec<u8>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let n = stream.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break (head, buf[end + 4..end + 4 + len].to_vec());
                    }
                }
            };
            let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\n{{}}");
            stream.write_all(answer.as_bytes()).await.unwrap();
            (head, body)
        });
        (base, task)
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[tokio::test]
    async fn posts_compressed_payloads_with_the_key() {
        let (base, task) = intake(202).await;
        let f = Intake::new(Some(&format!("{base}/")), "datadoghq.com", KEY);
        let tx = Transaction {
            endpoint: SERIES,
            body: compress(&json!({"series": []})),
        };
        assert_eq!(
            f.send(&tx).await,
            Outcome::Accepted {
                status: 202,
                bytes: tx.body.len() as u64
            }
        );
        let (head, body) = task.await.unwrap();
        let lower = head.to_ascii_lowercase();
        assert!(
            head.starts_with("POST /api/v2/series HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(lower.contains(&format!("\r\ndd-api-key: {KEY}")));
        assert!(lower.contains("\r\ncontent-encoding: deflate"));
        assert_eq!(body, tx.body);
    }

    #[tokio::test]
    async fn validates_with_a_get_and_reads_the_status() {
        let (base, task) = intake(403).await;
        let f = Intake::new(Some(&base), "datadoghq.com", KEY);
        assert_eq!(verdict(&f.validate().await), KeyVerdict::Invalid);
        let (head, _) = task.await.unwrap();
        assert!(
            head.starts_with(&format!("GET /api/v1/validate?api_key={KEY} HTTP/1.1\r\n")),
            "{head}"
        );

        // A port nothing listens on: unreachable, the key assumed valid.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let f = Intake::new(Some(&format!("http://127.0.0.1:{port}")), "x", KEY);
        assert_eq!(verdict(&f.validate().await), KeyVerdict::Unreachable);
        match f
            .send(&Transaction {
                endpoint: SERIES,
                body: vec![],
            })
            .await
        {
            Outcome::Failed { kind, .. } => assert_eq!(kind, "ConnectionErrors"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn without_an_intake_nothing_leaves_and_nothing_succeeds() {
        let f = Intake::new(None, "datadoghq.com", KEY);
        assert_eq!(verdict(&f.validate().await), KeyVerdict::Unreachable);
        let tx = Transaction {
            endpoint: HOST_METADATA,
            body: vec![1],
        };
        let outcome = f.send(&tx).await;
        let mut s = ForwarderStats::default();
        assert!(record(&mut s, HOST_METADATA, &outcome));
        assert_eq!((s.success, s.errors_by_type["ConnectionErrors"]), (0, 1));
    }
}
