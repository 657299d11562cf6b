#!/usr/bin/env bash
# The runs behind BENCHMARKS.md, "More evidence per episode" (protocol there, written before them). From the
# repository root, with the scenario data prepared as for benchmarks/tandem_defaults.sh. Two streams fit two cores:
# `bash benchmarks/tandem_evidence.sh 1` and `... 2` side by side; `bash benchmarks/tandem_evidence.sh null SIGNAL_ROOT`
# runs the same-pool null (SIGNAL_ROOT: a `python -m benchmarks signal --only null` output folder, its configs);
# then `python -m benchmarks tandem-defaults runs/s9` prints the tables and decision 4 (runs/s9 also needs the
# uniform runs: a link SCENARIO -> the section above's SCENARIO folder).
set -euo pipefail
cd "$(dirname "$0")/.."
R=runs/s9
T="${TANDEM:-tandem}"
row() { local cfg=$1 name=$2; shift 2; $T compare "benchmarks/configs/$cfg.yaml" --methods tandem --seeds 5 -q --out "$R/$name" "$@"; }
rows() { local cfg=$1 name=$2
    row "$cfg" "$name-G"
    row "$cfg" "$name-E32" --set mixer.eval_sequences=32
    row "$cfg" "$name-E32V" --set mixer.eval_sequences=32 --set mixer.valid_fraction=0.9
}
case "${1:-1}" in
    1) rows transfer transfer; rows oracle oracle ;;
    2) rows restricted restricted; rows sft-ecommerce ecommerce; rows abundant abundant ;;
    null)
        for s in 0 1 2 3 4; do
            cfg="$2/configs/null-after-seed$s.yaml"
            $T optimize "$cfg" --set mixer.gamma=10 --set mixer.eval_sequences=32 --out "$R/null-E32/seed$s" -q
            $T optimize "$cfg" --set mixer.gamma=10 --set mixer.eval_sequences=32 --set mixer.valid_fraction=0.9 \
                --out "$R/null-E32V/seed$s" -q
        done ;;
esac
