#!/usr/bin/env bash
# Installs ParetoQ.Interop from artifacts/packages (tools/pack.sh) into a fresh console app and generates text through
# the libparetoq.so that its ParetoQ.Native dependency carries, checking that the build this CPU runs best was loaded.
# Usage: tools/package-check.sh [MODEL] (default: the shipped models/stories260K-2bit.pq).
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(realpath "${1:-models/stories260K-2bit.pq}")
feed=$PWD/artifacts/packages
version=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' Directory.Build.props)
app=$(mktemp -d)
trap 'rm -rf "$app"' EXIT
cat > "$app/nuget.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$feed" />
  </packageSources>
</configuration>
XML
cat > "$app/app.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <ImplicitUsings>enable</ImplicitUsings>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="ParetoQ.Interop" Version="$version" />
  </ItemGroup>
</Project>
XML
cat > "$app/Program.cs" <<'CS'
using ParetoQ.Interop;

using var model = ParetoQModel.Load(args[0]);
using var context = model.CreateContext(threads: 1);
var greedy = ParetoQContext.DefaultSampler with { Temperature = 0, RepeatPenalty = 1 };
var stats = context.Generate("Once upon a time", 24, piece => { Console.Write(piece); return true; }, greedy);
Console.WriteLine();
Console.WriteLine($"generated {stats.GeneratedTokens} tokens with {ParetoQModel.LibraryVersion}");
CS
# A package cache of its own: only this feed's packages, never an older copy of the same version.
export NUGET_PACKAGES="$app/packages"
(cd "$app" && dotnet run -c Release -- "$model") | tee "$app/out.txt"
grep -q "^generated [1-9][0-9]* tokens with ParetoQ.Runtime $version (abi" "$app/out.txt"
if grep -qw avx512bw /proc/cpuinfo && [ "$(uname -m)" = x86_64 ]; then grep -q "kernels avx512" "$app/out.txt"; fi
echo "package check: ParetoQ.Interop $version generated text through its native package"
