#!/usr/bin/env bash
# Tokenizer benchmark: GPT-2 encoding of IMDB reviews by `dfpo tokenizer
# encode` on one core and on every core, against the reference encoder
# (bench/gpt2_ref.py, Debian's /usr/bin/python3) in the same run. Checks that
# all three give the same ids, then prints a Markdown table. Times cover the
# encoding alone (not loading, reading or printing); CPU seconds are the
# process's over all its threads, the robust per-core figure on a shared
# machine, and CPU > wall shows that several cores worked.
#
# Usage: bench/tokenizer.sh [--reviews N] [--dfpo BIN] [--data DIR]
#   --reviews N  how many reviews (default: all 50,000 of train+test pos/neg)
#   --dfpo BIN   the dfpo binary (default build/harness/dfpo)
#   --data DIR   the shared data folder (default ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
dfpo=build/harness/dfpo
data=../shared/data
reviews=0
while [ $# -gt 0 ]; do
  case "$1" in
    --reviews) reviews=$2; shift 2 ;;
    --dfpo) dfpo=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/tokenizer.sh: unknown argument '$1'" >&2; exit 1 ;;
  esac
done
[ -x "$dfpo" ] || { echo "bench/tokenizer.sh: $dfpo not built (run ci/build)" >&2; exit 3; }
[ -f "$data/imdb/aclImdb.tar.gz" ] || { echo "bench/tokenizer.sh: no $data/imdb/aclImdb.tar.gz" >&2; exit 2; }
gpt2="$data/gpt2"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$data/imdb/aclImdb.tar.gz" -C "$tmp" aclImdb/train/pos aclImdb/train/neg \
  aclImdb/test/pos aclImdb/test/neg
# One review a line, in sorted path order (no review holds a newline; any
# would become a space).
find "$tmp/aclImdb" -name '*.txt' | LC_ALL=C sort > "$tmp/list"
[ "$reviews" -gt 0 ] || reviews=$(wc -l < "$tmp/list")
head -n "$reviews" "$tmp/list" |
  xargs -d '\n' env LC_ALL=C awk '
    FNR == 1 && NR > 1 { printf "\n" }
    { printf "%s%s", (FNR > 1 ? " " : ""), $0 }
    END { printf "\n" }' > "$tmp/reviews.txt"
rm -rf "$tmp/aclImdb"
bytes=$(stat -c %s "$tmp/reviews.txt")
docs=$(wc -l < "$tmp/reviews.txt")
cores=$(nproc)

# dfpo --stats: "encoded B bytes (D documents) into T tokens in W s (C s of
# CPU) on N threads: ..."; W and C cover the encoding alone.
run_dfpo() {
  local threads=$1 out=$2
  OMP_NUM_THREADS=$threads "$dfpo" tokenizer encode -t "$gpt2" --lines --stats \
    < "$tmp/reviews.txt" > "$out" 2> "$tmp/stats.txt"
  wall=$(sed -n 's/.* tokens in \([0-9.]*\) s (.*/\1/p' "$tmp/stats.txt")
  cpu=$(sed -n 's/.* s (\([0-9.]*\) s of CPU).*/\1/p' "$tmp/stats.txt")
  tokens=$(sed -n 's/.* into \([0-9]*\) tokens .*/\1/p' "$tmp/stats.txt")
}
run_dfpo 1 "$tmp/one.ids"; wall1=$wall; cpu1=$cpu; tokens1=$tokens
run_dfpo "$cores" "$tmp/all.ids"; walln=$wall; cpun=$cpu
/usr/bin/python3 bench/gpt2_ref.py "$gpt2" --lines --time < "$tmp/reviews.txt" \
  > "$tmp/ref.ids" 2> "$tmp/ref.txt"
wallp=$(cut -d' ' -f1 "$tmp/ref.txt")
cpup=$(cut -d' ' -f2 "$tmp/ref.txt")

same=yes
cmp -s "$tmp/one.ids" "$tmp/ref.ids" || same=NO
cmp -s "$tmp/all.ids" "$tmp/ref.ids" || same=NO

mbs() { echo "scale=2; $bytes / $1 / 1000000" | bc -l; }
ratio() { echo "scale=1; $1 / $2" | bc -l; }
cpu_name=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
echo "Machine: $cpu_name, $cores cores, load average $(cut -d' ' -f1 /proc/loadavg) at the end; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "Input: $docs IMDB reviews, $bytes bytes, $tokens1 GPT-2 tokens; ids identical to the reference: $same"
echo
echo "| encoder | wall s | MB/s | CPU s | MB per CPU s | vs reference (wall) | vs reference (CPU) |"
echo "|---|---|---|---|---|---|---|"
echo "| reference: bench/gpt2_ref.py (Python 3.11, regex) | $wallp | $(mbs "$wallp") | $cpup | $(mbs "$cpup") | 1.0 | 1.0 |"
echo "| dfpo, 1 thread | $wall1 | $(mbs "$wall1") | $cpu1 | $(mbs "$cpu1") | $(ratio "$wallp" "$wall1") | $(ratio "$cpup" "$cpu1") |"
echo "| dfpo, $cores threads (OpenMP over reviews) | $walln | $(mbs "$walln") | $cpun | $(mbs "$cpun") | $(ratio "$wallp" "$walln") | $(ratio "$cpup" "$cpun") |"
[ "$same" = yes ]
