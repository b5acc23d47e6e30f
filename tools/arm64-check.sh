#!/usr/bin/env bash
# Cross-compiles the kernel suite, paretoq-bench and libparetoq to linux-arm64 with NativeAOT and runs them under qemu:
# the NEON/sdot kernels against the scalar reference, a tiny whole-model benchmark as a smoke test, and the C API
# tests (native/tests/test_api.c, cross-compiled) against the arm64 libparetoq.so. Pass a byte-level-vocabulary model
# for the C tests (tools/ParetoQ.ModelGen writes one; default: build/byte-level.pq).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v clang >/dev/null || need+=(clang)
command -v ld.lld >/dev/null || need+=(lld)
command -v aarch64-linux-gnu-objcopy >/dev/null || need+=(binutils-aarch64-linux-gnu)
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
[ -d /usr/aarch64-linux-gnu/lib ] || need+=(libc6-dev-arm64-cross)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
isa=(-p:IlcInstructionSet=armv8.2-a%2Cdotprod -p:CppCompilerAndLinker=clang -p:ObjCopyName=aarch64-linux-gnu-objcopy)
out=artifacts/linux-arm64
dotnet publish tests/ParetoQ.KernelCheck -r linux-arm64 -c Release -p:PublishAot=true -p:InvariantGlobalization=true "${isa[@]}" -o "$out"
dotnet publish src/ParetoQ.Bench -r linux-arm64 -c Release -p:PublishAot=true -p:InvariantGlobalization=true "${isa[@]}" -o "$out"
dotnet publish src/ParetoQ.Native -r linux-arm64 -c Release -p:PublishAot=true -p:InvariantGlobalization=true "${isa[@]}" -o "$out"
run() { qemu-aarch64-static -L /usr/aarch64-linux-gnu "$@"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run "$out/paretoq-kernel-check" > "$tmp/kernels.txt" || true
cat "$tmp/kernels.txt"
head -n 1 "$tmp/kernels.txt" | grep -q neon || { echo "the NEON path did not run under qemu" >&2; exit 1; }
tail -n 1 "$tmp/kernels.txt" | grep -Eq '^[1-9][0-9]* passed, 0 failed$' || { echo "arm64 kernel suite failed" >&2; exit 1; }
run "$out/paretoq-bench" model --preset tiny --formats q2_seq,q4_g32 --prompts 16 --decode 4 --bandwidth 1 --dir "$tmp"
aarch64-linux-gnu-gcc -std=c11 -O1 -Wall -Wextra -Werror -Inative/include native/tests/test_api.c -o "$tmp/test_api" -L"$out" -lparetoq -lpthread
# Memory is checked on x64 only: under qemu the resident size is mostly qemu's own, ever-growing translation cache.
PARETOQ_STRESS_NO_MEMORY_CHECK=1 LD_LIBRARY_PATH="$PWD/$out" run "$tmp/test_api" "${1:-build/byte-level.pq}"
