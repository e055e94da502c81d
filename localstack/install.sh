#!/usr/bin/env bash
# Installs the AWS emulators the tests run against, without Docker, into a project-local
# directory outside the git tree:
#
#   ${EVENTFLOW_CACHE:-$HOME/.cache/eventflow}/emulators/
#     localstack-venv/   LocalStack 4.9.2 (SQS, SES, EventBridge, ...) and its boto3
#     moto-venv/         moto server 5.2.5 (DynamoDB)
#
# Each venv is installed once; a marker file records what was installed, so a second run
# with everything in place does nothing. Delete a venv (or the whole directory) to reinstall.
# EVENTFLOW_PYTHON picks the interpreter (default: python3.11 if present, else python3);
# LocalStack 4.9 needs Python 3.11 or 3.12 here (4.10 and later fail on 3.11).
set -euo pipefail

cache="${EVENTFLOW_CACHE:-$HOME/.cache/eventflow}"
dir="$cache/emulators"

# What gets installed. The upload cutoff keeps LocalStack's many loosely pinned dependencies
# at releases known to work with 4.9.2: newer ones break an unpinned install.
pip_version="26.3"
localstack_spec="localstack-core[runtime]==4.9.2"
localstack_cutoff="2025-10-07T00:00:00Z"
moto_spec="moto[server]==5.2.5"

if [ -n "${EVENTFLOW_PYTHON:-}" ]; then
  python="$EVENTFLOW_PYTHON"
elif command -v python3.11 >/dev/null 2>&1; then
  python=python3.11
else
  python=python3
fi

log() { printf 'emulators: %s\n' "$*" >&2; }

# install_venv NAME MARKER PIP-ARGS...: a venv at $dir/NAME holding PIP-ARGS, unless its
# marker already says so.
install_venv() {
  local name="$1" marker="$2"
  shift 2
  local venv="$dir/$name"
  if [ -f "$venv/.eventflow-installed" ] && [ "$(cat "$venv/.eventflow-installed")" = "$marker" ] \
    && [ -x "$venv/bin/python" ]; then
    return 0
  fi
  log "installing $marker into $venv (first use; takes a few minutes)"
  rm -rf "$venv"
  mkdir -p "$dir"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "pip==$pip_version"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
  printf '%s\n' "$marker" >"$venv/.eventflow-installed"
  log "installed $marker"
}

install_venv localstack-venv "$localstack_spec uploaded-prior-to $localstack_cutoff" \
  --uploaded-prior-to "$localstack_cutoff" "$localstack_spec"
# moto in its own venv: its dependency pins and LocalStack's need not agree.
install_venv moto-venv "$moto_spec" "$moto_spec"
