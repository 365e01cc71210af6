//! The CLI subcommands' output, in the formats of the real agent (see datadog-agent.md).
//! Pure functions of the state and the current time; `cli` does the I/O.

use crate::imageref::ImageRef;
use crate::model::{self, Health};
use crate::rng::Rng;
use crate::state::{AgentState, ContainerRecord, ForwarderStats};
use crate::timefmt;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Exit status of a failing agent subcommand (Go's `os.Exit(-1)`).
pub const EXIT_FAILURE: i32 = 255;

/// Identifier of the single docker check instance in `runnerStats`.
pub const DOCKER_CHECK_ID: &str = "docker:d884b5186b651429";

/// What a subcommand prints and how it exits.
#[derive(Debug, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

impl Output {
    pub fn ok(stdout: String) -> Output {
        Output {
            stdout,
            stderr: String::new(),
            code: 0,
        }
    }

    /// A cobra-style failure: `Error: <message>` on stderr, exit 255.
    pub fn error(message: &str) -> Output {
        Output {
            stdout: String::new(),
            stderr: format!("Error: {message}\n"),
            code: EXIT_FAILURE,
        }
    }
}

/// `agent health` / `/probe.sh`.
pub fn health(h: &Health) -> Output {
    let mut out = format!(
        "Agent health: {}\n",
        if h.unhealthy.is_empty() {
            "PASS"
        } else {
            "FAIL"
        }
    );
    if !h.healthy.is_empty() {
        out += &format!(
            "=== {} healthy components ===\n{}\n",
            h.healthy.len(),
            h.healthy.join(", ")
        );
    }
    if h.unhealthy.is_empty() {
        return Output::ok(out);
    }
    out += &format!(
        "=== {} unhealthy components ===\n{}\n",
        h.unhealthy.len(),
        h.unhealthy.join(", ")
    );
    Output {
        stdout: out,
        ..Output::error(&format!("found {} unhealthy components", h.unhealthy.len()))
    }
}

/// What every subcommand says before the daemon has written its auth token (its first second).
pub fn no_auth_token(path: &str, error: &std::io::Error) -> Output {
    Output::error(&format!(
        "unable to fetch auth token (please check that the Agent is running, this file is normally \
         generated during the first run of the Agent service.): unable to read authentication token \
         file: open {path}: {}",
        go_errno_text(error)
    ))
}

/// What every subcommand says when the command API does not answer.
pub fn not_up(endpoint: &str, port: u16, error: &std::io::Error) -> Output {
    Output::error(&format!(
        "could not reach agent: Get \"https://localhost:{port}{endpoint}\": dial tcp 127.0.0.1:{port}: \
         connect: {} \nMake sure the agent is running before requesting the status \
         and contact support if you continue having issues. ",
        go_errno_text(error)
    ))
}

/// Go's (libc's) text for an errno, without Rust's " (os error N)".
fn go_errno_text(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => {
            let text = error.to_string();
            match text.find(" (os error") {
                Some(at) => text[..at].to_lowercase(),
                None => text,
            }
        }
    }
}

/// The log line real agents print on stdout before a subcommand's JSON (unless
/// `DD_LOG_LEVEL=off`).
pub fn log_preamble(now: f64) -> String {
    crate::logline::format(
        now,
        "CORE",
        crate::logline::Level::Info,
        "pkg/config/env/environment_detection.go:152 in detectFeatures",
        "3 Features detected from environment: docker,cri,kubernetes_devices",
    ) + "\n"
}

// ---------------------------------------------------------------------------------------------
// workload-list

/// `agent workload-list`: one block per entity (containers, their processes, their images), in
/// random order. Only `container` headers mean a discovered container.
pub fn workload_text(state: &AgentState, now: f64, rng: &mut Rng) -> String {
    let containers = model::visible_containers(state, now);
    let mut blocks: Vec<String> = Vec::new();
    for c in &containers {
        blocks.push(container_block(c));
        if c.pid > 0 {
            blocks.push(process_block(c));
        }
    }
    for c in distinct_images(&containers) {
        blocks.push(image_block(c));
    }
    rng.shuffle(&mut blocks);
    blocks.concat()
}

fn container_block(c: &ContainerRecord) -> String {
    let (image_name, tag) = match ImageRef::parse(&c.image) {
        Some(r) => (r.name, r.tag),
        None => (c.image.clone(), String::new()),
    };
    // Go's fmt.Fprintln puts a space between "Key:" and an empty value.
    format!(
        "\n=== Entity container sources(merged):[docker runtime] id: {id} ===\n\
         ----------- Entity ID -----------\n\
         Kind: container ID: {id}\n\
         ----------- Entity Meta -----------\n\
         Name: {name}\n\
         Namespace: \n\
         ----------- Image -----------\n\
         Name: {image_name}\n\
         Tag: {tag}\n\
         ----------- Container Info -----------\n\
         Runtime: docker\n\
         RuntimeFlavor: \n\
         Running: true\n\
         ----------- Resources -----------\n\
         ===\n",
        id = c.id,
        name = c.name,
    )
}

