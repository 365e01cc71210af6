#!/usr/bin/env bash
# Paste this into a SkyPilot task's `setup:` (it runs on every node, in the job container in runtime
# mode, on the VM in task mode) to start the Datadog Agent beside the job with ddsky.
#
# Where the binary comes from, the first that exists:
#   1. $DDSKY_BIN (default ~/.ddsky/ddsky: where the example tasks' file_mounts put it, copied from
#      your machine or downloaded by SkyPilot itself from an s3:// source),
#   2. `ddsky` on PATH,
#   3. a download from $DDSKY_URL: s3://bucket/key with the AWS CLI (`aws` on PATH, else the one in
#      SkyPilot's runtime venv, ~/skypilot-runtime/bin/aws: SkyPilot's images have no `aws` on PATH),
#      https://... with curl.
#
# How long it can hold setup: at most DDSKY_SETUP_LIMIT seconds (default 120) when `timeout` exists
# (coreutils or busybox; then SIGTERM, SIGKILL 10 s later), of which `ddsky up` waits at most
# DDSKY_TIMEOUT (default here 60s, not ddsky's 3m) for the agent to turn healthy and discover the job.
# The real agent needs ~15-30 s to turn healthy; the rest of the bound is for pulling its image.
# An agent still starting at the bound keeps starting (it belongs to dockerd, not to setup).
#
# Monitoring never fails the training job. Every outcome other than 0 prints ONE line
# "ddsky: WARNING: exit N: <meaning>; training continues", so a failure is visible in the setup log:
#   0    the agent is running and healthy; or no API key (DD_API_KEY unset and no AWS Secrets Manager
#        secret datadog/api-key): ddsky itself skips monitoring, says why, and exits 0
#   1    ddsky could not do its job (Docker refused, a foreign container named dd-agent, ...)
#   2    a bad flag or DDSKY_* value in this task: fix the task
#   3    the agent started but is not healthy in time (invalid key? Datadog unreachable?)
#   4    the agent is healthy but has not discovered the job container in time
#   124, 137, 143  the setup bound (DDSKY_SETUP_LIMIT) ended `ddsky up` (slow pull or start)
#   126  the binary does not run here (not the static x86_64 Linux build?)
#   127  no binary found and none downloaded
# 3 and 4 deserve a look (`ddsky status` tells more) but are not worth losing a training run for.
# Set DDSKY_STRICT=1 to make any non-zero outcome fail setup (for a monitoring smoke test).
#
# Safe under `set -euo pipefail`; defines the function ddsky_setup and the variables ddsky_rc and
# ddsky_then; exits only in strict mode. Needs bash and, at most, mkdir, chmod, mv, rm and timeout.
# `ddsky up` takes its settings from DDSKY_* variables (DDSKY_ENV, DDSKY_SERVICE, DDSKY_TAGS,
# DDSKY_EXPECT, DDSKY_GPUS, DDSKY_TIMEOUT, DDSKY_AGENT_ENV, ...) or from arguments appended to
# `ddsky_setup` below.
# >>> ddsky setup snippet
ddsky_setup() {
  local bin="${DDSKY_BIN:-${HOME:-/root}/.ddsky/ddsky}" url="${DDSKY_URL:-}" aws limit bound=()
  if [ ! -f "$bin" ] && command -v ddsky >/dev/null 2>&1; then
    bin=$(command -v ddsky)
  fi
  if [ ! -f "$bin" ] && [ -n "$url" ]; then
    echo "ddsky: downloading $url to $bin" >&2
    mkdir -p "${bin%/*}" || return 127
    aws=$(command -v aws || echo "${SKY_RUNTIME_DIR:-${HOME:-/root}}/skypilot-runtime/bin/aws")
    if case "$url" in
      s3://*) "$aws" s3 cp --only-show-errors "$url" "$bin.part" ;;
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
  limit="${DDSKY_SETUP_LIMIT:-120}"
  if command -v timeout >/dev/null 2>&1; then bound=(timeout -k 10 "$limit"); fi
  # ddsky up: start (or keep) the agent container, wait until it is healthy and sees the job.
  DDSKY_TIMEOUT="${DDSKY_TIMEOUT:-60s}" "${bound[@]}" "$bin" up "$@"
}
ddsky_rc=0
ddsky_setup || ddsky_rc=$?
ddsky_then="training continues"
if [ "${DDSKY_STRICT:-0}" = 1 ]; then ddsky_then="DDSKY_STRICT=1: setup fails"; fi
case "$ddsky_rc" in
  0) ;;
  1) ddsky_why="ddsky could not set up the Datadog Agent (its error is above)" ;;
  2) ddsky_why="a bad ddsky flag or DDSKY_* value in this task" ;;
  3) ddsky_why="the Datadog Agent is not healthy in time (invalid API key? Datadog unreachable? see ddsky status)" ;;
  4) ddsky_why="the agent has not discovered the job container in time (see ddsky status)" ;;
  124 | 137 | 143) ddsky_why="ddsky up stopped at the ${DDSKY_SETUP_LIMIT:-120} s setup bound (slow pull or start; an agent already created keeps starting: see ddsky status)" ;;
  126) ddsky_why="the ddsky binary does not run here (use the static x86_64 Linux build)" ;;
  127) ddsky_why="no ddsky binary found or downloaded" ;;
  *) ddsky_why="the Datadog Agent was not set up" ;;
esac
if [ "$ddsky_rc" -ne 0 ]; then echo "ddsky: WARNING: exit $ddsky_rc: $ddsky_why; $ddsky_then" >&2; fi
if [ "$ddsky_rc" -ne 0 ] && [ "${DDSKY_STRICT:-0}" = 1 ]; then
  exit "$ddsky_rc"
fi
# <<< ddsky setup snippet
