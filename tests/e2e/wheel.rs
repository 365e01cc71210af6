//! `pip install ddsky`: the wheel and the sdist that scripts/release.sh builds (maturin, twine and uv
//! from PyPI in the venv scripts/release-venv.sh makes once per machine), installed the ways users
//! install them, and the setup snippet's node path that fetches the pinned wheel from a package
//! index (here a PEP 503 simple index served by Python's http.server on loopback).

use crate::common::*;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What one run of scripts/release.sh left: the two files and the sha256 lines it printed.
struct Release {
    wheel: PathBuf,
    sdist: PathBuf,
    printed: String,
}

/// The release tools' venv ($DDSKY_RELEASE_VENV, else ~/.cache/ddsky/release-venv), or a failure
/// that says how to make it: never a skip.
fn release_venv() -> PathBuf {
    let venv = tool_dir("DDSKY_RELEASE_VENV", "release-venv");
    assert!(
        venv.join("bin/maturin").is_file() && venv.join("bin/uv").is_file(),
        "no release tools venv at {}: run scripts/test.sh (or bash scripts/release-venv.sh)",
        venv.display()
    );
    venv
}

/// The wheel and sdist of scripts/release.sh --build-only: those scripts/test.sh built before the
/// tests (`--dev-profile`, in $DDSKY_TEST_WHEEL_DIR, with what it printed in printed.txt), else
/// built here into target/test-dist on the release profile, once per test binary (a subset run by
/// `cargo test` alone).
fn release() -> &'static Release {
    static BUILT: OnceLock<Release> = OnceLock::new();
    BUILT.get_or_init(|| {
        let (out_dir, printed) = match std::env::var_os("DDSKY_TEST_WHEEL_DIR") {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                let printed = std::fs::read_to_string(dir.join("printed.txt"))
                    .expect("scripts/test.sh saves what release.sh printed in printed.txt");
                (dir, printed)
            }
            None => {
                let venv = release_venv();
                let out_dir = repo().join("target/test-dist");
                // --build-only: no cargo deny, and no stamp of the wheel's hash into the
                // repository's files.
                let out = run(Command::new("bash")
                    .arg(repo().join("scripts/release.sh"))
                    .arg("--build-only")
                    .arg(&out_dir)
                    .env("DDSKY_RELEASE_VENV", &venv));
                out.expect_code(0);
                (out_dir, out.stdout)
            }
        };
        let only = |suffix: &str| {
            let found: Vec<PathBuf> = std::fs::read_dir(&out_dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect();
            assert_eq!(found.len(), 1, "one {suffix} in {}", out_dir.display());
            found.into_iter().next().unwrap()
        };
        Release {
            wheel: only(".whl"),
            sdist: only(".tar.gz"),
            printed,
        }
    })
}

fn cargo_version() -> String {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("Cargo.toml's package version")
        .to_owned()
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `ddsky` executable inside the wheel, written to `dest` with Python's zipfile (as the setup
/// snippet takes it out).
fn binary_in_wheel(wheel: &Path, dest: &Path) {
    let code = "import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); \
        m=[n for n in z.namelist() if n.endswith('.data/scripts/ddsky')]; \
        assert len(m)==1, z.namelist(); open(sys.argv[2],'wb').write(z.read(m[0]))";
    run(Command::new("python3")
        .args(["-c", code])
        .arg(wheel)
        .arg(dest))
    .expect_code(0);
}

/// Whether an ELF executable asks for a dynamic loader (a PT_INTERP program header): every
/// dynamically linked executable does; a static (or static-pie) one does not.
fn elf_interpreter(path: &Path) -> Option<String> {
    let elf = std::fs::read(path).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "{} is not ELF", path.display());
    assert_eq!(elf[4], 2, "64-bit ELF");
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).find_map(|i| {
        let ph = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(elf[ph..ph + 4].try_into().unwrap());
        (p_type == 3).then(|| {
            let (offset, size) = (u64_at(ph + 8), u64_at(ph + 32));
            String::from_utf8_lossy(&elf[offset..offset + size])
                .trim_end_matches('\0')
                .to_owned()
        })
    })
}

#[test]
fn elf_interpreter_tells_a_dynamic_executable_from_a_static_one() {
    // The check below must be able to fail: the machine's python3 is dynamically linked.
    let python = run(Command::new("python3").args(["-c", "import sys; print(sys.executable)"]));
    let python = PathBuf::from(python.stdout.trim());
    assert!(elf_interpreter(&python).is_some(), "{}", python.display());
}

