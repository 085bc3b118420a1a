#!/bin/sh
# FillDisk: create a CME_SIZE_MB file in CME_PATH and keep it for CME_DURATION seconds.
# Bounded: refuses to take more than the free space minus CME_KEEP_FREE_MB. Reverts on the
# host: a detached reverter, started before the file is written, removes it.
set -eu
duration=${CME_DURATION:-60}
run_id=${CME_RUN_ID:-$$}
dir=${CME_PATH:-/tmp}
size_mb=${CME_SIZE_MB:-512}
keep_free_mb=${CME_KEEP_FREE_MB:-0}
for value in "$duration" "$size_mb" "$keep_free_mb"; do
  case "$value" in '' | *[!0-9]*) echo "fill_disk: duration and sizes must be whole numbers" >&2; exit 2 ;; esac
done
[ -d "$dir" ] && [ -w "$dir" ] || { echo "fill_disk: $dir is not a writable directory" >&2; exit 3; }
free_mb=$(($(df -Pk "$dir" | awk 'NR == 2 { print $4 }') / 1024))
if [ "$((size_mb + keep_free_mb))" -gt "$free_mb" ]; then
  echo "fill_disk: $dir has $free_mb MB free; not taking $size_mb MB and leaving $keep_free_mb MB" >&2
  exit 4
fi
detach() {
  if command -v setsid >/dev/null 2>&1; then setsid nohup "$@"; else nohup "$@"; fi \
    >/dev/null 2>&1 </dev/null &
}
file="$dir/cme-filldisk-$run_id"
detach sh -c 'sleep "$1"; rm -f "$2"' "cme-filldisk-revert-$run_id" "$duration" "$file"
if ! { fallocate -l "${size_mb}M" "$file" 2>/dev/null ||
  dd if=/dev/zero of="$file" bs=1M count="$size_mb" 2>/dev/null; }; then
  rm -f "$file"
  echo "fill_disk: could not write ${size_mb} MB to $file" >&2
  exit 5
fi
echo "fill_disk: $file holds ${size_mb} MB for ${duration}s"
