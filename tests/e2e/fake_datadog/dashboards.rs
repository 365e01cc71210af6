//! The fake's dashboards and monitors (`/api/v1/dashboard*`, `/api/v1/monitor*`), kept as Datadog
//! keeps them: see the parent module's header for what it does and can inject.

use super::Behaviour;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Store {
    /// By id, in creation order (ids are made increasing); `deleted` ones stay (soft delete).
    pub dashboards: BTreeMap<String, Value>,
    pub monitors: BTreeMap<i64, Value>,
    next: u64,
}

impl Store {
    fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// A dashboard as if a person made it in the UI; its id.
    pub fn add_dashboard(&mut self, title: &str) -> String {
        let body = json!({"title": title, "layout_type": "ordered", "widgets": [
            {"definition": {"type": "note", "content": "mine"}}]});
        insert_dashboard(self, body)
    }

    /// A monitor as if a person made it; its id.
    pub fn add_monitor(&mut self, name: &str, tags: &[&str]) -> i64 {
        let body = json!({"name": name, "type": "query alert", "tags": tags, "message": "mine",
            "query": "avg(last_5m):avg:system.cpu.user{*} > 90",
            "options": {"thresholds": {"critical": 90.0}}});
        insert_monitor(self, body)
    }

    /// The dashboards not deleted: (id, body).
    pub fn live_dashboards(&self) -> Vec<(String, Value)> {
        self.dashboards
            .iter()
            .filter(|(_, d)| d["deleted"] != true)
            .map(|(id, d)| (id.clone(), d.clone()))
            .collect()
    }
}

pub fn handles(path: &str) -> bool {
    path == "/api/v1/dashboard"
        || path.starts_with("/api/v1/dashboard/")
        || path == "/api/v1/monitor"
        || path.starts_with("/api/v1/monitor/")
}

type Answer = (u16, String, String, Duration);

fn reply(status: u16, body: Value) -> Answer {
    (status, String::new(), body.to_string(), Duration::ZERO)
}

fn error(status: u16, message: &str) -> Answer {
    reply(status, json!({"errors": [message]}))
}

/// The permission Datadog requires for a request (the spec's `x-permission`).
fn permission(method: &str, path: &str) -> &'static str {
    let monitor = path.starts_with("/api/v1/monitor");
    let write = matches!(method, "POST" | "PUT" | "DELETE") && !path.ends_with("/validate");
    match (monitor, write) {
        (false, false) => "dashboards_read",
        (false, true) => "dashboards_write",
        (true, false) => "monitors_read",
        (true, true) => "monitors_write",
    }
}

fn now_iso() -> String {
    "2026-12-07T16:00:00.000000+00:00".into()
}

/// Adds what Datadog adds to a dashboard it keeps: read-only fields and every widget's id.
fn insert_dashboard(store: &mut Store, mut body: Value) -> String {
    let n = store.next_id();
    let id = format!(
        "{:03x}-{:03x}-{:03x}",
        n % 4096,
        (n * 7) % 4096,
        (n * 13) % 4096
    );
    stamp_dashboard(store, &id, &mut body, now_iso());
    store.dashboards.insert(id.clone(), body);
    id
}

fn stamp_dashboard(store: &mut Store, id: &str, body: &mut Value, created: String) {
    fn widget_ids(store: &mut Store, widgets: &mut Value) {
        for w in widgets.as_array_mut().into_iter().flatten() {
            let n = store.next_id();
            w["id"] = json!(n * 1000 + 17);
            if let Some(inner) = w["definition"].get_mut("widgets") {
                widget_ids(store, inner);
            }
        }
    }
    widget_ids(store, &mut body["widgets"]);
    let slug: String = body["title"]
        .as_str()
        .unwrap_or("")
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    body["id"] = json!(id);
    body["url"] = json!(format!("/dashboard/{id}/{slug}"));
    body["author_handle"] = json!("someone@example.com");
    body["author_name"] = json!("Someone");
    body["created_at"] = json!(created);
    body["modified_at"] = json!(now_iso());
    body["is_read_only"] = json!(false);
    if body.get("description").is_none() {
        body["description"] = Value::Null;
    }
    if body.get("notify_list").is_none() {
        body["notify_list"] = json!([]);
    }
    if body.get("template_variables").is_none() {
        body["template_variables"] = json!([]);
    }
}

fn insert_monitor(store: &mut Store, mut body: Value) -> i64 {
    let id = 1_000_000 + store.next_id() as i64;
    stamp_monitor(&mut body, id);
    store.monitors.insert(id, body);
    id
}

