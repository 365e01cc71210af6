//! `ddsky dashboard`'s wanted state as plain data: the one dashboard for every run and the one
//! idle-GPU monitor, built from the job's identity (`env`, `service`, as `up` tags the nodes) and
//! the monitor's options; and the comparisons that tell whether what Datadog holds has drifted from
//! it. Every query names a metric the agent really emits (the unit tests check each one against
//! that list). Nothing here talks to Datadog: `datadog_api` sends, `commands::dashboard` decides.
//!
//! Layer: core (see `src/layers.rs`): may use other core modules only.

use serde_json::{json, Value};
use std::time::Duration;

/// The tag every object ddsky makes carries (monitors only: dashboards take `team:` tags alone).
pub const MANAGED_BY_TAG: &str = "managed-by:ddsky";

/// The dashboard's template variables: the run's identity tags `up` puts on every node.
pub const RUN_VARIABLES: [&str; 3] = ["metta_run_id", "skypilot_cluster", "skypilot_node_rank"];

/// The job's identity: the `env` and `service` tags `up` gives every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub env: String,
    pub service: String,
}

/// The idle-GPU monitor's options.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorOptions {
    /// Percent of time the SMs were busy, averaged over the window, below which a node is idle.
    pub idle_below: f64,
    /// The window (whole minutes).
    pub idle_for: Duration,
    /// How long a new run's node is left alone (data loading, compilation).
    pub startup_grace: Duration,
    /// Where alerts go: `@slack-...`, `@pagerduty-...`, `@user@example.com`.
    pub notify: Vec<String>,
}

/// The dashboard's title: how ddsky finds it again (dashboards carry no free tags). Stable across
/// runs and versions; the identity is in it so that two teams' settings never fight over one page.
pub fn dashboard_title(id: &Identity) -> String {
    format!(
        "[ddsky] SkyPilot runs (env:{}, service:{})",
        id.env, id.service
    )
}

/// The monitor's name: with [`MANAGED_BY_TAG`], how ddsky finds it again. Stable like the title.
pub fn monitor_name(id: &Identity) -> String {
    format!(
        "[ddsky] Idle GPUs in a SkyPilot run (env:{}, service:{})",
        id.env, id.service
    )
}

/// A `--notify` value as a handle in a monitor message: `@` in front when it is missing.
pub fn notify_handle(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() || raw == "@" {
        return Err("--notify needs a handle, e.g. @slack-ml-alerts, @pagerduty-training or @you@example.com".into());
    }
    if raw.chars().any(char::is_whitespace) {
        return Err(format!(
            "--notify {raw:?} has a space; give one handle per --notify (e.g. @slack-ml-alerts)"
        ));
    }
    Ok(if raw.starts_with('@') {
        raw.to_owned()
    } else {
        format!("@{raw}")
    })
}

/// `--idle-for` as Datadog's evaluation window (`last_30m`, `last_2h`): whole minutes, 1m to 24h.
pub fn evaluation_window(d: Duration) -> Result<String, String> {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || !secs.is_multiple_of(60) || !(60..=24 * 3600).contains(&secs) {
        return Err(format!(
            "--idle-for {} is not a whole number of minutes between 1m and 24h; use e.g. 30m or 2h",
            humantime::format_duration(d)
        ));
    }
    let minutes = secs / 60;
    Ok(if minutes.is_multiple_of(60) {
        format!("last_{}h", minutes / 60)
    } else {
        format!("last_{minutes}m")
    })
}

/// Checks `--idle-below`: a percentage above 0.
pub fn check_idle_below(v: f64) -> Result<f64, String> {
    if v.is_finite() && v > 0.0 && v <= 100.0 {
        Ok(v)
    } else {
        Err(format!(
            "--idle-below {v} is not a percentage above 0 (SM activity, 0-100); use e.g. 5"
        ))
    }
}

/// A threshold as the query writes it: `5`, `2.5`.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The scope every metric query of the dashboard takes: the identity and the run's variables.
const SCOPE: &str = "$env,$service,$metta_run_id,$skypilot_cluster,$skypilot_node_rank";
/// Logs: the run's variables and env. `service` on a log is the service of the container or file
/// it came from (the job's own name), not the node's `service` tag, so it does not filter logs.
const LOG_SCOPE: &str = "$env $metta_run_id $skypilot_cluster $skypilot_node_rank";
/// The agent's own container, left out of the job container's panels (the agent image's short name).
const NOT_THE_AGENT: &str = "!short_image:agent";

