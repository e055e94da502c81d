#!/usr/bin/env bash
# Starts the AWS emulators on this host, without Docker, and waits until they are healthy:
#
#   LocalStack 4.9 on 127.0.0.1:4566  SQS, SES (v1 API), EventBridge, CloudWatch, Logs, STS
#   moto server on 127.0.0.1:4567     DynamoDB
#
# Install them first with localstack/install.sh. On success, prints on stdout the environment a
# test needs, as `export` lines, and writes the same lines to $dir/env.sh, so either of
#
#   eval "$(bash localstack/start.sh)"
#   bash localstack/start.sh && . "${EVENTFLOW_CACHE:-$HOME/.cache/eventflow}/emulators/env.sh"
#
# points a shell at them. Progress and errors go to stderr. If both emulators are already
# running (started by this script), they are reused. Stop them with localstack/stop.sh.
#
# Everything they write stays under $dir = ${EVENTFLOW_CACHE:-$HOME/.cache/eventflow}/emulators:
# logs/ (localstack.log, moto.log), run/ (pid files), localstack-fs/ (LocalStack's
# FILESYSTEM_ROOT), localstack-volume/, tmp/ (TMPDIR of both).
#
# EVENTFLOW_EMULATORS_TIMEOUT: seconds to wait for health (default 300: a slow machine may need
# a minute or more). EVENTFLOW_LOCALSTACK_SERVICES overrides the list of LocalStack services;
# EVENTFLOW_LOCALSTACK_PORT and EVENTFLOW_MOTO_PORT the ports (when 4566/4567 are taken).
set -euo pipefail

cache="${EVENTFLOW_CACHE:-$HOME/.cache/eventflow}"
dir="$cache/emulators"
timeout="${EVENTFLOW_EMULATORS_TIMEOUT:-300}"
ls_port="${EVENTFLOW_LOCALSTACK_PORT:-4566}"
moto_port="${EVENTFLOW_MOTO_PORT:-4567}"
# The names LocalStack 4.9 accepts. It has no sesv2: its SES speaks the v1 API only.
services="${EVENTFLOW_LOCALSTACK_SERVICES:-sqs,ses,events,cloudwatch,logs,sts}"
region=eu-central-1

ls_python="$dir/localstack-venv/bin/python"
moto_server="$dir/moto-venv/bin/moto_server"
run="$dir/run"
logs="$dir/logs"
ls_pid_file="$run/localstack.pid"
moto_pid_file="$run/moto.pid"
ls_log="$logs/localstack.log"
moto_log="$logs/moto.log"

