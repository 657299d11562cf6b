#!/usr/bin/env bash
# The runs behind BENCHMARKS.md, "A proxy that sees what the target sees, with the reach of more episodes" (protocol
# there): S's schedule and episode counts (benchmarks/tandem_short.sh) with the target's own architecture as the
# proxy, repeating each domain as often as the target will. `bash benchmarks/tandem_cs.sh SCENARIO`, or
# `... null SIGNAL_ROOT`.
set -euo pipefail
VARIANT=CS exec bash "$(dirname "$0")/tandem_short.sh" "$@"
