#!/bin/bash
# HEALTHCHECK of every server image: GET $HEALTH_PATH on the server's port must answer 200.
# Plain bash (/dev/tcp), so images need neither curl nor Python for it.
exec 3<>"/dev/tcp/127.0.0.1/${PORT:-8000}" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "${HEALTH_PATH:-/health}" >&3
read -r -t 5 _ status _ <&3
[[ "$status" == 200 ]]
