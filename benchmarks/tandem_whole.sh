#!/usr/bin/env bash
# The runs behind BENCHMARKS.md, "TANDEM with whole-horizon episodes" (variant W). From the repository root:
# `bash benchmarks/tandem_whole.sh SCENARIO|CONFIG [--stage-one]`: per seed 0-4, `tandem optimize` with W's settings
# (mixer.restart, probe_steps = the config's train.steps, 4 episodes, gamma 1) into runs/whole/NAME/w-seedS, then,
# unless --stage-one (the null), `tandem train` on its mixture at the same seed into runs/whole/NAME/target-seedS;
# two seeds at a time. EXTRA: more `--set` arguments (another step); NAME: the folder under runs/whole.
# `python -m benchmarks whole runs/whole/NAME --uniform DIR --against LABEL=DIR` reads them.
set -euo pipefail
cd "$(dirname "$0")/.."
S="$1"; ONLY="${2:-}"
C="benchmarks/configs/$S.yaml"; [ -f "$S" ] && C="$S" && S="$(basename "$S" .yaml)"
R="runs/whole/${NAME:-${S#sft-}}"
T="${TANDEM:-tandem}"
steps=$(python -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['train']['steps'])" "$C")
mkdir -p "$R"
one() {
    local s=$1
    [ -f "$R/w-seed$s/weights.json" ] || $T optimize "$C" --set "seed=$s" --set mixer.method=tandem \
        --set mixer.restart=true --set "mixer.probe_steps=$steps" --set mixer.free_steps=0 --set mixer.warmup_steps=0 \
        --set mixer.episodes=4 --set mixer.gamma=1 ${EXTRA:-} -q --force --out "$R/w-seed$s" >/dev/null
    [ "$ONLY" = "--stage-one" ] || [ -f "$R/target-seed$s/eval.json" ] || $T train "$C" --set "seed=$s" \
        --weights "$R/w-seed$s/weights.json" -q --force --out "$R/target-seed$s" >/dev/null
}
run_one() { one "$1"; }
source benchmarks/pairs.sh
two_at_a_time 0 1 2 3 4
