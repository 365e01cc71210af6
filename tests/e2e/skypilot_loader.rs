//! The example task YAMLs (docker/skypilot/*.yaml) as SkyPilot itself sees them: each launch command
//! written in a YAML's leading comments (`# sky launch ... --env K[=V] --secret K[=V]`, see
//! the convention below) is replayed through SkyPilot's own loader, in every SkyPilot
//! release scripts/test-tools.sh pins (the README's floor and the newest), with the `--env` / `--secret`
//! overrides applied the way `sky launch` applies them. No Docker, no cloud call.
//!
//! How `sky launch` applies them (sky/client/cli/command.py, `_make_task_or_dag_from_entrypoint_with_
//! overrides`, the same in 0.10.5 and 0.14.1): `dag_utils.load_chain_dag_from_yaml(path, env_overrides,
//! secret_overrides)`, which hands both lists to `Task.from_yaml_config` (schema, then cross-field
//! rules such as the docker login trio). A bare `--env K` / `--secret K` takes K's value from the
//! launching shell (sky/client/cli/flags.py `_parse_env_var`); here it gets a dummy value.
//!
//! A YAML may say `# requires SkyPilot >= X.Y` (e.g. for the 0.13+ `config.hooks`): then a pinned
//! release below X.Y must REFUSE it (so the stated floor is true) and the others must accept it.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs in a pinned venv's python: reads cases as JSON from stdin, prints one JSON line per case
/// after the marker, so SkyPilot's own log lines and warnings cannot be mistaken for results.
const DRIVER: &str = r#"
import json, sys, traceback
from sky.utils import dag_utils
cases = json.load(sys.stdin)
results = []
for case in cases:
    try:
        dag = dag_utils.load_chain_dag_from_yaml(
            case["path"],
            [tuple(p) for p in case["envs"]],
            [tuple(p) for p in case["secrets"]],
        )
        task = dag.tasks[0]
        login = None
        for res in task.resources:
            cfg = getattr(res, "docker_login_config", None)
            if cfg is not None:
                login = {"server": cfg.server, "username": cfg.username,
                         "password_empty": cfg.password == ""}
        results.append({"ok": True, "name": task.name, "envs": sorted(task.envs),
                        "secrets": sorted(task.secrets), "docker_login": login})
    except BaseException as e:
        results.append({"ok": False, "error": "%s: %s" % (type(e).__name__, e)})
print("DDSKY-LOADER-RESULTS " + json.dumps(results))
"#;

/// The SkyPilot releases scripts/test-tools.sh installs (`skypilot_versions=(...)`): one list, not two.
pub fn pinned_versions() -> Vec<String> {
    let script = std::fs::read_to_string(repo().join("scripts/test-tools.sh")).unwrap();
    let line = script
        .lines()
        .find_map(|l| l.trim().strip_prefix("skypilot_versions=("))
        .expect("scripts/test-tools.sh pins skypilot_versions=(...)");
    let versions: Vec<String> = line
        .trim_end_matches(')')
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(
        versions.len() >= 2,
        "a floor and a newest release: {versions:?}"
    );
    versions
}

/// `$DDSKY_SKYPILOT_VENVS/<version>/bin/python`, or a failure that says how to make it: never a skip.
pub fn venv_python(version: &str) -> PathBuf {
    let root = tool_dir("DDSKY_SKYPILOT_VENVS", "skypilot-venvs");
    let python = root.join(version).join("bin/python");
    assert!(
        python.is_file(),
        "no SkyPilot {version} venv at {}: run scripts/test.sh (it creates the venvs under \
         ~/.cache/ddsky/skypilot-venvs, or DDSKY_SKYPILOT_VENVS)",
        python.display()
    );
    python
}

/// A parsed `# sky launch ...` line.
#[derive(Debug, Clone)]
struct Launch {
    line: String,
    yaml: String,
    envs: Vec<(String, String)>,
    secrets: Vec<(String, String)>,
}

/// `K=V` as given, or a bare `K` with the value the launching shell would supply (a dummy here).
fn override_pair(arg: &str) -> (String, String) {
    let arg = arg.trim_matches(|c| c == '"' || c == '\'');
    match arg.split_once('=') {
        Some((k, v)) => (
            k.to_owned(),
            v.trim_matches(|c| c == '"' || c == '\'').to_owned(),
        ),
        None => (arg.to_owned(), format!("dummy-{}", arg.to_lowercase())),
    }
}

