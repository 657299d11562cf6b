#!/usr/bin/env bash
# The e-commerce example end to end on CPU: generate the synthetic multi-task data, learn a task mixture with
# TANDEM and train the same target on it and on uniform weights (tandem compare), then score every task by
# greedy generation on the test split (tandem metrics) and write a table of both.
# Usage: bash scripts/ecommerce.sh [OUT]   (default OUT: runs/ecommerce)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/ecommerce}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
start=$(date +%s)
tandem ecommerce --out data/ecommerce --seed 0
tandem compare configs/ecommerce.yaml --methods uniform,tandem --seeds 1 --out "$OUT"
for m in uniform tandem; do
  tandem metrics configs/ecommerce.yaml --model "$OUT/runs/$m-seed0/model" --out "$OUT/metrics-$m.json"
done
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
res = {m: json.loads((out / f"metrics-{m}.json").read_text()) for m in ("uniform", "tandem")}
weights = {m: json.loads((out / "runs" / f"{m}-seed0" / "result.json").read_text()) for m in res}
tasks = list(res["uniform"]["per_task"])
lines = ["| task | metric | " + " | ".join(f"{m} weight | {m} score | {m} F1 | {m} test loss" for m in res) + " |",
         "|---|---|" + "---|" * (4 * len(res))]
def f(v):
    return "-" if v is None else f"{v:.3f}"
for t in tasks:
    cells = []
    for m, r in res.items():
        pt = r["per_task"][t]
        w = weights[m].get("weights", {}).get(t)
        cells += [f(w), f(pt["score"]), f(pt.get("f1")), f(r["loss"]["per_domain"][t])]
    lines.append(f"| {t} | {res['uniform']['per_task'][t]['metric']} | " + " | ".join(cells) + " |")
cells = []
for m, r in res.items():
    cells += ["", f(r["average"]["score"]), f(r["average"].get("f1")), f(r["loss"]["average"])]
lines.append("| average | | " + " | ".join(cells) + " |")
table = "\n".join(lines)
(out / "metrics.md").write_text(table + "\n")
print(table)
PY
echo "total wall time: $(( $(date +%s) - start )) s"
