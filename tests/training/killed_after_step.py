"""`python -m tandem ...` that dies without cleanup once its learner has taken N steps: a kill at a known point.

Usage (under torchrun or not): python tests/training/killed_after_step.py N COMMAND ARGS...
Every rank takes the same steps, so every rank dies at the same step, as a killed job's ranks do.
"""

import os
import sys

from tandem.training.learner import Learner

KILLED_EXIT = 75
_after = int(sys.argv.pop(1))
_step = Learner.step


def _step_or_die(self, *args, **kwargs):
    if self.step_count >= _after:
        os._exit(KILLED_EXIT)  # no finally blocks, no flushing: like SIGKILL
    return _step(self, *args, **kwargs)


Learner.step = _step_or_die

if __name__ == "__main__":
    from tandem.cli.main import main

    sys.exit(main(sys.argv[1:]))