fn process_block(c: &ContainerRecord) -> String {
    format!(
        "\n=== Entity process sources(merged):[process_collector] id: {pid} ===\n\
         ----------- Entity ID -----------\n\
         PID: {pid}\n\
         Namespace PID: 1\n\
         Container ID: {id}\n\
         Creation time: {started}\n\
         ===\n",
        pid = c.pid,
        id = c.id,
        started = timefmt::go_time_string(&c.started_at),
    )
}

fn image_block(c: &ContainerRecord) -> String {
    format!(
        "\n=== Entity container_image_metadata sources(merged):[docker] id: {iid} ===\n\
         ----------- Entity ID -----------\n\
         Kind: container_image_metadata ID: {iid}\n\
         ----------- Entity Meta -----------\n\
         Name: {raw}\n\
         Namespace: \n\
         Repo tags: [{raw}]\n\
         Repo digests: []\n\
         ===\n",
        iid = c.image_id,
        raw = c.image,
    )
}

/// One container per distinct image id, in first-seen order.
fn distinct_images<'a>(containers: &[&'a ContainerRecord]) -> Vec<&'a ContainerRecord> {
    let mut seen = std::collections::HashSet::new();
    containers
        .iter()
        .copied()
        .filter(|c| !c.image_id.is_empty() && seen.insert(c.image_id.as_str()))
        .collect()
}

/// `agent workload-list --json`: `{"Entities": {"container": [...], "process": [...], ...}}`.
pub fn workload_json(state: &AgentState, now: f64, rng: &mut Rng, pretty: bool) -> String {
    let mut containers = model::visible_containers(state, now);
    rng.shuffle(&mut containers);
    let mut kinds: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for c in &containers {
        kinds
            .entry("container")
            .or_default()
            .push(container_json(c));
        if c.pid > 0 {
            kinds.entry("process").or_default().push(process_json(c));
        }
    }
    for c in distinct_images(&containers) {
        kinds
            .entry("container_image_metadata")
            .or_default()
            .push(image_json(c));
    }
    to_json(&json!({ "Entities": kinds }), pretty)
}

/// The fields of workloadmeta's `Container` (EntityID and EntityMeta embedded), as Go marshals them.
fn container_json(c: &ContainerRecord) -> Value {
    let image = ImageRef::parse(&c.image);
    json!({
        "Kind": "container",
        "ID": c.id,
        "Name": c.name,
        "Namespace": "",
        "Annotations": null,
        "Labels": c.labels,
        "EnvVars": null,
        "Hostname": c.hostname,
        "Image": {
            "ID": c.image_id,
            "RawName": c.image,
            "Name": image.as_ref().map_or(c.image.as_str(), |r| r.name.as_str()),
            "Registry": image.as_ref().map_or("", |r| r.registry.as_str()),
            "ShortName": image.as_ref().map_or("", |r| r.short.as_str()),
            "Tag": image.as_ref().map_or("", |r| r.tag.as_str()),
            "RepoDigest": "",
        },
        "NetworkIPs": {},
        "PID": c.pid,
        "Ports": null,
        "Runtime": "docker",
        "RuntimeFlavor": "",
        "State": {
            "Running": true,
            "Status": "running",
            "Health": "",
            "CreatedAt": c.started_at,
            "StartedAt": c.started_at,
            "FinishedAt": "0001-01-01T00:00:00Z",
            "ExitCode": null,
        },
        "CollectorTags": null,
        "Owner": null,
        "SecurityContext": null,
        "Resources": {
            "GPURequest": null,
            "GPULimit": null,
            "GPUVendorList": null,
            "CPURequest": null,
            "CPULimit": null,
            "MemoryRequest": null,
            "MemoryLimit": null,
        },
        "ResolvedAllocatedResources": null,
        "CgroupPath": format!("/docker/{}", c.id),
        "RestartCount": 0,
    })
}

fn process_json(c: &ContainerRecord) -> Value {
    json!({
        "Kind": "process",
        "ID": c.pid.to_string(),
        "Pid": c.pid,
        "NsPid": 1,
        "Ppid": 0,
        "Name": "",
        "Cwd": "",
        "Exe": "",
        "Comm": "",
        "Cmdline": null,
        "Uids": null,
        "Gids": null,
        "ContainerID": c.id,
        "CreationTime": c.started_at,
        "Language": null,
        "Owner": null,
        "Service": null,
    })
}

fn image_json(c: &ContainerRecord) -> Value {
    json!({
        "Kind": "container_image_metadata",
        "ID": c.image_id,
        "Name": c.image,
        "Namespace": "",
        "Annotations": null,
        "Labels": null,
        "RepoTags": [c.image],
        "RepoDigests": [],
        "MediaType": "",
        "SizeBytes": 0,
        "OS": "linux",
        "OSVersion": "",
        "Architecture": "amd64",
        "Variant": "",
        "Layers": null,
        "SBOM": null,
    })
}

// ---------------------------------------------------------------------------------------------
// tagger-list

