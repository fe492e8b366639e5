#!/usr/bin/env bash
# The on-instance half of scripts/aws.sh deploy and test: copied to each EC2 instance and run there
# (root where it says so). It runs on any Linux with bash, so CI runs it locally too.
#
#   kvcache-node.sh install-docker
#       Install and start Docker (dnf on Amazon Linux 2023, apt-get on Debian/Ubuntu); no-op if present.
#   kvcache-node.sh pull --image IMAGE
#   kvcache-node.sh deploy-docker --image IMAGE [--port 7171] [--bind 0.0.0.0] [--name kvcache]
#                                 [--no-pull] [--no-snapshot] [--tls-dir DIR] [-- server flags...]
#       (Re)start the server container with restart policy unless-stopped; wait until it answers.
#       The snapshot lives in the named volume NAME-data, so a redeploy keeps the cache (the old
#       container saves on its way out, the new one loads).
#   kvcache-node.sh deploy-binary --binary FILE [--port 7171] [--init systemd|none] [--prefix DIR]
#                                 [--no-snapshot] [--tls-dir DIR] [-- server flags...]
#       Install FILE as PREFIX/usr/local/bin/kvcache-server with a hardened systemd unit and
#       (re)start it; --init none starts it in the background instead (no systemd, e.g. in CI).
#       The snapshot is PREFIX/var/lib/kvcache/kvcache.snap (systemd's StateDirectory), so a
#       redeploy keeps the cache. --no-snapshot: start empty every time, as before.
#   kvcache-node.sh stop [--name kvcache] [--init systemd|none|docker] [--prefix DIR]
#   kvcache-node.sh wait-ready --host HOST --port PORT [--timeout SECS] [--tls-dir DIR]
#       Until the server answers PING (line protocol, AUTH first if KV_CACHE_PASSWORD is set).
#   kvcache-node.sh bench (--image IMAGE | --bench-bin FILE) --host HOST --port PORT
#                         [--connections N] [--requests N] [--ratio R] [--ttl S] [--tls-dir DIR]
#                         --output FILE
#       Run kvcache-bench (from the image, or the binary) and write its JSON report to FILE.
# --tls-dir: TLS only. For the deploys DIR holds server.crt and server.key (installed under
# PREFIX/etc/kvcache/tls, readable by the server's user only) and PORT becomes the TLS port; for
# wait-ready and bench, DIR holds ca.crt to verify the server with (wait-ready on the server
# itself needs none).
set -euo pipefail

die() {
    printf 'kvcache-node: error: %s\n' "$*" >&2
    exit 1
}
log() { printf 'kvcache-node: %s\n' "$*" >&2; }

# Options common to the subcommands; unset ones keep these defaults.
IMAGE="" PORT=7171 BIND=0.0.0.0 NAME=kvcache PULL=1 BINARY="" INIT=systemd PREFIX="" SNAPSHOT=1
HOST="" TIMEOUT=60 BENCH_BIN="" CONNECTIONS=100 REQUESTS=1000 RATIO=0.5 TTL=0 OUTPUT="" TLS_DIR=""
SERVER_ARGS=()

parse() {
    while (($# > 0)); do
        case $1 in
        --no-pull)
            PULL=0
            shift
            continue
            ;;
        --no-snapshot)
            SNAPSHOT=0
            shift
            continue
            ;;
        --)
            shift
            SERVER_ARGS=("$@")
            return 0
            ;;
        esac
        (($# >= 2)) || die "option $1 needs a value"
        case $1 in
        --image) IMAGE=$2 ;;
        --port) PORT=$2 ;;
        --bind) BIND=$2 ;;
        --name) NAME=$2 ;;
        --binary) BINARY=$2 ;;
        --init) INIT=$2 ;;
        --prefix) PREFIX=$2 ;;
        --host) HOST=$2 ;;
        --timeout) TIMEOUT=$2 ;;
        --bench-bin) BENCH_BIN=$2 ;;
        --connections) CONNECTIONS=$2 ;;
        --requests) REQUESTS=$2 ;;
        --ratio) RATIO=$2 ;;
        --ttl) TTL=$2 ;;
        --output) OUTPUT=$2 ;;
        --tls-dir) TLS_DIR=$2 ;;
        *) die "unknown option '$1'" ;;
        esac
        shift 2
    done
}

need_root() { [[ $(id -u) == 0 ]] || die "$1 must run as root (sudo)"; }

