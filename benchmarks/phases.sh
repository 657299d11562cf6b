#!/usr/bin/env bash
# The stage-one runs behind BENCHMARKS.md, "Where the twins' gap points during stage one" (an exploration). From the
# repository root, after `python -m benchmarks scenarios --prepare-only`; each run is `tandem optimize` (stage one
# only) on seeds 0-4 into runs/s11/NAME/seedS, then `python -m benchmarks phases` prints the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
R=runs/s11
T="${TANDEM:-tandem}"
run() {  # NAME CONFIG [--set ...]: seeds 0-4, a finished seed is kept
    local name=$1 cfg=$2; shift 2
    for s in 0 1 2 3 4; do
        [ -f "$R/$name/seed$s/weights.json" ] || $T optimize "benchmarks/configs/$cfg.yaml" --set seed=$s "$@" \
            --out "$R/$name/seed$s" -q > /dev/null
    done
}
S="--set mixer.probe_steps=1 --set mixer.free_steps=1"
# DoGE's probe (the reference steps on validation data alone, from the proxy) under TANDEM's step and report
DOGE_PROBE="--set mixer.method=doge --set mixer.update=standardized --set mixer.eta_alpha=0.08 --set mixer.report=final
    --set mixer.sampling=resample $S"
run S-gamma100 restricted $S --set mixer.episodes=53 --set mixer.gamma=100
run S-gamma1000 restricted $S --set mixer.episodes=53 --set mixer.gamma=1000
run probe-short restricted $DOGE_PROBE --set mixer.episodes=53
run probe-long restricted $DOGE_PROBE --set mixer.episodes=106
run probe-short-ecommerce sft-ecommerce $DOGE_PROBE --set mixer.episodes=33
# measured late: half the proxy's steps on the initial mixture first, then the episodes
run late-restricted restricted --set mixer.probe_steps=1 --set mixer.free_steps=3 --set mixer.warmup_steps=100 \
    --set mixer.episodes=25
run late-ecommerce sft-ecommerce --set mixer.probe_steps=1 --set mixer.free_steps=3 --set mixer.warmup_steps=74 \
    --set mixer.episodes=19
run late-K5-ecommerce sft-ecommerce --set mixer.warmup_steps=75 --set mixer.episodes=5
DOGE=0.128,0.139,0.277,0.169,0.113,0.174   # DoGE as released, restricted (5 seeds): better than uniform
ODM=0.120,0.533,0.254,0.093                # ODM's learned mixture, e-commerce: better than uniform
python -m benchmarks phases --reference $DOGE "S=runs/s9/restricted-K1E1/runs/tandem-seed*/optimize" \
    "S-gamma100=$R/S-gamma100/seed*" "S-gamma1000=$R/S-gamma1000/seed*" "probe-short=$R/probe-short/seed*" \
    "probe-long=$R/probe-long/seed*" "doge=runs/peers-restricted/runs/doge-seed*/optimize" \
    "G=runs/s9/restricted-G/runs/tandem-seed*/optimize" "late=$R/late-restricted/seed*"
python -m benchmarks phases --reference $ODM "G=runs/s9/ecommerce-G/runs/tandem-seed*/optimize" \
    "S=runs/s9/ecommerce-K1E1/runs/tandem-seed*/optimize" "probe-short=$R/probe-short-ecommerce/seed*" \
    "late=$R/late-ecommerce/seed*" "late-K5=$R/late-K5-ecommerce/seed*"
