#!/usr/bin/env bash
# `bash scripts/cargo-tool.sh CRATE VERSION` installs a cargo subcommand from crates.io (`cargo
# install --locked`) into ${XDG_CACHE_HOME:-~/.cache}/ddsky/cargo-tools (or DDSKY_CARGO_TOOLS) once
# per machine, again only when the pinned VERSION changes, and prints that folder's bin/ (put it on
# PATH). The versions are pinned where the tools are used: scripts/fuzz.sh (cargo-fuzz),
# scripts/release.sh (cargo-auditable), scripts/deny.sh (cargo-deny).
set -euo pipefail
crate=${1:?usage: bash scripts/cargo-tool.sh CRATE VERSION}
version=${2:?usage: bash scripts/cargo-tool.sh CRATE VERSION}
root=${DDSKY_CARGO_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ddsky/cargo-tools}
say() { echo "scripts/cargo-tool.sh: $*" >&2; }
# cargo-fuzz prints "cargo-fuzz 0.13.2", cargo-deny "cargo-deny 0.20.2", cargo-auditable has no
# --version: cargo's own record of what it installed says it for all.
if ! grep -qF "\"$crate $version " "$root/.crates.toml" 2>/dev/null || [ ! -x "$root/bin/$crate" ]; then
  command -v cargo >/dev/null || { say "no cargo on PATH: install Rust (https://rustup.rs)"; exit 1; }
  say "installing $crate $version from crates.io into $root (once; reused by later runs)"
  # The tool's own lock, and no CARGO_* of an outer cargo (it would change what is built).
  # --debug, without debug info: these tools run for a second or two, and cargo-deny's release
  # profile (fat LTO, one codegen unit) took 155 s of a fresh machine's test run to compile; the
  # debug build takes 46 s and checks the same graph in about a second.
  env -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
    CARGO_PROFILE_DEV_DEBUG=false \
    cargo install --debug --quiet --locked --root "$root" "$crate" --version "=$version" >&2 ||
    { say "could not install $crate $version (cargo install, above)"; exit 1; }
fi
echo "$root/bin"
