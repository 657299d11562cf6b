#!/usr/bin/env bash
# Install tandem (editable, with test extras) and the offline text sources of the default corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[dev]"
bash scripts/install_corpus_sources.sh
