#!/bin/sh
# NetworkLoss: drop CME_PERCENT % of the packets the host sends (iptables `statistic`
# match, so it works without the sch_netem module), on CME_INTERFACE or every interface
# but loopback, for CME_DURATION seconds. The SSH session running this script is spared.
# A detached reverter removes the chain (CME-L<run id>) after the duration.
set -eu
duration=${CME_DURATION:-60}
run_id=${CME_RUN_ID:-$$}
percent=${CME_PERCENT:-10}
interface=${CME_INTERFACE:-}
case "$duration" in '' | *[!0-9]*) echo "network_loss: CME_DURATION must be whole seconds" >&2; exit 2 ;; esac
case "$percent" in '' | *[!0-9]*) echo "network_loss: CME_PERCENT must be a whole number" >&2; exit 2 ;; esac
[ "$percent" -ge 1 ] && [ "$percent" -le 100 ] || { echo "network_loss: CME_PERCENT must be 1-100" >&2; exit 2; }
command -v iptables >/dev/null 2>&1 || { echo "network_loss: iptables is not installed" >&2; exit 3; }
chain="CME-L$run_id"
# shellcheck disable=SC2086 # SSH_CONNECTION is four words: client port server port
set -- ${SSH_CONNECTION:-}
client=${1:-} client_port=${2:-} server=${3:-} server_port=${4:-}
probability=$(awk -v p="$percent" 'BEGIN { printf "%.4f", p / 100 }')
revert="while iptables -w -D OUTPUT -j $chain 2>/dev/null; do :; done
iptables -w -F $chain 2>/dev/null; iptables -w -X $chain 2>/dev/null; true"
if command -v setsid >/dev/null 2>&1; then keeper="setsid nohup"; else keeper="nohup"; fi
$keeper sh -c "sleep $duration; $revert" "cme-loss-revert-$run_id" >/dev/null 2>&1 </dev/null &
apply() {
  iptables -w -N "$chain" || return 1
  iptables -w -A "$chain" -o lo -j RETURN || return 1
  case "$client" in
    *:* | '') ;;
    *) iptables -w -A "$chain" -p tcp -d "$client" --dport "$client_port" -s "$server" --sport "$server_port" -j RETURN || return 1 ;;
  esac
  if [ -n "$interface" ]; then
    iptables -w -A "$chain" -o "$interface" -m statistic --mode random --probability "$probability" -j DROP || return 1
  else
    iptables -w -A "$chain" -m statistic --mode random --probability "$probability" -j DROP || return 1
  fi
  iptables -w -I OUTPUT 1 -j "$chain"
}
if ! err=$(apply 2>&1); then
  echo "network_loss: iptables refused the rules (is the statistic match available?): $err" >&2
  sh -c "$revert"
  exit 5
fi
echo "network_loss: dropping ${percent}% of outgoing packets on ${interface:-all interfaces} for ${duration}s"
