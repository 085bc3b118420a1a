#!/bin/sh
# BurnCpu: busy-loop on CME_CPUS processors (default: all) for CME_DURATION seconds.
# Reverts on the host: every burner runs under `timeout`, which kills it when the
# duration is over, whether or not the engine or the SSH session is still there.
set -eu
duration=${CME_DURATION:-60}
run_id=${CME_RUN_ID:-$$}
cpus=${CME_CPUS:-0}
case "$duration" in '' | *[!0-9]*) echo "burn_cpu: CME_DURATION must be whole seconds" >&2; exit 2 ;; esac
case "$cpus" in '' | *[!0-9]*) echo "burn_cpu: CME_CPUS must be a whole number" >&2; exit 2 ;; esac
command -v timeout >/dev/null 2>&1 || { echo "burn_cpu: timeout (coreutils) is not installed" >&2; exit 3; }
if [ "$cpus" -eq 0 ]; then
  cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
fi
detach() {
  if command -v setsid >/dev/null 2>&1; then setsid nohup "$@"; else nohup "$@"; fi \
    >/dev/null 2>&1 </dev/null &
}
marker="cme-burncpu-$run_id"
i=0
while [ "$i" -lt "$cpus" ]; do
  detach timeout -s KILL "$duration" sh -c 'while :; do :; done' "$marker"
  i=$((i + 1))
done
echo "burn_cpu: $cpus burner(s) '$marker' running for ${duration}s"