fn metric(name: &str, query: String) -> Value {
    json!({"data_source": "metrics", "name": name, "query": query})
}

fn metric_agg(name: &str, query: String, aggregator: &str) -> Value {
    json!({"data_source": "metrics", "name": name, "query": query, "aggregator": aggregator})
}

/// A timeseries panel over `queries`, drawn as `formulas` (each with its alias).
fn timeseries(title: &str, queries: Vec<Value>, formulas: &[(&str, &str)]) -> Value {
    let formulas: Vec<Value> = formulas
        .iter()
        .map(|(f, alias)| json!({"formula": f, "alias": alias}))
        .collect();
    json!({"definition": {
        "type": "timeseries",
        "title": title,
        "show_legend": true,
        "requests": [{
            "queries": queries,
            "formulas": formulas,
            "response_format": "timeseries",
            "display_type": "line",
        }],
    }})
}

/// A toplist of one query, `count` rows in `order` (`asc`: the least first).
fn toplist(title: &str, query: Value, count: i64, order: &str) -> Value {
    json!({"definition": {
        "type": "toplist",
        "title": title,
        "requests": [{
            "queries": [query],
            "formulas": [{"formula": "a", "limit": {"count": count, "order": order}}],
            "response_format": "scalar",
        }],
    }})
}

fn log_stream(title: &str, query: String) -> Value {
    json!({"definition": {
        "type": "log_stream",
        "title": title,
        "query": query,
        "columns": ["host", "service"],
        "show_date_column": true,
        "show_message_column": true,
        "message_display": "expanded-md",
        "sort": {"column": "time", "order": "desc"},
    }})
}

fn group(title: &str, widgets: Vec<Value>) -> Value {
    json!({"definition": {
        "type": "group",
        "title": title,
        "layout_type": "ordered",
        "show_title": true,
        "widgets": widgets,
    }})
}

/// The note at the top: what the page is, who made it, how to check a run.
fn note(id: &Identity) -> String {
    format!(
        "**Every SkyPilot run of env `{env}`, service `{service}`, one run at a time.** Pick the run \
         with `metta_run_id` above (or a cluster with `skypilot_cluster`, a node with \
         `skypilot_node_rank`).\n\n\
         Made by `ddsky dashboard`, which keeps it: edits made here are put back on its next run \
         (clone the dashboard to keep your own). GPU panels need the agent's GPU check (`ddsky up` \
         turns it on where the node has NVIDIA GPUs); the job container panels show a job that runs \
         in its own container (SkyPilot's `image_id: docker:`), the host panels every job.\n\n\
         Is every node of a run reporting? From where you launched it: \
         `ddsky verify --run-id <run>`",
        env = id.env,
        service = id.service
    )
}

