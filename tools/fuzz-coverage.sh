#!/usr/bin/env bash
# Coverage-guided fuzzing of the untrusted-bytes readers with AFL++ and SharpFuzz (docs/RELIABILITY.md).
#   tools/fuzz-coverage.sh [FORMAT|all] [SECONDS per format, default 300]
# Each format starts from tests/fuzz-corpus/FORMAT. What AFL++ finds is minimized (afl-cmin) back into that corpus,
# crashes and hangs are copied to tests/fuzz-findings/FORMAT for replay, and a row per format is printed for the
# results table. An input "crashes" when it breaks the readers' contract (paretoq-fuzz afl): any exception but the
# reader's own format error, more than the time bound, or more allocation than the memory bound.
set -euo pipefail
cd "$(dirname "$0")/.."
formats=(pq safetensors torch config tokenizer gguf llama2c http)
format=${1:-all}
seconds=${2:-300}
[ "$format" = all ] || formats=("$format")
if ! command -v afl-fuzz >/dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends afl++
fi
out=artifacts/fuzz-coverage
rm -rf "$out"
mkdir -p "$out"
[ -x artifacts/tools/sharpfuzz ] || dotnet tool install SharpFuzz.CommandLine --version 2.3.0 --tool-path artifacts/tools >/dev/null
dotnet publish tools/ParetoQ.Fuzz -c Release -o "$out/bin" >/dev/null
for assembly in ParetoQ.Runtime paretoq-serve; do artifacts/tools/sharpfuzz "$out/bin/$assembly.dll"; done
export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CPUFREQ=1
target=("$out/bin/paretoq-fuzz" afl --format)
echo "| format | seconds | executions | per second | edges | corpus before | minimized | kept | crashes | hangs |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for f in "${formats[@]}"; do
  corpus=tests/fuzz-corpus/$f
  before=$(ls "$corpus" | wc -l)
  afl-fuzz -i "$corpus" -o "$out/$f" -t 20000 -m none -V "$seconds" -- "${target[@]}" "$f" > "$out/$f.log" 2>&1 \
    || { tail -n 20 "$out/$f.log" >&2; exit 1; }
  stat() { sed -n "s/^$1 *: //p" "$out/$f/default/fuzzer_stats"; }
  # Minimized: the fewest inputs that keep every edge the queue reached.
  afl-cmin -i "$out/$f/default/queue" -o "$out/$f/min" -t 20000 -m none -- "${target[@]}" "$f" > "$out/$f.cmin.log" 2>&1 \
    || { tail -n 20 "$out/$f.cmin.log" >&2; exit 1; }
  # Kept in the repository: the smallest of them first, up to 1 MiB per format (a gguf or pq input is ~100 KB).
  minimized=$(ls "$out/$f/min" | wc -l)
  rm -f "$corpus"/*
  n=0 bytes=0
  while read -r size input; do
    [ $n -gt 0 ] && [ $((bytes + size)) -gt $((1 << 20)) ] && break
    cp "$input" "$corpus/$(printf '%04d' $n)"
    n=$((n + 1)) bytes=$((bytes + size))
  done < <(find "$out/$f/min" -type f -printf '%s %p\n' | sort -n)
  crashes=0
  for input in "$out/$f/default/crashes"/id:* "$out/$f/default/hangs"/id:*; do
    [ -e "$input" ] || continue
    mkdir -p "tests/fuzz-findings/$f"
    cp "$input" "tests/fuzz-findings/$f/$(date +%Y%m%d)-$(basename "$(dirname "$input")")-$crashes"
    crashes=$((crashes + 1))
  done
  echo "| $f | $(stat run_time) | $(stat execs_done) | $(stat execs_per_sec) | $(stat edges_found) | $before |" \
    "$minimized | $n | $(stat saved_crashes) | $(stat saved_hangs) |"
done
