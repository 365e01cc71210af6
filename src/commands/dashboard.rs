//! `ddsky dashboard`: makes or brings up to date the one dashboard for every run and the idle-GPU
//! monitor (`crate::dashboard` builds their bodies), through `crate::datadog_api`, and prints where
//! they are. Idempotent: what Datadog holds is found (dashboard by exact title; monitor by the
//! `managed-by:ddsky` tag and exact name), compared, and written only when it drifted; two matches
//! are an error; a failed list is an error; a create that may have happened (a 5xx, a timeout) is
//! looked for before it is sent again. `--delete` removes exactly what it finds that way.

use super::verify::{api_client, refusal};
use super::{Context, Failure};
use crate::dashboard::{self, MANAGED_BY_TAG};
use crate::datadog_api::{percent_encode, ApiError, Client};
use crate::exit;
use crate::output::Format;
use crate::settings::{ApiSettings, DashboardSettings};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::Instant;

/// How many times a create that may or may not have happened is looked for and sent again.
const CREATE_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Updated,
    Unchanged,
    Deleted,
    Absent,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
            Action::Deleted => "deleted",
            Action::Absent => "absent",
        }
    }
}

/// One object in the JSON document: ids as Datadog gives them (a string, a number).
#[derive(Debug, Serialize)]
struct ObjectJson<Id: Serialize> {
    id: Option<Id>,
    url: Option<String>,
    action: Action,
}

#[derive(Debug, Serialize)]
struct DashboardJson {
    dashboard: ObjectJson<String>,
    monitor: Option<ObjectJson<i64>>,
}

pub async fn run(ctx: &Context, s: DashboardSettings) -> Result<u8, Failure> {
    let wanted_dashboard = dashboard::dashboard_body(&s.identity);
    if s.dry_run {
        return dry_run(ctx, &s, wanted_dashboard);
    }
    let client = api_client(ctx, &s.api)
        .await?
        .with_request_timeout(s.api_timeout);
    let deadline = Instant::now() + s.timeout;
    let outcome = ctx
        .interrupt
        .run(async {
            if s.delete {
                delete(&client, &s, deadline).await
            } else {
                apply(&client, &s, &wanted_dashboard, deadline).await
            }
        })
        .await?;
    let result = match outcome {
        Ok(result) => result,
        Err(Refused::Api(e)) => return Err(explain(&client, &s.api, e, deadline).await),
        Err(Refused::Ambiguous(message)) => return Err(Failure::Api(message)),
    };
    tracing::debug!(calls = client.calls(), "done");
    print(ctx.format, &s, &result);
    Ok(exit::OK)
}

/// Why the command stopped.
enum Refused {
    /// A call failed: [`explain`] says what it means.
    Api(ApiError),
    /// Two or more objects match: which ids, and what to do.
    Ambiguous(String),
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Self {
        Refused::Api(e)
    }
}

/// What was found or done: the dashboard's id (if any) and action; the monitor's, when managed.
struct Outcome {
    dashboard: (Option<String>, Action),
    monitor: Option<(Option<i64>, Action)>,
}

/// What a failed call means: a refused key or permission (named from the request that failed,
/// since Datadog's 403 often says only "Forbidden"), Datadog's own words for a refused body, or
/// the API failing.
async fn explain(client: &Client, places: &ApiSettings, e: ApiError, deadline: Instant) -> Failure {
    match &e {
        ApiError::Status {
            status: 401 | 403, ..
        } => refusal(client, places, e, deadline).await,
        ApiError::Status {
            endpoint,
            status: 400,
            detail,
        } => Failure::Api(format!(
            "Datadog refused {} (HTTP 400): {detail}; that request changed nothing: fix the value it names (--idle-below, --idle-for, --notify, --env, --service) and run `ddsky dashboard` again",
            endpoint.label()
        )),
        _ => Failure::Api(format!(
            "Datadog's API at {} failed: {e}; nothing was created twice: run `ddsky dashboard` again to finish",
            places.api_base
        )),
    }
}

/// A 5xx, a timeout or a lost connection: the write may or may not have happened.
fn maybe_done(e: &ApiError) -> bool {
    match e {
        ApiError::Status { status, .. } => crate::datadog_api::retryable(*status),
        ApiError::Timeout { .. } | ApiError::Transport { .. } => true,
        ApiError::Decode { .. } | ApiError::Throttled { .. } | ApiError::Untrusted { .. } => false,
    }
}

fn dashboard_url(s: &DashboardSettings, id: &str) -> String {
    format!("{}/dashboard/{}", s.api.ui_base, percent_encode(id))
}

