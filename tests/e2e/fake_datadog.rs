//! A fake of Datadog's public API on loopback for `ddsky verify`, answering from what agents sent to
//! the test [`Intake`](crate::common::Intake) (series, host metadata, logs) or from a synthesized
//! world built from the same payload shapes. Like Datadog: host tags (from host metadata) apply
//! server-side to the host's series and logs; `GET /api/v1/hosts` filters by tags and pages;
//! `GET /api/v1/query` groups by tags and answers float timestamps, null points and `interval` in
//! seconds; `POST /api/v2/logs/analytics/aggregate` counts by host; reads need both keys, a wrong
//! key is a 403 `{"errors":["Forbidden"]}`; a key without `logs_read_data` gets a 403 on logs;
//! throttling answers 429 with `X-RateLimit-*` headers.
//!
//! For `ddsky dashboard` it keeps dashboards and monitors as Datadog does (`dashboards` module
//! below): create, get, list (paged; a dashboard summary has no widgets and no tags), update,
//! soft delete, monitor search, and monitor validation with Datadog's semantic check (the critical
//! threshold must equal the query's number); answers add read-only fields and defaults, and a
//! metric monitor comes back as `metric alert`. It can refuse a permission (403 "Forbidden"), fail
//! every list (500), and answer a create only after a stall (the create done, the answer late).
//! Every request is recorded and checked against the vendored OpenAPI spec
//! (tests/fixtures/datadog-openapi) with tests/e2e/openapi_check.py when the fake is dropped, in
//! every test that starts one; [`FakeDatadog::check_against_spec`] checks those so far mid-test.

pub mod dashboards;

use crate::common::Received;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An application key of the right shape (40 hex). Every test scans output for it.
pub const APP_KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
pub const OTHER_APP_KEY: &str = "0000000000111111111122222222223333333333";

#[derive(Clone, Debug)]
pub struct Point {
    pub host: String,
    pub metric: String,
    pub tags: Vec<String>,
    /// Unix seconds.
    pub ts: f64,
    pub value: f64,
}

#[derive(Clone, Debug)]
pub struct LogEntry {
    pub host: String,
    pub ts_ms: f64,
    pub tags: Vec<String>,
}

/// What Datadog knows: host tags by host, points, log entries.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub host_tags: BTreeMap<String, Vec<String>>,
    pub points: Vec<Point>,
    pub logs: Vec<LogEntry>,
}

