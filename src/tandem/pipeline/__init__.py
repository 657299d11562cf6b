"""Jobs that run whole stages, shared by the CLI (tandem.cli) and the Python API (tandem.api):

- `run.optimize_job`: stage one (the mixture), for a two-stage config the pretraining mixture validated on the tasks;
- `stage_two.train_and_evaluate`: the target on a mixture, saved, evaluated per domain;
- `run.run_job`: stage one, the optional target-scale check, stage two on the learned mixture and the baselines;
- `two_stage.run_two_stage`: the same for a two-stage config (pretrain, fine-tune, evaluate);
- `compare.compare_job`: every method over paired seeds on the same stage-one budget.

The layers below (data, models, training, evaluation, report, mixing) never import from here.
"""
