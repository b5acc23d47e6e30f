using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace ParetoQ.Runtime.Kernels;

/// <summary>An instruction-set path for the integer matmul kernels, ordered from slowest to fastest on its
/// architecture.</summary>
public enum KernelPath
{
    /// <summary>Plain loops over unpacked codes: the reference every other path must match exactly.</summary>
    Scalar,
    /// <summary>x86 AVX2: 256-bit <c>vpmaddubsw</c> + <c>vpmaddwd</c>.</summary>
    Avx2,
    /// <summary>x86 AVX-VNNI: 256-bit <c>vpdpbusd</c>.</summary>
    AvxVnni,
    /// <summary>x86 AVX-512BW: 512-bit <c>vpmaddubsw</c> + <c>vpmaddwd</c> (.NET exposes no 512-bit VNNI), bit fields
    /// unpacked by shift and mask.</summary>
    Avx512,
    /// <summary>AVX-512BW with GFNI: each bit field unpacked by one <c>vgf2p8affineqb</c>.</summary>
    Avx512Gfni,
    /// <summary>Arm64 NEON with the dot-product extension (<c>sdot</c>).</summary>
    Neon,
}

/// <summary>
/// Picks the kernel path once per process: the fastest one the CPU supports, as timed on this machine and cached per
/// CPU model (<see cref="KernelChoice"/>), unless the environment variable <c>PARETOQ_KERNELS</c> (scalar, avx2, avxvnni,
/// avx512, avx512gfni, neon) asks for another supported one.
/// </summary>
public static class KernelDispatch
{
    public const string EnvironmentVariable = "PARETOQ_KERNELS";

    public static bool IsSupported(KernelPath path) => path switch
    {
        KernelPath.Scalar => true,
        KernelPath.Avx2 => Avx2.IsSupported,
        KernelPath.AvxVnni => Avx2.IsSupported && AvxVnni.IsSupported,
        KernelPath.Avx512 => Avx512BW.IsSupported && Avx512F.IsSupported,
        KernelPath.Avx512Gfni => Avx512BW.IsSupported && Avx512F.IsSupported && Gfni.V512.IsSupported,
        KernelPath.Neon => AdvSimd.Arm64.IsSupported && Dp.IsSupported,
        _ => false,
    };

    /// <summary>Every supported path, slowest first.</summary>
    public static IReadOnlyList<KernelPath> Supported { get; } =
        Enum.GetValues<KernelPath>().Where(IsSupported).ToArray();

    /// <summary>The widest path this CPU supports: what the instruction sets alone suggest.</summary>
    public static KernelPath Widest { get; } = PickWidest();

    /// <summary>The fastest path this CPU supports, measured once per CPU model (<see cref="KernelChoice"/>).</summary>
    public static KernelPath Best => s_best ??= KernelChoice.Choose(KernelChoice.DefaultCachePath);

    private static KernelPath? s_best;

    /// <summary>The path used when none is asked for: <see cref="Best"/>, or the one named by
    /// <c>PARETOQ_KERNELS</c>.</summary>
    /// <exception cref="ArgumentException">PARETOQ_KERNELS names no path.</exception>
    /// <exception cref="NotSupportedException">PARETOQ_KERNELS names a path this CPU lacks.</exception>
    public static KernelPath Default => s_default ??= FromEnvironment();

    private static KernelPath? s_default;

    public static string Name(KernelPath path) => path.ToString().ToLowerInvariant();

    public static bool TryParse(string name, out KernelPath path)
    {
        foreach (var p in Enum.GetValues<KernelPath>())
        {
            if (string.Equals(Name(p), name, StringComparison.OrdinalIgnoreCase)) { path = p; return true; }
        }
        path = default;
        return false;
    }

    /// <summary>Parses a path name and checks that this CPU runs it; the message names the problem.</summary>
    public static KernelPath Parse(string name)
    {
        if (!TryParse(name, out var path))
            throw new ArgumentException($"unknown kernel path '{name}' (expected one of: {string.Join(", ", Enum.GetValues<KernelPath>().Select(Name))})");
        if (!IsSupported(path))
            throw new NotSupportedException($"kernel path '{Name(path)}' is not supported by this CPU (supported: {string.Join(", ", Supported.Select(Name))})");
        return path;
    }

    private static KernelPath PickWidest()
    {
        // AVX-512 at 512 bits beats 256-bit VNNI on this kind of load: twice the width per instruction for one extra
        // vpmaddwd.
        foreach (var p in new[]
            { KernelPath.Avx512Gfni, KernelPath.Avx512, KernelPath.AvxVnni, KernelPath.Avx2, KernelPath.Neon })
            if (IsSupported(p)) return p;
        return KernelPath.Scalar;
    }

    private static KernelPath FromEnvironment()
    {
        string? value = Environment.GetEnvironmentVariable(EnvironmentVariable);
        return string.IsNullOrWhiteSpace(value) ? Best : Parse(value.Trim());
    }
}
