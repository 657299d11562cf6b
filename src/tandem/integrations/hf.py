"""TANDEM (or DoReMi, DoGE) inside an existing Hugging Face `Trainer` run: a sampling dataset and a callback that
steers it.

The Trainer's model plays the proxy u and keeps training as the Trainer says. The callback holds the
reference twin w (a `Learner` on a copy of the model) and runs the episodes of `tandem.mixing.loop` on
the Trainer's clock:

    warm-up: mixer.warmup_steps Trainer steps on the initial mixture
    episode start (Trainer step begins):  w <- u   (parameters, AdamW moments, current learning rate)
    each of the next K Trainer steps:     w takes one step on L_val + gamma L_train(alpha)
    after the K-th:                        Delta = gamma (L(w) - L(u)) on held batches; alpha <- update(alpha, Delta);
                                           the dataset draws by the new alpha from its next draw on
    E more Trainer steps (free steps), then the next episode

Batches, Delta and the update are the same code as `tandem optimize` (LMProblem, update_alpha).
One difference: the proxy's batches come from the Trainer's data loader, so the reference's train rows are
drawn from the same mixture but are not the proxy's rows (in `tandem optimize` they are a subset of them).

    cfg = load_config("configs/default.yaml"); data = prepare_data(cfg)
    dataset = MixtureDataset(data, cfg.train.seq_len, seed=cfg.seed)
    tandem = TandemCallback(cfg, data, dataset, out_dir="runs/hf-mix")
    Trainer(model=model, args=args, train_dataset=dataset, callbacks=[tandem]).train()
    tandem.interleave_probabilities()   # for datasets.interleave_datasets(probabilities=...)

Your own per-domain `datasets` objects instead of a config's files (a domain with only a validation split is
target-only: never drawn, usable as mixer.target):

    data = token_data({"web": web, "code": code, "target": {"validation": target}}, tokenizer)
    dataset = MixtureDataset(data, seq_len=512, draw_size=per_device_batch)
    tandem = TandemCallback({"mixer": {"method": "tandem", "target": ["target"]}}, data, dataset)  # rows: the dataset's

Loop methods: `tandem` and `doge` probe with a twin synchronised to the Trainer's model; `doremi` trains its
frozen reference first (mixer.reference_steps, default the Trainer's max_steps) on mixer.reference_mixture.

The online peers (odm, ado, skillit, aioli) adapt the mixture during the target's own training, as their papers
run them: `OnlineCallback` lets one steer the Trainer, step by step, through the same policy code as `tandem
optimize` and `tandem train --online` (tandem.mixing.online):

    tandem = OnlineCallback({"mixer": {"method": "odm"}}, data, dataset, out_dir="runs/hf-odm")
    Trainer(model=model, args=args, train_dataset=dataset, callbacks=[tandem]).train()

Each Trainer step is one of the policy's proxy steps: the mixture it asks for is set on the dataset at the step's
start, and ODM and ADO read the per-domain training losses of the very rows the Trainer trains on in that step
(scored by the model before the step's update: one more forward pass of the batch). Skill-It's graph is measured
at the start on a copy of the model; Aioli's probes are Trainer steps. Two differences from `tandem optimize`: the
Trainer's loader has drawn a batch or two ahead, so a new mixture reaches the rows one or two steps later; and the
run has one process (dataloader_num_workers=0, no torchrun), because the rows a step trains on are read back
from the dataset.
"""

from __future__ import annotations

import collections
import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from tandem.config import Config
from tandem.data.cache import PreparedData, check_trainable, natural_weights
from tandem.data.objects import token_data  # noqa: F401  (your own datasets -> the data this module reads)
from tandem.data.sampler import Batch, MixtureSampler, token_shares
from tandem.errors import InputError
from tandem.mixing import methods
from tandem.mixing.lm import LMProblem, target_weights
from tandem.mixing.loop import DOGE_MAX_GRAD_NORM, LoopState, update_alpha
from tandem.models import HFCausalLM
from tandem.training.learner import Learner, OptimConfig


