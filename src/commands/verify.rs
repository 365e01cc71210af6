//! `ddsky verify`: finds the keys, asks Datadog's API (a fixed number of calls per look, whatever
//! the node count), turns the answers into per-node verdicts (`crate::verify`) and prints them;
//! with `--wait`, looks again until every node is ok or the deadline passes.

use super::{Context, Failure};
use crate::datadog_api::{percent_encode, ApiError, Client};
use crate::exit;
use crate::key::{self, ApiKey, AppKey, KeyLookup, SecretLookup};
use crate::output::{self, Format};
use crate::secrets::AwsSecretStore;
use crate::settings::{ApiSettings, KeySettings, VerifySettings};
use crate::verify::{self, Answers, Expectation, Links, LogsAnswer, NodeVerdict, Report, Status};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Looks are this far apart (the agent flushes every 15 s; never faster than every 10 s).
const LOOK_EVERY: Duration = Duration::from_secs(15);
/// A single look (no --wait) may still retry throttling and 5xx answers this long.
const SINGLE_LOOK_BUDGET: Duration = Duration::from_secs(60);

/// The stable JSON document.
#[derive(Debug, Serialize)]
struct VerifyJson<'a> {
    ok: bool,
    tags: &'a [String],
    site: &'a str,
    since_secs: u64,
    expected_nodes: Option<u32>,
    expected_from: Option<&'static str>,
    nodes: &'a [NodeVerdict],
    missing_ranks: &'a [u32],
    logs: LogsJson,
    links: &'a Links,
    /// `ddsky dashboard`'s dashboard filtered to the run, when it exists.
    dashboard: Option<&'a str>,
    looks: u32,
    /// HTTP requests to the API in the last look (retries included).
    api_calls_last_look: u32,
    api_calls: u32,
}

#[derive(Debug, Serialize)]
struct LogsJson {
    checked: bool,
    reason: Option<String>,
}

pub async fn run(ctx: &Context, s: VerifySettings) -> Result<u8, Failure> {
    let client = api_client(ctx, &s.api).await?;
    tracing::debug!(api = %s.api.api_base, tags = ?s.tags, "verifying");

    let started = Instant::now();
    let deadline = started + s.wait.unwrap_or(Duration::ZERO);
    let retry_deadline = deadline.max(started + SINGLE_LOOK_BUDGET);
    let since_text = humantime::format_duration(s.since).to_string();
    let exp_base = Expectation {
        tags: s.tags.clone(),
        expect: s.expect.clone(),
        agent_name: ctx.name.clone(),
        nodes: s.nodes,
        gpus: s.gpus,
        vm_mode: s.vm_mode,
        now: 0.0,
    };
    let mut looks = 0u32;
    let mut previous_line = String::new();
    loop {
        looks += 1;
        let look_started = Instant::now();
        let calls_before = client.calls();
        let now = unix_now();
        let outcome = ctx
            .interrupt
            .run(look(&client, &s, now, retry_deadline))
            .await?;
        let answers = match outcome {
            Ok(a) => a,
            Err(e) => return Err(refusal(&client, &s.api, e, retry_deadline).await),
        };
        let logs_reason = match &answers.logs {
            LogsAnswer::NotChecked(why) => Some(why.clone()),
            LogsAnswer::Counted(_) => None,
        };
        let report = verify::evaluate(
            &answers,
            &Expectation {
                now,
                ..exp_base.clone()
            },
        );
        let line = verify::summary(&report, &s.tags, &since_text);
        let calls_last = client.calls() - calls_before;
        let again = !report.ok && s.wait.is_some() && Instant::now() + LOOK_EVERY <= deadline;
        if line != previous_line && again && output::stderr_is_terminal() {
            output::error_line(&format!("ddsky: {line}"));
        }
        tracing::debug!(look = looks, calls = calls_last, "{line}");
        previous_line = line.clone();
        if again {
            let next = look_started + LOOK_EVERY;
            ctx.interrupt.run(tokio::time::sleep_until(next)).await?;
            continue;
        }
        let from_ms = ((now - s.since.as_secs_f64()) * 1000.0) as i64;
        let links = verify::links(&s.api.ui_base, &s.tags, from_ms, (now * 1000.0) as i64);
        let dashboard = ctx
            .interrupt
            .run(dashboard_link(&client, &s, retry_deadline))
            .await?;
        print(
            ctx.format,
            &s,
            &report,
            &line,
            &links,
            dashboard.as_deref(),
            logs_reason,
            looks,
            calls_last,
            client.calls(),
        );
        return Ok(if report.ok {
            exit::OK
        } else {
            exit::NOT_DISCOVERED
        });
    }
}