/// Every `# sky launch ` line of a YAML's comments, with its YAML path and overrides.
fn launch_lines(text: &str) -> Vec<Launch> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# sky launch "))
        .map(|rest| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let mut launch = Launch {
                line: format!("sky launch {rest}"),
                yaml: String::new(),
                envs: vec![],
                secrets: vec![],
            };
            let mut i = 0;
            while i < words.len() {
                let w = words[i];
                let (flag, inline) = match w.split_once('=') {
                    Some((f, v)) if f.starts_with("--") => (f, Some(v)),
                    _ => (w, None),
                };
                let takes_value = ["--env", "--secret", "-c", "--cluster", "--name", "-n"];
                if takes_value.contains(&flag) {
                    let value = match inline {
                        Some(v) => v.to_owned(),
                        None => {
                            i += 1;
                            words.get(i).copied().unwrap_or_default().to_owned()
                        }
                    };
                    match flag {
                        "--env" => launch.envs.push(override_pair(&value)),
                        "--secret" => launch.secrets.push(override_pair(&value)),
                        _ => {}
                    }
                } else if !w.starts_with('-') && w.ends_with(".yaml") && launch.yaml.is_empty() {
                    launch.yaml = w.to_owned();
                }
                i += 1;
            }
            launch
        })
        .collect()
}

/// `# requires SkyPilot >= X.Y[.Z]`, if the YAML states a floor above the pinned one.
fn required_version(text: &str) -> Option<Vec<u32>> {
    text.lines()
        .filter_map(|l| l.strip_prefix('#'))
        .find_map(|l| l.trim().strip_prefix("requires SkyPilot >= "))
        .map(|v| version_parts(v.split_whitespace().next().unwrap_or_default()))
}

fn version_parts(v: &str) -> Vec<u32> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// One loader run: a YAML path (as `sky launch` would be given it, relative to the launch
/// directory) and its overrides.
struct Case {
    path: PathBuf,
    envs: Vec<(String, String)>,
    secrets: Vec<(String, String)>,
}

