#!/usr/bin/env bash
# The runs behind BENCHMARKS.md, "The target-scale check with longer moves" (protocol there). From the repository root
# as for benchmarks/tandem_short.sh: `bash benchmarks/tandem_check.sh SCENARIO` for restricted, sft-ecommerce, oracle,
# abundant: TANDEM's defaults, then the check (3 seeds of short target runs) with its longer-move candidates, then
# the target on the check's winner, seeds 0-4 (paired with the compare runs of runs/s9/SCENARIO and SCENARIO-G).
# The longer-move candidates were in the check at commit 9639069 only (decision 7 removed them): run it there.
set -euo pipefail
cd "$(dirname "$0")/.."
R=runs/s9
T="${TANDEM:-tandem}"
for s in 0 1 2 3 4; do
    $T run "benchmarks/configs/$1.yaml" --set seed=$s --check-seeds 3 --baseline "" -q --out "$R/${1#sft-}-R/seed$s"
done