impl World {
    /// What the agents sent to the intake.
    pub fn from_intake(received: &[Received]) -> World {
        let mut w = World::default();
        for r in received {
            let body = gunzip(&r.body);
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                continue;
            };
            if r.target.starts_with("/api/v2/series") {
                w.add_series_payload(&v);
            } else if r.target.starts_with("/intake/") {
                w.add_host_metadata(&v);
            } else if r.target.starts_with("/api/v2/logs") {
                w.add_logs_payload(&v);
            }
        }
        w
    }

    /// A series payload as the agent posts it to `/api/v2/series` (JSON form).
    pub fn add_series_payload(&mut self, v: &Value) {
        for s in v["series"].as_array().into_iter().flatten() {
            let host = s["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["type"] == "host")
                .and_then(|r| r["name"].as_str())
                .unwrap_or("")
                .to_owned();
            let tags: Vec<String> = s["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(String::from))
                .collect();
            for p in s["points"].as_array().into_iter().flatten() {
                self.points.push(Point {
                    host: host.clone(),
                    metric: s["metric"].as_str().unwrap_or("").to_owned(),
                    tags: tags.clone(),
                    ts: p["timestamp"].as_f64().unwrap_or(0.0),
                    value: p["value"].as_f64().unwrap_or(0.0),
                });
            }
        }
    }

    /// A v5 host-metadata payload: the host tags.
    pub fn add_host_metadata(&mut self, v: &Value) {
        let Some(host) = v["internalHostname"].as_str() else {
            return;
        };
        let tags = v["host-tags"]["system"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(String::from))
            .collect();
        self.host_tags.insert(host.to_owned(), tags);
    }

    /// A logs payload: a JSON array of `{message, status, timestamp, hostname, service, ddsource,
    /// ddtags}`.
    pub fn add_logs_payload(&mut self, v: &Value) {
        for e in v.as_array().into_iter().flatten() {
            let mut tags: Vec<String> = e["ddtags"]
                .as_str()
                .unwrap_or("")
                .split(',')
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect();
            for (k, f) in [
                ("service", "service"),
                ("source", "ddsource"),
                ("status", "status"),
            ] {
                if let Some(val) = e[f].as_str() {
                    tags.push(format!("{k}:{val}"));
                }
            }
            self.logs.push(LogEntry {
                host: e["hostname"].as_str().unwrap_or("").to_owned(),
                ts_ms: e["timestamp"].as_f64().unwrap_or(0.0),
                tags,
            });
        }
    }

    /// A point's tags as the backend sees them: its own, `host:`, and the host's tags.
    fn tags_of(&self, host: &str, own: &[String]) -> BTreeSet<String> {
        let mut all: BTreeSet<String> = own.iter().cloned().collect();
        all.insert(format!("host:{host}"));
        all.extend(self.host_tags.get(host).cloned().unwrap_or_default());
        all
    }

    /// `nodes` nodes of run `run`, each sending what a healthy agent sends (the stand-in's payload
    /// shapes) every 15 s over the last 10 minutes, with a job container `metta` and log lines;
    /// `silent` ranks stopped 11 minutes ago, `absent` ranks never started.
    pub fn synthetic(nodes: u32, run: &str, now: f64, silent: &[u32], absent: &[u32]) -> World {
        let mut w = World::default();
        for rank in (0..nodes).filter(|r| !absent.contains(r)) {
            let host = format!("ip-10-0-{}-{}", rank / 250, rank % 250);
            w.add_host_metadata(&json!({
                "internalHostname": host,
                "host-tags": {"system": [
                    "env:production", "service:skypilot-worker", format!("metta_run_id:{run}"),
                    format!("skypilot_node_rank:{rank}"), format!("skypilot_num_nodes:{nodes}"),
                    "skypilot_cluster:synth"
                ]},
            }));
            let end = if silent.contains(&rank) {
                now - 660.0
            } else {
                now
            };
            let mut t = end - 600.0;
            while t <= end {
                let ts = t as i64;
                let container_tags = json!([
                    format!("container_id:{:064x}", rank),
                    "container_name:metta-job",
                    "docker_image:ecr.example/ml/metta:latest",
                    "image_name:ecr.example/ml/metta",
                    "image_tag:latest",
                    "short_image:metta",
                    "runtime:docker"
                ]);
                let gauge = |m: &str, tags: Value| {
                    json!({"metric": m, "type": 3,
                    "points": [{"timestamp": ts, "value": 1.0}],
                    "resources": [{"name": host, "type": "host"}], "tags": tags})
                };
                w.add_series_payload(&json!({"series": [
                    gauge("datadog.agent.running", json!(["version:7.70.0"])),
                    gauge("system.cpu.user", json!([])),
                    gauge("system.load.1", json!([])),
                    gauge("docker.cpu.usage", container_tags.clone()),
                    gauge("docker.mem.rss", container_tags),
                ]}));
                w.add_logs_payload(&json!([{
                    "message": "step 1 loss 0.5", "status": "info", "timestamp": ts * 1000,
                    "hostname": host, "service": "metta", "ddsource": "metta",
                    "ddtags": "container_name:metta-job,short_image:metta"
                }]));
                t += 15.0;
            }
        }
        w
    }
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        if flate2::read::GzDecoder::new(body)
            .read_to_end(&mut plain)
            .is_ok()
        {
            return plain;
        }
    }
    body.to_vec()
}

/// The fake's behaviour.
#[derive(Clone, Debug)]
pub struct Behaviour {
    pub api_key: String,
    pub app_key: String,
    /// Whether the application key has `logs_read_data`.
    pub logs_read_data: bool,
    /// Answer this many requests with 429 first.
    pub throttle_first: u32,
    /// Then this many with 503 (an HTML body, as a load balancer sends).
    pub fail_first: u32,
    /// The application key lacks this permission (`dashboards_write`, `monitors_write`, ...).
    pub missing_permission: Option<&'static str>,
    /// Every dashboard or monitor list answers 500.
    pub fail_lists: bool,
    /// This many creates (dashboard or monitor) are done, then answered only after `stall`.
    pub stall_creates: u32,
    pub stall: Duration,
    /// Monitor validation answers 400 with this text (a body Datadog's own checks refuse).
    pub refuse_monitor_validation: Option<&'static str>,
}

impl Behaviour {
    pub fn new() -> Self {
        Behaviour {
            api_key: crate::common::KEY.into(),
            app_key: APP_KEY.into(),
            logs_read_data: true,
            throttle_first: 0,
            fail_first: 0,
            missing_permission: None,
            fail_lists: false,
            stall_creates: 0,
            stall: Duration::ZERO,
            refuse_monitor_validation: None,
        }
    }
}

