//! `ddsky dashboard` against the fake Datadog API, which keeps dashboards and monitors as Datadog
//! does: made once, written again only when it drifted, never duplicated, nothing of the user's
//! touched; refusals named; every request checked against Datadog's OpenAPI spec. No Docker.

use crate::common::*;
use crate::fake_datadog::{Behaviour, FakeDatadog, World, APP_KEY};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const TITLE: &str = "[ddsky] SkyPilot runs (env:production, service:skypilot-worker)";
const MONITOR: &str =
    "[ddsky] Idle GPUs in a SkyPilot run (env:production, service:skypilot-worker)";

fn fake(behaviour: Behaviour) -> FakeDatadog {
    FakeDatadog::start(behaviour, World::default)
}

/// `ddsky dashboard` against `fake`, keys in the environment, AWS not asked.
fn dashboard(fake: &FakeDatadog, args: &[&str]) -> Command {
    let mut cmd = ddsky_without_docker();
    cmd.env("DD_API_KEY", KEY)
        .env("DD_APP_KEY", APP_KEY)
        .env("DDSKY_API_URL", fake.url())
        .args(["dashboard", "--no-aws"])
        .args(args);
    cmd
}

/// Runs it, checks no key was printed, and returns the run.
fn go(fake: &FakeDatadog, args: &[&str]) -> Run {
    let out = run(dashboard(fake, args).env("RUST_LOG", "trace"));
    out.assert_no_secret(&[APP_KEY]);
    out
}

fn json_of(out: &Run) -> Value {
    out.expect_code(0);
    out.json()
}

/// The ddsky dashboards the fake holds (live ones, by title).
fn ours(fake: &FakeDatadog) -> Vec<(String, Value)> {
    fake.store
        .lock()
        .unwrap()
        .live_dashboards()
        .into_iter()
        .filter(|(_, d)| d["title"] == TITLE)
        .collect()
}

fn our_monitors(fake: &FakeDatadog) -> Vec<Value> {
    fake.store
        .lock()
        .unwrap()
        .monitors
        .values()
        .filter(|m| m["name"] == MONITOR)
        .cloned()
        .collect()
}