class MixtureDataset(torch.utils.data.IterableDataset):
    """An endless stream of `{"input_ids", "labels"}` rows of `seq_len` tokens from the train splits, each
    draw of `draw_size` rows allocated to domains by the weights current at that draw.

    The weights live in shared memory, so data-loader workers (forked after the dataset is built) see every
    `set_weights`; each worker draws its own seeded stream. `draw_size` equal to the per-device batch gives
    every batch its domains' shares exactly (floor or ceiling of B w_i rows; see MixtureSampler). With
    `record_draws`, the main process keeps (weights read, rows per domain) of every draw.
    """

    def __init__(self, data: PreparedData, seq_len: int, weights=None, seed: int = 0, draw_size: int = 1,
                 record_draws: bool = False):
        super().__init__()
        self.names = list(data.domains)
        self.arrays = data.split_arrays("train")
        self.seq_len = seq_len
        self.seed = seed
        if draw_size < 1:
            raise InputError(f"MixtureDataset: draw_size must be >= 1, got {draw_size}")
        self.draw_size = draw_size
        self.record_draws = record_draws
        self.draws: list[tuple[np.ndarray, np.ndarray]] = []
        self._data = data
        uniform = torch.from_numpy(data.trainable / data.trainable.sum())  # target-only domains are never drawn
        self._weights = uniform.to(torch.float64).share_memory_()
        self._sampler: MixtureSampler | None = None
        # For resuming (main process, num_workers=0): the sampler's state and the weights before each recent draw,
        # so a checkpoint can record where the Trainer's consumed rows end, whatever the loader prefetched.
        self._draws_done = 0
        self._before: collections.deque = collections.deque(maxlen=64)
        self._resume: dict | None = None
        # For OnlineCallback (main process): every row handed out is numbered (the resume's placeholders too); the
        # most recent `keep_rows` of them are kept with their targets and domains, so a callback can score the rows
        # a Trainer step trains on.
        self._rows_out = 0
        self._kept: collections.deque | None = None
        if weights is not None:
            self.set_weights(weights)

    @property
    def weights(self) -> dict[str, float]:
        return {d: float(w) for d, w in zip(self.names, self._weights.tolist())}

    def set_weights(self, weights) -> None:
        """New sampling weights (a {domain: weight} map or an array in domain order), used from the next draw."""
        if isinstance(weights, dict):
            unknown = set(weights) - set(self.names)
            if unknown:
                raise InputError(f"MixtureDataset.set_weights: unknown domain(s) {sorted(unknown)}; expected {self.names}")
            weights = [weights.get(d, 0.0) for d in self.names]
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(self.names),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise InputError(f"MixtureDataset.set_weights: expected {len(self.names)} finite non-negative weights "
                             f"with a positive sum, got {w}")
        check_trainable(w, self._data, "MixtureDataset.set_weights")
        self._weights.copy_(torch.from_numpy(w / w.sum()))

    def state_at(self, rows: int) -> dict:
        """Where the stream stood after its first `rows` rows: the draw they end in, the sampler's state and the
        weights before that draw, and how many of its rows were used (for TandemCallback's checkpoints)."""
        draw, offset = divmod(rows, self.draw_size)
        for d, state, w in self._before:
            if d == draw:
                return {"draw": draw, "offset": offset, "sampler": state, "weights": w.tolist()}
        raise RuntimeError(f"MixtureDataset: draw {draw} is no longer remembered (last {len(self._before)} kept)")

    def keep_rows(self, n: int) -> None:
        """Remember the last `n` rows handed out (see rows)."""
        self._kept = collections.deque(maxlen=int(n))

    def rows(self, start: int, stop: int) -> Batch:
        """Rows start..stop-1 of the stream (counted from this process's first row), as a Batch with domain ids."""
        kept = {i: r for i, *r in (self._kept or ())}
        if any(i not in kept for i in range(start, stop)):
            raise RuntimeError(f"MixtureDataset: rows {start}..{stop - 1} are not all kept (keep_rows, main process)")
        x, y, d = zip(*(kept[i] for i in range(start, stop)))
        return Batch(torch.stack(x), torch.stack(y), torch.tensor(d, dtype=torch.int64))

    def resume_from(self, state: dict, skipped_rows: int) -> None:
        """Continue the stream exactly where `state` (from state_at) left it; the first `skipped_rows` rows the
        Trainer discards while it skips the batches it already trained on are placeholders."""
        self._resume = {**state, "skip": int(skipped_rows)}

    def __iter__(self):
        if self._sampler is None:
            info = torch.utils.data.get_worker_info()
            worker = info.id if info is not None else 0
            # The sampler persists across iter() calls so a restarted epoch continues the stream, not repeats it.
            self._sampler = MixtureSampler(self.arrays, self.seq_len, self.seed + 7_777 * (worker + 1), self.names)
        sampler = self._sampler
        first_weights, offset = None, 0
        if self._resume is not None:
            r, self._resume = self._resume, None
            blank = torch.zeros(self.seq_len, dtype=torch.int64)
            for _ in range(r["skip"]):  # discarded by the Trainer's skip of the batches already trained on
                self._rows_out += 1
                yield {"input_ids": blank, "labels": blank.clone()}
            sampler.load_state_dict(r["sampler"])
            self._draws_done = r["draw"]
            first_weights, offset = np.asarray(r["weights"], dtype=np.float64), r["offset"]
        while True:
            w = self._weights.numpy().copy() if first_weights is None else first_weights
            first_weights = None
            self._before.append((self._draws_done, sampler.state_dict(), w))
            batch = sampler.sample(w, self.draw_size)
            self._draws_done += 1
            if self.record_draws:
                self.draws.append((w, np.bincount(batch.domain.numpy(), minlength=len(self.names))))
            for k in range(offset, len(batch)):
                row = batch.x[k]
                if self._kept is not None:
                    self._kept.append((self._rows_out, row, batch.y[k], int(batch.domain[k])))
                self._rows_out += 1
                # Hugging Face causal LMs shift the labels themselves.
                yield {"input_ids": row, "labels": row.clone()}
            offset = 0


