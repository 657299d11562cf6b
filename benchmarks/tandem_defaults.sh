#!/usr/bin/env bash
# The runs behind BENCHMARKS.md, "TANDEM finding the mixture" (protocol there, written before them). From the repository
# root, after `python -m benchmarks scenarios --prepare-only` and `python -m benchmarks transfer --prepare-only`
# (data/bench) and `tandem ecommerce --out data/ecommerce --seed 0`. Two streams fit two cores: run
# `bash benchmarks/tandem_defaults.sh 1` and `bash benchmarks/tandem_defaults.sh 2` side by side, then
# `python -m benchmarks tandem-defaults runs/s7` prints the tables and the two decisions.
set -euo pipefail
cd "$(dirname "$0")/.."
R=runs/s7
run() { tandem compare "$@" --seeds 5 -q; }
if [ "${1:-1}" = 1 ]; then
    run benchmarks/configs/transfer.yaml --methods uniform,tandem --out $R/transfer
    run benchmarks/configs/oracle.yaml --methods uniform,tandem --out $R/oracle
    run benchmarks/configs/transfer.yaml --methods tandem --set mixer.proxy=target --set mixer.horizon=target --out $R/transfer-C
    run benchmarks/configs/oracle.yaml --methods tandem --set mixer.proxy=target --set mixer.horizon=target --out $R/oracle-C
    run benchmarks/configs/transfer.yaml --methods tandem --set mixer.held_out_fraction=0.15 --out $R/transfer-B
else
    run benchmarks/configs/restricted.yaml --methods uniform,tandem --out $R/restricted
    run benchmarks/configs/sft-ecommerce.yaml --methods uniform,tandem --out $R/ecommerce
    run benchmarks/configs/restricted.yaml --methods tandem --set mixer.proxy=target --set mixer.horizon=target --out $R/restricted-C
    run benchmarks/configs/sft-ecommerce.yaml --methods tandem --set mixer.proxy=target --set mixer.horizon=target --out $R/ecommerce-C
    run benchmarks/configs/restricted.yaml --methods tandem --set mixer.held_out_fraction=0.15 --out $R/restricted-B
    run benchmarks/configs/abundant.yaml --methods uniform,tandem --out $R/abundant
    run benchmarks/configs/restricted.yaml --methods tandem --set mixer.initial=natural --out $R/restricted-init
    run benchmarks/configs/transfer.yaml --methods tandem --set mixer.initial=natural --out $R/transfer-init
fi
