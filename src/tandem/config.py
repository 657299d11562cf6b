"""The run configuration: one YAML file, validated on load, every field documented here.

Load with `load_config(path, overrides)`; overrides are dotted `key=value` strings
(`train.steps=200`), values parsed as YAML. Relative paths in `data` are relative
to the config file's folder.
"""

from __future__ import annotations

import difflib
import typing
import math
import os
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tandem.errors import InputError

SPLITS = ("train", "valid", "test")
# The mixing methods by name (tandem.mixing.methods defines each; it checks this list against its own).
METHOD_NAMES = ("uniform", "natural", "fixed", "tandem", "doremi", "doge", "odm", "aioli", "skillit", "ado", "grid",
                "regmix")


class _Section(BaseModel):
    # Unknown keys are errors: a typo must never silently fall back to a default.
    # Infinite or NaN numbers are errors too: an infinite step size would only surface later as a numeric fault.
    # Strict types: a quoted number ('30') is a string, refused naming the field, not coerced behind the user's back.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False, strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, v, info):
        # YAML reads `yes`/`no`/`true` as booleans, which pydantic would take as 1 and 0 for a number field:
        # `train.steps: yes` must be an error, not one step.
        field = cls.model_fields.get(info.field_name)
        if isinstance(v, bool) and field is not None and field.annotation in (int, float, Optional[int], Optional[float]):
            raise ValueError(f"expected a number, got {str(v).lower()}")
        return v


Scalar = Union[str, int, float, bool]


