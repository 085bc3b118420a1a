#!/bin/sh
# NullRoute: blackhole the IPv4 network CME_CIDR on the host for CME_DURATION seconds, so
# nothing it sends there arrives. Refuses a CIDR holding the SSH client's address (it would
# cut the engine off mid-run). A detached reverter deletes the route after the duration.
set -eu
duration=${CME_DURATION:-60}
run_id=${CME_RUN_ID:-$$}
cidr=${CME_CIDR:-}
case "$duration" in '' | *[!0-9]*) echo "null_route: CME_DURATION must be whole seconds" >&2; exit 2 ;; esac
case "$cidr" in
  */*) ;;
  *) echo "null_route: CME_CIDR must be an IPv4 network like 10.0.0.0/8" >&2; exit 2 ;;
esac
command -v ip >/dev/null 2>&1 || { echo "null_route: ip (iproute2) is not installed" >&2; exit 3; }
# shellcheck disable=SC2086
set -- ${SSH_CONNECTION:-}
client=${1:-}
inside=$(awk -v cidr="$cidr" -v ip="$client" '
  function num(a,  p) { split(a, p, "."); return ((p[1] * 256 + p[2]) * 256 + p[3]) * 256 + p[4] }
  BEGIN {
    if (ip !~ /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/) { print "no"; exit }
    split(cidr, c, "/"); size = 2 ^ (32 - c[2])
    print (int(num(ip) / size) == int(num(c[1]) / size)) ? "yes" : "no"
  }')
if [ "$inside" = yes ]; then
  echo "null_route: $cidr holds the SSH client $client; a null route would cut the engine off" >&2
  exit 6
fi
if ! err=$(ip route add blackhole "$cidr" 2>&1); then
  echo "null_route: could not add a blackhole route to $cidr: $err" >&2
  exit 5
fi
if command -v setsid >/dev/null 2>&1; then keeper="setsid nohup"; else keeper="nohup"; fi
$keeper sh -c 'sleep "$1"; ip route del blackhole "$2"' "cme-nullroute-revert-$run_id" "$duration" "$cidr" \
  >/dev/null 2>&1 </dev/null &
echo "null_route: $cidr blackholed for ${duration}s"
