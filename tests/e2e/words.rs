//! Issue 31, part 2: every message ddsky prints on a node is a line in words, the cause then the
//! fix, never a Rust Debug form, and nothing of its dependencies' own logs. The commands a node runs
//! (`up`, `run`, `down`, `status`, `doctor`) with no key and no AWS credentials, then with
//! credentials but a Secrets Manager endpoint nothing listens on. Everything stays on loopback:
//! instance metadata off, every AWS endpoint on 127.0.0.1 (see `Scope::ddsky`).

use crate::common::*;
use std::process::Command;

/// Where the output shows a Rust Debug form: `Name {` (a struct) or `Name(` (a tuple variant).
pub fn debug_forms(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if !chars[i].is_alphabetic() || (i > 0 && is_word(chars[i - 1])) {
                i += 1;
                continue;
            }
            let start = i;
            while i < chars.len() && is_word(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let rest: String = chars[i..].iter().collect();
            let capitalised = word.starts_with(|c: char| c.is_ascii_uppercase());
            if (capitalised && rest.starts_with('(')) || rest.starts_with(" { ") {
                found.push(line.to_owned());
                break;
            }
        }
    }
    found
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[test]
fn the_debug_form_check_catches_what_the_issue_saw() {
    // The line a node printed before (issue 31), and the SDK's own warning.
    let seen = "monitoring skipped: ... (dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111) (DispatchFailure(DispatchFailure { source: ConnectorError { kind: Io, source: hyper_util::client::legacy::Error(Connect, ConnectError(\"tcp connect error\", Os { code: 111, kind: C";
    assert_eq!(debug_forms(seen).len(), 1);
    assert_eq!(
        debug_forms(
            "WARN failed to load token: FailedToLoadToken(FailedToLoadToken { source: x })"
        )
        .len(),
        1
    );
    assert_eq!(debug_forms("x Os { code: 111 }").len(), 1);
    // Words with parentheses are words.
    for fine in [
        "cannot reach the Secrets Manager endpoint (io error: client error (Connect): Connection refused (os error 111)); check",
        "no secret of that name (HTTP 404) in us-east-1",
        "[ok  ] docker api: unix:///var/run/docker.sock answers, API 1.41",
        "--image \"x\" has an empty entry",
    ] {
        assert!(debug_forms(fine).is_empty(), "{fine}");
    }
}

