#!/usr/bin/env bash
# Several hosts on this one machine, for trying servebench across machines (README "Across machines"):
# each host is a Linux network namespace on a bridge, in 198.18.0.0/15 (reserved for benchmarking) with no
# route out, so traffic only ever goes to addresses made here. This machine itself is the controller
# (Airflow, MLflow, the trials and their Locust masters) at 198.18.0.1; the lab adds
#   server   198.18.0.2        a server host (a Docker-compatible engine can listen there: see README)
#   load1..N 198.18.0.11...    load hosts (`servebench load-worker`, or a Celery worker on their queue)
#
#   bash scripts/lab.sh up [N]                 # N load hosts (default 2); idempotent
#   bash scripts/lab.sh engine                 # a Docker-compatible engine on the server host: Podman's API at
#                                              # tcp://198.18.0.2:2375 (prints the URL); needs Podman
#                                              # (scripts/container-engine.sh installs and sets it up)
#   bash scripts/lab.sh exec HOST [--cpus L] -- CMD...
#                                              # CMD on HOST, in its own PID namespace (psutil and the reaper
#                                              # see that host alone), pinned to CPUs L if given
#   bash scripts/lab.sh down                   # kills every process in the lab, removes every namespace and
#                                              # interface, and checks that nothing is left
#   bash scripts/lab.sh status
#
# SERVEBENCH_LAB names the lab (default "sblab"; at most 8 characters), so that tests can make their own.
# Needs root and iproute2.
set -euo pipefail
LAB="${SERVEBENCH_LAB:-sblab}"
NET=198.18.0
CONTROLLER="$NET.1"

log() { printf '\033[1m[lab]\033[0m %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[[ ${#LAB} -le 8 ]] || die "SERVEBENCH_LAB '$LAB' is longer than 8 characters (interface names are limited to 15)"
[[ $EUID -eq 0 ]] || die "the lab needs root (network namespaces)"
command -v ip >/dev/null || die "ip (iproute2) is not installed: apt-get install iproute2"

hosts() { ip netns list | awk -v p="$LAB-" 'index($1, p) == 1 && $1 != p "sw" { print substr($1, length(p) + 1) }'; }

address() {
  case "$1" in
    server) echo "$NET.2" ;;
    load*) echo "$NET.$((10 + ${1#load}))" ;;
    *) die "unknown lab host '$1' (server, load1, load2, ...)" ;;
  esac
}

add_host() {  # a namespace joined to the switch by a veth pair: eth0 inside, a bridge port outside
  local host="$1" ns="$LAB-$1" addr veth
  addr="$(address "$host")"
  veth="$LAB-${host:0:1}${host//[^0-9]/}"  # server: <lab>-s, load1: <lab>-l1 (interface names: 15 at most)
  ip netns list | grep -qx "$ns\( .*\)\?" && return 0
  ip netns add "$ns"
  ip link add "$veth" type veth peer name "$veth-p"
  ip link set "$veth" netns "$ns"
  ip -n "$ns" link set "$veth" name eth0
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip link set "$veth-p" netns "$LAB-sw"
  ip -n "$LAB-sw" link set "$veth-p" master br0 up
  log "host $host at $addr"
}

up() {
  local loads="${1:-2}"
  [[ "$loads" =~ ^[1-9][0-9]?$ ]] || die "the number of load hosts must be 1 to 99, not '$loads'"
  if ! ip netns list | grep -q "^$LAB-sw\b"; then
    ip netns add "$LAB-sw"
    ip -n "$LAB-sw" link add br0 type bridge
    ip -n "$LAB-sw" link set br0 up
    # the controller: this machine's own namespace, on the bridge at .1
    ip link add "$LAB-c" type veth peer name "$LAB-c-p"
    ip link set "$LAB-c-p" netns "$LAB-sw"
    ip -n "$LAB-sw" link set "$LAB-c-p" master br0 up
    ip addr add "$CONTROLLER/24" dev "$LAB-c"
    ip link set "$LAB-c" up
    log "controller (this machine) at $CONTROLLER"
  fi
  add_host server
  for i in $(seq 1 "$loads"); do add_host "load$i"; done
  for host in $(hosts); do  # every host answers before the lab is called up
    answers "$(address "$host")" || die "host $host does not answer at $(address "$host")"
  done
}

