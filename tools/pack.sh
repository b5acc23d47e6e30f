#!/usr/bin/env bash
# Packs every NuGet package into artifacts/packages: the libraries, the programs as .NET tools, and ParetoQ.Native
# (libparetoq.so for linux-x64 and linux-arm64, from artifacts/: run tools/publish-native.sh for both RIDs first).
# ParetoQ.Interop is packed depending on ParetoQ.Native, so an app that installs it gets the native library.
set -euo pipefail
cd "$(dirname "$0")/.."
out=artifacts/packages
mkdir -p "$out"
dotnet pack tools/packaging/ParetoQ.Native.csproj -c Release -o "$out"
dotnet pack ParetoQ.Runtime.sln -c Release -o "$out" -p:ParetoQNativeDependency=true \
  -p:RestoreAdditionalProjectSources="$PWD/$out"
ls "$out"