# --- readiness ---------------------------------------------------------------------------------------
ping_once() { # ping_once host port: prints the first line of the reply to PING (3 s at most)
    if [[ -n $TLS_DIR ]]; then
        ping_once_tls "$@"
        return
    fi
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        if [[ -n ${KV_CACHE_PASSWORD:-} ]]; then
            printf "AUTH %s\n" "$KV_CACHE_PASSWORD" >&3
            IFS= read -r _ <&3
        fi
        printf "PING\nQUIT\n" >&3
        IFS= read -r reply <&3
        printf "%s" "$reply"
    ' _ "$1" "$2" 2>/dev/null
}

ping_once_tls() { # the same over TLS, with openssl s_client (verifying when TLS_DIR has ca.crt)
    local verify=()
    [[ ! -f $TLS_DIR/ca.crt ]] || verify=(-CAfile "$TLS_DIR/ca.crt" -verify_return_error)
    {
        if [[ -n ${KV_CACHE_PASSWORD:-} ]]; then printf 'AUTH %s\n' "$KV_CACHE_PASSWORD"; fi
        printf 'PING\nQUIT\n'
    } | timeout 3 openssl s_client -quiet -connect "$1:$2" ${verify[@]+"${verify[@]}"} 2>/dev/null |
        { [[ -z ${KV_CACHE_PASSWORD:-} ]] || IFS= read -r _; IFS= read -r reply && printf '%s' "$reply"; }
}

# install_tls DIR: copies server.crt and server.key to PREFIX/etc/kvcache/tls (key mode 600,
# owned by OWNER when given) and prints that directory.
install_tls() {
    local dest=$PREFIX/etc/kvcache/tls owner=${1:-}
    [[ -f $TLS_DIR/server.crt && -f $TLS_DIR/server.key ]] || die "$TLS_DIR must hold server.crt and server.key"
    mkdir -p "$dest"
    install -m 644 "$TLS_DIR/server.crt" "$dest/server.crt"
    install -m 600 "$TLS_DIR/server.key" "$dest/server.key"
    if [[ -n $owner ]]; then chown "$owner" "$dest/server.key"; fi
    printf '%s' "$dest"
}

cmd_wait_ready() {
    [[ -n $HOST ]] || die "wait-ready needs --host"
    [[ -z $TLS_DIR ]] || command -v openssl >/dev/null ||
        die "checking a TLS server needs openssl (dnf install openssl, or apt-get install openssl)"
    local deadline=$((SECONDS + TIMEOUT)) reply=""
    while ((SECONDS < deadline)); do
        reply=$(ping_once "$HOST" "$PORT") || reply=""
        reply=${reply%$'\r'}
        if [[ $reply == "OK PONG" ]]; then
            log "$HOST:$PORT answers PING"
            return 0
        fi
        sleep 0.5
    done
    die "$HOST:$PORT did not answer PING within ${TIMEOUT} s${reply:+ (last reply: $reply)}"
}

# --- docker ------------------------------------------------------------------------------------------
cmd_install_docker() {
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        log "Docker is installed and running"
        return 0
    fi
    need_root install-docker
    if command -v dnf >/dev/null; then
        dnf install -y -q docker
    elif command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io
    else
        die "no dnf or apt-get: install Docker by hand"
    fi
    systemctl enable --now docker
    docker info >/dev/null || die "Docker did not start"
    log "Docker installed and started"
}

cmd_pull() {
    [[ -n $IMAGE ]] || die "pull needs --image"
    log "pulling $IMAGE"
    docker pull -q "$IMAGE" >/dev/null || die "cannot pull $IMAGE: is it public, and is the name right?"
}

