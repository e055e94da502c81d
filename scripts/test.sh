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
if [ ! -x "$venv/bin/cfn-lint" ] || [ ! -x "$venv/bin/openapi-spec-validator" ] ||
  [ ! -x "$venv/bin/sam" ]; then
  python3 -m venv "$venv"
  # aws-sam-cli 1.170.0 requires cfn-lint >=1.52.0,<1.59: one venv holds both.
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'cfn-lint==1.58.0' \
    'openapi-spec-validator==0.9.0' 'aws-sam-cli==1.170.0'
fi
# cargo-lambda (with ziglang, for cross-compiling) from PyPI: shared/aws/tests/lambda_watch.rs
# runs the coordinator under `cargo lambda watch`; scripts/lambda.sh builds the bundle with it.
if [ ! -x "$venv/bin/cargo-lambda" ]; then
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'cargo-lambda==1.9.2'
fi
# At the end of PATH: `cargo lambda` resolves, and the venv's python3 shadows nothing.
export PATH="$PATH:$venv/bin"
cargo --version
cargo lambda --version

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "SAM template: cfn-lint"
"$venv/bin/cfn-lint" template.yaml

say "SAM template: sam validate --lint"
# Offline (SAM's transform, then cfn-lint): it needs no credentials, but a profile named in the
# environment and missing from ~/.aws fails it, so the caller's profile and keys are left out.
env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY \
  -u AWS_SESSION_TOKEN SAM_CLI_TELEMETRY=0 \
  "$venv/bin/sam" validate --lint --template template.yaml --region eu-central-1

say "OpenAPI document: openapi-spec-validator"
"$venv/bin/openapi-spec-validator" openapi.yaml

say "AWS emulators: LocalStack and moto server (localstack/README.md; installed on first use)"
bash localstack/install.sh
trap 'bash localstack/stop.sh' EXIT
# start.sh waits until both are healthy and prints the AWS_* variables the tests read.
emulators_env=$(bash localstack/start.sh)
eval "$emulators_env"

say "cargo test (PROPTEST_CASES=$PROPTEST_CASES)"
log=$(mktemp)
trap 'rm -f "$log"; bash localstack/stop.sh' EXIT
set +e
cargo test --workspace --locked --lib --bins --tests 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
