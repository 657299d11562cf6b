"""`tandem prepare` (the token cache) and the example-data builders: `tandem corpus`, `tandem tasks`, `tandem ecommerce`."""

from __future__ import annotations

import time

from tandem.cli.common import load, prepare
from tandem.cli.common import positive_number
from tandem.data.cache import format_table
from tandem.data.sft import fit_report, format_fit
from tandem.errors import InputError
from tandem.examples import corpus, ecommerce, tasks
from tandem.io import check_writable_dir


def cmd_prepare(args) -> int:
    cfg = load(args)
    data = prepare(cfg, args)
    print(format_table(data))
    print(f"tokenizer: vocab {data.vocab_size}, cache {data.cache_dir}")
    cut = format_fit(fit_report(data.arrays, cfg.train.seq_len), cfg.train.seq_len)
    if cut:
        print(cut)
    return 0


def _build(args, build, format_table, **kwargs) -> int:
    """One example-data command: check --seed, --scale and --out, build, print the table and the time taken."""
    if args.seed < 0:
        raise InputError(f"--seed: expected a non-negative integer, got {args.seed}")
    if not args.scale > 0:
        raise InputError(f"--scale: expected a positive number, got {args.scale}")
    out = check_writable_dir(args.out)
    t0 = time.perf_counter()
    try:
        manifest = build(out, seed=args.seed, **kwargs)
    except (corpus.CorpusSourceError, ValueError) as err:  # a missing source package, an unknown name
        raise InputError(str(err)) from None
    print(format_table(manifest))
    print(f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def _names(value: str | None, default) -> list[str]:
    return [d.strip() for d in (value or ",".join(default)).split(",") if d.strip()]


def cmd_corpus(args) -> int:
    return _build(args, corpus.build_corpus, corpus.format_table, domains=_names(args.domains, corpus.DEFAULT_DOMAINS),
                  budgets=corpus.scaled_budgets(args.scale) if args.scale > 0 else None)


def cmd_tasks(args) -> int:
    return _build(args, tasks.build_tasks, tasks.format_table, scale=args.scale,
                  tasks=tuple(_names(args.tasks, tasks.TASKS)))


def cmd_ecommerce(args) -> int:
    rc = _build(args, ecommerce.build_ecommerce, ecommerce.format_table, scale=args.scale)
    print(ecommerce.SYNTHETIC_NOTE)
    return rc


def register(sub, common) -> None:
    sp = sub.add_parser("prepare", help="tokenize the domains into the cache and print tokens per domain and split",
                        description="Read every domain's sources, train or load the tokenizer, cache token files "
                                    "(reused until a source or the tokenizer changes) and print a table.")
    common(sp)
    sp.set_defaults(func=cmd_prepare)

    sp = sub.add_parser("corpus", help="build the bundled default corpus from sources that install offline",
                        description="Assemble real text in several domains (code, books, scripture, legal, chat) "
                                    "split into train/valid/test jsonl files. Sources: scripts/install_corpus_sources.sh.")
    common(sp, config=False)
    sp.add_argument("--out", default="data/default", help="output folder (default: data/default)")
    sp.add_argument("--domains", default=None, help="comma-separated domains (default: the five pip-installable ones)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--scale", type=positive_number, default=1.0, help="multiply every domain's size budget")
    sp.set_defaults(func=cmd_corpus)

    sp = sub.add_parser("tasks", help="build five real SFT tasks of unequal size from text that installs offline",
                        description="Write DIR/<task>/{train,valid,test}.jsonl ({prompt, response} rows) for next_line "
                                    "(Shakespeare), verse_book (the Bible), func_name (the standard library's "
                                    "docstrings), chat_reply (chatterbot conversations) and license_id (SPDX), and "
                                    "DIR/manifest.json. Sources: scripts/install_corpus_sources.sh.")
    common(sp, config=False)
    sp.add_argument("--out", default="data/tasks", help="output folder (default: data/tasks)")
    sp.add_argument("--tasks", default=None, help="comma-separated tasks (default: all five)")
    sp.add_argument("--seed", type=int, default=0, help="shuffle seed of the splits (default 0)")
    sp.add_argument("--scale", type=positive_number, default=1.0, help="multiply every task's train size (default 1)")
    sp.set_defaults(func=cmd_tasks)

    sp = sub.add_parser("ecommerce", help="generate the synthetic multi-task product-understanding SFT example",
                        description="Write DIR/<task>/{train,valid,test}.jsonl ({prompt, response} rows) for the tasks "
                                    "category, attributes, brand and match, and DIR/manifest.json. The listings are "
                                    "synthetic, generated from real vocabularies; the same seed gives the same bytes.")
    common(sp, config=False)
    sp.add_argument("--out", default="data/ecommerce", help="output folder (default: data/ecommerce)")
    sp.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    sp.add_argument("--scale", type=positive_number, default=1.0, help="multiply every task's size (default 1)")
    sp.set_defaults(func=cmd_ecommerce)