type Source = Arc<dyn Fn() -> World + Send + Sync>;

pub struct FakeDatadog {
    pub port: u16,
    calls: Arc<Mutex<Vec<(String, u16)>>>,
    requests: Arc<Mutex<Vec<Value>>>,
    /// How many of `requests` were checked against the spec already (the rest are at drop).
    checked: Mutex<usize>,
    /// The dashboards and monitors the fake keeps: tests seed and read them.
    pub store: Arc<Mutex<crate::fake_datadog::dashboards::Store>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

/// Every request a test made is checked against Datadog's spec, whether the test asked or not:
/// a test that ends without a failure fails here if one request did not fit.
impl Drop for FakeDatadog {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.unchecked() > 0 {
            self.check_against_spec();
        }
    }
}

impl FakeDatadog {
    pub fn start(behaviour: Behaviour, source: impl Fn() -> World + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let store = Arc::new(Mutex::new(dashboards::Store::default()));
        let state = Arc::new(Mutex::new(behaviour));
        let source: Source = Arc::new(source);
        let shared = Shared {
            state: state.clone(),
            source,
            log: calls.clone(),
            requests: requests.clone(),
            store: store.clone(),
        };
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || serve(conn, &shared));
            }
        });
        FakeDatadog {
            port,
            calls,
            requests,
            checked: Mutex::new(0),
            store,
            behaviour: state,
        }
    }

    fn unchecked(&self) -> usize {
        self.requests.lock().unwrap().len() - *self.checked.lock().unwrap()
    }

    /// Changes the behaviour from now on.
    pub fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.behaviour.lock().unwrap());
    }

    /// The requests that changed something (POST, PUT, DELETE; validation excluded).
    pub fn writes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .map(|(c, _)| c)
            .filter(|c| !c.starts_with("GET ") && !c.contains("/validate"))
            .collect()
    }

    /// Checks every request made so far against Datadog's OpenAPI spec (method, path, query
    /// parameters, body; an undeclared field is an error). Panics with the checker's report.
    /// Those made after the last call are checked again when the fake is dropped.
    pub fn check_against_spec(&self) {
        let requests = self.requests.lock().unwrap().clone();
        assert!(!requests.is_empty(), "no request to check");
        *self.checked.lock().unwrap() = requests.len();
        let venv = crate::common::tool_dir("DDSKY_OPENAPI_VENV", "openapi-venv");
        let python = venv.join("bin/python");
        assert!(
            python.exists(),
            "no OpenAPI checker's venv at {} (scripts/test-tools.sh makes it; or set DDSKY_OPENAPI_VENV)",
            venv.display()
        );
        let specs = crate::common::repo().join("tests/fixtures/datadog-openapi");
        let mut child = std::process::Command::new(python)
            .arg(crate::common::repo().join("tests/e2e/openapi_check.py"))
            .arg(specs.join("dashboards-monitors.json"))
            .arg(specs.join("verify.json"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(Value::Array(requests).to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "requests that do not fit Datadog's OpenAPI spec:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `DDSKY_API_URL`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request: `METHOD /path?query` and the status answered.
    pub fn calls(&self) -> Vec<(String, u16)> {
        self.calls.lock().unwrap().clone()
    }
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<Behaviour>>,
    source: Source,
    log: Arc<Mutex<Vec<(String, u16)>>>,
    requests: Arc<Mutex<Vec<Value>>>,
    store: Arc<Mutex<dashboards::Store>>,
}

fn serve(mut conn: std::net::TcpStream, shared: &Shared) {
    let Shared {
        state,
        source,
        log,
        requests,
        store,
    } = shared;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params: BTreeMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), decode(v)))
        .collect();

    requests.lock().unwrap().push(json!({
        "method": method, "target": target,
        "body": if body.is_empty() { Value::Null } else { Value::String(String::from_utf8_lossy(&body).into_owned()) },
    }));
    let (status, extra, answer, stall) = if dashboards::handles(path) {
        dashboards::answer(state, store, &method, path, &params, &headers, &body)
    } else {
        let (status, extra, answer) =
            answer(state, source, &method, path, &params, &headers, &body);
        (status, extra, answer, Duration::ZERO)
    };
    log.lock()
        .unwrap()
        .push((format!("{method} {target}"), status));
    // The work is done; the answer comes late (a create the client gave up waiting for).
    std::thread::sleep(stall);
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        500 => "Internal Server Error",
        404 => "Not Found",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let content_type = if answer.starts_with('<') {
        "text/html"
    } else {
        "application/json"
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{answer}",
        answer.len()
    );
}

