"""Online peers: one proxy trains on a mixture that moves with what the proxy observes. ODM, Aioli, Skill-It, ADO.

The twin loop (tandem.mixing.loop) measures a gap between two models; these methods have no reference and differ
only in what they observe and how they turn it into a mixture (the math: tandem.mixing.peers):

| method   | one round                                                   | observes                         |
|----------|-------------------------------------------------------------|----------------------------------|
| odm      | one step of single-domain groups drawn by the bandit        | their training losses            |
| ado      | one step on the mixture                                     | per-domain training losses       |
| skillit  | free_steps steps, then an evaluation                        | per-domain validation losses     |
| aioli    | per group: probe_steps on a smoothed one-hot mixture; then free_steps at the new mixture | validation loss drops |

A round is taken one proxy step at a time: `Policy.next_step` names the mixture of the next step, `after_step`
reads what that step measured (its per-domain training losses) and, when the round is over, returns the new
mixture. So the same policy runs in two drivers: `run_online` here (the proxy's steps, `tandem optimize` and
`tandem train --online`) and a Hugging Face Trainer whose own steps it steers
(tandem.integrations.hf.OnlineCallback). A policy's state between two steps is all in `state_dict`, so either
driver can stop and resume anywhere, mid-round included.

A round's record keeps the mixture and the method's own signal (in the `delta` column of trajectory.csv: ODM's
reward estimates, ADO's scores, Skill-It's drive A L, Aioli's column sums of A). Every probe and graph step trains
a model of the proxy's size and counts in the stage-one budget (tandem.mixing.budget).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tandem.data.sampler import Batch, row_shares, token_shares
from tandem.errors import InputError
from tandem.mixing import peers
from tandem.mixing.loop import EpisodeRecord

ONLINE_METHODS = ("odm", "ado", "skillit", "aioli")


@dataclass
class Context:
    """What a policy may touch: the proxy, the batches, fixed validation sets and a seeded RNG."""

    proxy: object  # tandem.training.learner.Learner (or any object with step/domain_losses/copy_from)
    problem: object  # tandem.mixing.lm.LMProblem
    valid_sets: list  # fixed validation batches (the same ones every evaluation: a drop measures training)
    target: np.ndarray  # the validation objective's weights over domains
    prior: np.ndarray  # the natural (token) mixture
    rng: np.random.Generator
    scratch: object | None = None  # a second model of the proxy's size (Skill-It's graph), or None
    steps: int = 0  # proxy-sized optimizer steps taken, probes and graph steps included

    def train(self, alpha: np.ndarray, steps: int = 1, model=None, rows: bool = False) -> list:
        """`steps` optimizer steps on batches drawn at `alpha` (a mixture of supervised tokens; rows=True: shares of
        rows); per step, the meter of per-domain training losses and token counts measured during it."""
        model = model or self.proxy
        out = []
        for _ in range(steps):
            out.append(model.step([self.problem.train_part(np.asarray(alpha, dtype=np.float64), rows=rows)]))
            self.steps += 1
        return out

    def valid_losses(self, model=None) -> np.ndarray:
        """Per-domain validation loss on the fixed sets; 0 for a domain outside the target (it has no valid data)."""
        losses = (model or self.proxy).domain_losses(self.valid_sets)
        return np.where(self.target > 0, np.nan_to_num(losses, nan=0.0), 0.0)


class Policy:
    """One method's state and its rounds, a step at a time: `next_step` gives the mixture of the round's next proxy
    step (and whether it is in shares of rows), `after_step` takes that step's meter of per-domain training losses
    and returns (new alpha, signal, losses) when the round ends, None while it goes on."""

    def __init__(self, mc, num_domains: int, alpha0: np.ndarray):
        self.mc = mc
        self.m = num_domains
        self.alpha0 = np.asarray(alpha0, dtype=np.float64)

    def initial(self, ctx: Context) -> None:
        """One-time work on the proxy as initialised, before the warm-up steps."""

    def start(self, ctx: Context, alpha: np.ndarray) -> np.ndarray:
        """One-time work before the first round (after the warm-up steps); returns the first round's mixture."""
        return alpha

    def next_step(self, ctx: Context, alpha: np.ndarray, t: int) -> tuple[np.ndarray, bool]:
        raise NotImplementedError

    def after_step(self, ctx: Context, meter, alpha: np.ndarray, t: int):
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def outputs(self, names: list[str]) -> dict:
        """What weights.json records of the method's own state (Skill-It's graph, Aioli's A), by domain name."""
        return {}


