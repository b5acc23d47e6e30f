#!/usr/bin/env bash
# The main job on the shipped default model, models/mobilellm-7m-2bit.pq (2-bit ParetoQ QAT, trained by
# tools/qat-experiment.sh; see models/README.md): streams a completion with paretoq-run. Extra arguments go to paretoq-run.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet run --project src/ParetoQ.Cli -c Release -- --model models/mobilellm-7m-2bit.pq --prompt "The president said that" --max-tokens 48 --seed 1 "$@"
