#!/usr/bin/env bash
# Set up and run the test suite (what CI runs). Slow tests are excluded; run them with `-m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_browser.sh  # headless Chromium for the HTML report test (tests/report)
python -m pytest -m "not slow" "$@"
