#!/usr/bin/env bash
# A Docker-compatible engine for the container backend on a machine without a Docker Engine:
# Podman serving the Docker Engine API on a unix socket, plus the base images a machine that cannot
# pull needs (Debian bookworm made with debootstrap, and a Python 3.11 image built on it).
#
#   eval "$(bash scripts/container-engine.sh start)"   # prints `export DOCKER_HOST=...`
#   bash scripts/container-engine.sh stop               # removes servebench containers, then the service
#
# With a real Docker Engine you need none of this: the container backend uses DOCKER_HOST as usual.
# Needs root (apt, podman's storage); start is idempotent and prints why when it cannot run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${SERVEBENCH_ENGINE_DIR:-/tmp/servebench-engine}"
SOCKET="$STATE/podman.sock"
PIDFILE="$STATE/podman.pid"
DEBIAN_IMAGE="${SERVEBENCH_DEBIAN_IMAGE:-localhost/debian:bookworm}"
PYTHON_IMAGE="${SERVEBENCH_PYTHON_IMAGE:-localhost/servebench-python:3.11}"

log() { printf '\033[1m[engine]\033[0m %s\n' "$*" >&2; }

running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

install_packages() {
  local need=()
  for pkg in podman runc debootstrap docker-compose; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
  done
  ((${#need[@]})) || return 0
  log "installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

configure() {
  # These machines' hybrid cgroups are refused by crun and the sandbox refuses setrlimit:
  # runc + cgroupfs, no default ulimits. An existing configuration is left alone.
  local conf=/etc/containers/containers.conf
  [[ -f "$conf" ]] && return 0
  mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n' > "$conf"
}

# The Debian mirror this machine's apt uses for the main archive (deb822 .sources or one-line .list files);
# empty when apt has none configured.
apt_mirror() {
  local files=(/etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list)
  awk '
    FNR == 1 { uris = "" }
    /^URIs:/ { uris = $2 }
    /^Suites:/ && uris != "" && $0 ~ /bookworm( |$)/ { print uris; exit }
    /^deb / && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }
  ' "${files[@]}" 2>/dev/null | head -1
}

base_images() {
  if ! podman image exists "$DEBIAN_IMAGE"; then
    local mirror rootfs
    mirror="$(apt_mirror)"
    if [[ -z "$mirror" ]]; then
      log "no Debian mirror in this machine's apt configuration (/etc/apt/sources.list*): cannot debootstrap $DEBIAN_IMAGE"
      return 1
    fi
    rootfs="$(mktemp -d)"
    log "making $DEBIAN_IMAGE with debootstrap from $mirror (about 30 s)"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
    tar -C "$rootfs" -c . | podman import -q - "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$rootfs"
  fi
  # Rebuilt when its Dockerfile changed (the label holds the Dockerfile's hash).
  local recipe have
  recipe="$(sha256sum "$ROOT/docker/python-base.Dockerfile" | cut -c1-12)"
  have="$(podman image inspect --format '{{ index .Labels "servebench.recipe" }}' "$PYTHON_IMAGE" 2>/dev/null || true)"
  if [[ "$have" != "$recipe" ]]; then
    log "building $PYTHON_IMAGE (Debian's Python 3.11, standing in for python:3.11-slim)"
    podman build -q --build-arg "BASE_IMAGE=$DEBIAN_IMAGE" --label "servebench.recipe=$recipe" -t "$PYTHON_IMAGE" \
      -f "$ROOT/docker/python-base.Dockerfile" "$ROOT/docker" >/dev/null
  fi
}

start() {
  if [[ $(id -u) -ne 0 ]]; then
    log "not root: cannot install or start Podman here; container tests will be skipped"
    exit 1
  fi
  install_packages
  configure
  mkdir -p "$STATE"
  base_images
  if ! running; then
    echo "export SERVEBENCH_ENGINE_STARTED=1"  # so whoever started it knows to stop it
    rm -f "$SOCKET"
    podman system service --time=0 "unix://$SOCKET" > "$STATE/podman.log" 2>&1 &
    echo $! > "$PIDFILE"
    for _ in $(seq 50); do [[ -S "$SOCKET" ]] && break; sleep 0.1; done
    [[ -S "$SOCKET" ]] || { log "podman service did not start; see $STATE/podman.log"; exit 1; }
    log "Docker Engine API (Podman) on unix://$SOCKET, pid $(cat "$PIDFILE")"
  fi
  # The server images' base-image build arguments point at the local images; pip in their build stage
  # trusts this machine's CA bundle (which holds the TLS-intercepting proxy's CA here).
  echo "export DOCKER_HOST=unix://$SOCKET"
  echo "export SERVEBENCH_BUILD_ARG_PYTHON_IMAGE=$PYTHON_IMAGE"
  echo "export SERVEBENCH_BUILD_ARG_DEBIAN_IMAGE=$DEBIAN_IMAGE"
  echo "export SERVEBENCH_BUILD_ARG_RUNTIME_IMAGE=$DEBIAN_IMAGE"
  echo "export SERVEBENCH_EXTRA_CA_CERT=/etc/ssl/certs/ca-certificates.crt"
}

stop() {
  # Containers first (a service stopped under them leaves conmon processes behind), then the service.
  if command -v podman >/dev/null; then
    local ids
    ids=$(podman ps -aq --filter label=servebench.managed=true 2>/dev/null || true)
    [[ -n "$ids" ]] && podman rm -f -t 2 $ids >/dev/null 2>&1 || true
  fi
  if running; then
    kill "$(cat "$PIDFILE")" && log "stopped the Podman service (pid $(cat "$PIDFILE"))"
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
