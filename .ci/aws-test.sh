#!/usr/bin/env bash
# shellcheck disable=SC2016 # JMESPath literals in --query are backquoted, not shell expansions
# Tests the AWS deployment scripts without AWS:
#   1. shellcheck on every shell script of the repository;
#   2. scripts/aws.sh against moto_server (a local EC2/SSM/STS emulator from PyPI) with the real aws
#      CLI (awscli from PyPI), both in a venv under /tmp: the clear errors without a CLI or
#      credentials, create -> create again -> status -> teardown (refused without a terminal,
#      cancelled at the prompt, then --yes) -> teardown again, with the security rules, the key
#      file's mode, the instances' shutdown behaviour and user data checked, and nothing left after;
#   3. scripts/remote/kvcache-node.sh, the on-instance half of deploy and test, run here: binary
#      deploy without systemd (and its systemd unit checked with systemd-analyze), docker deploy with
#      the kv-cache image built by .ci/docker-test.sh, and kvcache-bench through both; each also
#      over TLS (TLS=yes) with certificates from scripts/tls-certs.sh; a redeploy of either keeps
#      the cache (the snapshot).
# Not exercised (no AWS here): real SSH and scp to instances, dnf/docker pull on Amazon Linux,
# systemd actually running the unit, security groups actually filtering traffic, the self-termination.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
venv=${KVCACHE_CI_AWS_VENV:-/tmp/kvcache-ci-aws-venv}
work=$(mktemp -d "${TMPDIR:-/tmp}/kvcache-aws-test.XXXXXX")
passed=0
failed=0
moto_pid=""
docker_name=kvcache-ci-node-$$

log() { printf '[aws-test] %s\n' "$*" >&2; }
die() {
    printf '[aws-test] FAIL: %s\n' "$*" >&2
    exit 1
}
check() { # check "description" command...
    local what=$1
    shift
    if "$@"; then
        log "ok: $what"
        passed=$((passed + 1))
    else
        log "FAIL: $what"
        failed=$((failed + 1))
    fi
}
fails_() { ! "$@"; }

