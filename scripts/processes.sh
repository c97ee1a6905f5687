# shellcheck shell=bash
# Process helpers shared by scripts/testenv.sh and scripts/node.sh (sourced, never run). Every
# process they start names its directory DIR on its command line; that is how they find their
# own again, and never touch anyone else's.

# A free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# ours PID DIR: is PID alive and one of ours (its command line names DIR)?
ours() {
  local pid=$1 dir=$2
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
    grep -qF "$dir" <<<"$(tr '\0' ' ' < "/proc/$pid/cmdline")"
}

# stop_pid PID DIR: SIGTERM, 5 s, then SIGKILL; nothing when PID is not ours (or empty).
stop_pid() {
  local pid=$1 dir=$2 i
  ours "$pid" "$dir" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do
    ours "$pid" "$dir" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for i in $(seq 1 20); do
    ours "$pid" "$dir" || return 0
    sleep 0.1
  done
}

# start_watchdog SCRIPT COMMAND DIR OWNER [LOG]: once process OWNER exits, however it exits, run
# `SCRIPT COMMAND DIR` if DIR is still there (its owner never cleaned up).
start_watchdog() {
  local script=$1 command=$2 dir=$3 owner=$4 logfile=${5:-/dev/null}
  setsid bash -c 'while kill -0 "$3" 2>/dev/null && [ -d "$2" ]; do sleep 0.5; done
                  [ -d "$2" ] && "$0" "$1" "$2"' "$script" "$command" "$dir" "$owner" \
    </dev/null >>"$logfile" 2>&1 &
}
