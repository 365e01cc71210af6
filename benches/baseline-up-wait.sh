#!/usr/bin/env bash
# Figure 2b's baseline: start the agent with the docker CLI and wait until it is healthy and has
# discovered the job, the usual way (DataDog/agent-github-action's loop): `docker run -d`, then up
# to 10 tries of `docker exec <agent> agent health` (here plus a grep of `agent workload-list` for
# the job's id), sleeping 5*n s after failed try n.
#
#   baseline-up-wait.sh ARGS_FILE AGENT_NAME JOB_ID
#
# ARGS_FILE holds the `docker run` arguments, NUL-separated (benches/docker-run-args.jq).
set -uo pipefail
args_file=$1 agent=$2 job_id=$3

readarray -d '' run_args <"$args_file"
docker run "${run_args[@]}" >/dev/null || exit 1

for attempt in 1 2 3 4 5 6 7 8 9 10; do
  if docker exec "$agent" agent health >/dev/null 2>&1 &&
    docker exec "$agent" agent workload-list 2>/dev/null | grep -q -- "$job_id"; then
    exit 0
  fi
  [ "$attempt" -lt 10 ] && sleep $((5 * attempt))
done
echo "baseline-up-wait.sh: agent not healthy with $job_id discovered after 10 tries" >&2
exit 1
