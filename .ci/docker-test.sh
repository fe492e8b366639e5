#!/usr/bin/env bash
# Builds the kvcache image with the unchanged Dockerfile and tests it against the real Docker Engine:
# the protocol through a mapped port, the non-root user, configuration through KV_CACHE_* variables,
# the health check (healthy, and failing without the password), a quick exit 0 on `docker stop`, the
# snapshot (keys back after `docker restart`, and in a new container on the same named volume), and
# the compose `cluster` profile: three nodes behind twemproxy, keys spread over all three, and the
# other nodes' keys still readable with one node stopped.
#
# Needs: a running Docker Engine. Installs what else it needs (debootstrap via docker-base-images.sh,
# redis-tools, docker-compose) with apt-get. Every container and network it makes is removed on exit;
# the images (kv-cache, kvcache-nutcracker and the build cache, tagged kv-cache-ci:builder) are kept
# so reruns are fast; superseded ones from earlier runs are pruned.
# KVCACHE_DOCKER_SKIP_CLUSTER=1 skips the compose cluster part; KVCACHE_DOCKER_HOST_PORT (default
# 7171) is the host port of the README's `docker run -p 7171:7171`.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
image=kv-cache
run_id=kvcache-ci-$$
project=kvcache-ci-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/kvcache-docker-test.XXXXXX")
t0=$SECONDS
step_start=$SECONDS
fails=0
passes=0

log() { printf '[docker-test] %s\n' "$*" >&2; }
die() { printf '[docker-test] FAIL: %s\n' "$*" >&2; exit 1; }
step() {
    log "$1 ($((SECONDS - step_start)) s)"
    step_start=$SECONDS
}
fails_() { ! "$@"; }
check() { # check "description" command...: records a failure instead of stopping, so one run shows all
    local what=$1
    shift
    if "$@"; then
        log "ok: $what"
        passes=$((passes + 1))
    else
        log "FAIL: $what"
        fails=$((fails + 1))
    fi
}

compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -p "$project" "$@"
    else
        docker-compose -p "$project" "$@"
    fi
}

cleanup() {
    local rc=$?
    set +e
    if [[ -f $work/compose-up ]]; then
        compose --profile cluster down --volumes --remove-orphans >/dev/null 2>&1
    fi
    local ids
    ids=$(docker ps -aq --filter "label=kvcache.ci=$run_id")
    if [[ -n $ids ]]; then
        # shellcheck disable=SC2086 # one id per word
        docker rm -f -v $ids >/dev/null # -v: their anonymous /data volumes too
    fi
    ids=$(docker volume ls -q --filter "label=kvcache.ci=$run_id")
    if [[ -n $ids ]]; then
        # shellcheck disable=SC2086 # one name per word
        docker volume rm -f $ids >/dev/null
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }
need_apt() { # need_apt command package
    command -v "$1" >/dev/null && return 0
    log "installing $2"
    if [[ ! -f $work/apt-updated ]]; then
        as_root apt-get update -qq
        touch "$work/apt-updated"
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker Engine is not reachable"
need_apt redis-cli redis-tools
if ! docker compose version >/dev/null 2>&1; then need_apt docker-compose docker-compose; fi

# Line-protocol session over plain bash: send the lines (ending in QUIT), print what comes back.
session() { # session port payload
    local fd out
    exec {fd}<>"/dev/tcp/127.0.0.1/$1"
    printf '%b' "$2" >&"$fd"
    out=$(timeout 5 cat <&"$fd") || true
    exec {fd}>&-
    printf '%s\n' "$out"
}
wait_ping() { # wait_ping port: until the server answers PING (10 s)
    local i
    for ((i = 0; i < 100; i++)); do
        [[ $(session "$1" 'PING\nQUIT\n' 2>/dev/null) == "OK PONG" ]] && return 0
        sleep 0.1
    done
    return 1
}
host_port() { # host_port container container-port
    docker port "$1" "$2" | head -n 1 | sed 's/.*://'
}
wait_health() { # wait_health container status seconds
    local i status=
    for ((i = 0; i < $3 * 2; i++)); do
        status=$(docker inspect -f '{{.State.Health.Status}}' "$1")
        [[ $status == "$2" ]] && return 0
        sleep 0.5
    done
    log "$1 health is '$status', wanted '$2'"
    return 1
}

# --- images ----------------------------------------------------------------------------------------
bash .ci/docker-base-images.sh
step "base images ready"
docker build -t "$image" . >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; die "docker build failed (log above)"; }
step "docker build -t $image ."
# Keep this build's compile cache under a tag, then drop the superseded build stages and images of
# earlier runs (dangling images made from the CI stand-in bases only; nobody else's).
docker build -q --target builder -t kv-cache-ci:builder . >/dev/null
docker image prune -f --filter label=kvcache.ci.standin >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$image")
log "image size: $((size / 1000000)) MB ($size bytes)"
check "image is small (< 150 MB)" test "$size" -lt 150000000
check "image runs as a numeric non-root user" \
    test "$(docker image inspect -f '{{.Config.User}}' "$image")" = "10001:10001"
