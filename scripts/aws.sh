#!/usr/bin/env bash
# shellcheck disable=SC2016 # JMESPath literals in --query are backquoted, not shell expansions
# kvcache on AWS: a server and a client EC2 instance, deploy, load-test from one to the other,
# collect results/load_test_results.json, tear everything down.
#
#   scripts/aws.sh create            security group, key pair, two instances (server, client)
#   scripts/aws.sh deploy            server: DOCKER_IMAGE (docker) or a local binary under systemd;
#                                    with TLS=yes, TLS only, with a CA made here (the CA key stays here)
#   scripts/aws.sh test              kvcache-bench on the client against the server's private IP,
#                                    then download results/load_test_results.json
#   scripts/aws.sh ssh server|client [command...]
#   scripts/aws.sh results           download the last results again and summarise them
#   scripts/aws.sh status            what exists, what it costs, when it self-terminates
#   scripts/aws.sh teardown [--yes]  terminate both, delete the security group and the key pair
#
# Settings: scripts/config.sh, or the file named by KVCACHE_AWS_CONFIG (see scripts/config.sh.example).
# State: scripts/.instances (git-ignored), with the key file, known_hosts and the TLS CA (tls/)
# beside it; KVCACHE_AWS_STATE_DIR moves them all. Every subcommand is safe to re-run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
state_dir=${KVCACHE_AWS_STATE_DIR:-$here}
state_file=$state_dir/.instances
known_hosts=$state_dir/.known_hosts
remote_script=$here/remote/kvcache-node.sh
export AWS_PAGER="" # aws CLI v2 would otherwise page output and wait for a key

err() { printf 'aws.sh: %s\n' "$*" >&2; }
upper() { printf '%s' "$1" | tr '[:lower:]' '[:upper:]'; }
lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }
die() {
    err "error: $*"
    exit 1
}
note() { printf '%s\n' "$*"; }
one_line() { tr -s '\r\n' '  ' <<<"$1" | sed 's/^ *//; s/ *$//'; }

