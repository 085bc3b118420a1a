#!/bin/sh
# NetworkLatency: delay every packet the host sends on CME_INTERFACE (default: the one
# the SSH client is reached through) by CME_DELAY_MS milliseconds, +/- CME_JITTER_MS, with
# a `netem` queueing discipline, for CME_DURATION seconds. A host without the sch_netem
# module fails clearly (exit 4); nothing is changed then. A detached reverter deletes the
# netem qdisc after the duration.
set -eu
duration=${CME_DURATION:-60}
run_id=${CME_RUN_ID:-$$}
delay=${CME_DELAY_MS:-200}
jitter=${CME_JITTER_MS:-0}
interface=${CME_INTERFACE:-}
for value in "$duration" "$delay" "$jitter"; do
  case "$value" in '' | *[!0-9]*) echo "network_latency: duration, delay and jitter must be whole numbers" >&2; exit 2 ;; esac
done
command -v tc >/dev/null 2>&1 || { echo "network_latency: tc (iproute2) is not installed" >&2; exit 3; }
if [ -z "$interface" ]; then
  # shellcheck disable=SC2086
  set -- ${SSH_CONNECTION:-}
  if [ -n "${1:-}" ]; then
    interface=$(ip route get "$1" 2>/dev/null | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -n 1)
  fi
  [ -n "$interface" ] || interface=$(ip route show default 2>/dev/null | sed -n 's/.* dev \([^ ]*\).*/\1/p' | head -n 1)
fi
[ -n "$interface" ] || { echo "network_latency: no interface given and none found" >&2; exit 3; }
if [ "$jitter" -gt 0 ]; then spread="${jitter}ms"; else spread=""; fi
revert="tc qdisc show dev $interface root | grep -q netem && tc qdisc del dev $interface root; true"
if ! err=$(tc qdisc add dev "$interface" root netem delay "${delay}ms" $spread 2>&1); then
  case "$err" in
    *"qdisc kind is unknown"* | *"No such file"* | *"Unknown qdisc"*)
      echo "network_latency: the sch_netem module is not available on this host; no latency added (tc: $err)" >&2
      exit 4 ;;
    *)
      echo "network_latency: tc could not add netem to $interface; no latency added: $err" >&2
      exit 5 ;;
  esac
fi
if command -v setsid >/dev/null 2>&1; then keeper="setsid nohup"; else keeper="nohup"; fi
$keeper sh -c "sleep $duration; $revert" "cme-latency-revert-$run_id" >/dev/null 2>&1 </dev/null &
echo "network_latency: ${delay}ms${spread:+ +/- $spread} added on $interface for ${duration}s"
