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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Plane(byte* p, int j)
    {
        if (TWidth.Bits == 3)
        {
            var lo = Vector128.Load(p + (j >> 2) * ChunkStride);
            var hi = Vector128.Load(p + 2 * ChunkStride);
            var high = Vector128.ShiftLeft(Vector128.ShiftRightLogical(hi, j) & Vector128.Create((byte)1), 2);
            return ((Vector128.ShiftRightLogical(lo, 2 * (j & 3)) & Vector128.Create((byte)3)) | high).AsSByte();
        }
        if (TWidth.Bits == 8) return (Vector128.Load(p) ^ Vector128.Create((byte)0x80)).AsSByte();
        byte mask = (byte)((1 << TWidth.Bits) - 1);
        return (Vector128.ShiftRightLogical(Vector128.Load(p), j * TWidth.Bits) & Vector128.Create(mask)).AsSByte();
    }

    private static void Dot1(byte* p, sbyte* x, int units, int* sums)
    {
        int planes = CodeUnits.Planes(TWidth.Bits), unitBytes = CodeUnits.UnitChunks(TWidth.Bits) * ChunkStride;
        Vector128<int> r0 = default, r1 = default, r2 = default, r3 = default, xSum = default;
        var ones = Vector128.Create((sbyte)1);
        for (int u = 0; u < units; u++, p += unitBytes, x += planes * 16)
        {
            for (int j = 0; j < planes; j++)
            {
                var xv = Vector128.Load(x + j * 16);
                r0 = Dp.DotProduct(r0, Plane(p, j), xv);
                r1 = Dp.DotProduct(r1, Plane(p + 16, j), xv);
                r2 = Dp.DotProduct(r2, Plane(p + 32, j), xv);
                r3 = Dp.DotProduct(r3, Plane(p + 48, j), xv);
                if (TWidth.Bits == 8) xSum = Dp.DotProduct(xSum, ones, xv);
            }
        }
        int offset = TWidth.Bits == 8 ? 128 * AdvSimd.Arm64.AddAcross(xSum).ToScalar() : 0;
        sums[0] = AdvSimd.Arm64.AddAcross(r0).ToScalar() + offset;
        sums[1] = AdvSimd.Arm64.AddAcross(r1).ToScalar() + offset;
        sums[2] = AdvSimd.Arm64.AddAcross(r2).ToScalar() + offset;
        sums[3] = AdvSimd.Arm64.AddAcross(r3).ToScalar() + offset;
    }
}
