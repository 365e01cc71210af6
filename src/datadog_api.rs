//! The one module that talks to Datadog's HTTP API (as `engine.rs` alone talks to Docker): the
//! requests `ddsky verify` makes, their answers as serde types named like the API's fields, and the
//! retry policy (429 waits `X-RateLimit-Reset`; 5xx, 408, timeouts and transport errors are retried
//! with backoff), all bounded by the caller's deadline. It decides nothing about nodes: that is
//! `verify`'s pure job.
//!
//! Layer: edge (see `src/layers.rs`): may use the core only.

use crate::key::{ApiKey, AppKey};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Bound on one request, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The first backoff after a 5xx or a timeout; doubled each time up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(16);
/// A 429 without a usable `X-RateLimit-Reset` waits this long.
const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(5);

/// The endpoints used, each with the permission (OAuth scope) Datadog requires for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Validate,
    Hosts,
    Query,
    LogsAggregate,
    // `ddsky dashboard`'s: the dashboard and the idle-GPU monitor.
    DashboardList,
    DashboardCreate,
    DashboardGet,
    DashboardUpdate,
    DashboardDelete,
    MonitorList,
    MonitorValidate,
    MonitorCreate,
    MonitorValidateExisting,
    MonitorUpdate,
    MonitorDelete,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Validate => "/api/v1/validate",
            Endpoint::Hosts => "/api/v1/hosts",
            Endpoint::Query => "/api/v1/query",
            Endpoint::LogsAggregate => "/api/v2/logs/analytics/aggregate",
            Endpoint::DashboardList | Endpoint::DashboardCreate => "/api/v1/dashboard",
            Endpoint::DashboardGet | Endpoint::DashboardUpdate | Endpoint::DashboardDelete => {
                "/api/v1/dashboard/{dashboard_id}"
            }
            Endpoint::MonitorList | Endpoint::MonitorCreate => "/api/v1/monitor",
            Endpoint::MonitorValidate => "/api/v1/monitor/validate",
            Endpoint::MonitorUpdate | Endpoint::MonitorDelete => "/api/v1/monitor/{monitor_id}",
            Endpoint::MonitorValidateExisting => "/api/v1/monitor/{monitor_id}/validate",
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            Endpoint::LogsAggregate
            | Endpoint::DashboardCreate
            | Endpoint::MonitorValidate
            | Endpoint::MonitorCreate
            | Endpoint::MonitorValidateExisting => "POST",
            Endpoint::DashboardUpdate | Endpoint::MonitorUpdate => "PUT",
            Endpoint::DashboardDelete | Endpoint::MonitorDelete => "DELETE",
            _ => "GET",
        }
    }

    /// The application key's permission the endpoint needs (none for the key validation).
    pub fn permission(self) -> Option<&'static str> {
        match self {
            Endpoint::Validate => None,
            Endpoint::Hosts => Some("hosts_read"),
            Endpoint::Query => Some("timeseries_query"),
            Endpoint::LogsAggregate => Some("logs_read_data"),
            Endpoint::DashboardList | Endpoint::DashboardGet => Some("dashboards_read"),
            Endpoint::DashboardCreate | Endpoint::DashboardUpdate | Endpoint::DashboardDelete => {
                Some("dashboards_write")
            }
            Endpoint::MonitorList
            | Endpoint::MonitorValidate
            | Endpoint::MonitorValidateExisting => Some("monitors_read"),
            Endpoint::MonitorCreate | Endpoint::MonitorUpdate | Endpoint::MonitorDelete => {
                Some("monitors_write")
            }
        }
    }

    pub fn label(self) -> String {
        format!("{} {}", self.method(), self.path())
    }
}