#[test]
fn dashboard_is_made_once_kept_and_put_back() {
    let fake = fake(Behaviour::new());
    // A busy organization: more dashboards than one page of the list holds.
    {
        let mut store = fake.store.lock().unwrap();
        for i in 0..150 {
            store.add_dashboard(&format!("team dashboard {i}"));
        }
    }

    // From nothing: both made, JSON as documented, the run's URL filtered to it.
    let out = go(&fake, &["--run-id", "run-7", "--format", "json"]);
    let doc = json_of(&out);
    assert_eq!(doc["dashboard"]["action"], "created", "{doc:#}");
    assert_eq!(doc["monitor"]["action"], "created", "{doc:#}");
    let id = doc["dashboard"]["id"].as_str().unwrap().to_owned();
    let monitor_id = doc["monitor"]["id"]
        .as_i64()
        .expect("the monitor's id is a number");
    assert_eq!(
        doc["dashboard"]["url"],
        format!("https://app.datadoghq.com/dashboard/{id}?tpl_var_metta_run_id=run-7")
    );
    assert_eq!(
        doc["monitor"]["url"],
        format!("https://app.datadoghq.com/monitors/{monitor_id}")
    );
    assert_eq!(ours(&fake).len(), 1);
    let monitors = our_monitors(&fake);
    assert_eq!(monitors.len(), 1);
    let monitor = &monitors[0];
    assert_eq!(
        monitor["query"],
        "avg(last_30m):avg:gpu.sm_active{env:production,service:skypilot-worker} by {metta_run_id,host} < 5"
    );
    assert_eq!(monitor["options"]["notify_no_data"], false);
    assert!(monitor["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "managed-by:ddsky"));
    assert!(monitor["message"].as_str().unwrap().contains(&format!(
        "/dashboard/{id}?tpl_var_metta_run_id={{{{metta_run_id.name}}}}"
    )));
    let writes = fake.writes();
    assert_eq!(writes, ["POST /api/v1/dashboard", "POST /api/v1/monitor"]);
    assert!(
        fake.calls()
            .iter()
            .any(|(c, _)| c == "POST /api/v1/monitor/validate"),
        "the monitor is validated before it is made: {:?}",
        fake.calls()
    );

    // Again, nothing changed: no write at all.
    let doc = json_of(&go(&fake, &["--format", "json"]));
    assert_eq!(doc["dashboard"]["action"], "unchanged", "{doc:#}");
    assert_eq!(doc["monitor"]["action"], "unchanged", "{doc:#}");
    assert_eq!(doc["dashboard"]["id"], id.as_str());
    assert_eq!(fake.writes().len(), 2, "{:?}", fake.writes());

    // A person edits a panel and removes another: one update puts it back, same id.
    {
        let mut store = fake.store.lock().unwrap();
        let d = store.dashboards.get_mut(&id).unwrap();
        d["widgets"][1]["definition"]["widgets"][0]["definition"]["title"] = "my title".into();
        d["widgets"].as_array_mut().unwrap().pop();
    }
    let out = go(&fake, &[]);
    out.expect_code(0);
    assert!(out.stdout.contains("dashboard updated"), "{out}");
    assert!(out.stdout.contains("monitor   unchanged"), "{out}");
    assert!(
        out.stdout.contains(&format!(
            "url: https://app.datadoghq.com/dashboard/{id}?tpl_var_skypilot_cluster=${{cluster_name}}"
        )),
        "the SkyPilot external link: {out}"
    );
    assert_eq!(fake.writes()[2..], [format!("PUT /api/v1/dashboard/{id}")]);
    let put_back = &ours(&fake)[0].1;
    assert_ne!(
        put_back["widgets"][1]["definition"]["widgets"][0]["definition"]["title"],
        "my title"
    );
    assert_eq!(ours(&fake).len(), 1);

    // A --notify handle: one update of the monitor (validated first); then the options are the
    // whole wanted state, so a run without it takes the handle out again.
    let doc = json_of(&go(
        &fake,
        &["--notify", "slack-ml-alerts", "--format", "json"],
    ));
    assert_eq!(doc["dashboard"]["action"], "unchanged", "{doc:#}");
    assert_eq!(doc["monitor"]["action"], "updated", "{doc:#}");
    assert_eq!(doc["monitor"]["id"], monitor_id);
    assert_eq!(
        fake.writes()[3..],
        [format!("PUT /api/v1/monitor/{monitor_id}")]
    );
    assert!(fake
        .calls()
        .iter()
        .any(|(c, _)| *c == format!("POST /api/v1/monitor/{monitor_id}/validate")));
    assert!(our_monitors(&fake)[0]["message"]
        .as_str()
        .unwrap()
        .ends_with("@slack-ml-alerts"));
    let doc = json_of(&go(&fake, &["--format", "json"]));
    assert_eq!(doc["monitor"]["action"], "updated", "{doc:#}");
    assert!(!our_monitors(&fake)[0]["message"]
        .as_str()
        .unwrap()
        .contains("@slack"));
    // A changed threshold too.
    let doc = json_of(&go(&fake, &["--idle-below", "10", "--format", "json"]));
    assert_eq!(doc["monitor"]["action"], "updated", "{doc:#}");
    assert!(our_monitors(&fake)[0]["query"]
        .as_str()
        .unwrap()
        .ends_with("< 10"));
    assert_eq!(our_monitors(&fake).len(), 1);

    // The 150 others were never written.
    assert!(fake.writes().iter().all(|w| w.contains(&id)
        || w.contains(&monitor_id.to_string())
        || w == "POST /api/v1/dashboard"
        || w == "POST /api/v1/monitor"));
    fake.check_against_spec();
}

#[test]
fn two_dashboards_with_the_title_are_refused_naming_both() {
    let fake = fake(Behaviour::new());
    let (a, b) = {
        let mut store = fake.store.lock().unwrap();
        (store.add_dashboard(TITLE), store.add_dashboard(TITLE))
    };
    let out = go(&fake, &[]);
    out.expect_code(1);
    assert!(out.stderr.contains(&a) && out.stderr.contains(&b), "{out}");
    assert!(out.stderr.contains("will not guess"), "{out}");
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());

    // Two monitors of that name and tag: the same.
    let fake = self::fake(Behaviour::new());
    let (a, b) = {
        let mut store = fake.store.lock().unwrap();
        (
            store.add_monitor(MONITOR, &["managed-by:ddsky"]),
            store.add_monitor(MONITOR, &["managed-by:ddsky"]),
        )
    };
    let out = go(&fake, &[]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(&a.to_string()) && out.stderr.contains(&b.to_string()),
        "{out}"
    );
    assert!(
        !fake.writes().iter().any(|w| w.contains("monitor")),
        "{:?}",
        fake.writes()
    );
    fake.check_against_spec();
}

#[test]
fn a_failing_list_creates_nothing() {
    let fake = fake(Behaviour {
        fail_lists: true,
        ..Behaviour::new()
    });
    let out = go(&fake, &["--timeout", "4s"]);
    out.expect_code(1);
    assert!(out.stderr.contains("HTTP 500"), "{out}");
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    assert!(
        fake.calls()
            .iter()
            .filter(|(c, _)| c.starts_with("GET /api/v1/dashboard"))
            .count()
            >= 2,
        "a 500 is retried: {:?}",
        fake.calls()
    );
    fake.check_against_spec();
}

#[test]
fn throttling_waits_then_goes_on_and_5xx_reads_are_retried() {
    let fake = fake(Behaviour {
        throttle_first: 2,
        fail_first: 1,
        ..Behaviour::new()
    });
    let out = go(&fake, &["--format", "json"]);
    let doc = json_of(&out);
    assert_eq!(doc["dashboard"]["action"], "created");
    assert!(out.stderr.contains("X-RateLimit-Reset"), "{out}");
    let statuses: Vec<u16> = fake.calls().iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses[..4], [429, 429, 503, 200], "{:?}", fake.calls());
    assert_eq!(fake.calls()[2].0, fake.calls()[3].0, "the same list, again");
    assert_eq!(ours(&fake).len(), 1);
    fake.check_against_spec();
}