const TAGGER_SOURCE: &str = "workloadmeta-container";

fn tagged_containers(state: &AgentState, now: f64) -> Vec<&ContainerRecord> {
    model::visible_containers(state, now)
        .into_iter()
        .filter(|c| !c.excluded)
        .collect()
}

/// `agent tagger-list`: one block per container entity, in random order.
pub fn tagger_text(state: &AgentState, now: f64, rng: &mut Rng) -> String {
    let mut blocks: Vec<String> = tagged_containers(state, now)
        .into_iter()
        .map(|c| {
            format!(
                "\n=== Entity container_id://{} ===\n== Source {TAGGER_SOURCE} =\n=Tags: [{}]\n===\n",
                c.id,
                model::container_tags(c, &state.labels_as_tags).join(" ")
            )
        })
        .collect();
    rng.shuffle(&mut blocks);
    blocks.concat()
}

/// `agent tagger-list --json`: `{"Entities": {"container_id://<id>": {"tags": {"<source>": [...]}}}}`
/// (indented, like the agent's `json.MarshalIndent`).
pub fn tagger_json(state: &AgentState, now: f64) -> String {
    let entities: Map<String, Value> = tagged_containers(state, now)
        .into_iter()
        .map(|c| {
            let tags = model::container_tags(c, &state.labels_as_tags);
            (
                format!("container_id://{}", c.id),
                json!({ "tags": { TAGGER_SOURCE: tags } }),
            )
        })
        .collect();
    to_json(&json!({ "Entities": entities }), true)
}

// ---------------------------------------------------------------------------------------------
// status

/// `agent status --json`: one line.
pub fn status_json(state: &AgentState, now: f64) -> String {
    to_json(&status_value(state, now), false)
}

fn status_value(state: &AgentState, now: f64) -> Value {
    let mut key_status = Map::new();
    let mut key_failure = Map::new();
    if let Some(check) = state.key_check {
        let label = format!("API key ending with {}", state.api_key_suffix);
        let text = Value::from(check.verdict.text());
        if check.verdict.is_failure() {
            key_failure.insert(label, text);
        } else {
            key_status.insert(label, text);
        }
    }
    let runs = model::check_runs(state, now);
    let mut checks = Map::new();
    if runs > 0 {
        // Not scheduled without the Docker socket; listed only once it has run.
        checks.insert("docker".to_string(), docker_check(state, now, runs));
    }
    json!({
        "agent_metadata": {},
        "version": state.version,
        "flavor": "agent",
        "pid": state.pid,
        "go_version": "go1.24.0",
        "agent_start_nano": (state.started_at * 1e9) as i64,
        "time_nano": (now * 1e9) as i64,
        "meta": { "hostname": state.hostname, "timezones": ["UTC"] },
        "hostnameStats": {
            "provider": state.hostname_provider,
            "errors": hostname_errors(&state.hostname_provider),
        },
        "hostTags": state.host_tags,
        "forwarderStats": {
            "APIKeyStatus": key_status,
            "APIKeyFailure": key_failure,
            "Transactions": transactions(&state.forwarder),
        },
        "runnerStats": {
            "Runs": runs,
            "Workers": { "Count": 4 },
            "Checks": checks,
        },
        // The dogstatsd expvar, with its UDP and UDS listeners' counters merged in ("Udp"/"Uds"
        // prefixes). No apmStats (the trace-agent's own expvar) or config: nothing reads them.
        "dogstatsdStats": {
            "EventPackets": 0,
            "EventParseErrors": 0,
            "MetricPackets": state.dogstatsd.metric_samples,
            "MetricParseErrors": 0,
            "ServiceCheckPackets": 0,
            "ServiceCheckParseErrors": 0,
            "UdpBytes": state.dogstatsd.bytes,
            "UdpPacketReadingErrors": 0,
            "UdpPackets": state.dogstatsd.packets,
            "UdsBytes": 0,
            "UdsOriginDetectionErrors": 0,
            "UdsPacketReadingErrors": 0,
            "UdsPackets": 0,
        },
        "logsStats": logs_stats(state),
    })
}

