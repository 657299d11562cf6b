#!/usr/bin/env bash
# Install tandem (editable, with test extras) and the offline text sources of the default corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
# The CPU wheel of the tested torch first (pyproject.toml only states the minimum): with it in place, the project's
# install below finds torch satisfied instead of pulling a CUDA build.
if ! python -c "import sys, torch; v = tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(v < (2, 13))" 2>/dev/null; then
    python -m pip install -q "torch==2.13.0"
fi
python -m pip install -q -e ".[dev]"
bash scripts/install_corpus_sources.sh
