# Turns ddsky's Docker Engine API ContainerCreate body (the `container` field of
# `ddsky up --dry-run --format json`) into the equivalent `docker run` arguments, NUL-separated,
# so that the docker-CLI baselines of benches/bench.sh create exactly the container ddsky creates.
#
#   jq -j --arg name NAME --arg key KEY -f benches/docker-run-args.jq < dry-run.json
#
# $key replaces the redacted DD_API_KEY. A field this file does not know is an error (the baseline
# must not silently drift from ddsky's spec). One difference the docker CLI cannot avoid: it has
# no exec form for --health-cmd, so ["CMD", "agent", "health"] becomes CMD-SHELL "agent health".

def only($obj; $allowed; $where):
  (($obj // {}) | keys) - $allowed
  | if length > 0 then error("docker-run-args.jq: unsupported \($where) fields: \(join(", "))") else . end;

def secs: "\((. / 1000000000) | floor)s";

.container as $b
| ($b.HostConfig // {}) as $h
| only($b; ["Env", "Healthcheck", "Image", "Labels", "HostConfig", "ExposedPorts", "Cmd", "StopTimeout"]; "ContainerCreate")
| only($h; ["Binds", "LogConfig", "NetworkMode", "RestartPolicy", "CgroupnsMode", "PidMode",
            "PortBindings", "DeviceRequests"]; "HostConfig")
| ["--detach", "--name", $name]
  + [($b.Env // [])[] | ("--env", (if startswith("DD_API_KEY=") then "DD_API_KEY=" + $key else . end))]
  + [($b.Labels // {}) | to_entries[] | ("--label", "\(.key)=\(.value)")]
  + [($h.Binds // [])[] | ("--volume", .)]
  + (if $h.LogConfig then
       ["--log-driver", $h.LogConfig.Type]
       + [($h.LogConfig.Config // {}) | to_entries[] | ("--log-opt", "\(.key)=\(.value)")]
     else [] end)
  + (if $h.NetworkMode then ["--network", $h.NetworkMode] else [] end)
  + (if $h.RestartPolicy.Name then
       ["--restart", ($h.RestartPolicy.Name
          + (if ($h.RestartPolicy.MaximumRetryCount // 0) > 0
             then ":\($h.RestartPolicy.MaximumRetryCount)" else "" end))]
     else [] end)
  + (if $h.CgroupnsMode then ["--cgroupns", $h.CgroupnsMode] else [] end)
  + (if $h.PidMode then ["--pid", $h.PidMode] else [] end)
  + (if $b.StopTimeout then ["--stop-timeout", "\($b.StopTimeout)"] else [] end)
  + [($h.PortBindings // {}) | to_entries[] | .key as $port | .value[]
      | ("--publish", "\(.HostIp // "" | if . == "" then "" else . + ":" end)\(.HostPort):\($port)")]
  + (if ($h.DeviceRequests // []) | length > 0 then ["--gpus", "all"] else [] end)
  + [($b.ExposedPorts // {}) | keys[] | ("--expose", .)]
  + (if $b.Healthcheck then
       $b.Healthcheck as $hc
       | (if $hc.Test[0] == "NONE" then ["--no-healthcheck"]
          elif $hc.Test[0] == "CMD-SHELL" then ["--health-cmd", $hc.Test[1]]
          else ["--health-cmd", ($hc.Test[1:] | join(" "))] end)
         + (if $hc.Interval then ["--health-interval", ($hc.Interval | secs)] else [] end)
         + (if $hc.Timeout then ["--health-timeout", ($hc.Timeout | secs)] else [] end)
         + (if $hc.Retries then ["--health-retries", "\($hc.Retries)"] else [] end)
         + (if $hc.StartPeriod then ["--health-start-period", ($hc.StartPeriod | secs)] else [] end)
     else [] end)
  + [$b.Image]
  + ($b.Cmd // [])
| .[] | . + "\u0000"
