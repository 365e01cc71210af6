# Stand-in for SkyPilot's runtime-mode job container (test fixture for tests/e2e/rehearsal.rs): what
# sky_container needs to run the example task's setup and run blocks as SkyPilot does, FROM scratch:
# a static bash (Debian's bash-static, for --entrypoint=/bin/bash and `bash -c`), Debian's static
# busybox for the few tools the blocks call (mkdir, chmod, mv, rm, timeout, sleep, cat), and ddsky's
# static build where the example's file_mounts put it (~/.ddsky/ddsky). Built by
# docker/build-test-images.sh, which prepares rootfs/.
FROM scratch
COPY rootfs/ /
ENV PATH=/bin HOME=/root
WORKDIR /root/sky_workdir