/// The body of `POST /api/v1/dashboard` (and of the `PUT` that puts it back).
pub fn dashboard_body(id: &Identity) -> Value {
    let scope = |extra: &str| {
        if extra.is_empty() {
            format!("{{{SCOPE}}}")
        } else {
            format!("{{{SCOPE},{extra}}}")
        }
    };
    let s = scope("");
    let job = scope(NOT_THE_AGENT);
    let mut variables = vec![
        json!({"name": "env", "prefix": "env", "defaults": [id.env], "available_values": []}),
        json!({"name": "service", "prefix": "service", "defaults": [id.service], "available_values": []}),
    ];
    for v in RUN_VARIABLES {
        variables.push(json!({"name": v, "prefix": v, "defaults": ["*"], "available_values": []}));
    }
    let widgets = vec![
        json!({"definition": {"type": "note", "content": note(id), "background_color": "white",
            "font_size": "14", "text_align": "left", "show_tick": false, "has_padding": true}}),
        group(
            "Nodes",
            vec![
                toplist(
                    "Nodes reporting, per run (skypilot_num_nodes: the nodes launched)",
                    metric_agg(
                        "a",
                        format!(
                            "sum:datadog.agent.running{s} by {{metta_run_id,skypilot_num_nodes}}"
                        ),
                        "last",
                    ),
                    50,
                    "asc",
                ),
                timeseries(
                    "Nodes reporting",
                    vec![metric(
                        "a",
                        format!("sum:datadog.agent.running{s} by {{metta_run_id}}"),
                    )],
                    &[("a", "nodes")],
                ),
            ],
        ),
        group(
            "GPUs",
            vec![
                timeseries(
                    "GPU SM activity per node (%)",
                    vec![metric(
                        "a",
                        format!("avg:gpu.sm_active{s} by {{host,skypilot_node_rank}}"),
                    )],
                    &[("a", "SM active %")],
                ),
                toplist(
                    "Least busy GPUs (SM activity %, lowest first)",
                    metric_agg(
                        "a",
                        format!("avg:gpu.sm_active{s} by {{host,gpu_uuid}}"),
                        "avg",
                    ),
                    25,
                    "asc",
                ),
                timeseries(
                    "GPU SM activity per GPU (%)",
                    vec![metric(
                        "a",
                        format!("avg:gpu.sm_active{s} by {{host,gpu_uuid}}"),
                    )],
                    &[("a", "SM active %")],
                ),
                timeseries(
                    "GPU memory used per GPU (limit - free - reserved)",
                    vec![
                        metric(
                            "mem_limit",
                            format!("avg:gpu.memory.limit{s} by {{host,gpu_uuid}}"),
                        ),
                        metric(
                            "mem_free",
                            format!("avg:gpu.memory.free{s} by {{host,gpu_uuid}}"),
                        ),
                        metric(
                            "mem_reserved",
                            format!("avg:gpu.memory.reserved{s} by {{host,gpu_uuid}}"),
                        ),
                    ],
                    &[("mem_limit - mem_free - mem_reserved", "used bytes")],
                ),
                timeseries(
                    "GPU power per GPU (W)",
                    vec![metric(
                        "a",
                        format!("avg:gpu.power.usage{s} by {{host,gpu_uuid}}"),
                    )],
                    &[("a / 1000", "W")],
                ),
                timeseries(
                    "GPU temperature per GPU (C)",
                    vec![metric(
                        "a",
                        format!("max:gpu.temperature{s} by {{host,gpu_uuid}}"),
                    )],
                    &[("a", "C")],
                ),
                timeseries(
                    "GPU XID errors per node",
                    vec![metric(
                        "a",
                        format!("sum:gpu.errors.xid.total{s} by {{host}}"),
                    )],
                    &[("a", "XID errors")],
                ),
            ],
        ),
        group(
            "Hosts",
            vec![
                timeseries(
                    "Host CPU per node (user %)",
                    vec![metric(
                        "a",
                        format!("avg:system.cpu.user{s} by {{host,skypilot_node_rank}}"),
                    )],
                    &[("a", "user %")],
                ),
                timeseries(
                    "Host memory used per node",
                    vec![metric(
                        "a",
                        format!("avg:system.mem.used{s} by {{host,skypilot_node_rank}}"),
                    )],
                    &[("a", "used bytes")],
                ),
                timeseries(
                    "Host network per node (bytes/s)",
                    vec![
                        metric("rcvd", format!("sum:system.net.bytes_rcvd{s} by {{host}}")),
                        metric("sent", format!("sum:system.net.bytes_sent{s} by {{host}}")),
                    ],
                    &[("rcvd", "received"), ("sent", "sent")],
                ),
            ],
        ),
        group(
            "Job container (a job in its own container: SkyPilot's image_id: docker:)",
            vec![
                timeseries(
                    "Job container CPU (% of a core)",
                    vec![metric(
                        "a",
                        format!("sum:docker.cpu.usage{job} by {{host,container_name}}"),
                    )],
                    &[("a", "CPU %")],
                ),
                timeseries(
                    "Job container memory (RSS)",
                    vec![metric(
                        "a",
                        format!("sum:docker.mem.rss{job} by {{host,container_name}}"),
                    )],
                    &[("a", "RSS bytes")],
                ),
            ],
        ),
        group(
            "Logs",
            vec![
                log_stream("The run's logs, newest first", LOG_SCOPE.to_owned()),
                log_stream(
                    "The run's error lines, newest first",
                    format!("{LOG_SCOPE} status:error"),
                ),
            ],
        ),
    ];
    json!({
        "title": dashboard_title(id),
        "description": "Every SkyPilot run at a glance, one run at a time (template variable metta_run_id). Made and kept by `ddsky dashboard`: edits here are put back on its next run.",
        "layout_type": "ordered",
        "reflow_type": "auto",
        "template_variables": variables,
        "widgets": widgets,
    })
}

