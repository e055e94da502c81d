#!/usr/bin/env bash
# The serverless bundle's binaries and their init time, without AWS:
#
#   1. builds every function the way the template ships it: `cargo lambda build --release
#      --arm64` (SAM's rust-cargolambda build on provided.al2023, arm64: the release profile,
#      plus the `-C target-cpu=neoverse-n1` cargo-lambda adds), bootstraps under
#      $CARGO_TARGET_DIR/lambda/<bin>/bootstrap; if arm64 cannot be cross-compiled here, it
#      says so and builds for the host's architecture instead;
#   2. measures each function's init time: its release binary for this machine's architecture
#      (the bootstrap itself on an arm64 host, `cargo build --release` otherwise) is started
#      with AWS_LAMBDA_RUNTIME_API pointing at a minimal Lambda Runtime API served by this
#      script (Python's http.server on 127.0.0.1), the template's variables set to dummy values
#      (table, queue URLs, sender, domain; region and static keys); init time = from just before
#      the process is spawned to its first `GET /2018-06-01/runtime/invocation/next`; median of
#      $EVENTFLOW_INIT_RUNS (5) runs per function. Init does no network I/O (the SDK's
#      configuration and clients connect lazily), so nothing else needs to be there;
#   3. prints a table: function, bootstrap size (bytes and MB, 10^6 bytes), init time; and
#      exits non-zero when a bootstrap is over 10 MB (the target) or a function did not init.
#
# Uses cargo-lambda from ~/.cache/eventflow/venv (scripts/test.sh installs it; so does this
# script when it is missing). Slow on 2 cores: every binary is linked with LTO, once per
# architecture.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${EVENTFLOW_CACHE:-$HOME/.cache/eventflow}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
runs="${EVENTFLOW_INIT_RUNS:-5}"
venv="$cache/venv"
# Keep in step with the tools block of scripts/test.sh.
cargo_lambda_version=1.9.2

say() { printf '\n==> %s\n' "$*" >&2; }

if [ ! -x "$venv/bin/cargo-lambda" ]; then
  say "installing cargo-lambda $cargo_lambda_version from PyPI into $venv"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "cargo-lambda==$cargo_lambda_version"
fi
export PATH="$venv/bin:$PATH"

packages=(-p eventflow-function-coordinator -p eventflow-function-workers
  -p eventflow-function-scheduler -p eventflow-function-api)
bins=(coordinator worker-email worker-http worker-records worker-notify worker-flow scheduler api)
lambda_dir="$CARGO_TARGET_DIR/lambda"

host_arch=$(uname -m)
arch=arm64
say "cargo lambda build --release --arm64 (cargo-lambda $(cargo lambda --version | awk '{print $2}'))"
start=$(date +%s)
if ! cargo lambda build --release --arm64 --locked "${packages[@]}"; then
  arch=$host_arch
  say "NOTE: cross-compiling for arm64 failed here; building for the host ($host_arch) instead." \
    "The sizes below are $host_arch binaries, not the arm64 ones the template deploys."
  cargo lambda build --release --locked "${packages[@]}"
fi
lambda_build_s=$(($(date +%s) - start))

# A binary this machine can run, for the init time.
if [ "$arch" = arm64 ] && [ "$host_arch" != aarch64 ]; then
  say "cargo build --release for the host ($host_arch): the arm64 bootstraps cannot run here"
  start=$(date +%s)
  cargo build --release --locked "${packages[@]}"
  host_build_s=$(($(date +%s) - start))
  runnable() { printf '%s/release/%s' "$CARGO_TARGET_DIR" "$1"; }
else
  host_build_s=0
  runnable() { printf '%s/%s/bootstrap' "$lambda_dir" "$1"; }
fi

say "init time: median of $runs runs per function against a local Runtime API"
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
for bin in "${bins[@]}"; do
  printf '%s\t%s\t%s\n' "$bin" "$lambda_dir/$bin/bootstrap" "$(runnable "$bin")"
done >"$rows"

python3 - "$rows" "$runs" "$arch" "$lambda_build_s" "$host_build_s" <<'PY'
import http.server, os, statistics, subprocess, sys, tempfile, threading, time

