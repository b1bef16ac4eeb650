# Image of a native (C++) server serving one exported model; multi-stage: compilers and headers stay in
# the build stage, the runtime stage holds only the manifest's artifacts, the model and a slim base.
# servebench (plugins/servebench/servers/images.py) assembles the build context; see docker/README.md.
ARG DEBIAN_IMAGE=debian:bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
# The manifest's container.build_packages, e.g. g++ cmake libboost-dev.
ARG BUILD_PACKAGES
# Debian's versions follow the base image's point release: not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${BUILD_PACKAGES} \
    && rm -rf /var/lib/apt/lists/*
COPY srv/ /srv/
# build.sh runs the manifest's build commands; collect.sh copies its container.artifacts to /out.
RUN sh /srv/build.sh && sh /srv/prepare.sh && sh /srv/collect.sh && chmod -R a+rX /out /srv

FROM ${RUNTIME_IMAGE}
ARG SERVER
ARG HEALTH_PATH=/health
RUN useradd --system --uid 10001 --no-create-home --home-dir /srv servebench
COPY --from=build /out/ /
COPY --from=build /srv/servers /srv/servers
COPY --from=build /srv/model /srv/model
COPY --from=build /srv/prepared /srv/prepared
COPY --from=build /srv/env.sh /srv/start.sh /srv/healthcheck.sh /srv/
USER 10001
ENV PORT=8000 WORKERS=1 HEALTH_PATH=${HEALTH_PATH}
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s CMD ["bash", "/srv/healthcheck.sh"]
WORKDIR /srv/servers/${SERVER}
CMD ["sh", "/srv/start.sh"]
