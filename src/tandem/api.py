"""The Python API: the CLI's jobs as functions. Each takes a config (a path, a dict shaped like the YAML file, or a
`tandem.config.Config`) and an
output folder, and returns what the job wrote (the JSON it leaves in the folder), so a notebook or a pipeline gets
the same results, files and checks as `tandem optimize`, `tandem train` and `tandem recommend`.

Relative paths in a config (data files, cache_dir, tokenizer, chat template) resolve one way, whatever form the
config takes: against the config's folder. A file's folder is where the file lies; a dict's is `base_dir` (default:
the working directory), so a dict read from a YAML file and given `base_dir` = that file's folder is the same
config as the file. `base_dir` applies only to a dict (a file's base is its own folder; a Config's paths are
already resolved)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Union

from tandem.config import Config, apply_overrides, config_from_dict, load_config
from tandem.errors import InputError

ConfigLike = Union[str, Path, dict, Config]


def _config(config: ConfigLike, overrides: list[str] | None, base_dir: Union[str, Path, None] = None) -> Config:
    if base_dir is not None and not isinstance(config, dict):
        raise InputError("base_dir: applies to a config given as a dict (a file's relative paths resolve against its "
                         "own folder; a Config's are already resolved)")
    if isinstance(config, Config):
        if overrides:
            raise InputError("overrides apply to a config file or dict; change a Config object with model_copy "
                             "instead")
        return config
    if isinstance(config, dict):
        # The dict's folder is base_dir (default: the working directory), as a file's is the folder it lies in.
        import copy

        base = Path.cwd() if base_dir is None else Path(base_dir)
        if not base.is_dir():
            raise InputError(f"base_dir: {base} is not a folder")
        return config_from_dict(apply_overrides(copy.deepcopy(config), overrides), base_dir=base.resolve())
    if not isinstance(config, (str, Path)):
        raise InputError(f"config: expected a path, a dict or a tandem.config.Config, got {type(config).__name__}")
    return load_config(config, overrides)


def _data(cfg: Config, quiet: bool):
    from tandem.data.cache import prepare_data

    return prepare_data(cfg, log=(lambda s: None) if quiet else print, progress=not quiet)


def optimize(config: ConfigLike, out: Union[str, Path], overrides: list[str] | None = None, resume: bool = False,
             force: bool = False, quiet: bool = True, base_dir: Union[str, Path, None] = None) -> dict:
    """Stage one (`tandem optimize`): learn the mixture; returns OUT/weights.json (recommended `domain_weights`,
    their `interval` and `within_noise`, `epochs`, ...)."""
    from tandem.io import check_writable_dir
    from tandem.pipeline.run import optimize_job, validate
    from tandem.runs import release

    cfg = _config(config, overrides, base_dir)
    out = check_writable_dir(Path(out))  # as `tandem optimize`: an OUT that is a file or unwritable is bad input
    cfg = validate(cfg)
    data = _data(cfg, quiet)
    try:
        optimize_job(cfg, data, out, resume, force, quiet, (lambda s: None) if quiet else print)
    finally:
        release()
    return json.loads((out / "weights.json").read_text(encoding="utf-8"))


def train(config: ConfigLike, out: Union[str, Path], weights: Union[str, dict] = "uniform",
          overrides: list[str] | None = None, resume: bool = False, force: bool = False, quiet: bool = True,
          online: bool = False, base_dir: Union[str, Path, None] = None) -> dict:
    """Stage two (`tandem train`): train `model` on a mixture (a {domain: weight} dict, a weights file, `uniform` or
    `natural`) and evaluate it per domain; returns OUT/eval.json. `online=True` (`tandem train --online`): the
    config's online method (odm, ado, skillit, aioli) steers the mixture during this training instead."""
    from tandem.config import check_weights
    from tandem.data.cache import natural_weights
    from tandem.errors import InputError
    from tandem.io import check_writable_dir
    from tandem.mixing.weights import resolve_weights
    from tandem.pipeline.common import removed_on_input_error
    from tandem.pipeline.stage_two import train_and_evaluate
    from tandem.runs import claim, release

    cfg = _config(config, overrides, base_dir)
    out = check_writable_dir(Path(out))  # as `tandem train`
    if online:
        from tandem.pipeline.stage_two import online_mixer, train_online_and_evaluate

        if not (isinstance(weights, str) and weights == "uniform"):  # as `tandem train --online --weights`
            raise InputError("online: the online method (mixer.method) chooses the mixture as training goes; "
                             "leave out weights")
        online_mixer(cfg, len(cfg.data.domains))  # an online method, before any work
        data = _data(cfg, quiet)
        try:
            with removed_on_input_error(out):
                claim(out, cfg, data, "train --online", resume, force)
                return train_online_and_evaluate(cfg, data, out, resume, quiet)
        finally:
            release()
    data = _data(cfg, quiet)
    w = (check_weights(weights, data.domains, "weights") if isinstance(weights, dict)
         else resolve_weights(str(weights), data.domains, natural_weights(data)))
    try:
        with removed_on_input_error(out):
            claim(out, cfg, data, "train", resume, force)
            return train_and_evaluate(cfg, data, w, out, resume, quiet)
    finally:
        release()


