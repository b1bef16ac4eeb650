#!/usr/bin/env bash
# Render a servebench report (index.html) in headless Chromium to a PNG, to look at it as a reader would.
#   bash scripts/screenshot-report.sh PATH/TO/index.html OUT.png [WIDTH] [HEIGHT]
# Needs Debian's chromium (apt-get install chromium); the flags keep it off the network entirely.
set -euo pipefail
page="$(realpath "$1")"; out="$(realpath -m "$2")"; width="${3:-1400}"; height="${4:-6000}"
command -v chromium > /dev/null || { echo "chromium is not installed: apt-get install -y chromium" >&2; exit 2; }
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" \
  --window-size="$width,$height" --screenshot="$out" "file://$page" 2> "$profile/chromium.log" \
  || { tail -5 "$profile/chromium.log" >&2; exit 1; }
echo "$out"
