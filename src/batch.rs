//! Several commands in one `docker exec`, through the container's `sh`.
//!
//! Each exec costs the daemon a runc start (60-90 ms here) and on a small host parallel execs barely
//! overlap, so `status` asks the agent everything in one exec: the commands run in parallel inside
//! the container, each into its own files, and are printed one after another between marker lines
//! that carry a per-run nonce, so no output can be mistaken for a marker. Building the script and
//! splitting its output are pure; the caller runs it and falls back to one exec per command when the
//! container has no shell. The official image has one (its health check, `/probe.sh`, is a script),
//! and `mktemp`, `cat` and `rm`, the only tools the script calls.
//!
//! Layer: domain (see `src/layers.rs`): may use the core, the edges and other domain modules; never
//! `cli`, `settings` or `commands`.

use crate::engine::ExecOutput;

/// One command of a batch: environment assignments (`NAME=value`) and argv.
#[derive(Debug, Clone, Copy)]
pub struct BatchCommand<'a> {
    pub env: &'a [&'a str],
    pub argv: &'a [&'a str],
}

/// A marker unlikely to appear in any output: the prefix and a nonce fresh for every run.
pub fn marker(nonce: u64) -> String {
    format!("@@ddsky-batch-{nonce:016x}")
}

/// A nonce from the process's randomly seeded hasher: no extra crate for sixty-four random bits.
pub fn fresh_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

