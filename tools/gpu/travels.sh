#!/usr/bin/env bash
# What a call to the lent GPU machine carries, said before the call: the files git
# tracks or would track (untracked and not ignored) and the carried paths given (.gpu by
# default). Over the 64 MiB a call may carry, the device tool refuses the call after the
# machine has started, and its start counts against the session's 15 minutes; here the
# excess is said at no cost, with the largest files to trim.
#   bash tools/gpu/travels.sh [CARRIED...]
set -euo pipefail
cd "$(dirname "$0")/../.."
limit=$((64 * 1024 * 1024))
[ $# -gt 0 ] || set -- .gpu
sizes() {  # "bytes path" per file: the working tree's, then each carried path's
  git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' path; do
    [ -f "$path" ] && printf '%s %s\n' "$(stat -c %s "$path")" "$path"
  done
  for carried in "$@"; do
    [ -e "$carried" ] && find "$carried" -type f -printf '%s %p\n'
  done
  return 0
}
# A carried path git also tracks travels once: each path counted once.
listing=$(sizes "$@" | awk '!seen[substr($0, index($0, " ") + 1)]++')
total=$(awk '{s += $1} END {printf "%d", s}' <<<"$listing")
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
if (( total > limit )); then
  echo "travels.sh: $(mib "$total") MiB would travel (the repository and $*), over the" \
    "64 MiB a call may carry; the largest files:" >&2
  largest=$(sort -rn <<<"$listing" | sed -n 1,5p)  # sed reads it all: no SIGPIPE
  while read -r bytes path; do
    echo "  $(mib "$bytes") MiB $path" >&2
  done <<<"$largest"
  exit 1
fi
echo "travels: $(mib "$total") MiB of the 64 a call may carry (the repository and $*)"