/// The URL printed: filtered to `--run-id` when given.
fn dashboard_link(s: &DashboardSettings, id: &str) -> String {
    match &s.run_id {
        Some(run) => format!(
            "{}?tpl_var_metta_run_id={}",
            dashboard_url(s, id),
            percent_encode(run)
        ),
        None => dashboard_url(s, id),
    }
}

fn monitor_url(s: &DashboardSettings, id: i64) -> String {
    format!("{}/monitors/{id}", s.api.ui_base)
}

/// The id of ddsky's dashboard: the one whose title is exactly ours.
async fn find_dashboard(
    client: &Client,
    title: &str,
    deadline: Instant,
) -> Result<Option<String>, Refused> {
    let listed = client.list_dashboards(deadline).await?;
    let matches: Vec<(String, String)> = listed
        .into_iter()
        .filter(|d| d.title == title)
        .map(|d| (d.id.clone(), d.id))
        .collect();
    dashboard::the_one(&matches).map_err(|ids| {
        Refused::Ambiguous(format!(
            "{} dashboards are titled {title:?} (ids {}): ddsky finds its own by that title and will not guess; delete or rename the ones that are not ddsky's (a copy keeps working under another title), then run `ddsky dashboard` again",
            ids.len(),
            ids.join(", ")
        ))
    })
}

/// ddsky's monitor: tagged `managed-by:ddsky` and named exactly ours.
async fn find_monitor(
    client: &Client,
    name: &str,
    deadline: Instant,
) -> Result<Option<crate::datadog_api::MonitorFound>, Refused> {
    let listed = client.list_monitors(MANAGED_BY_TAG, name, deadline).await?;
    let matches: Vec<_> = listed
        .into_iter()
        .filter(|m| m.name == name && m.tags.iter().any(|t| t == MANAGED_BY_TAG))
        .map(|m| {
            let id = m.id.to_string();
            (m, id)
        })
        .collect();
    dashboard::the_one(&matches).map_err(|ids| {
        Refused::Ambiguous(format!(
            "{} monitors named {name:?} carry {MANAGED_BY_TAG} (ids {}): ddsky will not guess which is its own; delete the ones you do not want, or remove the tag from a copy you keep, then run `ddsky dashboard` again",
            ids.len(),
            ids.join(", ")
        ))
    })
}

async fn apply(
    client: &Client,
    s: &DashboardSettings,
    wanted: &Value,
    deadline: Instant,
) -> Result<Outcome, Refused> {
    let title = dashboard::dashboard_title(&s.identity);
    let (dashboard_id, dashboard_action) = match find_dashboard(client, &title, deadline).await? {
        Some(id) => {
            let got = client.get_dashboard(&id, deadline).await?;
            if dashboard::dashboard_drifted(wanted, &got) {
                client.update_dashboard(&id, wanted, deadline).await?;
                (id, Action::Updated)
            } else {
                (id, Action::Unchanged)
            }
        }
        None => {
            let id = create_once(
                || client.create_dashboard(wanted, deadline),
                || find_dashboard(client, &title, deadline),
                "dashboard",
            )
            .await?;
            (id, Action::Created)
        }
    };
    let Some(options) = &s.monitor else {
        return Ok(Outcome {
            dashboard: (Some(dashboard_id), dashboard_action),
            monitor: None,
        });
    };
    let url = dashboard_url(s, &dashboard_id);
    let wanted = dashboard::monitor_body(&s.identity, options, &url)
        .map_err(|e| Refused::Ambiguous(e.to_string()))?;
    let name = dashboard::monitor_name(&s.identity);
    let monitor = match find_monitor(client, &name, deadline).await? {
        Some(found) => {
            if dashboard::monitor_drifted(&wanted, &found.body) {
                client
                    .validate_monitor(Some(found.id), &wanted, deadline)
                    .await?;
                client.update_monitor(found.id, &wanted, deadline).await?;
                (found.id, Action::Updated)
            } else {
                (found.id, Action::Unchanged)
            }
        }
        None => {
            client.validate_monitor(None, &wanted, deadline).await?;
            let id = create_once(
                || client.create_monitor(&wanted, deadline),
                || async { Ok(find_monitor(client, &name, deadline).await?.map(|m| m.id)) },
                "monitor",
            )
            .await?;
            (id, Action::Created)
        }
    };
    Ok(Outcome {
        dashboard: (Some(dashboard_id), dashboard_action),
        monitor: Some((Some(monitor.0), monitor.1)),
    })
}