check "image exposes 7171/tcp" \
    grep -q '"7171/tcp"' <<<"$(docker image inspect -f '{{json .Config.ExposedPorts}}' "$image")"
check "image has a HEALTHCHECK through kvcache-healthcheck" \
    grep -q kvcache-healthcheck <<<"$(docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$image")"
check "image sets KV_CACHE_SNAPSHOT_FILE=/data/kvcache.snap" \
    grep -q '"KV_CACHE_SNAPSHOT_FILE=/data/kvcache.snap"' <<<"$(docker image inspect -f '{{json .Config.Env}}' "$image")"
check "image declares VOLUME /data" \
    grep -q '"/data"' <<<"$(docker image inspect -f '{{json .Config.Volumes}}' "$image")"

# --- one container, defaults -----------------------------------------------------------------------
# As the README shows (-p 7171:7171) when the host's port is free, else any free port.
# KVCACHE_DOCKER_HOST_PORT picks another host port (on a shared machine).
hp=${KVCACHE_DOCKER_HOST_PORT:-7171}
if c1=$(docker run -d --label "kvcache.ci=$run_id" -p "$hp:7171" "$image" 2>/dev/null); then
    log "container 1 published as -p $hp:7171"
else
    log "host port $hp is taken; publishing container 1 on an ephemeral port instead"
    c1=$(docker run -d --label "kvcache.ci=$run_id" -p 127.0.0.1::7171 "$image")
fi
# Second container started now so both health checks run in parallel: password from a file (as a
# Docker secret would be), another port and a memory cap, all through KV_CACHE_* variables.
printf 's3cret-pw\n' >"$work/password"
chmod 644 "$work/password"
c2=$(docker run -d --label "kvcache.ci=$run_id" -p 127.0.0.1::7272 \
    -v "$work/password:/run/secrets/kvcache_password:ro" \
    -e KV_CACHE_PASSWORD_FILE=/run/secrets/kvcache_password \
    -e KV_CACHE_PORT=7272 -e KV_CACHE_MAX_MEMORY=64mb "$image")
p1=$(host_port "$c1" 7171)
p2=$(host_port "$c2" 7272)
wait_ping "$p1" || { docker logs "$c1" >&2; die "no PING reply through 127.0.0.1:$p1"; }
step "containers started (mapped ports $p1, $p2)"

if command -v nc >/dev/null; then # the README's own session
    out=$(printf 'PUT foo bar 60\nGET foo\nQUIT\n' | timeout 5 nc localhost "$p1" || true)
    check "README session through the mapped port (nc localhost $p1)" test "$out" = $'OK stored\nOK bar'
fi
out=$(session "$p1" 'PUT foo bar 60\nGET foo\nGET missing\nQUIT\n')
check "line protocol through the mapped port" \
    test "$out" = $'OK stored\nOK bar\nERROR key not found'
check "Redis protocol on the same port sees the same data" \
    test "$(redis-cli -p "$p1" GET foo)" = bar
check "server process runs as uid 10001" \
    test "$(docker top "$c1" -eo pid,uid,comm | awk '$3 == "kvcache-server" {print $2}')" = 10001
check "docker exec runs as uid 10001, not root" test "$(docker exec "$c1" id -u)" = 10001
check "kvcache-server is PID 1 (receives docker stop's SIGTERM)" \
    test "$(docker exec "$c1" cat /proc/1/comm)" = kvcache-server
check "all three binaries are in the image" \
    docker exec "$c1" sh -c 'command -v kvcache-server && command -v kvcache-cli && command -v kvcache-bench' >/dev/null