def callback_config(settings: dict | str | Path, data: PreparedData) -> Config:
    """The Config TandemCallback reads, for data that comes from your own datasets (tandem.data.objects.token_data)
    rather than a config's `data`: the sections of `settings` (a dict, or a YAML file: mixer, train, eval, seed)
    with one domain per domain of `data`."""
    from tandem.config import config_from_dict, parse_yaml

    label = str(settings) if isinstance(settings, (str, Path)) else "TandemCallback settings"
    if isinstance(settings, (str, Path)):
        if not Path(settings).is_file():
            raise InputError(f"{settings}: config file not found")
        settings = parse_yaml(Path(settings).read_text(encoding="utf-8")) or {}
    if not isinstance(settings, dict):
        raise InputError(f"{label}: expected a mapping of sections (mixer, train, eval, seed)")
    if "data" in settings:
        raise InputError(f"{label}: leave out `data`; the domains are those of the datasets given")
    # Stand-ins that are never read: the tokens are already in `data`; only the domains' names and which of them
    # have a train split matter to the settings' checks (mixer.target, mixer.weights, the floor).
    domains = {d: {"train" if t else "valid": "<datasets>"} for d, t in zip(data.domains, data.trainable)}
    return config_from_dict({**settings, "data": {"domains": domains}}, source=label)


class _Recorded:
    """Per-domain losses measured earlier on given held sets, answered as a model would (for measure_delta)."""

    def __init__(self, sets: list, losses: list[np.ndarray]):
        self._by_id = {id(h): loss for h, loss in zip(sets, losses)}

    def domain_losses(self, held) -> np.ndarray:
        return self._by_id[id(held)]


def _settings(cfg, data: PreparedData, dataset: MixtureDataset) -> Config:
    """A callback's Config from a Config, a dict of sections or a YAML file; the rows' length is the dataset's, so
    settings given as a dict need not say it twice."""
    if isinstance(cfg, dict) and "seq_len" not in (cfg.get("train") or {}):
        cfg = {**cfg, "train": {**(cfg.get("train") or {}), "seq_len": dataset.seq_len}}
    return cfg if isinstance(cfg, Config) else callback_config(cfg, data)


def _log_weights(names: list[str], alpha, state, logs) -> None:
    """The current mixture beside the Trainer's own metrics (`tandem/weight_<domain>`), in state.log_history."""
    if logs is None:
        return
    weights = {f"tandem/weight_{d}": float(x) for d, x in zip(names, alpha)}
    logs.update(weights)
    if state.log_history:
        state.log_history[-1].update(weights)


def _trainer_optim(args) -> OptimConfig:
    """The Trainer's optimizer settings for a Learner beside its model (a twin or a measuring copy): constant learning
    rate (a twin takes the Trainer's current one at each sync), the Trainer's AdamW and micro-batches."""
    return OptimConfig(lr=args.learning_rate, total_steps=1 << 30, warmup_steps=0, min_lr_ratio=1.0,
                       weight_decay=args.weight_decay, beta1=args.adam_beta1, beta2=args.adam_beta2,
                       grad_clip=args.max_grad_norm, micro_batch_size=args.per_device_train_batch_size)


def _append_record(out_dir: Path | None, rec, names: list[str], report_to) -> None:
    """One episode's (round's) record in out_dir/metrics.jsonl and the configured trackers."""
    if out_dir is None:
        return
    from tandem.mixing.optimize import _record_to_json
    from tandem.tracking import append_metrics

    append_metrics(out_dir / "metrics.jsonl", _record_to_json(rec, names), report_to)


def _is_main(args) -> bool:
    return getattr(args, "process_index", 0) == 0


def _adam_moments(optimizer) -> torch.optim.Optimizer | None:
    opt = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the Trainer's optimizer
    return opt if isinstance(opt, torch.optim.Optimizer) else None


