"""Plain-text tables the commands print and write to summary.md: weights side by side, the epochs each domain's
train split gets, how sure stage one is of each weight, and per-domain test losses under each mixture."""

from __future__ import annotations

from pathlib import Path

from tandem.schema import read_weights_json


def format_weights(mixtures: dict[str, dict[str, float]]) -> str:
    labels = list(mixtures)
    names = list(next(iter(mixtures.values())))
    w = max(len(n) for n in names + ["domain"])
    head = f"{'domain':<{w}}  " + "  ".join(f"{lab:>9}" for lab in labels)
    lines = [head, "-" * len(head)]
    for d in names:
        lines.append(f"{d:<{w}}  " + "  ".join(f"{mixtures[lab][d]:>9.4f}" for lab in labels))
    return "\n".join(lines)


def format_epochs(weights_json: Path) -> str:
    """Epochs of each domain's train split the target would see at its budget under each mixture (weights.json's
    `epochs`), with the caps of mixer.max_epochs."""
    if not weights_json.is_file():
        return ""
    w = read_weights_json(weights_json)
    if "epochs" not in w:
        return ""
    ep, caps = w["epochs"], w.get("max_epochs") or {}
    labels, names = list(ep), list(w["domain_weights"])
    width = max(len(n) for n in names + ["domain"])
    head = f"{'domain':<{width}}  " + "  ".join(f"{lab:>11}" for lab in labels) + ("  max_epochs" if caps else "")
    lines = [f"epochs of each train split at the target's {w.get('target_rows', '?')} rows:", head, "-" * len(head)]
    for d in names:
        cap = caps.get(d)
        lines.append(f"{d:<{width}}  " + "  ".join(f"{ep[lab][d]:>11.2f}" for lab in labels)
                     + (f"  {('-' if cap is None else f'{cap:g}'):>10}" if caps else ""))
    return "\n".join(lines)


def format_evidence(weights_json: Path) -> str:
    """How sure stage one is of each weight: its 90% interval, Delta's t over episodes, and whether the move from
    the initial mixture is within noise (weights.json's `interval`, `delta_over_episodes`, `within_noise`)."""
    if not weights_json.is_file():
        return ""
    w = read_weights_json(weights_json)
    if "interval" not in w:
        return ""
    names = list(w["domain_weights"])
    learned = w.get("uncapped", w["domain_weights"])  # the intervals are of the mixture before any epoch caps
    width = max(len(n) for n in names + ["domain"])
    level = int(round(100 * w.get("interval_level", 0.9)))
    head = f"{'domain':<{width}}  {'weight':>8}  {f'{level}% interval':>17}  {'t(Delta)':>8}  move"
    lines = [head, "-" * len(head)]
    for d in names:
        lo, hi = w["interval"][d]
        t = w.get("delta_over_episodes", {}).get(d, {}).get("t")
        moved = "within noise" if w["within_noise"][d] else "real"
        lines.append(f"{d:<{width}}  {learned[d]:>8.4f}  {f'[{lo:.3f}, {hi:.3f}]':>17}  "
                     f"{('-' if t is None else f'{t:+.1f}'):>8}  {moved}")
    if "uncapped" in w:
        lines.append("(the learned weights before mixer.max_epochs; the recommended ones are capped, see the epochs)")
    if all(w["within_noise"].values()):
        lines.append("warning: the recommended mixture is within noise of the initial one: stage one found no "
                     "preference it can tell from noise (more episodes or validation rows give Delta more evidence)")
    return "\n".join(lines)


def format_side_by_side(weights: dict[str, dict[str, float]], evals: dict[str, dict]) -> str:
    """Per domain: weight and test loss under each mixture, then average and worst."""
    labels = list(weights)
    names = list(next(iter(weights.values())))
    w = max(len(n) for n in names + ["average"])
    head = f"{'domain':<{w}}  " + "  ".join(f"{'w:' + lab:>12}  {'loss:' + lab:>14}" for lab in labels)
    lines = [head, "-" * len(head)]
    for d in names:
        cells = []
        for lab in labels:
            v = evals[lab]["test_loss"]["per_domain"][d]
            cells.append(f"{weights[lab][d]:>12.4f}  {('-' if v is None else f'{v:.4f}'):>14}")
        lines.append(f"{d:<{w}}  " + "  ".join(cells))
    for key in ("average", "worst"):
        lines.append(f"{key:<{w}}  " + "  ".join(f"{'':>12}  {evals[lab]['test_loss'][key]:>14.4f}" for lab in labels))
    return "\n".join(lines)
