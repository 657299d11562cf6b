"""A look-ahead mixture signal against the greedy one: `python -m benchmarks lookahead CONFIG [--seeds N] [--every K]`.

Why: TANDEM's twin gap (and DoGE's probe) is greedy: at each point of the proxy's run it asks which domain's training
gradient aligns with the validation gradient *there*, and its direction changes as the proxy trains (BENCHMARKS.md,
"Where the twins' gap points during stage one"). What a static mixture does to the target's final loss is closer to an
influence estimate: the training gradients along the run against the validation gradient at its *end*
(TracIn-style, ignoring how later steps carry an earlier one forward). This measures both on one run, so their
directions can be compared with a mixture known to beat uniform.

Per seed: the config's proxy trains `train.steps` steps (the target's horizon, each domain cut to the target's epochs
as `horizon: target` does) on uniform weights, keeping its state every K steps after warm-up; then for each kept state
theta_t and each trainable domain i, g_i(theta_t) is the gradient of domain i's mean loss on held windows of its train
rows, and

    ahead_i  = sum_t lr_t <g_i(theta_t), g_val(theta_T)>     (the validation gradient at the end of the run)
    greedy_i = sum_t lr_t <g_i(theta_t), g_val(theta_t)>     (at the same point: the twin gap's first-order signal)

(lr_t the schedule's factor). Positive means the domain helps the validation target, so more weight. Each is printed
centred and divided by its root mean square over domains, with the cosine against `--reference` (centred
log-weights).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np


def scores(cfg, data, every: int) -> dict:
    """`ahead` and `greedy` per domain (raw sums) for one seed's run of the proxy on uniform weights."""
    import torch

    from tandem.mixing import methods
    from tandem.mixing.lm import LMProblem
    from tandem.mixing.optimize import proxy_learner, twin_optim_config
    from tandem.training.learner import lr_at
    from tandem.training.loss import token_losses

    mc = methods.effective(cfg.mixer).model_copy(update={"horizon": "target"})
    steps, batch = cfg.train.steps, cfg.train.batch_size
    oc = twin_optim_config(cfg, steps)
    learner = proxy_learner(cfg, mc, data, oc, torch.device("cpu"), "proxy")
    problem = LMProblem(cfg.model_copy(update={"mixer": mc}), data, batch, horizon_rows=steps * batch)
    held = [b for half in problem.held_batches() for b in half]
    valid = [problem.valid_part()[0] for _ in range(4)]
    model = learner.module
    params = [p for p in model.parameters() if p.requires_grad]

    def gradient(batches, domain=None):
        model.zero_grad(set_to_none=True)
        total = 0.0
        for b in batches:
            loss, mask = token_losses(model(b.x), b.y)
            m = mask.float() if domain is None else mask.float() * (b.domain == domain).float()[:, None]
            total = total + (loss * m).sum() / max(float(m.sum()), 1.0)
        total.backward()
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params]).clone()

    kept = []
    for t in range(steps):
        if t >= oc.warmup_steps and (t - oc.warmup_steps) % every == 0:
            kept.append((copy.deepcopy(model.state_dict()), lr_at(t, 1.0, oc.warmup_steps, steps, oc.min_lr_ratio)))
        learner.step([problem.train_part(problem.uniform)])
    end = gradient(valid)
    ahead, greedy = np.zeros(len(data.domains)), np.zeros(len(data.domains))
    for state, lr in kept:
        model.load_state_dict(state)
        here = gradient(valid)
        for i in np.nonzero(problem.trainable)[0]:
            g = gradient(held, int(i))
            ahead[i] += lr * float(g @ end)
            greedy[i] += lr * float(g @ here)
    return {"ahead": ahead, "greedy": greedy, "states": len(kept)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks lookahead", description=__doc__.split("\n\n")[0])
    p.add_argument("config", type=Path)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--every", type=int, default=20, help="proxy steps between the states kept (default 20)")
    p.add_argument("--reference", help="a mixture known to beat uniform, comma-separated in the domains' order")
    p.add_argument("--out", type=Path, help="also write the per-seed results as JSON here")
    args = p.parse_args(argv)
    import torch

    from benchmarks.phases import centred_log, cosine
    from tandem.config import load_config
    from tandem.data.cache import prepare_data
    from tandem.mixing.updates import standardize

    torch.set_num_threads(1)
    runs, names, on = [], None, None
    for seed in range(args.seeds):
        cfg = load_config(args.config, [f"seed={seed}"])
        data = prepare_data(cfg)
        names, on = data.domains, np.asarray(data.trainable, dtype=bool)
        runs.append(scores(cfg, data, args.every))
    reference = np.array([float(x) for x in args.reference.split(",")]) if args.reference else None
    print(f"{args.config}: {args.seeds} seeds, {runs[0]['states']} states each; domains {', '.join(names)}")
    out = {"domains": names, "seeds": []}
    for kind in ("ahead", "greedy"):
        z = np.zeros((len(runs), len(names)))
        z[:, on] = standardize(np.array([r[kind][on] for r in runs]))  # each run over its trainable domains
        line = f"  {kind:<6} mean {' '.join(f'{x:+.2f}' for x in z.mean(axis=0))}"
        if reference is not None:
            cos = [cosine(v[on], centred_log(reference[on])) for v in z]
            line += f"  cosine with the reference per seed {' '.join(f'{c:+.2f}' for c in cos)} (mean {np.mean(cos):+.2f})"
        print(line)
    for r in runs:
        out["seeds"].append({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()})
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0