answers() {  # a TCP connection to a closed port is refused at once by a host that is there, and times out if not
  local status
  for _ in $(seq 1 20); do
    status=0
    timeout 0.5 bash -c "exec 3<>/dev/tcp/$1/9" 2>/dev/null || status=$?
    [[ $status -ne 124 ]] && return 0
  done
  return 1
}

run_on() {
  local host="$1" cpus=""
  shift
  if [[ "${1:-}" == --cpus ]]; then cpus="$2"; shift 2; fi
  [[ "${1:-}" == -- ]] && shift
  (($#)) || die "exec $host: no command"
  ip netns list | grep -q "^$LAB-$host\b" || die "no lab host '$host' (bash scripts/lab.sh up)"
  local cmd=(unshare --pid --fork --kill-child --mount-proc "$@")
  [[ -n "$cpus" ]] && cmd=(taskset -c "$cpus" "${cmd[@]}")
  exec ip netns exec "$LAB-$host" "${cmd[@]}"
}

ENGINE_URL="tcp://$NET.2:2375"

engine() {
  ip netns list | grep -q "^$LAB-server\b" || die "no lab server host (bash scripts/lab.sh up)"
  command -v podman >/dev/null || die "podman is not installed: bash scripts/container-engine.sh start sets it up"
  if ! podman --url "$ENGINE_URL" info >/dev/null 2>&1; then
    # In the server host's network namespace only: Podman needs this machine's mounts and cgroups (a PID
    # namespace of its own would hide them), and the engine's stats API measures each server's container.
    nsenter --net="/run/netns/$LAB-server" podman system service --time=0 "$ENGINE_URL" \
      >"/tmp/$LAB-engine.log" 2>&1 </dev/null &
    for _ in $(seq 1 50); do podman --url "$ENGINE_URL" info >/dev/null 2>&1 && break; sleep 0.2; done
    podman --url "$ENGINE_URL" info >/dev/null 2>&1 || die "the engine did not start: see /tmp/$LAB-engine.log"
    log "engine on the server host at $ENGINE_URL"
  fi
  echo "$ENGINE_URL"
}

down() {
  local ns pids left containers
  if podman --url "$ENGINE_URL" info >/dev/null 2>&1; then  # its containers first, then the engine
    containers="$(podman --url "$ENGINE_URL" ps -aq)"
    # shellcheck disable=SC2086
    [[ -n "$containers" ]] && podman --url "$ENGINE_URL" rm -f $containers >/dev/null
  fi
  for ns in $(ip netns list | awk -v p="$LAB-" 'index($1, p) == 1 { print $1 }'); do
    pids="$(ip netns pids "$ns" || true)"
    # shellcheck disable=SC2086
    [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null || true
    for _ in $(seq 1 50); do [[ -z "$(ip netns pids "$ns" 2>/dev/null)" ]] && break; sleep 0.1; done
    ip netns del "$ns"
  done
  ip link del "$LAB-c" 2>/dev/null || true
  left="$(ip netns list | awk -v p="$LAB-" 'index($1, p) == 1' ; ip -o link | awk -F': ' -v p="$LAB-" 'index($2, p) == 1 { print $2 }')"
  [[ -z "$left" ]] || die "left behind: $left"
  log "lab $LAB is down: no namespace, interface or process left"
}

status() {
  ip netns list | grep -q "^$LAB-sw\b" || { echo "lab $LAB is down"; return 0; }
  echo "controller $CONTROLLER (this machine)"
  for host in $(hosts); do
    echo "$host $(address "$host")  processes: $(ip netns pids "$LAB-$host" | wc -l)"
  done
}

case "${1:-}" in
  up) up "${2:-2}" ;;
  engine) engine ;;
  exec) shift; [[ $# -ge 1 ]] || die "exec needs a host"; run_on "$@" ;;
  down) down ;;
  status) status ;;
  *) die "usage: lab.sh up [N] | engine | exec HOST [--cpus L] -- CMD... | down | status" ;;
esac
