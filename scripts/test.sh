#!/usr/bin/env bash
# Every check and every test of eventflow, on a fresh machine: formatting, lints, the SAM
# template and the OpenAPI document, then the whole cargo test suite. Installs what it needs
# (cfn-lint and openapi-spec-validator, in a virtual environment under ~/.cache/eventflow) on
# first use.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${EVENTFLOW_CACHE:-$HOME/.cache/eventflow}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
export PROPTEST_CASES="${PROPTEST_CASES:-10000}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

say() { printf '\n==> %s\n' "$*"; }

say "tools"
venv="$cache/venv"
if [ ! -x "$venv/bin/cfn-lint" ] || [ ! -x "$venv/bin/openapi-spec-validator" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'cfn-lint==1.58.0' \
    'openapi-spec-validator==0.9.0'
fi
cargo --version

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "SAM template: cfn-lint"
"$venv/bin/cfn-lint" template.yaml

say "OpenAPI document: openapi-spec-validator"
"$venv/bin/openapi-spec-validator" openapi.yaml

say "cargo test (PROPTEST_CASES=$PROPTEST_CASES)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
