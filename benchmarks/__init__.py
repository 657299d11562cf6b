"""Benchmarks of the tandem package (not part of the installed package; run from the repository root).

    python -m benchmarks speed [--quick]

See BENCHMARKS.md at the repository root for what each benchmark measures and the recorded results.
"""
