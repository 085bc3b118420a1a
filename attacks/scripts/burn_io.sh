#!/bin/sh
# BurnIo: write and fsync a CME_SIZE_MB file in CME_PATH over and over for CME_DURATION
# seconds. Reverts on the host: the writer runs under `timeout`, and a detached reverter
# removes the file shortly after the duration even if the writer was killed.
set -eu
duration=${CME_DURATION:-60}
run_id=${CME_RUN_ID:-$$}
dir=${CME_PATH:-/tmp}
size_mb=${CME_SIZE_MB:-256}
case "$duration" in '' | *[!0-9]*) echo "burn_io: CME_DURATION must be whole seconds" >&2; exit 2 ;; esac
case "$size_mb" in '' | *[!0-9]*) echo "burn_io: CME_SIZE_MB must be a whole number" >&2; exit 2 ;; esac
command -v timeout >/dev/null 2>&1 || { echo "burn_io: timeout (coreutils) is not installed" >&2; exit 3; }
[ -d "$dir" ] && [ -w "$dir" ] || { echo "burn_io: $dir is not a writable directory" >&2; exit 3; }
free_kb=$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')
if [ "$((size_mb * 1024))" -gt "$free_kb" ]; then
  echo "burn_io: $dir has $((free_kb / 1024)) MB free; not writing ${size_mb} MB" >&2
  exit 4
fi
detach() {
  if command -v setsid >/dev/null 2>&1; then setsid nohup "$@"; else nohup "$@"; fi \
    >/dev/null 2>&1 </dev/null &
}
file="$dir/cme-burnio-$run_id"
# The reverter first: once it runs, nothing of this attack can outlive the duration.
detach sh -c 'sleep "$1"; rm -f "$2"' "cme-burnio-revert-$run_id" "$((duration + 2))" "$file"
detach timeout -s KILL "$duration" sh -c \
  'trap "rm -f \"\$1\"" EXIT; while :; do dd if=/dev/zero of="$1" bs=1M count="$2" conv=fsync 2>/dev/null; done' \
  "cme-burnio-$run_id" "$file" "$size_mb"
echo "burn_io: writing ${size_mb} MB to $file in a loop for ${duration}s"