say() { printf 'emulators: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

[ -x "$ls_python" ] && [ -x "$moto_server" ] ||
  die "not installed under $dir: run 'bash localstack/install.sh' first"

mkdir -p "$run" "$logs" "$dir/localstack-fs" "$dir/localstack-volume" "$dir/tmp"

env_lines() {
  cat <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$ls_port
export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$moto_port
export AWS_REGION=$region
export AWS_DEFAULT_REGION=$region
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
EOF
}

# pid_alive FILE: the pid in FILE names a live process.
pid_alive() {
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# port_open PORT: something accepts connections on 127.0.0.1:PORT.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_healthy: polls both emulators until healthy, a process dies, or the timeout passes.
wait_healthy() {
  "$ls_python" - "$timeout" "$services" "$ls_port" "$moto_port" \
    "$(cat "$ls_pid_file")" "$(cat "$moto_pid_file")" "$ls_log" "$moto_log" <<'EOF'
import json, os, sys, time, urllib.request

timeout, services, ls_port, moto_port, ls_pid, moto_pid, ls_log, moto_log = sys.argv[1:]
wanted = services.split(",")
deadline = time.monotonic() + float(timeout)
procs = {"LocalStack": (int(ls_pid), ls_log), "moto server": (int(moto_pid), moto_log)}
ls_ok = moto_ok = False
last = "no answer yet"


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


while True:
    for name, (pid, log) in procs.items():
        if not alive(pid):
            sys.exit(f"emulators: {name} (pid {pid}) exited while starting; see {log}")
    if not ls_ok:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{ls_port}/_localstack/health", timeout=5
            ) as r:
                states = json.load(r).get("services", {})
            pending = [s for s in wanted if states.get(s) not in ("available", "running")]
            ls_ok = not pending
            last = f"LocalStack services not ready: {', '.join(f'{s}={states.get(s)}' for s in pending)}"
        except Exception as e:
            last = f"LocalStack: {e}"
    if not moto_ok:
        # A DynamoDB ListTables: the call the tests make, not just an open port.
        req = urllib.request.Request(
            f"http://127.0.0.1:{moto_port}/",
            data=b"{}",
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "DynamoDB_20120810.ListTables",
                "Authorization": "AWS4-HMAC-SHA256 Credential=test/20000101/"
                "eu-central-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                moto_ok = "TableNames" in json.load(r)
        except Exception as e:
            last = f"moto server: {e}"
    if ls_ok and moto_ok:
        sys.exit(0)
    if time.monotonic() > deadline:
        which = [n for n, ok in (("LocalStack", ls_ok), ("moto server", moto_ok)) if not ok]
        logs = " and ".join(procs[n][1] for n in which)
        sys.exit(
            f"emulators: not healthy after {timeout} s ({last}); see {logs}"
            " (raise EVENTFLOW_EMULATORS_TIMEOUT on a slow machine)"
        )
    time.sleep(0.5)
EOF
}

if pid_alive "$ls_pid_file" && pid_alive "$moto_pid_file"; then
  # Reused on the ports they were started on.
  [ -f "$run/ports" ] && read -r ls_port moto_port <"$run/ports"
  say "already running (LocalStack pid $(cat "$ls_pid_file") on port $ls_port," \
    "moto pid $(cat "$moto_pid_file") on port $moto_port); reusing them"
else
  if pid_alive "$ls_pid_file" || pid_alive "$moto_pid_file"; then
    die "only one of the emulators is running; run 'bash localstack/stop.sh' first"
  fi
  rm -f "$ls_pid_file" "$moto_pid_file"
  echo "$ls_port $moto_port" >"$run/ports"
  for port in "$ls_port" "$moto_port"; do
    if port_open "$port"; then
      die "127.0.0.1:$port is already in use by a process this script did not start" \
        "(a LocalStack container? then use it directly, or stop it first)"
    fi
  done

  say "starting LocalStack (services $services) on 127.0.0.1:$ls_port, log $ls_log"
  # setsid: each emulator leads its own process group, so stop.sh can signal all of it, and
  # a Ctrl-C in the starting shell does not reach it. The wrapper writes the real pid.
  env GATEWAY_LISTEN="127.0.0.1:$ls_port" \
    GATEWAY_SERVER=hypercorn \
    LOCALSTACK_HOST="127.0.0.1:$ls_port" \
    SQS_ENDPOINT_STRATEGY=path \
    OVERRIDE_IN_DOCKER=0 \
    SKIP_SSL_CERT_DOWNLOAD=1 \
    DISABLE_EVENTS=1 \
    DNS_ADDRESS=0 \
    SQS_DISABLE_CLOUDWATCH_METRICS=1 \
    EAGER_SERVICE_LOADING=1 \
    SERVICES="$services" \
    FILESYSTEM_ROOT="$dir/localstack-fs" \
    LOCALSTACK_VOLUME_DIR="$dir/localstack-volume" \
    TMPDIR="$dir/tmp" \
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$ls_pid_file" \
    "$ls_python" -m localstack.runtime.main >"$ls_log" 2>&1 </dev/null &

  say "starting moto server (DynamoDB) on 127.0.0.1:$moto_port, log $moto_log"
  env TMPDIR="$dir/tmp" \
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$moto_pid_file" \
    "$moto_server" -H 127.0.0.1 -p "$moto_port" >"$moto_log" 2>&1 </dev/null &

  # The wrappers write their pid files at once; wait for them before polling.
  for _ in $(seq 50); do
    [ -s "$ls_pid_file" ] && [ -s "$moto_pid_file" ] && break
    sleep 0.1
  done
  [ -s "$ls_pid_file" ] && [ -s "$moto_pid_file" ] || die "the emulators did not start; see $logs"
fi

start=$SECONDS
say "waiting until healthy (at most $timeout s)"
wait_healthy
say "healthy after $((SECONDS - start)) s; environment in $dir/env.sh"
env_lines >"$dir/env.sh"
env_lines