cmd_deploy_docker() {
    [[ -n $IMAGE ]] || die "deploy-docker needs --image"
    if ((PULL)); then
        cmd_pull
    else
        docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE is not present (and --no-pull)"
    fi
    if docker container inspect "$NAME" >/dev/null 2>&1; then
        log "replacing the running container $NAME"
        # SIGTERM: the server saves its snapshot to the volume, then exits.
        docker stop -t 60 "$NAME" >/dev/null || true
        docker rm -f -v "$NAME" >/dev/null
    fi
    local data=(-e KV_CACHE_SNAPSHOT_FILE=)
    if ((SNAPSHOT)); then
        data=(-v "$NAME-data:/data")
    fi
    local tls=()
    if [[ -n $TLS_DIR ]]; then
        # The image runs as uid 10001; the key is made readable to it alone. Settings go in the
        # environment, which the image's health check reads too.
        local dir
        dir=$(install_tls 10001:10001)
        tls=(-v "$dir:/tls:ro" -e KV_CACHE_PORT=0 -e KV_CACHE_TLS_PORT=7171
            -e KV_CACHE_TLS_CERT_FILE=/tls/server.crt -e KV_CACHE_TLS_KEY_FILE=/tls/server.key)
    fi
    docker run -d --name "$NAME" --restart unless-stopped \
        -p "$BIND:$PORT:7171" --log-opt max-size=10m --log-opt max-file=3 "${data[@]}" ${tls[@]+"${tls[@]}"} \
        "$IMAGE" ${SERVER_ARGS[@]+"${SERVER_ARGS[@]}"} >/dev/null
    local host=$BIND
    [[ $host != 0.0.0.0 ]] || host=127.0.0.1
    HOST=$host
    if ! cmd_wait_ready; then
        docker logs --tail 20 "$NAME" >&2 || true
        exit 1
    fi
    log "container $NAME ($IMAGE) serves on $BIND:$PORT"
}

# --- binary ------------------------------------------------------------------------------------------
unit_file() { # unit_file exec-path
    local ports="--port $PORT" creds="" state=""
    if [[ -n $TLS_DIR ]]; then
        # DynamicUser cannot read files under /etc owned by root: systemd hands them over as
        # credentials (%d is their directory). A new deploy restarts the service with new ones.
        ports="--port 0 --tls-port $PORT --tls-cert-file %d/server.crt --tls-key-file %d/server.key"
        creds="LoadCredential=server.crt:$PREFIX/etc/kvcache/tls/server.crt
LoadCredential=server.key:$PREFIX/etc/kvcache/tls/server.key
"
    fi
    if ((SNAPSHOT)); then
        # systemd keeps the state directory across restarts (and hands it to each new dynamic
        # user): the server saves there on SIGTERM and loads at start, so a redeploy stays warm.
        state="StateDirectory=kvcache
StateDirectoryMode=0700
Environment=KV_CACHE_SNAPSHOT_FILE=%S/kvcache/kvcache.snap
"
    fi
    cat <<EOF
[Unit]
Description=kvcache in-memory key-value cache
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=$1 --host $BIND $ports${SERVER_ARGS[*]+ ${SERVER_ARGS[*]}}
${creds}${state}# On SIGTERM the server saves its snapshot (if any) and exits 0.
KillSignal=SIGTERM
TimeoutStopSec=60
Restart=on-failure
RestartSec=2
LimitNOFILE=65536
# A throwaway user and a read-only view of the system: the server writes only its snapshot, in
# its state directory.
DynamicUser=yes
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
LockPersonality=yes
MemoryDenyWriteExecute=yes

[Install]
WantedBy=multi-user.target
EOF
}

cmd_deploy_binary() {
    [[ -n $BINARY ]] || die "deploy-binary needs --binary"
    [[ -f $BINARY ]] || die "$BINARY does not exist"
    [[ $INIT == systemd || $INIT == none ]] || die "--init is systemd or none, not '$INIT'"
    if [[ $INIT == systemd ]]; then need_root "deploy-binary --init systemd"; fi
    local bin=$PREFIX/usr/local/bin/kvcache-server unit=$PREFIX/etc/systemd/system/kvcache.service
    mkdir -p "$(dirname "$bin")" "$(dirname "$unit")"
    if [[ $INIT == none ]]; then cmd_stop_none; fi
    local ports=(--port "$PORT") tls_files=""
    if [[ -n $TLS_DIR ]]; then
        tls_files=$(install_tls)
        ports=(--port 0 --tls-port "$PORT" --tls-cert-file "$tls_files/server.crt"
            --tls-key-file "$tls_files/server.key")
    fi
    install -m 755 "$BINARY" "$bin.new"
    mv -f "$bin.new" "$bin"
    unit_file "$bin" >"$unit.new"
    mv -f "$unit.new" "$unit"
    if [[ $INIT == systemd ]]; then
        systemctl daemon-reload
        systemctl enable kvcache.service >/dev/null 2>&1
        systemctl restart kvcache.service
    else
        mkdir -p "$PREFIX/run" "$PREFIX/var/log" "$PREFIX/var/lib/kvcache"
        local snapshot=""
        if ((SNAPSHOT)); then snapshot=$PREFIX/var/lib/kvcache/kvcache.snap; fi
        KV_CACHE_SNAPSHOT_FILE=$snapshot nohup "$bin" --host "$BIND" "${ports[@]}" ${SERVER_ARGS[@]+"${SERVER_ARGS[@]}"} \
            >>"$PREFIX/var/log/kvcache.log" 2>&1 </dev/null &
        echo $! >"$PREFIX/run/kvcache.pid"
    fi
    HOST=127.0.0.1
    if ! cmd_wait_ready; then
        if [[ $INIT == systemd ]]; then journalctl -u kvcache.service -n 20 --no-pager >&2 || true; fi
        if [[ $INIT == none ]]; then tail -n 20 "$PREFIX/var/log/kvcache.log" >&2 || true; fi
        exit 1
    fi
    log "kvcache-server ($INIT) serves on port $PORT"
}