# --- configuration and password through the environment --------------------------------------------
check "KV_CACHE_PORT moves the server (PING on 7272 in the container)" \
    test "$(REDISCLI_AUTH=s3cret-pw redis-cli -p "$p2" PING)" = PONG
check "KV_CACHE_MAX_MEMORY reaches the server" \
    test "$(REDISCLI_AUTH=s3cret-pw redis-cli -p "$p2" CONFIG GET maxmemory | tail -n 1)" = 67108864
check "KV_CACHE_PASSWORD_FILE: unauthenticated commands are refused" \
    test "$(session "$p2" 'GET foo\nQUIT\n')" = "ERROR authentication required"
check "health check passes with the password from KV_CACHE_PASSWORD_FILE" \
    docker exec "$c2" kvcache-healthcheck
check "health check fails with a wrong KV_CACHE_PASSWORD" \
    fails_ docker exec -e KV_CACHE_PASSWORD=wrong "$c2" kvcache-healthcheck
check "kvcache-cli PING fails on NOAUTH (no password given)" \
    fails_ docker exec -e KV_CACHE_PASSWORD_FILE= "$c2" kvcache-healthcheck
check "kvcache-cli PING fails when nothing listens" \
    fails_ docker exec -e KV_CACHE_PORT=7999 "$c1" kvcache-healthcheck

check "Docker reports container 1 healthy (interval 10 s)" wait_health "$c1" healthy 40
check "Docker reports container 2 (password file, port 7272) healthy" wait_health "$c2" healthy 20
step "protocol, user, settings and health checks"

# Keys to find again after the restart below (container 1 keeps its anonymous /data volume).
for ((i = 0; i < 1000; i++)); do printf 'SET snap:%d v%d\n' "$i" "$i"; done >"$work/snap.txt"
redis-cli -p "$p1" <"$work/snap.txt" >/dev/null
redis-cli -p "$p1" SET snap:ttl kept EX 3600 >/dev/null

# --- docker stop: SIGTERM, exit 0, quickly, also with a client connected -----------------------------
exec {idle}<>"/dev/tcp/127.0.0.1/$p1"
printf 'PING\n' >&"$idle"
IFS= read -r -t 5 reply <&"$idle" || true
check "idle client connected before the stop" test "$reply" = "OK PONG"
for c in "$c1" "$c2"; do
    start=$(date +%s%N)
    docker stop "$c" >/dev/null
    ms=$((($(date +%s%N) - start) / 1000000))
    log "docker stop ${c:0:12}: ${ms} ms, exit code $(docker inspect -f '{{.State.ExitCode}}' "$c")"
    check "docker stop returns within 5 s" test "$ms" -lt 5000
    check "container exit code is 0" test "$(docker inspect -f '{{.State.ExitCode}}' "$c")" = 0
done
exec {idle}>&-
check "server logged its shutdown" grep -q 'kvcache-server stopped' <<<"$(docker logs "$c1" 2>&1)"
step "docker stop"

# --- snapshot: docker restart keeps the cache; a named volume carries it to a new container ---------
check "the stop saved a snapshot" grep -q 'snapshot saved' <<<"$(docker logs "$c1" 2>&1)"
docker start "$c1" >/dev/null
p1=$(host_port "$c1" 7171)
wait_ping "$p1" || { docker logs "$c1" >&2; die "no PING reply after docker start"; }
check "after a restart the keys are back (GET snap:999)" test "$(redis-cli -p "$p1" GET snap:999)" = v999
check "after a restart every key is back (DBSIZE >= 1001)" test "$(redis-cli -p "$p1" DBSIZE)" -ge 1001
ttl=$(redis-cli -p "$p1" TTL snap:ttl)
check "after a restart the TTL is kept ($ttl s)" test "$ttl" -gt 3000 -a "$ttl" -le 3600
check "the server logged the load" grep -q 'snapshot loaded' <<<"$(docker logs "$c1" 2>&1)"
check "the snapshot file belongs to uid 10001" \
    test "$(docker exec "$c1" stat -c %u /data/kvcache.snap)" = 10001