usage() {
    sed -n '3,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

# --- settings --------------------------------------------------------------------------------------
DOCKER_IMAGE=""
DEPLOY_MODE=docker
BINARY_DIR=target/release
AWS_REGION=us-east-1
INSTANCE_TYPE=t3.small
KEY_NAME=kvcache-key
KEY_FILE=""
SECURITY_GROUP=kvcache-sg
AMI_ID=""
SSH_CIDR=""
AUTO_TERMINATE_HOURS=4
LOAD_TEST_CONNECTIONS=100
LOAD_TEST_REQUESTS=1000
LOAD_TEST_RATIO=0.5
LOAD_TEST_TTL=0
SERVER_ARGS=""
TLS=no
SSH_USER=ec2-user

load_config() {
    local config
    if [[ -n ${KVCACHE_AWS_CONFIG:-} ]]; then
        config=$KVCACHE_AWS_CONFIG
        [[ -r $config ]] || die "KVCACHE_AWS_CONFIG names $config, which cannot be read"
    else
        config=$here/config.sh
        if [[ ! -r $config ]]; then
            err "note: no scripts/config.sh; using the defaults of scripts/config.sh.example"
            return 0
        fi
    fi
    # shellcheck source=/dev/null # checked on its own: scripts/config.sh.example
    source "$config"
}

validate_config() {
    [[ $DEPLOY_MODE == docker || $DEPLOY_MODE == binary ]] ||
        die "DEPLOY_MODE must be docker or binary, not '$DEPLOY_MODE'"
    [[ $AUTO_TERMINATE_HOURS =~ ^[0-9]+$ ]] ||
        die "AUTO_TERMINATE_HOURS must be a whole number of hours, not '$AUTO_TERMINATE_HOURS'"
    [[ $KEY_NAME =~ ^[A-Za-z0-9._-]+$ ]] || die "KEY_NAME '$KEY_NAME' must be letters, digits, . _ -"
    [[ $SECURITY_GROUP =~ ^[A-Za-z0-9._-]+$ ]] ||
        die "SECURITY_GROUP '$SECURITY_GROUP' must be letters, digits, . _ -"
    [[ $TLS == yes || $TLS == no ]] || die "TLS must be yes or no, not '$TLS'"
    [[ -n $KEY_FILE ]] || KEY_FILE=$state_dir/$KEY_NAME.pem
    case $BINARY_DIR in /*) ;; *) BINARY_DIR=$repo/$BINARY_DIR ;; esac
}

# --- state -----------------------------------------------------------------------------------------
STATE_KEYS=(REGION SG_NAME SG_ID KEY_PAIR KEY_PATH KEY_CREATED INSTANCE_TYPE_USED AMI_USED
    SSH_CIDR_USED SERVER_ID CLIENT_ID SERVER_PUBLIC_IP SERVER_PRIVATE_IP CLIENT_PUBLIC_IP
    CLIENT_PRIVATE_IP LAUNCHED_AT TERMINATE_HOURS DEPLOYED_MODE DEPLOYED_IMAGE DEPLOYED_TLS)
for k in "${STATE_KEYS[@]}"; do printf -v "$k" '%s' ""; done

load_state() {
    [[ -f $state_file ]] || return 1
    local line key value
    while IFS= read -r line || [[ -n $line ]]; do
        [[ $line =~ ^([A-Z_]+)=(.*)$ ]] || continue
        key=${BASH_REMATCH[1]}
        value=${BASH_REMATCH[2]}
        [[ " ${STATE_KEYS[*]} " == *" $key "* ]] || continue
        printf -v "$key" '%s' "$value"
    done <"$state_file"
    return 0
}

save_state() {
    mkdir -p "$state_dir"
    local tmp=$state_file.tmp k
    for k in "${STATE_KEYS[@]}"; do printf '%s=%s\n' "$k" "${!k}"; done >"$tmp"
    mv "$tmp" "$state_file"
}

# --- aws CLI ---------------------------------------------------------------------------------------
region() { printf '%s' "${REGION:-$AWS_REGION}"; }
awsq() { aws --region "$(region)" --output text "$@"; }

preflight() {
    command -v aws >/dev/null ||
        die "the aws CLI is not installed or not on PATH (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html)"
    local out
    if ! out=$(aws --region "$(region)" --output text sts get-caller-identity --query Account 2>&1); then
        die "AWS credentials are missing or not valid ($(one_line "$out" | cut -c1-200)); run 'aws configure' or set AWS_PROFILE"
    fi
}

# text output of a query that may be empty: the aws CLI prints "None" for null.
none_empty() { [[ $1 == None ]] && printf '' || printf '%s' "$1"; }

# --- costs -----------------------------------------------------------------------------------------
# us-east-1 Linux on-demand USD per hour; other regions differ by up to about a third.
hourly_price() {
    case $1 in
    t3.nano) echo 0.0052 ;; t3.micro) echo 0.0104 ;; t3.small) echo 0.0208 ;;
    t3.medium) echo 0.0416 ;; t3.large) echo 0.0832 ;; t3.xlarge) echo 0.1664 ;;
    t3a.micro) echo 0.0094 ;; t3a.small) echo 0.0188 ;; t3a.medium) echo 0.0376 ;;
    c5.large) echo 0.085 ;; c5.xlarge) echo 0.17 ;; c6i.large) echo 0.085 ;; c6i.xlarge) echo 0.17 ;;
    c7i.large) echo 0.08925 ;; m5.large) echo 0.096 ;; m6i.large) echo 0.096 ;; m7i.large) echo 0.1008 ;;
    *) echo "" ;;
    esac
}

fmt_epoch() { # fmt_epoch SECONDS -> "2026-01-01 12:00 UTC" with GNU or BSD date
    date -u -d "@$1" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || date -u -r "$1" '+%Y-%m-%d %H:%M UTC'
}

print_cost() {
    local type=${INSTANCE_TYPE_USED:-$INSTANCE_TYPE} price
    price=$(hourly_price "$type")
    if [[ -n $price ]]; then
        # Each instance also has a public IPv4 address ($0.005/h) and an 8 GB gp3 volume (~$0.001/h).
        awk -v p="$price" -v t="$type" 'BEGIN {
            each = p + 0.005 + 0.0009
            printf "Cost: 2 x %s running = about $%.3f per hour (us-east-1 on-demand: $%s each, plus public IPv4 and disk).\n", t, 2 * each, p }'
    else
        note "Cost: 2 x $type running; see https://aws.amazon.com/ec2/pricing/on-demand/ for its hourly price."
    fi
    if [[ -n $LAUNCHED_AT && ${TERMINATE_HOURS:-0} -gt 0 ]]; then
        local at=$((LAUNCHED_AT + TERMINATE_HOURS * 3600))
        note "They terminate themselves around $(fmt_epoch "$at") ($TERMINATE_HOURS h after launch); 'scripts/aws.sh teardown' ends them now."
    elif [[ -n $LAUNCHED_AT ]]; then
        note "AUTO_TERMINATE_HOURS=0: they run (and bill) until 'scripts/aws.sh teardown'."
    fi
}

# --- lookups ---------------------------------------------------------------------------------------
default_vpc() {
    local vpc
    vpc=$(none_empty "$(awsq ec2 describe-vpcs --filters Name=is-default,Values=true --query 'Vpcs[0].VpcId')")
    [[ -n $vpc ]] || die "region $(region) has no default VPC; create one with 'aws ec2 create-default-vpc --region $(region)'"
    printf '%s' "$vpc"
}

find_sg() { # prints "id managed" for the group named $1 in the default VPC, or nothing
    local vpc=$2 out
    out=$(awsq ec2 describe-security-groups \
        --filters "Name=group-name,Values=$1" "Name=vpc-id,Values=$vpc" \
        --query 'SecurityGroups[0].[GroupId, Tags[?Key==`kvcache:managed`] | [0].Value]')
    [[ $out == None || -z $out ]] && return 0
    printf '%s' "$out"
}

instance_state() { # instance id -> state name, or "gone"
    local s
    s=$(awsq ec2 describe-instances --instance-ids "$1" --query 'Reservations[0].Instances[0].State.Name' 2>/dev/null) ||
        s=gone
    s=$(none_empty "$s")
    printf '%s' "${s:-gone}"
}

live() { [[ $1 == pending || $1 == running ]]; }

wait_instances() { # wait_instances running|terminated id...: poll every 5 s, 10 minutes at most
    local want=$1 i states s ok
    shift
    for ((i = 0; i < 120; i++)); do
        states=$(awsq ec2 describe-instances --instance-ids "$@" --query 'Reservations[].Instances[].State.Name')
        ok=1
        for s in $states; do [[ $s == "$want" ]] || ok=0; done
        ((ok)) && return 0
        [[ $want != running || $states != *terminated* ]] ||
            die "an instance terminated while starting (capacity or limits?): see 'aws ec2 describe-instances --region $(region) --instance-ids $*'"
        sleep 5
    done
    die "instances $* are not $want after 10 minutes (states: $states)"
}

# Instances that belong to this stack: tagged by create and in its security group.
stack_instances() {
    [[ -n $SG_ID ]] || return 0
    none_empty "$(awsq ec2 describe-instances \
        --filters "Name=instance.group-id,Values=$SG_ID" "Name=tag-key,Values=kvcache:role" \
        "Name=instance-state-name,Values=pending,running,stopping,stopped" \
        --query 'Reservations[].Instances[].InstanceId')" | tr '\t' ' '
}

refresh_ips() {
    local role id out
    for role in SERVER CLIENT; do
        id=${role}_ID
        id=${!id}
        [[ -n $id ]] || continue
        out=$(awsq ec2 describe-instances --instance-ids "$id" \
            --query 'Reservations[0].Instances[0].[PublicIpAddress, PrivateIpAddress]' 2>/dev/null) || out="None None"
        read -r pub priv <<<"$out"
        printf -v "${role}_PUBLIC_IP" '%s' "$(none_empty "$pub")"
        printf -v "${role}_PRIVATE_IP" '%s' "$(none_empty "$priv")"
    done
    save_state
}

resolve_ami() {
    if [[ -n $AMI_ID ]]; then
        printf '%s' "$AMI_ID"
        return
    fi
    local ami
    ami=$(none_empty "$(awsq ssm get-parameters \
        --names /aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64 \
        --query 'Parameters[0].Value')") || true
    [[ $ami == ami-* ]] || die "could not look up the latest Amazon Linux 2023 AMI in $(region) (SSM); set AMI_ID in the config"
    printf '%s' "$ami"
}

resolve_ssh_cidr() {
    local cidr=$SSH_CIDR
    if [[ -z $cidr ]]; then
        local ip
        ip=$(curl -fsS --max-time 10 https://checkip.amazonaws.com 2>/dev/null | tr -d '[:space:]') || true
        [[ $ip =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] ||
            die "could not find your public IP (checkip.amazonaws.com); set SSH_CIDR in the config, e.g. 203.0.113.7/32"
        cidr=$ip/32
    fi
    [[ $cidr =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/([0-9]|[12][0-9]|3[0-2])$ ]] ||
        die "SSH_CIDR '$cidr' is not an IPv4 CIDR such as 203.0.113.7/32"
    [[ ${cidr#*/} -gt 0 ]] || die "SSH_CIDR '$cidr' would open SSH to the whole internet; use your own address/32"
    [[ ${cidr#*/} -ge 16 ]] || err "warning: SSH_CIDR $cidr is a wide range; your own address/32 is safer"
    printf '%s' "$cidr"
}

# --- create ----------------------------------------------------------------------------------------
ensure_key_pair() {
    local exists tag
    exists=$(awsq ec2 describe-key-pairs --key-names "$KEY_NAME" \
        --query 'KeyPairs[0].[KeyName, Tags[?Key==`kvcache:managed`] | [0].Value]' 2>/dev/null) || exists=""
    KEY_PAIR=$KEY_NAME
    KEY_PATH=$KEY_FILE
    if [[ -n $exists ]]; then
        read -r _ tag <<<"$exists"
        [[ -f $KEY_FILE ]] || die "key pair $KEY_NAME exists in $(region) but its private key $KEY_FILE is missing; delete the key pair (aws ec2 delete-key-pair --region $(region) --key-name $KEY_NAME) or set KEY_NAME / KEY_FILE"
        [[ $tag == true ]] && KEY_CREATED=1 || KEY_CREATED=${KEY_CREATED:-0}
        chmod 600 "$KEY_FILE"
        note "Key pair $KEY_NAME exists; using $KEY_FILE."
    else
        [[ ! -e $KEY_FILE ]] || die "$KEY_FILE exists but key pair $KEY_NAME does not in $(region); move the file away or set KEY_NAME"
        mkdir -p "$(dirname "$KEY_FILE")"
        local material
        material=$(awsq ec2 create-key-pair --key-name "$KEY_NAME" --key-type ed25519 \
            --tag-specifications 'ResourceType=key-pair,Tags=[{Key=kvcache:managed,Value=true}]' \
            --query KeyMaterial)
        (
            umask 077
            printf '%s\n' "$material" >"$KEY_FILE"
        )
        chmod 600 "$KEY_FILE"
        KEY_CREATED=1
        note "Created key pair $KEY_NAME; private key in $KEY_FILE (mode 600)."
    fi
    save_state
}

ensure_security_group() {
    local cidr=$1 vpc found id managed
    vpc=$(default_vpc)
    found=$(find_sg "$SECURITY_GROUP" "$vpc")
    if [[ -n $found ]]; then
        read -r id managed <<<"$found"
        [[ $managed == true ]] ||
            die "security group $SECURITY_GROUP ($id) exists but was not made by this script; set SECURITY_GROUP to another name"
        SG_ID=$id
        note "Security group $SECURITY_GROUP ($SG_ID) exists."
    else
        SG_ID=$(awsq ec2 create-security-group --group-name "$SECURITY_GROUP" --vpc-id "$vpc" \
            --description "kvcache load test: SSH from one address, 7171 inside the group" \
            --tag-specifications "ResourceType=security-group,Tags=[{Key=kvcache:managed,Value=true},{Key=Name,Value=$SECURITY_GROUP}]" \
            --query GroupId)
        note "Created security group $SECURITY_GROUP ($SG_ID)."
    fi
    SG_NAME=$SECURITY_GROUP
    save_state

    # SSH from exactly $cidr: add it, revoke any other SSH source (an address that has changed).
    local ssh_sources src
    ssh_sources=$(none_empty "$(awsq ec2 describe-security-groups --group-ids "$SG_ID" \
        --query 'SecurityGroups[0].IpPermissions[?FromPort==`22`].IpRanges[].CidrIp')" | tr '\t' ' ')
    for src in $ssh_sources; do
        if [[ $src != "$cidr" ]]; then
            awsq ec2 revoke-security-group-ingress --group-id "$SG_ID" --protocol tcp --port 22 --cidr "$src" >/dev/null
            note "Revoked SSH from $src."
        fi
    done
    if [[ " $ssh_sources " != *" $cidr "* ]]; then
        awsq ec2 authorize-security-group-ingress --group-id "$SG_ID" --ip-permissions \
            "IpProtocol=tcp,FromPort=22,ToPort=22,IpRanges=[{CidrIp=$cidr,Description=kvcache SSH}]" >/dev/null
        note "Allowed SSH (22) from $cidr."
    fi
    local self
    self=$(none_empty "$(awsq ec2 describe-security-groups --group-ids "$SG_ID" \
        --query 'SecurityGroups[0].IpPermissions[?FromPort==`7171`].UserIdGroupPairs[].GroupId')" | tr '\t' ' ')
    if [[ " $self " != *" $SG_ID "* ]]; then
        awsq ec2 authorize-security-group-ingress --group-id "$SG_ID" --ip-permissions \
            "IpProtocol=tcp,FromPort=7171,ToPort=7171,UserIdGroupPairs=[{GroupId=$SG_ID,Description=kvcache inside the group}]" >/dev/null
        note "Allowed 7171 from members of $SECURITY_GROUP only."
    fi
    SSH_CIDR_USED=$cidr
    save_state
}

user_data() {
    cat <<EOF
#!/bin/bash
# kvcache (scripts/aws.sh): power off after $AUTO_TERMINATE_HOURS h. The instance was launched with
# instance-initiated shutdown behaviour 'terminate', so powering off terminates it: a forgotten
# teardown costs at most those hours.
EOF
    if ((AUTO_TERMINATE_HOURS > 0)); then
        printf 'shutdown -P +%d "kvcache: auto-terminate after %d h (scripts/aws.sh)"\n' \
            $((AUTO_TERMINATE_HOURS * 60)) "$AUTO_TERMINATE_HOURS"
    else
        printf '# AUTO_TERMINATE_HOURS=0: no automatic power-off.\n'
    fi
}

launch() { # launch role ami [subnet] -> instance id
    local role=$1 ami=$2 subnet=${3:-} ud
    ud=$(mktemp)
    user_data >"$ud"
    # shellcheck disable=SC2054 # the commas belong to the aws CLI's shorthand syntax
    local args=(ec2 run-instances --image-id "$ami" --instance-type "$INSTANCE_TYPE" --count 1
        --key-name "$KEY_PAIR" --security-group-ids "$SG_ID"
        --instance-initiated-shutdown-behavior terminate
        --user-data "file://$ud"
        --metadata-options HttpTokens=required,HttpEndpoint=enabled
        --tag-specifications
        "ResourceType=instance,Tags=[{Key=Name,Value=kvcache-$role},{Key=kvcache:role,Value=$role},{Key=kvcache:stack,Value=$SECURITY_GROUP}]"
        --query 'Instances[0].InstanceId')
    [[ -z $subnet ]] || args+=(--subnet-id "$subnet")
    local id
    if ! id=$(awsq "${args[@]}" 2>&1); then
        rm -f "$ud"
        die "could not launch the $role instance: $(one_line "$id" | cut -c1-300)"
    fi
    rm -f "$ud"
    printf '%s' "$id"
}

cmd_create() {
    preflight
    load_state || true
    if [[ -n $REGION && $REGION != "$AWS_REGION" ]]; then
        die "scripts/.instances describes a stack in $REGION, but AWS_REGION is $AWS_REGION; tear that one down first"
    fi
    REGION=$AWS_REGION
    local cidr ami
    cidr=$(resolve_ssh_cidr)
    ensure_key_pair
    ensure_security_group "$cidr"

    local role id_var state need=()
    for role in server client; do
        id_var=$(upper "$role")_ID
        if [[ -n ${!id_var} ]]; then
            state=$(instance_state "${!id_var}")
            if live "$state"; then
                note "The $role instance ${!id_var} is $state."
                continue
            fi
            note "The $role instance ${!id_var} is $state; launching a new one."
            printf -v "$id_var" '%s' ""
        fi
        need+=("$role")
    done
    if ((${#need[@]} > 0)); then
        ami=$(resolve_ami)
        AMI_USED=$ami
        INSTANCE_TYPE_USED=$INSTANCE_TYPE
        TERMINATE_HOURS=$AUTO_TERMINATE_HOURS
        LAUNCHED_AT=$(date +%s)
        DEPLOYED_MODE=""
        local subnet="" other
        for role in "${need[@]}"; do
            # Both in one subnet, so one availability zone: lower latency, no cross-AZ transfer fees.
            other=$([[ $role == server ]] && echo "$CLIENT_ID" || echo "$SERVER_ID")
            if [[ -n $other ]]; then
                subnet=$(none_empty "$(awsq ec2 describe-instances --instance-ids "$other" \
                    --query 'Reservations[0].Instances[0].SubnetId')")
            fi
            id=$(launch "$role" "$ami" "$subnet")
            printf -v "$(upper "$role")_ID" '%s' "$id"
            save_state
            note "Launched the $role instance $id ($INSTANCE_TYPE, $ami)."
        done
        note "Waiting for both instances to run..."
        wait_instances running "$SERVER_ID" "$CLIENT_ID"
    fi
    refresh_ips
    if [[ -f $known_hosts ]]; then
        ssh-keygen -R "$SERVER_PUBLIC_IP" -f "$known_hosts" >/dev/null 2>&1 || true
        ssh-keygen -R "$CLIENT_PUBLIC_IP" -f "$known_hosts" >/dev/null 2>&1 || true
    fi
    note "server: $SERVER_ID  public $SERVER_PUBLIC_IP  private $SERVER_PRIVATE_IP"
    note "client: $CLIENT_ID  public $CLIENT_PUBLIC_IP  private $CLIENT_PRIVATE_IP"
    print_cost
    note "Next: scripts/aws.sh deploy"
}

# --- ssh -------------------------------------------------------------------------------------------
SSH_OPTS=()
set_ssh_opts() {
    SSH_OPTS=(-i "$KEY_PATH" -o IdentitiesOnly=yes -o ConnectTimeout=10 -o ServerAliveInterval=15
        -o StrictHostKeyChecking=accept-new -o "UserKnownHostsFile=$known_hosts" -o LogLevel=ERROR)
}

need_stack() {
    if ! load_state || [[ -z $SERVER_ID || -z $CLIENT_ID ]]; then
        die "no instances recorded in $state_file; run 'scripts/aws.sh create' first"
    fi
    [[ -f $KEY_PATH ]] || die "the private key $KEY_PATH is missing; run 'scripts/aws.sh teardown --yes' and 'create' again"
    local role id state
    for role in SERVER CLIENT; do
        id=${role}_ID
        state=$(instance_state "${!id}")
        live "$state" ||
            die "the $(lower "$role") instance ${!id} is $state (self-terminated after ${TERMINATE_HOURS:-?} h?); run 'scripts/aws.sh create' again"
    done
    refresh_ips
    set_ssh_opts
}

host_of() { # host_of server|client -> public IP
    local ip
    case $1 in
    server) ip=$SERVER_PUBLIC_IP ;;
    client) ip=$CLIENT_PUBLIC_IP ;;
    *) die "ssh takes 'server' or 'client', not '$1'" ;;
    esac
    [[ -n $ip ]] || die "the $1 instance has no public IP address"
    printf '%s' "$ip"
}

run_ssh() { # run_ssh server|client command...
    local host
    host=$(host_of "$1")
    shift
    ssh "${SSH_OPTS[@]}" -o BatchMode=yes "$SSH_USER@$host" "$@"
}

upload() { # upload server|client local-file remote-path
    local host
    host=$(host_of "$1")
    scp -q "${SSH_OPTS[@]}" -o BatchMode=yes "$2" "$SSH_USER@$host:$3"
}

download() { # download server|client remote-path local-file
    local host
    host=$(host_of "$1")
    scp -q "${SSH_OPTS[@]}" -o BatchMode=yes "$SSH_USER@$host:$2" "$3"
}

wait_ssh() {
    local role=$1 i
    for ((i = 0; i < 36; i++)); do
        run_ssh "$role" true 2>/dev/null && return 0
        sleep 5
    done
    die "cannot SSH to the $role instance ($(host_of "$role")) after 3 minutes: check that your IP is still $SSH_CIDR_USED (re-run 'create' to update the rule) and that $KEY_PATH is the key of $KEY_PAIR"
}

# --- deploy / test / results -------------------------------------------------------------------------
glibc_needed() { # highest GLIBC_x.y symbol version a binary needs, if a tool can tell
    if command -v objdump >/dev/null; then
        objdump -T "$1" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' |
            awk -F. '$1 > M || ($1 == M && $2 > m) { M = $1; m = $2 } END { if (M != "") print M "." m }'
    fi
}

check_linux_binary() { # check_linux_binary file: an ELF binary that Amazon Linux 2023 can run
    [[ $(head -c 4 "$1" | od -An -c | tr -d ' \n') == 177ELF ]] ||
        die "$1 is not a Linux binary (built on macOS?); take the binaries out of the Docker image (see scripts/config.sh.example)"
    local need major minor
    need=$(glibc_needed "$1")
    [[ -n $need ]] || return 0
    IFS=. read -r major minor <<<"$need"
    if ((major > 2 || (major == 2 && ${minor:-0} > 34))); then
        die "$1 needs glibc $need but Amazon Linux 2023 has 2.34; build on an older system or take the binaries out of the Docker image (see scripts/config.sh.example)"
    fi
}

cmd_deploy() {
    preflight
    need_stack
    local mode=$DEPLOY_MODE server_bin bench_bin
    if [[ $mode == docker ]]; then
        [[ -n $DOCKER_IMAGE && $DOCKER_IMAGE != yourname/* ]] ||
            die "set DOCKER_IMAGE in the config to an image you pushed (or use DEPLOY_MODE=binary)"
    else
        server_bin=$BINARY_DIR/kvcache-server
        bench_bin=$BINARY_DIR/kvcache-bench
        [[ -x $server_bin && -x $bench_bin ]] ||
            die "binary mode needs $server_bin and $bench_bin; run 'cargo build --release --locked' first"
        check_linux_binary "$server_bin"
        check_linux_binary "$bench_bin"
    fi
    wait_ssh server
    wait_ssh client
    local role tls_opt=""
    for role in server client; do
        upload "$role" "$remote_script" kvcache-node.sh
    done
    if [[ $TLS == yes ]]; then
        make_tls_files
        # The server gets its certificate and key, the client the CA certificate (public) to
        # verify it with; the CA key never leaves this machine.
        run_ssh server "rm -rf kvcache-tls && mkdir -m 700 kvcache-tls"
        upload server "$tls_dir/server.crt" kvcache-tls/server.crt
        upload server "$tls_dir/server.key" kvcache-tls/server.key
        run_ssh client "rm -rf kvcache-tls && mkdir -m 700 kvcache-tls"
        upload client "$tls_dir/ca.crt" kvcache-tls/ca.crt
        tls_opt="--tls-dir kvcache-tls"
        for role in server client; do
            run_ssh "$role" "command -v openssl >/dev/null || sudo dnf install -y -q openssl"
        done
        note "TLS: certificate for $SERVER_PRIVATE_IP from the CA in $tls_dir; the server serves TLS only on 7171."
    fi
    if [[ $mode == docker ]]; then
        note "server: installing Docker and starting $DOCKER_IMAGE..."
        run_ssh server "sudo bash kvcache-node.sh install-docker && sudo bash kvcache-node.sh deploy-docker --image '$DOCKER_IMAGE' --port 7171 $tls_opt -- $SERVER_ARGS"
        note "client: installing Docker and pulling $DOCKER_IMAGE (for kvcache-bench)..."
        run_ssh client "sudo bash kvcache-node.sh install-docker && sudo bash kvcache-node.sh pull --image '$DOCKER_IMAGE'"
    else
        note "server: copying kvcache-server and starting it under systemd..."
        upload server "$server_bin" kvcache-server
        run_ssh server "sudo bash kvcache-node.sh deploy-binary --binary kvcache-server --port 7171 $tls_opt -- $SERVER_ARGS"
        note "client: copying kvcache-bench..."
        upload client "$bench_bin" kvcache-bench
    fi
    note "client: checking that it reaches the server on $SERVER_PRIVATE_IP:7171..."
    run_ssh client "bash kvcache-node.sh wait-ready --host $SERVER_PRIVATE_IP --port 7171 --timeout 30 $tls_opt" ||
        die "the client cannot reach $SERVER_PRIVATE_IP:7171; check that both instances are in $SG_NAME and its 7171 rule names the group itself"
    DEPLOYED_MODE=$mode
    DEPLOYED_IMAGE=$([[ $mode == docker ]] && echo "$DOCKER_IMAGE" || echo "")
    DEPLOYED_TLS=$TLS
    save_state
    note "Deployed ($mode$([[ $TLS == yes ]] && echo ", TLS")). Next: scripts/aws.sh test"
    print_cost
}

tls_dir=$state_dir/tls
make_tls_files() { # a CA and a server certificate naming the server's private IP, made once per IP
    if [[ -f $tls_dir/server.crt && $(cat "$tls_dir/server-ip" 2>/dev/null) == "$SERVER_PRIVATE_IP" ]]; then
        return 0
    fi
    command -v openssl >/dev/null || die "TLS=yes needs openssl on this machine to make the certificates"
    rm -rf "$tls_dir"
    bash "$here/tls-certs.sh" "$tls_dir" "$SERVER_PRIVATE_IP" ||
        die "could not make the TLS certificates in $tls_dir"
    printf '%s\n' "$SERVER_PRIVATE_IP" >"$tls_dir/server-ip"
}

summarise() { # summarise results.json
    local f=$1 k v
    for k in total_requests failed_requests requests_per_second latency_mean latency_p99 error_rate; do
        v=$(grep -o "\"$k\"[[:space:]]*:[[:space:]]*[-0-9.eE+]*" "$f" | head -n 1 | sed 's/.*:[[:space:]]*//')
        printf '  %-22s %s\n' "$k" "${v:-?}"
    done
}

cmd_test() {
    preflight
    need_stack
    [[ -n $DEPLOYED_MODE ]] || die "nothing deployed yet; run 'scripts/aws.sh deploy' first"
    local runner tls_opt="" over=""
    if [[ $DEPLOYED_TLS == yes ]]; then
        tls_opt="--tls-dir kvcache-tls"
        over=" over TLS"
    fi
    if [[ $DEPLOYED_MODE == docker ]]; then
        runner="--image '$DEPLOYED_IMAGE'"
    else
        runner="--bench-bin ./kvcache-bench"
    fi
    note "client: kvcache-bench against $SERVER_PRIVATE_IP:7171$over ($LOAD_TEST_CONNECTIONS connections x $LOAD_TEST_REQUESTS requests, ratio $LOAD_TEST_RATIO, ttl $LOAD_TEST_TTL)..."
    run_ssh client "bash kvcache-node.sh bench $runner --host $SERVER_PRIVATE_IP --port 7171 \
        --connections $LOAD_TEST_CONNECTIONS --requests $LOAD_TEST_REQUESTS --ratio $LOAD_TEST_RATIO \
        --ttl $LOAD_TEST_TTL --output results/load_test_results.json $tls_opt"
    fetch_results
    print_cost
}

fetch_results() {
    mkdir -p "$repo/results"
    download client results/load_test_results.json "$repo/results/load_test_results.json.part" ||
        die "no results on the client yet; run 'scripts/aws.sh test'"
    mv "$repo/results/load_test_results.json.part" "$repo/results/load_test_results.json"
    note "Saved results/load_test_results.json:"
    summarise "$repo/results/load_test_results.json"
}

cmd_results() {
    preflight
    need_stack
    fetch_results
    print_cost
}

cmd_ssh() {
    [[ $# -ge 1 ]] || die "usage: scripts/aws.sh ssh server|client [command...]"
    preflight
    need_stack
    local role=$1 host
    shift
    host=$(host_of "$role")
    print_cost >&2
    exec ssh "${SSH_OPTS[@]}" "$SSH_USER@$host" "$@"
}

# --- status / teardown -------------------------------------------------------------------------------
cmd_status() {
    preflight
    if ! load_state; then
        # No state: look for a stack of this config that lost its state file.
        local vpc found
        vpc=$(default_vpc)
        found=$(find_sg "$SECURITY_GROUP" "$vpc")
        if [[ -z $found ]]; then
            note "No kvcache instances in $(region) (nothing running, nothing billed)."
            return 0
        fi
        read -r SG_ID _ <<<"$found"
        note "No $state_file, but security group $SECURITY_GROUP ($SG_ID) exists; 'scripts/aws.sh teardown' removes it and anything in it."
        local ids
        ids=$(stack_instances)
        [[ -z $ids ]] || note "Instances in it: $ids"
        return 0
    fi
    local role id state any=0
    note "Region $(region), security group ${SG_NAME:-?} (${SG_ID:-none}), key pair ${KEY_PAIR:-?} ($KEY_PATH)"
    note "Instance type ${INSTANCE_TYPE_USED:-?}, AMI ${AMI_USED:-?}, SSH allowed from ${SSH_CIDR_USED:-?}"
    printf '%-7s %-20s %-13s %-16s %-16s\n' ROLE INSTANCE STATE PUBLIC-IP PRIVATE-IP
    for role in server client; do
        id=$(upper "$role")_ID
        id=${!id}
        if [[ -z $id ]]; then
            printf '%-7s %-20s %-13s\n' "$role" - "not created"
            continue
        fi
        state=$(instance_state "$id")
        live "$state" && any=1
        local pub priv
        pub=$(upper "$role")_PUBLIC_IP
        priv=$(upper "$role")_PRIVATE_IP
        printf '%-7s %-20s %-13s %-16s %-16s\n' "$role" "$id" "$state" "${!pub:--}" "${!priv:--}"
    done
    local extra id2
    extra=""
    for id2 in $(stack_instances); do
        [[ $id2 == "$SERVER_ID" || $id2 == "$CLIENT_ID" ]] || extra+=" $id2"
    done
    [[ -z $extra ]] || note "Also in the group (not in the state file):$extra"
    [[ -z $DEPLOYED_MODE ]] || note "Deployed: $DEPLOYED_MODE ${DEPLOYED_IMAGE}"
    if ((any)); then
        print_cost
    else
        note "No instance is running (nothing billed but the security group and key pair, which are free)."
    fi
}

confirm() {
    local answer
    if [[ ! -t 0 ]]; then
        die "refusing to tear down without confirmation: run it on a terminal or pass --yes"
    fi
    read -r -p "$1 [y/N] " answer
    [[ $answer == y || $answer == Y || $answer == yes ]]
}

cmd_teardown() {
    local yes=0 arg
    for arg in "$@"; do
        case $arg in
        --yes | -y) yes=1 ;;
        *) die "teardown takes only --yes, not '$arg'" ;;
        esac
    done
    preflight
    local had_state=0
    load_state && had_state=1
    # Without a state file, find the stack of this config by name; only what carries our tag.
    [[ -n $SG_NAME ]] || SG_NAME=$SECURITY_GROUP
    [[ -n $KEY_PAIR ]] || KEY_PAIR=$KEY_NAME
    [[ -n $KEY_PATH ]] || KEY_PATH=$KEY_FILE
    local vpc found managed
    if [[ -z $SG_ID ]]; then
        vpc=$(default_vpc)
        found=$(find_sg "$SG_NAME" "$vpc")
        if [[ -n $found ]]; then
            read -r SG_ID managed <<<"$found"
            [[ $managed == true ]] || SG_ID=""
        fi
    elif [[ $(none_empty "$(awsq ec2 describe-security-groups --group-ids "$SG_ID" --query 'SecurityGroups[0].GroupId' 2>/dev/null || true)") != "$SG_ID" ]]; then
        SG_ID=""
    fi
    # Those recorded and any other in the group that has not terminated; one call, and a filter
    # rather than --instance-ids, which fails on ids that AWS has already forgotten.
    local ids=() id candidates
    candidates=$({
        printf '%s\n' "$SERVER_ID" "$CLIENT_ID"
        stack_instances | tr ' ' '\n'
    } | { grep . || true; } | sort -u | paste -sd, -)
    if [[ -n $candidates ]]; then
        for id in $(none_empty "$(awsq ec2 describe-instances --filters "Name=instance-id,Values=$candidates" \
            "Name=instance-state-name,Values=pending,running,stopping,stopped" \
            --query 'Reservations[].Instances[].InstanceId')"); do
            ids+=("$id")
        done
    fi
    local key_ours=""
    if [[ $KEY_CREATED == 1 ]] || [[ $had_state == 0 ]]; then
        key_ours=$(awsq ec2 describe-key-pairs --key-names "$KEY_PAIR" \
            --query 'KeyPairs[0].Tags[?Key==`kvcache:managed`] | [0].Value' 2>/dev/null || true)
        [[ $key_ours == true ]] || key_ours=""
    fi
    if ((${#ids[@]} == 0)) && [[ -z $SG_ID && -z $key_ours ]]; then
        rm -f "$state_file" "$known_hosts"
        rm -rf "$tls_dir"
        note "Nothing to tear down in $(region)."
        return 0
    fi
    note "This will:"
    ((${#ids[@]} == 0)) || note "  terminate ${ids[*]:-}"
    [[ -z $SG_ID ]] || note "  delete security group $SG_NAME ($SG_ID)"
    [[ -z $key_ours ]] || note "  delete key pair $KEY_PAIR and $KEY_PATH"
    if ((!yes)); then
        confirm "Go ahead?" || die "cancelled; nothing changed"
    fi
    if ((${#ids[@]} > 0)); then
        awsq ec2 terminate-instances --instance-ids "${ids[@]}" >/dev/null
        note "Terminating ${ids[*]}; waiting (up to 10 minutes)..."
        wait_instances terminated "${ids[@]}"
        note "Terminated."
    fi
    if [[ -n $SG_ID ]]; then
        # The instances' network interfaces can hold the group for a little while after termination.
        local i out
        for ((i = 0; i < 24; i++)); do
            if out=$(awsq ec2 delete-security-group --group-id "$SG_ID" 2>&1); then
                note "Deleted security group $SG_ID."
                break
            fi
            [[ $out == *DependencyViolation* ]] || die "could not delete security group $SG_ID: $(one_line "$out")"
            sleep 5
        done
        ((i < 24)) || die "security group $SG_ID is still in use after 2 minutes; run teardown again shortly"
    fi
    if [[ -n $key_ours ]]; then
        awsq ec2 delete-key-pair --key-name "$KEY_PAIR" >/dev/null
        rm -f "$KEY_PATH"
        note "Deleted key pair $KEY_PAIR and $KEY_PATH."
    fi
    rm -f "$state_file" "$known_hosts"
    rm -rf "$tls_dir"
    note "Teardown complete: nothing of this stack is left in $(region)."
}

# --- main ------------------------------------------------------------------------------------------
main() {
    local cmd=${1:-}
    [[ -n $cmd ]] || {
        usage
        exit 2
    }
    shift
    case $cmd in
    -h | --help | help)
        usage
        return 0
        ;;
    create | deploy | test | ssh | results | status | teardown) ;;
    *)
        err "unknown subcommand '$cmd'"
        usage >&2
        exit 2
        ;;
    esac
    load_config
    validate_config
    case $cmd in
    create) cmd_create "$@" ;;
    deploy) cmd_deploy "$@" ;;
    test) cmd_test "$@" ;;
    ssh) cmd_ssh "$@" ;;
    results) cmd_results "$@" ;;
    status) cmd_status "$@" ;;
    teardown) cmd_teardown "$@" ;;
    esac
}

main "$@"
