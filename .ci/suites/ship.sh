#!/usr/bin/env bash
# Issue 5's suite, run by .ci/run: the Docker image and compose cluster (.ci/docker-test.sh), the
# memory cap under a container limit (.ci/docker-memory-test.sh), then
# the AWS scripts against moto and the on-instance script locally (.ci/aws-test.sh), which uses the
# kv-cache image that docker-test.sh builds. Both run even if the first fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
start=$SECONDS
failed=()
for script in docker-test.sh docker-memory-test.sh aws-test.sh; do
    if bash ".ci/$script"; then
        echo "ship: $script passed after $((SECONDS - start)) s"
    else
        echo "ship: $script FAILED after $((SECONDS - start)) s"
        failed+=("$script")
    fi
done
if ((${#failed[@]} > 0)); then
    echo "ship: FAILED: ${failed[*]}"
    exit 1
fi
