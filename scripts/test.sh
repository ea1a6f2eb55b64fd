#!/usr/bin/env bash
# Run nodetap's whole test suite, as root, installing what it needs first.
# Extra arguments go to pytest (for example: scripts/test.sh -k http1 -x).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh"
cd "$here"
# The Kubernetes lab's server binaries (tests/k8s_lab): built from Debian's source once per
# machine and source version (about 15 minutes on 2 cores), then found in the cache.
scripts/k8s-lab.sh build
# The Rust core: format, lints (with and without the PyO3 module), unit tests, bounded fuzzing.
export PATH="$PATH:$HOME/.cargo/bin"
# cargo's build cache lives outside the checkout, so that a fresh clone on a machine that has
# built the core once (CI's) does not compile everything again.
export CARGO_TARGET_DIR="${NODETAP_CARGO_TARGET:-${XDG_CACHE_HOME:-$HOME/.cache}/nodetap/cargo-target}"
(cd core && cargo fmt --check && cargo clippy -q --all-targets -- -D warnings \
  && cargo clippy -q --all-targets --features python -- -D warnings && cargo test -q >/dev/null)
# cargo-fuzz (nightly features; the stable compiler allows them with RUSTC_BOOTSTRAP=1): each
# target for NODETAP_FUZZ_SECONDS (default 20) from the differential tests' cases, 512 MiB max.
.venv/bin/python -m tests.core.fuzz_seeds core/fuzz/corpus
fuzz_log=$(mktemp)
mkdir -p core/fuzz/corpus/packets
for target in records http1 h2 rules packets; do
  (cd core/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "corpus/$target" -- \
    -max_total_time="${NODETAP_FUZZ_SECONDS:-20}" -rss_limit_mb=512 -print_final_stats=0) \
    >"$fuzz_log" 2>&1 || { cat "$fuzz_log" >&2; rm -f "$fuzz_log"; echo "test: fuzz target $target failed" >&2; exit 1; }
done
rm -f "$fuzz_log"
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
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
