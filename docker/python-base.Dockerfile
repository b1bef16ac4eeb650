# A stand-in for python:3.11-slim where nothing can be pulled: Debian bookworm's Python 3.11 (with venv)
# on a locally made Debian image. scripts/container-engine.sh builds it; with a registry, use python:3.11-slim.
# libpython3.11: python:3.11-slim's interpreter is built shared, and Triton's Python backend stub links it.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
# Debian's versions follow the base image's point release: not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv libpython3.11 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