/// `logsStats` as pkg/logs/status builds it: each container tailed from its file is a `file`
/// source of the `container_collect_all` integration, its configuration's Identifier the container
/// id; an excluded container has no source. Each conf.d file source is listed under its config's
/// name with its status (`OK`, `Pending`, `Error: ...`), the files it tails now as `inputs`, and
/// for a wildcard "N files tailed out of M files matching". Go marshals no integrations as `null`.
fn logs_stats(state: &AgentState) -> Value {
    let sources: Vec<Value> = state
        .log_sources
        .iter()
        .map(|(id, path)| {
            json!({
                "type": "file",
                "configuration": { "Identifier": id, "Path": path },
                "status": "OK",
                "inputs": [path],
                "messages": [],
                "info": {},
            })
        })
        .collect();
    let mut integrations: Vec<Value> = Vec::new();
    if !sources.is_empty() {
        integrations.push(json!({ "name": "container_collect_all", "sources": sources }));
    }
    let mut names: Vec<&str> = Vec::new();
    for f in &state.file_sources {
        if !names.contains(&f.name.as_str()) {
            names.push(&f.name);
        }
    }
    for name in names {
        let sources: Vec<Value> = state
            .file_sources
            .iter()
            .filter(|f| f.name == name)
            .map(|f| {
                json!({
                    "type": "file",
                    "configuration": {
                        "Path": f.path,
                        "TailingMode": f.tailing_mode,
                        "Identifier": "",
                        "Service": f.service.clone().unwrap_or_default(),
                        "Source": f.source.clone().unwrap_or_default(),
                    },
                    "status": f.status,
                    "inputs": f.inputs,
                    "messages": f.messages,
                    "info": {},
                })
            })
            .collect();
        integrations.push(json!({ "name": name, "sources": sources }));
    }
    let integrations = if integrations.is_empty() {
        Value::Null
    } else {
        Value::Array(integrations)
    };
    json!({ "is_running": state.logs_enabled, "endpoints": {}, "integrations": integrations })
}

/// The providers the agent tried before the one that answered: DD_HOSTNAME comes first.
fn hostname_errors(provider: &str) -> Value {
    if provider == "configuration" {
        json!({})
    } else {
        json!({ "'hostname' configuration/environment": "hostname is empty" })
    }
}

/// `runnerStats.Checks.docker`: its one instance.
fn docker_check(state: &AgentState, now: f64, runs: u64) -> Value {
    let last_error = state.check_errors.join("; ");
    let last_run = state.started_at + runs as f64 * state.check_interval_secs;
    let containers = model::visible_containers(state, now).len() as u64;
    json!({
        DOCKER_CHECK_ID: {
            "CheckName": "docker",
            "CheckID": DOCKER_CHECK_ID,
            "CheckVersion": "",
            "TotalRuns": runs,
            "TotalErrors": if last_error.is_empty() { 0 } else { runs },
            "TotalWarnings": 0,
            "MetricSamples": containers * 12,
            "TotalMetricSamples": containers * 12 * runs,
            "Events": 0,
            "TotalEvents": 0,
            "ServiceChecks": 1,
            "TotalServiceChecks": runs,
            "LastError": last_error,
            "LastWarnings": [],
            "LastExecutionTime": 12,
            "AverageExecutionTime": 12,
            "LastSuccessDate": if last_error.is_empty() { last_run as i64 } else { 0 },
            "UpdateTimestamp": last_run as i64,
        }
    })
}

/// `forwarderStats.Transactions`: what the forwarder's transactions came to.
fn transactions(f: &ForwarderStats) -> Value {
    let mut by_type: BTreeMap<String, u64> = crate::forwarder::ERROR_TYPES
        .iter()
        .map(|k| (k.to_string(), 0))
        .collect();
    for (k, v) in &f.errors_by_type {
        *by_type.entry(k.clone()).or_default() += v;
    }
    json!({
        "Success": f.success,
        "SuccessByEndpoint": f.success_by_endpoint,
        "SuccessBytesByEndpoint": f.success_bytes_by_endpoint,
        "Errors": f.errors,
        "ErrorsByType": by_type,
        "HTTPErrors": f.http_errors,
        "HTTPErrorsByCode": f.http_errors_by_code,
        "DroppedOnInput": 0,
        "Dropped": f.dropped,
        "DroppedByEndpoint": f.dropped_by_endpoint,
        "Requeued": f.requeued,
        "Retried": f.retried,
        "RetryQueueSize": f.retry_queue_size,
    })
}

/// `agent status`: a short human summary.
pub fn status_text(state: &AgentState, now: f64) -> String {
    let runs = model::check_runs(state, now);
    let last_error = state.check_errors.join("; ");
    let mut s = String::from("Getting the status from the agent.\n\n");
    s += &banner(&format!("Agent (v{})", state.version));
    s += &format!("  Status date: {}\n", timefmt::log_timestamp(now));
    s += &format!(
        "  Agent start: {}\n",
        timefmt::log_timestamp(state.started_at)
    );
    s += &format!("  Pid: {}\n", state.pid);
    s += &format!(
        "  Hostname: {} (provider: {})\n",
        state.hostname, state.hostname_provider
    );
    s += &format!("  Host tags: [{}]\n\n", state.host_tags.join(" "));
    s += &banner("Collector");
    s += "  Running Checks\n  ==============\n\n";
    if runs == 0 {
        s += "    No checks have run yet\n\n";
    } else {
        s += "    docker\n    ------\n";
        s += &format!(
            "      Instance ID: {DOCKER_CHECK_ID} [{}]\n      Total Runs: {runs}\n",
            if last_error.is_empty() { "OK" } else { "ERROR" }
        );
        if !last_error.is_empty() {
            s += &format!("      Error: {last_error}\n");
        }
        s += &format!(
            "      Containers: {}\n\n",
            model::visible_containers(state, now).len()
        );
    }
    s += &banner("Forwarder");
    s += "  API Keys status\n  ===============\n";
    if let Some(check) = state.key_check {
        s += &format!(
            "    API key ending with {}: {}\n",
            state.api_key_suffix,
            check.verdict.text()
        );
    }
    let f = &state.forwarder;
    s += &format!(
        "\n  Transactions\n  ============\n    Success: {}\n    Errors: {}\n    HTTPErrors: {}\n    Dropped: {}\n\n",
        f.success, f.errors, f.http_errors, f.dropped
    );
    s += &banner("APM Agent");
    s += &format!(
        "  Status: {}\n  Receiver (port {}): {} connections, {} requests\n\n",
        listener_status(state.apm.enabled, state.apm.listening),
        state.apm.port,
        state.apm.connections,
        state.apm.requests
    );
    s += &banner("DogStatsD");
    s += &format!(
        "  Status: {}\n  Udp Packets (port {}): {}\n  Metric Packets: {}\n\n",
        listener_status(state.dogstatsd.enabled, state.dogstatsd.listening),
        state.dogstatsd.port,
        state.dogstatsd.packets,
        state.dogstatsd.metric_samples
    );
    s += &banner("Logs Agent");
    s += if state.logs_enabled {
        "  Status: Running\n"
    } else {
        "  Logs Agent is not running\n"
    };
    s += &logs_integrations_text(&logs_stats(state));
    s
}