/// The monitor's query: one alert per run and node whose GPUs' SM activity, averaged over the
/// window and the node's GPUs, stays below the threshold.
pub fn monitor_query(id: &Identity, o: &MonitorOptions) -> Result<String, String> {
    Ok(format!(
        "avg({window}):avg:gpu.sm_active{{env:{env},service:{service}}} by {{metta_run_id,host}} < {n}",
        window = evaluation_window(o.idle_for)?,
        env = id.env,
        service = id.service,
        n = number(o.idle_below)
    ))
}

/// The link in the alert to the dashboard, filtered to the alerting run (Datadog fills
/// `{{metta_run_id.name}}`).
fn run_link(dashboard_url: &str) -> String {
    format!("{dashboard_url}?tpl_var_metta_run_id={{{{metta_run_id.name}}}}")
}

/// The body of `POST /api/v1/monitor` (and of the `PUT` that puts it back).
pub fn monitor_body(
    id: &Identity,
    o: &MonitorOptions,
    dashboard_url: &str,
) -> Result<Value, String> {
    let window = humantime::format_duration(o.idle_for).to_string();
    let threshold = number(o.idle_below);
    let mut message = format!(
        "{{{{#is_alert}}}}The GPUs of run {{{{metta_run_id.name}}}} on {{{{host.name}}}} have been idle for {window}: \
         SM activity {{{{value}}}} % on average, below {threshold} %.\n\n\
         Idle GPUs cost the whole node's price every minute. Check, on that node and its run:\n\
         - a collective hung in NCCL (every rank waiting on one that died or stalled),\n\
         - a stalled data loader (an empty queue, a slow or unreachable bucket),\n\
         - a job that finished its work but still holds its nodes (`sky down` or `sky autostop` it).\n\n\
         The run's dashboard: {link}\n\
         {{{{/is_alert}}}}\n\
         {{{{#is_recovery}}}}The GPUs of run {{{{metta_run_id.name}}}} on {{{{host.name}}}} are busy again.{{{{/is_recovery}}}}\n\n\
         Made by `ddsky dashboard`, which keeps this monitor: edits made here are put back on its next run.",
        link = run_link(dashboard_url),
    );
    if !o.notify.is_empty() {
        message.push_str("\n\n");
        message.push_str(&o.notify.join(" "));
    }
    Ok(json!({
        "name": monitor_name(id),
        "type": "query alert",
        "query": monitor_query(id, o)?,
        "message": message,
        "tags": [MANAGED_BY_TAG, format!("env:{}", id.env), format!("service:{}", id.service)],
        "priority": 3,
        "options": {
            "thresholds": {"critical": o.idle_below},
            "notify_no_data": false,
            "require_full_window": false,
            "new_group_delay": o.startup_grace.as_secs(),
            "include_tags": true,
        },
    }))
}

/// Fields Datadog adds to what it keeps, never sent and never compared.
const READ_ONLY: [&str; 15] = [
    "id",
    "url",
    "author_handle",
    "author_name",
    "created_at",
    "modified_at",
    "is_read_only",
    "created",
    "modified",
    "creator",
    "overall_state",
    "overall_state_modified",
    "multi",
    "deleted",
    "org_id",
];

