#!/usr/bin/env bash
# The red team's harness over its 358 cases against this checkout, kept as a regression suite.
#
#   sudo bash scripts/redteam/run.sh SCRATCH_DIR [old n1 ... kill]   # all groups by default
#
# SCRATCH_DIR receives the cases, data and results (results.final.jsonl, summary.txt). The scripts carry the
# placeholders SCRATCH, PROJECT and VENV; copies with them filled in are run from SCRATCH_DIR. PYTHON selects the
# interpreter with tandem installed (default: python). Full- and read-only-disk cases mount a small tmpfs, so they
# need root; about 45 minutes on 2 cores.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PROJECT="$(cd "$HERE/../.." && pwd)"
SCRATCH="${1:?usage: run.sh SCRATCH_DIR [groups...]}"
shift || true
GROUPS_TO_RUN=("$@")
[ ${#GROUPS_TO_RUN[@]} -eq 0 ] && GROUPS_TO_RUN=(old n1 n2 n3 n4 n5 n6 n7 n8 kill)
PY="${PYTHON:-python}"
VENV="$("$PY" -c 'import sys; print(sys.prefix)')"
[ -x "$VENV/bin/tandem" ] || { echo "error: $VENV/bin/tandem not found (install tandem into that environment)" >&2; exit 2; }
mkdir -p "$SCRATCH/tmpdir" "$SCRATCH/tiny"
SCRATCH="$(cd "$SCRATCH" && pwd)"
for f in "$HERE"/*.py "$HERE"/*.yaml; do
    sed -e "s#SCRATCH#$SCRATCH#g" -e "s#VENV#$VENV#g" -e "s#PROJECT#$PROJECT#g" "$f" > "$SCRATCH/$(basename "$f")"
done
# h.py names the checkout in a variable called PROJECT, which the substitution above also rewrote
sed -i "s#^$PROJECT = #PROJECT = #" "$SCRATCH/h.py"
sed -i "s#.replace($PROJECT, #.replace(PROJECT, #" "$SCRATCH/h.py"
cd "$SCRATCH"
T="$VENV/bin/tandem"
if [ ! -f data/code/train.jsonl ]; then
    "$T" corpus --domains code --scale 0.2 --out "$SCRATCH/data/c_code" -q
    "$T" ecommerce --scale 0.1 --out "$SCRATCH/data/ecom" > /dev/null
    "$PY" mkdata.py
fi
[ -d ok-train ] || "$T" train base.yaml --out "$SCRATCH/ok-train" -q > /dev/null
[ -d ok-opt ] || "$T" optimize base.yaml --out "$SCRATCH/ok-opt" -q > /dev/null
[ -d ok-sft ] || "$T" train sft.yaml --out "$SCRATCH/ok-sft" -q > /dev/null
for g in "${GROUPS_TO_RUN[@]}"; do
    echo "== $g $(date -u +%H:%M:%S)"
    RT_GROUP=$([ "$g" = old ] && echo old-rerun || echo new) "$PY" "$g.py" > "log-$g.txt" 2>&1
done
"$PY" finalize.py
"$PY" summarize.py results.final.jsonl | tee summary.txt
