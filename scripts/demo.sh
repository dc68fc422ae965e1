#!/usr/bin/env bash
# `make demo`: the main job on a built-in default. Without MODEL=, synthesizes a small
# random-weight model with a real (trained) tokenizer; with MODEL=path uses that model.
set -eu
BIN=${1:-build/release/nindub}
mkdir -p build/demo
if [ -z "${MODEL:-}" ]; then
  MODEL=build/demo/tiny.gguf
  echo "== nindub synth --preset tiny -o $MODEL"
  "$BIN" synth --preset tiny --type f16 -o "$MODEL"
fi
echo
echo "== nindub info --no-tensors $MODEL"
"$BIN" info --no-tensors "$MODEL"
echo
PROMPT=${PROMPT:-"The quick brown fox reads a model file and says what to do when something is wrong."}
echo "== nindub tokenize -m $MODEL \"$PROMPT\""
"$BIN" tokenize -m "$MODEL" "$PROMPT"
if "$BIN" help 2>/dev/null | grep -q '^  run '; then
  echo
  echo "== nindub run -m $MODEL -p \"$PROMPT\" -n 32"
  "$BIN" run -m "$MODEL" -p "$PROMPT" -n 32
  echo
fi
