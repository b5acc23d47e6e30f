#!/usr/bin/env bash
# The main job on the shipped default model, models/stories260K-2bit.pq (stories260K, its authors' TinyStories model,
# ParetoQ 2-bit QAT by tools/qat-stories260k.sh; see models/README.md): streams a story with paretoq-run. Extra
# arguments go to paretoq-run.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet run --project src/ParetoQ.Cli -c Release -- --model models/stories260K-2bit.pq --prompt "Once upon a time" --max-tokens 200 --seed 1 "$@"