cmd_stop_none() {
    local pidfile=$PREFIX/run/kvcache.pid pid i
    [[ -f $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if kill -TERM "$pid" 2>/dev/null; then
        # It saves its snapshot before exiting: allow a minute, as the systemd unit does.
        for ((i = 0; i < 600; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && die "kvcache-server ($pid) still running 60 s after SIGTERM"
    fi
    rm -f "$pidfile"
}

cmd_stop() {
    case $INIT in
    systemd) systemctl stop kvcache.service ;;
    none) cmd_stop_none ;;
    docker)
        # SIGTERM first, so the server saves its snapshot to the volume.
        docker stop -t 60 "$NAME" >/dev/null 2>&1 || true
        docker rm -f -v "$NAME" >/dev/null 2>&1 || true
        ;;
    *) die "--init is systemd, none or docker, not '$INIT'" ;;
    esac
    log "stopped ($INIT)"
}

# --- bench -------------------------------------------------------------------------------------------
cmd_bench() {
    [[ -n $HOST && -n $OUTPUT ]] || die "bench needs --host and --output"
    [[ -n $IMAGE || -n $BENCH_BIN ]] || die "bench needs --image or --bench-bin"
    local dir file
    dir=$(dirname "$OUTPUT")
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    file=$(basename "$OUTPUT")
    rm -f "$dir/$file"
    local args=(--host "$HOST" --port "$PORT" --connections "$CONNECTIONS" --requests "$REQUESTS"
        --ratio "$RATIO" --ttl "$TTL")
    local ca=""
    if [[ -n $TLS_DIR ]]; then
        [[ -f $TLS_DIR/ca.crt ]] || die "$TLS_DIR must hold ca.crt"
        ca=$(cd "$TLS_DIR" && pwd)/ca.crt
    fi
    if [[ -n $IMAGE ]]; then
        # The bench from the server's image, on the host network, writing into $dir as this user.
        local docker=(docker) mount=()
        docker info >/dev/null 2>&1 || docker=(sudo docker)
        if [[ -n $ca ]]; then
            mount=(-v "$ca:/tls/ca.crt:ro")
            args+=(--tls --cacert /tls/ca.crt)
        fi
        "${docker[@]}" run --rm --network host --user "$(id -u):$(id -g)" -v "$dir:/results" \
            ${mount[@]+"${mount[@]}"} --entrypoint kvcache-bench "$IMAGE" "${args[@]}" --output "/results/$file"
    else
        [[ -x $BENCH_BIN ]] || die "$BENCH_BIN is not an executable"
        if [[ -n $ca ]]; then args+=(--tls --cacert "$ca"); fi
        "$BENCH_BIN" "${args[@]}" --output "$dir/$file"
    fi
    [[ -s $dir/$file ]] || die "kvcache-bench wrote no report to $dir/$file"
    log "report in $dir/$file"
}

main() {
    local cmd=${1:-}
    [[ -n $cmd ]] || die "usage: kvcache-node.sh install-docker|pull|deploy-docker|deploy-binary|stop|wait-ready|bench [options]"
    shift
    parse "$@"
    case $cmd in
    install-docker) cmd_install_docker ;;
    pull) cmd_pull ;;
    deploy-docker) cmd_deploy_docker ;;
    deploy-binary) cmd_deploy_binary ;;
    stop) cmd_stop ;;
    wait-ready) cmd_wait_ready ;;
    bench) cmd_bench ;;
    *) die "unknown subcommand '$cmd'" ;;
    esac
}

main "$@"