#[test]
fn the_wheel_carries_the_static_binary_and_pip_takes_it_on_glibc_and_musl_linux() {
    let release = release();
    let name = file_name(&release.wheel);
    let version = cargo_version();
    assert!(
        name.starts_with(&format!("ddsky-{version}-py3-none-")),
        "{name}"
    );
    let platforms: Vec<&str> = name
        .trim_end_matches(".whl")
        .rsplit('-')
        .next()
        .unwrap()
        .split('.')
        .collect();
    for tag in ["manylinux_2_5_x86_64", "musllinux_1_1_x86_64"] {
        assert!(platforms.contains(&tag), "{name} lacks {tag}");
    }
    let scratch = scratch_dir("wheel-binary");
    let binary = scratch.path().join("ddsky");
    binary_in_wheel(&release.wheel, &binary);
    assert_eq!(
        elf_interpreter(&binary),
        None,
        "the binary in {name} is dynamically linked"
    );
    // pip's own choice, given the platform tags pip on such a node supports (packaging.tags: every
    // manylinux_2_Y up to the node's glibc, every musllinux_1_Y up to its musl): a glibc 2.17 node
    // and a musl 1.2 node (Alpine 3.13+) both take this wheel; without the musllinux tag (maturin's
    // own name), the musl node would not.
    let glibc_217: Vec<String> = (5..=17)
        .map(|minor| format!("manylinux_2_{minor}_x86_64"))
        .collect();
    let musl_12: Vec<String> = (0..=2)
        .map(|minor| format!("musllinux_1_{minor}_x86_64"))
        .collect();
    let pip_takes = |dist: &Path, platforms: &[String], dest: &Path| -> Run {
        let mut cmd = Command::new(release_venv().join("bin/python"));
        cmd.args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-index",
            "--no-deps",
        ])
        .args(["--only-binary=:all:", "--python-version", "3.12"]);
        for platform in platforms {
            cmd.args(["--platform", platform]);
        }
        run(cmd
            .arg("--find-links")
            .arg(dist)
            .arg("--dest")
            .arg(dest)
            .arg(format!("ddsky=={version}"))
            .env("PIP_CONFIG_FILE", "/dev/null"))
    };
    let dist = release.wheel.parent().unwrap();
    for (node, platforms) in [("glibc 2.17", &glibc_217), ("musl 1.2", &musl_12)] {
        let dest = scratch.path().join(node);
        let out = pip_takes(dist, platforms, &dest);
        out.expect_code(0);
        assert!(dest.join(&name).is_file(), "{node}: {out}");
    }
    let untagged = scratch.path().join("manylinux-only");
    std::fs::create_dir(&untagged).unwrap();
    let manylinux_name = name.replace(".musllinux_1_1_x86_64", "");
    std::fs::copy(&release.wheel, untagged.join(&manylinux_name)).unwrap();
    let refused = pip_takes(&untagged, &musl_12, &scratch.path().join("refused"));
    assert_ne!(
        refused.code, 0,
        "pip on musl took {manylinux_name}: {refused}"
    );
    // What release.sh printed is each file's sha256, in sha256sum's format.
    for file in [&release.wheel, &release.sdist] {
        let line = format!("{}  {}", sha256_hex(file), file.display());
        assert!(
            release.printed.lines().any(|l| l == line),
            "release.sh printed no `{line}`:\n{}",
            release.printed
        );
    }
}

/// `ddsky --version` and `ddsky up --dry-run` of an installed executable.
fn runs_as_released(ddsky: &Path) {
    let version = run(Command::new(ddsky).arg("--version"));
    version.expect_code(0);
    assert_eq!(
        version.stdout.trim(),
        format!("ddsky {}", cargo_version()),
        "{}",
        ddsky.display()
    );
    let dry = run(Command::new(ddsky)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("DD_API_KEY", KEY)
        .current_dir(std::env::temp_dir())
        .args(["up", "--dry-run", "--format", "json"]));
    dry.expect_code(0);
    assert_eq!(dry.json()["name"], "dd-agent", "{dry}");
    dry.assert_no_secret(&[KEY]);
}

