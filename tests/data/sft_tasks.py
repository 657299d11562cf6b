"""Three small SFT tasks of unequal size built from the Python standard library (always installed).

- `funcname`: a function's docstring -> its name ({prompt, response} rows)
- `upper`: a phrase -> the phrase in capitals ({prompt, response} rows)
- `module`: two-turn chats ({messages}): which module defines a name, then its kind (function or class)
"""

from __future__ import annotations

import ast
import json
import sysconfig
from pathlib import Path

import yaml

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = ["argparse", "typing", "subprocess", "pathlib", "shutil", "json/__init__", "textwrap", "csv"]


def _defs() -> list[tuple[str, str, str, str]]:
    """(module, name, kind, docstring) of documented top-level functions and classes."""
    out = []
    for m in MODULES:
        tree = ast.parse((STDLIB / f"{m}.py").read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                doc = ast.get_docstring(node) or ""
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                out.append((m.split("/")[0], node.name, kind, doc))
    return out


def sft_rows() -> dict[str, list[dict]]:
    defs = _defs()
    funcname = [{"prompt": f"Name the definition documented as:\n{doc[:90]}", "response": name}
                for _, name, _, doc in defs if len(doc) > 40]
    words = [w for _, _, _, doc in defs for w in doc.split() if w.isalpha()]
    upper = [{"prompt": "Capitalise: " + " ".join(words[i : i + 4]), "response": " ".join(words[i : i + 4]).upper()}
             for i in range(0, min(len(words), 4 * 160), 4)]
    module = [{"messages": [
        {"role": "system", "content": "Answer with one word."},
        {"role": "user", "content": f"Which module defines {name}?"},
        {"role": "assistant", "content": mod},
        {"role": "user", "content": "Function or class?"},
        {"role": "assistant", "content": kind},
    ]} for mod, name, kind, _ in defs[:60]]
    return {"funcname": funcname, "upper": upper, "module": module}


def write_sft_tasks(root: Path) -> dict:
    """jsonl train/valid/test files per task under root/sft/; returns the data.domains spec."""
    spec = {}
    for name, rows in sft_rows().items():
        n = len(rows)
        nv = max(3, n // 10)
        parts = {"valid": rows[:nv], "test": rows[nv : 2 * nv], "train": rows[2 * nv :]}
        for split, part in parts.items():
            path = root / "sft" / name / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
        spec[name] = {"kind": "sft", **{s: f"sft/{name}/{s}.jsonl" for s in ("train", "valid", "test")}}
    return spec


def sft_config(root: Path, **sections) -> Path:
    """A CI-sized config over the three SFT tasks (BPE tokenizer, default chat template)."""
    cfg = {
        "seed": 0,
        "data": {"domains": write_sft_tasks(root)},
        "tokenizer": {"vocab_size": 384},
        "model": {"preset": "tiny"},
        "train": {"steps": 30, "batch_size": 8, "seq_len": 96, "lr": 3e-3, "warmup_steps": 5, "log_interval": 5},
        "eval": {"max_tokens": 2000, "batch_size": 16},
    }
    for k, v in sections.items():
        cfg.setdefault(k, {}).update(v) if isinstance(v, dict) else cfg.__setitem__(k, v)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