/// One look: the hosts, the five metric queries and the logs count, all at once.
async fn look(
    client: &Client,
    s: &VerifySettings,
    now: f64,
    deadline: Instant,
) -> Result<Answers, ApiError> {
    let to = now as i64;
    let from = to - s.since.as_secs() as i64;
    let q = verify::queries(&s.tags);
    let filter = verify::scope(&s.tags);
    let logs = async {
        if s.no_logs {
            return Ok(LogsAnswer::NotChecked("--no-logs".into()));
        }
        let request = verify::logs_request(&s.tags, from * 1000, to * 1000);
        match client.logs_aggregate(&request, deadline).await {
            Ok(answer) => Ok(LogsAnswer::Counted(verify::logs_counts(&answer))),
            Err(ApiError::Status {
                status: 401 | 403, ..
            }) => Ok(LogsAnswer::NotChecked(
                "the application key lacks logs_read_data (POST /api/v2/logs/analytics/aggregate answered 403); grant it to check logs".into(),
            )),
            Err(e) => Err(e),
        }
    };
    let (hosts, agent, host, container, gpu_devices, gpu_active, logs) = tokio::join!(
        client.list_hosts(&filter, deadline),
        client.query(&q.agent, from, to, deadline),
        client.query(&q.host, from, to, deadline),
        client.query(&q.container, from, to, deadline),
        client.query(&q.gpu_devices, from, to, deadline),
        client.query(&q.gpu_active, from, to, deadline),
        logs,
    );
    Ok(Answers {
        hosts: hosts?,
        agent: agent?.series,
        host: host?.series,
        container: container?.series,
        gpu_devices: gpu_devices?.series,
        gpu_active: gpu_active?.series,
        logs: logs?,
    })
}

/// What a failed call means for the user: which key, which permission.
pub(super) async fn refusal(
    client: &Client,
    s: &ApiSettings,
    e: ApiError,
    deadline: Instant,
) -> Failure {
    let ApiError::Status {
        endpoint,
        status: status @ (401 | 403),
        detail,
    } = &e
    else {
        return Failure::Api(format!("Datadog's API at {} failed: {e}", s.api_base));
    };
    let said = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    match client.validate(deadline).await {
        Ok(false) => Failure::Api(format!(
            "Datadog refused the API key (GET /api/v1/validate answered 403; {} answered {status}{said}): the key is wrong, revoked, or for another site than {} (DD_SITE); check DD_API_KEY or the secret {}",
            endpoint.label(),
            s.site,
            s.key.secret_id
        )),
        _ => Failure::Api(format!(
            "Datadog refused the application key for {} (HTTP {status}{said}): the API key is valid, so the application key is wrong, revoked, or lacks the permission {}; check DD_APP_KEY or the secret {}, and the key's scopes",
            endpoint.label(),
            endpoint.permission().unwrap_or("-"),
            s.app_key_secret_id
        )),
    }
}

/// A client of Datadog's API with both keys found (each also registered for redaction, so that
/// neither can appear in any output from here on).
pub(super) async fn api_client(ctx: &Context, api: &ApiSettings) -> Result<Client, Failure> {
    let (api_key, app_key) = ctx
        .interrupt
        .run(find_keys(&api.key, &api.app_key_secret_id))
        .await??;
    crate::redact::register(api_key.expose());
    crate::redact::register(app_key.expose());
    Ok(Client::new(&api.api_base, api_key, app_key))
}