/// The Integrations block of the logs agent's status template (logsagent.tmpl): each source's
/// type, its configuration keys in Go's sorted map order, status, messages and inputs.
fn logs_integrations_text(stats: &Value) -> String {
    let Some(integrations) = stats["integrations"].as_array() else {
        return String::new();
    };
    let mut s = String::from("  ============\n  Integrations\n  ============\n");
    for integration in integrations {
        let name = integration["name"].as_str().unwrap_or_default();
        s += &format!("\n  {name}\n  {}\n", "-".repeat(name.len()));
        for source in integration["sources"].as_array().into_iter().flatten() {
            s += &format!("    - Type: {}\n", source["type"].as_str().unwrap_or_default());
            if let Some(config) = source["configuration"].as_object() {
                let mut keys: Vec<&String> = config.keys().collect();
                keys.sort();
                for k in keys {
                    s += &format!("      {k}: {}\n", config[k].as_str().unwrap_or_default());
                }
            }
            s += &format!("      Status: {}\n", source["status"].as_str().unwrap_or_default());
            for m in source["messages"].as_array().into_iter().flatten() {
                s += &format!("        {}\n", m.as_str().unwrap_or_default());
            }
            let inputs = source["inputs"].as_array().cloned().unwrap_or_default();
            if !inputs.is_empty() {
                s += "      Inputs:\n";
                for i in inputs {
                    s += &format!("        {}\n", i.as_str().unwrap_or_default());
                }
            }
        }
    }
    s
}

fn listener_status(enabled: bool, listening: bool) -> &'static str {
    match (enabled, listening) {
        (false, _) => "Not running (disabled)",
        (true, true) => "Running",
        (true, false) => "Not listening",
    }
}

fn banner(title: &str) -> String {
    let rule = "=".repeat(title.len() + 2);
    format!("{rule}\n{title}\n{rule}\n")
}

