"""The package's layers: no module imports from a layer above its own (at module level or inside a function).

From the bottom: the foundations (errors, io, config, tracking); data and models; training; evaluation; report
(tables, plots, exports); mixing (the methods and stage one); the jobs (pipeline, the run registry, the Trainer
integration, the example-data builders); and the front ends (cli, the Python API). A job that needs pieces of
several layers belongs in pipeline, not in the layer of one of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "tandem"
LAYERS = [
    # Two modules sit below their package: data.readers (reading source files; it imports only tandem.errors, and
    # the config reads a column's values through it) and training.distributed (process-group queries that import
    # nothing of tandem; every writer asks it whether this rank writes).
    {"errors", "io", "schema", "progress", "config", "tracking", "data.readers", "training.distributed"},
    {"data", "models"},
    {"training"},
    {"evaluation"},
    {"report"},
    {"mixing"},
    {"pipeline", "runs", "integrations", "examples"},
    {"cli", "api", "__init__", "__main__"},
]
LEVEL = {name: k for k, names in enumerate(LAYERS) for name in names}


def _package(parts: tuple[str, ...]) -> str:
    """The part of tandem a module belongs to: `tandem.mixing.loop` -> mixing, `tandem.io` -> io, and a module
    placed on its own (`tandem.data.readers`) -> itself."""
    if len(parts) > 2 and ".".join(parts[1:3]) in LEVEL:
        return ".".join(parts[1:3])
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "tandem":
                yield from (f"tandem.{a.name}" for a in node.names)
            elif node.module.startswith("tandem."):
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("tandem."))


def test_every_package_has_a_layer():
    found = {_package(p.relative_to(SRC.parent).with_suffix("").parts) for p in SRC.rglob("*.py")}
    assert found <= set(LEVEL), f"give these a layer in LAYERS: {sorted(found - set(LEVEL))}"


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        mine = _package(path.relative_to(SRC.parent).with_suffix("").parts)
        for target in _imports(path):
            theirs = _package(tuple(target.split(".")))
            if theirs in LEVEL and LEVEL[theirs] > LEVEL[mine]:
                upward.append(f"{path.relative_to(SRC.parent)} imports {target}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check itself: a function-level import of a higher layer is found."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from tandem.pipeline.run import run_job\n")
    assert list(_imports(f)) == ["tandem.pipeline.run"]