/// Adds what Datadog adds to a monitor it keeps: read-only fields, option defaults, the metric
/// type's other name, thresholds as floats.
fn stamp_monitor(body: &mut Value, id: i64) {
    body["id"] = json!(id);
    if body["type"] == "query alert" {
        body["type"] = json!("metric alert");
    }
    body["created"] = json!(now_iso());
    body["modified"] = json!(now_iso());
    body["creator"] =
        json!({"email": "someone@example.com", "handle": "someone@example.com", "name": "Someone"});
    body["overall_state"] = json!("No Data");
    body["overall_state_modified"] = Value::Null;
    body["multi"] = json!(body["query"].as_str().unwrap_or("").contains(" by "));
    body["deleted"] = Value::Null;
    body["org_id"] = json!(4242);
    body["restricted_roles"] = Value::Null;
    if body.get("tags").is_none() {
        body["tags"] = json!([]);
    }
    if body.get("priority").is_none() {
        body["priority"] = Value::Null;
    }
    let options = &mut body["options"];
    if !options.is_object() {
        *options = json!({});
    }
    for (k, v) in [
        ("notify_audit", json!(false)),
        ("silenced", json!({})),
        ("renotify_interval", Value::Null),
        ("escalation_message", json!("")),
        ("new_host_delay", json!(300)),
    ] {
        if options.get(k).is_none() {
            options[k] = v;
        }
    }
    if let Some(t) = options["thresholds"].as_object_mut() {
        for v in t.values_mut() {
            if let Some(f) = v.as_f64() {
                *v = json!(f);
            }
        }
    }
}

/// Datadog's semantic check of a metric monitor: the query's grammar and the critical threshold
/// equal to the query's number. `Err` is Datadog's error text.
pub fn validate_monitor(body: &Value) -> Result<(), String> {
    let kind = body["type"]
        .as_str()
        .ok_or("The value provided for parameter 'type' is invalid")?;
    if !matches!(kind, "query alert" | "metric alert") {
        return Err(format!(
            "The value provided for parameter 'type' is invalid: {kind}"
        ));
    }
    let query = body["query"]
        .as_str()
        .ok_or("The value provided for parameter 'query' is invalid")?;
    let invalid = || format!("The value provided for parameter 'query' is invalid: {query}");
    // time_aggr(last_N[mhd]):space_aggr:metric{scope} [by {keys}] op N
    let (time_part, rest) = query.split_once("):").ok_or_else(invalid)?;
    let (aggr, window) = time_part.split_once('(').ok_or_else(invalid)?;
    if !matches!(
        aggr,
        "avg" | "max" | "min" | "sum" | "change" | "pct_change"
    ) {
        return Err(invalid());
    }
    let n = window.strip_prefix("last_").ok_or_else(invalid)?;
    let (digits, unit) = n.split_at(n.len().saturating_sub(1));
    let amount: u64 = digits.parse().map_err(|_| invalid())?;
    let minutes = match unit {
        "m" => amount,
        "h" => amount * 60,
        "d" => amount * 1440,
        _ => return Err(invalid()),
    };
    if minutes == 0 || minutes > 31 * 1440 {
        return Err(invalid());
    }
    let op_at = rest.rfind(['<', '>']).ok_or_else(invalid)?;
    let (expr, comparison) = rest.split_at(op_at);
    let number = comparison.trim_start_matches(['<', '>', '=']).trim();
    let threshold: f64 = number.parse().map_err(|_| invalid())?;
    let (_, metric_and_scope) = expr.split_once(':').ok_or_else(invalid)?;
    if !metric_and_scope.contains('{') || !metric_and_scope.contains('}') {
        return Err(invalid());
    }
    let critical = body["options"]["thresholds"]["critical"]
        .as_f64()
        .ok_or("Critical threshold is required for metric monitors")?;
    if critical != threshold {
        return Err(format!(
            "Alert threshold ({critical}) does not match that used in the query ({threshold})."
        ));
    }
    if let Some(p) = body.get("priority").and_then(Value::as_i64) {
        if !(1..=5).contains(&p) {
            return Err("Priority must be between 1 and 5".into());
        }
    }
    if let Some(d) = body["options"].get("new_group_delay") {
        if !d.is_null() && d.as_i64().is_none_or(|d| d < 0) {
            return Err("new_group_delay must be a non-negative integer".into());
        }
    }
    Ok(())
}

