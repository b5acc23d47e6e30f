#!/usr/bin/env bash
# The main job on the shipped default model: creates models/default.pq when it is missing (see models/README.md),
# then streams a completion from it with paretoq-run. Extra arguments go to paretoq-run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f models/default.pq ]; then
  dotnet run --project tools/ParetoQ.ModelGen -c Release -- --arch mobilellm-pro --format q2_seq --seed 1 -o models/default.pq
fi
dotnet run --project src/ParetoQ.Cli -c Release -- --model models/default.pq --prompt "Hello" --max-tokens 32 --seed 1 "$@"
