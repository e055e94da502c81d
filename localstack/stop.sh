#!/usr/bin/env bash
# Stops the emulators localstack/start.sh started: SIGTERM to each one's process group, then
# SIGKILL to whatever is left after 15 s; removes the pid files. Does nothing when they are not
# running, so it is safe to call twice (or from a trap).
set -uo pipefail

cache="${EVENTFLOW_CACHE:-$HOME/.cache/eventflow}"
dir="$cache/emulators"
run="$dir/run"
grace="${EVENTFLOW_EMULATORS_STOP_GRACE:-15}"

say() { printf 'emulators: %s\n' "$*" >&2; }

# signal SIG PID: sends SIG to the process group PID leads (start.sh starts each emulator with
# setsid), or to PID alone if it does not lead one.
signal() {
  if [ "$(ps -o pgid= -p "$2" 2>/dev/null | tr -d ' ')" = "$2" ]; then
    kill -s "$1" -- "-$2" 2>/dev/null
  else
    kill -s "$1" "$2" 2>/dev/null
  fi
}

# group_alive PID: the process or any member of its group still runs.
group_alive() {
  kill -0 "$1" 2>/dev/null || kill -0 -- "-$1" 2>/dev/null
}

pids=()
for name in localstack moto; do
  file="$run/$name.pid"
  [ -f "$file" ] || continue
  pid="$(cat "$file")"
  if [[ "$pid" =~ ^[0-9]+$ ]] && group_alive "$pid"; then
    say "stopping $name (pid $pid)"
    signal TERM "$pid"
    pids+=("$pid")
  fi
done

deadline=$((SECONDS + grace))
for pid in "${pids[@]}"; do
  while group_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.2
  done
  if group_alive "$pid"; then
    say "pid $pid still running after ${grace} s: SIGKILL"
    signal KILL "$pid"
    kill -KILL -- "-$pid" 2>/dev/null
  fi
done

rm -f "$run/localstack.pid" "$run/moto.pid" "$run/ports" "$dir/env.sh"
exit 0
