#!/usr/bin/env bash
# Container health check: `kvcache-cli PING` against this container's own server, which exits non-zero
# on any error reply (NOAUTH included) or when it cannot connect. The CLI reads KV_CACHE_PASSWORD; a
# password given as a file (KV_CACHE_PASSWORD_FILE, e.g. a Docker secret) is passed on the same way,
# first line, as the server reads it. A TLS-only server is checked over TLS.
set -euo pipefail

if [[ -z ${KV_CACHE_PASSWORD:-} && -n ${KV_CACHE_PASSWORD_FILE:-} ]]; then
    IFS= read -r KV_CACHE_PASSWORD <"$KV_CACHE_PASSWORD_FILE" || [[ -n $KV_CACHE_PASSWORD ]]
    KV_CACHE_PASSWORD=${KV_CACHE_PASSWORD%$'\r'}
    export KV_CACHE_PASSWORD
fi
port=${KV_CACHE_PORT:-7171}
tls=()
if [[ $port == 0 && ${KV_CACHE_TLS_PORT:-0} != 0 ]]; then
    # TLS only (KV_CACHE_PORT=0 with KV_CACHE_TLS_PORT): check over TLS. --insecure because this is
    # the container's own server on loopback, whatever names its certificate carries. With client
    # certificates required, give the check one in KV_CACHE_HEALTHCHECK_CERT_FILE / _KEY_FILE.
    port=$KV_CACHE_TLS_PORT
    tls=(--tls --insecure)
    if [[ -n ${KV_CACHE_HEALTHCHECK_CERT_FILE:-} ]]; then
        tls+=(--cert "$KV_CACHE_HEALTHCHECK_CERT_FILE" --key "${KV_CACHE_HEALTHCHECK_KEY_FILE:?set with KV_CACHE_HEALTHCHECK_CERT_FILE}")
    fi
fi
exec kvcache-cli --host 127.0.0.1 --port "$port" ${tls[@]+"${tls[@]}"} PING