rows_file, runs, arch, lambda_build_s, host_build_s = sys.argv[1:]
runs = int(runs)
rows = [line.rstrip("\n").split("\t") for line in open(rows_file) if line.strip()]

first_next = {}  # the run's token -> monotonic ns of its first GET .../invocation/next
arrived = threading.Condition()

class RuntimeApi(http.server.BaseHTTPRequestHandler):
    """The Runtime API's first call: notes when it came, then closes the connection (the
    process is killed right after; no invocation is ever handed out)."""
    def do_GET(self):
        now = time.monotonic_ns()
        parts = self.path.strip("/").split("/")
        # /<token>/2018-06-01/runtime/invocation/next: the token tells the runs apart.
        if len(parts) == 5 and parts[1:] == ["2018-06-01", "runtime", "invocation", "next"]:
            with arrived:
                first_next.setdefault(parts[0], now)
                arrived.notify_all()
        self.close_connection = True
    do_POST = do_GET
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, daemon=True).start()
port = server.server_address[1]
home = tempfile.mkdtemp(prefix="eventflow-init-")  # no ~/.aws profile files to read

def env_for(fn, token):
    q = "https://sqs.eu-central-1.amazonaws.com/123456789012/eventflow-dummy"
    env = {
        "PATH": "/usr/bin:/bin", "HOME": home,
        # A base path tells the runs apart (Lambda sets only host:port; lambda_runtime takes a
        # full URL too).
        "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{port}/{token}",
        "AWS_LAMBDA_FUNCTION_NAME": fn, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn}", "AWS_LAMBDA_LOG_STREAM_NAME": "init",
        "AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "dummy-secret",
        "AWS_SESSION_TOKEN": "dummy-token",
        "EVENTFLOW_TABLE": "eventflow-dummy",
        "EVENTFLOW_COORDINATOR_QUEUE_URL": q + "-coordinator.fifo",
        "EVENTFLOW_SENDER": "events@eventflow.example",
        "EVENTFLOW_NOTIFY_DOMAIN": "notify.eventflow.example",
    }
    for family in ("EMAIL", "HTTP", "RECORDS", "NOTIFY", "FLOW"):
        env[f"EVENTFLOW_TASKS_{family}_QUEUE_URL"] = q + "-tasks-" + family.lower()
    return env

def init_ms(fn, binary, run):
    token = f"{fn}-{run}"
    log = tempfile.TemporaryFile()
    start = time.monotonic_ns()
    proc = subprocess.Popen([binary], env=env_for(fn, token), stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    with arrived:
        while token not in first_next and proc.poll() is None and time.monotonic() < deadline:
            arrived.wait(0.05)
    got = first_next.get(token)
    proc.kill()
    proc.wait()
    if got is None:
        log.seek(0)
        sys.stderr.write(f"{fn}: no GET .../invocation/next (exit {proc.returncode}):\n"
                         + log.read().decode(errors="replace")[-2000:] + "\n")
        return None
    return (got - start) / 1e6

limit = 10_000_000
print(f"\nbootstraps: {arch}; init measured on {os.uname().machine}, median of {runs} runs")
print(f"{'function':<16} {'bytes':>10} {'MB':>6}  {'init ms':>8}  runs (ms)")
bad = 0
for fn, bootstrap, binary in rows:
    size = os.path.getsize(bootstrap) if os.path.exists(bootstrap) else None
    times = [init_ms(fn, binary, r) for r in range(runs)]
    ok = [t for t in times if t is not None]
    median = statistics.median(ok) if len(ok) == runs else None
    over = size is None or size > limit
    bad += over or median is None
    print(f"{fn:<16} {size if size is not None else 'missing':>10} "
          f"{(size or 0) / 1e6:>6.2f}  "
          f"{(f'{median:.1f}' if median is not None else 'FAILED'):>8}  "
          + " ".join(f"{t:.1f}" if t is not None else "-" for t in times)
          + ("  OVER 10 MB" if over else ""))
server.shutdown()
print(f"\nbuild: cargo lambda build {lambda_build_s} s; host release build {host_build_s} s")
sys.exit(1 if bad else 0)
PY
