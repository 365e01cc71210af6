#!/usr/bin/env bash
# Paste this into a SkyPilot task's `setup:` (it runs on every node, in the job container in runtime
# mode, on the VM in task mode) to start the Datadog Agent beside the job with ddsky.
#
# Where the binary comes from, the first that exists:
#   1. $DDSKY_BIN (default ~/.ddsky/ddsky: where the example tasks' file_mounts put the local build
#      target/x86_64-unknown-linux-gnu/release/ddsky),
#   2. `ddsky` on PATH,
#   3. a download from $DDSKY_URL: s3://bucket/key with the AWS CLI, https://... with curl.
#
# Monitoring never fails the training job. Every outcome other than 0 is printed as a WARNING line that
# names the exit code and what it means, so a real failure is visible in the setup log, not swallowed:
#   0    the agent is running and healthy; or no API key (DD_API_KEY unset and no AWS Secrets Manager
#        secret datadog/api-key): ddsky itself skips monitoring, says why, and exits 0
#   1    ddsky could not do its job (Docker refused, a foreign container named dd-agent, ...)
#   2    a bad flag or DDSKY_* value in this task: fix the task
#   3    the agent started but is not healthy in time (invalid key? Datadog unreachable?)
#   4    the agent is healthy but has not discovered the job container in time
#   126  the binary does not run here (not the static x86_64 Linux build?)
#   127  no binary found and none downloaded
# 3 and 4 deserve a look (`ddsky status` tells more) but are not worth losing a training run for.
# Set DDSKY_STRICT=1 to make any non-zero outcome fail setup (for a monitoring smoke test).
#
# Safe under `set -euo pipefail`; defines the function ddsky_setup and the variables ddsky_rc and
# ddsky_then; exits only in strict mode. `ddsky up` takes its settings from DDSKY_* variables
# (DDSKY_ENV, DDSKY_SERVICE, DDSKY_TAGS, DDSKY_EXPECT, DDSKY_GPUS, DDSKY_TIMEOUT, ...) or from
# arguments appended to `ddsky_setup` below.
# >>> ddsky setup snippet
ddsky_setup() {
  local bin="${DDSKY_BIN:-${HOME:-/root}/.ddsky/ddsky}" url="${DDSKY_URL:-}"
  if [ ! -f "$bin" ] && command -v ddsky >/dev/null 2>&1; then
    bin=$(command -v ddsky)
  fi
  if [ ! -f "$bin" ] && [ -n "$url" ]; then
    echo "ddsky: downloading $url to $bin" >&2
    mkdir -p "$(dirname "$bin")" || return 127
    if case "$url" in
      s3://*) aws s3 cp --only-show-errors "$url" "$bin.part" ;;
      *) curl -fsSL --retry 3 --connect-timeout 10 -o "$bin.part" "$url" ;;
    esac; then
      mv -f "$bin.part" "$bin" || return 127
    else
      rm -f "$bin.part"
      echo "ddsky: download of $url failed" >&2
      return 127
    fi
  fi
  if [ ! -f "$bin" ]; then
    echo "ddsky: no binary at $bin nor on PATH; set DDSKY_BIN, or DDSKY_URL to download one" >&2
    return 127
  fi
  [ -x "$bin" ] || chmod +x "$bin" || return 126
  if ! "$bin" --version >/dev/null 2>&1; then
    echo "ddsky: $bin does not run on this machine (use the static x86_64 Linux build)" >&2
    return 126
  fi
  # ddsky up: start (or keep) the agent container, wait until it is healthy and sees the job.
  "$bin" up "$@"
}
ddsky_rc=0
ddsky_setup || ddsky_rc=$?
ddsky_then="training continues"
if [ "${DDSKY_STRICT:-0}" = 1 ]; then ddsky_then="DDSKY_STRICT=1: setup fails"; fi
case "$ddsky_rc" in
  0) ;;
  3) echo "ddsky: WARNING: exit 3: the Datadog Agent is not healthy (invalid API key? Datadog unreachable? see ddsky status); $ddsky_then" >&2 ;;
  4) echo "ddsky: WARNING: exit 4: the agent has not discovered the job container (see ddsky status); $ddsky_then" >&2 ;;
  *) echo "ddsky: WARNING: exit $ddsky_rc: the Datadog Agent was not set up; $ddsky_then" >&2 ;;
esac
if [ "$ddsky_rc" -ne 0 ] && [ "${DDSKY_STRICT:-0}" = 1 ]; then
  exit "$ddsky_rc"
fi
# <<< ddsky setup snippet
