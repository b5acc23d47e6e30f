#!/usr/bin/env bash
# Publishes the NativeAOT programs and libparetoq: tools/publish-native.sh [RID] (default linux-x64) →
# artifacts/RID/{paretoq-run,paretoq-bench,paretoq-convert,libparetoq.so}
#
# Instruction-set baselines (IlcInstructionSet), chosen so one binary runs on every CPU of its class while the kernels
# still pick their path at run time:
#   linux-x64    x86-64-v3 (AVX2, FMA, BMI2: Haswell / Zen 1 and later). AVX-VNNI is checked at run time on top of it.
#                NativeAOT cannot reach AVX-512 from a v3 baseline; on AVX-512 machines publish with
#                PARETOQ_X64_ISA=x86-64-v4 (that binary refuses to start on CPUs without AVX-512).
#   linux-arm64  armv8.2-a + dotprod (sdot: Cortex-A55/A75 and every phone core since 2017). Without sdot the NEON
#                kernels cannot run at all, so it is the baseline rather than a run-time choice.
# Cross-compiling linux-arm64 from x64 needs clang, lld and the aarch64 binutils/sysroot (tools/arm64-check.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
rid="${1:-linux-x64}"
extra=()
case "$rid" in
  linux-x64) extra=(-p:IlcInstructionSet="${PARETOQ_X64_ISA:-x86-64-v3}") ;;
  linux-arm64)
    extra=(-p:IlcInstructionSet=armv8.2-a%2Cdotprod)
    if [ "$(uname -m)" != "aarch64" ]; then
      extra+=(-p:CppCompilerAndLinker=clang -p:ObjCopyName=aarch64-linux-gnu-objcopy)
    fi ;;
esac
for project in src/ParetoQ.Cli src/ParetoQ.Bench src/ParetoQ.Convert src/ParetoQ.Native; do
  dotnet publish "$project" -r "$rid" -c Release -p:PublishAot=true -p:InvariantGlobalization=true "${extra[@]}" -o "artifacts/$rid"
done
echo "native binaries: artifacts/$rid/paretoq-run artifacts/$rid/paretoq-bench artifacts/$rid/paretoq-convert artifacts/$rid/libparetoq.so"
