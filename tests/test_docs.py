"""The README and the documentation site: the README stays short, the site builds with no warning, the generated
config reference is current, and the README's links and the `tandem` command lines shown are real."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 260
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}


def _run(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def _fenced_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of every fenced code block, nested ones (indented in a list) included."""
    blocks, language, lines = [], None, []
    for line in text.splitlines():
        stripped = line.strip()
        if language is None:
            if stripped.startswith("```"):
                language, lines = stripped[3:].strip().lower(), []
        elif stripped.startswith("```"):
            blocks.append((language, lines))
            language = None
        else:
            lines.append(stripped)
    return blocks


def _command_lines(text: str) -> list[list[str]]:
    """The `tandem ...` commands shown in the shell blocks of a Markdown text, as argument lists (a line continued
    with a backslash is one command; `a && b`, `a; b` and `a | b` are several)."""
    commands = []
    for language, lines in _fenced_blocks(text):
        if language not in SHELL_LANGUAGES:
            continue
        joined = "\n".join(lines).replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            if not re.match(r"tandem\s", line) and " tandem " not in line:
                continue
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            segment: list[str] = []
            for token in [*lexer, ";"]:
                if token in {"&&", "||", ";", "|", "&"}:
                    if segment and segment[0] == "tandem":
                        commands.append(segment)
                    segment = []
                else:
                    segment.append(token)
    return commands


@lru_cache(maxsize=None)
def _help(sub: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "tandem.cli.main", sub, "--help"])


def _options(help_text: str) -> set[str]:
    """The option names a --help text lists (`-q`, `--quiet`, `--set`, ...)."""
    section = help_text.split("\noptions:", 1)[-1]
    return set(re.findall(r"(?:^|[\s,\[])(--?[A-Za-z][\w-]*)", section, flags=re.M))


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail into docs/ (at most {MAX_README_LINES})"


def test_readme_keeps_the_two_commands():
    text = README.read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    assert "```bash\nbash scripts/demo.sh\n```" in section
    assert "```bash\nbash scripts/test.sh\n```" in section


def test_mkdocs_build_is_strict_clean(tmp_path):
    done = _run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", str(tmp_path / "site")])
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "reference" / "api" / "index.html").is_file()


def test_every_docs_page_is_in_the_nav():
    def pages(nav) -> set[str]:
        out = set()
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            out |= pages(value) if isinstance(value, list) else {value}
        return out

    nav = pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"])
    # The results folders (docs/bench, compare-default, ecommerce, two-stage) hold run outputs linked from pages.
    written = {p.relative_to(DOCS).as_posix() for p in [*DOCS.glob("*.md"), *DOCS.glob("reference/*.md")]}
    assert written <= nav, f"pages missing from the nav in mkdocs.yml: {sorted(written - nav)}"
    assert {p for p in nav if not (DOCS / p).is_file()} == set()


def test_config_reference_is_current():
    done = _run([sys.executable, "scripts/config_reference.py"])
    assert done.returncode == 0, done.stderr
    expected = done.stdout.strip()
    page = (DOCS / "config.md").read_text(encoding="utf-8")
    start = page.find("\n**(top level)**")
    assert start >= 0, "docs/config.md: no generated tables (they start with **(top level)**)"
    assert page[start:].strip() == expected, (
        "docs/config.md is stale: replace everything from **(top level)** on with the output of "
        "`python scripts/config_reference.py`")


def test_readme_links_exist():
    text = README.read_text(encoding="utf-8")
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose) + re.findall(r"<img [^>]*src=\"([^\"]+)\"", prose)
    assert targets, "README.md links to nothing"
    missing = []
    for target in targets:
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if not (ROOT / path).exists():
            missing.append(target)
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_readme_links_every_docs_page():
    text = README.read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(docs/([^)#\s]+)", text))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.glob("*.md")} - {"index.md"}
    assert pages <= linked, f"README.md does not link these docs pages: {sorted(pages - linked)}"


def test_shown_commands_are_real():
    """Every `tandem ...` line in a shell block of the README or a docs page names a subcommand and its options."""
    shown = {README: _command_lines(README.read_text(encoding="utf-8"))}
    shown.update({page: _command_lines(page.read_text(encoding="utf-8")) for page in sorted(DOCS.glob("*.md"))})
    assert len(shown[README]) >= 5, shown[README]
    for source, argv in ((source, argv) for source, commands in shown.items() for argv in commands):
        where = f"{source.relative_to(ROOT)}: {shlex.join(argv)}"
        assert len(argv) >= 2, f"{where}: no subcommand"
        sub = argv[1]
        done = _help(sub)
        assert done.returncode == 0, f"{where}: `tandem {sub}` is not a subcommand: {done.stderr.strip()}"
        known = _options(done.stdout)
        used = {tok.split("=", 1)[0] for tok in argv[2:] if re.match(r"--?[A-Za-z]", tok)}
        assert used <= known, f"{where}: `tandem {sub} --help` lists no {sorted(used - known)} (it lists {sorted(known)})"


def test_command_parsing():
    text = ("```bash\n$ tandem corpus --out d && tandem run c.yaml --out r \\\n    --set a=1\n```\n"
            "```python\ntandem.optimize('c.yaml')\n```\n"
            "- item\n\n  ```bash\n  tandem export r --format yaml | head\n  ```\n")
    assert _command_lines(text) == [["tandem", "corpus", "--out", "d"],
                                    ["tandem", "run", "c.yaml", "--out", "r", "--set", "a=1"],
                                    ["tandem", "export", "r", "--format", "yaml"]]
    assert {"-q", "--quiet", "--out", "--set"} <= _options(
        "usage: tandem x [-h]\n\noptions:\n  -h, --help  help\n  --set KEY=VALUE  x\n  -q, --quiet  q\n  --out OUT  o\n")


def test_the_readme_quickstart_runs_as_written(tmp_path):
    """The README's first-look command, run as written (from a folder laid out like the repository: its config in
    configs/, the corpus it builds in data/)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Quickstart"):]
    command = next(" ".join(lines) for language, lines in _fenced_blocks(section) if language in SHELL_LANGUAGES)
    assert command.startswith("tandem corpus") and "configs/quickstart.yaml" in command
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "quickstart.yaml").write_text((ROOT / "configs" / "quickstart.yaml").read_text())
    tandem = str(Path(sys.executable).with_name("tandem"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    p = subprocess.run(["bash", "-c", command.replace("tandem ", f"{shlex.quote(tandem)} ") + " -q"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "runs" / "quickstart" / "summary.md").is_file()
