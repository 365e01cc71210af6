#!/usr/bin/env bash
# Paste this into a SkyPilot task's `setup:` (it runs on every node, in the job container in runtime
# mode, on the VM in task mode) to start the Datadog Agent beside the job with ddsky.
#
# Where the binary comes from, the first that exists:
#   1. $DDSKY_BIN (default ~/.ddsky/ddsky: where a task's file_mounts put it, copied from your
#      machine or downloaded by SkyPilot itself from an s3:// source; also where 3 and 4 put it),
#   2. `ddsky` on PATH,
#   3. a download from $DDSKY_URL: s3://bucket/key with the AWS CLI (`aws` on PATH, else the one in
#      SkyPilot's runtime venv, ~/skypilot-runtime/bin/aws: SkyPilot's images have no `aws` on PATH),
#      https://... with curl,
#   4. the pinned release (ddsky_pin below) from the Python package index: `python -m pip download
#      ddsky==<pin> --only-binary=:all: --no-deps` fetches the wheel (pip as a downloader only:
#      nothing is installed into any Python environment) and the binary is taken out of it with
#      Python's zipfile. Python is the first on PATH that has pip (python3, python), else SkyPilot's
#      runtime venv (~/skypilot-runtime/bin/python). pip reads its own settings: PIP_INDEX_URL,
#      PIP_EXTRA_INDEX_URL, pip.conf (a private index such as CodeArtifact or Artifactory).
# The wheel must be the released one: its sha256 is ddsky_sha256 below, written there by the release
# command (scripts/release.sh), so another file under the same version (a more specific platform tag
# uploaded later, a private mirror's own build) is refused. DDSKY_SHA256, when set, is the sha256 the
# downloaded file must have instead (the binary from DDSKY_URL, or your own wheel; scripts/release.sh
# prints both kinds). A mismatch leaves no binary behind. A DDSKY_URL download without DDSKY_SHA256
# is not checked, and its line says so.
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
#   127  no binary found and none downloaded (the line says why: no Python with pip, the index or
#        URL unreachable, no such release, a wrong DDSKY_SHA256)
# 3 and 4 deserve a look (`ddsky status` tells more) but are not worth losing a training run for.
# Set DDSKY_STRICT=1 to make any non-zero outcome fail setup (for a monitoring smoke test).
#
# Safe under `set -euo pipefail`; defines the functions ddsky_setup and ddsky_fetch and the variables
# ddsky_pin, ddsky_sha256, ddsky_rc, ddsky_why and ddsky_then; exits only in strict mode. Needs bash
# and, at most, mkdir, chmod, mv, rm and timeout (a download: curl, aws, or Python with pip).
# `ddsky up` takes its settings from DDSKY_* variables (DDSKY_ENV, DDSKY_SERVICE, DDSKY_TAGS,
# DDSKY_EXPECT, DDSKY_GPUS, DDSKY_TIMEOUT, DDSKY_AGENT_ENV, ...) or from arguments appended to
# `ddsky_setup` below.
# >>> ddsky setup snippet
ddsky_pin=0.1.0  # the ddsky release taken from the package index when no binary is here
ddsky_sha256=  # sha256 of that release's wheel (scripts/release.sh writes it; empty: not checked)
# Puts a binary at $1 from DDSKY_URL, else out of the pinned wheel; on failure says why in ddsky_why
# and leaves nothing at $1. Works in $1.fetch.<pid>, removed in every case.
ddsky_fetch() {
  local bin=$1 url="${DDSKY_URL:-}" want="${DDSKY_SHA256:-}" whose="DDSKY_SHA256" tmp py got line="" aws
  local unzip='import glob,hashlib,sys,zipfile; d,want=sys.argv[1],sys.argv[2].lower(); w=glob.glob(d+"/*.whl"); len(w)==1 or sys.exit("pip fetched no wheel"); got=hashlib.sha256(open(w[0],"rb").read()).hexdigest(); (not want or got==want) or sys.exit("sha256 of %s is %s, not %s %s" % (w[0].rsplit("/",1)[-1],got,sys.argv[3],want)); z=zipfile.ZipFile(w[0]); m=[n for n in z.namelist() if n.endswith(".data/scripts/ddsky")]; len(m)==1 or sys.exit("no ddsky binary in the wheel"); open(d+"/ddsky","wb").write(z.read(m[0]))'
  tmp="$bin.fetch.$$"
  rm -rf "$tmp"
  if ! mkdir -p "$tmp"; then
    ddsky_why="cannot create $tmp"
    return 1
  fi
  if [ -n "$url" ]; then
    if [ -n "$want" ]; then line=""; else line=" (unverified: no DDSKY_SHA256)"; fi
    echo "ddsky: downloading $url to $bin$line" >&2
    line=""
    aws=$(command -v aws || echo "${SKY_RUNTIME_DIR:-${HOME:-/root}}/skypilot-runtime/bin/aws")
    if ! case "$url" in
      s3://*) "$aws" s3 cp --only-show-errors "$url" "$tmp/ddsky" ;;
      *) curl -fsSL --retry 3 --connect-timeout 10 -o "$tmp/ddsky" "$url" ;;
    esac 2>"$tmp/log"; then
      while read -r got; do [ -z "$got" ] || line=$got; done <"$tmp/log"
      ddsky_why="download of $url failed${line:+: $line}"
    elif [ -n "$want" ]; then
      got=$(sha256sum "$tmp/ddsky" 2>/dev/null || python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$tmp/ddsky" 2>/dev/null) || got=""
      got=${got%% *}
      [ "$got" = "${want,,}" ] || ddsky_why="sha256 of $url is ${got:-unknown}, not DDSKY_SHA256 $want"
    fi
  else
    if [ -z "$want" ] && [ -n "${ddsky_sha256:-}" ]; then
      want=$ddsky_sha256
      whose="the released wheel's"
    fi
    for py in python3 python "${SKY_RUNTIME_DIR:-${HOME:-/root}}/skypilot-runtime/bin/python" ""; do
      if [ -n "$py" ] && "$py" -m pip --version >/dev/null 2>&1; then break; fi
    done
    if [ -z "$py" ]; then
      line="no Python with pip (python3, python, ~/skypilot-runtime/bin/python) to fetch ddsky==$ddsky_pin"
    else
      if [ -n "$want" ]; then line=""; else line=" (unverified: no ddsky_sha256 or DDSKY_SHA256)"; fi
      echo "ddsky: fetching ddsky==$ddsky_pin from the package index with $py -m pip download$line" >&2
      line=""
      if ! "$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --dest "$tmp" "ddsky==$ddsky_pin" >"$tmp/log" 2>&1; then
        while read -r got; do [ -z "$got" ] || line=$got; done <"$tmp/log"
        case "$(<"$tmp/log")" in *Retrying*) line="the package index did not answer; $line" ;; esac
        line="pip download ddsky==$ddsky_pin failed: $line"
      elif ! line=$("$py" -c "$unzip" "$tmp" "$want" "$whose" 2>&1); then
        line=${line:-"could not unpack the wheel"}
      else
        line=""
      fi
    fi
    [ -z "$line" ] || ddsky_why=$line
  fi
  if [ -z "${ddsky_why:-}" ] && chmod 755 "$tmp/ddsky" && mv -f "$tmp/ddsky" "$bin"; then
    rm -rf "$tmp"
    return 0
  fi
  rm -rf "$tmp"
  ddsky_why=${ddsky_why:-"could not put the binary at $bin"}
  return 1
}
ddsky_setup() {
  local bin="${DDSKY_BIN:-${HOME:-/root}/.ddsky/ddsky}" limit bound=()
  if [ ! -f "$bin" ] && command -v ddsky >/dev/null 2>&1; then
    bin=$(command -v ddsky)
  fi
  if [ ! -f "$bin" ]; then
    mkdir -p "${bin%/*}" 2>/dev/null || true
    ddsky_fetch "$bin" || return 127
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
ddsky_why=""
ddsky_setup || ddsky_rc=$?
ddsky_then="training continues"
if [ "${DDSKY_STRICT:-0}" = 1 ]; then ddsky_then="DDSKY_STRICT=1: setup fails"; fi
case "$ddsky_rc" in
  0) ;;
  1) ddsky_why="ddsky could not set up the Datadog Agent (its error is above)" ;;
  2) ddsky_why="a bad ddsky flag or DDSKY_* value in this task" ;;
  3) ddsky_why="the Datadog Agent is not healthy in time (invalid API key? Datadog unreachable? see ddsky status)" ;;
  4) ddsky_why="the agent has not discovered the job container in time (see ddsky status)" ;;
  6) ddsky_why="the Datadog Agent container exits at start-up or keeps exiting (its last lines are above; see ddsky status)" ;;
  124 | 137 | 143) ddsky_why="ddsky up stopped at the ${DDSKY_SETUP_LIMIT:-120} s setup bound (slow pull or start; an agent already created keeps starting: see ddsky status)" ;;
  126) ddsky_why="the ddsky binary does not run here (use the static x86_64 Linux build)" ;;
  127) ddsky_why="no ddsky binary found or downloaded${ddsky_why:+ ($ddsky_why)}" ;;
  *) ddsky_why="the Datadog Agent was not set up" ;;
esac
if [ "$ddsky_rc" -ne 0 ]; then echo "ddsky: WARNING: exit $ddsky_rc: $ddsky_why; $ddsky_then" >&2; fi
if [ "$ddsky_rc" -ne 0 ] && [ "${DDSKY_STRICT:-0}" = 1 ]; then
  exit "$ddsky_rc"
fi
# <<< ddsky setup snippet