/// Datadog's checks of a dashboard body: the required fields, tags only `team:`.
fn validate_dashboard(body: &Value) -> Result<(), String> {
    for field in ["title", "layout_type", "widgets"] {
        if body.get(field).is_none() {
            return Err(format!("'{field}' is a required property"));
        }
    }
    for t in body["tags"].as_array().into_iter().flatten() {
        if !t.as_str().is_some_and(|t| t.starts_with("team:")) {
            return Err(format!(
                "Invalid tag {t}: dashboard tags must start with team:"
            ));
        }
    }
    Ok(())
}

fn summary(d: &Value) -> Value {
    json!({"id": d["id"], "title": d["title"], "description": d["description"],
        "layout_type": d["layout_type"], "url": d["url"], "author_handle": d["author_handle"],
        "created_at": d["created_at"], "modified_at": d["modified_at"],
        "is_read_only": false, "popularity": 0})
}

fn number(params: &BTreeMap<String, String>, key: &str) -> Option<usize> {
    params.get(key).and_then(|v| v.parse().ok())
}

pub fn answer(
    state: &Mutex<Behaviour>,
    store: &Mutex<Store>,
    method: &str,
    path: &str,
    params: &BTreeMap<String, String>,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> Answer {
    let behaviour = {
        let mut b = state.lock().unwrap();
        if b.throttle_first > 0 {
            b.throttle_first -= 1;
            return (
                429,
                "X-RateLimit-Limit: 60\r\nX-RateLimit-Period: 60\r\nX-RateLimit-Remaining: 0\r\nX-RateLimit-Reset: 2\r\nX-RateLimit-Name: dashboards\r\n".into(),
                r#"{"errors":["Too many requests"]}"#.into(),
                Duration::ZERO,
            );
        }
        if b.fail_first > 0 {
            b.fail_first -= 1;
            return (
                503,
                String::new(),
                "<html><body><h1>503 Service Unavailable</h1>No server is available to handle this request.</body></html>".into(),
                Duration::ZERO,
            );
        }
        b.clone()
    };
    // Both keys on every one of these operations.
    if headers.get("dd-api-key") != Some(&behaviour.api_key)
        || headers.get("dd-application-key") != Some(&behaviour.app_key)
    {
        return error(403, "Forbidden");
    }
    if behaviour.missing_permission == Some(permission(method, path)) {
        return error(403, "Forbidden");
    }
    let request: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return error(400, &format!("Invalid JSON: {e}")),
        }
    };
    let is_list = method == "GET" && (path == "/api/v1/dashboard" || path == "/api/v1/monitor");
    if is_list && behaviour.fail_lists {
        return error(500, "Internal Server Error");
    }
    let is_create = method == "POST" && (path == "/api/v1/dashboard" || path == "/api/v1/monitor");
    let stall = if is_create {
        let mut b = state.lock().unwrap();
        if b.stall_creates > 0 {
            b.stall_creates -= 1;
            b.stall
        } else {
            Duration::ZERO
        }
    } else {
        Duration::ZERO
    };
    if let Some(text) = behaviour.refuse_monitor_validation {
        if method == "POST" && path.starts_with("/api/v1/monitor") && path.ends_with("/validate") {
            return error(400, text);
        }
    }
    let mut store = store.lock().unwrap();
    let parts: Vec<&str> = path.trim_start_matches("/api/v1/").split('/').collect();
    let (status, extra, answer, _) = match (method, parts.as_slice()) {
        ("GET", ["dashboard"]) => {
            let deleted = params.get("filter[deleted]").is_some_and(|v| v == "true");
            let start = number(params, "start").unwrap_or(0);
            // The server's own cap on a page (the docs do not say whether it has one: it does here).
            let count = number(params, "count").unwrap_or(100).min(100);
            let page: Vec<Value> = store
                .dashboards
                .values()
                .filter(|d| (d["deleted"] == true) == deleted)
                .skip(start)
                .take(count)
                .map(summary)
                .collect();
            reply(200, json!({"dashboards": page}))
        }
        ("POST", ["dashboard"]) => match validate_dashboard(&request) {
            Ok(()) => {
                let id = insert_dashboard(&mut store, request);
                reply(200, store.dashboards[&id].clone())
            }
            Err(e) => error(400, &e),
        },
        (_, ["dashboard", id]) => {
            let id = super::decode(id);
            let live = store
                .dashboards
                .get(&id)
                .filter(|d| d["deleted"] != true)
                .cloned();
            match (method, live) {
                (_, None) => error(404, "Dashboard not found"),
                ("GET", Some(d)) => reply(200, d),
                ("PUT", Some(old)) => match validate_dashboard(&request) {
                    Ok(()) => {
                        let mut new = request;
                        stamp_dashboard(
                            &mut store,
                            &id,
                            &mut new,
                            old["created_at"].as_str().unwrap_or("").to_owned(),
                        );
                        store.dashboards.insert(id.clone(), new.clone());
                        reply(200, new)
                    }
                    Err(e) => error(400, &e),
                },
                ("DELETE", Some(_)) => {
                    store.dashboards.get_mut(&id).unwrap()["deleted"] = json!(true);
                    reply(200, json!({"deleted_dashboard_id": id}))
                }
                _ => error(405, "Method not allowed"),
            }
        }
        ("GET", ["monitor"]) => {
            let name = params.get("name").map(|n| n.to_lowercase());
            let wanted_tags = super::comma_list(params, "monitor_tags");
            let matching: Vec<Value> = store
                .monitors
                .values()
                .filter(|m| {
                    name.as_ref().is_none_or(|n| {
                        m["name"]
                            .as_str()
                            .unwrap_or("")
                            .to_lowercase()
                            .contains(n.as_str())
                    })
                })
                .filter(|m| {
                    wanted_tags
                        .iter()
                        .all(|t| m["tags"].as_array().into_iter().flatten().any(|x| x == t))
                })
                .cloned()
                .collect();
            let page: Vec<Value> = match number(params, "page") {
                Some(page) => {
                    let size = number(params, "page_size").unwrap_or(100).min(1000);
                    matching.into_iter().skip(page * size).take(size).collect()
                }
                None => matching,
            };
            reply(200, Value::Array(page))
        }
        ("GET", ["monitor", "search"]) => {
            let query = params.get("query").cloned().unwrap_or_default();
            let tag = query
                .strip_prefix("tag:")
                .map(|t| t.trim_matches('"').to_owned());
            let matching: Vec<Value> = store
                .monitors
                .values()
                .filter(|m| match &tag {
                    Some(t) => m["tags"].as_array().into_iter().flatten().any(|x| x == t),
                    None => m["name"].as_str().unwrap_or("").contains(query.as_str()),
                })
                .map(|m| {
                    json!({"id": m["id"], "name": m["name"], "tags": m["tags"],
                    "type": m["type"], "query": m["query"], "status": "No Data"})
                })
                .collect();
            let per_page = number(params, "per_page").unwrap_or(30).max(1);
            let page = number(params, "page").unwrap_or(0);
            let total = matching.len();
            let monitors: Vec<Value> = matching
                .into_iter()
                .skip(page * per_page)
                .take(per_page)
                .collect();
            reply(
                200,
                json!({"monitors": monitors, "counts": {},
                "metadata": {"page": page, "per_page": per_page, "total_count": total,
                    "page_count": total.div_ceil(per_page)}}),
            )
        }
        ("POST", ["monitor", "validate"]) => match validate_monitor(&request) {
            Ok(()) => reply(200, json!({})),
            Err(e) => error(400, &e),
        },
        ("POST", ["monitor"]) => match validate_monitor(&request) {
            Ok(()) => {
                let id = insert_monitor(&mut store, request);
                reply(200, store.monitors[&id].clone())
            }
            Err(e) => error(400, &e),
        },
        (_, ["monitor", id, rest @ ..]) => {
            let Ok(id) = id.parse::<i64>() else {
                return error(400, "monitor_id must be an integer");
            };
            let Some(old) = store.monitors.get(&id).cloned() else {
                return error(404, "Monitor not found");
            };
            // A partial update: the fields given replace the monitor's.
            let merged = || {
                let mut new = old.clone();
                for (k, v) in request.as_object().into_iter().flatten() {
                    new[k] = v.clone();
                }
                new
            };
            match (method, rest) {
                ("GET", []) => reply(200, old),
                ("POST", ["validate"]) => match validate_monitor(&merged()) {
                    Ok(()) => reply(200, json!({})),
                    Err(e) => error(400, &e),
                },
                ("PUT", []) => {
                    let mut new = merged();
                    match validate_monitor(&new) {
                        Ok(()) => {
                            stamp_monitor(&mut new, id);
                            store.monitors.insert(id, new.clone());
                            reply(200, new)
                        }
                        Err(e) => error(400, &e),
                    }
                }
                ("DELETE", []) => {
                    store.monitors.remove(&id);
                    reply(200, json!({"deleted_monitor_id": id}))
                }
                _ => error(405, "Method not allowed"),
            }
        }
        _ => error(404, "Not found"),
    };
    (status, extra, answer, stall)
}
