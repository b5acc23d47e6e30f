#!/usr/bin/env bash
# Writes the default model (deterministic, random weights, MobileLLM-Pro layout, 2-bit projections) to
# models/default-test-model.pq and runs greedy decoding on it with the engine.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p models
dotnet run --project tools/ParetoQ.ModelGen -c Release -- --arch mobilellm-pro --format q2_seq --seed 1 --tokens 32 -o models/default-test-model.pq --force "$@"
