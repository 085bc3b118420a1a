#!/bin/sh
# FailDns: drop every DNS query the host sends (UDP and TCP to port 53; IPv4, and IPv6
# where ip6tables works) for CME_DURATION seconds. Rules live in a chain of their own
# (CME-D<run id>); a detached reverter removes it after the duration.
set -eu
duration=${CME_DURATION:-60}
run_id=${CME_RUN_ID:-$$}
case "$duration" in '' | *[!0-9]*) echo "fail_dns: CME_DURATION must be whole seconds" >&2; exit 2 ;; esac
command -v iptables >/dev/null 2>&1 || { echo "fail_dns: iptables is not installed" >&2; exit 3; }
chain="CME-D$run_id"
tools="iptables"
if command -v ip6tables >/dev/null 2>&1 && ip6tables -w -S OUTPUT >/dev/null 2>&1; then
  tools="iptables ip6tables"
fi
revert="for t in $tools; do
  while \$t -w -D OUTPUT -j $chain 2>/dev/null; do :; done
  \$t -w -F $chain 2>/dev/null; \$t -w -X $chain 2>/dev/null
done; true"
if command -v setsid >/dev/null 2>&1; then keeper="setsid nohup"; else keeper="nohup"; fi
$keeper sh -c "sleep $duration; $revert" "cme-faildns-revert-$run_id" >/dev/null 2>&1 </dev/null &
apply() {
  $1 -w -N "$chain" &&
    $1 -w -A "$chain" -p udp --dport 53 -j DROP &&
    $1 -w -A "$chain" -p tcp --dport 53 -j DROP &&
    $1 -w -I OUTPUT 1 -j "$chain"
}
for t in $tools; do
  if ! err=$(apply "$t" 2>&1); then
    echo "fail_dns: $t refused the rules: $err" >&2
    sh -c "$revert"
    exit 5
  fi
done
echo "fail_dns: DNS (port 53) dropped ($tools) for ${duration}s"
