#!/usr/bin/env bash
# `bash scripts/deny.sh` checks the dependency graph with cargo-deny (deny.toml): licences against
# the allow-list (README.md, "Licences"), crates from crates.io only, banned crates, duplicate
# versions (warnings). RustSec's advisories are checked too when DDSKY_ADVISORIES=1: that fetches
# the advisory database from GitHub (docs/testing.md); without it the line says they were not
# checked. cargo-deny is installed once per machine (scripts/cargo-tool.sh). Exit 1 on a failure.
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
say() { echo "scripts/deny.sh: $*" >&2; }
tools=$(bash "$repo/scripts/cargo-tool.sh" cargo-deny 0.20.2) || { say "could not install cargo-deny (above)"; exit 1; }
# scripts/test.sh installs it beside the tests, and checks after them.
[ "${1:-}" = --install-only ] && exit 0
checks=(licenses bans sources)
if [ "${DDSKY_ADVISORIES:-0}" = 1 ]; then
  checks+=(advisories)
else
  say "advisories not checked (they need RustSec's database from GitHub: DDSKY_ADVISORIES=1 bash scripts/deny.sh)"
fi
cd "$repo"
# --locked: the graph is Cargo.lock's, as the release builds it.
"$tools/cargo-deny" --manifest-path "$repo/Cargo.toml" check "${checks[@]}" ||
  { say "cargo deny refused the dependency graph (above): fix it or deny.toml, then run again"; exit 1; }
say "cargo deny: ${checks[*]} ok"
