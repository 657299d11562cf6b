#!/usr/bin/env bash
# The runs behind BENCHMARKS.md, "Which way the target's own loss slopes at uniform" (an exploration). From the
# repository root as for benchmarks/tandem_short.sh: `bash benchmarks/local_slope.sh SCENARIO|CONFIG [DELTA]` trains the
# target (the scenario's own model and steps) on uniform and on uniform with one domain's log-weight raised by DELTA
# (default 0.5), for every domain, seeds 0-4 (same seed: same initialisation and data order), two at a time.
# `python -m benchmarks slope runs/slope/SCENARIO --reference w,...` then reads the paired slopes. SETS (extra
# `--set` arguments, e.g. another model for the trained network) and NAME (the runs' folder under runs/slope) vary it.
set -euo pipefail
cd "$(dirname "$0")/.."
S="$1"; D="${2:-0.5}"
C="benchmarks/configs/$S.yaml"; [ -f "$S" ] && C="$S" && S="$(basename "$S" .yaml)"  # a scenario's name or a config file
R="runs/slope/${NAME:-${S#sft-}}"
T="${TANDEM:-tandem}"
mkdir -p "$R/weights"
python - "$C" "$D" "$R/weights" <<'PY'
import json, math, sys
import yaml
cfg = yaml.safe_load(open(sys.argv[1]))
names = list(cfg["data"]["domains"])
d = float(sys.argv[2])
for n in names:
    raw = {m: math.exp(d) if m == n else 1.0 for m in names}
    z = sum(raw.values())
    json.dump({"domain_weights": {m: v / z for m, v in raw.items()}}, open(f"{sys.argv[3]}/up-{n}.json", "w"))
PY
jobs=()
for s in 0 1 2 3 4; do
    jobs+=("uniform seed$s uniform")
    for w in "$R"/weights/up-*.json; do
        n=$(basename "$w" .json); jobs+=("$w seed$s $n")
    done
done
run_one() {
    set -- $1
    [ -f "$R/$3-$2/eval.json" ] || $T train "$C" --set "seed=${2#seed}" ${SETS:-} --weights "$1" -q --force \
        --out "$R/$3-$2"
}
source benchmarks/pairs.sh
two_at_a_time "${jobs[@]}"
