# Airflow 3 with servebench installed: the image of every Airflow service and of the MLflow server in
# docker-compose.yaml. Build from the repository root: docker build -f docker/airflow.Dockerfile .
# Extra CAs (TLS-intercepting proxies): put *.crt files in docker/certs/. pip trusts them here, and the server
# images this image builds trust them too (SERVEBENCH_EXTRA_CA_CERT); a CA certificate is public, not a secret.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
COPY docker/certs/ /tmp/certs/
COPY requirements.txt docker/airflow-requirements.txt /tmp/build/
# pip's trust: the system's CAs plus the extra ones (build stage only; every pip call below reads PIP_CERT).
ENV PIP_CERT=/tmp/ca.pem
RUN mkdir -p /opt/servebench-ca && touch /opt/servebench-ca/extra-ca.crt \
    && if ls /tmp/certs/*.crt >/dev/null 2>&1; then cat /tmp/certs/*.crt > /opt/servebench-ca/extra-ca.crt; fi \
    && cat /etc/ssl/certs/ca-certificates.crt /opt/servebench-ca/extra-ca.crt > /tmp/ca.pem \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        -r /tmp/build/requirements.txt -r /tmp/build/airflow-requirements.txt
# The harness finds servers/ and docker/ beside its package: the repository layout is kept in /opt/servebench.
COPY pyproject.toml README.md /opt/servebench/
COPY plugins/ /opt/servebench/plugins/
COPY dags/ /opt/servebench/dags/
COPY servers/ /opt/servebench/servers/
COPY cpp/ /opt/servebench/cpp/
COPY docker/ /opt/servebench/docker/
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps -e /opt/servebench \
    && rm -rf /opt/servebench/docker/certs/*.crt

FROM ${PYTHON_IMAGE}
RUN useradd --uid 50000 --gid 0 --create-home --home-dir /home/airflow airflow \
    && mkdir -p /opt/airflow /opt/servebench-state /mlflow/artifacts \
    && chown airflow:0 /opt/airflow /opt/servebench-state /mlflow/artifacts
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/servebench /opt/servebench
COPY --from=build /opt/servebench-ca /opt/servebench-ca
ENV PATH=/opt/venv/bin:$PATH AIRFLOW_HOME=/opt/airflow SERVEBENCH_HOME=/opt/servebench-state \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/servebench/dags AIRFLOW__CORE__PLUGINS_FOLDER=/opt/servebench/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False PYTHONUNBUFFERED=1 SERVEBENCH_EXTRA_CA_CERT=/opt/servebench-ca/extra-ca.crt
USER 50000
WORKDIR /opt/airflow
HEALTHCHECK --interval=30s --timeout=10s CMD ["python", "-c", "import servebench, airflow"]
CMD ["airflow", "version"]
