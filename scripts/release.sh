#!/usr/bin/env bash
# One release: `bash scripts/release.sh [--build-only] [OUT_DIR]` (default target/dist):
#   1. checks the dependency graph with cargo deny (scripts/deny.sh, deny.toml: licences, sources,
#      bans; RustSec's advisories with DDSKY_ADVISORIES=1) and refuses to go on when it fails;
#   2. builds the wheel into OUT_DIR, its binary with `cargo auditable` (the dependency list is in
#      the binary's .dep-v0 section, which cargo audit, Trivy, Grype and Syft read);
#   3. stamps the wheel's sha256 next to the setup snippet's pin, in the snippet and in every example
#      that embeds it, and under CHANGELOG.md's entry for the version (scripts/stamp-release.sh):
#      the released snippet then refuses any other file;
#   4. builds the sdist (which carries the stamped snippet), checks both with `twine check --strict`
#      (the metadata PyPI will show), and prints each file's sha256.
# Commit what step 3 changed with the release, and upload exactly the files in OUT_DIR (`uv publish`
# or `twine upload OUT_DIR/*`): the one step it leaves to you. `--build-only` (the packaging tests)
# skips 1 and 3: it builds, it releases nothing and changes no file of the repository.
# `--build-only --dev-profile` (what scripts/test.sh builds for the packaging tests) packs the binary
# of cargo's dev profile, stripped as the release profile strips it, instead of the release
# profile's: the same recipe (maturin, cargo auditable, static, the tags, the sdist, twine), built
# on the dependencies the tests' own build already compiled (~50 CPU-seconds instead of ~200).
# A release is never built that way.
#
# The wheel carries the static release build, the same one the README builds:
# `RUSTFLAGS="-C target-feature=+crt-static" cargo auditable build
# --release --target <host triple>` in the default target dir (or CARGO_TARGET_DIR). maturin runs
# that same cargo build (its `cargo` is a wrapper that puts `auditable` in front of build and rustc;
# same target dir, triple, profile and RUSTFLAGS), so on a warm target it compiles nothing and only
# packs. (A plain `cargo build` of ddsky differs in its rustc wrapper: cargo rebuilds the ddsky
# crate itself, not its dependencies, when switching between the two.)
#
# On Linux the wheel is tagged manylinux1 + manylinux_2_5 (what maturin finds for a binary that needs
# no glibc symbol: pip on any glibc Linux takes it) and musllinux_1_1 (so that pip on Alpine and other
# musl Linux takes it too: the binary loads no libc at run time). See docs/install.md.
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
release=true
profile=(--release)
if [ "${1:-}" = --build-only ]; then
  release=false
  shift
  if [ "${1:-}" = --dev-profile ]; then
    profile=(--profile dev)
    # Only the final link changes: no dependency is rebuilt for it.
    export CARGO_PROFILE_DEV_STRIP=true
    shift
  fi
fi
case "${1:-}" in
  -*) echo "scripts/release.sh: unknown option $1; usage: bash scripts/release.sh [--build-only [--dev-profile]] [OUT_DIR]" >&2
    exit 2 ;;
esac
out=${1:-$repo/target/dist}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac  # relative to where it is run from
cd "$repo"
say() { echo "scripts/release.sh: $*" >&2; }
stop() { say "$*"; exit 1; }

command -v cargo >/dev/null || stop "no cargo on PATH: install Rust (https://rustup.rs), then run again"
if $release; then
  bash scripts/deny.sh || stop "not released: cargo deny refused the dependency graph (above)"
fi
venv=$(bash scripts/release-venv.sh)
auditable=$(bash scripts/cargo-tool.sh cargo-auditable 0.7.7) || stop "could not install cargo-auditable (above)"

host=$(rustc -vV | sed -n 's/^host: //p')
musl_tag=""
case "$host" in
  *-linux-gnu)
    # No shared library at all: the binary runs on any Linux of its architecture, glibc or musl.
    export RUSTFLAGS="-C target-feature=+crt-static"
    musl_tag="musllinux_1_1_${host%%-*}"
    ;;
  *-apple-darwin) unset RUSTFLAGS ;;  # libSystem is always dynamic on macOS
  *) stop "no release recipe for $host (Linux glibc hosts and macOS only)" ;;
esac

# When run by `cargo test`, the environment carries the outer build's settings and the test
# process's own CARGO_* variables: drop them (they would change this build's fingerprints).
# shellcheck source=scripts/outer-cargo-env.sh
. "$repo/scripts/outer-cargo-env.sh"

mkdir -p "$out"
rm -f "$out"/ddsky-*.whl "$out"/ddsky-*.tar.gz
log=$(mktemp)
wrapper=$(mktemp -d)
trap 'rm -rf -- "$log" "$wrapper"' EXIT
# maturin's cargo: `cargo auditable` for the builds (it runs the real cargo, $CARGO, with itself as
# the rustc wrapper of ddsky's crate), the real cargo for the rest (metadata).
real_cargo=$(command -v cargo)
cat >"$wrapper/cargo" <<WRAPPER
#!/bin/sh
case "\$1" in
  build | rustc) CARGO='$real_cargo' exec '$auditable/cargo-auditable' auditable "\$@" ;;
  *) exec '$real_cargo' "\$@" ;;
esac
WRAPPER
chmod +x "$wrapper/cargo"
# Quiet on success; a failing step's output is shown.
quiet() { "$@" >"$log" 2>&1 || { cat "$log" >&2; return 1; }; }
quiet env PATH="$wrapper:$PATH" CARGO="$wrapper/cargo" "$venv/bin/maturin" build "${profile[@]}" --target "$host" --out "$out" ||
  stop "maturin could not build the wheel (its output is above)"
if [ -n "$musl_tag" ]; then
  # maturin refuses a musllinux tag for a -gnu target; PyPA's `wheel tags` adds it (and rewrites
  # the WHEEL file and RECORD to match).
  "$venv/bin/python" -m wheel tags --remove --platform-tag "+$musl_tag" "$out"/ddsky-*.whl >/dev/null ||
    stop "could not add the $musl_tag tag to the wheel"
fi
if $release; then
  bash scripts/stamp-release.sh "$out"/ddsky-*.whl || stop "not released: could not stamp the wheel's sha256 (above)"
fi
quiet "$venv/bin/maturin" sdist --out "$out" ||
  stop "maturin could not build the sdist (its output is above)"

files=("$out"/ddsky-*.whl "$out"/ddsky-*.tar.gz)
quiet "$venv/bin/twine" check --strict "${files[@]}" || stop "twine check refused the artifacts (see above)"
sha256sum "${files[@]}"