/// Fails on any Debug form or dependency log line in either stream.
fn assert_words(what: &str, out: &Run) {
    let both = format!("{}\n{}", out.stdout, out.stderr);
    let forms = debug_forms(&both);
    assert!(forms.is_empty(), "{what}: Debug forms {forms:?}\n{out}");
    for noise in [
        "no native root CA certificates found",
        "aws_",
        "WARN",
        "ERROR",
    ] {
        assert!(
            !both.contains(noise),
            "{what}: `{noise}` in the output\n{out}"
        );
    }
    out.assert_no_secret(&[]);
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// A node's ddsky without DD_API_KEY; with `credentials`, dummy ones (the lookup then reaches for
/// the endpoint), else none at all (instance metadata is off: no role either).
fn node_ddsky(s: &Scope, credentials: bool) -> Command {
    let mut cmd = s.ddsky();
    cmd.env_remove("DD_API_KEY")
        // Nothing listens there: a refused connection, on loopback.
        .env(
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            format!("http://127.0.0.1:{}", free_port()),
        );
    if !credentials {
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
    }
    cmd
}

/// `up` and `run` skip monitoring with one line that says why, in words; the job's output is its own.
fn up_and_run_say_one_line(s: &Scope, credentials: bool, reason: &[&str]) {
    let up = run(node_ddsky(s, credentials)
        .args(["up", "--image", agent_image(), "--secret-timeout", "30s"])
        .args(s.port_args())
        .args(s.agent_args())
        .arg("--run-dir")
        .arg(s.run_dir.path()));
    up.expect_code(0);
    assert_words("up", &up);
    assert_eq!(
        lines(&up.stderr),
        Vec::<&str>::new(),
        "up: nothing on stderr\n{up}"
    );
    let line = up.stdout.trim_end();
    assert_eq!(lines(line).len(), 1, "up: one line\n{up}");
    assert!(line.starts_with("monitoring skipped, nothing created: DD_API_KEY unset; secret datadog/api-key in us-east-1: "), "{up}");
    for words in reason {
        assert!(line.contains(words), "up: `{words}` missing\n{up}");
    }
    assert!(inspect(&s.agent).is_none(), "nothing created");

    let job = run(node_ddsky(s, credentials)
        .args(["run", "--image", agent_image(), "--secret-timeout", "30s"])
        .args(s.port_args())
        .args(s.agent_args())
        .arg("--run-dir")
        .arg(s.run_dir.path())
        .args(["--", "sh", "-c", "echo the job speaks; exit 3"]));
    job.expect_code(3);
    assert_words("run", &job);
    assert_eq!(
        job.stdout, "the job speaks\n",
        "the job's output alone\n{job}"
    );
    // The skip, or (when the job ended first) that the refresh stopped there: one line either way.
    assert!(
        lines(&job.stderr).len() <= 1,
        "run: at most one line of its own\n{job}"
    );
    if let Some(line) = lines(&job.stderr).first() {
        if line.contains("monitoring skipped") {
            for words in reason {
                assert!(line.contains(words), "run: `{words}` missing\n{job}");
            }
        }
    }
    assert!(inspect(&s.agent).is_none(), "nothing created");
}

/// `down`, `status` and `doctor` with no agent: their outcome and nothing more.
fn the_rest_say_no_more_than_their_outcome(s: &Scope, credentials: bool) {
    let down = run(node_ddsky(s, credentials).arg("down"));
    down.expect_code(0);
    assert_words("down", &down);
    assert_eq!(
        lines(&format!("{}{}", down.stdout, down.stderr)),
        [format!(
            "no agent container named {}; nothing to do",
            s.agent
        )],
        "{down}"
    );

    let status = run(node_ddsky(s, credentials).arg("status"));
    status.expect_code(5);
    assert_words("status", &status);
    assert_eq!(lines(&status.stderr), Vec::<&str>::new(), "{status}");
    let out = lines(&status.stdout);
    assert_eq!(
        out.first().copied(),
        Some(
            format!(
                "agent: no container named {} (start it with `ddsky up`)",
                s.agent
            )
            .as_str()
        ),
        "{status}"
    );
    // Then the node's containers: a heading and one line each (the daemon is shared by other tests).
    assert!(
        out.get(1).is_some_and(|l| l.starts_with("containers (")),
        "{status}"
    );

    let doctor = run(node_ddsky(s, credentials).arg("doctor").args(s.port_args()));
    doctor.expect_code(1);
    assert_words("doctor", &doctor);
    assert_eq!(lines(&doctor.stderr), Vec::<&str>::new(), "{doctor}");
    // One line per check, and a fix under each that failed or warns: nothing else.
    let mut checks = std::collections::BTreeSet::new();
    let mut fix_allowed = false;
    for line in lines(&doctor.stdout) {
        if let Some(check) = line.strip_prefix('[') {
            let (verdict, rest) = check.split_once("] ").expect("`[verdict] name: ...`");
            let name = rest.split_once(':').expect("`name: what`").0;
            assert!(checks.insert(name.to_owned()), "{name} twice\n{doctor}");
            fix_allowed = matches!(verdict.trim(), "FAIL" | "warn" | "WARN");
        } else {
            assert!(
                fix_allowed && line.trim_start().starts_with("fix: "),
                "a line that is neither a check nor its fix: {line}\n{doctor}"
            );
            fix_allowed = false;
        }
    }
    assert!(checks.contains("agent container"), "{doctor}");
}

#[test]
fn a_node_without_key_or_credentials_hears_plain_words() {
    let s = Scope::new("nocreds");
    up_and_run_say_one_line(
        &s,
        false,
        &[
            "no AWS credentials on this node: instance metadata off (AWS_EC2_METADATA_DISABLED) and no AWS_* variables or profile",
            "attach an instance role or pass DD_API_KEY",
        ],
    );
    the_rest_say_no_more_than_their_outcome(&s, false);

    // The SDK's own lines exist, and only -v shows them: its credential chain's probes at -vv.
    let verbose = run(node_ddsky(&s, false).args(["up", "--dry-run", "-vv"]));
    verbose.expect_code(0);
    assert!(
        verbose
            .stderr
            .contains("provider in chain did not provide credentials"),
        "-vv shows the AWS SDK's credential probes\n{verbose}"
    );
}

#[test]
fn a_node_whose_secrets_manager_is_unreachable_hears_plain_words() {
    let s = Scope::new("noroute");
    up_and_run_say_one_line(
        &s,
        true,
        &[
            "cannot reach the Secrets Manager endpoint (",
            "Connection refused",
            "or pass DD_API_KEY",
        ],
    );
    the_rest_say_no_more_than_their_outcome(&s, true);
}