/// Why a call gave no usable answer. Never carries a key: the request's headers are not kept.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{endpoint} answered HTTP {status}{detail}", endpoint = endpoint.label(), detail = detail_suffix(detail))]
    Status {
        endpoint: Endpoint,
        status: u16,
        /// The `errors` of the body, or its first line when it is not Datadog's JSON (HTML).
        detail: String,
    },
    #[error("{endpoint}: no answer within {secs} s", endpoint = endpoint.label())]
    Timeout { endpoint: Endpoint, secs: u64 },
    #[error("cannot reach {base} ({detail}); check DD_SITE / DDSKY_API_URL and the network")]
    Transport { base: String, detail: String },
    /// The server's certificate was refused (src/tls.rs says why and what to do): no retry helps.
    #[error("cannot reach {base}: {detail}")]
    Untrusted { base: String, detail: String },
    #[error("{endpoint} answered something that is not the expected JSON ({detail})", endpoint = endpoint.label())]
    Decode { endpoint: Endpoint, detail: String },
    #[error("{endpoint} was throttled (HTTP 429) and the deadline comes before X-RateLimit-Reset", endpoint = endpoint.label())]
    Throttled { endpoint: Endpoint },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

// ---------------------------------------------------------------------------------------------
// The API's shapes (field names as Datadog spells them; every field optional or defaulted, unknown
// fields ignored).

/// `GET /api/v1/hosts`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct HostListResponse {
    #[serde(default)]
    pub host_list: Vec<Host>,
    pub total_matching: Option<i64>,
    pub total_returned: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Host {
    pub name: Option<String>,
    pub host_name: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Unix seconds.
    pub last_reported_time: Option<i64>,
    pub up: Option<bool>,
    #[serde(default)]
    pub tags_by_source: BTreeMap<String, Vec<String>>,
}

/// `GET /api/v1/query`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct MetricsQueryResponse {
    pub status: Option<String>,
    pub error: Option<String>,
    #[serde(default)]
    pub series: Vec<MetricsQueryMetadata>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct MetricsQueryMetadata {
    pub metric: Option<String>,
    pub scope: Option<String>,
    #[serde(default)]
    pub tag_set: Vec<String>,
    /// `[[ts_ms, value|null], ...]`; timestamps may come as floats.
    #[serde(default)]
    pub pointlist: Vec<Vec<Option<f64>>>,
    /// Seconds between points (despite the docs' "milliseconds").
    pub interval: Option<f64>,
}