class DomainConfig(_Section):
    """One domain: either split sources (train, valid, test), or one `source` split by document with `split`
    fractions. A domain without a train split is a target-only domain: evaluated, and usable as the optimization
    target (`mixer.target`), but never trained on (its weight is 0). With `domain_field` the entry is a group that
    becomes one domain per value of a field of its rows."""

    train: Optional[Union[str, list[str]]] = Field(None, description="File(s) or glob(s) of the training split.")
    valid: Optional[Union[str, list[str]]] = Field(
        None, description="File(s) or glob(s) of the validation split (the optimizers' additional data)."
    )
    test: Optional[Union[str, list[str]]] = Field(
        None, description="File(s) or glob(s) of the test split, used only for the final report."
    )
    source: Optional[Union[str, list[str]]] = Field(
        None, description="File(s) or glob(s) split into train/valid/test by document, seeded by `seed`."
    )
    split: Optional[dict[str, float]] = Field(
        None, description="Fractions of documents per split when `source` is given, e.g. {train: 0.9, valid: 0.05, test: 0.05}."
    )
    text_field: Optional[str] = Field(None, description="Field holding the text in jsonl/parquet/datasets rows (default: data.text_field).")
    format: Literal["auto", "jsonl", "csv", "txt", "parquet", "hf"] = Field(
        "auto", description="File format; `auto` infers it from the extension (a folder is a `datasets` save_to_disk folder)."
    )
    metric: Optional[Literal["accuracy", "exact_match_f1"]] = Field(
        None,
        description="SFT task metric from greedy generation (`tandem metrics`): `accuracy` for classification, "
        "`exact_match_f1` (exact match and token F1) for extraction; null = loss only.",
    )
    where: Optional[dict[str, Union[Scalar, list[Scalar]]]] = Field(
        None,
        description="Keep only the rows of a structured source (jsonl, parquet, datasets folder) whose field equals "
        "the value, or one of a list of values; a dotted field reads nested objects. Splits one big file with a "
        "domain column into domains, e.g. {meta.redpajama_set_name: RedPajamaGithub}.",
    )
    domain_field: Optional[str] = Field(
        None,
        description="Make this entry a group: one domain per distinct value of this (dotted) field of its rows, named "
        "by the value, e.g. meta.redpajama_set_name of SlimPajama; the entry's own name is not a domain. Its sources, "
        "split, where, text_field, format and kind apply to every domain of the group; rows without the field belong "
        "to none. The values are found by one pass over the sources (remembered in the cache folder); with "
        "train/valid/test files, a value that only valid or test holds makes a target-only domain.",
    )
    domain_values: Optional[Union[list[Scalar], dict[Scalar, str]]] = Field(
        None,
        description="With domain_field: the values that become domains, in this order (a list), or {value: domain "
        "name} to name values that are not valid names (The Pile's 'PubMed Central'); listing them skips the pass "
        "over the sources. Default: every value found, in sorted order.",
    )
    kind: Literal["text", "sft"] = Field(
        "text",
        description="`text`: documents for language modelling; `sft`: supervised fine-tuning rows "
        "({prompt, response} or {messages: [{role, content}, ...]}), loss only on the response (assistant) tokens.",
    )

    @model_validator(mode="after")
    def _one_layout(self) -> "DomainConfig":
        explicit = [s for s in SPLITS if getattr(self, s) is not None]
        if self.source is not None:
            if explicit:
                raise ValueError("give either `source` with `split`, or train/valid/test, not both")
            if self.split is None:
                raise ValueError("`source` needs `split` fractions, e.g. {train: 0.9, valid: 0.05, test: 0.05}")
            unknown = set(self.split) - set(SPLITS)
            if unknown:
                raise ValueError(f"`split` has unknown split(s) {sorted(unknown)}; expected train, valid, test")
            fr = [self.split.get(s, 0.0) for s in SPLITS]
            if any((not math.isfinite(f)) or f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
                raise ValueError(f"`split` fractions must be non-negative and sum to 1, got {self.split}")
        else:
            if not explicit:
                raise ValueError("needs `train` (or `source` with `split`); a target-only domain gives `valid` "
                                 "and/or `test` alone")
            if self.split is not None:
                raise ValueError("`split` applies only to `source`; with train/valid/test files leave it out")
        if self.domain_values is not None and self.domain_field is None:
            raise ValueError("`domain_values` applies only with `domain_field`")
        if self.domain_field is not None and self.domain_field in (self.where or {}):
            raise ValueError(f"`where` and `domain_field` both select on {self.domain_field!r}; list the values "
                             f"in `domain_values` instead")
        return self

    @property
    def has_train(self) -> bool:
        """Whether the domain has a train split (a domain without one is target-only: weight 0)."""
        if self.source is not None:
            return self.split.get("train", 0.0) > 0
        return self.train is not None


# Files the token cache keeps beside the domains' folders.
RESERVED_NAMES = {"index.json", "tokenizer.json", "chat_template.jinja", ".lock", "domain_values.json"}


def domain_name_problem(name: str) -> str | None:
    """Why `name` cannot name a domain (a folder of the token cache and of exports), or None if it can."""
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        return "use letters, digits, '-', '_' or '.'"
    if set(name) == {"."}:
        return "a name of dots only would leave its folder"
    if name.lower() in RESERVED_NAMES:
        return f"reserved for the token cache's own files ({', '.join(sorted(RESERVED_NAMES))})"
    return None


class DataConfig(_Section):
    domains: dict[str, DomainConfig] = Field(description="Domain name -> its sources. At least one domain.")
    text_field: str = Field("text", description="Default field holding the text in jsonl/parquet/datasets rows.")
    cache_dir: str = Field(".tandem_cache", description="Token cache folder (relative to the config file).")
    source_hash: Literal["sampled", "full"] = Field(
        "sampled", description="How the cache checks that its sources are unchanged: `sampled` (name, size, "
        "modification time and 16 chunks of 64 KiB of each file of 64 MiB or more; smaller files whole, so no edit of "
        "one goes unseen), or `full` "
        "(every byte, about 1 s per GB).")
    append_eos: bool = Field(True, description="Append the end-of-text token after every document.")
    chat_template: str = Field(
        "auto",
        description="How SFT rows are rendered: `auto` (the tokenizer's own chat template where it has one, the "
        "default template otherwise), `default` (always the default template), or a Jinja template file (relative to the config).",
    )

    @field_validator("domains")
    @classmethod
    def _names(cls, v: dict) -> dict:
        if not v:
            raise ValueError("at least one domain is required")
        for name in v:
            problem = domain_name_problem(name)
            if problem:
                raise ValueError(f"domain name {name!r}: {problem}")
        return v


class TokenizerConfig(_Section):
    kind: Literal["bpe", "file", "hf"] = Field(
        "bpe",
        description="`bpe`: train a byte-level BPE on the train splits; `file`: load a tokenizer.json; "
        "`hf`: load a local Hugging Face tokenizer folder.",
    )
    path: Optional[str] = Field(None, description="tokenizer.json (kind=file) or tokenizer folder (kind=hf), relative to the config.")
    vocab_size: int = Field(8192, ge=259, le=1_000_000, description="BPE vocabulary size (kind=bpe).")
    min_frequency: int = Field(2, ge=1, description="Minimum pair frequency for a BPE merge.")
    max_train_chars: int = Field(50_000_000, ge=1, description="Cap on the characters of training text fed to the BPE trainer.")

    @model_validator(mode="after")
    def _path(self) -> "TokenizerConfig":
        if self.kind != "bpe" and not self.path:
            raise ValueError(f"tokenizer.kind={self.kind} needs tokenizer.path")
        return self


# Parameter counts are for an 8k vocabulary (embeddings included, counted once since tied).
GPT_PRESETS: dict[str, dict] = {
    "tiny": dict(n_layer=2, n_head=2, n_embd=64),  # ~0.6M: CI and proxies on CPU
    "mini": dict(n_layer=3, n_head=4, n_embd=128),  # ~1.6M
    "small": dict(n_layer=4, n_head=4, n_embd=256),  # ~5M
    "base": dict(n_layer=6, n_head=6, n_embd=384),  # ~14M
    "medium": dict(n_layer=8, n_head=8, n_embd=512),  # ~30M: GPU proxies
}


class ModelConfig(_Section):
    preset: str = Field("small", description="GPT preset (`tiny`, `small`, `base`, ...) or `hf` for a Hugging Face causal LM.")
    n_layer: Optional[int] = Field(None, ge=1, description="Override the preset's number of layers.")
    n_head: Optional[int] = Field(None, ge=1, description="Override the preset's number of attention heads.")
    n_embd: Optional[int] = Field(None, ge=8, description="Override the preset's width.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability.")
    hf_path: Optional[str] = Field(None, description="preset=hf: local folder of a pretrained model (no hub downloads).")
    hf_config: Optional[dict[str, Any]] = Field(
        None, description="preset=hf: build a fresh model from this config dict (needs `model_type`, e.g. llama)."
    )
    gguf_file: Optional[str] = Field(None, description="preset=hf: a GGUF file inside hf_path to load.")

    @model_validator(mode="after")
    def _preset(self) -> "ModelConfig":
        if self.preset == "hf":
            if (self.hf_path is None) == (self.hf_config is None):
                raise ValueError("preset=hf needs exactly one of hf_path (a local folder) or hf_config")
        elif self.preset not in GPT_PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; expected one of {sorted(GPT_PRESETS)} or hf")
        return self


class TrainConfig(_Section):
    steps: int = Field(200, ge=1, description="Optimizer steps.")
    batch_size: int = Field(16, ge=1, description="Sequences per optimizer step (the global batch).")
    micro_batch_size: Optional[int] = Field(None, ge=1, description="Sequences per forward pass; gradients accumulate up to batch_size.")
    seq_len: int = Field(256, ge=2, description="Tokens per training sequence.")
    lr: float = Field(1e-3, gt=0, description="Peak AdamW learning rate.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final learning rate of the cosine decay, as a fraction of lr.")
    warmup_steps: int = Field(20, ge=0, description="Linear warm-up steps.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (not applied to biases and norms).")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1.")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW beta2.")
    grad_clip: float = Field(1.0, ge=0, description="Clip the gradient norm to this value (0 = off).")
    log_interval: int = Field(10, ge=1, description="Steps between metrics.jsonl records.")
    eval_interval: int = Field(0, ge=0, description="Steps between evaluations of the target on every domain's "
                               "valid split during training (at most eval.max_tokens per domain), recorded in "
                               "metrics.jsonl as `valid_loss` and plotted in training.png (0 = off).")
    checkpoint_interval: int = Field(0, ge=0, description="Steps between checkpoints (0 = only at the end).")
    device: str = Field("auto", description="`auto` (cuda if available), `cpu`, `cuda`, `cuda:1`, ...")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v == "auto":
            return v
        import torch

        try:
            d = torch.device(v)
        except (RuntimeError, ValueError):
            raise ValueError(f"unknown device {v!r}; expected auto, cpu, cuda, cuda:N or another torch device") from None
        if d.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {v!r}: no CUDA device is available here; use cpu or auto")
        return v
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="`auto`: bf16 autocast on GPU, fp32 on CPU.")
    compile: bool = Field(False, description="torch.compile the model (faster steps, slower start).")
    fsdp: bool = Field(
        False,
        description="Under torchrun, shard parameters, gradients and optimizer state across ranks (FSDP2) instead of "
        "replicating them; for models too large for one device. Checkpoints hold the shards (DCP); only the final "
        "model is gathered.",
    )
    threads: Optional[int] = Field(None, ge=1, description="torch CPU threads (default: torch's choice).")
    report_to: list[Literal["none", "tensorboard", "wandb"]] = Field(
        ["none"],
        description="Reporters besides metrics.jsonl, as in Hugging Face: `none`, `tensorboard` (OUT/tensorboard), "
        "`wandb` (offline unless WANDB_MODE is set); a name or a list. Needs the `tracking` extra.",
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to(cls, v):
        v = [v] if isinstance(v, str) else v
        if isinstance(v, list) and "none" in v and len(v) > 1:
            raise ValueError("`none` cannot be combined with other reporters")
        import importlib.util

        for r in v if isinstance(v, list) else []:
            if r in ("tensorboard", "wandb") and importlib.util.find_spec(r) is None:
                raise ValueError(f"{r} needs the `{r}` package: pip install 'tandem-mix[tracking]'")
        return v

    @model_validator(mode="after")
    def _micro(self) -> "TrainConfig":
        if self.micro_batch_size is not None and self.micro_batch_size > self.batch_size:
            raise ValueError("micro_batch_size must be <= batch_size")
        return self


class EvalConfig(_Section):
    max_tokens: Optional[int] = Field(
        200_000, ge=1, description="Evaluate at most this many tokens per domain and split (null = the whole split)."
    )
    batch_size: int = Field(16, ge=1, description="Sequences per evaluation forward pass.")
    task_metrics: bool = Field(
        True, description="After training, score every domain that declares a `metric` by greedy generation on its "
        "test split (eval.json `task_metrics`); off: losses only (`tandem metrics` scores a saved model later).")
    task_examples: Optional[int] = Field(
        None, ge=1, description="Score at most this many test examples per task (null = all of them).")


class ODMConfig(_Section):
    updater: Literal["smoothed_mean", "exp3"] = Field(
        "smoothed_mean", description="method=odm: `smoothed_mean`, the released code's updater (est <- s est + "
        "(1 - s) exp(loss) for each sampled domain, probabilities (1 - K eps) est / sum(est) + eps), or `exp3`, the "
        "paper's Algorithm 1 (importance-weighted moving average of loss / p, probabilities (1 - K eps) "
        "softmax(eps' R) + eps).")
    smoothing: float = Field(0.9, ge=0, lt=1, description="method=odm: weight of the past in the moving average "
                             "(s above; the released code's default 0.9).")
    groups: int = Field(8, ge=1, description="method=odm: single-domain groups (micro-batches) per step, each "
                        "domain drawn from the bandit's probabilities (capped at the batch size).")


class AioliConfig(_Section):
    sweeps: int = Field(2, ge=1, description="method=aioli: sweeps over all groups per round when estimating A "
                        "(lp_rounds); each probes every group for mixer.probe_steps steps.")
    one_hot_factor: float = Field(0.75, gt=0, le=1, description="method=aioli: weight on the probed group in its "
                                  "smoothed one-hot mixture (the rest spread evenly); A is unmixed from them.")
    ema: Optional[float] = Field(0.1, ge=0, lt=1, description="method=aioli: weight of the previous rounds' A in its "
                                 "moving average (A_bar = (1 - ema) A + ema A_bar); with it the mixture is "
                                 "exp(eta A_bar's column sums) from the initial one each round, as Aioli's code "
                                 "does; null: the paper's cumulative p <- p exp(eta A's column sums).")


class SkillItConfig(_Section):
    window: int = Field(3, ge=1, description="method=skillit: evaluations of the validation losses summed in the "
                        "update (W).")
    graph: Optional[dict[str, dict[str, float]]] = Field(
        None, description="method=skillit: the skills graph {skill i: {skill j: A_ij}} (training on i helps j); "
        "null: estimated as Skill-It's authors do, from the run's start: a copy of the initial proxy trained on each "
        "skill alone for graph_steps steps, A_ij = relative drop of skill j's validation loss.")
    graph_steps: int = Field(10, ge=1, description="method=skillit: steps on each skill alone when estimating the "
                             "graph (counted in the stage-one budget).")


class ADOConfig(_Section):
    warmup_steps: int = Field(20, ge=3, description="method=ado: steps at the prior (the natural mixture) before the "
                              "first power-law fit (ADO's start_step; published 500 of 60k steps).")
    fit_interval: int = Field(10, ge=1, description="method=ado: steps between refits of the power laws (published "
                              "1000 of 60k steps).")
    history_decay: float = Field(0.9, ge=0, lt=1, description="method=ado: decay of h, the moving average of the "
                                 "sampled composition (its credit-assignment term).")
    mix: float = Field(0.1, gt=0, le=1, description="method=ado: weight of the current score in the policy "
                       "(p = (1 - mix) p_avg + mix score, p_avg the running mean of the scores).")
    floor: float = Field(0.01, ge=0, lt=1, description="method=ado: least share of each domain in a score.")


class MixerConfig(_Section):
    method: str = Field(
        "tandem",
        description="Mixture method: tandem, doremi, doge, odm, aioli, skillit, ado, grid, regmix, uniform, natural, fixed "
        "(see tandem.mixing.methods).",
    )
    grid_resolution: int = Field(10, ge=1, description="method=grid: simplex grid step 1/resolution (3 domains, 10: 66 points).")
    regmix_samples: int = Field(16, ge=2, description="method=regmix: proxies trained on Dirichlet-sampled mixtures.")
    regmix_regression: Literal["lightgbm", "quadratic"] = Field(
        "lightgbm", description="method=regmix: `lightgbm`, as RegMix's released code (its sweep around prior^0.5 "
        "with 15x usage caps, a LightGBM fit, the mean of the top 128 of 100,000 candidates), or `quadratic` (a "
        "quadratic ridge fit and its single argmin over Dirichlet candidates).")
    regmix_steps: Optional[int] = Field(None, ge=1, description="method=regmix: training steps of each proxy (default: "
                                        "warmup_steps + episodes x (probe_steps + free_steps)); `tandem compare` sets "
                                        "it so the whole sweep spends the common budget.")
    weights: Optional[dict[str, float]] = Field(None, description="method=fixed: the mixture to use.")
    episodes: int = Field(20, ge=1, description="T: episodes of (sync, probe, update, free steps).")
    probe_steps: int = Field(5, ge=1, description="K: probing steps of both twins per episode.")
    free_steps: int = Field(10, ge=0, description="E: proxy steps on the new mixture after each update.")
    warmup_steps: int = Field(0, ge=0, description="Proxy steps on the initial mixture before the first episode.")
    gamma: float = Field(1.0, gt=0, description="Penalty weight: the reference steps on grad L_val + gamma * grad L_train "
                         "(method=tandem: 10 where the config is silent; doremi and doge: 1).")
    eta_alpha: Optional[float] = Field(
        None, gt=0,
        description="Step size of the mixture update. update=standardized: the spread of a log-weight that pure noise "
        "leaves after all episodes (a consistent signal moves it about eta_alpha times its t-statistic; default "
        "0.08); eg/projected: multiplies the raw Delta (default 1.0; DoReMi and ODM: their published steps).",
    )
    update: Literal["standardized", "eg", "projected"] = Field(
        "eg",
        description="`standardized` (TANDEM's default): mirror descent on each episode's centred Delta divided by "
        "its own root mean square over domains, step eta_alpha / sqrt(episodes), so the step does not depend on "
        "Delta's scale and noise moves the mixture only as a random walk; `eg`: exponentiated gradient on the raw "
        "Delta; `projected`: Euclidean projection onto the simplex.",
    )
    smoothing: float = Field(0.0, ge=0, le=1, description="After each update mix toward uniform: alpha <- (1-c) alpha + c/M.")
    floor: float = Field(0.0, ge=0, description="Minimum weight per domain after each update (must be < 1/M).")
    sampling: Literal["resample", "reweight"] = Field(
        "resample", description="`resample`: draw batches by alpha; `reweight`: draw uniformly, weight the loss by alpha."
    )
    target: Union[Literal["uniform"], dict[str, float], list[str]] = Field(
        "uniform", description="Validation target: `uniform` over domains, {domain: weight}, or a list of target domains."
    )
    sync: bool = Field(True, description="Reset the reference to the proxy every episode (switch off only as an ablation).")
    restart: bool = Field(
        False,
        description="method=tandem: each episode both twins start again from a fresh initialisation (seeded by the "
        "run's seed and the episode) and train probe_steps on the episode's mixture, so Delta is the gap over a whole "
        "run, not over the last few steps of one long run; with probe_steps = train.steps that run is the target's "
        "horizon. No warm-up or free steps (free_steps and warmup_steps must be 0 or left unset).",
    )
    eval_sequences: int = Field(8, ge=1, description="Held sequences per domain (from the train split) on which Delta is measured.")
    held_out_fraction: float = Field(
        0.0, ge=0, lt=0.5,
        description="Share of each domain's train split kept out of stage one's training and used only to measure "
        "Delta (0, the default: Delta on the rows the proxy trains on, where the penalty's gradient is, see "
        "ALGORITHM.md). Stage two still trains on the whole split.",
    )
    valid_fraction: float = Field(
        0.5, gt=0, lt=1,
        description="Validation rows of each reference step, as a share of the batch size; the reference also "
        "steps on all of the proxy's rows, so a reference step costs (1 + valid_fraction) proxy steps.",
    )
    max_epochs: Union[None, float, dict[str, float]] = Field(
        None,
        description="Most epochs of a domain's train split the target may see at its budget (train.steps x "
        "train.batch_size rows) under a learned mixture: a number for every domain, {domain: epochs} for some, or "
        "null for none (the default). The recommendation is projected onto the mixtures that respect the caps "
        "(weights.json says which bind). Static methods (uniform, natural, fixed) are not capped. Whether a cap "
        "helps depends on the target: `tandem run --check-seeds` scores a 4-epoch cap as one of its candidates.",
    )
    horizon: Literal["target", "proxy"] = Field(
        "proxy",
        description="`target`: the proxy trains on the first (its rows / the target's rows) of each domain's train "
        "split, so that at a given mixture it repeats every domain as many epochs as the target will (horizon "
        "matching: a proxy that never repeats a small domain cannot see the target overfit it); `proxy`: the "
        "whole split (the proxy's own horizon). Loop and online methods.",
    )
    initial: Union[Literal["uniform", "natural"], dict[str, float]] = Field("uniform", description="Starting mixture.")
    report: Literal["average", "final"] = Field(
        "average", description="Which mixture `domain_weights` recommends: the mean over episodes or the last one "
        "(TANDEM's default: under its step the last mixture holds all the evidence, the mean only part of it).")
    proxy: Union[Literal["target"], ModelConfig] = Field(
        default_factory=lambda: ModelConfig(preset="tiny"),
        description="The proxy/reference model, or `target`: the target's own architecture (`model`), so the proxy "
        "memorises a small, repeated domain as the target will (with mixer.horizon=target it also repeats it as "
        "often); costs stage one the target's step time.")
    lr: Optional[float] = Field(None, gt=0, description="Twins' learning rate (default: train.lr).")
    checkpoint_interval: int = Field(1, ge=0, description="Episodes between checkpoints of the twins (0 = never).")
    reference_mixture: Literal["uniform", "natural"] = Field(
        "uniform", description="method=doremi: the mixture the frozen reference is trained on."
    )
    reference_steps: Optional[int] = Field(
        None, ge=1, description="method=doremi: steps of the frozen reference (default: the proxy's step count)."
    )
    batch_size: Optional[int] = Field(None, ge=1, description="Twins' batch size (default: train.batch_size).")
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop",
        description="A NaN or infinite Delta (or a reference step with a non-finite gradient): `stop` ends the run "
        "with a message and keeps the last episode checkpoint for --resume; `skip` keeps that episode's mixture, "
        "logs it and goes on.",
    )
    compile: Optional[bool] = Field(None, description="torch.compile the proxy and reference (default: train.compile).")
    fsdp: Optional[bool] = Field(None, description="Shard the proxy and reference across ranks with FSDP2 (default: train.fsdp).")
    odm: ODMConfig = Field(default_factory=ODMConfig, description="ODM's settings.")
    aioli: AioliConfig = Field(default_factory=AioliConfig, description="Aioli's settings.")
    skillit: SkillItConfig = Field(default_factory=SkillItConfig, description="Skill-It's settings.")
    ado: ADOConfig = Field(default_factory=ADOConfig, description="ADO's settings.")

    @model_validator(mode="after")
    def _restart(self) -> "MixerConfig":
        if self.restart:
            for f in ("free_steps", "warmup_steps"):
                if f in self.model_fields_set and getattr(self, f) != 0:
                    raise ValueError(f"{f}: with restart: true every episode is a whole run from initialisation, so "
                                     f"there are no {f.replace('_', ' ')}; set {f}: 0 or leave it unset")
        return self

    @field_validator("max_epochs")
    @classmethod
    def _max_epochs(cls, v):
        values = v.values() if isinstance(v, dict) else [] if v is None else [v]
        for x in values:
            if not (x > 0 and x != float("inf")):
                raise ValueError(f"max_epochs must be positive and finite, got {x}")
        return v

    @field_validator("target")
    @classmethod
    def _target(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("target domain list is empty")
        return v


class StagesConfig(_Section):
    """Two-stage training: pretrain on a learned mixture of text domains, then fine-tune on SFT domains."""

    pretrain: list[str] = Field(
        description="Stage one: the domains whose mixture the mixer learns and the target is pretrained on."
    )
    sft: list[str] = Field(
        description="Stage two: the domains the pretrained target is fine-tuned on; their validation examples are "
        "stage one's validation data (the outer objective)."
    )
    sft_steps: int = Field(50, ge=1, description="Fine-tuning steps of the target after pretraining.")
    sft_lr: float = Field(3e-4, gt=0, description="Peak learning rate of fine-tuning (warm-up and cosine as in train).")
    sft_weights: Union[Literal["uniform", "natural"], dict[str, float]] = Field(
        "uniform", description="Fixed mixture of the fine-tuning domains."
    )

    @model_validator(mode="after")
    def _disjoint(self) -> "StagesConfig":
        if not self.pretrain or not self.sft:
            raise ValueError("stages.pretrain and stages.sft each need at least one domain")
        both = sorted(set(self.pretrain) & set(self.sft))
        if both:
            raise ValueError(f"domain(s) {both} are in both stages.pretrain and stages.sft")
        return self


class Config(_Section):
    seed: int = Field(0, ge=0, lt=2**31, description="Seed for data splits, sampling, initialisation.")
    data: DataConfig
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig, description="The target model (stage two).")
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    mixer: MixerConfig = Field(default_factory=MixerConfig)
    methods: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-method mixer overrides for `tandem compare`, e.g. {doremi: {eta_alpha: 0.5}}.",
    )
    stages: Optional[StagesConfig] = Field(
        None, description="Two-stage training (pretrain, then sft); absent for single-stage runs."
    )

    # Folder the config file lives in; relative paths are resolved against it.
    base_dir: str = Field(".", exclude=True, description="Set by the loader.")
    # The file it was read from (None for a dict): an input like the sources, never written into.
    config_file: Optional[str] = Field(None, exclude=True, description="Set by the loader.")

    @model_validator(mode="after")
    def _groups(self) -> "Config":
        # Before the cross checks, which name the domains a group makes.
        if any(d.domain_field is not None for d in self.data.domains.values()):
            self.data.domains = expand_groups(self.data.domains, self.base_dir, self.data)
        return self

    @model_validator(mode="after")
    def _methods(self) -> "Config":
        # Each `methods.<name>` names a method and only mixer fields: a typo (`doremy`, `eta_alhpa`) is an error,
        # never a section silently ignored.
        for name, section in self.methods.items():
            if name not in METHOD_NAMES:
                close = difflib.get_close_matches(name, METHOD_NAMES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"methods: unknown method {name!r}{hint}; expected some of {', '.join(METHOD_NAMES)}")
            unknown = sorted(set(section) - set(MixerConfig.model_fields))
            if unknown:
                close = difflib.get_close_matches(unknown[0], list(MixerConfig.model_fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"methods.{name}: unknown mixer field {unknown[0]!r}{hint}")
        return self

    @model_validator(mode="after")
    def _proxy(self) -> "Config":
        # mixer.proxy: target is the target's own architecture, resolved once here so every job sees a model
        if self.mixer.proxy == "target":
            self.mixer.proxy = self.model.model_copy()
        return self

    @model_validator(mode="after")
    def _cross(self) -> "Config":
        names = set(self.data.domains)
        target_only = [d for d, spec in self.data.domains.items() if not spec.has_train]
        if len(target_only) == len(names):
            raise ValueError("data.domains: no domain has a train split; at least one needs `train` (or `source` "
                             "with split.train > 0)")
        for key in ("weights", "initial"):
            self._zero_target_only(key, target_only)
        for label, w in (("mixer.target", self.mixer.target), ("mixer.initial", self.mixer.initial)):
            if isinstance(w, dict):
                check_weights(w, names, label, allow_missing=(label == "mixer.target"))
            elif isinstance(w, list):
                unknown = [d for d in w if d not in names]
                if unknown:
                    raise ValueError(f"{label}: unknown domain(s) {unknown}; expected some of {sorted(names)}")
                if len(set(w)) != len(w):
                    raise ValueError(f"{label}: duplicate domain names {w}")
        if isinstance(self.mixer.max_epochs, dict):
            unknown = sorted(set(self.mixer.max_epochs) - names)
            if unknown:
                raise ValueError(f"mixer.max_epochs: unknown domain(s) {unknown}; expected some of {sorted(names)}")
        if self.mixer.method == "fixed":
            if self.mixer.weights is None:
                raise ValueError("mixer.method=fixed needs mixer.weights")
            check_weights(self.mixer.weights, names, "mixer.weights")
        graph = self.mixer.skillit.graph
        if graph is not None:
            unknown = sorted((set(graph) | {b for row in graph.values() for b in row}) - names)
            if unknown:
                raise ValueError(f"mixer.skillit.graph: unknown skill(s) {unknown}; expected domains of {sorted(names)}")
        trainable = len(names) - len(target_only)
        if self.mixer.floor * trainable >= 1:
            raise ValueError(f"mixer.floor={self.mixer.floor} is too large for {trainable} domains with a train "
                             f"split (need floor < 1/M)")
        for label, m in (("model", self.model), ("mixer.proxy", self.mixer.proxy)):
            if m.preset == "hf" and m.hf_path and self.tokenizer.kind == "bpe":
                # A pretrained model's embeddings belong to its own vocabulary: a freshly trained BPE's ids would
                # index rows that mean other tokens, and training would silently start from a scrambled model.
                raise ValueError(f"{label}.hf_path: a pretrained model needs its own tokenizer, not a freshly trained "
                                 f"BPE (tokenizer.kind=bpe); set tokenizer.kind=hf and tokenizer.path to the model's "
                                 f"folder")
        return self

    def _zero_target_only(self, key: str, target_only: list[str]) -> None:
        """A target-only domain is never trained on: mixer.<key> may leave it out (then it is 0) or give it 0."""
        w = getattr(self.mixer, key)
        if not isinstance(w, dict):
            return
        for d in target_only:
            if w.get(d, 0.0) != 0:
                raise ValueError(f"mixer.{key}.{d}: data.domains.{d} has no train split (a target-only domain), so "
                                 f"its weight must be 0")
        if any(d not in w for d in target_only):
            setattr(self.mixer, key, {**w, **{d: 0.0 for d in target_only}})

    @property
    def domain_names(self) -> list[str]:
        return list(self.data.domains)

    def resolve(self, p: str) -> Path:
        path = Path(p).expanduser()
        # realpath, not Path.resolve: a symlink loop stays a path (refused where it is used), not a RuntimeError
        return Path(os.path.realpath(path if path.is_absolute() else Path(self.base_dir) / path))

    def input_paths(self) -> list[Path]:
        """Every file or folder the config reads (the config file itself, sources, tokenizer, models, chat template),
        resolved: tandem never writes into any of them (tandem.io.refuse_overlap)."""
        from tandem.data.readers import expand_sources

        out: list[Path] = [Path(self.config_file)] if self.config_file else []
        base = Path(self.base_dir)
        for name, spec in self.data.domains.items():
            for key in ("train", "valid", "test", "source"):
                value = getattr(spec, key, None)
                if value is not None:
                    out += expand_sources(value, base, f"data.domains.{name}.{key}")
        if self.data.chat_template not in ("auto", "default"):
            out.append(self.resolve(self.data.chat_template))
        if self.tokenizer.path:
            out.append(self.resolve(self.tokenizer.path))
        for model in (self.model, self.mixer.proxy):
            if isinstance(model, ModelConfig) and model.hf_path:
                out.append(self.resolve(model.hf_path))
        from tandem.io import real_path

        return list(dict.fromkeys(real_path(p) for p in out))

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


def _twice(group: str, name: str) -> InputError:
    return InputError(f"data.domains.{group}: the domain {name!r} is named twice in data.domains (by a group's value "
                      f"and another entry); rename one, a value with domain_values: {{value: name}}")


def _group_domains(group: str, spec: DomainConfig, base_dir: str, data: "DataConfig",
                   taken: set[str] = frozenset()) -> dict[str, DomainConfig]:
    """The domains of one group (a domains entry with `domain_field`): one per value, each a copy of the entry that
    keeps the rows holding its value (`where`), with the splits that value occurs in."""
    from tandem.data.readers import field_values

    label = f"data.domains.{group}"

    def named(values) -> dict:
        names = dict(values) if isinstance(values, dict) else {v: str(v) for v in values}
        for value, name in names.items():
            problem = domain_name_problem(name)
            if problem:
                raise InputError(f"{label}.domain_field: value {value!r} of {spec.domain_field} cannot name a "
                                 f"domain ({problem}); name it with {label}.domain_values: {{{value!r}: a_name, ...}}")
            if name in taken:  # before the scan's result is remembered: refused input writes nothing
                raise _twice(group, name)
        return names

    if spec.domain_values is not None:
        names = named(spec.domain_values)
        found = {v: [s for s in SPLITS if getattr(spec, s) is not None or spec.source is not None] for v in names}
    else:
        found = field_values(spec, base_dir, data, label, check=named)
        names = named(list(found))
    out = {}
    for value, name in names.items():
        splits = found[value]
        keep = {s: (getattr(spec, s) if s in splits else None) for s in SPLITS} if spec.source is None else {}
        out[name] = spec.model_copy(update={**keep, "domain_field": None, "domain_values": None,
                                            "where": {**(spec.where or {}), spec.domain_field: value}})
    return out


def expand_groups(domains: dict[str, DomainConfig], base_dir: str, data: "DataConfig") -> dict[str, DomainConfig]:
    """data.domains with every group replaced by its domains (at its place); a name made twice is an error."""
    out: dict[str, DomainConfig] = {}
    for group, spec in domains.items():
        taken = set(out) | (set(domains) - {group})
        made = _group_domains(group, spec, base_dir, data, taken) if spec.domain_field is not None else {group: spec}
        for name, d in made.items():
            if name in out or (name != group and name in domains):
                raise _twice(group, name)
            out[name] = d
    if not out:
        raise InputError("data.domains: the groups (domain_field) found no values, so there is no domain")
    return out


def check_weights(w: Any, names: set[str] | list[str], label: str, allow_missing: bool = False) -> dict[str, float]:
    """Validate a {domain: weight} mapping: finite, non-negative, known names, sums to 1 (within 1e-6); raises
    InputError (a ValueError) naming `label`."""
    if not isinstance(w, dict) or not w:
        raise InputError(f"{label}: expected a mapping of domain name to weight")
    names = set(names)
    unknown = sorted(set(w) - names)
    if unknown:
        raise InputError(f"{label}: unknown domain(s) {unknown}; expected {sorted(names)}")
    missing = sorted(names - set(w))
    if missing and not allow_missing:
        raise InputError(f"{label}: missing domain(s) {missing}; every domain needs a weight")
    out = {}
    for k, v in w.items():
        if not _finite_number(v) or v < 0:
            raise InputError(f"{label}.{k}: expected a finite non-negative number, got {v!r}")
        out[k] = float(v)
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        raise InputError(f"{label}: weights must sum to 1, got {total:.8g}")
    return out


def _finite_number(v) -> bool:
    from tandem.schema import NUM

    return NUM.test(v)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML) reads `1e-3` and `1e30` as strings (its floats need a dot); YAML 1.2, and everyone writing a
