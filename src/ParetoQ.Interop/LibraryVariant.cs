using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace ParetoQ.Interop;

/// <summary>
/// Picks which build of libparetoq.so the binding loads. tools/publish-native.sh ships an x86-64-v3 build beside the
/// app and an AVX-512 one in glibc-hwcaps/x86-64-v4/. glibc's loader chooses between them only for libraries found
/// through its search path, and .NET opens the app's copy by absolute path, so the binding makes the same choice
/// itself. <c>PARETOQ_ISA=x86-64-v3</c> (or <c>x86-64-v4</c>) asks for a build, as it does for the programs.
/// </summary>
internal static class LibraryVariant
{
    public const string EnvironmentVariable = "PARETOQ_ISA";
    public const string Avx512Directory = "glibc-hwcaps/x86-64-v4";

    /// <summary>Installs the resolver; NativeMethods' static constructor calls it before the first P/Invoke.</summary>
    public static void Install() => NativeLibrary.SetDllImportResolver(typeof(LibraryVariant).Assembly, Resolve);

    /// <summary>Whether this process should load the AVX-512 build: the CPU has x86-64-v4's AVX-512 (F, BW, CD, DQ,
    /// VL), unless PARETOQ_ISA says otherwise.</summary>
    public static bool WantsAvx512()
    {
        string? asked = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (asked == "x86-64-v3") return false;
        if (asked == "x86-64-v4") return true;
        return RuntimeInformation.ProcessArchitecture == Architecture.X64 && OperatingSystem.IsLinux()
            && Avx512F.IsSupported && Avx512BW.IsSupported && Avx512CD.IsSupported && Avx512DQ.IsSupported
            && Avx512F.VL.IsSupported;
    }

    // Where the AVX-512 build sits: beside the app (publish-native.sh, or an app published for linux-x64 from the
    // ParetoQ.Native package), or in the package's runtimes/ folder of a portable app.
    private static readonly string[] Avx512Locations =
        [Avx512Directory, $"runtimes/linux-x64/native/{Avx512Directory}"];

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (name != "paretoq") return 0; // 0: the default probing
        if (WantsAvx512())
            foreach (string location in Avx512Locations)
            {
                string path = Path.Combine(AppContext.BaseDirectory, location, "libparetoq.so");
                if (File.Exists(path)) return NativeLibrary.Load(path);
            }
        // The default probing: libparetoq.so beside the app, or in the ParetoQ.Native package's runtimes/ folder.
        if (NativeLibrary.TryLoad(name, assembly, searchPath, out nint handle)) return handle;
        throw new DllNotFoundException("libparetoq.so was not found beside the app or in a runtimes/RID/native " +
            "folder: reference the ParetoQ.Native package too (tools/publish-native.sh for linux-x64 and " +
            "linux-arm64, then tools/pack.sh, pack it with a ParetoQ.Interop that depends on it), or copy " +
            "libparetoq.so beside the app");
    }
}
