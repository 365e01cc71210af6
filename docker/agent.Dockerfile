# Stand-in for datadog/agent:7 (test fixture; see docker/standin). Built FROM scratch by
# docker/build-test-images.sh, which prepares rootfs/: the static `agent` binary at /usr/bin/agent,
# /opt/datadog-agent/bin/agent/agent and /probe.sh (symlinks to it; as probe.sh it answers like
# `agent health`), plus the empty directories the daemon writes to, and (except in the -noshell
# variant) a static busybox as /bin/sh, mktemp, cat, rm, tail and head.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/bin:/bin
EXPOSE 8125/udp 8126/tcp
# The real image's health check (no start period).
HEALTHCHECK --interval=30s --timeout=5s --retries=2 CMD ["/probe.sh"]
ENTRYPOINT ["/usr/bin/agent"]
