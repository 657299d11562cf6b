"""The synthetic e-commerce generator: reproducible bytes, unequal task sizes, labels consistent with the listings."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tandem.examples import ecommerce as ec

SCALE = 0.1


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ecommerce") / "out"
    return out, ec.build_ecommerce(out, seed=0, scale=SCALE)


def test_same_seed_same_bytes_other_seed_other_rows(built, tmp_path):
    out, _ = built
    again = ec.build_ecommerce(tmp_path / "again", seed=0, scale=SCALE)
    assert _tree(out) == _tree(tmp_path / "again")
    assert set(_tree(out)) == {"manifest.json"} | {f"{t}/{s}.jsonl" for t in ec.TASKS for s in ec.SPLITS}
    assert not list((tmp_path / "again").rglob("*.tmp"))
    ec.build_ecommerce(tmp_path / "other", seed=1, scale=SCALE)
    assert (tmp_path / "other" / "brand" / "train.jsonl").read_bytes() != (out / "brand" / "train.jsonl").read_bytes()
    assert again["seed"] == 0


def test_manifest_sizes_spread_and_synthetic_note(built):
    out, manifest = built
    assert manifest["synthetic"] is True and "synthetic" in manifest["note"].lower()
    train = {t: info["splits"]["train"]["rows"] for t, info in manifest["tasks"].items()}
    assert train == {t: round(n * SCALE) for t, n in ec.TRAIN_SIZES.items()}
    assert max(train.values()) / min(train.values()) == pytest.approx(30)
    for task, info in manifest["tasks"].items():
        assert info["metric"] == ec.TASK_METRICS[task]
        for split in ec.SPLITS:
            rows = _rows(out / task / f"{split}.jsonl")
            assert len(rows) == info["splits"][split]["rows"]
            assert all(set(r) == {"prompt", "response"} and r["prompt"] and r["response"] for r in rows)
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_prompts_unique_across_splits(built):
    out, _ = built
    for task in ec.TASKS:
        prompts = [r["prompt"] for s in ec.SPLITS for r in _rows(out / task / f"{s}.jsonl")]
        assert len(prompts) == len(set(prompts)), task


def test_labels_are_canonical_and_follow_the_listing(built):
    out, _ = built
    brands = {b for c in ec.CATEGORIES for b in c.brands}
    for r in _rows(out / "category" / "train.jsonl"):
        assert r["response"] in ec.CATEGORY_LABELS
    for r in _rows(out / "brand" / "train.jsonl"):
        assert r["response"] in brands
        listing = r["prompt"].split("\n\n", 1)[1].lower()
        forms = [r["response"]] + ec.BRAND_VARIANTS.get(r["response"], [])
        assert any(f.lower() in listing for f in forms), r
    assert {r["response"] for r in _rows(out / "match" / "train.jsonl")} == {"yes", "no"}
    for r in _rows(out / "attributes" / "train.jsonl"):
        pairs = [p.split(": ", 1) for p in r["response"].split("; ")]
        keys = [k for k, _ in pairs]
        assert keys == [k for k in ec.ATTRIBUTE_KEYS if k in keys]  # canonical order, no repeats
        # Every extracted value appears in the listing in one of its surface forms.
        listing = r["prompt"].split("\n\n", 1)[1]
        for k, v in pairs:
            forms = {f for c in ec.CATEGORIES for f in c.attributes.get(k, {}).get(v, [])}
            assert forms and any(f in listing for f in forms), (k, v, listing)


def test_rendered_listing_carries_its_product(tmp_path):
    rng = random.Random(3)
    for _ in range(200):
        p = ec.sample_product(rng)
        title, desc = ec.render_listing(rng, p, full_title=True)
        for k, v in p.attributes:
            assert any(s in title for s in p.category.attributes[k][v])
        assert any(f in title for f in [p.brand, p.brand.upper()] + ec.BRAND_VARIANTS.get(p.brand, []))


def test_match_negatives_differ_from_the_product():
    rng = random.Random(0)
    for _ in range(300):
        p = ec.sample_product(rng)
        q = ec._other_product(rng, p)
        assert q.key() != p.key() and q.category == p.category


def test_cli_writes_dataset_and_rejects_bad_input(cli, tmp_path):
    rc, out, err = cli("ecommerce", "--out", tmp_path / "d", "--scale", "0.05", "--seed", "2")
    assert rc == 0, err
    assert "synthetic" in out.lower()
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["seed"] == 2
    rc, _, err = cli("ecommerce", "--out", tmp_path / "e", "--scale", "-1")
    assert rc == 2 and err.startswith("error: --scale") and not (tmp_path / "e").exists()
