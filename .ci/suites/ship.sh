#!/usr/bin/env bash
# Issue 5's suite, run by .ci/run: the Docker image and compose cluster (.ci/docker-test.sh), the
# memory cap under a container limit (.ci/docker-memory-test.sh), then
# the AWS scripts against moto and the on-instance script locally (.ci/aws-test.sh), which uses the
# kv-cache image that docker-test.sh builds. Both run even if the first fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
rc=0
start=$SECONDS
bash .ci/docker-test.sh || rc=1
echo "ship: docker-test.sh done after $((SECONDS - start)) s"
bash .ci/docker-memory-test.sh || rc=1
echo "ship: docker-memory-test.sh done after $((SECONDS - start)) s"
bash .ci/aws-test.sh || rc=1
echo "ship: aws-test.sh done after $((SECONDS - start)) s"
exit "$rc"
