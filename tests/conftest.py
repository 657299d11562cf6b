"""Shared fixtures: small real-text domains built from the Python standard library (always installed)."""

from __future__ import annotations

import ast
import json
import os
import sysconfig
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _code_docs(pkg: str, limit: int) -> list[str]:
    files = sorted((STDLIB / pkg).glob("*.py")) if (STDLIB / pkg).is_dir() else [STDLIB / f"{pkg}.py"]
    return [f.read_text(encoding="utf-8") for f in files][:limit]


def _docstrings(modules: list[str], limit: int) -> list[str]:
    out = []
    for m in modules:
        src = (STDLIB / f"{m}.py").read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)):
                d = ast.get_docstring(node)
                if d and len(d) > 80:
                    out.append(d)
    return out[:limit]


def write_jsonl(path: Path, docs: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")


def make_domains(root: Path) -> dict[str, list[str]]:
    """Three domains of unequal size: code, docstrings, prose (licence text split by paragraph)."""
    code = _code_docs("json", 20) + _code_docs("email", 12)
    docs = _docstrings(["argparse", "typing", "subprocess", "pathlib", "shutil"], 200)
    lic = (STDLIB / "LICENSE.txt").read_text(encoding="utf-8")
    prose = [p for p in lic.split("\n\n") if len(p) > 200]
    return {"code": code, "docs": docs, "prose": prose}


def write_split_domains(root: Path, domains: dict[str, list[str]]) -> dict:
    spec = {}
    for name, docs in domains.items():
        n = len(docs)
        nv = max(2, n // 10)
        parts = {"valid": docs[:nv], "test": docs[nv : 2 * nv], "train": docs[2 * nv :]}
        for split, d in parts.items():
            write_jsonl(root / "data" / name / f"{split}.jsonl", d)
        spec[name] = {s: f"data/{name}/{s}.jsonl" for s in ("train", "valid", "test")}
    return spec


def tiny_config(root: Path, **sections) -> Path:
    """Write a CI-sized config over the stdlib domains and return its path."""
    spec = write_split_domains(root, make_domains(root))
    cfg = {
        "seed": 0,
        "data": {"domains": spec},
        "tokenizer": {"vocab_size": 512},
        "model": {"preset": "tiny"},
        "train": {"steps": 30, "batch_size": 8, "seq_len": 64, "lr": 3e-3, "warmup_steps": 5, "log_interval": 5},
        "eval": {"max_tokens": 4096, "batch_size": 16},
    }
    for k, v in sections.items():
        cfg.setdefault(k, {}).update(v) if isinstance(v, dict) else cfg.__setitem__(k, v)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def tiny_cfg(tmp_path) -> Path:
    return tiny_config(tmp_path)


@pytest.fixture(scope="session")
def shared_cfg(tmp_path_factory) -> Path:
    """One tiny config whose data and token cache are shared by tests that only read them.

    Tests write their runs elsewhere (their own tmp_path) and never edit this folder's files.
    """
    return tiny_config(tmp_path_factory.mktemp("shared"))


@pytest.fixture
def cli(capsys):
    """Run `tandem ARGV...` in-process; returns (exit code, stdout, stderr)."""
    from tandem.cli.main import main

    def run(*argv) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return run