#[test]
fn a_missing_permission_is_named() {
    let fake = fake(Behaviour {
        missing_permission: Some("dashboards_write"),
        ..Behaviour::new()
    });
    let out = go(&fake, &[]);
    out.expect_code(1);
    assert!(out.stderr.contains("dashboards_write"), "{out}");
    assert!(out.stderr.contains("POST /api/v1/dashboard"), "{out}");
    assert!(ours(&fake).is_empty());

    fake.set(|b| b.missing_permission = Some("monitors_write"));
    let out = go(&fake, &[]);
    out.expect_code(1);
    assert!(out.stderr.contains("monitors_write"), "{out}");
    assert_eq!(
        ours(&fake).len(),
        1,
        "the dashboard was made before the monitor was refused"
    );
    assert!(our_monitors(&fake).is_empty());
    fake.check_against_spec();
}

#[test]
fn a_create_that_timed_out_is_looked_for_not_repeated() {
    let fake = fake(Behaviour {
        stall_creates: 1,
        stall: Duration::from_secs(8),
        ..Behaviour::new()
    });
    let out = go(&fake, &["--api-timeout", "2s", "--format", "json"]);
    let doc = json_of(&out);
    assert_eq!(doc["dashboard"]["action"], "created", "{out}");
    assert!(out.stderr.contains("looking whether it was made"), "{out}");
    assert_eq!(ours(&fake).len(), 1, "made once: {:?}", fake.calls());
    assert_eq!(
        fake.writes()
            .iter()
            .filter(|w| *w == "POST /api/v1/dashboard")
            .count(),
        1,
        "{:?}",
        fake.calls()
    );
    assert_eq!(doc["dashboard"]["id"], ours(&fake)[0].0.as_str());
    fake.check_against_spec();
}

#[test]
fn delete_removes_only_what_ddsky_made() {
    let fake = fake(Behaviour::new());
    json_of(&go(&fake, &["--format", "json"]));
    // The user's own objects, a clone of ddsky's dashboard among them, and a monitor of the same
    // name without ddsky's tag.
    let (clone, mine, same_name) = {
        let mut store = fake.store.lock().unwrap();
        (
            store.add_dashboard(&format!("{TITLE} (cloned)")),
            store.add_monitor("CPU hot", &["team:ml"]),
            store.add_monitor(MONITOR, &["team:ml"]),
        )
    };
    let before: Vec<String> = fake
        .store
        .lock()
        .unwrap()
        .live_dashboards()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let doc = json_of(&go(&fake, &["--delete", "--format", "json"]));
    assert_eq!(doc["dashboard"]["action"], "deleted", "{doc:#}");
    assert_eq!(doc["monitor"]["action"], "deleted", "{doc:#}");
    let store = fake.store.lock().unwrap();
    let left: Vec<String> = store
        .live_dashboards()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(left.len(), before.len() - 1);
    assert!(left.contains(&clone));
    assert!(store.monitors.contains_key(&mine) && store.monitors.contains_key(&same_name));
    assert_eq!(store.monitors.len(), 2);
    drop(store);

    // Nothing left to delete: still exit 0.
    let doc = json_of(&go(&fake, &["--delete", "--format", "json"]));
    assert_eq!(doc["dashboard"]["action"], "absent");
    assert_eq!(doc["monitor"]["action"], "absent");
    assert_eq!(doc["dashboard"]["id"], Value::Null);
    fake.check_against_spec();
}