class TandemCallback(TrainerCallback):
    """Steers a running `Trainer` whose `train_dataset` is `dataset` by TANDEM (settings from `cfg.mixer`).

    out_dir: where to write what `tandem optimize` writes (weights.json, trajectory.csv, metrics.jsonl,
    weights.png), so `tandem export` and `tandem report` read it; None writes nothing.
    """

    def __init__(self, cfg: Config | dict | str | Path, data: PreparedData, dataset: MixtureDataset,
                 out_dir: str | Path | None = None):
        cfg = _settings(cfg, data, dataset)
        mc = methods.effective(cfg.mixer)
        if mc.method not in methods.LOOP_METHODS:
            hint = ("adapts during training: steer the Trainer with tandem.integrations.hf.OnlineCallback"
                    if mc.method in methods.ONLINE_METHODS else "has no stage one to run inside a Trainer")
            raise InputError(f"mixer.method: TandemCallback runs the loop methods {', '.join(methods.LOOP_METHODS)}; "
                             f"{mc.method!r} {hint}")
        if mc.method == "tandem" and mc.restart:
            raise InputError("mixer.restart: a Trainer's run cannot start again from initialisation every episode; "
                             "learn the mixture with `tandem optimize` (or restart: false) and train on it")
        if dataset.names != list(data.domains) or dataset.seq_len != cfg.train.seq_len:
            raise InputError(f"TandemCallback: the dataset must draw the config's domains {data.domains} with "
                             f"train.seq_len={cfg.train.seq_len} tokens per row")
        self.cfg, self.data, self.dataset = cfg, data, dataset
        self.mc = mc
        # The Trainer's data loader draws every method's mixture (mixer.sampling=reweight has no say here).
        self.spec = replace(methods.loop_spec(mc), on_nonfinite=mc.on_nonfinite,
                            trainable=None if data.trainable.all() else tuple(bool(t) for t in data.trainable))
        self.names = list(data.domains)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.state = LoopState(alpha=methods.initial_weights(mc, self.names, natural_weights(data)))
        self.dataset.set_weights(self.state.alpha)
        self.problem: LMProblem | None = None
        self.proxy: Learner | None = None
        self.reference: Learner | None = None
        self._probe_left = 0
        self._reference_failed = False
        self._model = None
        self._held, self._base = None, None  # DoGE: the held sets and the losses of the model the probe started from

    @property
    def weights(self) -> dict[str, float]:
        """The current mixture (what the dataset draws by)."""
        return {d: float(x) for d, x in zip(self.names, self.state.alpha)}

    @property
    def recommended(self) -> dict[str, float]:
        """The mixture `mixer.report` recommends: the average over episodes or the final one."""
        w = self.state.average if self.mc.report == "average" else self.state.alpha
        return {d: float(x) for d, x in zip(self.names, w)}

    def interleave_probabilities(self, order: list[str] | None = None) -> list[float]:
        """The recommended mixture as `datasets.interleave_datasets(probabilities=...)` wants it, in `order`."""
        from tandem.mixing.optimize import rows_per_document
        from tandem.report.export import datasets_probabilities

        per_doc = rows_per_document(self.data, self.cfg.train.seq_len)
        return datasets_probabilities(self.recommended, order, per_doc)["probabilities"]

    # --- Trainer events -------------------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is None:
            raise InputError("TandemCallback: the Trainer passed no model")
        if args.dataloader_num_workers > 0 and self.dataset.record_draws:
            raise InputError("MixtureDataset(record_draws=True) sees only draws made in the main process; "
                             "set dataloader_num_workers=0")
        device = next(model.parameters()).device
        batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
        self.problem = LMProblem(self.cfg, self.data, batch)
        oc = _trainer_optim(args)
        precision = self.cfg.train.precision
        # The proxy's Learner only measures losses (its optimizer never steps: the Trainer trains the model).
        self.proxy = Learner(HFCausalLM(model), oc, len(self.names), device, precision)
        self.reference = Learner(HFCausalLM(copy.deepcopy(model)), oc, len(self.names), device, precision)
        self._model = model
        if state.global_step > 0:
            self._restore(args, state)
            return
        if self.spec.reference == "frozen":  # DoReMi: the reference is trained once, on the reference mixture
            from tandem.mixing.optimize import pretrain_reference

            pretrain_reference(self.cfg, self.data, self.reference, batch, self.mc.reference_steps or args.max_steps,
                               natural_weights(self.data), progress=False)
            self._model.train()
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "metrics.jsonl").unlink(missing_ok=True)

    def on_save(self, args, state, control, **kwargs):
        """Beside the Trainer's checkpoint: the mixture, its history, the samplers (the dataset's at the rows the
        Trainer has consumed, whatever its loader prefetched) and, mid-probe, the reference twin; so that
        `trainer.train(resume_from_checkpoint=...)` continues the trajectory exactly."""
        from safetensors.torch import save_file

        from tandem.io import atomic_path, write_json
        from tandem.mixing.optimize import _record_to_json

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not folder.is_dir() or not _is_main(args):
            return
        rows = state.global_step * args.gradient_accumulation_steps * args.per_device_train_batch_size
        st = {"global_step": state.global_step, "alpha": self.state.alpha.tolist(), "episode": self.state.episode,
              "warmed_up": self.state.warmed_up, "history": [_record_to_json(r, self.names) for r in self.state.history],
              "probe_left": self._probe_left, "reference_failed": self._reference_failed,
              "problem": self.problem.state_dict(), "dataset": self.dataset.state_at(rows)}
        # mid-probe, the twin's own parameters, moments, learning rate and clock; DoReMi's frozen reference always
        if self._probe_left > 0 or self.spec.reference == "frozen":
            ref = self.reference
            with atomic_path(folder / "tandem_reference.safetensors") as tmp:
                # clones: tied weights (an embedding shared with the output layer) are stored once per name
                save_file({k: v.detach().clone().contiguous() for k, v in ref.module.state_dict().items()}, str(tmp))
            with atomic_path(folder / "tandem_reference_opt.pt") as tmp:
                torch.save(ref.optimizer.state_dict(), tmp)
            st["reference"] = {"lr": ref.oc.lr, "step": ref.step_count}
        write_json(folder / "tandem_callback.json", st)

    def _restore(self, args, state) -> None:
        from safetensors.torch import load_file

        from tandem.mixing.optimize import _record_from_json
        from tandem.training.trainer import truncate_metrics

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        path = folder / "tandem_callback.json"
        if not path.is_file():
            raise InputError(f"{path}: the Trainer resumed at step {state.global_step} but this checkpoint has no "
                             f"TandemCallback state (save it with the callback attached, or start over)")
        st = json.loads(path.read_text(encoding="utf-8"))
        self.state = LoopState(alpha=np.array(st["alpha"]), episode=st["episode"], warmed_up=st["warmed_up"],
                               history=[_record_from_json(h, self.names) for h in st["history"]])
        self._probe_left, self._reference_failed = st["probe_left"], st["reference_failed"]
        self.problem.load_state_dict(st["problem"])
        self.dataset.set_weights(self.state.alpha)
        skipped = (0 if args.ignore_data_skip
                   else state.global_step * args.gradient_accumulation_steps * args.per_device_train_batch_size)
        self.dataset.resume_from(st["dataset"], skipped)
        if "reference" in st:
            ref = self.reference
            ref.module.load_state_dict(load_file(str(folder / "tandem_reference.safetensors")))
            ref.optimizer.load_state_dict(torch.load(folder / "tandem_reference_opt.pt", weights_only=True))
            ref.oc = replace(ref.oc, lr=st["reference"]["lr"])
            ref.step_count = st["reference"]["step"]
        if self.out_dir is not None and (self.out_dir / "metrics.jsonl").is_file():
            truncate_metrics(self.out_dir / "metrics.jsonl", self.state.episode - 1, key="episode")

    def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        spec = self.spec
        since = state.global_step - spec.warmup_steps
        if (self._probe_left == 0 and self.state.episode < spec.episodes and since >= 0
                and since % (spec.probe_steps + spec.free_steps) == 0):
            self.state.warmed_up = True
            if spec.reference != "frozen" and (spec.sync or self.state.episode == 0):
                self._sync(optimizer, lr_scheduler, state.global_step)
            self._probe_left = spec.probe_steps
            if spec.reference == "valid":
                # DoGE compares the twin after its validation step with the model it started from; the Trainer's
                # model moves on during the probe, so the starting point's losses are taken now, on the held
                # batches the comparison will use.
                self._held = self.problem.held_batches()
                self._base = [self.reference.domain_losses(h) for h in self._held]
                self._model.train()
            self._reference_failed = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        """The current mixture beside the Trainer's own metrics (`tandem/weight_<domain>`): in state.log_history,
        and in the logs the callbacks after this one receive (report_to's integrations run first unless this
        callback is placed before them)."""
        _log_weights(self.names, self.state.alpha, state, logs)

    def on_step_end(self, args, state, control, **kwargs):
        if self._probe_left == 0:
            return
        spec, problem = self.spec, self.problem
        # The Trainer draws the proxy's rows itself, so here the reference's train rows are a fresh draw from the
        # same mixture (not the proxy's own rows, as in `tandem optimize`): Delta is noisier through the callback.
        # tandem: the twin steps on train rows and validation rows; doge: a plain step on validation rows alone
        parts = [problem.train_part(self.state.alpha)] if spec.reference == "twin" else []
        if spec.reference in ("twin", "valid") and not self._reference_failed:  # DoReMi's reference stays frozen
            try:
                self.reference.step(parts, valid=[problem.valid_part()], valid_scale=1.0 / spec.gamma,
                                    valid_clip=DOGE_MAX_GRAD_NORM if spec.per_valid_norm else None)
            except FloatingPointError:
                if spec.on_nonfinite == "stop":
                    raise
                self._reference_failed = True  # mixer.on_nonfinite=skip: this episode leaves the mixture alone
        self._probe_left -= 1
        if self._probe_left == 0:
            self._update(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.out_dir is None:
            return
        from tandem.io import write_text
        from tandem.mixing.optimize import rows_per_document, trajectory_csv, write_weights

        average = self.state.average
        recommended = average if self.mc.report == "average" else self.state.alpha
        write_weights(self.out_dir, self.names, self.state.alpha, average, recommended, self.mc.method, {
            "target": {d: float(x) for d, x in zip(self.names, target_weights(self.mc.target, self.names))},
            "episodes": self.state.episode, "probe_steps": self.spec.probe_steps, "free_steps": self.spec.free_steps,
            "gamma": self.spec.gamma, "eta_alpha": self.spec.eta_alpha, "update": self.spec.update,
            "sync": self.spec.sync, "proxy_steps": state.global_step, "trainer": "transformers.Trainer",
            "rows_per_document": rows_per_document(self.data, self.cfg.train.seq_len),
        })
        write_text(self.out_dir / "trajectory.csv", trajectory_csv(self.state.history, self.names))
        if self.state.history:
            from tandem.report.plots import plot_trajectories

            h = self.state.history
            plot_trajectories([r.step for r in h], np.stack([r.alpha for r in h]), self.names,
                              self.out_dir / "weights.png", title=f"{self.mc.method} (Trainer callback): domain weights",
                              distance=[max(r.distance, 1e-12) for r in h])

    # --- the twin ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _sync(self, optimizer, lr_scheduler, step: int) -> None:
        """w <- u: parameters, the AdamW moments of the Trainer's optimizer, and its current learning rate."""
        ref, proxy = self.reference, self.proxy
        ref_params = list(ref.model.parameters())
        proxy_params = list(proxy.model.parameters())
        for p, q in zip(ref_params, proxy_params):
            p.copy_(q)
        ref.optimizer.state.clear()
        source = _adam_moments(optimizer)
        if source is not None:
            for p, q in zip(ref_params, proxy_params):
                st = source.state.get(q)
                # Moments are copied only from an Adam-family optimizer; otherwise the twin starts them fresh.
                if st and {"exp_avg", "exp_avg_sq", "step"} <= set(st):
                    ref.optimizer.state[p] = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in st.items()}
        lr = lr_scheduler.get_last_lr()[0] if lr_scheduler is not None else (
            source.param_groups[0]["lr"] if source is not None else ref.oc.lr)
        ref.oc = replace(ref.oc, lr=float(lr))  # constant over the K probe steps, as the Trainer's barely moves
        ref.step_count = step

    def _update(self, step: int) -> None:
        spec = self.spec
        if spec.reference == "valid":
            held, start = self._held, _Recorded(self._held, self._base)
        else:
            held, start = self.problem.held_batches(), None
        try:
            rec = update_alpha(spec, self.state, held, self.proxy, self.reference, step=step,
                               reference_failed=self._reference_failed, start=start)
        finally:
            self._model.train()  # domain_losses leaves the model in eval mode
        self.dataset.set_weights(self.state.alpha)
        _append_record(self.out_dir, rec, self.names, self.cfg.train.report_to)


