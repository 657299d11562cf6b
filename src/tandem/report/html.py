"""`tandem report DIR`: one self-contained HTML page for an optimize, run or compare folder.

Plots are PNGs inlined as base64 data URIs, styles are inline and nothing is fetched, so the page opens
anywhere (an e-mail attachment, an air-gapped machine). A small script in the page marks `<body>` with
`data-plots="rendered N/N"` once every plot has decoded (or `broken K/N`), which the tests read from a
headless browser.
"""

from __future__ import annotations

import base64
import csv
import html
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from tandem.errors import InputError
from tandem.io import write_text

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}td.best{font-weight:bold}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em;max-height:40em}
img{max-width:100%;display:block;margin:.5em 0}.meta{color:#666;font-size:.85em}
"""

_CHECK = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (im) { return im.complete && im.naturalWidth > 0; }).length;
  document.body.setAttribute('data-plots', (ok === imgs.length ? 'rendered ' : 'broken ') + ok + '/' + imgs.length);
});
</script>
"""


def _read_json(path: Path, reader=None) -> dict | None:
    """A JSON file of the folder held to its schema (`reader` from tandem.schema), or None when absent."""
    from tandem import schema

    if not path.exists():
        return None
    return (reader or schema.read_json)(path)


def _read_jsonl(path: Path) -> list[dict]:
    """metrics.jsonl's records (a log: lines that do not parse are skipped); those the report plots (with
    proxy_loss) only when they hold what it plots."""
    from tandem import schema
    from tandem.io import read_jsonl

    shape = {"step": schema.INT, "proxy_loss": schema.mapping(schema.NUM), "reference_loss": schema.mapping(schema.NUM),
             "delta": schema.mapping(schema.maybe(schema.NUM))}
    out = []
    for r in read_jsonl(path):
        if "proxy_loss" in r:
            try:
                schema.check(r, shape, str(path))
            except InputError:
                continue
        out.append(r)
    return out


def _trajectory(path: Path) -> tuple[list[str], list[int], np.ndarray, np.ndarray, np.ndarray] | None:
    """(domains, steps, weights [E, M], Delta [E, M], distance [E]) of a trajectory.csv, or None."""
    from tandem import schema

    if not path.exists():
        return None
    text = schema.read_text(path, "trajectory file")
    try:
        rows = list(csv.DictReader(text.splitlines()))
    except csv.Error as err:
        raise InputError(f"{path}: invalid csv ({err})") from None
    if not rows:
        return None
    names = [k[len("weight_"):] for k in rows[0] if k and k.startswith("weight_")]
    need = ["step", "distance", *(f"{p}_{d}" for d in names for p in ("weight", "delta"))]
    if not names or any(c not in rows[0] for c in need):
        missing = [c for c in need if c not in rows[0]] or ["weight_<domain>"]
        raise InputError(f"{path}: missing column '{missing[0]}'; expected step, distance and weight_/delta_ per domain")

    def num(r, c, n, integer=False, nan_ok=False):
        v = r.get(c)
        try:
            x = int(v) if integer else float(v)
        except (TypeError, ValueError):
            x = None
        if x is None or not (np.isfinite(x) or (nan_ok and np.isnan(x))):
            raise InputError(f"{path}: row {n}: {c}: expected {'an integer' if integer else 'a finite number'}, got {v!r}")
        return x

    steps = [num(r, "step", n, True) for n, r in enumerate(rows, 2)]
    w = np.array([[num(r, f"weight_{d}", n) for d in names] for n, r in enumerate(rows, 2)])
    # a domain without a train split (target-only) has no Delta: written as nan
    delta = np.array([[num(r, f"delta_{d}", n, nan_ok=True) for d in names] for n, r in enumerate(rows, 2)])
    # the online methods have no reference, so no twins' distance: written as nan
    dist = np.array([num(r, "distance", n, nan_ok=True) for n, r in enumerate(rows, 2)])
    return names, steps, w, delta, dist


class _Page:
    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []
        self._n = 0

    def h2(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def p(self, text: str, cls: str = "") -> None:
        self.parts.append(f"<p{' class=' + repr(cls) if cls else ''}>{html.escape(text)}</p>")

    def pre(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, head: list[str], rows: list[list], best_cols: dict[int, float] | None = None) -> None:
        def cell(v, j):
            s = f"{v:.4f}" if isinstance(v, float) else str(v)
            best = best_cols is not None and j in best_cols and isinstance(v, float) and np.isclose(v, best_cols[j])
            return ('<td class="best">' if best else "<td>") + html.escape(s) + "</td>"

        out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
        for r in rows:
            out.append("<tr>" + "".join(cell(v, j) for j, v in enumerate(r)) + "</tr>")
        out.append("</table>")
        self.parts.append("".join(out))

    def plot(self, draw, alt: str) -> None:
        """`draw(path)` writes a PNG; it is inlined as a data URI."""
        self._n += 1
        with tempfile.TemporaryDirectory(prefix="tandem-report-") as tmp:  # gone however draw() ends
            path = Path(tmp) / f"plot{self._n}.png"
            draw(path)
            data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.parts.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')

    def render(self) -> str:
        body = "\n".join(self.parts)
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>\n"
                f"<body data-plots=\"pending\">\n<h1>{html.escape(self.title)}</h1>\n{body}\n{_CHECK}</body></html>\n")


def _plot_lines(steps, values: np.ndarray, names: list[str], ylabel: str, title: str):
    def draw(path: Path) -> None:
        from tandem.report.plots import _plt, _save

        plt = _plt()
        fig, ax = plt.subplots(figsize=(7, 3.2))
        for j, d in enumerate(names):
            ax.plot(steps, values[:, j], label=d, lw=1.5)
        ax.set_xlabel("proxy step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=8, ncol=2 if len(names) > 5 else 1)
        fig.tight_layout()
        _save(fig, path)
        plt.close(fig)

    return draw


def _weights_section(page: _Page, mixtures: dict[str, dict[str, float]], title: str,
                     errors: dict[str, dict[str, float]] | None = None) -> None:
    from tandem.report.plots import plot_weight_bars

    names = list(next(iter(mixtures.values())))
    page.h2("Weights")
    page.table(["domain", *mixtures], [[d, *(float(mixtures[m][d]) for m in mixtures)] for d in names])
    page.plot(lambda p: plot_weight_bars(mixtures, p, title, errors=errors), "domain weights")


# What each method's per-episode signal is (trajectory.csv's delta columns), for the plot's title.
SIGNAL_TITLES = {
    "tandem": "Delta per episode: gamma (L_i(reference) - L_i(proxy))",
    "doremi": "Delta per episode: minus the clipped excess loss over the frozen reference",
    "doge": "Delta per episode: the loss change along the validation gradient, per its norm (clipped at 0)",
    "odm": "ODM's reward estimates per round",
    "ado": "ADO's scores per round",
    "skillit": "Skill-It's drive A L per round",
    "aioli": "Aioli's column sums of A per round",
}


def _optimize_sections(page: _Page, folder: Path, label: str = "") -> None:
    from tandem import schema
    from tandem.report.plots import plot_trajectories

    traj = _trajectory(folder / "trajectory.csv")
    if traj is None:
        page.p(f"{label}no trajectory (a static or search method): the weights are fixed or chosen among points.")
        return
    names, steps, w, delta, dist = traj
    learned = _read_json(folder / "weights.json", schema.read_weights_json)
    if learned is not None and set(learned["domain_weights"]) != set(names):
        raise InputError(f"{folder / 'weights.json'}: domain_weights: expected the domains of trajectory.csv "
                         f"{sorted(names)}, got {sorted(learned['domain_weights'])}")
    if isinstance(learned, dict) and isinstance(learned.get("interval"), dict):
        level = int(round(100 * learned.get("interval_level", 0.9)))
        page.h2(f"{label}How sure: each weight's {level}% interval and Delta's t over episodes")
        page.p("A bootstrap over episodes replays the update rule on resampled Deltas; a move is within noise when "
               "the interval holds the initial weight.")
        ts = learned.get("delta_over_episodes", {})
        page.table(["domain", "weight", "initial", "low", "high", "t(Delta)", "move"],
                   [[d, float(learned["domain_weights"][d]), float(learned.get("initial", {}).get(d, float("nan"))),
                     float(learned["interval"][d][0]), float(learned["interval"][d][1]),
                     float("nan") if ts.get(d, {}).get("t") is None else float(ts[d]["t"]),
                     "within noise" if learned["within_noise"][d] else "real"] for d in names])
    page.h2(f"{label}Trajectories")
    shown = (learned or {}).get("interval")  # of the learned mixture before caps, the trajectory's last point
    page.plot(lambda p: plot_trajectories(steps, w, names, p, title="domain weights per episode"
                                          + (" (bars: 90% intervals of the learned weights)" if shown else ""),
                                          distance=None if np.all(np.isnan(dist)) else [max(x, 1e-12) for x in dist],
                                          intervals=shown),
              "weight trajectories")
    method = (learned or {}).get("method") or ""
    page.plot(_plot_lines(steps, delta, names, "signal", SIGNAL_TITLES.get(method, f"{method} signal per round")),
              "Delta trajectories")
    records = [r for r in _read_jsonl(folder / "metrics.jsonl") if isinstance(r.get("proxy_loss"), dict)]
    records = [r for r in records if set(r["proxy_loss"]) >= set(names) and set(r["reference_loss"]) >= set(names)
               and set(r["delta"]) >= set(names)]
    if records:
        rs = [r["step"] for r in records]
        lu = np.array([[r["proxy_loss"][d] for d in names] for r in records], dtype=float)
        page.h2(f"{label}Per-domain losses during optimization")
        page.plot(_plot_lines(rs, lu, names, "held loss", "proxy loss per domain (held train batches)"), "proxy losses")
        lw = np.array([[r["reference_loss"][d] for d in names] for r in records], dtype=float)
        last = records[-1]
        page.table(["domain", "proxy loss (last)", "reference loss (last)", "Delta (last)"],
                   [[d, float(lu[-1, j]), float(lw[-1, j]), float("nan") if last["delta"][d] is None
                     else float(last["delta"][d])] for j, d in enumerate(names)])


def _eval_section(page: _Page, evals: dict[str, dict]) -> None:
    from tandem.report.plots import plot_domain_losses

    names = list(next(iter(evals.values()))["test_loss"]["per_domain"])
    page.h2("Per-domain test losses")
    rows, cols = [], list(evals)
    for d in [*names, "average", "worst"]:
        vals = [evals[m]["test_loss"]["per_domain"][d] if d in names else evals[m]["test_loss"][d] for m in cols]
        rows.append([d, *(float("nan") if v is None else float(v) for v in vals)])
    page.table(["domain", *cols], rows)
    page.plot(lambda p: plot_domain_losses({m: {d: evals[m]["test_loss"]["per_domain"][d] or 0.0 for d in names}
                                            for m in cols}, p), "test loss per domain")


def _compare_sections(page: _Page, folder: Path, results: dict) -> None:
    from tandem.report.compare import summarize
    from tandem.report.plots import plot_domain_losses, plot_trajectories_grid

    runs = results["runs"]
    methods = list(results.get("methods") or dict.fromkeys(r["method"] for r in runs))
    summary = summarize(runs, methods)
    names = list(runs[0]["test_loss"]["per_domain"])
    _weights_section(page, {m: s["weights"] for m, s in summary.items()}, "learned domain weights (mean ± sd over seeds)",
                     errors={m: s["weights_std"] for m, s in summary.items()})
    page.h2("Per-domain test losses (mean ± std over seeds)")
    cols = ["average", "worst", *names]
    from tandem.report.compare import paired_table, significant_best

    # Bold only a best that beats every other method by more than two standard errors of the paired difference.
    winners = {j + 2: significant_best(runs, list(summary), c) for j, c in enumerate(cols)}
    best = {j: float(summary[m][cols[j - 2]][0]) for j, m in winners.items() if m is not None}
    head = ["method", "seeds", *cols]
    rows = [[m, str(s["n"]), *(float(s[c][0]) for c in cols)] for m, s in summary.items()]
    page.table(head, rows, best)
    pt = paired_table(runs, list(summary), ["uniform", "doremi", "doge"])
    if pt:
        page.h2("Paired differences to the baselines (over the same seeds)")
        page.pre(pt)
    page.table(["method", *(f"{c} std" for c in cols)], [[m, *(float(s[c][1]) for c in cols)] for m, s in summary.items()])
    page.plot(lambda p: plot_domain_losses({m: {d: s[d][0] for d in names} for m, s in summary.items()}, p,
                                           errors={m: {d: s[d][1] for d in names} for m, s in summary.items()}),
              "test loss per domain")
    from tandem.report.compare import seed_folders

    trajectories: dict = {}
    for m in methods:  # every seed (online runs: the target's own run)
        for run in seed_folders(folder, m):
            t = _trajectory(run / "optimize" / "trajectory.csv") or _trajectory(run / "online" / "trajectory.csv")
            if t is not None:
                trajectories.setdefault(m, []).append((t[1], t[2]))
    if trajectories:
        page.h2("Trajectories (every seed)")
        page.plot(lambda p: plot_trajectories_grid(trajectories, names, p), "trajectories per method")


def _versions() -> dict[str, str]:
    import importlib.metadata as md
    import sys

    import tandem

    out = {"tandem": tandem.__version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("torch", "numpy", "transformers", "datasets", "tokenizers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def folder_kind(folder: Path) -> str:
    if (folder / "results.json").is_file():
        return "compare"
    if (folder / "eval.json").is_file() and (folder / "optimize").is_dir():
        return "run"
    if (folder / "weights.json").is_file():
        return "optimize"
    if (folder / "eval.json").is_file():
        return "train"
    if (folder / "run.json").is_file():  # claimed by a run that has not written its results (running or stopped)
        from tandem import schema

        try:
            command = schema.read_json(folder / "run.json", schema.RUN_IDENTITY, "run identity")["command"]
        except InputError:  # unreadable: not evidence of a run
            command = None
        if command is not None:
            raise InputError(f"{folder}: holds a `tandem {command}` run that has not finished (no weights.json, "
                             f"eval.json or results.json yet); let it finish or continue it with --resume")
    raise InputError(f"{folder}: not an output folder of tandem optimize, run, compare or train "
                     "(expected weights.json, eval.json or results.json)")


def build_report(folder: Path) -> str:
    """The HTML text of the report for `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: folder not found")
    from tandem import schema

    kind = folder_kind(folder)
    page = _Page(f"tandem {kind}: {folder.resolve().name}")
    page.p(f"folder {folder.resolve()} · written {time.strftime('%Y-%m-%d %H:%M:%S')}", "meta")
    if kind == "compare":
        _compare_sections(page, folder, _read_json(folder / "results.json", schema.read_compare_json))
    elif kind == "run":
        learned = _read_json(folder / "weights.json", schema.read_weights_json) or {}
        method = learned.get("method", "learned")
        evals = {method: _read_json(folder / "eval.json", schema.read_eval_json)}
        for b in sorted(folder.glob("baseline-*/eval.json")):
            evals[b.parent.name.removeprefix("baseline-")] = _read_json(b, schema.read_eval_json)
        _weights_section(page, {m: e["weights"] for m, e in evals.items()}, "domain weights")
        _eval_section(page, evals)
        _optimize_sections(page, folder / "optimize", "stage one: ")
    elif kind == "optimize":
        w = _read_json(folder / "weights.json", schema.read_weights_json)
        mixtures = {"recommended": w["domain_weights"]}
        for k in ("final", "average"):
            if isinstance(w.get(k), dict):
                mixtures[k] = w[k]
        mixtures["uniform"] = {d: 1.0 / len(w["domain_weights"]) for d in w["domain_weights"]}
        _weights_section(page, mixtures, f"{w.get('method', '')} domain weights")
        stats = {k: v for k, v in w.items() if not isinstance(v, (dict, list))}
        page.table(["setting", "value"], [[k, str(v)] for k, v in stats.items()])
        _optimize_sections(page, folder)
    else:
        ev = _read_json(folder / "eval.json", schema.read_eval_json)
        _weights_section(page, {"trained on": ev["weights"]}, "domain weights")
        _eval_section(page, {"model": ev})
    config = folder / "config.yaml"
    if not config.is_file() and (folder.parent / "config.yaml").is_file():
        config = folder.parent / "config.yaml"
    page.h2("Config")
    page.pre(config.read_text(encoding="utf-8") if config.is_file() else "(no config.yaml in this folder)")
    page.h2("Versions")
    page.table(["package", "version"], [[k, v] for k, v in _versions().items()])
    return page.render()


def write_report(folder: Path, out: Path | None = None) -> Path:
    """Write the report of `folder` to `out` (default folder/report.html); returns the path."""
    from tandem.io import check_writable_file

    out = check_writable_file(Path(out) if out is not None else Path(folder) / "report.html", "--out")
    from tandem.io import real_path

    if out.exists() and out.suffix.lower() not in (".html", ".htm") and real_path(folder) in real_path(out).parents:
        raise InputError(f"--out {out}: a file of the folder the report reads; tandem never writes over its inputs, "
                         f"so choose another --out (an .html file)")
    text = build_report(Path(folder))
    write_text(out, text)
    return out