#[test]
fn pip_install_and_uv_tool_install_put_a_working_ddsky_on_path() {
    let release = release();
    let venv = release_venv();
    let scratch = scratch_dir("installs");
    // pip into a fresh venv, from the file alone (--no-index: nothing else is needed).
    let target_venv = scratch.path().join("venv");
    run(Command::new("python3")
        .args(["-m", "venv"])
        .arg(&target_venv))
    .expect_code(0);
    run(Command::new(target_venv.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", "--no-index"])
        .arg(&release.wheel)
        .env("PIP_CONFIG_FILE", "/dev/null"))
    .expect_code(0);
    runs_as_released(&target_venv.join("bin/ddsky"));
    // uv tool install into a fresh tool dir, offline.
    let tools = scratch.path().join("uv-tools");
    let bin = scratch.path().join("uv-bin");
    run(Command::new(venv.join("bin/uv"))
        .args(["tool", "install", "--offline", "--no-config"])
        .arg(&release.wheel)
        .env("UV_TOOL_DIR", &tools)
        .env("UV_TOOL_BIN_DIR", &bin)
        .env("UV_CACHE_DIR", scratch.path().join("uv-cache"))
        .env("UV_PYTHON_DOWNLOADS", "never"))
    .expect_code(0);
    runs_as_released(&bin.join("ddsky"));
}

#[test]
fn the_sdist_holds_the_crate_and_resolves_from_its_own_lock() {
    let release = release();
    let scratch = scratch_dir("sdist");
    run(Command::new("tar")
        .arg("xzf")
        .arg(&release.sdist)
        .arg("-C")
        .arg(scratch.path()))
    .expect_code(0);
    let root = scratch.path().join(format!("ddsky-{}", cargo_version()));
    for file in [
        "pyproject.toml",
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
        "PKG-INFO",
    ] {
        assert!(root.join(file).is_file(), "the sdist lacks {file}");
    }
    // Offline: every crate it needs is in the lock it carries (maturin drops the workspace's
    // stand-in member; cargo trims its crates from the lock and changes no version).
    let locked = |path: &Path| -> std::collections::BTreeSet<String> {
        let text = std::fs::read_to_string(path).unwrap();
        let mut pairs = std::collections::BTreeSet::new();
        let mut name = "";
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("name = ") {
                name = n;
            } else if let Some(v) = line.strip_prefix("version = ") {
                pairs.insert(format!("{name} {v}"));
            }
        }
        pairs
    };
    let before = locked(&repo().join("Cargo.lock"));
    let meta = run(Command::new("cargo")
        .args(["metadata", "--offline", "--format-version", "1"])
        .current_dir(&root)
        .env_remove("CARGO_TARGET_DIR"));
    meta.expect_code(0);
    let after = locked(&root.join("Cargo.lock"));
    let changed: Vec<&String> = after.difference(&before).collect();
    assert!(
        changed.is_empty(),
        "the sdist resolves crates the repository's lock does not pin: {changed:?}"
    );
}

/// The `ddsky_pin=` of a text holding the setup snippet.
fn snippet_pin(text: &str) -> Option<&str> {
    snippet_value(text, "ddsky_pin=")
}

/// The `ddsky_sha256=` of a text holding the setup snippet: `Some("")` when it is empty.
fn snippet_sha256(text: &str) -> Option<&str> {
    snippet_value(text, "ddsky_sha256=")
}

fn snippet_value<'a>(text: &'a str, assignment: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(assignment))
        .map(|rest| match rest.split_whitespace().next() {
            Some(word) if !word.starts_with('#') => word,
            _ => "",
        })
}

/// The last release made before scripts/release.sh stamped the wheel's hash: its snippet carries
/// none (docs/install.md, "A release"). Every later release must.
const LAST_UNSTAMPED_RELEASE: &str = "0.1.0";

/// The `Wheel sha256: `...`` line scripts/stamp-release.sh writes under a CHANGELOG.md entry.
fn recorded_wheel_sha256<'a>(changelog: &'a str, version: &str) -> Option<&'a str> {
    let heading = format!("## [{version}] - ");
    let entry = &changelog[changelog.find(&heading)? + heading.len()..];
    let entry = &entry[..entry.find("\n## [").unwrap_or(entry.len())];
    entry
        .lines()
        .find_map(|l| l.strip_prefix("Wheel sha256: `"))
        .and_then(|rest| rest.split('`').next())
}

