"""The Python API: the CLI's jobs as functions. Each takes a config (a path, a dict shaped like the YAML file, or a
`tandem.config.Config`) and an
output folder, and returns what the job wrote (the JSON it leaves in the folder), so a notebook or a pipeline gets
the same results, files and checks as `tandem optimize`, `tandem train` and `tandem recommend`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Union

from tandem.config import Config, apply_overrides, config_from_dict, load_config

ConfigLike = Union[str, Path, dict, Config]


def _config(config: ConfigLike, overrides: list[str] | None) -> Config:
    if isinstance(config, Config):
        if overrides:
            raise ValueError("overrides apply to a config file or dict; change a Config object with model_copy "
                             "instead")
        return config
    if isinstance(config, dict):
        # Relative paths in a dict have no file to be relative to: they are read from the working directory.
        import copy

        return config_from_dict(apply_overrides(copy.deepcopy(config), overrides), base_dir=Path.cwd())
    if not isinstance(config, (str, Path)):
        raise TypeError(f"config: expected a path, a dict or a tandem.config.Config, got {type(config).__name__}")
    return load_config(config, overrides)


def _data(cfg: Config, quiet: bool):
    from tandem.data.cache import prepare_data

    return prepare_data(cfg, log=(lambda s: None) if quiet else print, progress=not quiet)


def optimize(config: ConfigLike, out: Union[str, Path], overrides: list[str] | None = None, resume: bool = False,
             force: bool = False, quiet: bool = True) -> dict:
    """Stage one (`tandem optimize`): learn the mixture; returns OUT/weights.json (recommended `domain_weights`,
    their `interval` and `within_noise`, `epochs`, ...)."""
    from tandem.pipeline.run import optimize_job, validate
    from tandem.runs import release

    cfg, out = _config(config, overrides), Path(out)
    cfg = validate(cfg)
    data = _data(cfg, quiet)
    try:
        optimize_job(cfg, data, out, resume, force, quiet, (lambda s: None) if quiet else print)
    finally:
        release()
    return json.loads((out / "weights.json").read_text(encoding="utf-8"))


def train(config: ConfigLike, out: Union[str, Path], weights: Union[str, dict] = "uniform",
          overrides: list[str] | None = None, resume: bool = False, force: bool = False, quiet: bool = True) -> dict:
    """Stage two (`tandem train`): train `model` on a mixture (a {domain: weight} dict, a weights file, `uniform` or
    `natural`) and evaluate it per domain; returns OUT/eval.json."""
    from tandem.config import check_weights
    from tandem.data.cache import natural_weights
    from tandem.mixing.weights import resolve_weights
    from tandem.pipeline.common import removed_on_input_error
    from tandem.pipeline.stage_two import train_and_evaluate
    from tandem.runs import claim, release

    cfg, out = _config(config, overrides), Path(out)
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
              steps: int | None = None, overrides: list[str] | None = None, quiet: bool = True) -> dict:
    """The target-scale check (`tandem recommend`): {label: mixture} scored by short trainings of the target over
    paired seeds on validation loss; returns the report (also OUT/recommend.json)."""
    from tandem.config import check_weights
    from tandem.data.cache import natural_weights
    from tandem.io import write_json
    from tandem.mixing.recommend import check_candidates
    from tandem.mixing.weights import as_array, resolve_weights

    cfg, out = _config(config, overrides), Path(out)
    data = _data(cfg, quiet)
    arrays = {k: as_array(check_weights(v, data.domains, f"candidates.{k}") if isinstance(v, dict)
                          else resolve_weights(str(v), data.domains, natural_weights(data)), data.domains)
              for k, v in candidates.items()}
    report = check_candidates(cfg, data, arrays, seeds, steps or max(1, cfg.train.steps // 10),
                              log=(lambda s: None) if quiet else print)
    write_json(out / "recommend.json", report)
    return report


def compare(config: Union[str, Path], out: Union[str, Path], methods: list[str] | tuple[str, ...] =
            ("uniform", "natural", "doremi", "doge", "tandem"), seeds: int = 1, overrides: list[str] | None = None,
            quiet: bool = True) -> dict:
    """Several methods side by side over paired seeds (`tandem compare`), every method on the same stage-one budget;
    returns OUT/results.json (one record per method and seed: weights, test and valid losses, stage-one tokens and
    time). Finished runs in OUT are kept, so a call after an interruption continues."""
    from tandem.pipeline.compare import compare_job

    if isinstance(config, Config):
        raise ValueError("compare reads its config from a file (each method's run is written next to it)")
    doc, _, warnings = compare_job(load_config(config, overrides), Path(out), list(methods), seeds, quiet,
                                   (lambda s: None) if quiet else print, str(config))
    for line in warnings:  # a method whose stage one did not spend the equal budget
        print(line, file=sys.stderr)
    return doc

