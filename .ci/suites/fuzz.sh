#!/usr/bin/env bash
# Every cargo-fuzz target for FUZZ_SECONDS (default 15) each, from the committed seeds, one at
# a time. Exits non-zero if any target crashes, hangs, leaks or allocates past the limits; the
# crashing input is left in fuzz/artifacts/<target>/. Installs cargo-fuzz (and a minimal nightly
# toolchain) if missing. The fuzz crate builds in fuzz/target with sanitizer flags, so it shares
# nothing with the release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${FUZZ_SECONDS:-15}
# cargo-fuzz builds with -Ccodegen-units=1 at opt-level 3; the dependency tree (tokio, clap,
# serde, toml) then takes most of this suite's time. opt-level 1 builds in about 60% of the time
# and, with the sanitizer dominating, executes as fast. Debug assertions and overflow checks
# stay on (cargo-fuzz's default).
export CARGO_PROFILE_RELEASE_OPT_LEVEL=${FUZZ_OPT_LEVEL:-1}
START=$(date +%s)
say() { printf '[fuzz %ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }

if ! rustup toolchain list | grep -q '^nightly'; then
  say "installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

say "building the targets"
cargo +nightly fuzz build

WORK=$(mktemp -d /tmp/kvcache-fuzz.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
failed=()
for target in $(cargo +nightly fuzz list); do
  say "running $target for ${SECS}s"
  mkdir -p "$WORK/$target"
  # New corpus entries go to the scratch directory; the seeds are only read.
  if ! cargo +nightly fuzz run "$target" "$WORK/$target" "fuzz/seeds/$target" -- \
      -dict=fuzz/kvcache.dict -max_total_time="$SECS" -timeout=10 \
      -malloc_limit_mb=256 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$WORK/$target.log" 2>&1; then
    failed+=("$target")
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$WORK/$target.log" || tail -30 "$WORK/$target.log"
  fi
  grep -E '^Done|stat::number_of_executed_units|stat::average_exec_per_sec' "$WORK/$target.log" | tr '\n' ' '
  echo
done

if [ "${#failed[@]}" -gt 0 ]; then
  say "FAILED: ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
say "all fuzz targets clean"
