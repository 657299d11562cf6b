#!/usr/bin/env bash
# The runs behind BENCHMARKS.md, "TANDEM finding the mixture" (protocol there, written before them). From the repository
# root, after `python -m benchmarks scenarios --prepare-only` and `python -m benchmarks transfer --prepare-only`
# (data/bench) and `tandem ecommerce --out data/ecommerce --seed 0`. Two streams fit two cores: run
# `bash benchmarks/tandem_defaults.sh 1` and `bash benchmarks/tandem_defaults.sh 2` side by side, then
# `python -m benchmarks tandem-defaults runs/s7` prints the tables and the two decisions.
set -euo pipefail
cd "$(dirname "$0")/.."
R=runs/s7
# Rows A, B, C and the natural start ran at gamma 1 (the default then); G10 at gamma 10, the default after
# decision 3 (tandem's method default, so no override).
run() { tandem compare "$@" --seeds 5 -q; }
g1() { tandem compare "$@" --set mixer.gamma=1 --seeds 5 -q; }
if [ "${1:-1}" = 1 ]; then
    g1 benchmarks/configs/transfer.yaml --methods uniform,tandem --out $R/transfer
    g1 benchmarks/configs/oracle.yaml --methods uniform,tandem --out $R/oracle
    g1 benchmarks/configs/transfer.yaml --methods tandem --set mixer.proxy=target --set mixer.horizon=target --out $R/transfer-C
    g1 benchmarks/configs/oracle.yaml --methods tandem --set mixer.proxy=target --set mixer.horizon=target --out $R/oracle-C
    g1 benchmarks/configs/transfer.yaml --methods tandem --set mixer.held_out_fraction=0.15 --out $R/transfer-B
    run benchmarks/configs/transfer.yaml --methods tandem --out $R/transfer-G10
else
    g1 benchmarks/configs/restricted.yaml --methods uniform,tandem --out $R/restricted
    g1 benchmarks/configs/sft-ecommerce.yaml --methods uniform,tandem --out $R/ecommerce
    g1 benchmarks/configs/restricted.yaml --methods tandem --set mixer.proxy=target --set mixer.horizon=target --out $R/restricted-C
    g1 benchmarks/configs/sft-ecommerce.yaml --methods tandem --set mixer.proxy=target --set mixer.horizon=target --out $R/ecommerce-C
    g1 benchmarks/configs/restricted.yaml --methods tandem --set mixer.held_out_fraction=0.15 --out $R/restricted-B
    g1 benchmarks/configs/abundant.yaml --methods uniform,tandem --out $R/abundant
    g1 benchmarks/configs/restricted.yaml --methods tandem --set mixer.initial=natural --out $R/restricted-init
    g1 benchmarks/configs/transfer.yaml --methods tandem --set mixer.initial=natural --out $R/transfer-init
    for s in restricted sft-ecommerce oracle abundant; do
        run benchmarks/configs/$s.yaml --methods tandem --out $R/${s#sft-}-G10
    done
fi
