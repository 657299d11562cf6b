"""Real-text domains for the scenario benchmarks, built from sources that install offline.

A pool holds every domain once, split by document into train/valid/test by
`tandem.examples.corpus.build_corpus` (about 40k characters each of valid and test per domain, so every
scenario scores the same held-out text). A scenario takes a character budget of each domain's pool
train split (documents in the pool's seeded shuffled order, kept while they fit), so the small domains
of the data-restricted scenarios are real subsets, not truncated documents. Valid and test are the pool's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tandem.config import SPLITS
from tandem.io import write_json, write_text

POOL_DOMAINS = ("code", "books", "scripture", "legal", "chat", "docs", "quotes")
# Characters taken from each source before splitting; chat holds only ~100k after de-duplication.
POOL_BUDGET = 1_800_000
HELD_CHARS = 45_000  # target size of each of valid and test in the pool
VALID_CHARS = 25_000  # what a scenario keeps of the pool's valid split


def _read_jsonl(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _jsonl(docs: list[str]) -> str:
    return "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs)


def build_pool(root: Path, domains=POOL_DOMAINS, log=print) -> Path:
    """root/pool/<domain>/{train,valid,test}.jsonl; a domain already built is kept."""
    from tandem.examples import corpus

    pool = root / "pool"
    for d in domains:
        if (pool / d / "done.json").is_file():
            continue
        available = sum(len(x) for x in corpus._dedupe(corpus.DOMAIN_SOURCES[d]()))
        total = min(available, POOL_BUDGET)
        fraction = min(0.3, HELD_CHARS / total)
        tmp = pool / f".build-{d}"
        manifest = corpus.build_corpus(tmp, domains=[d], budgets={d: POOL_BUDGET}, seed=0,
                                       valid_fraction=fraction, test_fraction=fraction)
        target = pool / d
        if target.exists():
            shutil.rmtree(target)
        (tmp / d).rename(target)
        write_json(target / "done.json", manifest["domains"][d])
        shutil.rmtree(tmp)
        log(f"pool {d}: " + ", ".join(f"{s} {manifest['domains'][d]['splits'][s]['chars']:,} chars" for s in SPLITS))
    return pool


def take_chars(docs: list[str], budget: int) -> list[str]:
    """Documents in order while they fit the character budget (a document too big for what is left is skipped)."""
    out, used = [], 0
    for doc in docs:
        if used + len(doc) <= budget:
            out.append(doc)
            used += len(doc)
    return out


def take_at_least(docs: list[str], budget: int) -> list[str]:
    """Documents in order until they reach the budget (the last one may overshoot; long documents stay whole)."""
    out, used = [], 0
    for doc in docs:
        if used >= budget:
            break
        out.append(doc)
        used += len(doc)
    return out


def build_scenario_data(pool: Path, out: Path, train_chars: dict[str, int | None],
                        train_from_valid: tuple[str, ...] = (), valid_chars: int | None = VALID_CHARS) -> dict:
    """out/<domain>/{train,valid,test}.jsonl from the pool: train cut to `train_chars[domain]` (None = all),
    valid to `valid_chars` (the optimizers' additional data stays smaller than the report's test split).

    A domain in `train_from_valid` is an out-of-domain target: no mixture trains on it (its weight is held
    at 0), but the sampler needs a non-empty train file, so its train file repeats its valid split, the text
    the optimizers may use anyway. Returns {domain: {split: chars}}; files are rewritten only when they change.
    """
    sizes = {}
    for d, budget in train_chars.items():
        split_docs = {s: _read_jsonl(pool / d / f"{s}.jsonl") for s in SPLITS}
        if valid_chars is not None:
            split_docs["valid"] = take_at_least(split_docs["valid"], valid_chars)
        if d in train_from_valid:
            split_docs["train"] = split_docs["valid"]
        elif budget is not None:
            split_docs["train"] = take_chars(split_docs["train"], budget)
        sizes[d] = {}
        for s, docs in split_docs.items():
            path = out / d / f"{s}.jsonl"
            text = _jsonl(docs)
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                write_text(path, text)
            sizes[d][s] = sum(len(x) for x in docs)
    return sizes
