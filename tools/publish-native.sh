#!/usr/bin/env bash
# Publishes paretoq-run as a NativeAOT binary: tools/publish-native.sh [RID] (default linux-x64) → artifacts/RID/paretoq-run
# For linux-arm64 from x64 (cross-compiling needs clang, lld and the aarch64 binutils/sysroot):
#   apt-get install -y clang lld gcc-aarch64-linux-gnu libc6-dev-arm64-cross
#   tools/publish-native.sh linux-arm64
set -euo pipefail
cd "$(dirname "$0")/.."
rid="${1:-linux-x64}"
extra=()
if [ "$rid" = "linux-arm64" ] && [ "$(uname -m)" != "aarch64" ]; then
  extra=(-p:CppCompilerAndLinker=clang -p:ObjCopyName=aarch64-linux-gnu-objcopy)
fi
dotnet publish src/ParetoQ.Cli -r "$rid" -c Release -p:PublishAot=true -p:InvariantGlobalization=true "${extra[@]}" -o "artifacts/$rid"
echo "native binary: artifacts/$rid/paretoq-run"
