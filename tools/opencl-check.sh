#!/usr/bin/env bash
# The accelerator path on a real OpenCL driver stack (docs/ARCHITECTURE.md, "The OpenCL path on pocl"):
# 1. Debian 12's pocl 3.1, with the ICD loader's runtime package only: ILGPU must list its device (through the
#    engine's libOpenCL.so.1 fallback) and --device opencl must say in one line why ILGPU cannot drive it.
# 2. pocl 6.0, built from Debian 13's source against Debian 12's LLVM 16 into .cache/: a CPU device with the generic
#    address space, on which the OpenCL tests run the kernel and whole-model checks with ILGPU's OpenCL C compiled by
#    a real compiler, and paretoq-run generates the default model's greedy text.
# Expects the solution built (Debug, as `dotnet test` leaves it).
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
install() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" > /dev/null; }
missing() { for p in "$@"; do dpkg -s "$p" > /dev/null 2>&1 || echo "$p"; done; }
$sudo apt-get update -qq
install pocl-opencl-icd ocl-icd-libopencl1

mkdir -p build
bench=(dotnet run --project src/ParetoQ.Bench --no-build -- devices)
run=(dotnet run --project src/ParetoQ.Cli --no-build -- --model models/stories260K-2bit.pq --prompt "Once upon a time"
  --max-tokens 24 --temperature 0)

echo "== Debian's pocl 3.1"
OCL_ICD_VENDORS=/etc/OpenCL/vendors "${bench[@]}" | tee build/opencl-devices.txt
grep -q '^opencl .*; unusable: it has no generic address space' build/opencl-devices.txt
if OCL_ICD_VENDORS=/etc/OpenCL/vendors "${run[@]}" --device opencl 2> build/opencl-run.txt; then exit 1; fi
cat build/opencl-run.txt
grep -q "ILGPU cannot drive" build/opencl-run.txt
[ "$(wc -l < build/opencl-run.txt)" -eq 1 ]

echo "== pocl 6.0"
version=6.0
sha256=de9710223fc1855f833dbbf42ea2681e06aa8ec0464f0201104dc80a74dfd1f2
prefix=$PWD/.cache/pocl-$version
if [ ! -e "$prefix/etc/OpenCL/vendors/pocl.icd" ]; then
  build_deps=(llvm-16-dev clang-16 libclang-16-dev libclang-cpp16-dev libhwloc-dev ocl-icd-dev ocl-icd-opencl-dev
    pkg-config make)
  mapfile -t added < <(missing "${build_deps[@]}")
  [ ${#added[@]} -eq 0 ] || install "${added[@]}"
  src=.cache/pocl-src
  rm -rf "$src" && mkdir -p "$src"
  curl -sSf --retry 3 -o "$src/pocl.tar.gz" "http://deb.debian.org/debian/pool/main/p/pocl/pocl_$version.orig.tar.gz"
  echo "$sha256  $src/pocl.tar.gz" | sha256sum -c --quiet
  tar xzf "$src/pocl.tar.gz" -C "$src"
  # One kernel library for x86-64-v3, which every CI machine runs; no tests, examples or SPIR-V.
  # Configured from inside the build folder: pocl's compiler probes write their objects to the working directory.
  mkdir -p "$src/build"
  (cd "$src/build" && cmake -S ../pocl-$version -B . -DCMAKE_BUILD_TYPE=Release -DWITH_LLVM_CONFIG=/usr/bin/llvm-config-16 \
    -DENABLE_ICD=ON -DENABLE_TESTS=OFF -DENABLE_EXAMPLES=OFF -DENABLE_SPIRV=OFF -DENABLE_LOADABLE_DRIVERS=OFF \
    -DLLC_HOST_CPU=x86-64-v3 -DCMAKE_INSTALL_PREFIX="$prefix" -DPOCL_INSTALL_ICD_VENDORDIR="$prefix/etc/OpenCL/vendors" \
    > ../build.log 2>&1) || { tail -n 40 "$src/build.log"; exit 1; }
  cmake --build "$src/build" -j "$(nproc)" >> "$src/build.log" 2>&1 || { tail -n 40 "$src/build.log"; exit 1; }
  cmake --install "$src/build" > /dev/null
  rm -rf "$src"
  # The build needs the loader's unversioned link; the runs below must work without it, as users' machines do.
  if printf '%s\n' "${added[@]}" | grep -qx ocl-icd-opencl-dev; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq ocl-icd-opencl-dev > /dev/null
  fi
fi
export OCL_ICD_VENDORS=$prefix/etc/OpenCL/vendors
"${bench[@]}" | tee build/opencl-devices.txt
grep '^opencl ' build/opencl-devices.txt | grep -vq 'unusable'
"${run[@]}" --device opencl | tee build/opencl-text.txt
"${run[@]}" --device cpu --exact | tee build/cpu-text.txt
cmp build/opencl-text.txt build/cpu-text.txt
dotnet test tests/ParetoQ.Runtime.Tests --no-build --filter "FullyQualifiedName~OpenClTests" \
  --logger "console;verbosity=normal" | tee build/opencl-tests.txt
# Every OpenCL test ran: none was skipped for want of a device.
grep -Eq '^ +Skipped: +[1-9]' build/opencl-tests.txt && { echo "OpenCL tests were skipped on pocl $version" >&2; exit 1; }
true
