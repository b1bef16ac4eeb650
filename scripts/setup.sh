#!/usr/bin/env bash
# Installs everything servebench needs into the project (idempotent, fast when nothing changed):
# Debian packages it lacks, the project venv .venv/ with the pinned harness, and the servebench CLI.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# --- Debian packages ---------------------------------------------------------
# python3-venv: Debian's Python lacks venv/ensurepip without it. The C++ server (cpp/) builds with
# CMake from Debian's Boost (Beast/Asio), Asio (for the Crow flavour), RapidJSON and Eigen headers;
# nghttp2-client is h2load, the native load engine; openjdk-17-jre-headless runs TorchServe's frontend.
APT_PACKAGES=(python3-venv ca-certificates g++ make cmake libboost-dev libasio-dev rapidjson-dev libeigen3-dev nghttp2-client
  openjdk-17-jre-headless)
# --test: what the tests need besides: Chromium and its driver for the browser tests of Airflow's UI; iproute2
# and Redis for the lab (hosts as network namespaces, Celery's broker: scripts/lab.sh).
[[ "${1:-}" == "--test" ]] && APT_PACKAGES+=(chromium chromium-driver iproute2 redis-server)
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
need_apt=()
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
for pkg in "${APT_PACKAGES[@]}"; do
  [[ "$pkg" == python3-venv ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  log "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
  || { log "servebench needs Python >= 3.11 (found $("$PYTHON" --version)); set PYTHON=/path/to/python3.11"; exit 1; }

# --- project venv ------------------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
if [[ ! -x .venv/bin/uv ]]; then
  log "installing uv into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check uv
fi
stamp=".venv/.servebench-installed"
want="$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  log "installing the pinned harness (requirements.txt) and servebench"
  .venv/bin/uv pip install -q --python .venv/bin/python -r requirements.txt -e ".[test]"
  echo "$want" > "$stamp"
fi
log "ready: $(.venv/bin/servebench --version)"
