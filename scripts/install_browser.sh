#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the HTML report test (tests/report). Idempotent: does nothing
# when a chromium binary is already on PATH; never fails the caller (the test then reports what is missing).
set -uo pipefail
for b in chromium chromium-browser; do
  if command -v "$b" >/dev/null 2>&1; then
    exit 0
  fi
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install_browser.sh: not root and no sudo; install chromium yourself (apt-get install -y chromium)" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null 2>&1 || true
if ! $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 \
    || echo "install_browser.sh: could not install chromium from apt; the HTML report browser test will fail" >&2
fi
exit 0
