#!/usr/bin/env bash
# Tokenizer benchmark: GPT-2 encoding of IMDB reviews by `dfpo tokenizer
# encode` on one core and on every core, against the reference encoder
# (bench/gpt2_ref.py, Debian's /usr/bin/python3) in the same run. Checks that
# all three give the same ids, then prints a Markdown table.
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
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

now() { date +%s.%N; }
# dfpo: "encoded B bytes (D documents) into T tokens in S s on N threads: R MB/s"
run_dfpo() {
  local threads=$1 out=$2 t0 t1
  t0=$(now)
  OMP_NUM_THREADS=$threads "$dfpo" tokenizer encode -t "$gpt2" --lines --stats \
    < "$tmp/reviews.txt" > "$out" 2> "$tmp/stats.txt"
  t1=$(now)
  enc=$(sed -n 's/.* in \([0-9.]*\) s on .*/\1/p' "$tmp/stats.txt")
  tokens=$(sed -n 's/.* into \([0-9]*\) tokens .*/\1/p' "$tmp/stats.txt")
  wall=$(echo "$t1 - $t0" | bc -l)
}
run_dfpo 1 "$tmp/one.ids"; enc1=$enc; wall1=$wall; tokens1=$tokens
run_dfpo "$cores" "$tmp/all.ids"; encn=$enc; walln=$wall
t0=$(now)
/usr/bin/python3 bench/gpt2_ref.py "$gpt2" --lines --time < "$tmp/reviews.txt" \
  > "$tmp/ref.ids" 2> "$tmp/ref.txt"
t1=$(now)
encp=$(cut -d' ' -f1 "$tmp/ref.txt")
wallp=$(echo "$t1 - $t0" | bc -l)

same=yes
cmp -s "$tmp/one.ids" "$tmp/ref.ids" || same=NO
cmp -s "$tmp/all.ids" "$tmp/ref.ids" || same=NO

mbs() { echo "scale=2; $bytes / $1 / 1000000" | bc -l; }
ratio() { echo "scale=1; $1 / $2" | bc -l; }
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
echo "Machine: $cpu, $cores cores; $(date -u +%Y-%m-%d)"
echo "Input: $docs IMDB reviews, $bytes bytes, $tokens1 GPT-2 tokens; ids identical to the reference: $same"
echo
echo "| encoder | encode s | MB/s | vs reference | wall s (load, read, print) |"
echo "|---|---|---|---|---|"
echo "| reference (bench/gpt2_ref.py, Python 3, regex) | $encp | $(mbs "$encp") | 1.0 | $wallp |"
echo "| dfpo, 1 thread | $enc1 | $(mbs "$enc1") | $(ratio "$encp" "$enc1") | $wall1 |"
echo "| dfpo, $cores threads (OpenMP over reviews) | $encn | $(mbs "$encn") | $(ratio "$encp" "$encn") | $walln |"
[ "$same" = yes ]