/// POSIX single quoting: the word is taken literally by any `sh`.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The `sh -c` script running `commands` in parallel and printing, for command `i`:
/// `\n<marker> i out\n<stdout>\n<marker> i err\n<stderr>\n<marker> i rc <exit code>\n`.
/// Outputs go through files in a private temporary directory, removed on exit.
pub fn script(marker: &str, commands: &[BatchCommand<'_>]) -> String {
    let mut s = String::from("d=$(mktemp -d) || exit 125\ntrap 'rm -rf \"$d\"' EXIT\n");
    for (i, c) in commands.iter().enumerate() {
        let words: Vec<String> = c
            .env
            .iter()
            .map(|assignment| match assignment.split_once('=') {
                Some((name, value)) => format!("{name}={}", quote(value)),
                None => quote(assignment),
            })
            .chain(c.argv.iter().map(|w| quote(w)))
            .collect();
        s += &format!(
            "({} >\"$d/{i}.out\" 2>\"$d/{i}.err\"; echo $? >\"$d/{i}.rc\") &\n",
            words.join(" ")
        );
    }
    s += "wait\n";
    s += &format!("m={}\n", quote(marker));
    let indices: Vec<String> = (0..commands.len()).map(|i| i.to_string()).collect();
    s += &format!("for i in {}; do\n", indices.join(" "));
    s += concat!(
        "  printf '\\n%s %s out\\n' \"$m\" \"$i\"; cat \"$d/$i.out\"\n",
        "  printf '\\n%s %s err\\n' \"$m\" \"$i\"; cat \"$d/$i.err\"\n",
        "  printf '\\n%s %s rc %s\\n' \"$m\" \"$i\" \"$(cat \"$d/$i.rc\")\"\n",
        "done\n",
    );
    s
}

/// Splits what [`script`] printed back into one output per command, or `None` when the output is
/// not the script's (no shell, a missing tool, a truncated stream): the caller then asks again,
/// one exec per command.
pub fn split(stdout: &str, marker: &str, count: usize) -> Option<Vec<ExecOutput>> {
    let mut rest = stdout;
    let mut outputs = Vec::with_capacity(count);
    for i in 0..count {
        let out_line = format!("\n{marker} {i} out\n");
        let err_line = format!("\n{marker} {i} err\n");
        let rc_line = format!("\n{marker} {i} rc ");
        rest = rest.strip_prefix(&out_line)?;
        let (out, after) = rest.split_once(&err_line)?;
        let (err, after) = after.split_once(&rc_line)?;
        let (code, after) = after.split_once('\n')?;
        outputs.push(ExecOutput {
            exit_code: code.trim().parse().ok()?,
            stdout: out.to_owned(),
            stderr: err.to_owned(),
        });
        rest = after;
    }
    rest.is_empty().then_some(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;
    use std::process::Command;

    const MARKER: &str = "@@ddsky-batch-00000000deadbeef";

    /// What the script prints for these outputs: the format `split` reads, written out by hand.
    fn printed(outputs: &[ExecOutput]) -> String {
        outputs
            .iter()
            .enumerate()
            .map(|(i, o)| {
                format!(
                    "\n{MARKER} {i} out\n{}\n{MARKER} {i} err\n{}\n{MARKER} {i} rc {}\n",
                    o.stdout, o.stderr, o.exit_code
                )
            })
            .collect()
    }

    fn output(code: i64, stdout: &str, stderr: &str) -> ExecOutput {
        ExecOutput {
            exit_code: code,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn splits_outputs_with_and_without_trailing_newlines() {
        let outputs = vec![
            output(0, "{\"a\":1}\n", ""),
            output(1, "no newline", "Error: unknown flag: --json\n"),
            output(0, "", ""),
        ];
        assert_eq!(split(&printed(&outputs), MARKER, 3), Some(outputs));
    }

    #[test]
    fn refuses_what_the_script_did_not_print() {
        let shell_missing = "OCI runtime exec failed: exec: \"sh\": executable file not found";
        assert_eq!(split(shell_missing, MARKER, 2), None);
        assert_eq!(split("", MARKER, 1), None);
        let both = printed(&[output(0, "x", ""), output(0, "y", "")]);
        let truncated = &both[..both.len() - 10];
        assert_eq!(split(truncated, MARKER, 2), None);
        assert_eq!(split(&both, MARKER, 1), None, "more sections than asked");
        assert_eq!(split(&both, MARKER, 3), None, "fewer sections than asked");
        let other_marker = both.replace(MARKER, "@@ddsky-batch-0000000000000001");
        assert_eq!(split(&other_marker, MARKER, 2), None);
    }

    #[test]
    fn quotes_every_word_literally() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        let s = script(
            MARKER,
            &[BatchCommand {
                env: &["DD_LOG_LEVEL=off"],
                argv: &["agent", "status", "--json"],
            }],
        );
        assert!(s.contains("(DD_LOG_LEVEL='off' 'agent' 'status' '--json' >"));
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(marker(fresh_nonce()), marker(fresh_nonce()));
    }

    proptest! {
        #[test]
        fn split_reads_back_any_outputs(
            outs in proptest::collection::vec(("\\PC*", "\\PC*", -1i64..256), 1..5)
        ) {
            let outputs: Vec<ExecOutput> =
                outs.iter().map(|(o, e, c)| output(*c, o, e)).collect();
            prop_assert_eq!(split(&printed(&outputs), MARKER, outputs.len()), Some(outputs));
        }
    }

    /// The script itself, run by this machine's `sh` against a fake `agent` that echoes its
    /// arguments and environment: each command's output, error and exit code come back apart.
    #[test]
    fn the_script_runs_under_sh_and_splits_back() {
        let dir = std::env::temp_dir().join(format!("ddsky-batch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("agent");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"args: $*\"\necho \"level: ${DD_LOG_LEVEL:-unset}\" >&2\n\
             [ \"$1\" = health ] && { printf 'Agent health: FAIL'; exit 1; }\nexit 0\n",
        )
        .unwrap();
        set_executable(&fake);
        let commands = [
            BatchCommand {
                env: &["DD_LOG_LEVEL=off"],
                argv: &["agent", "workload-list", "--json"],
            },
            BatchCommand {
                env: &[],
                argv: &["agent", "health"],
            },
            BatchCommand {
                env: &["DD_LOG_LEVEL=off"],
                argv: &["agent", "it's quoted"],
            },
        ];
        let out = Command::new("sh")
            .arg("-c")
            .arg(script(MARKER, &commands))
            .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let outputs = split(&String::from_utf8_lossy(&out.stdout), MARKER, 3).unwrap();
        assert_eq!(
            outputs,
            vec![
                output(0, "args: workload-list --json\n", "level: off\n"),
                output(1, "args: health\nAgent health: FAIL", "level: unset\n"),
                output(0, "args: it's quoted\n", "level: off\n"),
            ]
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn set_executable(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