/// Creates an object once: after an answer that leaves it unknown whether the create happened (a
/// 5xx, a timeout), looks for it (`find`) and sends the create again only when it is not there.
async fn create_once<Id, C, CF, F, FF>(create: C, find: F, what: &str) -> Result<Id, Refused>
where
    C: Fn() -> CF,
    CF: std::future::Future<Output = Result<Id, ApiError>>,
    F: Fn() -> FF,
    FF: std::future::Future<Output = Result<Option<Id>, Refused>>,
{
    let mut attempt = 0;
    loop {
        match create().await {
            Ok(id) => return Ok(id),
            Err(e) if maybe_done(&e) && attempt + 1 < CREATE_ATTEMPTS => {
                tracing::warn!(
                    "creating the {what}: {e}; looking whether it was made before trying again"
                );
                tokio::time::sleep(crate::datadog_api::backoff(attempt)).await;
                if let Some(id) = find().await? {
                    return Ok(id);
                }
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn delete(
    client: &Client,
    s: &DashboardSettings,
    deadline: Instant,
) -> Result<Outcome, Refused> {
    let title = dashboard::dashboard_title(&s.identity);
    let dashboard = match find_dashboard(client, &title, deadline).await? {
        Some(id) => {
            client.delete_dashboard(&id, deadline).await?;
            (Some(id), Action::Deleted)
        }
        None => (None, Action::Absent),
    };
    let monitor = if s.monitor.is_none() {
        None
    } else {
        let name = dashboard::monitor_name(&s.identity);
        Some(match find_monitor(client, &name, deadline).await? {
            Some(found) => {
                client.delete_monitor(found.id, deadline).await?;
                (Some(found.id), Action::Deleted)
            }
            None => (None, Action::Absent),
        })
    };
    Ok(Outcome { dashboard, monitor })
}

/// The dashboard's id in `--dry-run`'s monitor body, where the dashboard does not exist yet.
const DRY_RUN_DASHBOARD_ID: &str = "DASHBOARD_ID";

fn dry_run(ctx: &Context, s: &DashboardSettings, wanted: Value) -> Result<u8, Failure> {
    let url = format!("{}/dashboard/{DRY_RUN_DASHBOARD_ID}", s.api.ui_base);
    let monitor = match &s.monitor {
        Some(o) => Some(dashboard::monitor_body(&s.identity, o, &url).map_err(Failure::Usage)?),
        None => None,
    };
    let doc = json!({
        "dashboard": {"definition": wanted},
        "monitor": monitor.as_ref().map(|m| json!({"definition": m})),
    });
    ctx.emit(&doc, || {
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
        let mut out = format!(
            "# POST /api/v1/dashboard (PUT /api/v1/dashboard/{{id}} when it exists)\n{}\n",
            pretty(&wanted)
        );
        if let Some(m) = &monitor {
            out.push_str(&format!(
                "\n# POST /api/v1/monitor (PUT /api/v1/monitor/{{id}} when it exists); its message links the dashboard: {DRY_RUN_DASHBOARD_ID} stands for the dashboard's id\n{}\n",
                pretty(m)
            ));
        }
        out
    });
    Ok(exit::OK)
}

fn print(format: Format, s: &DashboardSettings, o: &Outcome) {
    let (dash_id, dash_action) = &o.dashboard;
    let dash_url = dash_id
        .as_deref()
        .filter(|_| *dash_action != Action::Deleted)
        .map(|id| dashboard_link(s, id));
    let monitor = o.monitor.as_ref().map(|(id, action)| ObjectJson {
        id: *id,
        url: id
            .filter(|_| *action != Action::Deleted)
            .map(|id| monitor_url(s, id)),
        action: *action,
    });
    let doc = DashboardJson {
        dashboard: ObjectJson {
            id: dash_id.clone(),
            url: dash_url.clone(),
            action: *dash_action,
        },
        monitor,
    };
    crate::output::emit(format, &doc, || {
        let place = |url: &Option<String>, id: Option<String>| match (url, id) {
            (Some(url), _) => url.clone(),
            (None, Some(id)) => format!("(id {id})"),
            (None, None) => "(none)".into(),
        };
        let mut out = format!(
            "dashboard {:<9}  {}\n",
            dash_action.word(),
            place(&doc.dashboard.url, dash_id.clone())
        );
        match &doc.monitor {
            Some(m) => out.push_str(&format!(
                "monitor   {:<9}  {}\n",
                m.action.word(),
                place(&m.url, m.id.map(|i| i.to_string()))
            )),
            None => out.push_str("monitor   skipped    (--no-monitor)\n"),
        }
        if let (Some(id), false) = (dash_id, *dash_action == Action::Deleted) {
            out.push_str(&format!(
                "\nTo link every cluster on SkyPilot's own dashboard to its page, add to the SkyPilot API server's config (~/.sky/config.yaml, or its dashboard's config page):\n{}",
                dashboard::skypilot_external_link(&dashboard_url(s, id))
            ));
        }
        out
    });
}