class OnlineCallback(TrainerCallback):
    """Steers a running `Trainer` whose `train_dataset` is `dataset` by an online method (odm, ado, skillit, aioli:
    `cfg.mixer.method`), one Trainer step per proxy step of the method's rounds (tandem.mixing.online), for as
    long as the Trainer trains. The first mixer.warmup_steps Trainer steps draw the initial mixture.

    out_dir: where to write what `tandem optimize` writes for the method (weights.json with the mixture averaged
    over the run and the final one, trajectory.csv, metrics.jsonl, weights.png); None writes nothing.
    """

    def __init__(self, cfg: Config | dict | str | Path, data: PreparedData, dataset: MixtureDataset,
                 out_dir: str | Path | None = None):
        from tandem.mixing import online

        cfg = _settings(cfg, data, dataset)
        mc = methods.effective(cfg.mixer)
        if mc.method not in online.ONLINE_METHODS:
            raise InputError(f"mixer.method: OnlineCallback runs the online methods {', '.join(online.ONLINE_METHODS)}; "
                             f"{mc.method!r} " + ("runs in TandemCallback" if mc.method in methods.LOOP_METHODS
                                                  else "has no rounds to run inside a Trainer"))
        if mc.sampling == "reweight":
            raise InputError(f"mixer.sampling: {mc.method} draws its batches by its mixture; sampling=reweight applies "
                             f"to the loop methods only")
        if dataset.names != list(data.domains) or dataset.seq_len != cfg.train.seq_len:
            raise InputError(f"OnlineCallback: the dataset must draw the config's domains {data.domains} with "
                             f"train.seq_len={cfg.train.seq_len} tokens per row")
        if not data.trainable.all():
            only = [d for d, t in zip(data.domains, data.trainable) if not t]
            raise InputError(f"mixer.method={mc.method}: domain {only[0]!r} has no train split (a target-only domain); "
                             f"{mc.method} mixes every domain it is given, so steer with TandemCallback (tandem, "
                             f"doremi, doge) or give the domain a train split")
        self.cfg, self.data, self.dataset, self.mc = cfg, data, dataset, mc
        self.names = list(data.domains)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.alpha0 = methods.initial_weights(mc, self.names, natural_weights(data))
        self.alpha = self.alpha0.copy()  # the current round's mixture
        self.dataset.set_weights(self.alpha)
        self.history: list = []  # one EpisodeRecord per finished round
        self.started = False  # warm-up over and the policy's start done
        self.ctx = None
        self.policy = None
        self._model = None
        self._meter = None  # the per-domain training losses of the step under way (ODM, ADO)
        self._rows_per_step = 0
        self._row_shift = 0  # rows the stream's numbering runs ahead of (global_step x rows per step)

    @property
    def weights(self) -> dict[str, float]:
        """The current round's mixture."""
        return {d: float(x) for d, x in zip(self.names, self.alpha)}

    @property
    def average(self) -> np.ndarray:
        return np.mean([r.alpha for r in self.history], axis=0) if self.history else self.alpha

    @property
    def recommended(self) -> dict[str, float]:
        """The mixture `mixer.report` recommends: the average over rounds (what the model trained on) or the last."""
        w = self.average if self.mc.report == "average" else self.alpha
        return {d: float(x) for d, x in zip(self.names, w)}

    # --- Trainer events -------------------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from tandem.mixing import online

        if model is None:
            raise InputError("OnlineCallback: the Trainer passed no model")
        if args.dataloader_num_workers > 0 or max(args.world_size, 1) > 1:
            raise InputError("OnlineCallback: the rows a step trains on are read back from the dataset, which needs "
                             "one process: set dataloader_num_workers=0 and run without torchrun")
        device = next(model.parameters()).device
        self._rows_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
        # the rows of the step under way, the loader's look-ahead and a resume's margin
        self.dataset.keep_rows(4 * self._rows_per_step + 4 * self.dataset.draw_size + 64)
        problem = LMProblem(self.cfg, self.data, self._rows_per_step)
        oc = _trainer_optim(args)
        precision = self.cfg.train.precision
        # The model's Learner only measures losses (its optimizer never steps: the Trainer trains the model);
        # Skill-It's graph trains a copy of the model as it is at the start.
        proxy = Learner(HFCausalLM(model), oc, len(self.names), device, precision)
        scratch = (Learner(HFCausalLM(copy.deepcopy(model)), oc, len(self.names), device, precision)
                   if self.mc.method == "skillit" and self.mc.skillit.graph is None else None)
        self.ctx = online.make_context(self.mc, problem, self.names, natural_weights(self.data), self.cfg.seed, proxy,
                                       scratch)
        self.policy = online.POLICIES[self.mc.method](self.mc, len(self.names), self.alpha0)
        self._model = model
        if state.global_step > 0:
            self._restore(args, state)
            return
        try:
            self.policy.initial(self.ctx)  # Skill-It's graph, from the model as initialised
        finally:
            model.train()
        self.ctx.scratch = None  # the copy is no longer needed
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "metrics.jsonl").unlink(missing_ok=True)

    def on_step_begin(self, args, state, control, **kwargs):
        from tandem.training.loss import DomainLossMeter, domain_token_counts

        try:
            if state.global_step >= self.mc.warmup_steps:
                if not self.started:
                    self.alpha = np.asarray(self.policy.start(self.ctx, self.alpha), dtype=np.float64)
                    self.started = True
                mixture, rows = self.policy.next_step(self.ctx, self.alpha, len(self.history))
                per_row = self.ctx.problem.train.tokens_per_row
                self.dataset.set_weights(token_shares(mixture, per_row) if rows else mixture)
                self._meter = None
                if self.mc.method in ("odm", "ado"):  # they read the training losses of the step's own rows
                    first = state.global_step * self._rows_per_step - self._row_shift
                    batch = self.dataset.rows(first, first + self._rows_per_step)
                    losses = self.ctx.proxy.domain_losses([batch])
                    counts = domain_token_counts(batch.y, batch.domain, len(self.names)).double()
                    meter = DomainLossMeter(len(self.names))
                    meter.add(torch.from_numpy(np.nan_to_num(losses)) * counts, counts)
                    self._meter = meter
        finally:
            self._model.train()  # measuring leaves the model in eval mode

    def on_step_end(self, args, state, control, **kwargs):
        from tandem.mixing.loop import EpisodeRecord

        self.ctx.steps += 1
        if not self.started:
            return
        t = len(self.history)
        try:
            out = self.policy.after_step(self.ctx, self._meter, self.alpha, t)
        finally:
            self._model.train()
        if out is None:
            return
        alpha, signal, losses = out
        self.alpha = np.asarray(alpha, dtype=np.float64).copy()
        nan = np.full(len(self.names), np.nan)
        rec = EpisodeRecord(t, state.global_step, self.alpha.copy(), np.asarray(signal, dtype=np.float64),
                            float("nan"), np.asarray(losses, dtype=np.float64), nan)
        self.history.append(rec)
        _append_record(self.out_dir, rec, self.names, self.cfg.train.report_to)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """The current mixture in state.log_history and the logs later callbacks receive (`tandem/weight_<d>`)."""
        _log_weights(self.names, self.alpha, state, logs)

    def on_save(self, args, state, control, **kwargs):
        """Beside the Trainer's checkpoint: the policy's state between two steps (mid-round too), its random
        generator, the mixture, the rounds so far and the samplers, so that resuming continues exactly."""
        from tandem.io import write_json
        from tandem.mixing.optimize import _record_to_json

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not folder.is_dir() or not _is_main(args):
            return
        rows = state.global_step * self._rows_per_step
        write_json(folder / "tandem_online.json", {
            "global_step": state.global_step, "method": self.mc.method, "alpha": self.alpha.tolist(),
            "started": self.started, "steps": self.ctx.steps, "policy": self.policy.state_dict(),
            "policy_rng": self.ctx.rng.bit_generator.state, "problem": self.ctx.problem.state_dict(),
            "history": [_record_to_json(r, self.names) for r in self.history],
            "dataset": self.dataset.state_at(rows - self._row_shift),
            # what the loader's next draws read (those it makes before the next step begins)
            "dataset_weights": list(self.dataset.weights.values())})

    def _restore(self, args, state) -> None:
        from tandem.mixing.optimize import _record_from_json
        from tandem.training.trainer import truncate_metrics

        path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / "tandem_online.json"
        if not path.is_file():
            raise InputError(f"{path}: the Trainer resumed at step {state.global_step} but this checkpoint has no "
                             f"OnlineCallback state (save it with the callback attached, or start over)")
        st = json.loads(path.read_text(encoding="utf-8"))
        if st.get("method") != self.mc.method:
            raise InputError(f"{path}: method: the checkpoint was steered by {st.get('method')!r}, this callback runs "
                             f"{self.mc.method!r}")
        self.alpha = np.array(st["alpha"], dtype=np.float64)
        self.started, self.ctx.steps = bool(st["started"]), int(st["steps"])
        self.policy.load_state_dict(st["policy"])
        self.ctx.rng.bit_generator.state = st["policy_rng"]
        self.ctx.problem.load_state_dict(st["problem"])
        self.history = [_record_from_json(h, self.names) for h in st["history"]]
        skipped = 0 if args.ignore_data_skip else state.global_step * self._rows_per_step
        # the stream's rows are numbered from this process's first: the skipped placeholders count, rows the
        # Trainer does not skip again (ignore_data_skip) do not
        self._row_shift = state.global_step * self._rows_per_step - skipped
        self.dataset.set_weights(np.asarray(st["dataset_weights"], dtype=np.float64))
        self.dataset.resume_from(st["dataset"], skipped)
        self.ctx.scratch = None
        if self.out_dir is not None and (self.out_dir / "metrics.jsonl").is_file():
            truncate_metrics(self.out_dir / "metrics.jsonl", len(self.history) - 1, key="episode")

    def on_train_end(self, args, state, control, **kwargs):
        if self.out_dir is None:
            return
        from tandem.io import write_text
        from tandem.mixing.optimize import rows_per_document, trajectory_csv, write_weights

        average = self.average
        recommended = average if self.mc.report == "average" else self.alpha
        write_weights(self.out_dir, self.names, self.alpha, average, recommended, self.mc.method, {
            "target": {d: float(x) for d, x in zip(self.names, target_weights(self.mc.target, self.names))},
            "episodes": len(self.history), "proxy_steps": self.ctx.steps, "trainer": "transformers.Trainer",
            "online": True, "rows_per_document": rows_per_document(self.data, self.cfg.train.seq_len),
            **self.policy.outputs(self.names)})
        write_text(self.out_dir / "trajectory.csv", trajectory_csv(self.history, self.names))
        if self.history:
            from tandem.report.plots import plot_trajectories

            h = self.history
            plot_trajectories([r.step for r in h], np.stack([r.alpha for r in h]), self.names,
                              self.out_dir / "weights.png",
                              title=f"{self.mc.method} (online, Trainer callback): domain weights per round")
