#!/usr/bin/env bash
# Run nodetap's whole test suite, as root, installing what it needs first.
# Extra arguments go to pytest (for example: scripts/test.sh -k http1 -x).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh"
cd "$here"
# The Rust core: format, lints (with and without the PyO3 module), unit tests, bounded fuzzing.
export PATH="$PATH:$HOME/.cargo/bin"
(cd core && cargo fmt --check && cargo clippy -q --all-targets -- -D warnings \
  && cargo clippy -q --all-targets --features python -- -D warnings && cargo test -q >/dev/null)
.venv/bin/ruff check --quiet .
.venv/bin/mypy --no-error-summary
# The layers contract in pyproject.toml: an upward import fails here.
lint_log=$(mktemp)
.venv/bin/lint-imports --no-cache >"$lint_log" 2>&1 || { cat "$lint_log" >&2; rm -f "$lint_log"; exit 1; }
rm -f "$lint_log"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest's exit code 5 means no test ran: that is a failure, not a pass.
if [[ $rc -eq 5 ]]; then echo "test: pytest collected no tests" >&2; exit 1; fi
exit $rc