async fn find_keys(
    key_settings: &KeySettings,
    app_key_secret_id: &str,
) -> Result<(ApiKey, AppKey), Failure> {
    let s = key_settings;
    let store = AwsSecretStore {
        region: s.aws_region.clone(),
        timeout: s.secret_timeout,
    };
    let api_env = crate::settings::env_var(crate::spec::API_KEY_ENV);
    let secret = (!s.no_aws).then(|| SecretLookup {
        store: &store,
        secret_id: &s.secret_id,
    });
    let api_key = match key::lookup(api_env.as_deref(), secret).await {
        KeyLookup::Found { found, .. } => found.key,
        KeyLookup::Missing { reasons } => {
            return Err(Failure::Usage(format!(
                "no Datadog API key: {}; set DD_API_KEY (32 hexadecimal characters) or store it in AWS Secrets Manager (--secret-id)",
                reasons.join("; ")
            )))
        }
    };
    let app_env = crate::settings::env_var("DD_APP_KEY");
    let secret = (!s.no_aws).then_some(SecretLookup {
        store: &store,
        secret_id: app_key_secret_id,
    });
    let app_key = key::lookup_app_key(app_env.as_deref(), secret)
        .await
        .map_err(|reasons| {
            Failure::Usage(format!(
                "no Datadog application key: {}; set DD_APP_KEY (40 hexadecimal characters, Organization Settings > Application Keys) or store it in AWS Secrets Manager (--app-key-secret-id)",
                reasons.join("; ")
            ))
        })?;
    Ok((api_key, app_key))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// `ddsky dashboard`'s dashboard, filtered to the run (or the cluster), when it exists. Looked up
/// once, after the last look; a refusal (no `dashboards_read`) or a failure only leaves it out.
async fn dashboard_link(client: &Client, s: &VerifySettings, deadline: Instant) -> Option<String> {
    let listed = match client.list_dashboards(deadline).await {
        Ok(listed) => listed,
        Err(e) => {
            tracing::debug!("no dashboard link: {e}");
            return None;
        }
    };
    let mut ours = listed.iter().filter(|d| d.title == s.dashboard_title);
    let id = ours.next()?;
    if ours.next().is_some() {
        return None;
    }
    let base = format!("{}/dashboard/{}", s.api.ui_base, percent_encode(&id.id));
    let filter = ["metta_run_id", "skypilot_cluster"].iter().find_map(|key| {
        s.tags.iter().find_map(|t| {
            t.strip_prefix(&format!("{key}:"))
                .map(|v| format!("?tpl_var_{key}={}", percent_encode(v)))
        })
    });
    Some(format!("{base}{}", filter.unwrap_or_default()))
}

#[allow(clippy::too_many_arguments)]
fn print(
    format: Format,
    s: &VerifySettings,
    report: &Report,
    line: &str,
    links: &Links,
    dashboard: Option<&str>,
    logs_reason: Option<String>,
    looks: u32,
    calls_last: u32,
    calls: u32,
) {
    let json = VerifyJson {
        ok: report.ok,
        tags: &s.tags,
        site: &s.api.site,
        since_secs: s.since.as_secs(),
        expected_nodes: report.expected_nodes,
        expected_from: report.expected_from,
        nodes: &report.nodes,
        missing_ranks: &report.missing_ranks,
        logs: LogsJson {
            checked: logs_reason.is_none(),
            reason: logs_reason.clone(),
        },
        links,
        dashboard,
        looks,
        api_calls_last_look: calls_last,
        api_calls: calls,
    };
    output::emit(format, &json, || {
        let mut out = text(report, line, links, logs_reason.as_deref());
        if let Some(url) = dashboard {
            out.push_str(&format!("dashboard:      {url}\n"));
        }
        out
    });
}

fn cell(c: &verify::Column) -> String {
    match c.status {
        Status::Ok => match (c.age_secs, c.count) {
            (_, Some(n)) => format!("ok {n}"),
            (Some(a), None) => format!("ok {}", age(a)),
            _ => "ok".into(),
        },
        Status::Missing => "MISSING".into(),
        Status::NotChecked => "-".into(),
        Status::NotExpected => "not expected".into(),
    }
}

fn age(secs: f64) -> String {
    let s = secs.round() as u64;
    if s < 120 {
        format!("{s}s")
    } else {
        format!("{}m", s / 60)
    }
}

/// The table for a person: one row per node by rank, the summary, the links, what to do.
fn text(report: &Report, line: &str, links: &Links, logs_reason: Option<&str>) -> String {
    let header = [
        "RANK",
        "HOST",
        "LAST SEEN",
        "AGENT",
        "HOST",
        "CONTAINER",
        "LOGS",
        "GPU",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for n in &report.nodes {
        rows.push(vec![
            n.rank.map_or("-".into(), |r| r.to_string()),
            n.host.clone().unwrap_or_else(|| "(none)".into()),
            n.last_seen_secs
                .map_or("never".into(), |a| format!("{} ago", age(a))),
            cell(&n.agent),
            cell(&n.host_metrics),
            cell(&n.container),
            cell(&n.logs),
            cell(&n.gpu),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push('\n');
    out.push_str(line);
    out.push('\n');
    if let Some(why) = logs_reason {
        out.push_str(&format!("logs not checked: {why}\n"));
    }
    for n in report.nodes.iter().filter(|n| !n.ok) {
        for col in n.failures() {
            let detail = n
                .columns()
                .iter()
                .find(|(name, _)| *name == col)
                .and_then(|(_, c)| c.detail.clone())
                .unwrap_or_else(|| "no host".into());
            out.push_str(&format!(
                "  {} {col}: {detail}; {}\n",
                verify::node_label(n),
                verify::fix_hint(col)
            ));
        }
    }
    out.push_str(&format!(
        "logs:           {}\ninfrastructure: {}\nmetrics:        {}\n",
        links.logs, links.infrastructure, links.metrics
    ));
    out
}
