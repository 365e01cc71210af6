//! `ddsky verify`'s pure core: which requests to make (site mapping, queries, the logs aggregate),
//! and how the API's answers become one verdict per node. No I/O: `datadog_api` asks,
//! `commands::verify` orchestrates and prints.
//!
//! Layer: domain (see `src/layers.rs`): may use the core, the edges and other domain modules; never
//! `cli`, `settings` or `commands`.

use crate::datadog_api::{
    percent_encode, Host, LogsAggregateRequest, LogsAggregateResponse, LogsCompute, LogsGroupBy,
    LogsQueryFilter, MetricsQueryMetadata,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The tag keys ddsky gives every node (see `tags`).
pub const RANK_TAG: &str = "skypilot_node_rank";
pub const NUM_NODES_TAG: &str = "skypilot_num_nodes";
pub const RUN_TAG: &str = "metta_run_id";
pub const CLUSTER_TAG: &str = "skypilot_cluster";

/// The metrics looked at, each one the agent really emits.
pub const AGENT_METRIC: &str = "datadog.agent.running";
pub const HOST_METRIC: &str = "system.cpu.user";
pub const CONTAINER_METRIC: &str = "docker.cpu.usage";
pub const GPU_DEVICES_METRIC: &str = "gpu.device.total";
pub const GPU_ACTIVE_METRIC: &str = "gpu.sm_active";

/// Images of the Datadog Agent itself, whose container never counts as the job's.
const AGENT_IMAGES: [&str; 6] = [
    "datadog/agent",
    "gcr.io/datadoghq/agent",
    "public.ecr.aws/datadog/agent",
    "registry.datadoghq.com/agent",
    "datadoghq.azurecr.io/agent",
    "docker.io/datadog/agent",
];

/// The API base for a site: `https://api.<site>` (every site; see datadog-api.md §1).
pub fn api_base(site: &str) -> String {
    format!("https://api.{}", site.trim().trim_end_matches('/'))
}

/// The web UI host for a site: `app.` in front of the three original sites, the site itself for
/// the newer ones (us3, us5, ap1, ap2, uk1, us2.ddog-gov.com).
pub fn ui_base(site: &str) -> String {
    let site = site.trim().trim_end_matches('/');
    match site {
        "datadoghq.com" | "datadoghq.eu" | "ddog-gov.com" => format!("https://app.{site}"),
        other => format!("https://{other}"),
    }
}

/// Why `DDSKY_API_URL` is refused, or the base to use.
pub fn check_api_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("DDSKY_API_URL {url:?} is not a URL; use https://host[:port]"))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(format!(
            "DDSKY_API_URL {url:?} names no host; use https://host[:port]"
        ));
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    match scheme {
        "https" => Ok(url.to_owned()),
        "http" if is_loopback(host) => Ok(url.to_owned()),
        "http" => Err(format!("DDSKY_API_URL {url:?} is plain http to a host that is not loopback: the keys would travel in clear; use https (http is only for 127.0.0.1 / localhost)")),
        _ => Err(format!("DDSKY_API_URL {url:?}: the scheme must be https")),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Which run: the tags every node of it carries (`metta_run_id:ID`, `skypilot_cluster:NAME`,
/// `--tag k:v`), normalised like `up` normalises them.
pub fn selector_tags(
    run_id: Option<&str>,
    cluster: Option<&str>,
    extra: &[String],
) -> Result<Vec<String>, String> {
    let mut raw = Vec::new();
    if let Some(id) = run_id.map(str::trim).filter(|v| !v.is_empty()) {
        raw.push(format!("{RUN_TAG}:{id}"));
    }
    if let Some(c) = cluster.map(str::trim).filter(|v| !v.is_empty()) {
        raw.push(format!("{CLUSTER_TAG}:{c}"));
    }
    raw.extend(extra.iter().map(|t| t.trim().to_owned()));
    if raw.is_empty() {
        return Err("say which run: --run-id ID, --cluster NAME or --tag key:value".into());
    }
    let mut tags = Vec::new();
    for r in raw {
        match r.split_once(':') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => {}
            _ => {
                return Err(format!(
                    "tag {r:?} is not key:value; pass it as --tag key:value"
                ))
            }
        }
        let tag = crate::tags::normalize(&r).tag.ok_or_else(|| {
            format!("tag {r:?} has nothing left after Datadog's tag rules; use letters, digits and _ - : . /")
        })?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

/// The metric scope: the tags, comma-joined (AND).
pub fn scope(tags: &[String]) -> String {
    tags.join(",")
}

/// The metric queries of one look, in a fixed order; their number does not depend on the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queries {
    pub agent: String,
    pub host: String,
    pub container: String,
    pub gpu_devices: String,
    pub gpu_active: String,
}

pub fn queries(tags: &[String]) -> Queries {
    let s = scope(tags);
    let by = format!("by {{host,{RANK_TAG}}}");
    Queries {
        agent: format!("max:{AGENT_METRIC}{{{s}}} by {{host,{RANK_TAG},{NUM_NODES_TAG}}}"),
        host: format!("max:{HOST_METRIC}{{{s}}} {by}"),
        container: format!(
            "max:{CONTAINER_METRIC}{{{s}}} by {{host,{RANK_TAG},container_name,short_image,image_name}}"
        ),
        gpu_devices: format!("max:{GPU_DEVICES_METRIC}{{{s}}} {by}"),
        gpu_active: format!("max:{GPU_ACTIVE_METRIC}{{{s}}} {by}"),
    }
}

/// One logs-aggregate call: the count in the window, grouped by host. Host tags are searchable as
/// `key:value`; space means AND.
pub fn logs_request(tags: &[String], from_ms: i64, to_ms: i64) -> LogsAggregateRequest {
    LogsAggregateRequest {
        compute: vec![LogsCompute {
            aggregation: "count".into(),
            kind: "total".into(),
        }],
        filter: LogsQueryFilter {
            query: tags.join(" "),
            from: from_ms.to_string(),
            to: to_ms.to_string(),
            indexes: vec!["*".into()],
        },
        group_by: vec![LogsGroupBy {
            facet: "host".into(),
            limit: 10000,
            missing: "(none)".into(),
        }],
    }
}

/// Links to the run in Datadog's web UI.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Links {
    pub logs: String,
    pub infrastructure: String,
    pub metrics: String,
}

pub fn links(site_ui: &str, tags: &[String], from_ms: i64, to_ms: i64) -> Links {
    let search = percent_encode(&tags.join(" "));
    let scope = percent_encode(&scope(tags));
    Links {
        logs: format!("{site_ui}/logs?query={search}&from_ts={from_ms}&to_ts={to_ms}&live=false"),
        infrastructure: format!("{site_ui}/infrastructure?tags={scope}"),
        metrics: format!(
            "{site_ui}/metric/explorer?exp_metric={AGENT_METRIC}&exp_scope={scope}&exp_group={}&exp_agg=max",
            percent_encode(&format!("host,{RANK_TAG}"))
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Answers -> verdicts.

/// What the logs call gave: counts by host, or why logs were not checked.
#[derive(Debug, Clone, PartialEq)]
pub enum LogsAnswer {
    Counted(BTreeMap<String, u64>),
    NotChecked(String),
}

/// The counts of a logs-aggregate answer, by host (`c0`, the first compute).
pub fn logs_counts(answer: &LogsAggregateResponse) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for bucket in answer.data.iter().flat_map(|d| d.buckets.iter()) {
        let Some(host) = bucket.by.get("host").and_then(|h| h.as_str()) else {
            continue;
        };
        let n = bucket
            .computes
            .get("c0")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        *counts.entry(host.to_owned()).or_insert(0) += n.max(0.0) as u64;
    }
    counts
}

/// Every answer of one look.
#[derive(Debug, Clone)]
pub struct Answers {
    pub hosts: Vec<Host>,
    pub agent: Vec<MetricsQueryMetadata>,
    pub host: Vec<MetricsQueryMetadata>,
    pub container: Vec<MetricsQueryMetadata>,
    pub gpu_devices: Vec<MetricsQueryMetadata>,
    pub gpu_active: Vec<MetricsQueryMetadata>,
    pub logs: LogsAnswer,
}

/// What the user expects besides the answers.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub tags: Vec<String>,
    /// `--expect` patterns: container name, or image repository's last path component.
    pub expect: Vec<String>,
    /// The agent container's name (`--name`), which never counts as the job's.
    pub agent_name: String,
    /// `--nodes N`.
    pub nodes: Option<u32>,
    /// `--gpus`: check GPU metrics on every node.
    pub gpus: bool,
    /// `--vm-mode`: the job ran on the VM itself, so no node has a job container.
    pub vm_mode: bool,
    /// Now, Unix seconds.
    pub now: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Missing,
    NotChecked,
    /// Nothing to look for (a job on the VM has no container).
    NotExpected,
}

/// One column of one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    pub status: Status,
    /// Seconds since the last point (metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<f64>,
    /// Log lines in the window (logs), GPUs (gpu).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Why it is missing or not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Column {
    fn ok(age_secs: Option<f64>, count: Option<u64>) -> Self {
        Column {
            status: Status::Ok,
            age_secs,
            count,
            detail: None,
        }
    }
    fn missing(detail: impl Into<String>) -> Self {
        Column {
            status: Status::Missing,
            age_secs: None,
            count: None,
            detail: Some(detail.into()),
        }
    }
    fn not_expected(detail: impl Into<String>) -> Self {
        Column {
            status: Status::NotExpected,
            age_secs: None,
            count: None,
            detail: Some(detail.into()),
        }
    }
    fn not_checked(detail: impl Into<String>) -> Self {
        Column {
            status: Status::NotChecked,
            age_secs: None,
            count: None,
            detail: Some(detail.into()),
        }
    }
    pub fn failed(&self) -> bool {
        self.status == Status::Missing
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeVerdict {
    pub rank: Option<u32>,
    pub host: Option<String>,
    pub ok: bool,
    /// Seconds since the host's last point of any metric looked at (or the hosts list's
    /// `last_reported_time`).
    pub last_seen_secs: Option<f64>,
    pub agent: Column,
    pub host_metrics: Column,
    pub container: Column,
    pub logs: Column,
    pub gpu: Column,
}

impl NodeVerdict {
    /// The columns by name, in table order.
    pub fn columns(&self) -> [(&'static str, &Column); 5] {
        [
            ("agent", &self.agent),
            ("host", &self.host_metrics),
            ("container", &self.container),
            ("logs", &self.logs),
            ("gpu", &self.gpu),
        ]
    }

    /// The names of the failed columns (`host` for a rank with no host at all).
    pub fn failures(&self) -> Vec<&'static str> {
        if self.host.is_none() {
            return vec!["no host"];
        }
        self.columns()
            .iter()
            .filter(|(_, c)| c.failed())
            .map(|(n, _)| *n)
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub ok: bool,
    /// How many nodes were expected, and from where (`--nodes` or `skypilot_num_nodes`).
    pub expected_nodes: Option<u32>,
    pub expected_from: Option<&'static str>,
    pub nodes: Vec<NodeVerdict>,
    /// Ranks below the expected count with no host at all.
    pub missing_ranks: Vec<u32>,
}

/// The host's name and the tags of a series (from its `tag_set`, else its `scope`).
fn series_tags(s: &MetricsQueryMetadata) -> Vec<String> {
    if !s.tag_set.is_empty() {
        return s.tag_set.clone();
    }
    s.scope
        .as_deref()
        .map(|sc| sc.split(',').map(|t| t.trim().to_owned()).collect())
        .unwrap_or_default()
}

fn tag_value<'a>(tags: &'a [String], key: &str) -> Option<&'a str> {
    tags.iter()
        .find_map(|t| t.split_once(':').filter(|(k, _)| *k == key).map(|(_, v)| v))
}

/// Timestamp (ms) of the last point with a value.
pub fn last_point_ms(s: &MetricsQueryMetadata) -> Option<f64> {
    s.pointlist
        .iter()
        .filter(|p| p.len() >= 2 && p[1].is_some_and(f64::is_finite))
        .filter_map(|p| p[0])
        .reduce(f64::max)
}

/// Per host: the newest point's time (ms) among `series`, with the series' tags.
fn newest_by_host(series: &[MetricsQueryMetadata]) -> BTreeMap<String, (f64, Vec<String>)> {
    let mut out: BTreeMap<String, (f64, Vec<String>)> = BTreeMap::new();
    for s in series {
        let tags = series_tags(s);
        let Some(host) = tag_value(&tags, "host") else {
            continue;
        };
        let Some(ts) = last_point_ms(s) else { continue };
        let entry = out
            .entry(host.to_owned())
            .or_insert((f64::MIN, tags.clone()));
        if ts > entry.0 {
            *entry = (ts, tags);
        }
    }
    out
}

fn host_name(h: &Host) -> Option<&str> {
    h.name.as_deref().or(h.host_name.as_deref())
}

fn host_tags(h: &Host) -> BTreeSet<&str> {
    h.tags_by_source
        .values()
        .flatten()
        .map(String::as_str)
        .collect()
}

fn parse_rank(v: Option<&str>) -> Option<u32> {
    v.and_then(|r| r.trim().parse().ok())
}

/// Whether a container series (by its tags) is one of the job's: name or image repository equal
/// to a pattern; the agent's own container never counts.
pub fn is_job_container(tags: &[String], patterns: &[String], agent_name: &str) -> Option<String> {
    let name = tag_value(tags, "container_name").unwrap_or("");
    let short = tag_value(tags, "short_image").unwrap_or("");
    let image = tag_value(tags, "image_name").unwrap_or("");
    if (!name.is_empty() && name == agent_name) || AGENT_IMAGES.contains(&image) {
        return None;
    }
    let repo_last = image.rsplit('/').next().unwrap_or(image);
    patterns
        .iter()
        .find(|p| {
            let p = p.trim().trim_start_matches('/');
            !p.is_empty() && (name == p || short == p || repo_last == p)
        })
        .cloned()
}

/// Turns one look's answers into a verdict per node.
pub fn evaluate(answers: &Answers, exp: &Expectation) -> Report {
    let age = |ms: f64| ((exp.now - ms / 1000.0).max(0.0) * 10.0).round() / 10.0;

    // The hosts: from the hosts list (tags re-checked exactly: the filter's matching is not
    // documented as exact) and from any series (a host the list does not show yet still counts).
    let mut ranks: BTreeMap<String, Option<u32>> = BTreeMap::new();
    let mut last_reported: BTreeMap<String, f64> = BTreeMap::new();
    let mut num_nodes: BTreeSet<u32> = BTreeSet::new();
    for h in &answers.hosts {
        let Some(name) = host_name(h) else { continue };
        let tags = host_tags(h);
        if !exp.tags.iter().all(|t| tags.contains(t.as_str())) {
            continue;
        }
        let tag_list: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        ranks.insert(name.to_owned(), parse_rank(tag_value(&tag_list, RANK_TAG)));
        if let Some(n) = parse_rank(tag_value(&tag_list, NUM_NODES_TAG)) {
            num_nodes.insert(n);
        }
        if let Some(t) = h.last_reported_time {
            last_reported.insert(name.to_owned(), t as f64);
        }
    }
    let agent = newest_by_host(&answers.agent);
    let host_metrics = newest_by_host(&answers.host);
    let gpu_devices = newest_by_host(&answers.gpu_devices);
    let gpu_active = newest_by_host(&answers.gpu_active);
    for series in [&agent, &host_metrics, &gpu_devices, &gpu_active] {
        for (host, (_, tags)) in series {
            let rank = parse_rank(tag_value(tags, RANK_TAG));
            let entry = ranks.entry(host.clone()).or_insert(None);
            if entry.is_none() {
                *entry = rank;
            }
            if let Some(n) = parse_rank(tag_value(tags, NUM_NODES_TAG)) {
                num_nodes.insert(n);
            }
        }
    }
    // Job containers: per host, per pattern, the newest point.
    let mut containers: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for s in &answers.container {
        let tags = series_tags(s);
        let Some(host) = tag_value(&tags, "host") else {
            continue;
        };
        let Some(pattern) = is_job_container(&tags, &exp.expect, &exp.agent_name) else {
            continue;
        };
        let Some(ts) = last_point_ms(s) else { continue };
        ranks
            .entry(host.to_owned())
            .or_insert_with(|| parse_rank(tag_value(&tags, RANK_TAG)));
        let newest = containers
            .entry(host.to_owned())
            .or_default()
            .entry(pattern)
            .or_insert(f64::MIN);
        *newest = newest.max(ts);
    }

    let (expected_nodes, expected_from) = match exp.nodes {
        Some(n) => (Some(n), Some("--nodes")),
        None => match num_nodes.iter().next_back() {
            Some(n) => (Some(*n), Some(NUM_NODES_TAG)),
            None => (None, None),
        },
    };

    let mut nodes = Vec::new();
    for (host, rank) in &ranks {
        let metric_column =
            |series: &BTreeMap<String, (f64, Vec<String>)>, metric: &str| match series.get(host) {
                Some((ts, _)) => Column::ok(Some(age(*ts)), None),
                None => Column::missing(format!("no {metric} point in the window")),
            };
        let agent_col = metric_column(&agent, AGENT_METRIC);
        let host_col = metric_column(&host_metrics, HOST_METRIC);
        let container_col = if exp.vm_mode {
            Column::not_expected("the job runs on the VM itself (--vm-mode): it has no container")
        } else {
            let found = containers.get(host);
            let missing: Vec<&String> = exp
                .expect
                .iter()
                .filter(|p| found.is_none_or(|f| !f.contains_key(*p)))
                .collect();
            if missing.is_empty() {
                let newest = found
                    .and_then(|f| f.values().copied().reduce(f64::max))
                    .map(age);
                Column::ok(newest, None)
            } else {
                Column::missing(format!(
                    "no {CONTAINER_METRIC} point for a container matching {} in the window",
                    missing
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        };
        let logs_col = match &answers.logs {
            LogsAnswer::NotChecked(why) => Column::not_checked(why.clone()),
            LogsAnswer::Counted(counts) => match counts.get(host).copied().unwrap_or(0) {
                0 => Column::missing("no log line in the window"),
                n => Column::ok(None, Some(n)),
            },
        };
        let has_gpus = gpu_devices.contains_key(host);
        let gpu_col = if !(exp.gpus || has_gpus) {
            Column::not_checked("no GPU reported (--gpus checks anyway)")
        } else {
            match gpu_active.get(host) {
                Some((ts, _)) => Column::ok(Some(age(*ts)), None),
                None if has_gpus => {
                    Column::missing(format!("GPUs reported but no {GPU_ACTIVE_METRIC} point"))
                }
                None => Column::missing(format!(
                    "no {GPU_DEVICES_METRIC} or {GPU_ACTIVE_METRIC} point in the window"
                )),
            }
        };
        let newest = [&agent, &host_metrics, &gpu_active]
            .iter()
            .filter_map(|m| m.get(host).map(|(ts, _)| *ts))
            .chain(
                containers
                    .get(host)
                    .into_iter()
                    .flat_map(|c| c.values().copied()),
            )
            .reduce(f64::max)
            .map(age)
            .or_else(|| {
                last_reported
                    .get(host)
                    .map(|t| ((exp.now - t).max(0.0) * 10.0).round() / 10.0)
            });
        let mut node = NodeVerdict {
            rank: *rank,
            host: Some(host.clone()),
            ok: false,
            last_seen_secs: newest,
            agent: agent_col,
            host_metrics: host_col,
            container: container_col,
            logs: logs_col,
            gpu: gpu_col,
        };
        node.ok = node.columns().iter().all(|(_, c)| !c.failed());
        nodes.push(node);
    }

    let present: BTreeSet<u32> = nodes.iter().filter_map(|n| n.rank).collect();
    let missing_ranks: Vec<u32> = expected_nodes
        .map(|n| (0..n).filter(|r| !present.contains(r)).collect())
        .unwrap_or_default();
    for r in &missing_ranks {
        let why = || Column::missing(format!("no host carries {RANK_TAG}:{r}"));
        nodes.push(NodeVerdict {
            rank: Some(*r),
            host: None,
            ok: false,
            last_seen_secs: None,
            agent: why(),
            host_metrics: why(),
            container: if exp.vm_mode {
                Column::not_expected("the job runs on the VM itself (--vm-mode)")
            } else {
                why()
            },
            logs: why(),
            gpu: if exp.gpus {
                why()
            } else {
                Column::not_checked("no host")
            },
        });
    }
    nodes.sort_by(|a, b| {
        (a.rank.is_none(), a.rank, &a.host).cmp(&(b.rank.is_none(), b.rank, &b.host))
    });
    let ok = !nodes.is_empty() && nodes.iter().all(|n| n.ok);
    Report {
        ok,
        expected_nodes,
        expected_from,
        nodes,
        missing_ranks,
    }
}

/// "rank 1" or "host h (no rank)".
pub fn node_label(n: &NodeVerdict) -> String {
    match (n.rank, &n.host) {
        (Some(r), _) => format!("rank {r}"),
        (None, Some(h)) => format!("host {h} (no rank tag)"),
        (None, None) => "an unknown node".into(),
    }
}

/// One line: how many nodes are ok, and which are not with the columns that fail.
pub fn summary(report: &Report, tags: &[String], since: &str) -> String {
    let ok = report.nodes.iter().filter(|n| n.ok).count();
    let total = report.nodes.len();
    let of = match report.expected_nodes {
        Some(n) => format!("{ok} of {n} expected nodes ok"),
        None => format!("{ok} of {total} nodes ok"),
    };
    let head = format!("{of} ({}, last {since})", tags.join(" "));
    if report.nodes.is_empty() {
        return format!(
            "no host carries {}: nothing reported in the last {since} (or the tags differ)",
            tags.join(" ")
        );
    }
    let bad: Vec<String> = report
        .nodes
        .iter()
        .filter(|n| !n.ok)
        .map(|n| format!("{} ({})", node_label(n), n.failures().join(", ")))
        .collect();
    if bad.is_empty() {
        head
    } else {
        format!("{head}; not ok: {}", bad.join("; "))
    }
}

/// What to do about a failed column on a node: the common issues, mapped to `ddsky` on that node.
pub fn fix_hint(column: &str) -> &'static str {
    match column {
        "no host" => "no agent ever reported with this rank: did the task's setup run `ddsky up` on that node (and with the same run id)? Run `ddsky doctor` there",
        "agent" => "the agent stopped reporting: on that node run `ddsky status`, then `ddsky doctor` (key, network, the agent's logs: `ddsky logs`)",
        "host" => "the agent reports but sends no system metrics: `ddsky doctor` on that node (mounts of /proc and /sys/fs/cgroup)",
        "container" => "no metrics for the job's container: is it running, and does the agent discover it? `ddsky status --expect PATTERN` on that node; `ddsky doctor` checks the Docker socket and cgroup mounts",
        "logs" => "no log lines: does the job write to stdout/stderr? `ddsky doctor` on that node checks the log mounts and DD_LOGS_ENABLED; new hosts' first logs may lack host tags for a few minutes",
        "gpu" => "no GPU metrics: `ddsky up --gpus all` (agent 7.72 or later, DD_GPU_ENABLED); `ddsky doctor` on that node",
        _ => "run `ddsky doctor` on that node",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datadog_api::{parse_json, Endpoint, HostListResponse, MetricsQueryResponse};

    const NOW: f64 = 1_700_000_600.0;

    fn tags() -> Vec<String> {
        vec!["metta_run_id:r1".to_string()]
    }

    fn host(name: &str, rank: u32, n: u32) -> Host {
        let mut h = Host {
            name: Some(name.into()),
            last_reported_time: Some(NOW as i64 - 5),
            ..Default::default()
        };
        h.tags_by_source.insert(
            "Datadog".into(),
            vec![
                "metta_run_id:r1".into(),
                format!("skypilot_node_rank:{rank}"),
                format!("skypilot_num_nodes:{n}"),
            ],
        );
        h
    }

    fn series(host: &str, rank: u32, extra: &[&str], last_ms: Option<f64>) -> MetricsQueryMetadata {
        let mut tag_set = vec![format!("host:{host}"), format!("skypilot_node_rank:{rank}")];
        tag_set.extend(extra.iter().map(|t| t.to_string()));
        let mut pointlist = vec![vec![Some((NOW - 300.0) * 1000.0), None]];
        if let Some(ms) = last_ms {
            pointlist.push(vec![Some(ms), Some(1.0)]);
        }
        MetricsQueryMetadata {
            metric: Some("m".into()),
            scope: None,
            tag_set,
            pointlist,
            interval: Some(20.0),
        }
    }

    fn healthy(hosts: &[(&str, u32)], n: u32) -> Answers {
        let recent = Some((NOW - 10.0) * 1000.0);
        Answers {
            hosts: hosts.iter().map(|(h, r)| host(h, *r, n)).collect(),
            agent: hosts
                .iter()
                .map(|(h, r)| series(h, *r, &[], recent))
                .collect(),
            host: hosts
                .iter()
                .map(|(h, r)| series(h, *r, &[], recent))
                .collect(),
            container: hosts
                .iter()
                .map(|(h, r)| {
                    series(
                        h,
                        *r,
                        &[
                            "container_name:job-1",
                            "short_image:metta",
                            "image_name:ecr/x/metta",
                        ],
                        recent,
                    )
                })
                .collect(),
            gpu_devices: vec![],
            gpu_active: vec![],
            logs: LogsAnswer::Counted(hosts.iter().map(|(h, _)| (h.to_string(), 7)).collect()),
        }
    }

    fn exp() -> Expectation {
        Expectation {
            tags: tags(),
            expect: vec!["metta".into()],
            agent_name: "dd-agent".into(),
            nodes: None,
            gpus: false,
            vm_mode: false,
            now: NOW,
        }
    }

    #[test]
    fn a_vm_mode_run_needs_no_container_and_keeps_every_other_column() {
        let mut a = healthy(&[("h0", 0), ("h1", 1)], 2);
        a.container.clear();
        let without = evaluate(&a, &exp());
        assert!(!without.ok, "a container is expected by default");
        let vm = Expectation {
            vm_mode: true,
            ..exp()
        };
        let r = evaluate(&a, &vm);
        assert!(r.ok, "{r:?}");
        for n in &r.nodes {
            assert_eq!(n.container.status, Status::NotExpected);
            assert_eq!(n.agent.status, Status::Ok);
            assert_eq!(n.logs.status, Status::Ok);
        }
        // The other columns still fail a node.
        a.agent
            .retain(|s| !s.tag_set.contains(&"host:h1".to_string()));
        a.host
            .retain(|s| !s.tag_set.contains(&"host:h1".to_string()));
        let r = evaluate(&a, &vm);
        assert!(!r.ok);
        assert_eq!(r.nodes[1].failures(), vec!["agent", "host"]);
    }

    #[test]
    fn sites_map_to_api_and_ui_hosts() {
        assert_eq!(api_base("datadoghq.com"), "https://api.datadoghq.com");
        assert_eq!(
            api_base("us5.datadoghq.com"),
            "https://api.us5.datadoghq.com"
        );
        assert_eq!(api_base("datadoghq.eu"), "https://api.datadoghq.eu");
        assert_eq!(api_base("ddog-gov.com"), "https://api.ddog-gov.com");
        assert_eq!(ui_base("datadoghq.com"), "https://app.datadoghq.com");
        assert_eq!(ui_base("datadoghq.eu"), "https://app.datadoghq.eu");
        assert_eq!(ui_base("ddog-gov.com"), "https://app.ddog-gov.com");
        assert_eq!(ui_base("us3.datadoghq.com"), "https://us3.datadoghq.com");
        assert_eq!(ui_base("ap1.datadoghq.com"), "https://ap1.datadoghq.com");
        assert_eq!(ui_base("us2.ddog-gov.com"), "https://us2.ddog-gov.com");
    }

    #[test]
    fn api_url_is_https_or_loopback_http() {
        assert!(check_api_url("https://dd-proxy.corp:8443/").is_ok());
        assert_eq!(
            check_api_url("http://127.0.0.1:9000/").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert!(check_api_url("http://localhost:1").is_ok());
        assert!(check_api_url("http://[::1]:8080").is_ok());
        assert!(check_api_url("http://10.0.0.5:80")
            .unwrap_err()
            .contains("use https"));
        assert!(check_api_url("ftp://x").is_err());
        assert!(check_api_url("api.datadoghq.com").is_err());
    }

    #[test]
    fn selector_and_queries() {
        let t = selector_tags(Some("Alice.Run 1"), Some("c1"), &["team:ml".into()]).unwrap();
        assert_eq!(
            t,
            ["metta_run_id:alice.run_1", "skypilot_cluster:c1", "team:ml"]
        );
        assert!(selector_tags(None, None, &[])
            .unwrap_err()
            .contains("--run-id"));
        assert!(selector_tags(None, None, &["nocolon".into()]).is_err());
        let q = queries(&t);
        assert_eq!(
            q.agent,
            "max:datadog.agent.running{metta_run_id:alice.run_1,skypilot_cluster:c1,team:ml} by {host,skypilot_node_rank,skypilot_num_nodes}"
        );
        assert_eq!(
            q.container,
            "max:docker.cpu.usage{metta_run_id:alice.run_1,skypilot_cluster:c1,team:ml} by {host,skypilot_node_rank,container_name,short_image,image_name}"
        );
        assert!(q.gpu_active.starts_with("max:gpu.sm_active{"));
        let body = serde_json::to_value(logs_request(&t, 1, 2)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "compute": [{"aggregation": "count", "type": "total"}],
                "filter": {"query": "metta_run_id:alice.run_1 skypilot_cluster:c1 team:ml", "from": "1", "to": "2", "indexes": ["*"]},
                "group_by": [{"facet": "host", "limit": 10000, "missing": "(none)"}]
            })
        );
        assert_eq!(percent_encode("a:b,c d{}"), "a%3Ab%2Cc%20d%7B%7D");
        let l = links("https://app.datadoghq.com", &tags(), 1, 2);
        assert_eq!(
            l.logs,
            "https://app.datadoghq.com/logs?query=metta_run_id%3Ar1&from_ts=1&to_ts=2&live=false"
        );
        assert!(l.metrics.contains("exp_scope=metta_run_id%3Ar1"));
    }

    #[test]
    fn every_node_ok() {
        let r = evaluate(&healthy(&[("h0", 0), ("h1", 1)], 2), &exp());
        assert!(r.ok, "{r:#?}");
        assert_eq!(r.expected_nodes, Some(2));
        assert_eq!(r.expected_from, Some("skypilot_num_nodes"));
        assert_eq!(r.nodes[0].agent.age_secs, Some(10.0));
        assert_eq!(r.nodes[1].logs.count, Some(7));
        assert_eq!(r.nodes[0].gpu.status, Status::NotChecked);
    }

    #[test]
    fn absent_silent_and_containerless_ranks_are_named() {
        let mut a = healthy(&[("h0", 0), ("h1", 1), ("h2", 2)], 4);
        // h1 silent: listed (live in the past 3 h) but no point in the window.
        a.agent
            .retain(|s| !s.tag_set.contains(&"host:h1".to_string()));
        a.host
            .retain(|s| !s.tag_set.contains(&"host:h1".to_string()));
        a.container[1].pointlist = vec![vec![Some(NOW * 1000.0), None]];
        // h2 runs the agent's own container only.
        a.container[2].tag_set = vec![
            "host:h2".into(),
            "skypilot_node_rank:2".into(),
            "container_name:dd-agent".into(),
            "short_image:metta".into(),
        ];
        let r = evaluate(&a, &exp());
        assert!(!r.ok);
        assert_eq!(r.missing_ranks, vec![3]);
        let bad: Vec<(Option<u32>, Vec<&str>)> = r
            .nodes
            .iter()
            .filter(|n| !n.ok)
            .map(|n| (n.rank, n.failures()))
            .collect();
        assert_eq!(
            bad,
            vec![
                (Some(1), vec!["agent", "host", "container"]),
                (Some(2), vec!["container"]),
                (Some(3), vec!["no host"]),
            ]
        );
        assert!(r.nodes[3].host.is_none());
        let line = summary(&r, &tags(), "10m");
        assert!(line.starts_with("1 of 4 expected nodes ok"), "{line}");
        assert!(line.contains("rank 3 (no host)"), "{line}");
    }

    #[test]
    fn nodes_flag_wins_and_hosts_with_other_tags_are_left_out() {
        let mut a = healthy(&[("h0", 0)], 1);
        let mut other = host("foobar", 5, 1);
        other
            .tags_by_source
            .insert("Datadog".into(), vec!["metta_run_id:r10".into()]);
        a.hosts.push(other);
        let r = evaluate(
            &a,
            &Expectation {
                nodes: Some(2),
                ..exp()
            },
        );
        assert_eq!(r.expected_from, Some("--nodes"));
        assert_eq!(r.missing_ranks, vec![1]);
        assert_eq!(r.nodes.len(), 2);
    }

    #[test]
    fn logs_not_checked_leave_the_verdict_alone_and_no_logs_fail_it() {
        let mut a = healthy(&[("h0", 0)], 1);
        a.logs = LogsAnswer::NotChecked("the application key lacks logs_read_data".into());
        let r = evaluate(&a, &exp());
        assert!(r.ok);
        assert_eq!(r.nodes[0].logs.status, Status::NotChecked);
        a.logs = LogsAnswer::Counted(BTreeMap::new());
        let r = evaluate(&a, &exp());
        assert_eq!(r.nodes[0].failures(), vec!["logs"]);
    }

    #[test]
    fn gpus_are_checked_when_asked_or_reported() {
        let mut a = healthy(&[("h0", 0), ("h1", 1)], 2);
        a.gpu_devices = vec![series("h1", 1, &[], Some((NOW - 5.0) * 1000.0))];
        let r = evaluate(&a, &exp());
        assert_eq!(r.nodes[0].gpu.status, Status::NotChecked);
        assert_eq!(r.nodes[1].failures(), vec!["gpu"]);
        a.gpu_active = vec![series("h1", 1, &[], Some((NOW - 5.0) * 1000.0))];
        assert!(evaluate(&a, &exp()).nodes[1].ok);
        let r = evaluate(
            &a,
            &Expectation {
                gpus: true,
                ..exp()
            },
        );
        assert_eq!(r.nodes[0].failures(), vec!["gpu"]);
    }

    #[test]
    fn no_host_at_all_is_not_ok() {
        let a = Answers {
            hosts: vec![],
            agent: vec![],
            host: vec![],
            container: vec![],
            gpu_devices: vec![],
            gpu_active: vec![],
            logs: LogsAnswer::Counted(BTreeMap::new()),
        };
        let r = evaluate(&a, &exp());
        assert!(!r.ok && r.nodes.is_empty());
        assert!(summary(&r, &tags(), "10m").starts_with("no host carries"));
    }

    #[test]
    fn recorded_shapes_become_verdicts() {
        // The recorded query answer (integer and float timestamps, a null point, interval in s).
        let q: MetricsQueryResponse = parse_json(
            Endpoint::Query,
            br#"{"status":"ok","res_type":"time_series","series":[{"metric":"datadog.agent.running","scope":"metta_run_id:r1","tag_set":["host:h0","skypilot_node_rank:0","skypilot_num_nodes:1"],"aggr":"max","interval":20,"pointlist":[[1700000500000,1.0],[1700000580000.0,1],[1700000590000,null]]}]}"#,
        )
        .unwrap();
        let hosts: HostListResponse = parse_json(
            Endpoint::Hosts,
            br#"{"host_list":[{"name":"h0","last_reported_time":1700000580,"up":true,"tags_by_source":{"Datadog":["metta_run_id:r1","skypilot_node_rank:0","skypilot_num_nodes:1"]},"metrics":{"load":null,"iowait":null,"cpu":null}}],"total_matching":1,"total_returned":1}"#,
        )
        .unwrap();
        let a = Answers {
            hosts: hosts.host_list,
            agent: q.series.clone(),
            host: q.series,
            container: vec![],
            gpu_devices: vec![],
            gpu_active: vec![],
            logs: LogsAnswer::NotChecked("x".into()),
        };
        let r = evaluate(&a, &exp());
        assert_eq!(
            r.nodes[0].agent.age_secs,
            Some(20.0),
            "the null point is skipped"
        );
        assert_eq!(r.nodes[0].failures(), vec!["container"]);
        assert_eq!(r.expected_nodes, Some(1));
    }

    #[test]
    fn job_containers_match_by_name_or_image_never_the_agent() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let p = vec!["metta".to_string()];
        assert!(is_job_container(&t(&["container_name:metta"]), &p, "dd-agent").is_some());
        assert!(
            is_job_container(&t(&["image_name:751.dkr.ecr/x/metta"]), &p, "dd-agent").is_some()
        );
        assert!(is_job_container(
            &t(&["container_name:metta", "image_name:datadog/agent"]),
            &p,
            "dd-agent"
        )
        .is_none());
        assert!(is_job_container(
            &t(&["container_name:dd-agent", "short_image:metta"]),
            &p,
            "dd-agent"
        )
        .is_none());
        assert!(is_job_container(
            &t(&["container_name:other", "short_image:other"]),
            &p,
            "dd-agent"
        )
        .is_none());
    }
}
