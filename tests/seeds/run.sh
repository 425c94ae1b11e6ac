#!/usr/bin/env bash
# The seed systems' own clients against sluice (issue "Fidelity"): miniqueue's four example
# clients built with Go (tests/seeds/miniqueue.sh) and awe_queue's Vue developer tool in
# Chromium (tests/seeds/awe-ui/). The seeds' sources are read from $SLUICE_SEED_SOURCES
# (default /work/shared/seed-sources); without them the suite is skipped, loudly, and does
# not fail. Ends with one "seeds: N passed, N failed" line.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
seeds="${SLUICE_SEED_SOURCES:-/work/shared/seed-sources}"
if [[ ! -d "$seeds/002-miniqueue/examples" || ! -d "$seeds/004-awe_queue/frontend" ]]; then
  echo "SKIPPED: seed sources not found at $seeds (set SLUICE_SEED_SOURCES): the seed-client tests did not run"
  echo "seeds: 0 passed, 0 failed"
  exit 0
fi
"$repo/scripts/seed-test-deps" || { echo "seeds: 0 passed, 1 failed"; exit 1; }
mkdir -p "$repo/target"
passed=0
failed=0
"$here/miniqueue.sh" "$seeds" 2>&1 | tee "$repo/target/seeds-miniqueue.log"
line=$(grep -E '^miniqueue-examples: [0-9]+ passed, [0-9]+ failed' "$repo/target/seeds-miniqueue.log" | tail -n 1)
if [[ -z "$line" ]]; then line="miniqueue-examples: 0 passed, 1 failed"; fi
passed=$((passed + $(awk '{print $2}' <<<"$line")))
failed=$((failed + $(awk '{print $4}' <<<"$line")))
ui_status=0
"$here/awe-ui/run.sh" "$seeds" 2>&1 | tee "$repo/target/seeds-awe-ui.log" || ui_status=1
ui_pass=$(grep -E '^# pass ' "$repo/target/seeds-awe-ui.log" | awk '{print $3}' | tail -n 1 || true)
ui_fail=$(grep -E '^# (fail|cancelled) ' "$repo/target/seeds-awe-ui.log" | awk '{s+=$3} END {print s+0}' || true)
if [[ $ui_status -ne 0 && ${ui_fail:-0} -eq 0 ]]; then ui_fail=1; fi
passed=$((passed + ${ui_pass:-0}))
failed=$((failed + ${ui_fail:-0}))
echo "seeds: ${passed} passed, ${failed} failed"
[[ $failed -eq 0 ]]
