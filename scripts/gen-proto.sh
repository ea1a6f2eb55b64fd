#!/usr/bin/env bash
# Regenerate the Python stubs of proto/ into nodetap/v1/ (committed; a test checks they match).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py="${PYTHON:-$here/.venv/bin/python}"
out="${1:-$here}"
cd "$here/proto"
"$py" -m grpc_tools.protoc -I . --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" nodetap/v1/*.proto
