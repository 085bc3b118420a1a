#!/usr/bin/env bash
# Install the Debian packages the test suite needs, if they are missing and we can.
set -euo pipefail
needed=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || needed+=(openssh-server)
command -v ip >/dev/null 2>&1 || needed+=(iproute2)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || needed+=(iptables)
command -v ping >/dev/null 2>&1 || needed+=(iputils-ping)
command -v pgrep >/dev/null 2>&1 || needed+=(procps)
command -v unshare >/dev/null 2>&1 && command -v setsid >/dev/null 2>&1 || needed+=(util-linux)
[ ${#needed[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing ${needed[*]}; install them as root (tests that need them are skipped)" >&2
  exit 0
fi
echo "system-deps: installing ${needed[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
