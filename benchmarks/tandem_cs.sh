#!/usr/bin/env bash
# The runs behind BENCHMARKS.md, "A proxy that sees what the target sees, with the reach of more episodes" (protocol
# there). From the repository root as for benchmarks/tandem_short.sh: `bash benchmarks/tandem_cs.sh SCENARIO` for
# restricted, transfer, oracle, sft-ecommerce, abundant, or `... null SIGNAL_ROOT`. S's schedule and episode counts,
# with the target's own architecture as the proxy, repeating each domain as often as the target will.
set -euo pipefail
cd "$(dirname "$0")/.."
R=runs/s9
T="${TANDEM:-tandem}"
CS="--set mixer.proxy=target --set mixer.horizon=target --set mixer.probe_steps=1 --set mixer.free_steps=1"
declare -A EPISODES=([restricted]=53 [transfer]=65 [oracle]=63 [sft-ecommerce]=33 [abundant]=53)
if [ "$1" = null ]; then
    for s in 0 1 2 3 4; do
        $T optimize "$2/configs/null-after-seed$s.yaml" --set mixer.gamma=10 $CS --set mixer.episodes=134 \
            --out "$R/null-CS/seed$s" -q
    done
else
    $T compare "benchmarks/configs/$1.yaml" --methods tandem --seeds 5 -q --out "$R/${1#sft-}-CS" $CS \
        --set mixer.episodes=${EPISODES[$1]}
fi
