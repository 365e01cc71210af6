#!/usr/bin/env bash
# Builds the test images ddsky-test/agent:7 and ddsky-test/metta:latest from the static binaries
# of the ddsky-standin crate (docker/standin), ddsky-test/ddsky:latest and
# ddsky-test/skypilot-job:latest with a static ddsky inside. Nothing is pulled (FROM scratch). The
# agent image gets Debian's static busybox as its `sh`, as the real image has one;
# ddsky-test/agent-noshell:7 is the same without.
#
# The binaries: DDSKY_TEST_BIN_DIR's `ddsky`, `agent` and `job` when it is set (scripts/test.sh sets
# it to its static debug test build: the images then hold what the tests were built with, and this
# script compiles nothing); else the static release builds, each in a cargo invocation of its own
# in the default target dir (<CARGO_TARGET_DIR or target>/x86_64-unknown-linux-gnu/release):
# ddsky's is then the README's and the wheel's (scripts/release.sh), one compile for both; built
# together, the two would unify their dependencies' features (the stand-in's tokio has more) and
# ddsky's binary would differ from the wheel's build, which would compile everything again.
# Safe to call from inside `cargo test`, from any cwd, and concurrently (flock). DDSKY_TEST_IMAGES renames the `ddsky-test` namespace, so
# two checkouts testing against one daemon keep their own images. Quiet on success; on failure
# prints the build log to stderr, exits 1.
set -euo pipefail

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd -- "$script_dir/.." && pwd)
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
triple=x86_64-unknown-linux-gnu
ns=${DDSKY_TEST_IMAGES:-ddsky-test}
agent_tag=$ns/agent:7
agent_noshell_tag=$ns/agent-noshell:7
metta_tag=$ns/metta:latest
ddsky_tag=$ns/ddsky:latest

# An executable that loads no shared library (ldd lists none: "not a dynamic executable", or
# "statically linked" for a static PIE, which is what Rust's crt-static builds are).
is_static() { [ -x "$1" ] && ! ldd "$1" 2>&1 | grep -q '=>'; }

busybox=/bin/busybox
if ! is_static "$busybox"; then
  echo "build-test-images.sh: needs a static $busybox: apt-get install busybox-static" >&2
  exit 1
fi

mkdir -p "$target_dir/test-images"
exec 9>"$target_dir/test-images.lock"
flock 9

work=$(mktemp -d "$target_dir/test-images/build.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
log="$work/build.log"

run() {
  if ! "$@" >>"$log" 2>&1; then
    cat "$log" >&2
    echo "build-test-images.sh: failed: $*" >&2
    exit 1
  fi
}

# Builds $2 as $1; the image the tag pointed to before is removed when nothing uses it any more.
build_image() {
  local tag=$1 context=$2 previous
  previous=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  run docker build --quiet --tag "$tag" "$context"
  if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
  fi
}

# When run by `cargo test`, the environment carries the outer build's settings and the test
# process's own CARGO_* variables: drop them (they would change the release builds' fingerprints).
# shellcheck source=scripts/outer-cargo-env.sh
. "$repo/scripts/outer-cargo-env.sh"

if [ -n "${DDSKY_TEST_BIN_DIR:-}" ]; then
  bin_dir=$DDSKY_TEST_BIN_DIR
  for bin in ddsky agent job; do
    if ! is_static "$bin_dir/$bin"; then
      echo "build-test-images.sh: DDSKY_TEST_BIN_DIR=$bin_dir has no static $bin: build it as scripts/test.sh does, or unset DDSKY_TEST_BIN_DIR" >&2
      exit 1
    fi
  done
else
  for package in ddsky ddsky-standin; do
    run env RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$target_dir" \
      "${CARGO:-cargo}" build --quiet --release -p "$package" --target "$triple" \
      --manifest-path "$repo/Cargo.toml"
  done
  bin_dir="$target_dir/$triple/release"
fi

# Agent image: rootfs/ is copied as-is to /.
rootfs="$work/agent/rootfs"
mkdir -p "$rootfs/usr/bin" "$rootfs/bin" "$rootfs/opt/datadog-agent/bin/agent" \
  "$rootfs/var/run/standin" "$rootfs/etc/datadog-agent" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp" "$rootfs/var/run/standin"
cp "$bin_dir/agent" "$rootfs/usr/bin/agent"
ln -s /usr/bin/agent "$rootfs/opt/datadog-agent/bin/agent/agent"
ln -s /usr/bin/agent "$rootfs/probe.sh"
cp "$script_dir/agent.Dockerfile" "$work/agent/Dockerfile"
build_image "$agent_noshell_tag" "$work/agent"
# The tools ddsky's one-exec batch uses (see src/batch.rs) and the drain's look at a log's unsent
# tail (tail, head; see src/drain), as the real image's Ubuntu base has them.
cp "$busybox" "$rootfs/bin/busybox"
for tool in sh mktemp cat rm tail head; do ln -s busybox "$rootfs/bin/$tool"; done
build_image "$agent_tag" "$work/agent"

# Job image.
mkdir -p "$work/metta"
cp "$bin_dir/job" "$work/metta/job"
cp "$script_dir/metta.Dockerfile" "$work/metta/Dockerfile"
build_image "$metta_tag" "$work/metta"

# ddsky itself, statically linked, for running it inside a job container.
mkdir -p "$work/ddsky"
cp "$bin_dir/ddsky" "$work/ddsky/ddsky"
cp "$script_dir/ddsky.Dockerfile" "$work/ddsky/Dockerfile"
build_image "$ddsky_tag" "$work/ddsky"

# SkyPilot runtime mode's job container, for the rehearsal test (tests/e2e/rehearsal.rs): a static
# bash as /bin/bash, busybox for the tools the example's setup and run blocks call, and ddsky at
# ~/.ddsky/ddsky, where the setup snippet looks first (file_mounts or an earlier download put it there).
skypilot_job_tag=$ns/skypilot-job:latest
bash_static=/bin/bash-static
if ! is_static "$bash_static"; then
  echo "build-test-images.sh: needs a static $bash_static: apt-get install bash-static" >&2
  exit 1
fi
sky_rootfs="$work/skypilot-job/rootfs"
mkdir -p "$sky_rootfs/bin" "$sky_rootfs/root/.ddsky" "$sky_rootfs/root/sky_workdir" "$sky_rootfs/tmp"
chmod 1777 "$sky_rootfs/tmp"
cp "$bash_static" "$sky_rootfs/bin/bash"
cp "$busybox" "$sky_rootfs/bin/busybox"
for tool in sh mkdir chmod mv rm timeout sleep cat ls seq yes head mkfifo tr kill env; do ln -s busybox "$sky_rootfs/bin/$tool"; done
cp "$bin_dir/ddsky" "$sky_rootfs/root/.ddsky/ddsky"
cp "$script_dir/skypilot/job.Dockerfile" "$work/skypilot-job/Dockerfile"
build_image "$skypilot_job_tag" "$work/skypilot-job"
