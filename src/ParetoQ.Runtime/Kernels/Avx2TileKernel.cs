using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ParetoQ.Runtime.Kernels;

/// <summary>Which 256-bit multiply the AVX2 kernel uses.</summary>
internal interface IMultiply256
{
    /// <summary>True: AVX-VNNI vpdpbusd (u8·s8 summed in 4 straight into int32). False: vpmaddubsw +
    /// vpmaddwd.</summary>
    static abstract bool Vnni { get; }
}
internal struct UseVnni : IMultiply256 { public static bool Vnni => true; }
internal struct UseMaddubs : IMultiply256 { public static bool Vnni => false; }

/// <summary>
/// AVX2 and AVX-VNNI: a 64-byte chunk group of a tile is two 32-byte halves (rows 0–1, rows 2–3), one 128-bit lane per
/// row, against a broadcast 16-byte activation block. The maddubs variant sums a unit's planes in int16 before
/// widening, as the AVX-512 kernel does; the VNNI variant accumulates each plane directly in int32.
/// </summary>
internal unsafe struct Avx2TileKernel<TWidth, TMultiply> : ITileKernel
    where TWidth : struct, ICodeWidth where TMultiply : struct, IMultiply256
{
    private const int ChunkStride = 64;

    public static void GroupedDot(in PackedMatrix w, int tile, QuantizedActivations x, int token0, int count,
        float* acc) =>
        LowBitMatMul.GroupedDotFromSums<Avx2TileKernel<TWidth, TMultiply>>(w, tile, x, token0, count, acc);

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
            for (int t = 0; t < count; t += 2)
            {
                sbyte* xt = x.Values + (long)(token0 + t) * x.Stride + u0 * unitCols;
                if (t + 1 < count) Dot2(p, xt, x.Stride, unitsPerGroup, s + t * 4);
                else Dot1(p, xt, unitsPerGroup, s + t * 4);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Plane(byte* p, int j)
    {
        if (TWidth.Bits == 3)
        {
            var lo = Vector256.Load(p + (j >> 2) * ChunkStride).AsUInt16();
            var hi = Vector256.Load(p + 2 * ChunkStride).AsUInt16();
            var high = Vector256.ShiftLeft(Vector256.ShiftRightLogical(hi, j), 2).AsByte() & Vector256.Create((byte)4);
            return (Vector256.ShiftRightLogical(lo, 2 * (j & 3)).AsByte() & Vector256.Create((byte)3)) | high;
        }
        var v = Vector256.Load(p).AsUInt16();
        byte mask = (byte)((1 << TWidth.Bits) - 1);
        return Vector256.ShiftRightLogical(v, j * TWidth.Bits).AsByte() & Vector256.Create(mask);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Broadcast(sbyte* x) => Avx2.BroadcastVector128ToVector256(x);

    // acc += Σ over one unit's planes of code·x (codes at p: one half-tile, 2 rows).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Unit(Vector256<int> acc, byte* p, sbyte* x)
    {
        var ones = Vector256.Create((short)1);
        if (TWidth.Bits == 8)
        {
            var v = Vector256.Load(p);
            if (TMultiply.Vnni) return AvxVnni.MultiplyWideningAndAdd(acc, v, Broadcast(x));
            var lo = Avx2.MultiplyAddAdjacent(v & Vector256.Create((byte)15), Broadcast(x));
            var hi = Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(v.AsUInt16(),
                4).AsByte() & Vector256.Create((byte)15), Broadcast(x));
            return acc + Avx2.MultiplyAddAdjacent(lo, ones) + Avx2.MultiplyAddAdjacent(hi, Vector256.Create((short)16));
        }
        int planes = CodeUnits.Planes(TWidth.Bits);
        if (TMultiply.Vnni)
        {
            for (int j = 0; j < planes; j++) acc = AvxVnni.MultiplyWideningAndAdd(acc, Plane(p, j),
                Broadcast(x + j * 16));
            return acc;
        }
        var s16 = Vector256<short>.Zero;
        for (int j = 0; j < planes; j++) s16 += Avx2.MultiplyAddAdjacent(Plane(p, j), Broadcast(x + j * 16));
        return acc + Avx2.MultiplyAddAdjacent(s16, ones);
    }

    private static void Dot1(byte* p, sbyte* x, int units, int* sums)
    {
        int unitBytes = CodeUnits.UnitChunks(TWidth.Bits) * ChunkStride, unitCols = CodeUnits.UnitCols(TWidth.Bits);
        Vector256<int> rows01 = default, rows23 = default;
        for (int u = 0; u < units; u++, p += unitBytes, x += unitCols)
        {
            rows01 = Unit(rows01, p, x);
            rows23 = Unit(rows23, p + 32, x);
        }
        Store(rows01, sums);
        Store(rows23, sums + 2);
    }

    // Two tokens per pass: each half-tile load serves both.
    private static void Dot2(byte* p, sbyte* x, int stride, int units, int* sums)
    {
        int unitBytes = CodeUnits.UnitChunks(TWidth.Bits) * ChunkStride, unitCols = CodeUnits.UnitCols(TWidth.Bits);
        Vector256<int> a01 = default, a23 = default, b01 = default, b23 = default;
        for (int u = 0; u < units; u++, p += unitBytes, x += unitCols)
        {
            a01 = Unit(a01, p, x);
            a23 = Unit(a23, p + 32, x);
            b01 = Unit(b01, p, x + stride);
            b23 = Unit(b23, p + 32, x + stride);
        }
        Store(a01, sums);
        Store(a23, sums + 2);
        Store(b01, sums + 4);
        Store(b23, sums + 6);
    }

    // Sums each 128-bit lane (one row) and writes the 2 row sums.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector256<int> acc, int* dst)
    {
        var t = acc + Avx2.Shuffle(acc, 0b10_11_00_01);
        t += Avx2.Shuffle(t, 0b01_00_11_10);
        dst[0] = t.ToScalar();
        dst[1] = t.GetUpper().ToScalar();
    }
}