/// Whether `got` (what Datadog answers) holds everything `wanted` says, the same. Fields Datadog
/// adds (read-only ones, defaults it fills in) are not drift; a changed or missing field, or a list
/// of another length (a widget added or removed by hand), is. Numbers compare by value (5 == 5.0).
pub fn holds(wanted: &Value, got: &Value) -> bool {
    match (wanted, got) {
        (Value::Object(w), Value::Object(g)) => w.iter().all(|(k, wv)| {
            if READ_ONLY.contains(&k.as_str()) {
                return true;
            }
            match g.get(k) {
                Some(gv) => holds(wv, gv),
                None => wv.is_null(),
            }
        }),
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| holds(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// Whether the dashboard Datadog holds has drifted from the wanted body.
pub fn dashboard_drifted(wanted: &Value, got: &Value) -> bool {
    !holds(wanted, got)
}

/// Whether the monitor Datadog holds has drifted from the wanted body. `query alert` and `metric
/// alert` are one type (the API may answer either); tags compare as a set.
pub fn monitor_drifted(wanted: &Value, got: &Value) -> bool {
    let same_type = |t: &Value| match t.as_str() {
        Some("query alert" | "metric alert") => "query alert".to_owned(),
        other => other.unwrap_or_default().to_owned(),
    };
    if same_type(&wanted["type"]) != same_type(&got["type"]) {
        return true;
    }
    let tag_set = |v: &Value| {
        let mut tags: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect();
        tags.sort();
        tags.dedup();
        tags
    };
    if tag_set(&wanted["tags"]) != tag_set(&got["tags"]) {
        return true;
    }
    let mut rest = wanted.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("type");
        map.remove("tags");
    }
    !holds(&rest, got)
}

/// Which of the listed objects is ddsky's: `Ok(None)` none, `Ok(Some)` exactly one, `Err` the ids
/// of every match when there are two or more (never a guess).
pub fn the_one<T: Clone>(matches: &[(T, String)]) -> Result<Option<T>, Vec<String>> {
    match matches {
        [] => Ok(None),
        [(one, _)] => Ok(Some(one.clone())),
        many => Err(many.iter().map(|(_, id)| id.clone()).collect()),
    }
}

/// SkyPilot's `dashboard.external_links` entry (its API server's config) that links every cluster
/// page of SkyPilot's dashboard to this dashboard, filtered to the cluster. SkyPilot fills
/// `${cluster_name}`.
pub fn skypilot_external_link(dashboard_url: &str) -> String {
    format!(
        "dashboard:\n  external_links:\n    - label: Datadog\n      url: {dashboard_url}?tpl_var_skypilot_cluster=${{cluster_name}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric names the agent really emits (shared/datadog-dashboards.md section 5: the GPU
    /// check, the host, the agent itself, the container and docker checks).
    const EMITTED: &[&str] = &[
        "gpu.sm_active",
        "gpu.gr_engine_active",
        "gpu.memory.limit",
        "gpu.memory.free",
        "gpu.memory.reserved",
        "gpu.power.usage",
        "gpu.temperature",
        "gpu.errors.xid.total",
        "gpu.device.total",
        "gpu.pci.throughput.rx",
        "gpu.pci.throughput.tx",
        "system.cpu.user",
        "system.cpu.idle",
        "system.load.1",
        "system.mem.used",
        "system.mem.usable",
        "system.mem.pct_usable",
        "system.net.bytes_rcvd",
        "system.net.bytes_sent",
        "system.disk.in_use",
        "datadog.agent.running",
        "container.cpu.usage",
        "container.memory.usage",
        "container.memory.rss",
        "docker.cpu.usage",
        "docker.mem.rss",
        "docker.net.bytes_rcvd",
        "docker.net.bytes_sent",
        "docker.containers.running",
    ];

    fn identity() -> Identity {
        Identity {
            env: "production".into(),
            service: "skypilot-worker".into(),
        }
    }

    fn options() -> MonitorOptions {
        MonitorOptions {
            idle_below: 5.0,
            idle_for: Duration::from_secs(30 * 60),
            startup_grace: Duration::from_secs(30 * 60),
            notify: vec![],
        }
    }

    /// Every metric query string of a dashboard, however deep.
    fn queries(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if m.get("data_source").and_then(Value::as_str) == Some("metrics") {
                    out.push(m["query"].as_str().unwrap().to_owned());
                }
                m.values().for_each(|v| queries(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| queries(v, out)),
            _ => {}
        }
    }

    /// `agg:metric{scope} by {..}` -> metric.
    fn metric_of(q: &str) -> &str {
        let head = q.split('{').next().unwrap();
        head.rsplit(':').next().unwrap()
    }

    #[test]
    fn every_panel_reads_a_metric_the_agent_emits() {
        let mut qs = Vec::new();
        queries(&dashboard_body(&identity()), &mut qs);
        assert!(qs.len() >= 15, "{qs:?}");
        for q in &qs {
            assert!(
                EMITTED.contains(&metric_of(q)),
                "{q}: not a metric the agent emits"
            );
            assert!(
                q.contains(SCOPE),
                "{q}: not scoped to the template variables"
            );
        }
        let monitor = monitor_query(&identity(), &options()).unwrap();
        assert!(EMITTED.contains(&metric_of(monitor.split("):").nth(1).unwrap())));
        let all = dashboard_body(&identity()).to_string();
        for gone in [
            "gpu.utilization",
            "system.gpu.utilization",
            "gpu.memory.usage",
            "gpu.core.usage",
        ] {
            assert!(!all.contains(&format!("{gone}{{")), "{gone} does not exist");
        }
        // The panels: nodes against skypilot_num_nodes, SM activity per node and per GPU,
        // the least busy first, memory, power, temperature, XID, host CPU/memory/network, the job
        // container, logs and errors, the note.
        for needle in [
            "by {metta_run_id,skypilot_num_nodes}",
            "gpu.sm_active{$env,$service,$metta_run_id,$skypilot_cluster,$skypilot_node_rank} by {host,skypilot_node_rank}",
            "\"order\":\"asc\"",
            "mem_limit - mem_free - mem_reserved",
            "gpu.power.usage",
            "gpu.temperature",
            "gpu.errors.xid.total",
            "system.cpu.user",
            "system.mem.used",
            "system.net.bytes_rcvd",
            "docker.cpu.usage",
            "docker.mem.rss",
            "\"type\":\"log_stream\"",
            "status:error",
            "ddsky verify --run-id",
            "\"order\":\"desc\"",
        ] {
            assert!(all.contains(needle), "no {needle}");
        }
    }

    #[test]
    fn template_variables_are_the_runs_identity() {
        let body = dashboard_body(&Identity {
            env: "staging".into(),
            service: "trainer".into(),
        });
        let vars = body["template_variables"].as_array().unwrap();
        let names: Vec<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "env",
                "service",
                "metta_run_id",
                "skypilot_cluster",
                "skypilot_node_rank"
            ]
        );
        for v in vars {
            assert_eq!(v["name"], v["prefix"]);
        }
        assert_eq!(vars[0]["defaults"], json!(["staging"]));
        assert_eq!(vars[1]["defaults"], json!(["trainer"]));
        assert_eq!(vars[2]["defaults"], json!(["*"]));
        assert_eq!(
            body["title"],
            "[ddsky] SkyPilot runs (env:staging, service:trainer)"
        );
        // Every $variable used is declared.
        let text = body.to_string();
        for used in text.split('$').skip(1) {
            let name: String = used
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                names.contains(&name.as_str()),
                "${name} is not a template variable"
            );
        }
        // Logs are not filtered by the node's service tag (a log's service is its source's).
        assert!(text.contains(&format!("\"query\":\"{LOG_SCOPE}\"")));
        assert!(!LOG_SCOPE.contains("$service"));
    }

    #[test]
    fn the_monitor_query_and_thresholds_agree() {
        let o = MonitorOptions {
            idle_below: 2.5,
            idle_for: Duration::from_secs(2 * 3600),
            startup_grace: Duration::from_secs(45 * 60),
            notify: vec!["@slack-ml".into(), "@you@example.com".into()],
        };
        let body = monitor_body(
            &identity(),
            &o,
            "https://app.datadoghq.com/dashboard/abc-def-ghi",
        )
        .unwrap();
        assert_eq!(
            body["query"],
            "avg(last_2h):avg:gpu.sm_active{env:production,service:skypilot-worker} by {metta_run_id,host} < 2.5"
        );
        assert_eq!(body["options"]["thresholds"]["critical"], 2.5);
        let n: f64 = body["query"]
            .as_str()
            .unwrap()
            .rsplit("< ")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(json!(n), body["options"]["thresholds"]["critical"]);
        assert_eq!(body["options"]["notify_no_data"], false);
        assert_eq!(body["options"]["new_group_delay"], 2700);
        assert_eq!(body["type"], "query alert");
        assert!(body["tags"]
            .as_array()
            .unwrap()
            .contains(&json!(MANAGED_BY_TAG)));
        let message = body["message"].as_str().unwrap();
        assert!(message.ends_with("@slack-ml @you@example.com"), "{message}");
        for needle in [
            "{{metta_run_id.name}}",
            "{{host.name}}",
            "NCCL",
            "data loader",
            "still holds its nodes",
            "https://app.datadoghq.com/dashboard/abc-def-ghi?tpl_var_metta_run_id={{metta_run_id.name}}",
            "for 2h",
        ] {
            assert!(message.contains(needle), "no {needle}: {message}");
        }

        let default = monitor_body(&identity(), &options(), "https://x/dashboard/a").unwrap();
        assert_eq!(
            default["query"],
            "avg(last_30m):avg:gpu.sm_active{env:production,service:skypilot-worker} by {metta_run_id,host} < 5"
        );
        assert_eq!(default["options"]["thresholds"]["critical"], 5.0);
        assert_eq!(default["options"]["new_group_delay"], 1800);
        assert!(
            !default["message"].as_str().unwrap().contains('@'),
            "no handle without --notify"
        );
    }

    #[test]
    fn windows_handles_and_thresholds() {
        let m = |s| Duration::from_secs(s);
        assert_eq!(evaluation_window(m(30 * 60)).unwrap(), "last_30m");
        assert_eq!(evaluation_window(m(90 * 60)).unwrap(), "last_90m");
        assert_eq!(evaluation_window(m(3600)).unwrap(), "last_1h");
        assert_eq!(evaluation_window(m(24 * 3600)).unwrap(), "last_24h");
        assert!(evaluation_window(m(90)).is_err());
        assert!(evaluation_window(m(0)).is_err());
        assert!(evaluation_window(m(25 * 3600)).is_err());
        assert_eq!(notify_handle("slack-ml").unwrap(), "@slack-ml");
        assert_eq!(notify_handle("@pagerduty-x").unwrap(), "@pagerduty-x");
        assert_eq!(
            notify_handle("you@example.com").unwrap(),
            "@you@example.com"
        );
        assert!(notify_handle(" ").is_err());
        assert!(notify_handle("@a @b").is_err());
        assert!(check_idle_below(0.0).is_err());
        assert!(check_idle_below(101.0).is_err());
        assert!(check_idle_below(f64::NAN).is_err());
        assert_eq!(check_idle_below(5.0), Ok(5.0));
    }

    #[test]
    fn drift_ignores_what_datadog_adds_and_sees_what_a_person_changed() {
        let wanted = dashboard_body(&identity());
        let mut got = wanted.clone();
        got["id"] = json!("abc-def-ghi");
        got["author_handle"] = json!("someone@example.com");
        got["widgets"][1]["id"] = json!(12345);
        got["widgets"][1]["definition"]["title_size"] = json!("16");
        assert!(!dashboard_drifted(&wanted, &got));
        let mut edited = got.clone();
        edited["widgets"][2]["definition"]["widgets"][0]["definition"]["title"] = json!("mine");
        assert!(dashboard_drifted(&wanted, &edited));
        let mut removed = got.clone();
        removed["widgets"].as_array_mut().unwrap().pop();
        assert!(dashboard_drifted(&wanted, &removed));

        let o = options();
        let wanted = monitor_body(&identity(), &o, "https://x/dashboard/a").unwrap();
        let mut got = wanted.clone();
        got["id"] = json!(42);
        got["type"] = json!("metric alert");
        got["tags"] = json!(["service:skypilot-worker", "env:production", MANAGED_BY_TAG]);
        got["options"]["thresholds"]["critical"] = json!(5);
        got["options"]["silenced"] = json!({});
        got["overall_state"] = json!("OK");
        assert!(!monitor_drifted(&wanted, &got));
        let mut notified = got.clone();
        notified["message"] = json!(format!("{} @slack-x", got["message"].as_str().unwrap()));
        assert!(monitor_drifted(&wanted, &notified));
        let mut threshold = got.clone();
        threshold["options"]["thresholds"]["critical"] = json!(10);
        assert!(monitor_drifted(&wanted, &threshold));
    }

    #[test]
    fn two_matches_are_an_error_naming_both() {
        assert_eq!(the_one::<u8>(&[]), Ok(None));
        assert_eq!(the_one(&[(1, "a".into())]), Ok(Some(1)));
        assert_eq!(
            the_one(&[(1, "abc-1".into()), (2, "abc-2".into())]),
            Err(vec!["abc-1".to_owned(), "abc-2".to_owned()])
        );
    }

    #[test]
    fn the_skypilot_link_fills_the_cluster_variable() {
        let entry = skypilot_external_link("https://app.datadoghq.com/dashboard/abc-def-ghi");
        assert_eq!(
            entry,
            "dashboard:\n  external_links:\n    - label: Datadog\n      url: https://app.datadoghq.com/dashboard/abc-def-ghi?tpl_var_skypilot_cluster=${cluster_name}\n"
        );
    }
}
