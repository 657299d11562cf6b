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
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
# eval.json of each run holds the task metrics (greedy generation on the test split) beside the losses.
res = {m: json.loads((out / "runs" / f"{m}-seed0" / "eval.json").read_text()) for m in ("uniform", "tandem")}
weights = {m: json.loads((out / "runs" / f"{m}-seed0" / "result.json").read_text()) for m in res}
tasks = list(res["uniform"]["task_metrics"]["per_task"])
lines = ["| task | metric | " + " | ".join(f"{m} weight | {m} score | {m} F1 | {m} test loss" for m in res) + " |",
         "|---|---|" + "---|" * (4 * len(res))]
def f(v):
    return "-" if v is None else f"{v:.3f}"
for t in tasks:
    cells = []
    for m, r in res.items():
        pt = r["task_metrics"]["per_task"][t]
        w = weights[m].get("weights", {}).get(t)
        cells += [f(w), f(pt["score"]), f(pt.get("f1")), f(r["test_loss"]["per_domain"][t])]
    lines.append(f"| {t} | {res['uniform']['task_metrics']['per_task'][t]['metric']} | " + " | ".join(cells) + " |")
cells = []
for m, r in res.items():
    avg = r["task_metrics"]["average"]
    cells += ["", f(avg["score"]), f(avg.get("f1")), f(r["test_loss"]["average"])]
lines.append("| average | | " + " | ".join(cells) + " |")
table = "\n".join(lines)
(out / "metrics.md").write_text(table + "\n")
print(table)
PY
echo "total wall time: $(( $(date +%s) - start )) s"
