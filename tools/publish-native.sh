#!/usr/bin/env bash
# Publishes the NativeAOT programs and libparetoq: tools/publish-native.sh [RID] (default linux-x64).
#
# NativeAOT compiles for one instruction-set level (IlcInstructionSet): AVX-512 code is unreachable from an x86-64-v3
# build, and an x86-64-v4 build refuses to start on a CPU without AVX-512. So linux-x64 is built at both levels and
# the best one is picked at run time:
#   artifacts/linux-x64/paretoq-run, -bench, -convert, -serve   launchers (native/launcher/launcher.c) that run
#                                      the x86-64-v4 variant on AVX-512 CPUs and the x86-64-v3 one otherwise
#   artifacts/linux-x64/x86-64-v3/, x86-64-v4/   the program variants
#   artifacts/linux-x64/libparetoq.so               x86-64-v3 (AVX2, FMA, BMI2: Haswell / Zen 1 and later)
#   artifacts/linux-x64/glibc-hwcaps/x86-64-v4/libparetoq.so   AVX-512; glibc's loader (2.33+) takes it instead on
#                                      CPUs that have x86-64-v4, for any program that finds libparetoq.so through its
#                                      search path (RUNPATH, LD_LIBRARY_PATH); the .NET binding looks there itself
# Within a level the kernels still pick their path once per process: AVX-VNNI and GFNI are checked at run time.
#   linux-arm64  one build, armv8.2-a + dotprod (sdot: Cortex-A55/A75 and every phone core since 2017). Without sdot
#                the NEON kernels cannot run at all, so it is the baseline rather than a run-time choice.
# Cross-compiling linux-arm64 from x64 needs clang, lld and the aarch64 binutils/sysroot (tools/arm64-check.sh installs
# them).
set -euo pipefail
cd "$(dirname "$0")/.."
rid="${1:-linux-x64}"
out="artifacts/$rid"
programs=(src/ParetoQ.Cli src/ParetoQ.Bench src/ParetoQ.Convert src/ParetoQ.Serve)
publish() { # publish PROJECT ISA DIR
  dotnet publish "$1" -r "$rid" -c Release -p:PublishAot=true -p:InvariantGlobalization=true \
    -p:IlcInstructionSet="$2" "${cross[@]}" -o "$3"
}
cross=()
case "$rid" in
  linux-x64)
    for level in x86-64-v3 x86-64-v4; do
      for project in "${programs[@]}"; do publish "$project" "$level" "$out/$level"; done
    done
    publish src/ParetoQ.Native x86-64-v3 "$out"
    publish src/ParetoQ.Native x86-64-v4 "$out/glibc-hwcaps/x86-64-v4"
    for program in paretoq-run paretoq-bench paretoq-convert paretoq-serve; do
      ${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror -DPROGRAM="\"$program\"" native/launcher/launcher.c -o "$out/$program"
    done ;;
  linux-arm64)
    if [ "$(uname -m)" != "aarch64" ]; then
      cross=(-p:CppCompilerAndLinker=clang -p:ObjCopyName=aarch64-linux-gnu-objcopy)
    fi
    for project in "${programs[@]}" src/ParetoQ.Native; do publish "$project" armv8.2-a%2Cdotprod "$out"; done ;;
  *) echo "publish-native.sh: unknown RID '$rid' (linux-x64 or linux-arm64)" >&2; exit 2 ;;
esac
echo "native binaries: $out/paretoq-run $out/paretoq-bench $out/paretoq-convert $out/paretoq-serve $out/libparetoq.so"
