#!/usr/bin/env bash
# Makes a throwaway certificate authority with a server and a client certificate (EC P-256,
# PEM) for TLS tests and deployments:
#
#   scripts/tls-certs.sh DIR [NAME-OR-IP ...]
#
# writes DIR/ca.crt ca.key server.crt server.key client.crt client.key. The server
# certificate names localhost, 127.0.0.1 and every NAME-OR-IP given. The CA key never needs to
# leave DIR: a server needs server.crt and server.key (plus ca.crt for --tls-ca-cert-file), a
# client ca.crt (plus client.crt and client.key for mutual TLS). Keys are written mode 600;
# a container running as another user needs them made readable to it (see README, TLS).
# Validity: TLS_CERT_DAYS (default 825, the longest clients accept for server certificates).
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 DIR [NAME-OR-IP ...]" >&2
  exit 2
fi
dir=$1
shift
days=${TLS_CERT_DAYS:-825}
command -v openssl >/dev/null || { echo "$0: openssl is needed (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
umask 077

san="DNS:localhost,IP:127.0.0.1"
for n in "$@"; do
  if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+=",IP:$n"; else san+=",DNS:$n"; fi
done

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

newkey ca.key
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n' >ca.ext
openssl req -new -key ca.key -subj "/CN=kvcache CA $(date -u +%Y%m%dT%H%M%S)" -out ca.csr
openssl x509 -req -in ca.csr -signkey ca.key -extfile ca.ext -days "$days" -out ca.crt 2>/dev/null

leaf() { # file-stem common-name extensions
  newkey "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf '%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -extfile "$1.ext" \
    -days "$days" -out "$1.crt" 2>/dev/null
}
leaf server "kvcache server" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san"
leaf client "kvcache client" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"

rm -f ./*.csr ./*.ext ca.srl
chmod 644 ca.crt server.crt client.crt
