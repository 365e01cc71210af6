# ddsky's static release binary alone (test fixture): run it as a job container would, e.g.
# `docker run -v /var/run/docker.sock:/var/run/docker.sock ddsky-test/ddsky:latest up ...`.
# Built FROM scratch by docker/build-test-images.sh.
FROM scratch
COPY ddsky /usr/bin/ddsky
ENTRYPOINT ["/usr/bin/ddsky"]