fn forbidden() -> (u16, String, String) {
    (403, String::new(), r#"{"errors":["Forbidden"]}"#.into())
}

fn answer(
    state: &Mutex<Behaviour>,
    source: &Source,
    method: &str,
    path: &str,
    params: &BTreeMap<String, String>,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> (u16, String, String) {
    let behaviour = {
        let mut b = state.lock().unwrap();
        if b.throttle_first > 0 {
            b.throttle_first -= 1;
            return (
                429,
                "X-RateLimit-Limit: 60\r\nX-RateLimit-Period: 60\r\nX-RateLimit-Remaining: 0\r\nX-RateLimit-Reset: 2\r\nX-RateLimit-Name: metrics_query\r\n".into(),
                r#"{"errors":["Too many requests"]}"#.into(),
            );
        }
        if b.fail_first > 0 {
            b.fail_first -= 1;
            return (
                503,
                String::new(),
                "<html><body><h1>503 Service Unavailable</h1>No server is available to handle this request.</body></html>".into(),
            );
        }
        b.clone()
    };
    if headers.get("dd-api-key") != Some(&behaviour.api_key) {
        return forbidden();
    }
    if path == "/api/v1/validate" {
        return (200, String::new(), r#"{"valid":true}"#.into());
    }
    if headers.get("dd-application-key") != Some(&behaviour.app_key) {
        return forbidden();
    }
    let world = source();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    match (method, path) {
        ("GET", "/api/v1/hosts") => (200, String::new(), hosts(&world, params, now).to_string()),
        ("GET", "/api/v1/query") => match query(&world, params) {
            Ok(v) => (200, String::new(), v.to_string()),
            Err(e) => (400, String::new(), json!({"errors": [e]}).to_string()),
        },
        ("POST", "/api/v2/logs/analytics/aggregate") => {
            if !behaviour.logs_read_data {
                return forbidden();
            }
            let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            (
                200,
                String::new(),
                logs_aggregate(&world, &request, now).to_string(),
            )
        }
        _ => (404, String::new(), r#"{"errors":["Not found"]}"#.into()),
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                if let Ok(b) = u8::from_str_radix(hex, 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A query parameter's comma-separated items (none when it is absent).
pub fn comma_list<'a>(params: &'a BTreeMap<String, String>, key: &str) -> Vec<&'a str> {
    params
        .get(key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /api/v1/hosts`: hosts live in the past 3 hours carrying every tag of `filter`, paged.
fn hosts(world: &World, params: &BTreeMap<String, String>, now: f64) -> Value {
    let filter = comma_list(params, "filter");
    let mut last: BTreeMap<&str, f64> = BTreeMap::new();
    for p in &world.points {
        let e = last.entry(p.host.as_str()).or_insert(0.0);
        *e = e.max(p.ts);
    }
    let matching: Vec<Value> = world
        .host_tags
        .iter()
        .filter(|(h, _)| {
            last.get(h.as_str())
                .is_some_and(|t| *t >= now - 3.0 * 3600.0)
        })
        .filter(|(_, tags)| filter.iter().all(|f| tags.iter().any(|t| t == f)))
        .map(|(h, tags)| {
            json!({"name": h, "host_name": h, "id": 1, "aliases": [h], "apps": ["agent"],
                "sources": ["agent"], "up": true, "is_muted": false, "mute_timeout": null,
                "last_reported_time": last[h.as_str()] as i64,
                "tags_by_source": {"Datadog": tags},
                "metrics": {"cpu": null, "iowait": null, "load": null}})
        })
        .collect();
    let start: usize = params
        .get("start")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let count: usize = params
        .get("count")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
        .min(1000);
    let page: Vec<Value> = matching.iter().skip(start).take(count).cloned().collect();
    json!({"exact_total_matching": true, "total_matching": matching.len(),
        "total_returned": page.len(), "host_list": page})
}

/// `agg:metric{scope} by {keys}`.
fn parse_query(q: &str) -> Result<(String, Vec<String>, Vec<String>), String> {
    let q = q.trim();
    let (head, rest) = q
        .split_once('{')
        .ok_or_else(|| format!("Error parsing query: {q}"))?;
    let metric = head.rsplit(':').next().unwrap_or(head).to_owned();
    let (scope, after) = rest
        .split_once('}')
        .ok_or_else(|| format!("Error parsing query: {q}"))?;
    let scope: Vec<String> = scope
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && *t != "*")
        .map(String::from)
        .collect();
    let by = match after.trim().strip_prefix("by") {
        Some(b) => b
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .split(',')
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect(),
        None => Vec::new(),
    };
    Ok((metric, scope, by))
}

fn query(world: &World, params: &BTreeMap<String, String>) -> Result<Value, String> {
    let q = params.get("query").ok_or("query is required")?;
    let from: f64 = params
        .get("from")
        .and_then(|v| v.parse().ok())
        .ok_or("from is required")?;
    let to: f64 = params
        .get("to")
        .and_then(|v| v.parse().ok())
        .ok_or("to is required")?;
    let (metric, scope, by) = parse_query(q)?;
    let interval = ((to - from) / 150.0).ceil().max(1.0);
    // group -> bucket -> max
    let mut groups: BTreeMap<Vec<String>, BTreeMap<i64, f64>> = BTreeMap::new();
    for p in world
        .points
        .iter()
        .filter(|p| p.metric == metric && p.ts >= from && p.ts <= to)
    {
        let tags = world.tags_of(&p.host, &p.tags);
        if !scope.iter().all(|s| tags.contains(s)) {
            continue;
        }
        let group: Vec<String> = by
            .iter()
            .map(|k| {
                let v = tags
                    .iter()
                    .find_map(|t| t.strip_prefix(&format!("{k}:")).map(String::from))
                    .unwrap_or_else(|| "N/A".into());
                format!("{k}:{v}")
            })
            .collect();
        let bucket = (((p.ts - from) / interval).floor() as i64) * interval as i64 + from as i64;
        let slot = groups
            .entry(group)
            .or_default()
            .entry(bucket)
            .or_insert(f64::MIN);
        *slot = slot.max(p.value);
    }
    let series: Vec<Value> = groups
        .into_iter()
        .map(|(tag_set, buckets)| {
            // Datadog answers a bucket without data as a null point: one leads the list.
            let mut pointlist = vec![json!([(from as i64 * 1000) as f64 - 1000.0, null])];
            pointlist.extend(
                buckets
                    .iter()
                    .map(|(ts, v)| json!([(*ts * 1000) as f64, v])),
            );
            let mut scope_tags = scope.clone();
            scope_tags.extend(tag_set.iter().cloned());
            json!({"metric": metric, "display_name": metric, "expression": q, "aggr": "max",
                "scope": scope_tags.join(","), "tag_set": tag_set, "interval": interval as i64,
                "length": pointlist.len(), "start": from as i64 * 1000, "end": to as i64 * 1000,
                "pointlist": pointlist, "query_index": 0, "attributes": {}, "unit": [null, null]})
        })
        .collect();
    Ok(
        json!({"status": "ok", "resp_version": 1, "res_type": "time_series", "query": q,
        "message": "", "from_date": from as i64 * 1000, "to_date": to as i64 * 1000,
        "group_by": by, "series": series, "times": [], "values": []}),
    )
}

/// Date math for `now`, `now-15m`, or milliseconds.
fn logs_time(v: &Value, now: f64, default: f64) -> f64 {
    let Some(s) = v.as_str() else {
        return v.as_f64().unwrap_or(default);
    };
    if let Ok(ms) = s.parse::<f64>() {
        return ms;
    }
    if s == "now" {
        return now * 1000.0;
    }
    if let Some(d) = s.strip_prefix("now-") {
        if let Ok(d) = humantime_like(d) {
            return (now - d) * 1000.0;
        }
    }
    default
}

fn humantime_like(d: &str) -> Result<f64, ()> {
    let (n, unit) = d.split_at(d.len() - 1);
    let n: f64 = n.parse().map_err(|_| ())?;
    Ok(n * match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(()),
    })
}

fn logs_aggregate(world: &World, request: &Value, now: f64) -> Value {
    let filter = &request["filter"];
    let from = logs_time(&filter["from"], now, (now - 900.0) * 1000.0);
    let to = logs_time(&filter["to"], now, now * 1000.0);
    let terms: Vec<&str> = filter["query"]
        .as_str()
        .unwrap_or("*")
        .split_whitespace()
        .filter(|t| *t != "*")
        .collect();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for l in world
        .logs
        .iter()
        .filter(|l| l.ts_ms >= from && l.ts_ms <= to)
    {
        let tags = world.tags_of(&l.host, &l.tags);
        if terms.iter().all(|t| tags.contains(*t)) {
            *counts.entry(l.host.clone()).or_default() += 1;
        }
    }
    let buckets: Vec<Value> = counts
        .into_iter()
        .map(|(h, n)| json!({"by": {"host": h}, "computes": {"c0": n}}))
        .collect();
    json!({"meta": {"elapsed": 3, "request_id": "fake", "status": "done"},
        "data": {"buckets": buckets}})
}
