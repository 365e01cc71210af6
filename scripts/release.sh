#!/usr/bin/env bash
# One release: `bash scripts/release.sh [OUT_DIR]` (default target/dist) builds the wheel and the
# sdist into OUT_DIR, checks both with `twine check --strict` (the metadata PyPI will show), and
# prints each file's sha256 (what a node's DDSKY_SHA256 pins). Uploading (`uv publish` or
# `twine upload OUT_DIR/*`) is the one step it leaves to you.
#
# The wheel carries the static release build, the same one the README builds (and scripts/test.sh
# starts in the background): `RUSTFLAGS="-C target-feature=+crt-static" cargo build --release
# --target <host triple>` in the default target dir (or CARGO_TARGET_DIR). maturin runs that same
# cargo build (same target dir, triple, profile and RUSTFLAGS), so on a warm target it compiles
# nothing and only packs.
#
# On Linux the wheel is tagged manylinux1 + manylinux_2_5 (what maturin finds for a binary that needs
# no glibc symbol: pip on any glibc Linux takes it) and musllinux_1_1 (so that pip on Alpine and other
# musl Linux takes it too: the binary loads no libc at run time). See docs/install.md.
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$repo/target/dist}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac  # relative to where it is run from
cd "$repo"
say() { echo "scripts/release.sh: $*" >&2; }
stop() { say "$*"; exit 1; }

command -v cargo >/dev/null || stop "no cargo on PATH: install Rust (https://rustup.rs), then run again"
venv=$(bash scripts/release-venv.sh)

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
trap 'rm -f -- "$log"' EXIT
# Quiet on success; a failing step's output is shown.
quiet() { "$@" >"$log" 2>&1 || { cat "$log" >&2; return 1; }; }
quiet "$venv/bin/maturin" build --release --target "$host" --out "$out" ||
  stop "maturin could not build the wheel (its output is above)"
if [ -n "$musl_tag" ]; then
  # maturin refuses a musllinux tag for a -gnu target; PyPA's `wheel tags` adds it (and rewrites
  # the WHEEL file and RECORD to match).
  "$venv/bin/python" -m wheel tags --remove --platform-tag "+$musl_tag" "$out"/ddsky-*.whl >/dev/null ||
    stop "could not add the $musl_tag tag to the wheel"
fi
quiet "$venv/bin/maturin" sdist --out "$out" ||
  stop "maturin could not build the sdist (its output is above)"

files=("$out"/ddsky-*.whl "$out"/ddsky-*.tar.gz)
quiet "$venv/bin/twine" check --strict "${files[@]}" || stop "twine check refused the artifacts (see above)"
sha256sum "${files[@]}"