class ODM(Policy):
    """Online Data Mixing (Albalak et al. 2023): each step is made of `groups` single-domain groups (micro-batches),
    each domain drawn from the bandit's probabilities; after the step every domain drawn in it updates its estimate
    from its training loss. By default the released code's updater (`odm.updater: smoothed_mean`): est <- s est +
    (1 - s) exp(loss), probabilities (1 - K eps_t) est / sum(est) + eps_t; `exp3` is the paper's Algorithm 1:
    R <- s R + (1 - s) loss / p, probabilities (1 - K eps_t) softmax(eps_{t-1} R) + eps_t. t counts steps from the
    start of training, warm-up included, as ODM's code does. The bandit's probabilities are over groups (rows); the
    mixture it reports is their share of supervised tokens (tandem.data.sampler)."""

    def __init__(self, mc, num_domains, alpha0):
        super().__init__(mc, num_domains, alpha0)
        self.rewards = np.zeros(num_domains)
        self.pi: np.ndarray | None = None

    def start(self, ctx, alpha):
        self.pi = row_shares(alpha, ctx.problem.train.tokens_per_row)
        return alpha

    def next_step(self, ctx, alpha, t):
        batch = ctx.problem.batch_size
        g = min(self.mc.odm.groups, batch)
        picks = ctx.rng.choice(self.m, size=g, p=self.pi / self.pi.sum())
        rows = np.full(g, batch // g)
        rows[: batch % g] += 1
        return np.bincount(picks, weights=rows, minlength=self.m) / batch, True

    def after_step(self, ctx, meter, alpha, t):
        per_row = ctx.problem.train.tokens_per_row
        # the domains the step trained on (in a Trainer, its rows may lag the picks by the loader's prefetch)
        observed = np.where(np.asarray(meter.counts) > 0, meter.losses(), np.nan)
        step = self.mc.warmup_steps + t + 1  # steps taken; the new probabilities serve step + 1
        if self.mc.odm.updater == "smoothed_mean":
            self.rewards = peers.odm_smoothed_rewards(self.rewards, observed, self.mc.odm.smoothing)
            self.pi = peers.odm_smoothed_probabilities(self.rewards, peers.odm_epsilon(self.m, step + 1))
        else:
            self.rewards = peers.odm_rewards(self.rewards, observed, self.pi, self.mc.odm.smoothing)
            self.pi = peers.odm_probabilities(self.rewards, peers.odm_epsilon(self.m, step),
                                              peers.odm_epsilon(self.m, step + 1))
        return token_shares(self.pi, per_row), self.rewards.copy(), observed

    def state_dict(self):
        return {"rewards": self.rewards.tolist(), "pi": None if self.pi is None else self.pi.tolist()}

    def load_state_dict(self, state):
        self.rewards = np.array(state["rewards"], dtype=np.float64)
        self.pi = None if state["pi"] is None else np.array(state["pi"], dtype=np.float64)


class SkillIt(Policy):
    """Online Skill-It (Chen et al. 2023): p = p0 exp(eta A L), L the per-skill validation losses summed over the last
    `window` evaluations and A the skills graph (given, or estimated from the run's start by training a copy of the
    initial proxy on each skill alone); free_steps steps at p, then an evaluation and a new p. The first p uses
    L = 1, as Skill-It's code does."""

    def __init__(self, mc, num_domains, alpha0):
        super().__init__(mc, num_domains, alpha0)
        self.graph: np.ndarray | None = None
        self.recent: list[list[float]] = []
        self.done = 0  # steps taken in the current round

    def initial(self, ctx):
        # The graph as Skill-It's authors measure it: a separate run per skill from the run's own start (here a copy
        # of the proxy as initialised), A[i, j] = (start loss - end loss) / start loss of skill j. A copy of a
        # warmed-up proxy would measure only the last, small drops (entries ~1e-2), and leave p at p0.
        sk = self.mc.skillit
        if sk.graph is not None:
            names = ctx.problem.names
            self.graph = np.array([[float(sk.graph.get(a, {}).get(b, 0.0)) for b in names] for a in names])
            return
        before = ctx.valid_losses()
        after = np.empty((self.m, self.m))
        for i in range(self.m):
            ctx.scratch.copy_from(ctx.proxy)
            ctx.train(np.eye(self.m)[i], sk.graph_steps, model=ctx.scratch)
            after[i] = ctx.valid_losses(ctx.scratch)
        self.graph = peers.skillit_graph(before, after)

    def start(self, ctx, alpha):
        return peers.skillit_mixture(self.alpha0, self.graph, np.ones((1, self.m)) * (ctx.target > 0),
                                     self.mc.eta_alpha)

    def next_step(self, ctx, alpha, t):
        return alpha, False

    def after_step(self, ctx, meter, alpha, t):
        self.done += 1
        if self.done < max(1, self.mc.free_steps):
            return None
        self.done = 0
        losses = ctx.valid_losses()
        self.recent = (self.recent + [losses.tolist()])[-self.mc.skillit.window:]
        new = peers.skillit_mixture(self.alpha0, self.graph, np.array(self.recent), self.mc.eta_alpha)
        return new, self.graph @ np.array(self.recent).sum(axis=0), losses

    def state_dict(self):
        return {"graph": None if self.graph is None else self.graph.tolist(), "recent": self.recent, "done": self.done}

    def outputs(self, names):
        # {skill i: {skill j: A_ij}}: the relative drop of j's validation loss after training on i (given or measured)
        if self.graph is None:
            return {}
        return {"skills_graph": {a: {b: float(self.graph[i, j]) for j, b in enumerate(names)}
                                 for i, a in enumerate(names)}}

    def load_state_dict(self, state):
        self.graph = None if state["graph"] is None else np.array(state["graph"], dtype=np.float64)
        self.recent = state["recent"]
        self.done = int(state.get("done", 0))


class Aioli(Policy):
    """Aioli (Chen et al. 2024): each round estimates the linear mixing law's A by probing every group, in a random
    order and over `sweeps` sweeps, with probe_steps steps on a smoothed one-hot mixture (each probe's drop measured
    from the previous probe's losses); A is unmixed, normalised and averaged over rounds; p follows A's column sums;
    then free_steps steps at p. The probes train the proxy itself and count in the budget."""

    def __init__(self, mc, num_domains, alpha0):
        super().__init__(mc, num_domains, alpha0)
        if num_domains > 1 and abs(mc.aioli.one_hot_factor - 1.0 / num_domains) < 1e-9:
            raise InputError(f"mixer.aioli.one_hot_factor: {mc.aioli.one_hot_factor} = 1/M makes every probe "
                             f"mixture uniform, so A cannot be unmixed; use a larger value (published: 0.75)")
        self.A: np.ndarray | None = None
        # Where the round stands: None between rounds; else the sweep, the probe order of this sweep, the probe
        # (position in the order), its steps taken, the drops so far (B), the losses after the last probe, and,
        # once the probes are done, the new mixture and its free steps taken.
        self.round_state: dict | None = None

    def next_step(self, ctx, alpha, t):
        r = self.round_state
        if r is None:  # a round begins: the losses every probe's drop is measured from
            r = self.round_state = {"sweep": 0, "order": ctx.rng.permutation(self.m).tolist(), "probe": 0, "done": 0,
                                    "B": np.zeros((self.m, self.m)), "last": ctx.valid_losses(), "new": None}
        if r["new"] is not None:
            return r["new"], False
        P = peers.aioli_probe_mixtures(self.m, self.mc.aioli.one_hot_factor)
        return P[:, r["order"][r["probe"]]], False

    def after_step(self, ctx, meter, alpha, t):
        ai, r = self.mc.aioli, self.round_state
        r["done"] += 1
        if r["new"] is None:
            if r["done"] < self.mc.probe_steps:
                return None
            now = ctx.valid_losses()
            r["B"][:, r["order"][r["probe"]]] += r["last"] - now
            r["last"], r["probe"], r["done"] = now, r["probe"] + 1, 0
            if r["probe"] < self.m:
                return None
            r["sweep"] += 1
            if r["sweep"] < ai.sweeps:  # the next sweep's probes, in a new random order
                r["order"], r["probe"] = ctx.rng.permutation(self.m).tolist(), 0
                return None
            A = peers.aioli_normalise(peers.aioli_unmix(r["B"] / ai.sweeps, ai.one_hot_factor))
            if ai.ema is None:  # the paper's cumulative multiplicative weights
                self.A = A
                r["new"] = peers.aioli_update(alpha, A, self.mc.eta_alpha, ctx.target)
            else:  # Aioli's code: a moving average of A, and p from the initial mixture each round
                self.A = A if self.A is None else (1.0 - ai.ema) * A + ai.ema * self.A
                r["new"] = peers.aioli_update(self.alpha0, self.A, self.mc.eta_alpha, ctx.target)
        if r["done"] < self.mc.free_steps:
            return None
        self.round_state = None
        return r["new"], (ctx.target * self.m) @ self.A, r["last"]

    def state_dict(self):
        r = self.round_state
        if r is not None:
            r = {**r, "B": r["B"].tolist(), "last": np.asarray(r["last"]).tolist(),
                 "new": None if r["new"] is None else np.asarray(r["new"]).tolist()}
        return {"A": None if self.A is None else self.A.tolist(), "round": r}

    def load_state_dict(self, state):
        self.A = None if state["A"] is None else np.array(state["A"], dtype=np.float64)
        r = state.get("round")
        if r is not None:
            r = {**r, "B": np.array(r["B"], dtype=np.float64), "last": np.array(r["last"], dtype=np.float64),
                 "new": None if r["new"] is None else np.array(r["new"], dtype=np.float64)}
        self.round_state = r


class ADO(Policy):
    """ADO (Jiang et al. 2025): per-domain power laws L_k(n) of the training loss in n, the sequences the model has
    seen, refit every fit_interval steps; each step's mixture is (1 - mix) p_avg + mix rho, rho the normalised
    max(alpha_k, .05) (L_k(n) - exp(E_k)) / n * mu_k * sqrt(h_k) (mu: the natural mixture, h: a moving average of
    the sampled composition) and p_avg the running mean of rho from mu. No validation data, no second model; until
    the first fit the mixture is mu."""

    def __init__(self, mc, num_domains, alpha0):
        super().__init__(mc, num_domains, alpha0)
        self.losses: list[list[float]] = []  # per step, per domain (NaN where absent)
        self.params: np.ndarray | None = None  # [M, 3]: E, A, alpha of the latest fit
        self.history: np.ndarray | None = None  # h
        self.average: np.ndarray | None = None  # p_avg

    def start(self, ctx, alpha):
        self.history = np.array(ctx.prior, dtype=np.float64)
        self.average = np.array(ctx.prior, dtype=np.float64)
        return np.array(ctx.prior, dtype=np.float64)

    def next_step(self, ctx, alpha, t):
        return alpha, False

    def after_step(self, ctx, meter, alpha, t):
        ad = self.mc.ado
        loss = meter.losses()
        counts = np.asarray(meter.counts, dtype=np.float64)
        step = self.mc.warmup_steps + t + 1  # steps since the start, the proxy's warm-up included
        self.losses.append(loss.tolist())
        # n: the sequences the model has seen after each recorded step (the warm-up's included), shared by all domains
        n = (self.mc.warmup_steps + np.arange(1, len(self.losses) + 1, dtype=np.float64)) * ctx.problem.batch_size
        self.history = ad.history_decay * self.history + (1.0 - ad.history_decay) * counts / counts.sum()
        seen = len(self.losses)  # recorded steps (the proxy's warm-up records none)
        if seen >= ad.warmup_steps and (self.params is None or seen % ad.fit_interval == 0):
            self.params = peers.ado_fit_all(n, np.array(self.losses))
        if self.params is None:
            return np.asarray(alpha, dtype=np.float64), np.zeros(self.m), loss
        rho = peers.ado_scores(self.params, n[-1], ctx.prior, self.history, ad.floor)
        new = (1.0 - ad.mix) * self.average + ad.mix * rho
        self.average = self.average + (rho - self.average) / (step + 1)
        return new / new.sum(), rho, loss

    def state_dict(self):
        arr = lambda a: None if a is None else a.tolist()  # noqa: E731
        return {"losses": self.losses, "params": arr(self.params), "history": arr(self.history),
                "average": arr(self.average)}

    def load_state_dict(self, state):
        arr = lambda a: None if a is None else np.array(a, dtype=np.float64)  # noqa: E731
        self.losses = state["losses"]
        self.params, self.history, self.average = arr(state["params"]), arr(state["history"]), arr(state["average"])


POLICIES = {"odm": ODM, "skillit": SkillIt, "aioli": Aioli, "ado": ADO}


def round_steps(mc, num_domains: int) -> int:
    """Proxy steps in one round of an online method."""
    if mc.method in ("odm", "ado"):
        return 1
    if mc.method == "skillit":
        return max(1, mc.free_steps)
    return mc.aioli.sweeps * num_domains * mc.probe_steps + mc.free_steps  # aioli


def schedule_steps(mc, num_domains: int) -> int:
    """The proxy's own optimizer steps (its learning-rate schedule's length): warm-up and rounds; Skill-It's graph
    steps are taken by a copy."""
    return mc.warmup_steps + mc.episodes * round_steps(mc, num_domains)


def checkpoint_every(mc, num_domains: int) -> int:
    """Rounds between checkpoints: mixer.checkpoint_interval, times 20 for the methods whose round is one step
    (ODM, ADO), so saving does not dominate their run."""
    k = mc.checkpoint_interval
    return k * 20 if round_steps(mc, num_domains) == 1 else k


def proxy_steps(mc, num_domains: int) -> int:
    """All proxy-sized optimizer steps of a run: warm-up, one-time work (Skill-It's graph) and the rounds."""
    once = num_domains * mc.skillit.graph_steps if mc.method == "skillit" and mc.skillit.graph is None else 0
    return mc.warmup_steps + once + mc.episodes * round_steps(mc, num_domains)


def make_context(mc, problem, names: list[str], natural: dict, seed: int, proxy, scratch=None) -> Context:
    """The context of an online method's run, whichever driver takes its steps (`tandem optimize`, `tandem train
    --online`, the Trainer callback): fixed validation sets, target, prior and the policy's seeded generator."""
    from tandem.mixing.lm import target_weights

    return Context(proxy, problem, fixed_valid_sets(problem, mc.eval_sequences), target_weights(mc.target, names),
                   np.array([natural[d] for d in names]), np.random.default_rng([seed, 0x0A11]), scratch=scratch)


def fixed_valid_sets(problem, eval_sequences: int) -> list[Batch]:
    """eval_sequences validation windows of every target domain, drawn once from the problem's validation stream."""
    k = len(problem.valid_ids)
    eval_sequences = min(eval_sequences, max(1, int(problem.valid.n_windows.max(initial=1))))  # capped by the data
    b = problem.valid.sample(np.full(k, 1.0 / k), eval_sequences * k, rows=True)
    import torch

    return Batch(b.x, b.y, torch.from_numpy(problem.valid_ids)[b.domain]).split(problem.batch_size)


def run_online(policy: Policy, ctx: Context, alpha: np.ndarray, episodes: int, start: int, history: list,
               on_round=None) -> np.ndarray:
    """Rounds `start`..episodes-1 of `policy`; appends an EpisodeRecord per round to `history`."""
    for t in range(start, episodes):
        out = None
        while out is None:
            mixture, rows = policy.next_step(ctx, alpha, t)
            out = policy.after_step(ctx, ctx.train(mixture, rows=rows)[0], alpha, t)
        alpha, signal, losses = out
        nan = np.full(len(alpha), np.nan)
        rec = EpisodeRecord(t, ctx.steps, np.asarray(alpha, dtype=np.float64).copy(), np.asarray(signal, dtype=np.float64),
                            float("nan"), np.asarray(losses, dtype=np.float64), nan)
        history.append(rec)
        if on_round is not None:
            on_round(t, alpha, rec)
    return alpha
