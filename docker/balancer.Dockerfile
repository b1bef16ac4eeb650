# The load balancer in front of a replica set (plugins/servebench/servers/runner/replicas.py): Debian's HAProxy,
# configured at start from $HAPROXY_CFG (round-robin over the replicas, health-checked), in the foreground.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
# Debian's version follows the base image's point release: not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/*
USER haproxy
ENTRYPOINT ["/bin/sh", "-c", "printf '%s\\n' \"$HAPROXY_CFG\" > /tmp/haproxy.cfg && exec haproxy -db -f /tmp/haproxy.cfg"]
