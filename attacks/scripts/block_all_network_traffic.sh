#!/bin/sh
# BlockAllNetworkTraffic: drop every packet in and out of the host (IPv4, and IPv6 where
# ip6tables works) except loopback, for CME_DURATION seconds. The SSH session running this
# script is let through while it is open (its established connection only), so the engine
# hears the outcome; no new connection gets in. Rules live in chains of their own
# (CME-B<run id>-I/O/F); a detached reverter removes them after the duration, whether or
# not the engine or the SSH session is still there.
set -eu
duration=${CME_DURATION:-60}
run_id=${CME_RUN_ID:-$$}
case "$duration" in '' | *[!0-9]*) echo "block_all_network_traffic: CME_DURATION must be whole seconds" >&2; exit 2 ;; esac
command -v iptables >/dev/null 2>&1 || { echo "block_all_network_traffic: iptables is not installed" >&2; exit 3; }
chain="CME-B$run_id"
# shellcheck disable=SC2086 # SSH_CONNECTION is four words: client port server port
set -- ${SSH_CONNECTION:-}
client=${1:-} client_port=${2:-} server=${3:-} server_port=${4:-}
tools="iptables"
if command -v ip6tables >/dev/null 2>&1 && ip6tables -w -S INPUT >/dev/null 2>&1; then
  tools="iptables ip6tables"
fi
revert="for t in $tools; do
  for c in INPUT:I OUTPUT:O FORWARD:F; do
    while \$t -w -D \${c%%:*} -j $chain-\${c##*:} 2>/dev/null; do :; done
    \$t -w -F $chain-\${c##*:} 2>/dev/null; \$t -w -X $chain-\${c##*:} 2>/dev/null
  done
done; true"
# The reverter first: once it runs, the block cannot outlive the duration.
if command -v setsid >/dev/null 2>&1; then keeper="setsid nohup"; else keeper="nohup"; fi
$keeper sh -c "sleep $duration; $revert" "cme-block-revert-$run_id" >/dev/null 2>&1 </dev/null &
apply() {
  t=$1
  $t -w -N "$chain-I" && $t -w -N "$chain-O" && $t -w -N "$chain-F" || return 1
  $t -w -A "$chain-I" -i lo -j RETURN && $t -w -A "$chain-O" -o lo -j RETURN || return 1
  family_matches=false
  case "$client" in *:*) [ "$t" = ip6tables ] && family_matches=true ;; ?*) [ "$t" = iptables ] && family_matches=true ;; esac
  if $family_matches; then
    $t -w -A "$chain-I" -p tcp -s "$client" --sport "$client_port" -d "$server" --dport "$server_port" \
      -m conntrack --ctstate ESTABLISHED -j RETURN 2>/dev/null ||
      $t -w -A "$chain-I" -p tcp -s "$client" --sport "$client_port" -d "$server" --dport "$server_port" -j RETURN
    $t -w -A "$chain-O" -p tcp -d "$client" --dport "$client_port" -s "$server" --sport "$server_port" -j RETURN
  fi
  $t -w -A "$chain-I" -j DROP && $t -w -A "$chain-O" -j DROP && $t -w -A "$chain-F" -j DROP || return 1
  $t -w -I INPUT 1 -j "$chain-I" && $t -w -I OUTPUT 1 -j "$chain-O" && $t -w -I FORWARD 1 -j "$chain-F"
}
for t in $tools; do
  if ! err=$(apply "$t" 2>&1); then
    echo "block_all_network_traffic: $t refused the rules: $err" >&2
    sh -c "$revert"
    exit 5
  fi
done
echo "block_all_network_traffic: all traffic dropped ($tools) for ${duration}s"
