#!/usr/bin/env bash
# Fuzzes every parser of outside input: `bash scripts/fuzz.sh [SECONDS] [TARGET...]` runs each
# target of fuzz/ (all when none is named) for SECONDS (default 60), one after the other, with
# cargo-fuzz and libFuzzer on a nightly toolchain, and prints one line per target: the time, the
# executions and whether it crashed. Not part of the test command (docs/reliability.md, "Fuzzing").
#
# Installs what it lacks: a nightly toolchain (rustup), cargo-fuzz (crates.io, by
# scripts/cargo-tool.sh into ${XDG_CACHE_HOME:-~/.cache}/ddsky/cargo-tools, once per machine). Each target starts from its corpus (fuzz/corpus/<target>, kept between runs, not in
# git) plus its seeds: the unit tests' fixtures (tests/fixtures) and fuzz/seeds/<target>.
# A crash leaves its input in fuzz/artifacts/<target>/; `cargo +nightly fuzz run <target> <file>`
# (in fuzz/) replays it. Every crash becomes a unit test with that input, then a fix.
#
# No sanitizer (`-s none`): ddsky's parsers are safe Rust, so what a fuzzer finds is a panic, an
# overflow (debug assertions are on, `-a`) or a broken invariant the targets assert; address
# sanitizer would halve the executions and find nothing more in code without `unsafe`.
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
say() { echo "scripts/fuzz.sh: $*" >&2; }
stop() { say "$*"; exit 1; }

seconds=${1:-60}
shift || true
case "$seconds" in '' | *[!0-9]*) stop "SECONDS must be a whole number (got $seconds): bash scripts/fuzz.sh 300" ;; esac

command -v rustup >/dev/null || stop "no rustup on PATH: cargo-fuzz needs a nightly toolchain (https://rustup.rs)"
if ! rustup toolchain list | grep -q '^nightly'; then
  say "installing the nightly toolchain (rustup toolchain install nightly --profile minimal)"
  rustup toolchain install nightly --profile minimal >/dev/null || stop "could not install a nightly toolchain (above)"
fi
tools=$(bash "$repo/scripts/cargo-tool.sh" cargo-fuzz 0.13.2) || stop "could not install cargo-fuzz (above)"
export PATH="$tools:$PATH"

cd "$repo/fuzz"
mapfile -t all < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^ddsky-fuzz$')
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

fixtures=$repo/tests/fixtures
# The unit tests' fixtures each target starts from (besides fuzz/seeds/<target>).
seed_fixtures() {
  local target=$1 dir=$2 f
  # What the fuzzers found before, each now a unit test (tests/fixtures/fuzz/README.md).
  for f in "$fixtures"/fuzz/"$target"-*; do [ ! -e "$f" ] || cp "$f" "$dir"/; done
  case "$target" in
    agent_status) cp "$fixtures"/agent-output/status*.json "$dir"/ ;;
    agent_workload_list) cp "$fixtures"/agent-output/workload-list* "$fixtures"/agent-output/unknown-flag-json.stderr "$dir"/ ;;
    agent_tagger_list) cp "$fixtures"/agent-output/tagger-list* "$dir"/ ;;
    agent_health)
      # The exit code byte, stdout, NUL, stderr (fuzz_targets/agent_health.rs).
      for f in "$fixtures"/agent-output/*.stdout "$fixtures"/agent-output/*.stderr; do
        local name=${f##*/} stdout="" stderr="" code=$'\xff'
        case "$name" in health-pass.stdout) code=$'\x00' ;; esac
        case "$name" in *.stdout) stdout=$f ;; *) stderr=$f ;; esac
        { printf '%s' "$code"; [ -z "$stdout" ] || cat "$stdout"; printf '\0'; [ -z "$stderr" ] || cat "$stderr"; } >"$dir/$name"
      done
      ;;
    drain_registry) cp "$fixtures"/registry/*.json "$dir"/ ;;
    settings_args | tags | skypilot_env | image_reference | docker_json_log | datadog_answers | proc_files) ;;
    *) stop "no seeds known for target $target: add it to seed_fixtures in scripts/fuzz.sh" ;;
  esac
}

summary=()
failed=0
for target in "${targets[@]}"; do
  printf '%s\n' "${all[@]}" | grep -qx "$target" || stop "no fuzz target $target (fuzz/Cargo.toml has: ${all[*]})"
  corpus=corpus/$target
  mkdir -p "$corpus" "artifacts/$target"
  seeds=$(mktemp -d)
  seed_fixtures "$target" "$seeds"
  [ ! -d "seeds/$target" ] || cp "seeds/$target"/* "$seeds"/
  log=artifacts/$target/last-run.log
  say "$target: building, then fuzzing for $seconds s (log: fuzz/$log)"
  # -s none -a: see above. -max_total_time bounds the run; -print_final_stats gives the count.
  status=0
  cargo +nightly fuzz run -s none -a "$target" "$corpus" "$seeds" -- \
    -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 >"$log" 2>&1 || status=$?
  rm -rf "$seeds"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  corpus_size=$(find "$corpus" -type f | wc -l)
  if [ "$status" = 0 ]; then
    summary+=("$target: ${seconds} s, ${runs:-?} executions, corpus $corpus_size, no crash")
  else
    failed=1
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    summary+=("$target: FAILED after ${runs:-?} executions: ${crash:-see fuzz/$log} ($(grep -m1 -E 'panicked at|ERROR: libFuzzer|error\[' "$log" || echo 'build or run error'))")
  fi
  say "${summary[-1]}"
done
printf '%s\n' "${summary[@]}"
exit "$failed"
