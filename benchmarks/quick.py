"""`--quick`: the scenario pipeline end to end on tiny domains from the Python standard library, in seconds.

Three domains (library code, docstrings, licence prose) replace the real pool; models are the tiny preset
with a 512-token BPE and a few dozen steps. Numbers from it mean nothing; it checks that every stage
(data, compare runs, grid oracle, ablations, results JSON, markdown section, figures) works.
"""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import yaml

from benchmarks.scenario_data import SPLITS, _jsonl
from tandem.io import write_text

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _domains() -> dict[str, list[str]]:
    code = [f.read_text(encoding="utf-8") for f in sorted((STDLIB / "json").glob("*.py"))]
    code += [f.read_text(encoding="utf-8") for f in sorted((STDLIB / "email").glob("*.py"))[:12]]
    docs = []
    for m in ("argparse", "typing", "subprocess", "pathlib", "shutil"):
        for node in ast.walk(ast.parse((STDLIB / f"{m}.py").read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)):
                d = ast.get_docstring(node)
                if d and len(d) > 80:
                    docs.append(d)
    prose = [p for p in (STDLIB / "LICENSE.txt").read_text(encoding="utf-8").split("\n\n") if len(p) > 200]
    return {"code": code, "docs": docs[:200], "prose": prose}


def build_quick_pool(data_root: Path) -> Path:
    pool = data_root / "pool"
    for name, docs in _domains().items():
        nv = max(2, len(docs) // 10)
        parts = {"valid": docs[:nv], "test": docs[nv: 2 * nv], "train": docs[2 * nv:]}
        for s in SPLITS:
            path = pool / name / f"{s}.jsonl"
            if not path.is_file():
                write_text(path, _jsonl(parts[s]))
    return pool


def _config(root: Path, name: str, domains: list[str], mixer: dict | None = None) -> Path:
    data = root / "data" / "bench" / name
    cfg = {
        "seed": 0,
        "data": {"domains": {d: {s: str(data / d / f"{s}.jsonl") for s in SPLITS} for d in domains},
                 "cache_dir": str(data / ".cache")},
        "tokenizer": {"vocab_size": 512},
        "model": {"preset": "tiny"},
        "train": {"steps": 12, "batch_size": 8, "seq_len": 32, "lr": 3e-3, "warmup_steps": 2, "threads": 1},
        "eval": {"max_tokens": 2048, "batch_size": 16},
        "mixer": {"proxy": {"preset": "tiny"}, "episodes": 3, "probe_steps": 2, "free_steps": 2, "warmup_steps": 2,
                  "update": "eg", "eta_alpha": 10.0, "eval_sequences": 2, "grid_resolution": 2, **(mixer or {})},
    }
    path = root / "configs" / f"{name}.yaml"
    write_text(path, yaml.safe_dump(cfg, sort_keys=False))
    return path


def quick_scenarios(root: Path) -> dict:
    from benchmarks.scenarios import Scenario

    doms = ["code", "docs", "prose"]
    restricted = Scenario("restricted", "2. Data-restricted (quick)", {"code": None, "docs": None, "prose": 3000},
                          ["uniform", "tandem"], goal="(quick mode: no goal)")
    oracle = Scenario("oracle", "4. Oracle (quick)", {"code": None, "docs": None, "prose": 3000},
                      ["uniform", "tandem"], oracle=True, goal="(quick mode: no goal)")
    restricted.config = _config(root, "restricted", doms)
    oracle.config = _config(root, "oracle", doms)
    return {"restricted": restricted, "oracle": oracle}
