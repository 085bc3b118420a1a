#!/bin/sh
# KillProcesses: send CME_SIGNAL (default KILL) to the processes whose name matches the
# extended regular expression CME_PATTERN (their whole command line with CME_FULL=1), and
# keep killing new matches for CME_DURATION seconds (0: once). The script and the SSH
# session running it are never killed. Nothing to revert: the killer stops by itself
# (it runs under `timeout`).
set -eu
duration=${CME_DURATION:-0}
run_id=${CME_RUN_ID:-$$}
signal=${CME_SIGNAL:-KILL}
[ -n "${CME_PATTERN:-}" ] || { echo "kill_processes: CME_PATTERN is empty" >&2; exit 2; }
case "$duration" in '' | *[!0-9]*) echo "kill_processes: CME_DURATION must be whole seconds" >&2; exit 2 ;; esac
command -v pgrep >/dev/null 2>&1 || { echo "kill_processes: pgrep (procps) is not installed" >&2; exit 3; }
# The pattern travels in the environment, never on a command line, so no helper below
# matches it with CME_FULL=1.
export CME_SIGNAL="$signal"
flag=""
[ "${CME_FULL:-0}" = 1 ] && flag="-f"
kill_matches() {
  # $1: pids to spare (this shell and its ancestors, the SSH session among them).
  killed=""
  # No `|| true`: the substitution then execs pgrep itself, which never matches itself.
  for pid in $(pgrep $flag -- "$CME_PATTERN"); do
    case " $1 " in *" $pid "*) continue ;; esac
    kill -s "$CME_SIGNAL" "$pid" 2>/dev/null && killed="$killed $pid"
  done
}
ancestors() {
  pid=$$
  list="$pid"
  while [ "$pid" -gt 1 ] && [ -r "/proc/$pid/stat" ]; do
    pid=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f2)
    list="$list $pid"
  done
  echo "$list"
}
kill_matches "$(ancestors)"
if [ -n "$killed" ]; then
  echo "kill_processes: sent SIG$signal to$killed"
else
  echo "kill_processes: no process matched '$CME_PATTERN'"
fi
if [ "$duration" -gt 0 ]; then
  if command -v setsid >/dev/null 2>&1; then keeper="setsid nohup"; else keeper="nohup"; fi
  # shellcheck disable=SC2016 # expanded by the keeper's own shell
  export flag
  $keeper timeout -s KILL "$duration" sh -c '
    while :; do
      spare="$$ $PPID"
      for pid in $(pgrep $flag -- "$CME_PATTERN"); do
        case " $spare " in *" $pid "*) continue ;; esac
        kill -s "$CME_SIGNAL" "$pid" 2>/dev/null || true
      done
      sleep 1
    done' "cme-killprocesses-$run_id" >/dev/null 2>&1 </dev/null &
  echo "kill_processes: killing new matches for ${duration}s"
fi
