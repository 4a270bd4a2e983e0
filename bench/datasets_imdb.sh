#!/usr/bin/env bash
# bench/datasets_imdb.sh [ARCHIVE]: times `dfpo datasets import imdb` and
# `dfpo datasets prepare imdb` on the real IMDB archive (default
# ../shared/data/imdb/aclImdb.tar.gz), then the Python peer doing the same
# work (bench/peer_imdb_import.py), each in a fresh temporary cache, and
# prints the seconds and the ratio. Needs build/harness/dfpo (ci/build).
set -euo pipefail
cd "$(dirname "$0")/.."
archive="${1:-../shared/data/imdb/aclImdb.tar.gz}"
[ -f "$archive" ] || { echo "bench: no $archive" >&2; exit 2; }
dfpo=build/harness/dfpo
[ -x "$dfpo" ] || { echo "bench: build first (ci/build)" >&2; exit 3; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sec() { date +%s.%N; }
sync
t0=$(sec)
DFPO_HOME="$tmp/dfpo" DFPO_LOG=warn "$dfpo" datasets import imdb "$archive" >/dev/null
t1=$(sec)
DFPO_HOME="$tmp/dfpo" DFPO_LOG=warn "$dfpo" datasets prepare imdb >/dev/null
t2=$(sec)
rm -rf "$tmp/dfpo"
sync
t3=$(sec)
mkdir -p "$tmp/peer"
/usr/bin/python3 bench/peer_imdb_import.py "$archive" "$tmp/peer"
t4=$(sec)
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" 'BEGIN {
  printf "dfpo import:          %6.2f s\n", b - a
  printf "dfpo prepare:         %6.2f s\n", c - b
  printf "dfpo import+prepare:  %6.2f s\n", c - a
  printf "python peer (same):   %6.2f s\n", e - d
  printf "ratio peer/dfpo:      %6.2f\n", (e - d) / (c - a)
}'