/// Every file under docker/ and docs/ that holds the setup snippet, found by its marker.
fn files_with_the_snippet() -> Vec<PathBuf> {
    let mut found = vec![];
    for dir in ["docker", "docs"] {
        for file in files_under(&repo().join(dir)) {
            let path = repo().join(dir).join(file);
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains("# >>> ddsky setup snippet") {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn the_version_the_wheel_the_snippets_pin_and_the_changelog_agree() {
    let version = cargo_version();
    let printed = run(ddsky_without_docker().arg("--version"));
    assert_eq!(printed.stdout.trim(), format!("ddsky {version}"));
    let wheel = file_name(&release().wheel);
    assert!(wheel.starts_with(&format!("ddsky-{version}-")), "{wheel}");
    let snippet = std::fs::read_to_string(repo().join("docker/skypilot/setup-snippet.sh")).unwrap();
    assert_eq!(
        snippet_pin(&snippet),
        Some(version.as_str()),
        "setup-snippet.sh"
    );
    // The released wheel's hash beside the pin, in the snippet and in every file that embeds it.
    let sha256 = snippet_sha256(&snippet).expect("setup-snippet.sh has a ddsky_sha256= line");
    assert!(
        sha256.is_empty()
            || (sha256.len() == 64
                && sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())),
        "setup-snippet.sh: ddsky_sha256={sha256} is not a sha256"
    );
    let embedding = files_with_the_snippet();
    assert!(
        embedding.len() >= 3,
        "the snippet and the examples: {embedding:?}"
    );
    for path in &embedding {
        let text = std::fs::read_to_string(path).unwrap();
        let name = path.strip_prefix(repo()).unwrap().display();
        assert_eq!(snippet_pin(&text), Some(version.as_str()), "{name}");
        assert_eq!(snippet_sha256(&text), Some(sha256), "{name}: ddsky_sha256");
    }
    // Keep a Changelog: the first `## [x.y.z] - date` after `## [Unreleased]` is the latest release.
    let changelog = std::fs::read_to_string(repo().join("CHANGELOG.md")).unwrap();
    let latest = changelog
        .lines()
        .filter_map(|l| l.strip_prefix("## ["))
        .find(|l| !l.starts_with("Unreleased"))
        .expect("CHANGELOG.md has a released entry");
    assert!(
        latest.starts_with(&format!("{version}] - ")),
        "CHANGELOG.md's latest entry is [{latest}, not {version}"
    );
    // scripts/release.sh stamps the hash into the snippet and records it under the entry together:
    // a release whose snippet was not stamped (or stamped by hand with another file's hash) differs.
    let recorded = recorded_wheel_sha256(&changelog, &version);
    assert_eq!(
        recorded.unwrap_or(""),
        sha256,
        "CHANGELOG.md's [{version}] records the wheel sha256 {recorded:?}; the snippet stamps \"{sha256}\": \
         release with scripts/release.sh, which writes both"
    );
    if version != LAST_UNSTAMPED_RELEASE {
        assert!(
            !sha256.is_empty(),
            "release {version} has no wheel hash stamped: release with scripts/release.sh"
        );
    }
}

/// scripts/stamp-release.sh over a copy of the files a release stamps: the hash lands next to the
/// pin in every file that embeds the snippet (found, not listed), nothing else of them changes,
/// the examples still embed the snippet verbatim, and CHANGELOG.md records it once.
#[test]
fn the_release_stamp_writes_the_wheels_hash_next_to_every_pin() {
    let root = scratch_dir("stamp");
    let examples = root.path().join("docker/skypilot");
    std::fs::create_dir_all(&examples).unwrap();
    for file in files_under(&repo().join("docker/skypilot")) {
        std::fs::copy(
            repo().join("docker/skypilot").join(&file),
            examples.join(&file),
        )
        .unwrap();
    }
    std::fs::copy(
        repo().join("CHANGELOG.md"),
        root.path().join("CHANGELOG.md"),
    )
    .unwrap();
    // Any file named as a wheel of this version will do: the stamp is its sha256.
    let wheel = root
        .path()
        .join(format!("ddsky-{}-py3-none-any.whl", cargo_version()));
    std::fs::write(&wheel, b"not the released wheel, but a file with a sha256").unwrap();
    let want = sha256_hex(&wheel);
    for _ in 0..2 {
        let out = run(Command::new("bash")
            .arg(repo().join("scripts/stamp-release.sh"))
            .arg(&wheel)
            .env("DDSKY_STAMP_ROOT", root.path()));
        out.expect_code(0);
    }
    let original =
        std::fs::read_to_string(repo().join("docker/skypilot/setup-snippet.sh")).unwrap();
    let stamped = std::fs::read_to_string(examples.join("setup-snippet.sh")).unwrap();
    assert_eq!(snippet_sha256(&stamped), Some(want.as_str()));
    let unstamp = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| match l.find("ddsky_sha256=") {
                Some(at) => format!("{}{}", &l[..at], l[at..].replacen(&want, "", 1)),
                None => l.to_owned(),
            })
            .collect()
    };
    assert_eq!(
        unstamp(&stamped),
        unstamp(&original),
        "only the hash changed"
    );
    let block = &stamped[stamped.find("# >>> ddsky setup snippet").unwrap()..];
    let block = &block[..block.find("# <<< ddsky setup snippet").unwrap()];
    for file in files_under(&examples) {
        let text = std::fs::read_to_string(examples.join(&file)).unwrap();
        if !text.contains("# >>> ddsky setup snippet") {
            continue;
        }
        assert_eq!(snippet_sha256(&text), Some(want.as_str()), "{file}");
        // Verbatim still: each embedded line is the snippet's, indented.
        let embedded: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.contains("# >>> ddsky setup snippet"))
            .take(block.lines().count())
            .map(str::trim)
            .collect();
        let lines: Vec<&str> = block.lines().map(str::trim).collect();
        assert_eq!(embedded, lines, "{file}");
    }
    let changelog = std::fs::read_to_string(root.path().join("CHANGELOG.md")).unwrap();
    assert_eq!(
        recorded_wheel_sha256(&changelog, &cargo_version()),
        Some(want.as_str())
    );
    assert_eq!(
        changelog.matches("Wheel sha256: ").count(),
        1,
        "stamped twice, recorded once"
    );
    // A wheel of another version is refused: the pin says which release the snippet fetches.
    let other = root.path().join("ddsky-99.0.0-py3-none-any.whl");
    std::fs::write(&other, b"x").unwrap();
    let refused = run(Command::new("bash")
        .arg(repo().join("scripts/stamp-release.sh"))
        .arg(&other)
        .env("DDSKY_STAMP_ROOT", root.path()));
    assert_ne!(refused.code, 0, "{refused}");
    assert!(
        refused.stderr.contains("not the wheel's 99.0.0"),
        "{refused}"
    );
}

/// Python's http.server on a free loopback port over a directory laid out as a PEP 503 simple
/// index (`simple/ddsky/<wheel>`; its directory listings are the index pages), stopped on drop.
struct Index {
    server: Child,
    port: u16,
    _root: tempfile::TempDir,
}

