using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// Arm64 NEON with sdot: each 16-byte chunk is one row's codes, dotted with the 16-byte activation block (s8·s8 summed
/// in 4 into int32). Codes up to 15 are valid s8 as they are; 8-bit codes are recentred (code − 128, an xor) and the
/// 128·Σx they lose is added back, so every path returns the same Σ code·x.
/// </summary>
internal unsafe struct NeonTileKernel<TWidth> : ITileKernel where TWidth : struct, ICodeWidth
{
    private const int ChunkStride = 64;

    public static void GroupedDot(in PackedMatrix w, int tile, QuantizedActivations x, int token0, int count,
        float* acc) =>
        LowBitMatMul.GroupedDotFromSums<NeonTileKernel<TWidth>>(w, tile, x, token0, count, acc);

    public static void DecodeSums(in PackedMatrix w, int tile0, int tiles, QuantizedActivations x, int token,
        int* sums) =>
        LowBitMatMul.DecodeSumsPerTile<NeonTileKernel<TWidth>>(w, tile0, tiles, x, token, sums);

    public static void Sums(in PackedMatrix w, int tile, int unitBegin, int groups, int unitsPerGroup,
        QuantizedActivations x, int token0, int count, int* sums)
    {
        int unitChunks = CodeUnits.UnitChunks(TWidth.Bits), unitCols = CodeUnits.UnitCols(TWidth.Bits);
        byte* tileCodes = w.Tile(tile);
        for (int g = 0; g < groups; g++)
        {
            int u0 = unitBegin + g * unitsPerGroup;
            byte* p = tileCodes + (long)u0 * unitChunks * ChunkStride;
            int* s = sums + g * count * 4;
            for (int t = 0; t < count; t++)
                Dot1(p, x.Values + (long)(token0 + t) * x.Stride + u0 * unitCols, unitsPerGroup, s + t * 4);
        }
    }

    // j is a literal at every call, so after inlining each shift below is an immediate (CA1857 cannot see through it).
#pragma warning disable CA1857
    /// <summary>Plane <paramref name="j"/> (a constant) of one row's chunk at p: 16 codes as s8, for activations
    /// x[16j, 16j + 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Plane(byte* p, [ConstantExpected] int j)
    {
        if (TWidth.Bits == 3)
        {
            var lo = Vector128.Load(p + (j >> 2) * ChunkStride);
            var hi = Vector128.Load(p + 2 * ChunkStride);
            var high = (j <= 2 ? Vector128.ShiftLeft(hi, 2 - j) : Vector128.ShiftRightLogical(hi, j - 2))
                & Vector128.Create((byte)4);
            return (Shifted(lo, 2 * (j & 3)) & Vector128.Create((byte)3) | high).AsSByte();
        }
        if (TWidth.Bits == 8) return (Vector128.Load(p) ^ Vector128.Create((byte)0x80)).AsSByte();
        // NEON shifts each byte on its own, so the top field needs no mask.
        var field = Shifted(Vector128.Load(p), j * TWidth.Bits);
        if ((j + 1) * TWidth.Bits == 8) return field.AsSByte();
        return (field & Vector128.Create((byte)((1 << TWidth.Bits) - 1))).AsSByte();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> Shifted(Vector128<byte> v, [ConstantExpected] int shift) =>
        shift == 0 ? v : Vector128.ShiftRightLogical(v, shift);
#pragma warning restore CA1857

    /// <summary>One row's unit into two int32 chains (even planes into a, odd into b): sdot's latency is several
    /// times its issue interval, so one chain per row left the pipes idle.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RowUnit(byte* p, sbyte* x, ref Vector128<int> a, ref Vector128<int> b)
    {
        int planes = CodeUnits.Planes(TWidth.Bits); // 8, 4, 2 or 1: a constant per width
        a = Dp.DotProduct(a, Plane(p, 0), Vector128.Load(x));
        if (planes == 1) return;
        b = Dp.DotProduct(b, Plane(p, 1), Vector128.Load(x + 16));
        if (planes == 2) return;
        a = Dp.DotProduct(a, Plane(p, 2), Vector128.Load(x + 32));
        b = Dp.DotProduct(b, Plane(p, 3), Vector128.Load(x + 48));
        if (planes == 4) return;
        a = Dp.DotProduct(a, Plane(p, 4), Vector128.Load(x + 64));
        b = Dp.DotProduct(b, Plane(p, 5), Vector128.Load(x + 80));
        a = Dp.DotProduct(a, Plane(p, 6), Vector128.Load(x + 96));
        b = Dp.DotProduct(b, Plane(p, 7), Vector128.Load(x + 112));
    }

    private static void Dot1(byte* p, sbyte* x, int units, int* sums)
    {
        int unitCols = CodeUnits.UnitCols(TWidth.Bits), unitBytes = CodeUnits.UnitChunks(TWidth.Bits) * ChunkStride;
        Vector128<int> r0 = default, r1 = default, r2 = default, r3 = default, xSum = default;
        Vector128<int> q0 = default, q1 = default, q2 = default, q3 = default;
        var ones = Vector128.Create((sbyte)1);
        for (int u = 0; u < units; u++, p += unitBytes, x += unitCols)
        {
            RowUnit(p, x, ref r0, ref q0);
            RowUnit(p + 16, x, ref r1, ref q1);
            RowUnit(p + 32, x, ref r2, ref q2);
            RowUnit(p + 48, x, ref r3, ref q3);
            if (TWidth.Bits == 8) xSum = Dp.DotProduct(xSum, ones, Vector128.Load(x));
        }
        int offset = TWidth.Bits == 8 ? 128 * AdvSimd.Arm64.AddAcross(xSum).ToScalar() : 0;
        sums[0] = AdvSimd.Arm64.AddAcross(r0 + q0).ToScalar() + offset;
        sums[1] = AdvSimd.Arm64.AddAcross(r1 + q1).ToScalar() + offset;
        sums[2] = AdvSimd.Arm64.AddAcross(r2 + q2).ToScalar() + offset;
        sums[3] = AdvSimd.Arm64.AddAcross(r3 + q3).ToScalar() + offset;
    }
}
