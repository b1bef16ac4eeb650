# TorchServe serving one exported model: server-python.Dockerfile plus a Java runtime (Debian's headless
# JRE) and the CPU-only torch that TorchServe's workers import. Build stage: the venv, then `prepare` writes
# the .mar (servers/torchserve/archive.py). Runtime stage: the venv, the server's code and the model store,
# as a non-root user that owns only the run folder where the JVM keeps its sockets and temp files.
# Context: see docker/README.md. Not yet built by an engine: the machines it was written on have Podman but no
# index of torch's CPU wheels (only a find-links folder, which a build stage cannot reach).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
# torch==x.y.z+cpu is on PyTorch's CPU wheel index, not on PyPI (whose Linux torch pulls ~3 GB of CUDA
# libraries): give that index (or a mirror of it) as the build argument TORCH_INDEX_URL, i.e. the environment
# variable SERVEBENCH_BUILD_ARG_TORCH_INDEX_URL (images.py).
ARG TORCH_INDEX_URL=""
COPY extra-ca.crt requirements.txt constraints.txt /tmp/build/
RUN if [ -z "${TORCH_INDEX_URL}" ]; then \
        echo "set SERVEBENCH_BUILD_ARG_TORCH_INDEX_URL to an index of torch's CPU wheels" >&2; exit 1; \
    fi \
    && if [ -s /tmp/build/extra-ca.crt ]; then \
        cat /etc/ssl/certs/ca-certificates.crt /tmp/build/extra-ca.crt > /tmp/build/ca.pem \
        && export PIP_CERT=/tmp/build/ca.pem; \
    fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --extra-index-url "${TORCH_INDEX_URL}" \
        -r /tmp/build/requirements.txt -c /tmp/build/constraints.txt
COPY srv/ /srv/
RUN sh /srv/build.sh && sh /srv/prepare.sh \
    && /opt/venv/bin/pip freeze --disable-pip-version-check > /srv/packages.txt \
    && chmod -R a+rX /opt/venv /srv

FROM ${PYTHON_IMAGE}
ARG SERVER
ARG HEALTH_PATH=/ping
# Debian's default JRE: OpenJDK 17 on bookworm (the stand-in base, and what TorchServe 0.12 was released for),
# 21 on trixie. Its versions follow the base image's point release: not pinned. The man folder is missing
# from slim images, and the JRE's postinst fails without it.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends default-jre-headless \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --home-dir /srv servebench
COPY --from=build /opt/venv /opt/venv
COPY --from=build /srv /srv
# serve.py's --run-root ({env_dir}/run): the JVM's temp folder, worker sockets, the extracted .mar.
RUN mkdir /opt/venv/run && chown 10001 /opt/venv/run
USER 10001
ENV PORT=8000 WORKERS=1 HEALTH_PATH=${HEALTH_PATH}
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s CMD ["bash", "/srv/healthcheck.sh"]
WORKDIR /srv/servers/${SERVER}
CMD ["sh", "/srv/start.sh"]