docker stop "$c1" >/dev/null
vol=kvcache-ci-data-$$
docker volume create --label "kvcache.ci=$run_id" "$vol" >/dev/null
c3=$(docker run -d --label "kvcache.ci=$run_id" -p 127.0.0.1::7171 -v "$vol:/data" --read-only "$image")
p3=$(host_port "$c3" 7171)
wait_ping "$p3" || { docker logs "$c3" >&2; die "no PING reply from the named-volume container"; }
redis-cli -p "$p3" SET carried yes >/dev/null
docker stop "$c3" >/dev/null
docker rm "$c3" >/dev/null
c4=$(docker run -d --label "kvcache.ci=$run_id" -p 127.0.0.1::7171 -v "$vol:/data" --read-only "$image")
p4=$(host_port "$c4" 7171)
wait_ping "$p4" || { docker logs "$c4" >&2; die "no PING reply from the second named-volume container"; }
check "a new container on the same named volume (read-only root) reads the key back" \
    test "$(redis-cli -p "$p4" GET carried)" = yes
docker stop "$c4" >/dev/null
step "snapshot across restarts"

# --- compose: the cluster profile ----------------------------------------------------------------------
if [[ ${KVCACHE_DOCKER_SKIP_CLUSTER:-0} == 1 ]]; then
    log "compose cluster skipped (KVCACHE_DOCKER_SKIP_CLUSTER=1)"
else
    check "compose file is valid" compose --profile cluster config -q
    check "compose mounts the named volume kvcache-data at /data" \
        grep -q 'kvcache-data' <<<"$(compose config 2>/dev/null)"
    export KVCACHE_PROXY_PUBLISH=127.0.0.1: # "127.0.0.1::22121": an ephemeral host port
    export KVCACHE_MC_PROXY_PUBLISH=127.0.0.1: # the memcache pool's port, ephemeral too
    touch "$work/compose-up"
    compose --profile cluster build nutcracker >"$work/compose-build.log" 2>&1 ||
        { tail -n 30 "$work/compose-build.log" >&2; die "building the nutcracker image failed"; }
    step "nutcracker image built"
    compose --profile cluster up -d nutcracker >"$work/compose-up.log" 2>&1 ||
        { cat "$work/compose-up.log" >&2; die "compose up failed"; }
    proxy=$(compose port nutcracker 22121 | sed 's/.*://')
    proxy_c=$(compose ps -q nutcracker)
    check "nutcracker healthy" wait_health "$proxy_c" healthy 30
    step "cluster up (proxy on 127.0.0.1:$proxy)"

    keys=600
    for ((i = 0; i < keys; i++)); do printf 'SET key:%d value-%d\n' "$i" "$i"; done >"$work/set.txt"
    ok=$(redis-cli -p "$proxy" <"$work/set.txt" | grep -c '^OK$' || true)
    check "$keys SETs through nutcracker answered OK" test "$ok" = "$keys"
    declare -A on_node
    total=0
    for n in 1 2 3; do
        stats=$(compose exec -T "kvcache-$n" kvcache-cli STATS)
        on_node[$n]=$(sed -n 's/.*keys=\([0-9]*\).*/\1/p' <<<"$stats")
        log "kvcache-$n holds ${on_node[$n]} keys"
        check "kvcache-$n holds some of the keys" test "${on_node[$n]:-0}" -gt 0
        total=$((total + ${on_node[$n]:-0}))
    done
    check "the nodes hold exactly the $keys keys between them" test "$total" = "$keys"

    start=$(date +%s%N)
    compose stop kvcache-2 >/dev/null 2>&1
    ms=$((($(date +%s%N) - start) / 1000000))
    node2=$(compose ps -q kvcache-2)
    log "stopping kvcache-2 with the proxy's connection open: ${ms} ms"
    check "kvcache-2 exits 0 with the proxy connected" \
        test "$(docker inspect -f '{{.State.ExitCode}}' "$node2")" = 0
    for ((i = 0; i < keys; i++)); do printf 'GET key:%d\n' "$i"; done >"$work/get.txt"
    # Replies for kvcache-2's keys are errors until nutcracker ejects it, nil after; the others' stay.
    readable=$(redis-cli -p "$proxy" <"$work/get.txt" | grep -c '^value-' || true)
    log "$readable of $keys keys readable with kvcache-2 stopped"
    check "every key on kvcache-1 and kvcache-3 still readable through the proxy" \
        test "$readable" = "$((on_node[1] + on_node[3]))"
    step "cluster: keys spread, node loss"
fi

log "docker steps took $((SECONDS - t0)) s"
printf 'docker: %d passed, %d failed\n' "$passes" "$fails"
((fails == 0))
