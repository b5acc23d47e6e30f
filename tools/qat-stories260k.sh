#!/usr/bin/env bash
# The QAT experiment of issue 20 (docs/QAT.md): ParetoQ QAT of stories260K, the model its authors trained
# (../shared/data/stories260K), at 1, 1.58, 2, 3 and 4 bits. Data-free: the training text is stories the
# full-precision model writes itself, and the loss is distillation from it. Every width also gets a round-to-nearest
# PTQ baseline, and every exported .pq is scored by the runtime (paretoq-run --perplexity) on the real TinyStories
# sample, which no run trains on. Writes results.md, results.csv, perplexity.png and loss.png to OUT.
#   tools/qat-stories260k.sh                               # the real run: 3000 steps a width, ~8 min each on 2 cores
#   STEPS=20 DOCUMENTS=40 OUT=/tmp/q tools/qat-stories260k.sh  # a quick end-to-end check of the pipeline
# BITS sets the widths (default "2 1.58 1 3 4"), LR / MIN_LR the cosine, SEQ / BATCH the windows (4 × 256).
# Every stage resumes where it stopped, and a larger STEPS continues a finished run's schedule (AdamW's cosine is
# rescheduled on resume).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-.cache/qat-stories260k}
steps=${STEPS:-3000}
documents=${DOCUMENTS:-8000}
seq=${SEQ:-256} # the evaluation's chunk length; docs/QAT.md compares 128 and 512
batch=${BATCH:-4}
lr=${LR:-2e-3}
min_lr=${MIN_LR:-0} # ParetoQ's cosine ends at zero; 1e-4 left 2-bit 3% worse on validation
widths=${BITS:-2 1.58 1 3 4}
source=../shared/data/stories260K
mkdir -p "$out"

dotnet build src/ParetoQ.Trainer -c Release -o "$out/bin" -v:q -nologo >/dev/null
dotnet build src/ParetoQ.Cli -c Release -o "$out/run-bin" -v:q -nologo >/dev/null
dotnet build src/ParetoQ.Convert -c Release -o "$out/convert-bin" -v:q -nologo >/dev/null
T="$out/bin/paretoq-train"
R="$out/run-bin/paretoq-run"

# The teacher, its stories, their tokens, and the held-out text (the sample's five real stories, one per line).
# llama2.c's own files: a tied embedding and the 512 positions it was trained with (the GGUF has an untied copy).
[ -s "$out/fp.pq" ] || "$out/convert-bin/paretoq-convert" "$source/stories260K.bin" --tokenizer "$source/tok512.bin" \
  --head f32 -o "$out/fp.pq" >/dev/null
[ -s "$out/stories.jsonl" ] || "$T" sample --model "$out/fp.pq" --documents "$documents" --max-tokens 256 --seed 1 -o "$out/stories.jsonl"
[ -s "$out/data/train.tokens" ] || "$T" data --text "$out/stories.jsonl" --tokenizer "$out/fp.pq" -o "$out/data"
[ -s "$out/fp.ckpt" ] || "$T" import --model "$out/fp.pq" -o "$out/fp.ckpt"
sed 's/<|endoftext|>//g' "$source/tinystories-sample.txt" > "$out/heldout.txt"

# llama-perplexity's protocol: independent chunks of 256, fp32 KV cache.
perplexity() {
  "$R" --model "$1" --perplexity "$out/heldout.txt" --perplexity-mode chunks --context 256 --kv-cache f32 |
    sed -E 's/^perplexity ([0-9.]+).*/\1/'
}
fp=$(perplexity "$out/fp.pq")
echo "series,x,y" > "$out/results.csv"
{
  echo "| bits | QAT perplexity | ratio | PTQ (round-to-nearest) perplexity | ratio | QAT .pq size |"
  echo "|---|---|---|---|---|---|"
  echo "| full precision | $fp | 1 | | | $(stat -c %s "$out/fp.pq") bytes |"
} > "$out/results.md"
ratio() { awk -v a="$1" -v b="$fp" 'BEGIN { printf "%.2f×", a / b }'; }
for bits in $widths; do
  args=(qat --from "$out/fp.ckpt" --bits "$bits" --data "$out/data" --steps "$steps" --seq "$seq" --batch "$batch"
    --lr "$lr" --min-lr "$min_lr" --warmup 20 --distill 1 --eval-every $(( steps / 8 )) --checkpoint-every 100
    -o "$out/q$bits.ckpt")
  if [ -f "$out/q$bits.ckpt" ]; then "$T" "${args[@]}" --resume; else "$T" "${args[@]}"; fi
  "$T" export --checkpoint "$out/q$bits.ckpt" --tokenizer "$out/fp.pq" --head f32 -o "$out/q$bits.pq" --force >/dev/null
  "$T" export --checkpoint "$out/fp.ckpt" --tokenizer "$out/fp.pq" --ptq "$bits" --head f32 -o "$out/ptq$bits.pq" --force >/dev/null
  qat=$(perplexity "$out/q$bits.pq"); ptq=$(perplexity "$out/ptq$bits.pq")
  printf 'QAT,%s,%s\nPTQ,%s,%s\n' "$bits" "$qat" "$bits" "$ptq" >> "$out/results.csv"
  echo "| $bits | $qat | $(ratio "$qat") | $ptq | $(ratio "$ptq") | $(stat -c %s "$out/q$bits.pq") bytes |" >> "$out/results.md"
done
printf 'full precision,1,%s\nfull precision,4,%s\n' "$fp" "$fp" >> "$out/results.csv"
"$T" chart --points "$out/results.csv" --title "stories260K held-out perplexity" --x-label "bits per weight" \
  --y-label "perplexity" --log-y -o "$out/perplexity.png"
"$T" chart --metrics "$out"/q*.jsonl -o "$out/loss.png"
cat "$out/results.md"
