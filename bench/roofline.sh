#!/bin/bash
# Decode as a % of the memory-bandwidth roofline (issue 3): for each weight type, the
# streaming-read bandwidth (bench_bandwidth, the better of 4 KiB and 2 MiB pages, 2
# threads) just before and just after `nindub bench -n 128`; decode GB/s = tokens/s x the
# bytes of the tensors it reads (the model size bench prints). This VM's bandwidth drifts
# by up to ~1.5x within minutes: each type runs ROUNDS times (default 3), and the row shown
# is the round with the median % (every round's % follows in brackets, sorted).
#   bash bench/roofline.sh [nindub] [threads] [types...]      (default: q4_0 q8_0 q4_k_m)
# Models (Qwen2.5-0.5B shape, random weights) are made once under build/models/roofline/
# with nindub synth (mixtures such as q4_k_m: synth f16, then nindub quantize; not
# committed).
set -e
B=${1:-build/release/nindub}; T=${2:-2}; shift 2 2>/dev/null || shift $#
TYPES=${*:-q4_0 q8_0 q4_k_m}
BW=$(dirname "$B")/bench/bench_bandwidth
M=build/models/roofline
mkdir -p $M
[ -x "$BW" ] || make --no-print-directory bench >/dev/null
bw() { "$BW" | grep '"threads":2' | sed 's/.*"gbps":\([0-9.]*\),.*/\1/'; }
R=${ROUNDS:-3}
printf '%-8s %10s %12s %16s %10s %s\n' type "tg128 t/s" "decode GB/s" "bandwidth GB/s" "% roof" "(rounds; median)"
for t in $TYPES; do
  f=$M/qwen2.5-0.5b-$t.gguf
  if [ ! -f $f ]; then
    case $t in
      *_k_m|*_k_s) [ -f $M/qwen2.5-0.5b-f16.gguf ] ||
                     $B synth --preset qwen2.5-0.5b --type f16 --seed 1 -o $M/qwen2.5-0.5b-f16.gguf >/dev/null 2>&1
                   $B quantize $M/qwen2.5-0.5b-f16.gguf $f $t >/dev/null 2>&1 ;;
      *) $B synth --preset qwen2.5-0.5b --type $t --seed 1 -o $f >/dev/null 2>&1 ;;
    esac
  fi
  rows=""
  for r in $(seq 1 $R); do
    b1=$(bw)
    row=$($B bench -m $f -p 0 -n 128 -t $T -r 3 -o md 2>&1 | grep ' tg128 ')
    b2=$(bw)
    rows="$rows$(echo "$row" | awk -F'|' -v b1=$b1 -v b2=$b2 '{
      split($3, s, " "); split($8, v, " ");
      g = v[1] * s[1] * 1048576 / 1e9; b = (b1 + b2) / 2;
      printf "%.1f %.1f %.1f %.1f %.1f", v[1], g, b1, b2, 100 * g / b }')
"
  done
  # the round with the median % of roofline, and every round's %
  printf '%s' "$rows" | sort -n -k5 | awk -v t=$t -v R=$R '{ r[NR] = $0; p = p sprintf("%s%.0f", NR > 1 ? " " : "", $5) }
    END { split(r[int((NR + 1) / 2)], m, " ");
          printf "%-8s %10.1f %12.1f %7.1f/%-8.1f %9.0f%% (%s)\n", t, m[1], m[2], m[3], m[4], m[5], p }'
done
