# TensorFlow Serving serving one exported model. Build stage: the tfserving server's venv (TensorFlow CPU)
# runs its `prepare` (export_savedmodel.py), which writes and checks the SavedModel. Runtime stage: that
# SavedModel on the tensorflow/serving image, as a non-root user. Context: see docker/README.md.
ARG PYTHON_IMAGE=python:3.11-slim
ARG SERVING_IMAGE=tensorflow/serving:2.18.0

FROM ${PYTHON_IMAGE} AS build
COPY extra-ca.crt requirements.txt constraints.txt /tmp/build/
RUN if [ -s /tmp/build/extra-ca.crt ]; then \
        cat /etc/ssl/certs/ca-certificates.crt /tmp/build/extra-ca.crt > /tmp/build/ca.pem \
        && export PIP_CERT=/tmp/build/ca.pem; \
    fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        -r /tmp/build/requirements.txt -c /tmp/build/constraints.txt
COPY srv/ /srv/
# What build and prepare write (e.g. a model store) must be readable by the non-root runtime user.
RUN sh /srv/build.sh && sh /srv/prepare.sh && chmod -R a+rX /opt/venv /srv

FROM ${SERVING_IMAGE}
ARG SERVER
ARG HEALTH_PATH=/v1/models/model
RUN useradd --system --uid 10001 --no-create-home --home-dir /srv servebench
COPY --from=build /srv/servers /srv/servers
COPY --from=build /srv/prepared /srv/prepared
COPY --from=build /srv/env.sh /srv/start.sh /srv/healthcheck.sh /srv/
USER 10001
ENV PORT=8000 WORKERS=1 HEALTH_PATH=${HEALTH_PATH}
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s CMD ["bash", "/srv/healthcheck.sh"]
WORKDIR /srv/servers/${SERVER}
# The image's own entrypoint starts a server of its own; this one starts the manifest's command.
ENTRYPOINT ["sh", "/srv/start.sh"]
