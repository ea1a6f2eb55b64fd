#!/usr/bin/env bash
# The main job, end to end, on this host (as root): installs what it needs, then runs
# `nodetap demo` (demo service, real clients, BPF capture, forwarder, export, replay, report).
# Extra arguments go to `nodetap demo` (for example: scripts/demo.sh --workdir ./demo-out).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh"
exec "$here/.venv/bin/nodetap" demo "$@"
