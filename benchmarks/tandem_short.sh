#!/usr/bin/env bash
# The runs behind BENCHMARKS.md, "Shorter, more episodes at the same FLOPs" (protocol there). From the repository root
# as for benchmarks/tandem_evidence.sh; `bash benchmarks/tandem_short.sh SCENARIO` for restricted, transfer, oracle,
# sft-ecommerce, abundant, or `... null SIGNAL_ROOT`; the episodes bring each to the defaults' stage-one FLOPs.
# With VARIANT=CS (benchmarks/tandem_cs.sh), the same schedule with the target's own architecture as the proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
R=runs/s9
T="${TANDEM:-tandem}"
S="--set mixer.probe_steps=1 --set mixer.free_steps=1"
NAME=K1E1
if [ "${VARIANT:-S}" = CS ]; then
    S="--set mixer.proxy=target --set mixer.horizon=target $S"
    NAME=CS
fi
declare -A EPISODES=([restricted]=53 [transfer]=65 [oracle]=63 [sft-ecommerce]=33 [abundant]=53)
if [ "$1" = null ]; then
    for s in 0 1 2 3 4; do
        $T optimize "$2/configs/null-after-seed$s.yaml" --set mixer.gamma=10 $S --set mixer.episodes=134 \
            --out "$R/null-$NAME/seed$s" -q
    done
else
    $T compare "benchmarks/configs/$1.yaml" --methods tandem --seeds 5 -q --out "$R/${1#sft-}-$NAME" $S \
        --set mixer.episodes=${EPISODES[$1]}
fi