#[test]
fn dry_run_sends_nothing_and_needs_no_key() {
    let fake = fake(Behaviour::new());
    let mut cmd = ddsky_without_docker();
    cmd.env("DDSKY_API_URL", fake.url()).args([
        "dashboard",
        "--dry-run",
        "--no-aws",
        "--notify",
        "@pagerduty-training",
        "--format",
        "json",
    ]);
    let out = run(&mut cmd);
    let doc = json_of(&out);
    assert_eq!(doc["dashboard"]["definition"]["title"], TITLE);
    assert_eq!(doc["monitor"]["definition"]["name"], MONITOR);
    let message = doc["monitor"]["definition"]["message"].as_str().unwrap();
    assert!(message.ends_with("@pagerduty-training"), "{message}");
    assert!(
        message.contains(
            "https://app.datadoghq.com/dashboard/DASHBOARD_ID?tpl_var_metta_run_id={{metta_run_id.name}}"
        ),
        "{message}"
    );
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());

    let out = run(ddsky_without_docker().args([
        "dashboard",
        "--dry-run",
        "--no-monitor",
        "--format",
        "json",
    ]));
    assert_eq!(json_of(&out)["monitor"], Value::Null);
}

#[test]
fn no_monitor_and_no_key() {
    let fake = fake(Behaviour::new());
    let doc = json_of(&go(&fake, &["--no-monitor", "--format", "json"]));
    assert_eq!(doc["monitor"], Value::Null);
    assert!(our_monitors(&fake).is_empty());

    // No application key: a usage error naming it, nothing asked.
    let calls = fake.calls().len();
    let out = run(ddsky_without_docker()
        .env("DD_API_KEY", KEY)
        .env("DDSKY_API_URL", fake.url())
        .args(["dashboard", "--no-aws"]));
    out.expect_code(2);
    out.assert_no_secret(&[APP_KEY]);
    assert!(out.stderr.contains("DD_APP_KEY"), "{out}");
    assert_eq!(fake.calls().len(), calls);
    fake.check_against_spec();
}

/// SkyPilot's config loader (the newest pinned release: `dashboard.external_links` is 0.14+) on
/// `config`: Ok(the entries it kept) or Err(its refusal).
fn skypilot_loads(config: &str) -> Result<String, String> {
    let version = crate::skypilot_loader::pinned_versions().pop().unwrap();
    let python = crate::skypilot_loader::venv_python(&version);
    let home = scratch_dir("skyconfig");
    let path = home.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys\nfrom sky import skypilot_config\n\
             c = skypilot_config.parse_and_validate_config_file(sys.argv[1])\n\
             print('DDSKY-LINKS ' + json.dumps(c.get_nested(('dashboard', 'external_links'), None)))",
        ])
        .arg(&path)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().find_map(|l| l.strip_prefix("DDSKY-LINKS ")) {
        Some(links) if out.status.success() => Ok(links.to_owned()),
        _ => Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr))),
    }
}

#[test]
fn the_skypilot_external_link_passes_skypilots_own_config_loader() {
    let fake = fake(Behaviour::new());
    let out = go(&fake, &[]);
    out.expect_code(0);
    let entry: String = out
        .stdout
        .lines()
        .skip_while(|l| *l != "dashboard:")
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        entry.starts_with("dashboard:\n  external_links:\n"),
        "{out}"
    );
    let id = &ours(&fake)[0].0;
    let links =
        skypilot_loads(&entry).unwrap_or_else(|e| panic!("SkyPilot refused:\n{entry}\n{e}"));
    let links: Value = serde_json::from_str(&links).unwrap();
    assert_eq!(links[0]["label"], "Datadog");
    assert_eq!(
        links[0]["url"],
        format!(
            "https://app.datadoghq.com/dashboard/{id}?tpl_var_skypilot_cluster=${{cluster_name}}"
        )
    );
    // The loader is strict: a field name of its own invention is refused (so the check can fail).
    assert!(skypilot_loads(&entry.replace("url:", "link:")).is_err());
    assert!(skypilot_loads(&entry.replace("${cluster_name}", "${cluster}")).is_err());
}

#[test]
fn a_body_datadog_refuses_shows_datadogs_words() {
    let fake = fake(Behaviour {
        refuse_monitor_validation: Some(
            "The value provided for parameter 'query' is invalid: no such thing",
        ),
        ..Behaviour::new()
    });
    let out = go(&fake, &[]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("POST /api/v1/monitor/validate"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("The value provided for parameter 'query' is invalid: no such thing"),
        "{out}"
    );
    assert!(
        our_monitors(&fake).is_empty(),
        "nothing made after a refused validation"
    );
    fake.check_against_spec();
}