/// `POST /api/v2/logs/analytics/aggregate` request.
#[derive(Debug, Clone, Serialize)]
pub struct LogsAggregateRequest {
    pub compute: Vec<LogsCompute>,
    pub filter: LogsQueryFilter,
    pub group_by: Vec<LogsGroupBy>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogsCompute {
    pub aggregation: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogsQueryFilter {
    pub query: String,
    pub from: String,
    pub to: String,
    pub indexes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogsGroupBy {
    pub facet: String,
    pub limit: u32,
    pub missing: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LogsAggregateResponse {
    #[serde(default)]
    pub meta: Option<LogsResponseMeta>,
    #[serde(default)]
    pub data: Option<LogsAggregateData>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LogsResponseMeta {
    pub status: Option<String>,
    #[serde(default)]
    pub warnings: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LogsAggregateData {
    #[serde(default)]
    pub buckets: Vec<LogsAggregateBucket>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LogsAggregateBucket {
    #[serde(default)]
    pub by: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub computes: BTreeMap<String, serde_json::Value>,
}

/// `{"errors": [...]}`, Datadog's error body.
#[derive(Debug, Deserialize)]
struct ApiErrorResponse {
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

/// What an error body says, in one line: the `errors` of Datadog's JSON, else the HTML's title or
/// first heading, else the first line of the text (bodies come back as HTML behind some proxies).
pub fn error_detail(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if let Ok(parsed) = serde_json::from_str::<ApiErrorResponse>(text) {
        let parts: Vec<String> = parsed
            .errors
            .iter()
            .map(|e| match e {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        if !parts.is_empty() {
            return clip(&parts.join("; "));
        }
    }
    let lower = text.to_ascii_lowercase();
    for tag in ["title", "h1"] {
        let open = format!("<{tag}>");
        if let Some(start) = lower.find(&open) {
            let rest = &text[start + open.len()..];
            if let Some(end) = rest.to_ascii_lowercase().find(&format!("</{tag}>")) {
                return clip(rest[..end].trim());
            }
        }
    }
    clip(text.lines().next().unwrap_or(""))
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Parses a JSON answer; a bare `NaN` in a point list (seen from some proxies) reads as null.
pub fn parse_json<T: for<'de> Deserialize<'de>>(
    endpoint: Endpoint,
    body: &[u8],
) -> Result<T, ApiError> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(first) => {
            let text = String::from_utf8_lossy(body);
            if text.contains("NaN") {
                if let Ok(v) = serde_json::from_str(&text.replace("NaN", "null")) {
                    return Ok(v);
                }
            }
            Err(ApiError::Decode {
                endpoint,
                detail: first.to_string(),
            })
        }
    }
}

/// Seconds to wait after a 429: `X-RateLimit-Reset` ("time in seconds until next reset").
pub fn throttle_wait(reset: Option<&str>) -> Duration {
    reset
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
        .unwrap_or(DEFAULT_THROTTLE_WAIT)
}

/// Whether an answer is worth asking again: 5xx and 408 (429 is handled on its own).
pub fn retryable(status: u16) -> bool {
    status >= 500 || status == 408
}

/// The backoff before retry number `attempt` (0-based): 1 s, 2 s, 4 s, ... up to 16 s.
pub fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << attempt.min(8))
        .min(MAX_BACKOFF)
}

// ---------------------------------------------------------------------------------------------
// The client.

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

pub struct Client {
    base: String,
    api_key: ApiKey,
    app_key: AppKey,
    http: HyperClient<Https, Full<Bytes>>,
    calls: AtomicU32,
    request_timeout: Duration,
}

impl Client {
    /// `base` is `https://api.<site>` (or DDSKY_API_URL, already checked by settings).
    pub fn new(base: &str, api_key: ApiKey, app_key: AppKey) -> Self {
        // The roots are chosen in one place for both HTTPS clients (src/tls.rs).
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::tls::client_config())
            .https_or_http()
            .enable_http1()
            .build();
        Client {
            base: base.trim_end_matches('/').to_owned(),
            api_key,
            app_key,
            http: HyperClient::builder(TokioExecutor::new()).build(connector),
            calls: AtomicU32::new(0),
            request_timeout: REQUEST_TIMEOUT,
        }
    }

    /// Bounds each request (answer included) by `limit` instead of [`REQUEST_TIMEOUT`].
    pub fn with_request_timeout(mut self, limit: Duration) -> Self {
        self.request_timeout = limit;
        self
    }

    /// HTTP requests sent so far (retries included).
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    /// `GET /api/v1/validate`: whether the API key (alone) is valid.
    pub async fn validate(&self, deadline: Instant) -> Result<bool, ApiError> {
        match self.call(Endpoint::Validate, "", None, deadline).await {
            Ok(_) => Ok(true),
            Err(ApiError::Status { status: 403, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every host carrying all of `filter`'s tags, paged by 1,000.
    pub async fn list_hosts(&self, filter: &str, deadline: Instant) -> Result<Vec<Host>, ApiError> {
        const PAGE: usize = 1000;
        let mut hosts = Vec::new();
        loop {
            let query = format!(
                "filter={}&count={PAGE}&start={}",
                percent_encode(filter),
                hosts.len()
            );
            let body = self.call(Endpoint::Hosts, &query, None, deadline).await?;
            let page: HostListResponse = parse_json(Endpoint::Hosts, &body)?;
            let returned = page.host_list.len();
            hosts.extend(page.host_list);
            let matching = page.total_matching.unwrap_or(0).max(0) as usize;
            if returned < PAGE || hosts.len() >= matching {
                return Ok(hosts);
            }
        }
    }

    /// `GET /api/v1/query` over `[from, to]` (Unix seconds).
    pub async fn query(
        &self,
        query: &str,
        from: i64,
        to: i64,
        deadline: Instant,
    ) -> Result<MetricsQueryResponse, ApiError> {
        let params = format!("from={from}&to={to}&query={}", percent_encode(query));
        let body = self.call(Endpoint::Query, &params, None, deadline).await?;
        let answer: MetricsQueryResponse = parse_json(Endpoint::Query, &body)?;
        if answer.status.as_deref().is_some_and(|s| s != "ok") {
            return Err(ApiError::Status {
                endpoint: Endpoint::Query,
                status: 200,
                detail: answer.error.unwrap_or_else(|| "status is not ok".into()),
            });
        }
        Ok(answer)
    }

    pub async fn logs_aggregate(
        &self,
        request: &LogsAggregateRequest,
        deadline: Instant,
    ) -> Result<LogsAggregateResponse, ApiError> {
        let json = serde_json::to_vec(request).unwrap_or_default();
        let body = self
            .call(Endpoint::LogsAggregate, "", Some(json), deadline)
            .await?;
        parse_json(Endpoint::LogsAggregate, &body)
    }

    /// One call with its retries: 429 waits what `X-RateLimit-Reset` says, 5xx / 408 / timeouts /
    /// transport errors back off; nothing waits past `deadline`.
    async fn call(
        &self,
        endpoint: Endpoint,
        query: &str,
        body: Option<Vec<u8>>,
        deadline: Instant,
    ) -> Result<Bytes, ApiError> {
        self.call_at(
            endpoint,
            endpoint.path(),
            query,
            body,
            Retry::Always,
            deadline,
        )
        .await
    }

    /// [`Self::call`] on `path` (the endpoint's with its ids filled in). With [`Retry::ThrottleOnly`]
    /// only a 429 (which Datadog answers before doing anything) is asked again: a 5xx or a timeout
    /// may have done the write, so the caller looks before it tries again.
    async fn call_at(
        &self,
        endpoint: Endpoint,
        path: &str,
        query: &str,
        body: Option<Vec<u8>>,
        retry: Retry,
        deadline: Instant,
    ) -> Result<Bytes, ApiError> {
        let mut attempt = 0u32;
        loop {
            let outcome = self
                .once(endpoint, path, query, body.clone(), deadline)
                .await;
            // A refused certificate stays refused: no retry.
            if let Err(e @ ApiError::Untrusted { .. }) = outcome {
                return Err(e);
            }
            if retry == Retry::ThrottleOnly {
                match outcome {
                    Ok((status, _, body)) if retryable(status) => {
                        return Err(ApiError::Status {
                            endpoint,
                            status,
                            detail: error_detail(&body),
                        })
                    }
                    Err(e) => return Err(e),
                    _ => {}
                }
            }
            let wait = match &outcome {
                Ok((200..=299, _, body)) => return Ok(body.clone()),
                Ok((429, reset, _)) => {
                    let wait = throttle_wait(reset.as_deref());
                    if Instant::now() + wait > deadline {
                        return Err(ApiError::Throttled { endpoint });
                    }
                    tracing::warn!(
                        "Datadog throttled {} (HTTP 429): waiting {} s as X-RateLimit-Reset says",
                        endpoint.label(),
                        wait.as_secs_f64().ceil()
                    );
                    wait
                }
                Ok((status, _, body)) if retryable(*status) => {
                    tracing::warn!(
                        "{} answered HTTP {status}{}; retrying",
                        endpoint.label(),
                        detail_suffix(&error_detail(body))
                    );
                    backoff(attempt)
                }
                Ok((status, _, body)) => {
                    return Err(ApiError::Status {
                        endpoint,
                        status: *status,
                        detail: error_detail(body),
                    })
                }
                Err(e) => {
                    tracing::warn!("{e}; retrying");
                    backoff(attempt)
                }
            };
            if Instant::now() + wait >= deadline {
                return match outcome {
                    Ok((status, _, body)) => Err(ApiError::Status {
                        endpoint,
                        status,
                        detail: error_detail(&body),
                    }),
                    Err(e) => Err(e),
                };
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One HTTP exchange: (status, X-RateLimit-Reset, body).
    async fn once(
        &self,
        endpoint: Endpoint,
        path: &str,
        query: &str,
        body: Option<Vec<u8>>,
        deadline: Instant,
    ) -> Result<(u16, Option<String>, Bytes), ApiError> {
        let url = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        };
        let mut request = hyper::Request::builder()
            .method(endpoint.method())
            .uri(url.as_str())
            .header("Accept", "application/json")
            .header("User-Agent", concat!("ddsky/", env!("CARGO_PKG_VERSION")))
            .header("DD-API-KEY", self.api_key.expose());
        if endpoint != Endpoint::Validate {
            request = request.header("DD-APPLICATION-KEY", self.app_key.expose());
        }
        if body.is_some() {
            request = request.header("Content-Type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ApiError::Transport {
                base: self.base.clone(),
                detail: e.to_string(),
            })?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("{} {}", endpoint.label(), short_query(query));
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = self.request_timeout.min(left.max(Duration::from_secs(1)));
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                // A refused certificate in words (src/tls.rs), else the chain of causes once each.
                let base = self.base.clone();
                match crate::tls::refusal(&e) {
                    Some(detail) => ApiError::Untrusted { base, detail },
                    None => ApiError::Transport {
                        base,
                        detail: crate::error_chain::one_line(&e),
                    },
                }
            })?;
            let status = response.status().as_u16();
            let reset = response
                .headers()
                .get("x-ratelimit-reset")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| ApiError::Transport {
                    base: self.base.clone(),
                    detail: e.to_string(),
                })?
                .to_bytes();
            tracing::trace!(status, bytes = body.len(), "{} answered", endpoint.label());
            Ok((status, reset, body))
        };
        match tokio::time::timeout(limit, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::Timeout {
                endpoint,
                secs: limit.as_secs(),
            }),
        }
    }
}

/// Which failures [`Client::call_at`] asks again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// 429, 5xx, 408, timeouts, transport errors: for reads and for writes that are safe to repeat.
    Always,
    /// 429 alone: for creates, where a repeat after a 5xx or a timeout could make a second copy.
    ThrottleOnly,
}

/// A dashboard as `GET /api/v1/dashboard` lists it (no tags, no widgets).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct DashboardSummary {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub title: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct DashboardSummaryPage {
    #[serde(default)]
    dashboards: Vec<DashboardSummary>,
}

/// A monitor as Datadog answers it: its id and the fields ddsky compares, kept as JSON.
#[derive(Debug, Clone)]
pub struct MonitorFound {
    pub id: i64,
    pub name: String,
    pub tags: Vec<String>,
    pub body: serde_json::Value,
}

impl MonitorFound {
    fn from_json(endpoint: Endpoint, body: serde_json::Value) -> Result<Self, ApiError> {
        let id = body["id"].as_i64().ok_or_else(|| ApiError::Decode {
            endpoint,
            detail: "a monitor without a numeric id".into(),
        })?;
        Ok(MonitorFound {
            id,
            name: body["name"].as_str().unwrap_or_default().to_owned(),
            tags: body["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
            body,
        })
    }
}

/// The id Datadog gave a dashboard it answered.
fn dashboard_id(endpoint: Endpoint, body: &serde_json::Value) -> Result<String, ApiError> {
    body["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::Decode {
            endpoint,
            detail: "a dashboard without an id".into(),
        })
}

impl Client {
    /// Every dashboard of the organization (summaries), paged by 100 until a short page: whether
    /// the server caps an unpaged list is not documented. A failure is an error, never "none".
    pub async fn list_dashboards(
        &self,
        deadline: Instant,
    ) -> Result<Vec<DashboardSummary>, ApiError> {
        const PAGE: usize = 100;
        let mut all: Vec<DashboardSummary> = Vec::new();
        loop {
            let query = format!("count={PAGE}&start={}", all.len());
            let body = self
                .call(Endpoint::DashboardList, &query, None, deadline)
                .await?;
            let page: DashboardSummaryPage = parse_json(Endpoint::DashboardList, &body)?;
            let returned = page.dashboards.len();
            all.extend(page.dashboards);
            if returned < PAGE {
                return Ok(all);
            }
        }
    }

    pub async fn get_dashboard(
        &self,
        id: &str,
        deadline: Instant,
    ) -> Result<serde_json::Value, ApiError> {
        let path = format!("/api/v1/dashboard/{}", percent_encode(id));
        let body = self
            .call_at(
                Endpoint::DashboardGet,
                &path,
                "",
                None,
                Retry::Always,
                deadline,
            )
            .await?;
        parse_json(Endpoint::DashboardGet, &body)
    }

    /// `POST /api/v1/dashboard`: the new dashboard's id. Not repeated after a 5xx or a timeout.
    pub async fn create_dashboard(
        &self,
        definition: &serde_json::Value,
        deadline: Instant,
    ) -> Result<String, ApiError> {
        let created = self
            .create(Endpoint::DashboardCreate, definition, deadline)
            .await?;
        dashboard_id(Endpoint::DashboardCreate, &created)
    }

    /// A create's `POST`, answered as JSON. Only a throttle is retried: after a 5xx or a timeout
    /// the object may exist, and the caller lists again before it creates again.
    async fn create(
        &self,
        endpoint: Endpoint,
        definition: &serde_json::Value,
        deadline: Instant,
    ) -> Result<serde_json::Value, ApiError> {
        let json = serde_json::to_vec(definition).unwrap_or_default();
        let body = self
            .call_at(
                endpoint,
                endpoint.path(),
                "",
                Some(json),
                Retry::ThrottleOnly,
                deadline,
            )
            .await?;
        parse_json(endpoint, &body)
    }

    /// `PUT /api/v1/dashboard/{id}`: replaces the whole dashboard (safe to repeat).
    pub async fn update_dashboard(
        &self,
        id: &str,
        definition: &serde_json::Value,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        let path = format!("/api/v1/dashboard/{}", percent_encode(id));
        let json = serde_json::to_vec(definition).unwrap_or_default();
        self.call_at(
            Endpoint::DashboardUpdate,
            &path,
            "",
            Some(json),
            Retry::Always,
            deadline,
        )
        .await?;
        Ok(())
    }

    /// `DELETE /api/v1/dashboard/{id}`; a 404 (already gone) is not an error.
    pub async fn delete_dashboard(&self, id: &str, deadline: Instant) -> Result<(), ApiError> {
        let path = format!("/api/v1/dashboard/{}", percent_encode(id));
        self.delete(Endpoint::DashboardDelete, &path, deadline)
            .await
    }

    /// One DELETE, retried; a 404 means it is gone already, which is what was asked.
    async fn delete(
        &self,
        endpoint: Endpoint,
        path: &str,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        match self
            .call_at(endpoint, path, "", None, Retry::Always, deadline)
            .await
        {
            Ok(_) | Err(ApiError::Status { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The monitors carrying the monitor tag `tag` whose name contains `name` (Datadog's filter;
    /// the caller matches exactly), paged by 1,000. A failure is an error, never "none".
    pub async fn list_monitors(
        &self,
        tag: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<Vec<MonitorFound>, ApiError> {
        const PAGE: usize = 1000;
        let mut all = Vec::new();
        for page in 0.. {
            let query = format!(
                "monitor_tags={}&name={}&page={page}&page_size={PAGE}",
                percent_encode(tag),
                percent_encode(name)
            );
            let body = self
                .call(Endpoint::MonitorList, &query, None, deadline)
                .await?;
            let monitors: Vec<serde_json::Value> = parse_json(Endpoint::MonitorList, &body)?;
            let returned = monitors.len();
            for m in monitors {
                all.push(MonitorFound::from_json(Endpoint::MonitorList, m)?);
            }
            if returned < PAGE {
                break;
            }
        }
        Ok(all)
    }

    /// Datadog's own checks of a monitor before it is made (`POST /api/v1/monitor/validate`) or
    /// changed (`POST /api/v1/monitor/{id}/validate`): a 400 names what is wrong.
    pub async fn validate_monitor(
        &self,
        existing: Option<i64>,
        definition: &serde_json::Value,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        let json = serde_json::to_vec(definition).unwrap_or_default();
        let (endpoint, path) = match existing {
            Some(id) => (
                Endpoint::MonitorValidateExisting,
                format!("/api/v1/monitor/{id}/validate"),
            ),
            None => (
                Endpoint::MonitorValidate,
                Endpoint::MonitorValidate.path().to_owned(),
            ),
        };
        self.call_at(endpoint, &path, "", Some(json), Retry::Always, deadline)
            .await?;
        Ok(())
    }

    /// `POST /api/v1/monitor`: the new monitor's id. Not repeated after a 5xx or a timeout.
    pub async fn create_monitor(
        &self,
        definition: &serde_json::Value,
        deadline: Instant,
    ) -> Result<i64, ApiError> {
        let created = self
            .create(Endpoint::MonitorCreate, definition, deadline)
            .await?;
        Ok(MonitorFound::from_json(Endpoint::MonitorCreate, created)?.id)
    }

    /// `PUT /api/v1/monitor/{id}` with the whole wanted state (safe to repeat).
    pub async fn update_monitor(
        &self,
        id: i64,
        definition: &serde_json::Value,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        let path = format!("/api/v1/monitor/{id}");
        let json = serde_json::to_vec(definition).unwrap_or_default();
        self.call_at(
            Endpoint::MonitorUpdate,
            &path,
            "",
            Some(json),
            Retry::Always,
            deadline,
        )
        .await?;
        Ok(())
    }

    /// `DELETE /api/v1/monitor/{id}`; a 404 (already gone) is not an error.
    pub async fn delete_monitor(&self, id: i64, deadline: Instant) -> Result<(), ApiError> {
        let path = format!("/api/v1/monitor/{id}");
        self.delete(Endpoint::MonitorDelete, &path, deadline).await
    }
}

fn short_query(query: &str) -> String {
    query.chars().take(300).collect()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_read_as_json_or_html() {
        assert_eq!(error_detail(br#"{"errors":["Forbidden"]}"#), "Forbidden");
        assert_eq!(
            error_detail(br#"{"errors":["API key required"]}"#),
            "API key required"
        );
        assert_eq!(
            error_detail(
                b"<html><body><h1>403 Forbidden</h1>Request forbidden by administrative rules.</body></html>"
            ),
            "403 Forbidden"
        );
        assert_eq!(
            error_detail(b"<!DOCTYPE html><html><head><title>Forbidden</title></head></html>"),
            "Forbidden"
        );
        assert_eq!(error_detail(b""), "");
        assert_eq!(
            error_detail(br#"{"errors":["a"],"status":"error","code":403}"#),
            "a"
        );
    }

    #[test]
    fn recorded_query_answer_parses_with_floats_and_nulls() {
        let body = br#"{"status":"ok","resp_version":1,"res_type":"time_series","query":"system.cpu.idle{*}","message":"",
 "from_date":1641343852000,"to_date":1641430252000,"group_by":[],"times":[],"values":[],
 "series":[{"metric":"system.cpu.idle","display_name":"system.cpu.idle","expression":"system.cpu.idle{*}","scope":"*",
  "tag_set":[],"aggr":null,"attributes":{},"query_index":0,"interval":300,"length":288,"start":1641344100000,
  "end":1641430499000,"pointlist":[[1641344100000,91.458],[1641344400000.0,null],[1641344700000, NaN]],
  "unit":[{"family":"percentage","name":"percent","short_name":"%","plural":"percent","scale_factor":1,"id":17},null]}]}"#;
        let r: MetricsQueryResponse = parse_json(Endpoint::Query, body).unwrap();
        let s = &r.series[0];
        assert_eq!(s.interval, Some(300.0));
        assert_eq!(s.pointlist[0], vec![Some(1641344100000.0), Some(91.458)]);
        assert_eq!(s.pointlist[1], vec![Some(1641344400000.0), None]);
        assert_eq!(s.pointlist[2][1], None);
        assert!(parse_json::<MetricsQueryResponse>(Endpoint::Query, b"<html>").is_err());
    }

    #[test]
    fn recorded_hosts_answer_parses() {
        let body = br#"{"exact_total_matching":true,"total_matching":41,"total_returned":41,"host_list":[
 {"name":"control-0","host_name":"control-0","id":1588212437,"last_reported_time":1641906477,"up":true,
  "is_muted":false,"mute_timeout":null,"apps":["cloudfoundry","agent","ntp"],"sources":["agent"],
  "aliases":["control-0","vm-5200.internal"],"tags_by_source":{"Datadog":["bosh_job:control","zone:us-central1-a","host:control-0"]},
  "metrics":{"load":0.32003334,"iowait":0.079276726,"cpu":29.41709},
  "meta":{"agent_version":"7.32.4","platform":"linux","machine":"amd64","cpuCores":1,"agent_checks":[["ntp","ntp","ntp:abc4dd01ed069179","OK","",""]]}},
 {"name":"45d792c2-1da6-4719-7a44-aa3d","last_reported_time":1641906332,"up":true,"apps":["agent"],
  "metrics":{"load":null,"iowait":null,"cpu":null},"sources":["agent"]}]}"#;
        let r: HostListResponse = parse_json(Endpoint::Hosts, body).unwrap();
        assert_eq!(r.host_list.len(), 2);
        assert_eq!(
            r.host_list[0].tags_by_source["Datadog"][0],
            "bosh_job:control"
        );
        assert_eq!(r.host_list[1].last_reported_time, Some(1641906332));
        assert!(r.host_list[1].tags_by_source.is_empty());
    }

    #[test]
    fn logs_answers_parse_and_requests_serialise() {
        let r: LogsAggregateResponse = parse_json(
            Endpoint::LogsAggregate,
            br#"{"meta":{"elapsed":3,"request_id":"x","status":"done"},"data":{"buckets":[{"by":{"host":"h1"},"computes":{"c0":1234}}]}}"#,
        )
        .unwrap();
        let b = &r.data.unwrap().buckets[0];
        assert_eq!(b.by["host"], "h1");
        assert_eq!(b.computes["c0"], 1234);
        let empty: LogsAggregateResponse = parse_json(
            Endpoint::LogsAggregate,
            br#"{"meta":{"status":"done"},"data":{"buckets":[]}}"#,
        )
        .unwrap();
        assert!(empty.data.unwrap().buckets.is_empty());
    }

    #[test]
    fn retry_policy() {
        assert_eq!(throttle_wait(Some("7")), Duration::from_secs(7));
        assert_eq!(throttle_wait(Some(" 2.5 ")), Duration::from_millis(2500));
        assert_eq!(throttle_wait(Some("soon")), DEFAULT_THROTTLE_WAIT);
        assert_eq!(throttle_wait(None), DEFAULT_THROTTLE_WAIT);
        assert!(retryable(500) && retryable(503) && retryable(408));
        assert!(!retryable(403) && !retryable(400) && !retryable(429));
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn errors_name_the_endpoint_and_never_a_key() {
        let e = ApiError::Status {
            endpoint: Endpoint::Hosts,
            status: 403,
            detail: "Forbidden".into(),
        };
        assert_eq!(
            e.to_string(),
            "GET /api/v1/hosts answered HTTP 403: Forbidden"
        );
        assert_eq!(Endpoint::LogsAggregate.permission(), Some("logs_read_data"));
        assert_eq!(
            Endpoint::DashboardCreate.permission(),
            Some("dashboards_write")
        );
        assert_eq!(
            Endpoint::DashboardList.permission(),
            Some("dashboards_read")
        );
        assert_eq!(Endpoint::MonitorCreate.permission(), Some("monitors_write"));
        assert_eq!(
            Endpoint::MonitorValidate.permission(),
            Some("monitors_read")
        );
        assert_eq!(
            Endpoint::MonitorUpdate.label(),
            "PUT /api/v1/monitor/{monitor_id}"
        );
        assert_eq!(
            Endpoint::MonitorValidateExisting.label(),
            "POST /api/v1/monitor/{monitor_id}/validate"
        );
        assert_eq!(
            Endpoint::DashboardDelete.label(),
            "DELETE /api/v1/dashboard/{dashboard_id}"
        );
    }
}
