#!/usr/bin/env bash
# The runs behind BENCHMARKS.md, "Peers as their authors run them": every method on equal stage-one FLOPs, the online
# methods online (steering the target's own training), 5 paired seeds. From the repository root with the scenario
# data prepared (`python -m benchmarks scenarios --prepare-only`, `tandem ecommerce --out data/ecommerce --seed 0`);
# `bash benchmarks/peers_released.sh restricted`, `... oracle`, `... ecommerce` (two at a time on two cores),
# `... default` (about three hours on two cores), then
# `python -m benchmarks paired runs/peers-SCENARIO` for each table.
set -euo pipefail
cd "$(dirname "$0")/.."
T="${TANDEM:-tandem}"
M=uniform,natural,doremi,doge,tandem,odm,ado,skillit,aioli,regmix
case "$1" in
    restricted|oracle) $T compare "benchmarks/configs/$1.yaml" --methods $M --seeds 5 -q --out "runs/peers-$1" ;;
    ecommerce) $T compare benchmarks/configs/sft-ecommerce.yaml --methods $M --seeds 5 -q --out runs/peers-ecommerce ;;
    default) $T compare configs/default.yaml --methods $M --seeds 5 -q --out runs/peers-default ;;
    *) echo "usage: $0 restricted|oracle|ecommerce|default" >&2; exit 2 ;;
esac
