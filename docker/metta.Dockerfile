# Stand-in for a SkyPilot/Metta job container (test fixture; see docker/standin/src/bin/job.rs):
# logs a line a second until SIGTERM/SIGINT. Built FROM scratch by docker/build-test-images.sh.
FROM scratch
COPY job /job
ENTRYPOINT ["/job"]
