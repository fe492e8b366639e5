#!/usr/bin/env bash
# Container health check: `kvcache-cli PING` against this container's own server, which exits non-zero
# on any error reply (NOAUTH included) or when it cannot connect. The CLI reads KV_CACHE_PASSWORD; a
# password given as a file (KV_CACHE_PASSWORD_FILE, e.g. a Docker secret) is passed on the same way,
# first line, as the server reads it.
set -euo pipefail

if [[ -z ${KV_CACHE_PASSWORD:-} && -n ${KV_CACHE_PASSWORD_FILE:-} ]]; then
    IFS= read -r KV_CACHE_PASSWORD <"$KV_CACHE_PASSWORD_FILE" || [[ -n $KV_CACHE_PASSWORD ]]
    KV_CACHE_PASSWORD=${KV_CACHE_PASSWORD%$'\r'}
    export KV_CACHE_PASSWORD
fi
exec kvcache-cli --host 127.0.0.1 --port "${KV_CACHE_PORT:-7171}" PING
