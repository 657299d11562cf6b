"""`tandem export` (weights for other trainers) and `tandem report` (one self-contained HTML page)."""

from __future__ import annotations

import sys
from pathlib import Path

from tandem.errors import InputError
from tandem.io import check_writable_file, write_text


def _prefix_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--prefix {item!r}: expected DOMAIN=PATH_PREFIX, e.g. code=data/code_text_document")
        d, p = item.split("=", 1)
        out[d.strip()] = p.strip()
    return out


def cmd_export(args) -> int:
    from tandem.report.export import FORMATS, export, read_weights

    if args.format not in FORMATS:
        raise InputError(f"--format: unknown format {args.format!r}; expected one of {', '.join(FORMATS)}")
    order = [d.strip() for d in args.order.split(",") if d.strip()] if args.order else None
    weights, source = read_weights(args.weights, args.method)
    text = export(weights, args.format, source, order, args.prefix_template, _prefix_map(args.prefix), args.weights)
    if args.format == "datasets" and not args.quiet:
        print("note: pass stopping_strategy='all_exhausted' to interleave_datasets (with the default "
              "'first_exhausted' the stream stops when one domain runs out and the shares drift from the weights); "
              "the probabilities are per document for the tokenizer and seq_len in the file's 'assumes'",
              file=sys.stderr)
    if args.out:
        from tandem.io import refuse_input_file

        refuse_input_file(args.out, [args.weights])
        out = check_writable_file(args.out, "--out")
        write_text(out, text)
        if not args.quiet:
            print(f"wrote {out} ({args.format})", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_report(args) -> int:
    from tandem.report.html import write_report

    out = write_report(Path(args.dir), Path(args.out) if args.out else None)
    print(f"wrote {out}")
    return 0


def register(sub, common) -> None:
    sp = sub.add_parser(
        "export", help="write learned weights in another trainer's format (Megatron-LM, DoReMi, datasets, YAML)",
        description="Read WEIGHTS (a weights.json of optimize/run, a compare results.json, or their folder) and "
                    "write it for another trainer: megatron (WEIGHT PREFIX pairs for --data-args-path), doremi "
                    "(train/eval_domain_weights JSON), datasets (domains and probabilities for "
                    "interleave_datasets), yaml (domain: weight).")
    common(sp, config=False)
    sp.add_argument("weights", metavar="WEIGHTS", help="weights.json, results.json, or a folder holding one")
    sp.add_argument("--format", required=True, help="megatron, doremi, datasets or yaml")
    sp.add_argument("--out", default=None, help="output file (default: stdout)")
    sp.add_argument("--method", default=None, help="the method to export from a compare results.json")
    sp.add_argument("--order", default=None, help="comma-separated domain order (default: the file's order)")
    sp.add_argument("--prefix-template", default="{domain}",
                    help="megatron: data prefix of each domain, e.g. 'data/{domain}_text_document' (default: {domain})")
    sp.add_argument("--prefix", action="append", default=[], metavar="DOMAIN=PREFIX",
                    help="megatron: the data prefix of one domain (repeatable; overrides --prefix-template)")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser(
        "report", help="write one self-contained HTML page for an optimize, run or compare folder",
        description="Weights, trajectories, per-domain losses, config and versions of DIR on one HTML page with "
                    "inline plots (no external files or URLs).")
    common(sp, config=False)
    sp.add_argument("dir", metavar="DIR", help="an output folder of tandem optimize, run or compare")
    sp.add_argument("--out", default=None, help="output HTML file (default: DIR/report.html)")
    sp.set_defaults(func=cmd_report)
