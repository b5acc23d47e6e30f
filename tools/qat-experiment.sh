#!/usr/bin/env bash
# The QAT experiment of issue 7 (docs/QAT.md): pretrain a MobileLLM-style model in full precision on the Brown corpus
# and nlp-corpus, then ParetoQ QAT at 1, 1.58, 2, 3 and 4 bits with ~10% extra steps each, a round-to-nearest PTQ
# baseline at every width, held-out perplexity of every exported .pq (paretoq-run --perplexity), and two PNGs: the loss
# curves and perplexity against bits. Every stage resumes where it stopped, so rerun it to continue.
#   STEPS=1500 tools/qat-experiment.sh          # the real run (hours on 2 cores); results in .cache/qat/results.md
#   MODEL=tiny STEPS=8 tools/qat-experiment.sh  # a quick end-to-end check of the pipeline
# QAT_LR / QAT_MIN_LR set the QAT cosine (default 1e-4 → 1e-5; docs/QAT.md run 1 used 5e-4 → 5e-5) and BITS the widths (default "1 1.58 2 3 4"); with OUT
# pointing at a directory holding another run's fp.ckpt, only the QAT stages run again.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-.cache/qat}
model=${MODEL:-mobilellm-7m}
steps=${STEPS:-1500}
qat_steps=${QAT_STEPS:-$(( (steps + 9) / 10 ))}
seq=${SEQ:-256}
batch=${BATCH:-8}
eval_bytes=${EVAL_BYTES:-200000}
qat_lr=${QAT_LR:-1e-4}
qat_min_lr=${QAT_MIN_LR:-1e-5}
widths=${BITS:-1 1.58 2 3 4}
mkdir -p "$out"

bash tools/fetch-training-data.sh >/dev/null
bash tools/fetch-test-data.sh
dotnet build src/ParetoQ.Trainer -c Release -o "$out/bin" -v:q -nologo >/dev/null
dotnet build src/ParetoQ.Cli -c Release -o "$out/run-bin" -v:q -nologo >/dev/null
T="$out/bin/paretoq-train"
R="$out/run-bin/paretoq-run"

[ -s "$out/data/train.tokens" ] || "$T" data --text .cache/training/brown.txt .cache/training/nlp.txt --tokenizer .cache/testdata/llama2/tokenizer.json -o "$out/data"
head -c "$eval_bytes" "$out/data/val.txt" | sed '$d' > "$out/eval.txt" # whole lines of held-out text

# run CHECKPOINT ARGS...: start the stage, or resume it when its checkpoint exists.
run() {
  local ckpt=$1; shift
  if [ -f "$ckpt" ]; then "$T" "$@" -o "$ckpt" --resume; else "$T" "$@" -o "$ckpt"; fi
}
common=(--data "$out/data" --seq "$seq" --batch "$batch" --eval-every $(( steps / 15 + 1 )) --checkpoint-every 25)
run "$out/fp.ckpt" pretrain --model "$model" --steps "$steps" --warmup $(( steps / 30 )) --lr 2e-3 --min-lr 2e-4 "${common[@]}"

perplexity() { "$R" --model "$1" --perplexity "$out/eval.txt" --context "$seq" | sed -E 's/^perplexity ([0-9.]+).*/\1/'; }
"$T" export --checkpoint "$out/fp.ckpt" --head f32 -o "$out/fp.pq" --force >/dev/null
fp=$(perplexity "$out/fp.pq")
echo "series,x,y" > "$out/results.csv"
{
  echo "| bits | QAT perplexity | PTQ (round-to-nearest) perplexity | .pq size |"
  echo "|---|---|---|---|"
  echo "| 32 (full precision) | $fp | | $(stat -c %s "$out/fp.pq") bytes |"
} > "$out/results.md"
for bits in $widths; do
  run "$out/q$bits.ckpt" qat --from "$out/fp.ckpt" --bits "$bits" --steps "$qat_steps" --lr "$qat_lr" --min-lr "$qat_min_lr" "${common[@]}"
  "$T" export --checkpoint "$out/q$bits.ckpt" -o "$out/q$bits.pq" --force >/dev/null
  "$T" export --checkpoint "$out/fp.ckpt" --ptq "$bits" -o "$out/ptq$bits.pq" --force >/dev/null
  qat=$(perplexity "$out/q$bits.pq"); ptq=$(perplexity "$out/ptq$bits.pq")
  printf 'QAT,%s,%s\nPTQ,%s,%s\n' "$bits" "$qat" "$bits" "$ptq" >> "$out/results.csv"
  echo "| $bits | $qat | $ptq | $(stat -c %s "$out/q$bits.pq") bytes |" >> "$out/results.md"
done
echo "full precision,1,$fp" >> "$out/results.csv"
echo "full precision,4,$fp" >> "$out/results.csv"
"$T" chart --points "$out/results.csv" --title "held-out perplexity" --x-label "bits per weight" --y-label "perplexity" -o "$out/perplexity.png"
"$T" chart --metrics "$out/fp.jsonl" "$out"/q*.jsonl -o "$out/loss.png"
cat "$out/results.md"
