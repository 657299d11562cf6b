"""Every shipped config (configs/ and benchmarks/configs/) loads and runs its whole job for a few steps.

The configs point at data built by `tandem corpus`, `tandem ecommerce` or the benchmarks; here each domain's
sources are replaced by small stand-ins of the same kind (text or SFT rows) and the step counts shrink, while
everything else the recipe sets (method, mixer settings, models, stages, horizon) stays as shipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import make_domains, write_jsonl
from data.sft_tasks import sft_rows
from tandem.cli.main import main

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted([*REPO.glob("configs/*.yaml"), *REPO.glob("benchmarks/configs/*.yaml")])
SPLITS = ("train", "valid", "test")
# Sizes that keep each recipe to seconds: a few target and proxy steps, short evaluations.
SHRINK = {"train": {"steps": 3, "warmup_steps": 1, "batch_size": 4},
          "eval": {"max_tokens": 512},
          "mixer": {"episodes": 2, "warmup_steps": 1, "regmix_steps": 2, "reference_steps": 2}}


def _stand_in_data(root: Path, domains: dict) -> dict:
    text = [d for docs in make_domains(root).values() for d in docs]
    sft = [r for rows in sft_rows().values() for r in rows]
    spec = {}
    for k, (name, dom) in enumerate(domains.items()):
        kind = (dom or {}).get("kind", "text")
        pool = sft if kind == "sft" else text
        pool = pool[k % 7:] + pool[: k % 7]  # domains differ a little, so the mixture has something to see
        entry = {key: v for key, v in (dom or {}).items() if key in ("kind", "metric", "text_field")}
        has = [s for s in SPLITS if s in (dom or {})] or list(SPLITS)
        for split in has:
            rows = pool[:: 3][:40] if split == "train" else pool[1:: 7][:12]
            path = root / "data" / name / f"{split}.jsonl"
            if kind == "sft":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            else:
                write_jsonl(path, rows)
            entry[split] = str(path)
        spec[name] = entry
    return spec


def _shrunk(recipe: Path, root: Path) -> Path:
    cfg = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    cfg["data"]["domains"] = _stand_in_data(root, cfg["data"]["domains"])
    cfg["data"]["cache_dir"] = str(root / "cache")
    for section, values in SHRINK.items():
        if section == "mixer" and cfg.get("mixer", {}).get("method") not in (None, "tandem", "doremi", "doge"):
            values = {k: v for k, v in values.items() if k in ("warmup_steps",)}
        cfg.setdefault(section, {}).update(values)
    if cfg.get("stages"):
        cfg["stages"]["sft_steps"] = 2
    path = root / recipe.name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("recipe", RECIPES, ids=[str(p.relative_to(REPO)) for p in RECIPES])
def test_recipe_runs(recipe, tmp_path, capsys):
    path = _shrunk(recipe, tmp_path)
    rc = main(["run", str(path), "--out", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert (tmp_path / "out" / "summary.md").is_file()
