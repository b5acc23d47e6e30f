#!/usr/bin/env bash
# The main job on the shipped default model, models/stories260K-2bit.pq (stories260K, its authors' TinyStories model,
# ParetoQ 2-bit QAT by tools/qat-stories260k.sh; see models/README.md): streams a story with paretoq-run.
# Arguments go to paretoq-run and replace the defaults below (it takes each option once), e.g.
#   tools/run-default.sh --model models/stories260K-ternary.pq --prompt "The dog" --temperature 0
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
# given NAME...: whether any of these options is among the arguments (as "--name value" or "--name=value")
given() {
  local a o
  for a in ${args[@]+"${args[@]}"}; do for o in "$@"; do case $a in "$o" | "$o="* | "$o:"*) return 0 ;; esac; done; done
  return 1
}
defaults=()
given --model -m || defaults+=(--model models/stories260K-2bit.pq)
given --prompt -p --file -f --chat --perplexity || defaults+=(--prompt "Once upon a time")
given --max-tokens -n || defaults+=(--max-tokens 200)
given --seed || defaults+=(--seed 1)
dotnet run --project src/ParetoQ.Cli -c Release -- ${defaults[@]+"${defaults[@]}"} ${args[@]+"${args[@]}"}
