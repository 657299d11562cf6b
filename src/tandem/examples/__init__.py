"""Example data that installs offline, built by `tandem corpus`, `tandem ecommerce` and `tandem tasks`.

Not part of the data pipeline (tandem.data reads whatever domains a config names); these builders only write
domains to disk for the demo, the tests' scale and the benchmarks.
"""


def check_build_args(scale: float, tasks, known) -> None:
    """The arguments every example builder shares: a positive size multiplier and task names it knows."""
    if not scale > 0:
        raise ValueError(f"--scale: expected a positive number, got {scale}")
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise ValueError(f"--tasks: unknown task(s) {unknown}; expected some of {', '.join(known)}")