/// Runs SkyPilot `version`'s loader on every case in one python process (importing sky takes
/// seconds); returns one result per case. The launch directory is the repository root, as the
/// examples' comments say; HOME is a fresh temp dir (SkyPilot writes ~/.sky); AWS cannot be reached.
fn load(version: &str, cases: &[Case]) -> Vec<Value> {
    let python = venv_python(version);
    let home = scratch_dir(&format!("loader-{version}"));
    let input: Vec<Value> = cases
        .iter()
        .map(|c| {
            serde_json::json!({
                "path": c.path,
                "envs": c.envs,
                "secrets": c.secrets,
            })
        })
        .collect();
    let mut child = Command::new(&python)
        .args(["-c", DRIVER])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        // No usage reports from SkyPilot (it would try the network).
        .env("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    serde_json::to_writer(child.stdin.take().unwrap(), &input).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results = stdout
        .lines()
        .find_map(|l| l.strip_prefix("DDSKY-LOADER-RESULTS "))
        .unwrap_or_else(|| {
            panic!(
                "SkyPilot {version}'s loader did not run (exit {:?}):\n{stdout}\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let results: Vec<Value> = serde_json::from_str(results).unwrap();
    assert_eq!(results.len(), cases.len());
    results
}

fn example_yamls() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("docker/skypilot"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no docker/skypilot/*.yaml");
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Checks every example against every pinned release; returns the problems found (empty: all good).
/// `files` are (path to load, text whose comments give the launch lines, name the comments must use).
fn check_examples(files: &[(PathBuf, String, String)]) -> Vec<String> {
    let mut problems = vec![];
    let mut cases = vec![];
    let mut meta = vec![];
    for (path, text, name) in files {
        let launches = launch_lines(text);
        if launches.is_empty() {
            problems.push(format!(
                "{name}: no `# sky launch ...` line in its comments (see the convention in tests/e2e/skypilot_loader.rs)"
            ));
        }
        for launch in launches {
            if launch.yaml != *name {
                problems.push(format!(
                    "{name}: its launch line names {:?}, not itself: {}",
                    launch.yaml, launch.line
                ));
            }
            cases.push(Case {
                path: path.clone(),
                envs: launch.envs.clone(),
                secrets: launch.secrets.clone(),
            });
            meta.push((name.clone(), launch, required_version(text)));
        }
    }
    for version in pinned_versions() {
        let results = load(&version, &cases);
        for ((name, launch, floor), result) in meta.iter().zip(results) {
            let below_floor = floor.as_ref().is_some_and(|f| version_parts(&version) < *f);
            match (result["ok"].as_bool() == Some(true), below_floor) {
                (true, false) => {
                    for (key, _) in &launch.envs {
                        if !result["envs"].as_array().unwrap().iter().any(|k| k == key) {
                            problems.push(format!("{name} on SkyPilot {version}: --env {key} is not in the task's envs"));
                        }
                    }
                }
                (false, false) => problems.push(format!(
                    "{name} on SkyPilot {version}: `{}` is refused: {}",
                    launch.line, result["error"]
                )),
                (true, true) => problems.push(format!(
                    "{name} says it requires SkyPilot >= {floor:?} but SkyPilot {version} accepts it: lower the stated floor"
                )),
                (false, true) => {}
            }
        }
    }
    problems
}

fn the_examples() -> Vec<(PathBuf, String, String)> {
    example_yamls()
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = relative(&p);
            (p, text, name)
        })
        .collect()
}

#[test]
fn every_example_yaml_passes_skypilots_own_loader_with_its_launch_commands() {
    let problems = check_examples(&the_examples());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_broken_example_fails_the_loader_check() {
    // The check must catch what SkyPilot refuses: the login trio split (the launch line the
    // runtime example had before), a field SkyPilot does not know, a YAML without a launch line.
    let scratch = scratch_dir("loader-broken");
    let dir = scratch.path();
    let runtime =
        std::fs::read_to_string(repo().join("docker/skypilot/runtime-mode.yaml")).unwrap();
    let mut files = vec![];
    let split = runtime
        .replace("  SKYPILOT_DOCKER_PASSWORD: \"\"\n", "")
        .replace(
            "--secret DD_API_KEY",
            "--secret DD_API_KEY --secret SKYPILOT_DOCKER_PASSWORD=token",
        );
    let unknown = runtime.replace("num_nodes: 1", "num_nodes: 1\nnum_gpus: 1");
    let unlaunched: String = runtime
        .lines()
        .filter(|l| !l.starts_with("# sky launch "))
        .map(|l| format!("{l}\n"))
        .collect();
    for (file, text) in [
        ("split.yaml", split),
        ("unknown.yaml", unknown),
        ("unlaunched.yaml", unlaunched),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, &text).unwrap();
        files.push((path, text, "docker/skypilot/runtime-mode.yaml".to_owned()));
    }
    let problems = check_examples(&files);
    let all = problems.join("\n");
    let versions = pinned_versions();
    assert!(
        problems
            .iter()
            .filter(|p| p.contains("Docker login variables must be specified together"))
            .count()
            == versions.len(),
        "the split trio is refused by every pinned release:\n{all}"
    );
    assert!(
        problems.iter().filter(|p| p.contains("num_gpus")).count() == versions.len(),
        "an unknown field is refused by every pinned release:\n{all}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("no `# sky launch ...` line")),
        "{all}"
    );
}

#[test]
fn runtime_mode_logs_in_to_ecr_with_the_node_role_and_the_trio_split_is_refused() {
    let path = repo().join("docker/skypilot/runtime-mode.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let launch = launch_lines(&text).remove(0);
    // As the launch line says; then the old way: the password passed as a secret.
    let mut split = launch.secrets.clone();
    split.push(("SKYPILOT_DOCKER_PASSWORD".into(), "token".into()));
    let cases = [
        Case {
            path: path.clone(),
            envs: launch.envs.clone(),
            secrets: launch.secrets.clone(),
        },
        Case {
            path: path.clone(),
            envs: launch.envs.clone(),
            secrets: split,
        },
    ];
    for version in pinned_versions() {
        let results = load(&version, &cases);
        assert_eq!(results[0]["ok"], true, "SkyPilot {version}: {}", results[0]);
        let login = &results[0]["docker_login"];
        assert_eq!(login["username"], "AWS", "SkyPilot {version}: {login}");
        assert!(
            login["server"]
                .as_str()
                .is_some_and(|s| s.contains(".dkr.ecr.")),
            "an ECR server: {login}"
        );
        assert_eq!(
            login["password_empty"], true,
            "an empty password: SkyPilot logs in with the node's IAM role"
        );
        assert!(
            !results[0]["secrets"].as_array().unwrap().iter().any(|k| k
                .as_str()
                .is_some_and(|k| k.starts_with("SKYPILOT_DOCKER_"))),
            "{}",
            results[0]
        );
        assert_eq!(
            results[1]["ok"], false,
            "SkyPilot {version}: {}",
            results[1]
        );
        assert!(
            results[1]["error"].as_str().unwrap().contains(
                "Docker login variables must be specified together either in envs OR secrets"
            ),
            "SkyPilot {version}: {}",
            results[1]
        );
    }
}

#[test]
fn every_example_embeds_the_setup_snippet_verbatim_and_its_trap_fits_the_kill_window() {
    let snippet = std::fs::read_to_string(repo().join("docker/skypilot/setup-snippet.sh")).unwrap();
    let block = &snippet[snippet.find("# >>> ddsky setup snippet").unwrap()..];
    for path in example_yamls() {
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        let name = relative(&path);
        if let Some(setup) = doc["setup"]
            .as_str()
            .filter(|s| s.contains("# >>> ddsky setup snippet"))
        {
            let start = setup.find("# >>> ddsky setup snippet").unwrap();
            let end = setup.find("# <<< ddsky setup snippet").unwrap()
                + "# <<< ddsky setup snippet\n".len();
            assert_eq!(
                &setup[start..end.min(setup.len())],
                block,
                "{name}: the snippet is not verbatim"
            );
        }
        // SkyPilot SIGKILLs `run` 30 s after the SIGTERM of a cancel: the trap's grace must be shorter.
        if let Some(run) = doc["run"].as_str().filter(|r| r.contains(" down")) {
            assert!(
                run.contains("down --timeout 20s"),
                "{name}: the trap's ddsky down must use a grace well inside 30 s"
            );
        }
    }
}