fn to_json(v: &Value, pretty: bool) -> String {
    let text = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    };
    text.unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ApmStats, DogstatsdStats, KeyCheck, KeyVerdict};

    fn with_key(verdict: KeyVerdict) -> AgentState {
        AgentState {
            key_check: Some(KeyCheck {
                verdict,
                at: 1000.6,
            }),
            ..state()
        }
    }

    const ID1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const ID2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn state() -> AgentState {
        AgentState {
            version: "7.99.0-standin".into(),
            pid: 4242,
            started_at: 1000.0,
            heartbeat: 1000.0,
            hostname: "node-1".into(),
            hostname_provider: "os".into(),
            host_tags: vec!["a:b".into(), "c:d".into()],
            api_key_suffix: "bcdef".into(),
            api_up_at: Some(1000.5),
            key_check: Some(KeyCheck {
                verdict: KeyVerdict::Valid,
                at: 1000.6,
            }),
            unhealthy_secs: 2.0,
            docker_check: true,
            check_interval_secs: 15.0,
            discovery_delay_secs: 1.0,
            apm: ApmStats {
                enabled: true,
                port: 8126,
                listening: true,
                ..Default::default()
            },
            dogstatsd: DogstatsdStats {
                enabled: true,
                port: 8125,
                listening: true,
                packets: 3,
                ..Default::default()
            },
            containers: vec![
                ContainerRecord {
                    id: ID1.into(),
                    name: "myapp".into(),
                    image: "nginx".into(),
                    image_id: "sha256:aaaa".into(),
                    pid: 77,
                    started_at: "2026-11-25T12:00:00Z".into(),
                    seen_at: 1000.0,
                    ..Default::default()
                },
                ContainerRecord {
                    id: ID2.into(),
                    name: "dd-agent".into(),
                    image: "ddsky-test/agent:7".into(),
                    image_id: "sha256:bbbb".into(),
                    seen_at: 1000.0,
                    excluded: true,
                    logs_excluded: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn health_pass_and_fail() {
        let s = state();
        let pass = health(&model::health(&s, 1010.0));
        assert_eq!(pass.code, 0);
        assert!(pass.stderr.is_empty());
        let lines: Vec<&str> = pass.stdout.lines().collect();
        assert_eq!(lines[0], "Agent health: PASS");
        assert_eq!(lines[1], "=== 20 healthy components ===");
        assert!(lines[2].starts_with("ad-autoconfig, ad-config-provider-docker, "));
        assert_eq!(lines.len(), 3);

        let fail = health(&model::health(&with_key(KeyVerdict::Invalid), 1010.0));
        assert_eq!(fail.code, 255);
        assert_eq!(
            fail.stdout.lines().skip(3).collect::<Vec<_>>(),
            vec!["=== 1 unhealthy components ===", "forwarder"]
        );
        assert!(fail
            .stdout
            .starts_with("Agent health: FAIL\n=== 19 healthy components ===\n"));
        assert_eq!(fail.stderr, "Error: found 1 unhealthy components\n");
    }

    #[test]
    fn no_auth_token_is_the_agents_words() {
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let o = no_auth_token("/etc/datadog-agent/auth_token", &missing);
        assert_eq!(o.code, 255);
        assert!(o.stdout.is_empty());
        assert_eq!(
            o.stderr,
            "Error: unable to fetch auth token (please check that the Agent is running, this file is \
             normally generated during the first run of the Agent service.): unable to read \
             authentication token file: open /etc/datadog-agent/auth_token: no such file or directory\n"
        );
    }

    #[test]
    fn not_up_names_the_agent() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let o = not_up("/agent/status/health", 5001, &refused);
        assert!(o
            .stderr
            .contains("dial tcp 127.0.0.1:5001: connect: connection refused"));
        assert_eq!(o.code, 255);
        assert!(o.stdout.is_empty());
        assert!(o.stderr.starts_with("Error: could not reach agent: "));
        assert!(o
            .stderr
            .contains("Make sure the agent is running before requesting the status"));
    }

    #[test]
    fn workload_text_has_the_documented_container_block() {
        let text = workload_text(&state(), 1010.0, &mut Rng::new(7));
        let expected = format!(
            "=== Entity container sources(merged):[docker runtime] id: {ID1} ===\n\
             ----------- Entity ID -----------\n\
             Kind: container ID: {ID1}\n\
             ----------- Entity Meta -----------\n\
             Name: myapp\n\
             Namespace: \n\
             ----------- Image -----------\n\
             Name: nginx\n\
             Tag: latest\n\
             ----------- Container Info -----------\n\
             Runtime: docker\n\
             RuntimeFlavor: \n\
             Running: true\n\
             ----------- Resources -----------\n\
             ===\n"
        );
        assert!(text.contains(&expected), "{text}");
        let headers = |kind: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("=== Entity {kind} ")))
                .count()
        };
        assert_eq!(headers("container"), 2);
        assert_eq!(headers("process"), 1);
        assert_eq!(headers("container_image_metadata"), 2);
        assert!(text.contains(&format!("Container ID: {ID1}\n")));
    }

    #[test]
    fn workload_text_order_is_random_and_respects_the_delay() {
        let s = state();
        let orders: std::collections::HashSet<String> = (0..20)
            .map(|seed| workload_text(&s, 1010.0, &mut Rng::new(seed)))
            .collect();
        assert!(orders.len() > 1);
        assert_eq!(workload_text(&s, 1000.5, &mut Rng::new(1)), "");
    }

    #[test]
    fn workload_json_shape() {
        let v: Value =
            serde_json::from_str(&workload_json(&state(), 1010.0, &mut Rng::new(3), false))
                .unwrap();
        let containers = v["Entities"]["container"].as_array().unwrap();
        assert_eq!(containers.len(), 2);
        let app = containers.iter().find(|c| c["ID"] == ID1).unwrap();
        assert_eq!(app["Kind"], "container");
        assert_eq!(app["Name"], "myapp");
        assert_eq!(app["Image"]["Name"], "nginx");
        assert_eq!(app["Image"]["Tag"], "latest");
        assert_eq!(app["State"]["Running"], true);
        assert_eq!(app["PID"], 77);
        assert_eq!(v["Entities"]["process"][0]["ContainerID"], ID1);
        let empty: Value =
            serde_json::from_str(&workload_json(&state(), 1000.0, &mut Rng::new(3), true)).unwrap();
        assert_eq!(empty, json!({ "Entities": {} }));
    }

    #[test]
    fn tagger_text_and_json() {
        let s = state();
        let text = tagger_text(&s, 1010.0, &mut Rng::new(1));
        assert_eq!(
            text,
            format!(
                "\n=== Entity container_id://{ID1} ===\n== Source workloadmeta-container =\n\
                 =Tags: [container_id:{ID1} container_name:myapp docker_image:nginx:latest \
                 image_id:sha256:aaaa image_name:nginx image_tag:latest short_image:nginx]\n===\n"
            )
        );
        let v: Value = serde_json::from_str(&tagger_json(&s, 1010.0)).unwrap();
        let entities = v["Entities"].as_object().unwrap();
        assert_eq!(entities.len(), 1);
        let tags = &entities[&format!("container_id://{ID1}")]["tags"]["workloadmeta-container"];
        assert_eq!(tags[1], "container_name:myapp");
    }

    #[test]
    fn health_before_the_first_ping_lists_every_component() {
        let fail = health(&model::health(&state(), 1001.0));
        assert_eq!(fail.code, 255);
        assert_eq!(
            fail.stdout,
            format!(
                "Agent health: FAIL\n=== 20 unhealthy components ===\n{}\n",
                model::COMPONENTS.join(", ")
            )
        );
        assert_eq!(fail.stderr, "Error: found 20 unhealthy components\n");
    }

    #[test]
    fn status_json_valid_key() {
        let out = status_json(&state(), 1031.0);
        assert_eq!(out.lines().count(), 1);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["version"], "7.99.0-standin");
        assert_eq!(v["meta"]["hostname"], "node-1");
        assert_eq!(v["hostTags"], json!(["a:b", "c:d"]));
        assert_eq!(
            v["forwarderStats"]["APIKeyStatus"]["API key ending with bcdef"],
            "API Key valid"
        );
        assert_eq!(v["forwarderStats"]["APIKeyFailure"], json!({}));
        assert_eq!(v["forwarderStats"]["Transactions"]["Success"], 0);
        let check = &v["runnerStats"]["Checks"]["docker"][DOCKER_CHECK_ID];
        assert_eq!(check["TotalRuns"], 2);
        assert_eq!(check["LastError"], "");
        assert_eq!(v["dogstatsdStats"]["UdpPackets"], 3);
        assert_eq!(v["logsStats"]["is_running"], false);
        assert_eq!(v["logsStats"]["integrations"], Value::Null);
    }

    #[test]
    fn each_tailed_container_is_a_file_source_named_by_its_id() {
        let mut s = state();
        s.logs_enabled = true;
        let path = "/var/lib/docker/containers/abc/abc-json.log";
        s.log_sources.insert("abc".into(), path.into());
        let v: Value = serde_json::from_str(&status_json(&s, 1031.0)).unwrap();
        let integrations = v["logsStats"]["integrations"].as_array().unwrap();
        assert_eq!(integrations.len(), 1);
        let source = &integrations[0]["sources"][0];
        assert_eq!(source["type"], "file");
        assert_eq!(source["configuration"]["Identifier"], "abc");
        assert_eq!(source["configuration"]["Path"], path);
        assert_eq!(source["status"], "OK");
    }

    #[test]
    fn conf_d_file_sources_are_listed_under_their_config_name_with_their_status() {
        let mut s = state();
        s.logs_enabled = true;
        let ok = crate::state::FileSourceStatus {
            name: "ddsky".into(),
            path: "/var/log/ddsky/*.log".into(),
            service: Some("skypilot-worker".into()),
            source: Some("python".into()),
            tailing_mode: "".into(),
            status: "OK".into(),
            inputs: vec!["/var/log/ddsky/run.log".into()],
            messages: vec!["1 files tailed out of 1 files matching".into()],
        };
        let missing = crate::state::FileSourceStatus {
            path: "/var/log/elsewhere.log".into(),
            status: "Error: cannot read file /var/log/elsewhere.log: stat /var/log/elsewhere.log: no such file or directory".into(),
            inputs: vec![],
            messages: vec![],
            ..ok.clone()
        };
        s.file_sources = vec![ok, missing];
        let v: Value = serde_json::from_str(&status_json(&s, 1031.0)).unwrap();
        let integrations = v["logsStats"]["integrations"].as_array().unwrap();
        assert_eq!(integrations.len(), 1);
        assert_eq!(integrations[0]["name"], "ddsky");
        let sources = integrations[0]["sources"].as_array().unwrap();
        assert_eq!(sources[0]["configuration"]["Path"], "/var/log/ddsky/*.log");
        assert_eq!(sources[0]["configuration"]["Service"], "skypilot-worker");
        assert_eq!(sources[0]["status"], "OK");
        assert_eq!(sources[0]["inputs"], json!(["/var/log/ddsky/run.log"]));
        assert!(sources[1]["status"]
            .as_str()
            .unwrap()
            .ends_with("no such file or directory"));
        assert_eq!(sources[1]["inputs"], json!([]));
        let text = status_text(&s, 1031.0);
        let block = &text[text.find("  ============\n  Integrations").unwrap()..];
        assert!(
            block.starts_with(
                "  ============\n  Integrations\n  ============\n\n  ddsky\n  -----\n    - Type: file\n      \
                 Identifier: \n      Path: /var/log/ddsky/*.log\n      Service: skypilot-worker\n      \
                 Source: python\n      TailingMode: \n      Status: OK\n        \
                 1 files tailed out of 1 files matching\n      Inputs:\n        /var/log/ddsky/run.log\n"
            ),
            "{block}"
        );
        assert!(block.contains(
            "      Status: Error: cannot read file /var/log/elsewhere.log: stat /var/log/elsewhere.log: no such file or directory\n"
        ));
    }

    #[test]
    fn the_hostname_is_only_in_meta() {
        let out = status_json(&state(), 1031.0);
        assert_eq!(out.matches("\"node-1\"").count(), 1, "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["hostnameStats"],
            json!({"provider": "os", "errors": {"'hostname' configuration/environment": "hostname is empty"}})
        );
    }

    #[test]
    fn the_docker_check_is_listed_after_its_first_run_and_never_without_the_socket() {
        let early: Value = serde_json::from_str(&status_json(&state(), 1014.0)).unwrap();
        assert_eq!(early["runnerStats"]["Checks"], json!({}));
        let no_socket = AgentState {
            docker_check: false,
            ..state()
        };
        let v: Value = serde_json::from_str(&status_json(&no_socket, 5000.0)).unwrap();
        assert_eq!(v["runnerStats"]["Checks"], json!({}));
        assert!(!status_text(&no_socket, 5000.0).contains("docker\n"));
    }

    #[test]
    fn key_verdicts_land_where_the_agent_files_them() {
        let key = "API key ending with bcdef";
        for (verdict, field, text) in [
            (KeyVerdict::Valid, "APIKeyStatus", "API Key valid"),
            (KeyVerdict::Invalid, "APIKeyFailure", "API Key invalid"),
            (
                KeyVerdict::UnexpectedCode,
                "APIKeyFailure",
                "Unexpected response code from the API Key validation endpoint",
            ),
            (
                KeyVerdict::Unreachable,
                "APIKeyStatus",
                "Unable to reach the API Key validation endpoint",
            ),
        ] {
            let v: Value = serde_json::from_str(&status_json(&with_key(verdict), 1031.0)).unwrap();
            let f = &v["forwarderStats"];
            assert_eq!(f[field], json!({ key: text }), "{verdict:?}");
            let other = if field == "APIKeyStatus" {
                "APIKeyFailure"
            } else {
                "APIKeyStatus"
            };
            assert_eq!(f[other], json!({}), "{verdict:?}");
        }
        let pending = AgentState {
            key_check: None,
            ..state()
        };
        let v: Value = serde_json::from_str(&status_json(&pending, 1031.0)).unwrap();
        assert_eq!(v["forwarderStats"]["APIKeyStatus"], json!({}));
        assert_eq!(v["forwarderStats"]["APIKeyFailure"], json!({}));
    }

    #[test]
    fn status_json_check_errors_and_transactions() {
        let mut f = ForwarderStats::default();
        use crate::forwarder::{record, Outcome, HOST_METADATA, SERIES};
        record(
            &mut f,
            HOST_METADATA,
            &Outcome::Accepted {
                status: 202,
                bytes: 100,
            },
        );
        record(&mut f, SERIES, &Outcome::HttpError { status: 403 });
        record(
            &mut f,
            SERIES,
            &Outcome::Failed {
                kind: "ConnectionErrors",
                message: "refused".into(),
            },
        );
        let s = AgentState {
            check_errors: vec!["No mountPoints were detected".into()],
            forwarder: f,
            ..with_key(KeyVerdict::Invalid)
        };
        let v: Value = serde_json::from_str(&status_json(&s, 1016.0)).unwrap();
        let check = &v["runnerStats"]["Checks"]["docker"][DOCKER_CHECK_ID];
        assert_eq!(check["LastError"], "No mountPoints were detected");
        assert_eq!(check["TotalErrors"], 1);
        let t = &v["forwarderStats"]["Transactions"];
        assert_eq!(t["Success"], 1);
        assert_eq!(t["SuccessByEndpoint"], json!({ "intake": 1 }));
        assert_eq!(t["Errors"], 1);
        assert_eq!(t["ErrorsByType"]["ConnectionErrors"], 1);
        assert_eq!(t["ErrorsByType"]["DNSErrors"], 0);
        assert_eq!(t["HTTPErrors"], 1);
        assert_eq!(t["HTTPErrorsByCode"], json!({ "403": 1 }));
        assert_eq!(t["Dropped"], 1);
        assert_eq!(t["Requeued"], 1);
        assert!(status_text(&s, 1031.0).contains("API key ending with bcdef: API Key invalid"));
    }

    #[test]
    fn status_text_starts_like_the_agent() {
        let text = status_text(&state(), 1010.0);
        assert!(text.starts_with("Getting the status from the agent.\n\n"));
        assert!(text.contains("API key ending with bcdef: API Key valid"));
    }

    mod against_the_samples;

    #[test]
    fn preamble_is_a_log_line() {
        assert!(log_preamble(0.0).starts_with("1970-01-01 00:00:00 UTC | CORE | INFO | ("));
    }
}
