#!/usr/bin/env bash
# The whole test suite again, optimised and with many test threads at once, so races that the
# debug build's slowness hides get a chance to show; then a short soak of both protocols.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test --release -- --test-threads 16
SOAK_MAX_MEMORY=32mb bash scripts/soak.sh 0.5
