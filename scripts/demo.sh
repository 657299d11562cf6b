#!/usr/bin/env bash
# The main job on the bundled default data: set up, build the corpus, learn the mixture with TANDEM on a
# tiny proxy, train the target on it and on uniform weights, and print both side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
tandem corpus --out data/default
# --resume: a second run of this script continues (or just reprints) the same run instead of refusing the folder.
tandem run configs/default.yaml --out runs/default --resume "$@"