cleanup() {
    local rc=$?
    set +e
    [[ -z $moto_pid ]] || kill "$moto_pid" 2>/dev/null
    if [[ -f $work/root/run/kvcache.pid ]]; then
        bash scripts/remote/kvcache-node.sh stop --init none --prefix "$work/root" 2>/dev/null
    fi
    docker rm -f -v "$docker_name" >/dev/null 2>&1
    docker volume rm -f "$docker_name-data" >/dev/null 2>&1
    [[ -z $moto_pid ]] || wait "$moto_pid" 2>/dev/null
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }
apt_install() { # apt_install package...
    log "installing $*"
    if [[ ! -f $work/apt-updated ]]; then
        as_root apt-get update -qq
        touch "$work/apt-updated"
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- 1. shellcheck -------------------------------------------------------------------------------------
command -v shellcheck >/dev/null || apt_install shellcheck
mapfile -t scripts < <(
    {
        git ls-files '*.sh' '.ci/*' 'scripts/*' 'deploy/*' 2>/dev/null
        ls .ci/*.sh scripts/*.sh scripts/remote/*.sh deploy/*.sh scripts/config.sh.example 2>/dev/null
    } | sort -u | while read -r f; do
        [[ -f $f ]] && head -n 1 "$f" | grep -qE '^#!.*(bash|sh)' && echo "$f"
    done
)
scripts+=(scripts/config.sh.example scripts/lib.sh)
log "shellcheck ${#scripts[@]} files: ${scripts[*]}"
check "shellcheck is clean" shellcheck --shell=bash "${scripts[@]}"

# --- 2. scripts/aws.sh against moto --------------------------------------------------------------------
if [[ ! -x $venv/bin/moto_server || ! -x $venv/bin/aws ]]; then
    log "creating $venv with moto[server] and awscli"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5,<6' 'awscli>=1.32,<2'
fi
port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!

export PATH=$venv/bin:$PATH
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=$work/aws-config AWS_SHARED_CREDENTIALS_FILE=$work/aws-credentials
unset AWS_PROFILE AWS_DEFAULT_REGION AWS_REGION
export KVCACHE_AWS_STATE_DIR=$work/state KVCACHE_AWS_CONFIG=$work/config.sh
state=$work/state
for ((i = 0; i < 100; i++)); do
    aws --region us-east-1 sts get-caller-identity >/dev/null 2>&1 && break
    sleep 0.2
done
((i < 100)) || { cat "$work/moto.log" >&2; die "moto_server did not start"; }
log "moto_server on 127.0.0.1:$port (pid $moto_pid)"

cat >"$work/config.sh" <<'EOF'
DOCKER_IMAGE="kv-cache"
AWS_REGION="us-east-1"
INSTANCE_TYPE="t3.small"
KEY_NAME="kvcache-ci-key"
SECURITY_GROUP="kvcache-ci-sg"
AMI_ID=""
# TEST-NET-3: a documentation address, nothing real.
SSH_CIDR="203.0.113.7/32"
AUTO_TERMINATE_HOURS=4
EOF

awsq() { aws --region us-east-1 --output text "$@"; }
# capture command...: stdout to $work/out, stderr to $work/err, no terminal on stdin.
capture() { "$@" </dev/null >"$work/out" 2>"$work/err"; }
aws_sh() { capture bash scripts/aws.sh "$@"; }
out_has() { cat "$work/out" "$work/err" | grep -q -- "$1"; }
one_error_line() { [[ $(grep -c . "$work/err") == 1 ]] && grep -q "^aws.sh: error: $1" "$work/err"; }
show_out() { cat "$work/out" "$work/err" >&2; }
live_ids() {
    awsq ec2 describe-instances --filters Name=instance-state-name,Values=pending,running \
        "Name=tag:kvcache:stack,Values=kvcache-ci-sg" --query 'Reservations[].Instances[].InstanceId' |
        tr '\t' '\n' | grep . || true
}
count_live() { live_ids | grep -c . || true; }

# Clear one-line errors before anything else.
nocli_path=$(tr ':' '\n' <<<"$PATH" | while read -r d; do [[ -x $d/aws ]] || printf '%s:' "$d"; done)
check "without the aws CLI: one-line error, non-zero exit" \
    fails_ capture env PATH="$nocli_path" bash scripts/aws.sh status
check "  ... that names the aws CLI" one_error_line "the aws CLI is not installed"
check "without credentials: non-zero exit" \
    fails_ capture env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
    bash scripts/aws.sh status
check "  ... with a one-line error about credentials" one_error_line "AWS credentials are missing"
check "unknown subcommand: non-zero exit" fails_ aws_sh frobnicate

check "status before create" aws_sh status
check "  ... says nothing is running" out_has "No kvcache instances"
check "teardown before create is a no-op" aws_sh teardown --yes
check "  ... and says so" out_has "Nothing to tear down"
check "deploy before create: error" fails_ aws_sh deploy
check "  ... pointing at create" out_has "run 'scripts/aws.sh create' first"

# SSH_CIDR open to the world is refused before anything is made.
sed 's|^SSH_CIDR=.*|SSH_CIDR="0.0.0.0/0"|' "$work/config.sh" >"$work/open.sh"
check "SSH_CIDR=0.0.0.0/0 is refused" fails_ env KVCACHE_AWS_CONFIG="$work/open.sh" bash scripts/aws.sh create </dev/null
check "  ... and nothing was created" test "$(count_live)" = 0

start=$SECONDS
check "create" aws_sh create
log "create took $((SECONDS - start)) s against moto"
show_out
check "  ... two instances running" test "$(count_live)" = 2
check "  ... prints the hourly cost" out_has 'Cost: 2 x t3.small running = about [$]0.053 per hour'
check "  ... prints when they self-terminate" out_has "terminate themselves around"
check "  ... key file exists with mode 600" test "$(stat -c %a "$state/kvcache-ci-key.pem" 2>/dev/null)" = 600
check "  ... state file records both instances" grep -q '^CLIENT_ID=i-' "$state/.instances"
sg=$(awsq ec2 describe-security-groups --group-names kvcache-ci-sg --query 'SecurityGroups[0].GroupId')
perms=$(aws --region us-east-1 --output json ec2 describe-security-groups --group-ids "$sg" \
    --query 'SecurityGroups[0].IpPermissions')
printf '%s\n' "$perms" >"$work/perms.json"
check "  ... no ingress rule open to 0.0.0.0/0 or ::/0" fails_ grep -qE '"(0\.0\.0\.0/0|::/0)"' "$work/perms.json"
check "  ... SSH only from SSH_CIDR" test \
    "$(awsq ec2 describe-security-groups --group-ids "$sg" --query 'SecurityGroups[0].IpPermissions[?FromPort==`22`].IpRanges[].CidrIp')" \
    = 203.0.113.7/32
check "  ... 7171 only from the group itself" test \
    "$(awsq ec2 describe-security-groups --group-ids "$sg" --query 'SecurityGroups[0].IpPermissions[?FromPort==`7171`].[length(IpRanges), length(Ipv6Ranges), UserIdGroupPairs[0].GroupId]' | tr '\t' ' ')" \
    = "0 0 $sg"
check "  ... exactly two ingress rules" test "$(awsq ec2 describe-security-groups --group-ids "$sg" --query 'length(SecurityGroups[0].IpPermissions)')" = 2
for id in $(live_ids); do
    check "  ... $id shuts down into termination" test \
        "$(awsq ec2 describe-instance-attribute --instance-id "$id" --attribute instanceInitiatedShutdownBehavior --query 'InstanceInitiatedShutdownBehavior.Value')" = terminate
    check "  ... $id user data powers off after 4 h" grep -q '^shutdown -P +240 ' <(
        awsq ec2 describe-instance-attribute --instance-id "$id" --attribute userData --query 'UserData.Value' | base64 -d
    )
    check "  ... $id is a t3.small with the key pair, in the group" test \
        "$(awsq ec2 describe-instances --instance-ids "$id" --query 'Reservations[0].Instances[0].[InstanceType, KeyName, SecurityGroups[0].GroupId]' | tr '\t' ' ')" \
        = "t3.small kvcache-ci-key $sg"
done
mapfile -t ids < <(live_ids)
check "  ... both in one subnet" test "$(awsq ec2 describe-instances --instance-ids "${ids[@]}" --query 'Reservations[].Instances[].SubnetId' | tr '\t' '\n' | sort -u | grep -c .)" = 1

check "create again (idempotent)" aws_sh create
check "  ... reuses both instances" test "$(grep -c 'is running' "$work/out")" = 2
check "  ... still exactly two instances" test "$(count_live)" = 2
check "status" aws_sh status
show_out
check "  ... lists server and client running" test "$(grep -cE '^(server|client) +i-[0-9a-f]+ +running' "$work/out")" = 2
check "  ... prints the cost" out_has "per hour"

# deploy and test refuse bad settings before they try SSH.
sed 's|^DOCKER_IMAGE=.*|DOCKER_IMAGE="yourname/kv-cache:latest"|' "$work/config.sh" >"$work/placeholder.sh"
check "deploy with the example's placeholder DOCKER_IMAGE is refused" \
    fails_ capture env KVCACHE_AWS_CONFIG="$work/placeholder.sh" bash scripts/aws.sh deploy
check "  ... saying to set DOCKER_IMAGE" one_error_line "set DOCKER_IMAGE"
mkdir -p "$work/fakebin"
printf '#!/bin/sh\n' | tee "$work/fakebin/kvcache-server" >"$work/fakebin/kvcache-bench"
chmod +x "$work/fakebin/kvcache-server" "$work/fakebin/kvcache-bench"
{
    cat "$work/config.sh"
    printf 'DEPLOY_MODE="binary"\nBINARY_DIR="%s"\n' "$work/fakebin"
} >"$work/binary.sh"
check "binary deploy of a non-Linux binary is refused" \
    fails_ capture env KVCACHE_AWS_CONFIG="$work/binary.sh" bash scripts/aws.sh deploy
check "  ... saying why" one_error_line ".*is not a Linux binary"
check "test before deploy is refused" fails_ aws_sh test
check "  ... pointing at deploy" one_error_line "nothing deployed yet"
check "ssh to an unknown role is refused" fails_ aws_sh ssh database
check "  ... saying so" one_error_line "ssh takes 'server' or 'client'"

# A changed SSH address replaces the old rule on re-run.
sed 's|^SSH_CIDR=.*|SSH_CIDR="198.51.100.9/32"|' "$work/config.sh" >"$work/moved.sh"
check "create with a new SSH_CIDR" env KVCACHE_AWS_CONFIG="$work/moved.sh" bash scripts/aws.sh create </dev/null >/dev/null
check "  ... SSH now only from the new address" test \
    "$(awsq ec2 describe-security-groups --group-ids "$sg" --query 'SecurityGroups[0].IpPermissions[?FromPort==`22`].IpRanges[].CidrIp')" \
    = 198.51.100.9/32
# A rule added by hand beside the right one is revoked too.
awsq ec2 authorize-security-group-ingress --group-id "$sg" --protocol tcp --port 22 --cidr 192.0.2.1/32 >/dev/null
check "create again with an extra SSH rule added by hand" env KVCACHE_AWS_CONFIG="$work/moved.sh" bash scripts/aws.sh create </dev/null >/dev/null
check "  ... SSH again only from SSH_CIDR" test \
    "$(awsq ec2 describe-security-groups --group-ids "$sg" --query 'SecurityGroups[0].IpPermissions[?FromPort==`22`].IpRanges[].CidrIp')" \
    = 198.51.100.9/32

check "teardown without a terminal and without --yes is refused" fails_ aws_sh teardown
check "  ... with a one-line reason" one_error_line "refusing to tear down without confirmation"
check "  ... and both instances still run" test "$(count_live)" = 2
if command -v script >/dev/null; then
    printf 'n\n' | script -qec "bash scripts/aws.sh teardown" /dev/null >"$work/out" 2>"$work/err" || true
    check "teardown on a terminal asks, and 'n' cancels" out_has "Go ahead? \[y/N\]"
    check "  ... nothing changed" test "$(count_live)" = 2
fi
start=$SECONDS
check "teardown --yes" aws_sh teardown --yes
log "teardown took $((SECONDS - start)) s against moto"
show_out
check "  ... no instance left running" test "$(count_live)" = 0
check "  ... security group deleted" fails_ awsq ec2 describe-security-groups --group-names kvcache-ci-sg
check "  ... key pair deleted" fails_ awsq ec2 describe-key-pairs --key-names kvcache-ci-key
check "  ... key file deleted" test ! -e "$state/kvcache-ci-key.pem"
check "  ... state file deleted" test ! -e "$state/.instances"
check "teardown again is a no-op" aws_sh teardown --yes
check "  ... and says so" out_has "Nothing to tear down"

# A stack whose state file was lost is still found (by its tagged group) and torn down.
check "create (second stack)" aws_sh create
rm -f "$state/.instances"
check "status without a state file finds the group" aws_sh status
check "  ... and its instances" out_has "Instances in it: i-"
check "teardown --yes without a state file" aws_sh teardown --yes
check "  ... no instance left running" test "$(count_live)" = 0
check "  ... security group deleted" fails_ awsq ec2 describe-security-groups --group-names kvcache-ci-sg
check "  ... key pair deleted" fails_ awsq ec2 describe-key-pairs --key-names kvcache-ci-key

# A group of the same name that this script did not make is never adopted (nor deleted).
vpc=$(awsq ec2 describe-vpcs --filters Name=is-default,Values=true --query 'Vpcs[0].VpcId')
foreign=$(awsq ec2 create-security-group --group-name kvcache-ci-sg --vpc-id "$vpc" --description "someone else's" --query GroupId)
check "create refuses a same-named group it did not make" fails_ aws_sh create
check "  ... saying so" out_has "was not made by this script"
check "teardown leaves that group alone" aws_sh teardown --yes
check "  ... it still exists" awsq ec2 describe-security-groups --group-ids "$foreign"
awsq ec2 delete-security-group --group-id "$foreign" >/dev/null
aws ec2 delete-key-pair --region us-east-1 --key-name kvcache-ci-key >/dev/null 2>&1 || true
rm -rf "$state"

kill "$moto_pid"
wait "$moto_pid" 2>/dev/null || true
moto_pid=""

# --- 3. the on-instance script, run here ----------------------------------------------------------------
cargo build --release --locked --bins -q
node=scripts/remote/kvcache-node.sh
free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
valid_report() { # valid_report file connections requests: the bench's JSON, all requests made, none failed
    "$venv/bin/python" - "$@" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
total = int(sys.argv[2]) * int(sys.argv[3])
assert r["total_requests"] == total, (r["total_requests"], total)
assert r["failed_requests"] == 0, r["failed_requests"]
assert r["connections"] == int(sys.argv[2]) and r["requests_per_connection"] == int(sys.argv[3])
assert r["requests_per_second"] > 0
EOF
}

kv() { # kv port line: one line-protocol request on 127.0.0.1:port, prints the reply line
    local fd reply=""
    exec {fd}<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf '%s\nQUIT\n' "$2" >&"$fd"
    IFS= read -r -t 5 reply <&"$fd" || true
    exec {fd}>&-
    printf '%s' "$reply"
}
kv_is() { test "$(kv "$1" "$2")" = "$3"; } # kv_is port line expected-reply

p=$(free_port)
check "deploy-binary --init none starts the server" \
    bash "$node" deploy-binary --binary target/release/kvcache-server --init none --prefix "$work/root" \
    --bind 127.0.0.1 --port "$p" -- --max-memory 64mb
check "  ... installed the binary" test -x "$work/root/usr/local/bin/kvcache-server"
check "  ... answers PING (wait-ready)" bash "$node" wait-ready --host 127.0.0.1 --port "$p" --timeout 5
command -v systemd-analyze >/dev/null || apt_install systemd
check "  ... wrote a systemd unit that systemd-analyze verify accepts" \
    systemd-analyze verify "$work/root/etc/systemd/system/kvcache.service"
check "  ... the unit passes the server flags" \
    grep -q "^ExecStart=$work/root/usr/local/bin/kvcache-server --host 127.0.0.1 --port $p --max-memory 64mb$" \
    "$work/root/etc/systemd/system/kvcache.service"
check "  ... the unit keeps a snapshot in its state directory" \
    grep -qx "Environment=KV_CACHE_SNAPSHOT_FILE=%S/kvcache/kvcache.snap" "$work/root/etc/systemd/system/kvcache.service"
check "  ... which systemd creates (StateDirectory=kvcache)" \
    grep -qx "StateDirectory=kvcache" "$work/root/etc/systemd/system/kvcache.service"
check "a key written before the redeploy" kv_is "$p" "PUT redeploy:key survives 3600" "OK stored"
check "deploy-binary again replaces the running server" \
    bash "$node" deploy-binary --binary target/release/kvcache-server --init none --prefix "$work/root" \
    --bind 127.0.0.1 --port "$p"
check "  ... and keeps the cache (the key is still there)" kv_is "$p" "GET redeploy:key" "OK survives"
check "  ... from the snapshot file" test -s "$work/root/var/lib/kvcache/kvcache.snap"
check "bench with the binary writes the report" \
    bash "$node" bench --bench-bin target/release/kvcache-bench --host 127.0.0.1 --port "$p" \
    --connections 4 --requests 250 --ratio 0.5 --ttl 60 --output "$work/results/load_test_results.json"
check "  ... the report has every request, none failed" valid_report "$work/results/load_test_results.json" 4 250
check "stop" bash "$node" stop --init none --prefix "$work/root"
check "  ... the server is gone" fails_ bash "$node" wait-ready --host 127.0.0.1 --port "$p" --timeout 1
check "wait-ready on a closed port fails" fails_ bash "$node" wait-ready --host 127.0.0.1 --port "$p" --timeout 1

# TLS=yes: the server gets server.crt and server.key, the client only ca.crt.
bash scripts/tls-certs.sh "$work/tls" >/dev/null
mkdir -p "$work/tls-server" "$work/tls-client"
cp "$work/tls/server.crt" "$work/tls/server.key" "$work/tls-server/"
cp "$work/tls/ca.crt" "$work/tls-client/"
p=$(free_port)
unit=$work/root/etc/systemd/system/kvcache.service
check "deploy-binary --tls-dir starts a TLS-only server" \
    bash "$node" deploy-binary --binary target/release/kvcache-server --init none --prefix "$work/root" \
    --bind 127.0.0.1 --port "$p" --tls-dir "$work/tls-server"
check "  ... the key is installed mode 600" test "$(stat -c %a "$work/root/etc/kvcache/tls/server.key")" = 600
check "  ... the unit hands the files over as systemd credentials" \
    grep -q "^LoadCredential=server.key:$work/root/etc/kvcache/tls/server.key$" "$unit"
check "  ... and serves TLS only on the port" \
    grep -q -- "--port 0 --tls-port $p --tls-cert-file %d/server.crt --tls-key-file %d/server.key" "$unit"
check "  ... systemd-analyze verify accepts the unit" systemd-analyze verify "$unit"
check "  ... wait-ready over TLS, verifying with the CA" \
    bash "$node" wait-ready --host 127.0.0.1 --port "$p" --timeout 5 --tls-dir "$work/tls-client"
check "  ... no answer in clear text" fails_ bash "$node" wait-ready --host 127.0.0.1 --port "$p" --timeout 1
check "bench over TLS writes the report" \
    bash "$node" bench --bench-bin target/release/kvcache-bench --host 127.0.0.1 --port "$p" \
    --connections 4 --requests 250 --tls-dir "$work/tls-client" --output "$work/results-tls/load_test_results.json"
check "  ... the report has every request, none failed" valid_report "$work/results-tls/load_test_results.json" 4 250
check "  ... and was made over TLS" grep -q '"tls": true' "$work/results-tls/load_test_results.json"
check "stop the TLS server" bash "$node" stop --init none --prefix "$work/root"

if docker image inspect kv-cache >/dev/null 2>&1; then
    p=$(free_port)
    check "deploy-docker (the kv-cache image, no pull) starts the container" \
        bash "$node" deploy-docker --image kv-cache --no-pull --name "$docker_name" --bind 127.0.0.1 --port "$p"
    check "  ... with restart policy unless-stopped" \
        test "$(docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' "$docker_name")" = unless-stopped
    check "a key written before the docker redeploy" kv_is "$p" "PUT redeploy:key docker 3600" "OK stored"
    check "deploy-docker again replaces it" \
        bash "$node" deploy-docker --image kv-cache --no-pull --name "$docker_name" --bind 127.0.0.1 --port "$p"
    check "  ... and keeps the cache (the key is still there)" kv_is "$p" "GET redeploy:key" "OK docker"
    check "  ... in the named volume $docker_name-data" docker volume inspect "$docker_name-data"
    check "bench from the image writes the report" \
        bash "$node" bench --image kv-cache --host 127.0.0.1 --port "$p" \
        --connections 4 --requests 250 --output "$work/results-docker/load_test_results.json"
    check "  ... the report has every request, none failed" \
        valid_report "$work/results-docker/load_test_results.json" 4 250
    check "stop --init docker" bash "$node" stop --init docker --name "$docker_name"
    check "deploy-docker with a missing image and --no-pull fails" \
        fails_ bash "$node" deploy-docker --image kvcache-no-such-image --no-pull --name "$docker_name" --port "$p"
    p=$(free_port)
    check "deploy-docker --tls-dir starts a TLS-only container" \
        bash "$node" deploy-docker --image kv-cache --no-pull --name "$docker_name" --bind 127.0.0.1 --port "$p" \
        --prefix "$work/docker-root" --tls-dir "$work/tls-server"
    check "  ... the key belongs to the image's user alone" \
        test "$(stat -c %u:%a "$work/docker-root/etc/kvcache/tls/server.key")" = 10001:600
    check "  ... no answer in clear text" fails_ bash "$node" wait-ready --host 127.0.0.1 --port "$p" --timeout 1
    check "bench from the image over TLS writes the report" \
        bash "$node" bench --image kv-cache --host 127.0.0.1 --port "$p" --tls-dir "$work/tls-client" \
        --connections 4 --requests 250 --output "$work/results-docker-tls/load_test_results.json"
    check "  ... the report has every request, none failed" \
        valid_report "$work/results-docker-tls/load_test_results.json" 4 250
    check "stop the TLS container" bash "$node" stop --init docker --name "$docker_name"
else
    log "FAIL: image kv-cache not found: run .ci/docker-test.sh first (it builds the image)"
    failed=$((failed + 1))
fi

log "not exercised here: SSH/scp to real instances, dnf and docker pull on Amazon Linux 2023, systemd running the unit, security groups filtering real traffic, the instances powering off after AUTO_TERMINATE_HOURS"
printf 'aws: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