# learning rate, reads them as numbers. With strict types a string would be refused, so the loader reads them as
# floats; a quoted '1e-3' stays a string.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


# Anchors and aliases are YAML (and welcome); what they expand to is bounded, so a few lines cannot ask for a
# billion values (the "billion laughs" document).
MAX_YAML_VALUES = 1_000_000


def _expanded_size(node, memo: dict) -> int:
    key = id(node)
    if key not in memo:
        memo[key] = 1  # a node that refers to itself counts once
        if isinstance(node, yaml.SequenceNode):
            memo[key] = 1 + sum(_expanded_size(n, memo) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            memo[key] = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    return memo[key]


def parse_yaml(text: str):
    """YAML as tandem reads it: safe, duplicate keys refused, merge keys and anchors supported with their
    expansion bounded; PyYAML's construction errors (an impossible date, nesting too deep) come out as
    yaml.YAMLError so callers handle one exception type."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_VALUES:
            raise yaml.YAMLError(f"anchors and aliases expand to more than {MAX_YAML_VALUES:,} values")
        return loader.construct_document(node)
    except yaml.YAMLError:
        raise
    except (ValueError, TypeError, RecursionError) as err:
        raise yaml.YAMLError(f"cannot read value: {err}") from None
    finally:
        loader.dispose()


def _set_dotted(d: dict, key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    if not all(parts):
        raise InputError(f"{source}: bad override key {key!r}; expected dotted names like train.steps")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        elif not isinstance(nxt, dict):
            raise InputError(f"{source}: cannot set {key!r}: {p!r} is not a section")
        cur = nxt
    cur[parts[-1]] = value


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to a raw config dict."""
    for ov in overrides or []:
        if "=" not in ov:
            raise InputError(f"--set {ov!r}: expected KEY=VALUE, e.g. train.steps=200")
        key, val = ov.split("=", 1)
        try:
            value = parse_yaml(val) if val.strip() else ""
        except yaml.YAMLError:
            value = val
        _set_dotted(raw, key.strip(), value, f"--set {ov!r}")
    return raw


def _fields_at(loc: tuple) -> list[str]:
    """Known field names at a location, for 'did you mean' hints."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            if model is DataConfig and part == "domains":
                model = DomainConfig
                continue
            if isinstance(model, type) and issubclass(model, DomainConfig):
                continue
            return []
        ann = fields[part].annotation
        # a union of a literal and a section (mixer.proxy: target or a model) has the section's fields
        members = [ann, *typing.get_args(ann)]
        model = next((m for m in members if isinstance(m, type) and issubclass(m, BaseModel)), None)
        if model is None:
            if part == "domains":
                model = DomainConfig
            else:
                return []
    return list(getattr(model, "model_fields", {}))


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line: the file, the dotted field, what was expected."""
    errors = err.errors()

    def clean(loc: tuple) -> tuple:
        # pydantic tags union members and validators in the location ("literal['uniform','natural']"); drop them
        return tuple(x for x in loc if not (isinstance(x, str) and ("[" in x or "(" in x)))

    # A union field fails once per member; the deepest location names the member the value was meant for
    # (a NaN inside a {domain: weight} map, not "expected 'uniform'").
    first = clean(errors[0]["loc"])
    e = max((x for x in errors if clean(x["loc"])[:len(first)] == first), key=lambda x: len(clean(x["loc"])))
    loc = clean(e["loc"])
    dotted = ".".join(str(x) for x in loc)
    if e["type"] == "extra_forbidden":
        hint = difflib.get_close_matches(str(loc[-1]), [f for f in _fields_at(loc) if f not in LOADER_FIELDS], n=1)
        msg = f"{source}: unknown key {dotted!r}" + (f" (did you mean '{hint[0]}'?)" if hint else "")
    elif e["type"] == "missing":
        msg = f"{source}: missing required field {dotted!r}"
    else:
        text = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        got_s = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
        msg = f"{source}: {dotted + ': ' if dotted else ''}{text}{got_s}"
    extra = len(err.errors()) - 1
    return msg + (f" [+{extra} more error(s)]" if extra else "")


# Config's fields the loader sets (Config.base_dir, Config.config_file): never a user's key, a suggestion or a setting.
LOADER_FIELDS = ("base_dir", "config_file")


def config_from_dict(raw: dict, base_dir: str | Path = ".", source: str = "config",
                     config_file: str | None = None) -> Config:
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a YAML mapping at the top level")
    for loader_key in LOADER_FIELDS:
        if loader_key in raw:
            raise InputError(f"{source}: unknown key {loader_key!r}")
    try:
        return Config(**raw, base_dir=str(base_dir), config_file=config_file)
    except ValidationError as err:
        raise InputError(format_validation_error(err, source)) from None
    except TypeError as err:
        raise InputError(f"{source}: {err}") from None
    except InputError as err:  # from reading a group's sources (domain_field)
        raise InputError(f"{source}: {err}") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override and validate a config file; raises InputError naming the file and field on any problem."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or (str(err) if type(err) is yaml.YAMLError else "invalid YAML")
        raise InputError(f"{path}:{where}: invalid YAML: {problem}") from None
    if raw is None:
        raise InputError(f"{path}: empty config file; expected at least data.domains")
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a YAML mapping at the top level")
    raw = apply_overrides(raw, overrides)
    return config_from_dict(raw, base_dir=path.resolve().parent, source=str(path), config_file=str(path.resolve()))
