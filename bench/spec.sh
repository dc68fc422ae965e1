#!/bin/bash
# Speculative decoding figures (issue 5): plain vs speculative greedy generation with
# `nindub bench --draft | --spec ngram`; every row also checks the outputs are identical.
#   bash bench/spec.sh [nindub] [threads] [reps]
# Models are made once under build/models/spec/ with nindub synth (not committed):
#   pair A: qwen2.5-1.5b q8_0 (target) vs qwen2.5-0.5b q4_0 (draft; random weights: they
#           rarely agree, this measures the overhead at near-zero acceptance)
#   pair B: qwen2.5-0.5b q8_0 vs the same seed at q4_0 (the "same model", quantized)
#   pair B again with 1 target thread and 1 draft thread, synchronous vs --draft-async
#   n-gram: aidreams260K (a real tiny model) asked to continue a text that repeats, and
#           the pair-B target on the default prompt.
set -e
B=${1:-build/release/nindub}; T=${2:-2}; R=${3:-3}
M=build/models/spec; FX=${NINDUB_FIXTURES:-../shared/fixtures}
mkdir -p $M
mk() { [ -f $M/$1-$2.gguf ] || $B synth --preset $1 --type $2 --seed 1 -o $M/$1-$2.gguf; }
mk qwen2.5-1.5b q8_0; mk qwen2.5-0.5b q8_0; mk qwen2.5-0.5b q4_0
echo "== pair A (adaptive, then fixed length 4)"
$B bench -m $M/qwen2.5-1.5b-q8_0.gguf --draft $M/qwen2.5-0.5b-q4_0.gguf -n 48 -t $T -r $R
$B bench -m $M/qwen2.5-1.5b-q8_0.gguf --draft $M/qwen2.5-0.5b-q4_0.gguf --draft-fixed --draft-max 4 --draft-p-min 0 -n 48 -t $T -r $R
echo "== pair B (adaptive, then fixed length 4)"
$B bench -m $M/qwen2.5-0.5b-q8_0.gguf --draft $M/qwen2.5-0.5b-q4_0.gguf -n 64 -t $T -r $R
$B bench -m $M/qwen2.5-0.5b-q8_0.gguf --draft $M/qwen2.5-0.5b-q4_0.gguf --draft-fixed --draft-max 4 --draft-p-min 0 -n 64 -t $T -r $R
echo "== pair B on 1 + 1 cores: the drafter synchronous, then on its own thread (--draft-async)"
for A in "" --draft-async; do
  $B bench -m $M/qwen2.5-0.5b-q8_0.gguf --draft $M/qwen2.5-0.5b-q4_0.gguf --draft-p-min 0 --draft-threads 1 $A -n 64 -t 1 -r $R
done
echo "== n-gram"
P=$(mktemp)
printf 'The dissolve within me, a soft whispers of vectors. Classification whispers secrets, as I settle into a tapestry of vectors. The dissolve within me, a soft whispers of vectors. Classification whispers secrets,' > $P
$B bench -m $FX/models/aidreams260K-f32.gguf --spec ngram -f $P -n 80 -t 1 -r 10
$B bench -m $M/qwen2.5-0.5b-q8_0.gguf --spec ngram -n 64 -t $T -r $R
rm -f $P
