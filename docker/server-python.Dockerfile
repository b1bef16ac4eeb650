# Image of one Python server framework serving one exported model. servebench (plugins/servebench/servers/images.py)
# assembles the build context from the server's folder and the model; see docker/README.md for its layout.
# Build stage: the server's own venv from its requirements, then the manifest's build and prepare commands.
# Runtime stage: the venv, the server's code and the model on a slim base, as a non-root user.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
# An optional CA for TLS-intercepting proxies (an empty file means none); used by pip in this stage only.
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
# /srv/packages.txt: the environment's versions, logged with every trial.
RUN sh /srv/build.sh && sh /srv/prepare.sh \
    && /opt/venv/bin/pip freeze --disable-pip-version-check > /srv/packages.txt \
    && chmod -R a+rX /opt/venv /srv

FROM ${PYTHON_IMAGE}
ARG SERVER
ARG HEALTH_PATH=/health
RUN useradd --system --uid 10001 --no-create-home --home-dir /srv servebench
COPY --from=build /opt/venv /opt/venv
COPY --from=build /srv /srv
USER 10001
ENV PORT=8000 WORKERS=1 HEALTH_PATH=${HEALTH_PATH}
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s CMD ["bash", "/srv/healthcheck.sh"]
WORKDIR /srv/servers/${SERVER}
CMD ["sh", "/srv/start.sh"]
