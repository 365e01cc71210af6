#!/usr/bin/env bash
# The README's test command: installs what a fresh machine of this project's kind lacks
# (scripts/test-tools.sh says what and where), then runs every test (`cargo test --workspace`, with
# any arguments given passed on). Where it cannot install (not root, no apt-get, no pip) it stops
# before compiling anything, with the one line that fixes it.
#
# Order (docs/testing.md has the figures): the installs, which wait on the network, run beside the
# tests' build, which waits on the CPU; the test images are made from that build's own static
# binaries; the packaging tests' wheel is built on that build's dependencies; a full run ends with
# the dependency check (scripts/deny.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "scripts/test.sh: $*" >&2; }
stop() { say "$*"; exit 1; }

command -v cargo >/dev/null || stop "no cargo on PATH: install Rust (https://rustup.rs), then run again"
triple=$(rustc -vV | sed -n 's/^host: //p')
case "$triple" in
  *-linux-gnu) ;;
  *) stop "the end-to-end tests put static Linux binaries in FROM-scratch images: run them on Linux with glibc (this is $triple)" ;;
esac
# Stops here, before compiling, when something is missing that cannot be installed.
bash scripts/test-tools.sh --check
tools_root=${XDG_CACHE_HOME:-$HOME/.cache}/ddsky
export DDSKY_SKYPILOT_VENVS=${DDSKY_SKYPILOT_VENVS:-$tools_root/skypilot-venvs}
export DDSKY_NEWER_ENGINE=${DDSKY_NEWER_ENGINE:-$tools_root/newer-engine}
export DDSKY_RELEASE_VENV=${DDSKY_RELEASE_VENV:-$tools_root/release-venv}
export DDSKY_OPENAPI_VENV=${DDSKY_OPENAPI_VENV:-$tools_root/openapi-venv}
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"  # moto_server
export PATH

# The tests' build: debug (debug assertions and overflow checks on), statically linked for the host
# triple, so that the test images hold the very `ddsky`, `agent` and `job` the tests were built
# with, and need no compile of their own (docker/build-test-images.sh reads DDSKY_TEST_BIN_DIR).
# With an explicit target, RUSTFLAGS reach the target's code only, not build scripts or proc macros.
export CARGO_BUILD_TARGET="$triple"
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static"
# A build from scratch gains nothing from incremental state (cargo's advice for CI).
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}; fi
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir=$PWD/$target_dir ;; esac
export DDSKY_TEST_BIN_DIR="$target_dir/$triple/debug"

# Background jobs run as process groups of their own (job control, `set -m`), stopped with all
# their children when this script ends early. They stay in this script's session: the kernel's
# autogroups share the CPU between sessions first, so a job in a session of its own (setsid) took
# half the CPU from the build everything waits for, however niced; in one session, `nice` decides.
jobs_to_stop=()
cleanup() { for pid in "${jobs_to_stop[@]}"; do kill -- -"$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
background() { set -m; "$@" & jobs_to_stop+=("$!"); set +m; }

# The installs wait on the network, the build on the CPU: the build goes first where both want it
# (the installs' own compiling, cargo-auditable's and Python's bytecode, fills the build's gaps).
# Beside the build, what the images and the wheel need; the rest beside those, after it.
background nice -n 19 bash scripts/test-tools.sh --part builds
tools=$!
background cargo test --workspace --no-run
build=$!
# Whichever fails first stops the other at once.
pending=("$tools" "$build")
while [ ${#pending[@]} -gt 0 ]; do
  finished=""
  if ! wait -n -p finished "${pending[@]}"; then
    [ "$finished" = "$tools" ] && stop "could not install what the tests need (the line above says why)"
    stop "the tests' build failed (cargo test --workspace --no-run, above)"
  fi
  left=()
  for pid in "${pending[@]}"; do [ "$pid" = "$finished" ] || left+=("$pid"); done
  pending=("${left[@]}")
done

# The daemon is started before the session on this kind of machine; start one where none answers.
if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || stop "the Docker daemon does not answer: start it (systemctl start docker), or add yourself to the docker group"
  say "starting dockerd (log: /tmp/dockerd.log)"
  (dockerd >/tmp/dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || stop "dockerd did not start: see /tmp/dockerd.log"
fi

background nice -n 19 bash scripts/test-tools.sh --part tests
more_tools=$!

bash docker/build-test-images.sh || stop "could not build the test images (above)"

# A full run (no arguments) also checks the dependency graph after the tests (scripts/deny.sh).
full_run=false
[ $# -eq 0 ] && full_run=true

# The packaging tests' wheel (tests/e2e/wheel.rs): scripts/release.sh's recipe on the dev profile
# (`--build-only --dev-profile`), so that it compiles only ddsky itself on the dependencies the
# tests' build compiled. Built after the test images, which take the tests' own ddsky: its maturin
# relinks target/<triple>/debug/ddsky, which the `cargo test` below links back before any test
# runs. For a full run, or a subset with DDSKY_TEST_WHEEL=1; otherwise the packaging tests build
# the release profile's wheel themselves (slower, same checks).
if $full_run || [ "${DDSKY_TEST_WHEEL:-0}" = 1 ]; then
  DDSKY_TEST_WHEEL_DIR="$target_dir/test-dist"
  mkdir -p "$DDSKY_TEST_WHEEL_DIR"
  bash scripts/release.sh --build-only --dev-profile "$DDSKY_TEST_WHEEL_DIR" >"$DDSKY_TEST_WHEEL_DIR/printed.txt" ||
    stop "could not build the packaging tests' wheel (scripts/release.sh, above)"
  export DDSKY_TEST_WHEEL_DIR
fi
# Most end-to-end tests wait on an agent's start-up, not on the CPU: they run side by side, and the
# few that share something of the host take turns (tests/e2e/common.rs, HostResource).
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-6}
wait "$more_tools" || stop "could not install what the tests need (the line above says why)"
# cargo-deny, where it is missing (once per machine), is installed beside the tests, niced: they
# leave about a quarter of the CPU idle (agents starting up).
if $full_run; then
  background nice -n 19 bash scripts/deny.sh --install-only
  deny_install=$!
fi
cargo test --workspace "$@"
if $full_run; then
  wait "$deny_install" || true  # deny.sh says what failed, installing again
  bash scripts/deny.sh
fi