def recommend(config: ConfigLike, out: Union[str, Path], candidates: dict[str, Union[str, dict]], seeds: int = 3,
              steps: int | None = None, overrides: list[str] | None = None, force: bool = False, quiet: bool = True,
              log=None, base_dir: Union[str, Path, None] = None) -> dict:
    """The target-scale check (`tandem recommend`): {label: mixture} (a {domain: weight} dict, a weights file,
    `uniform` or `natural`) scored by short trainings of the target over paired seeds on validation loss; writes
    OUT/recommend.json and OUT/weights.json (the recommended mixture) and returns the report. The CLI runs this
    function: the same checks, the same files, the same errors (tandem.errors.InputError)."""
    from tandem.config import check_weights
    from tandem.data.cache import natural_weights
    from tandem.errors import InputError
    from tandem.io import check_writable_dir, refuse_overlap, write_json
    from tandem.mixing.recommend import check_candidates, default_steps
    from tandem.mixing.weights import as_array, resolve_weights
    from tandem.pipeline.common import removed_on_input_error
    from tandem.runs import claim, release

    cfg, out = _config(config, overrides, base_dir), Path(out)
    out = check_writable_dir(out)
    if cfg.stages is not None:
        where = f"{config}: " if isinstance(config, (str, Path)) else ""
        raise InputError(f"{where}stages: tandem recommend scores single-stage mixtures; a two-stage config would mix the "
                         "SFT tasks into pretraining")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2:
        raise InputError(f"--seeds: expected >= 2 (a paired standard error needs two seeds), got {seeds!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise InputError(f"--steps: expected >= 1, got {steps!r}")
    if not isinstance(candidates, dict) or not candidates:
        raise InputError("--candidates: expected at least one candidate (weights files, uniform or natural)")
    for label, spec in candidates.items():  # every candidate checked before any work
        if isinstance(spec, dict):
            check_weights(spec, cfg.domain_names, f"candidates.{label}")
        elif str(spec) not in ("uniform", "natural"):
            resolve_weights(str(spec), cfg.domain_names)
    refuse_overlap(out, cfg.input_paths())
    log = log or ((lambda s: None) if quiet else print)
    data = _data(cfg, quiet)
    natural = natural_weights(data)
    arrays = {k: as_array(check_weights(v, data.domains, f"candidates.{k}") if isinstance(v, dict)
                          else resolve_weights(str(v), data.domains, natural), data.domains)
              for k, v in candidates.items()}
    try:
        with removed_on_input_error(out):
            claim(out, cfg, data, "recommend", False, force)
            report = check_candidates(cfg, data, arrays, seeds, steps or default_steps(cfg), log=log)
            write_json(out / "recommend.json", report)
            best = report["candidates"][report["recommended"]]["weights"]
            write_json(out / "weights.json", {"domain_weights": best, "recommended": report["recommended"],
                                              "verdict": report["verdict"]})
    finally:
        release()
    return report


def compare(config: ConfigLike, out: Union[str, Path], methods: list[str] | tuple[str, ...] =
            ("uniform", "natural", "doremi", "doge", "tandem"), seeds: int = 1, overrides: list[str] | None = None,
            quiet: bool = True, online: bool = True, base_dir: Union[str, Path, None] = None) -> dict:
    """Several methods side by side over paired seeds (`tandem compare`), every method on the same stage-one budget;
    returns OUT/results.json (one record per method and seed: weights, test and valid losses, stage-one tokens and
    time). Finished runs in OUT are kept, so a call after an interruption continues."""
    from tandem.io import check_writable_dir
    from tandem.pipeline.compare import compare_job
    from tandem.runs import release

    cfg = _config(config, overrides, base_dir)
    where = str(config) if isinstance(config, (str, Path)) else "config"
    try:
        doc, _, warnings = compare_job(cfg, check_writable_dir(Path(out)), list(methods), seeds, quiet,
                                       (lambda s: None) if quiet else print, where, online=online)
    finally:
        release()
    for line in warnings:  # a method whose stage one did not spend the equal budget
        print(line, file=sys.stderr)
    return doc
