#!/usr/bin/env bash
# The runs behind BENCHMARKS.md, "The twins over the target's whole horizon" (an exploration): stage one as one
# episode of the target's train.steps probe steps (both twins from the same initialisation, no free steps), seeds 0-4,
# gamma 10 and 1, for each CONFIG given (default: e-commerce and restricted), two at a time, into
# runs/htwin/NAME-gG-seedS. `python -m benchmarks htwin runs/htwin` then reads them.
set -euo pipefail
cd "$(dirname "$0")/.."
T="${TANDEM:-tandem}"
[ $# -gt 0 ] || set -- benchmarks/configs/sft-ecommerce.yaml benchmarks/configs/restricted.yaml
jobs=()
for c in "$@"; do
    n="$(basename "$c" .yaml)"; n="${n#sft-}"
    steps=$(python -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['train']['steps'])" "$c")
    for g in 10 1; do for s in 0 1 2 3 4; do jobs+=("$c $n $steps $g $s"); done; done
done
run_one() {
    set -- $1
    local out="runs/htwin/$2-g$4-seed$5"
    [ -f "$out/weights.json" ] || $T optimize "$1" --set "seed=$5" --set mixer.episodes=1 --set "mixer.probe_steps=$3" \
        --set mixer.free_steps=0 --set mixer.warmup_steps=0 --set "mixer.gamma=$4" -q --force --out "$out" >/dev/null
}
source benchmarks/pairs.sh
two_at_a_time "${jobs[@]}"