impl Index {
    fn serving(wheel: &Path) -> Self {
        Index::serving_all(&[wheel])
    }

    /// An index holding every one of `wheels` (the first one's binary is served bare too).
    fn serving_all(wheels: &[&Path]) -> Self {
        let wheel = wheels[0];
        let root = scratch_dir("index");
        let project = root.path().join("simple/ddsky");
        std::fs::create_dir_all(&project).unwrap();
        for w in wheels {
            std::fs::copy(w, project.join(w.file_name().unwrap())).unwrap();
        }
        // The bare binary beside it, for DDSKY_URL=https?://.../ddsky.
        binary_in_wheel(wheel, &root.path().join("ddsky"));
        let port = free_port();
        let server = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server starts");
        let ready = eventually(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(ready, "the index did not listen on {port}");
        Index {
            server,
            port,
            _root: root,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/simple/", self.port)
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// The setup snippet run as a setup block runs it (`set -euo pipefail`, the snippet, then the job's
/// next line), with a fresh HOME (`home`), nothing from the developer's shell, and the settings
/// that point `up` at this scope's stand-in and job.
fn setup_block(s: &Scope, home: &Path, job: &str, env: &[(&str, &str)]) -> Run {
    let snippet = repo().join("docker/skypilot/setup-snippet.sh");
    setup_block_of(&snippet, s, home, job, env)
}

/// [`setup_block`] with another copy of the snippet (a stamped one).
fn setup_block_of(snippet: &Path, s: &Scope, home: &Path, job: &str, env: &[(&str, &str)]) -> Run {
    let agent_env = s.agent_env_twin();
    // bash by its path: one case runs with a PATH that has no bash on it.
    let bash = run(Command::new("bash").args(["-c", "command -v bash"]));
    let mut cmd = Command::new(bash.stdout.trim());
    cmd.args([
        "-c",
        "set -euo pipefail; . \"$1\"; echo 'the job goes on'",
        "setup",
    ])
    .arg(snippet)
    .env_clear()
    .env("PATH", std::env::var("PATH").unwrap_or_default())
    .env("HOME", home)
    .env("DD_API_KEY", KEY)
    .env("DDSKY_NAME", &s.agent)
    .env("DDSKY_IMAGE", agent_image())
    .env("DDSKY_APM_PORT", s.apm_port.to_string())
    .env("DDSKY_DOGSTATSD_PORT", s.dogstatsd_port.to_string())
    .env("DDSKY_AGENT_ENV", agent_env)
    .env("DDSKY_AGENT_TIMEOUT", AGENT_TIMEOUT)
    .env("DDSKY_RUN_DIR", s.run_dir.path())
    .env("DDSKY_EXPECT", job)
    .env("DDSKY_SECRET_TIMEOUT", "2s")
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    .env("AWS_ACCESS_KEY_ID", "testing")
    .env("AWS_SECRET_ACCESS_KEY", "testing")
    .env("AWS_REGION", "us-east-1")
    .current_dir(home);
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        cmd.env("DOCKER_HOST", host);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    out.assert_no_secret(&[KEY]);
    out
}

fn warning_lines(out: &Run) -> Vec<&str> {
    out.stderr
        .lines()
        .filter(|l| l.contains("WARNING"))
        .collect()
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    found.sort();
    found
}

/// What pip itself leaves in HOME on any run: its HTTP cache, and rustup's settings where a rustup
/// proxy is on PATH (pip runs `rustc --version` for its user agent).
fn pip_side_effect(file: &str) -> bool {
    file.starts_with(".cache/pip/") || file == ".rustup/settings.toml"
}

#[test]
fn the_setup_snippet_fetches_the_pinned_wheel_from_the_index_once_and_starts_the_agent() {
    let release = release();
    let index = Index::serving(&release.wheel);
    let s = Scope::new("snippet-index");
    let job = s.name("job");
    s.run_job("job");
    let home = scratch_dir("node-home");
    // The index comes from the node's pip.conf, which pip reads itself; the hash is the wheel's.
    let pip_conf = home.path().join(".config/pip/pip.conf");
    std::fs::create_dir_all(pip_conf.parent().unwrap()).unwrap();
    std::fs::write(
        &pip_conf,
        format!("[global]\nindex-url = {}\n", index.url()),
    )
    .unwrap();
    let wheel_sha = sha256_hex(&release.wheel);
    let first = setup_block(&s, home.path(), &job, &[("DDSKY_SHA256", &wheel_sha)]);
    first.expect_code(0);
    assert!(warning_lines(&first).is_empty(), "{first}");
    assert!(first.stdout.contains("the job goes on"), "{first}");
    assert!(
        first
            .stderr
            .contains(&format!("fetching ddsky=={}", cargo_version())),
        "{first}"
    );
    let placed = home.path().join(".ddsky/ddsky");
    let from_wheel = scratch_dir("from-wheel");
    binary_in_wheel(&release.wheel, &from_wheel.path().join("ddsky"));
    assert_eq!(
        std::fs::read(&placed).unwrap(),
        std::fs::read(from_wheel.path().join("ddsky")).unwrap(),
        "~/.ddsky/ddsky is the wheel's binary"
    );
    let agent = inspect(&s.agent).expect("the snippet's `up` created the agent");
    assert_eq!(agent["State"]["Running"], true, "{first}");
    // Nothing was installed into a Python environment: the fresh HOME holds the binary, pip's
    // config and pip's download cache, the job log directory `up` makes on a host (its
    // `--job-log-dir` default, ~/.ddsky/job-logs), and pip knows no ddsky.
    let unexpected: Vec<String> = files_under(home.path())
        .into_iter()
        .filter(|f| {
            f != ".ddsky/ddsky"
                && f != ".config/pip/pip.conf"
                && !f.starts_with(".ddsky/job-logs/")
                && !pip_side_effect(f)
        })
        .collect();
    assert!(unexpected.is_empty(), "left in HOME: {unexpected:?}");
    let show = run(Command::new("python3")
        .args(["-m", "pip", "show", "ddsky"])
        .env("HOME", home.path()));
    assert_ne!(show.code, 0, "ddsky was installed into python3: {show}");

    // DDSKY_URL instead of the index, its binary pinned by DDSKY_SHA256 (the agent is already up).
    let url_home = scratch_dir("node-home-url");
    let binary_url = format!("http://127.0.0.1:{}/ddsky", index.port);
    let binary_sha = sha256_hex(&from_wheel.path().join("ddsky"));
    let by_url = setup_block(
        &s,
        url_home.path(),
        &job,
        &[
            ("DDSKY_URL", &binary_url),
            ("DDSKY_SHA256", &binary_sha),
            ("PIP_CONFIG_FILE", "/dev/null"),
        ],
    );
    by_url.expect_code(0);
    assert!(warning_lines(&by_url).is_empty(), "{by_url}");
    assert!(url_home.path().join(".ddsky/ddsky").is_file(), "{by_url}");

    // A second setup (another launch on the same node) reuses the binary: the index is gone.
    drop(index);
    let second = setup_block(&s, home.path(), &job, &[]);
    second.expect_code(0);
    assert!(warning_lines(&second).is_empty(), "{second}");
    assert!(!second.stderr.contains("fetching"), "{second}");
}

#[test]
fn a_wrong_sha256_no_index_or_no_python_warns_once_leaves_nothing_and_the_job_goes_on() {
    let release = release();
    let index = Index::serving(&release.wheel);
    let s = Scope::new("snippet-fails");
    let job = s.name("job");
    let no_conf = ("PIP_CONFIG_FILE", "/dev/null");
    let wrong = "0".repeat(64);
    let url = index.url();
    let binary_url = format!("http://127.0.0.1:{}/ddsky", index.port);
    let closed = format!("http://127.0.0.1:{}/simple/", free_port());
    // A directory with only the tools the snippet needs, and no Python.
    let bare = scratch_dir("bare-path");
    for tool in ["mkdir", "rm", "chmod", "mv", "timeout"] {
        let found = run(Command::new("bash").args(["-c", &format!("command -v {tool}")]));
        std::os::unix::fs::symlink(found.stdout.trim(), bare.path().join(tool)).unwrap();
    }
    let bare_path = bare.path().to_string_lossy().into_owned();
    // (case, the node's environment, what its one warning line says)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 4] = [
        (
            "wrong hash",
            vec![("PIP_INDEX_URL", &url), ("DDSKY_SHA256", &wrong), no_conf],
            "not DDSKY_SHA256",
        ),
        (
            "wrong hash of DDSKY_URL",
            vec![("DDSKY_URL", &binary_url), ("DDSKY_SHA256", &wrong)],
            "not DDSKY_SHA256",
        ),
        (
            "unreachable index",
            vec![("PIP_INDEX_URL", &closed), no_conf],
            "the package index did not answer",
        ),
        (
            "no python",
            vec![("PATH", &bare_path)],
            "no Python with pip",
        ),
    ];
    for (case, env, why) in cases {
        let home = scratch_dir("node-home");
        let started = Instant::now();
        let out = setup_block(&s, home.path(), &job, &env);
        out.expect_code(0);
        assert!(out.stdout.contains("the job goes on"), "{case}: {out}");
        let lines = warning_lines(&out);
        assert_eq!(lines.len(), 1, "{case}: {out}");
        assert!(
            lines[0].starts_with("ddsky: WARNING: exit 127: no ddsky binary")
                && lines[0].contains(why)
                && lines[0].ends_with("training continues"),
            "{case}: {out}"
        );
        let left: Vec<String> = files_under(home.path())
            .into_iter()
            .filter(|f| !pip_side_effect(f))
            .collect();
        assert!(left.is_empty(), "{case} left {left:?}");
        assert!(inspect(&s.agent).is_none(), "{case}: no agent");
        eprintln!("{case}: setup went on after {:?}", started.elapsed());
        // DDSKY_STRICT=1 fails setup instead, with the same line.
        let mut strict_env = env.clone();
        strict_env.push(("DDSKY_STRICT", "1"));
        let strict = setup_block(&s, home.path(), &job, &strict_env);
        strict.expect_code(127);
        assert!(
            !strict.stdout.contains("the job goes on"),
            "{case}: {strict}"
        );
    }
    drop(index);
}

/// A wheel of the same version as `released` that pip prefers on this machine: the same files,
/// tagged manylinux_2_17 (more specific than the released manylinux_2_5 and manylinux1), as
/// anyone with the index account (or a private mirror) could upload after the release. Its
/// `ddsky` is a script that leaves a mark if it is ever run.
fn more_specific_wheel(released: &Path, dir: &Path) -> PathBuf {
    let version = cargo_version();
    let path = dir.join(format!(
        "ddsky-{version}-py3-none-manylinux_2_17_x86_64.whl"
    ));
    let code = "import sys,zipfile; src=zipfile.ZipFile(sys.argv[1]); dst=zipfile.ZipFile(sys.argv[2],'w'); \
        [dst.writestr(i, b'#!/bin/sh\\ntouch \"$HOME/ran-the-other-wheel\"\\nexit 1\\n' if i.filename.endswith('.data/scripts/ddsky') \
        else src.read(i).replace(b'Tag: py3-none-manylinux_2_5_x86_64', b'Tag: py3-none-manylinux_2_17_x86_64')) \
        for i in src.infolist()]; dst.close()";
    run(Command::new("python3")
        .args(["-c", code])
        .arg(released)
        .arg(&path))
    .expect_code(0);
    path
}

#[test]
fn the_released_snippet_takes_the_released_wheel_and_refuses_another_of_the_same_version() {
    let release = release();
    let dir = scratch_dir("stamped");
    // The snippet as a release ships it: stamped with the released wheel's sha256 by the release's
    // own stamping step.
    let snippet = dir.path().join("setup-snippet.sh");
    std::fs::copy(repo().join("docker/skypilot/setup-snippet.sh"), &snippet).unwrap();
    run(Command::new("bash")
        .arg(repo().join("scripts/stamp-release.sh"))
        .arg(&release.wheel)
        .arg(&snippet))
    .expect_code(0);
    let released_sha = sha256_hex(&release.wheel);
    let stamped = std::fs::read_to_string(&snippet).unwrap();
    assert_eq!(snippet_sha256(&stamped), Some(released_sha.as_str()));
    let other = more_specific_wheel(&release.wheel, dir.path());
    let other_sha = sha256_hex(&other);
    let s = Scope::new("snippet-pinned");
    let job = s.name("job");
    s.run_job("job");

    // Both wheels in the index: pip picks the more specific one, the snippet refuses it.
    let both = Index::serving_all(&[&release.wheel, &other]);
    let home = scratch_dir("node-home");
    let index_env = [
        ("PIP_INDEX_URL", both.url()),
        ("PIP_CONFIG_FILE", "/dev/null".into()),
    ];
    let index_env: Vec<(&str, &str)> = index_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = setup_block_of(&snippet, &s, home.path(), &job, &index_env);
    refused.expect_code(0);
    assert!(refused.stdout.contains("the job goes on"), "{refused}");
    let lines = warning_lines(&refused);
    assert_eq!(lines.len(), 1, "{refused}");
    assert!(
        lines[0].starts_with("ddsky: WARNING: exit 127: no ddsky binary")
            && lines[0].contains(&format!(
                "sha256 of {} is {other_sha}, not the released wheel's {released_sha}",
                file_name(&other)
            ))
            && lines[0].ends_with("training continues"),
        "{refused}"
    );
    let left: Vec<String> = files_under(home.path())
        .into_iter()
        .filter(|f| !pip_side_effect(f))
        .collect();
    assert!(left.is_empty(), "the refused wheel left {left:?}");
    assert!(inspect(&s.agent).is_none(), "no agent from a refused wheel");
    drop(both);

    // The released wheel alone: taken, and `up` starts the agent.
    let released = Index::serving(&release.wheel);
    let home = scratch_dir("node-home");
    let index_env = [
        ("PIP_INDEX_URL", released.url()),
        ("PIP_CONFIG_FILE", "/dev/null".into()),
    ];
    let index_env: Vec<(&str, &str)> = index_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let taken = setup_block_of(&snippet, &s, home.path(), &job, &index_env);
    taken.expect_code(0);
    assert!(warning_lines(&taken).is_empty(), "{taken}");
    assert!(!taken.stderr.contains("unverified"), "{taken}");
    let from_wheel = scratch_dir("from-wheel");
    binary_in_wheel(&release.wheel, &from_wheel.path().join("ddsky"));
    assert_eq!(
        std::fs::read(home.path().join(".ddsky/ddsky")).unwrap(),
        std::fs::read(from_wheel.path().join("ddsky")).unwrap(),
        "~/.ddsky/ddsky is the released wheel's binary"
    );
    let agent = inspect(&s.agent).expect("the snippet's `up` created the agent");
    assert_eq!(agent["State"]["Running"], true, "{taken}");

    // DDSKY_URL without DDSKY_SHA256: downloaded, and its line says once that nothing checked it.
    let url_home = scratch_dir("node-home-url");
    let binary_url = format!("http://127.0.0.1:{}/ddsky", released.port);
    let unchecked = setup_block_of(
        &snippet,
        &s,
        url_home.path(),
        &job,
        &[("DDSKY_URL", &binary_url), ("PIP_CONFIG_FILE", "/dev/null")],
    );
    unchecked.expect_code(0);
    assert!(warning_lines(&unchecked).is_empty(), "{unchecked}");
    let said: Vec<&str> = unchecked
        .stderr
        .lines()
        .filter(|l| l.contains("unverified"))
        .collect();
    assert_eq!(said.len(), 1, "{unchecked}");
    assert!(
        said[0].starts_with(&format!("ddsky: downloading {binary_url}"))
            && said[0].ends_with("(unverified: no DDSKY_SHA256)"),
        "{unchecked}"
    );
    drop(released);

    // DDSKY_SHA256 overrides the stamp (a private build): the other wheel is then the one wanted.
    let both = Index::serving_all(&[&release.wheel, &other]);
    let home = scratch_dir("node-home");
    let override_env = [
        ("PIP_INDEX_URL", both.url()),
        ("PIP_CONFIG_FILE", "/dev/null".into()),
        ("DDSKY_SHA256", other_sha.clone()),
    ];
    let override_env: Vec<(&str, &str)> =
        override_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let overridden = setup_block_of(&snippet, &s, home.path(), &job, &override_env);
    overridden.expect_code(0);
    // Its `ddsky` is the marking script: it was taken and run (and is no ddsky: exit 126).
    assert!(home.path().join(".ddsky/ddsky").is_file(), "{overridden}");
    assert!(
        home.path().join("ran-the-other-wheel").is_file(),
        "{overridden}"
    );
    let lines = warning_lines(&overridden);
    assert_eq!(lines.len(), 1, "{overridden}");
    assert!(
        lines[0].starts_with("ddsky: WARNING: exit 126"),
        "{overridden}"
    );
}

/// The ELF section `name` of the executable at `path`, if it has one.
fn elf_section(path: &Path, name: &str) -> Option<Vec<u8>> {
    let elf = std::fs::read(path).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "{} is not ELF", path.display());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let names = u64_at(header(shstrndx) + 24);
    (0..shnum).find_map(|i| {
        let h = header(i);
        let at = names + u32_at(h);
        let end = at + elf[at..].iter().position(|&b| b == 0)?;
        (&elf[at..end] == name.as_bytes()).then(|| {
            let (offset, size) = (u64_at(h + 24), u64_at(h + 32));
            elf[offset..offset + size].to_vec()
        })
    })
}

/// `cargo auditable`'s record in the released binary: the crates that are in it, with their
/// versions, for scanners (cargo audit bin, Trivy, Grype, Syft) to read.
#[test]
fn the_released_binary_carries_its_dependency_list() {
    let release = release();
    let dir = scratch_dir("audit");
    let binary = dir.path().join("ddsky");
    binary_in_wheel(&release.wheel, &binary);
    let section = elf_section(&binary, ".dep-v0").expect(
        "the binary in the wheel has no .dep-v0 section: was it built with cargo auditable?",
    );
    let mut json = String::new();
    std::io::Read::read_to_string(&mut flate2::read::ZlibDecoder::new(&section[..]), &mut json)
        .expect(".dep-v0 is zlib-compressed JSON");
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    let packages = list["packages"].as_array().expect("a packages list");
    let version_of = |name: &str| {
        packages
            .iter()
            .find(|p| p["name"] == name && p["kind"] != "build")
            .map(|p| p["version"].as_str().unwrap_or_default().to_owned())
    };
    let root = packages
        .iter()
        .find(|p| p["root"] == true)
        .expect("a root package");
    assert_eq!(root["name"], "ddsky");
    assert_eq!(root["version"], cargo_version());
    // The crates the lock file resolves, as built (the TLS stack, Docker's client, the runtime).
    let lock = std::fs::read_to_string(repo().join("Cargo.lock")).unwrap();
    for name in [
        "bollard",
        "tokio",
        "rustls",
        "ring",
        "hyper",
        "aws-sdk-secretsmanager",
    ] {
        let listed = version_of(name).unwrap_or_else(|| panic!("{name} is not in .dep-v0"));
        let entry = format!("[[package]]\nname = \"{name}\"\nversion = \"{listed}\"\n");
        assert!(
            lock.contains(&entry),
            "{name} {listed} in .dep-v0 is not Cargo.lock's"
        );
    }
    // Only what is in the binary: no test-only crate.
    for dev_only in ["proptest", "tempfile", "serde_yaml_ng"] {
        assert!(
            version_of(dev_only).is_none(),
            "{dev_only} listed in the binary"
        );
    }
}
