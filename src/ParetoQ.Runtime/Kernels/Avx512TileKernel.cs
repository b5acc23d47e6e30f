using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// AVX-512BW: one 64-byte load is the same chunk of all 4 rows of a tile (one 128-bit lane per row), and each 16-byte
/// activation block is broadcast to the 4 lanes. Codes (u8) × activations (s8) go through vpmaddubsw into int16, summed
/// over a unit's planes (no overflow: at most 8 planes · 2 · 7 · 127), then vpmaddwd into int32.
/// 8-bit codes are split into nibbles so vpmaddubsw cannot saturate.
/// </summary>
internal unsafe struct Avx512TileKernel<TWidth> : ITileKernel where TWidth : struct, ICodeWidth
{
    private const int ChunkStride = 64; // bytes between consecutive chunks of one tile

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
            if (count == 4)
            {
                sbyte* x0 = x.Values + (long)token0 * x.Stride + u0 * unitCols;
                Dot4(p, x0, x.Stride, unitsPerGroup, s);
            }
            else
            {
                for (int t = 0; t < count; t++)
                    Store(Dot1(p, x.Values + (long)(token0 + t) * x.Stride + u0 * unitCols, unitsPerGroup), s + t * 4);
            }
        }
    }

    // Codes of plane j (16 consecutive weights per row) of the unit at p.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Plane(byte* p, int j)
    {
        if (TWidth.Bits == 3)
        {
            var lo = Vector512.Load(p + (j >> 2) * ChunkStride).AsUInt16();
            var hi = Vector512.Load(p + 2 * ChunkStride).AsUInt16();
            // bit j of each high-bit byte lands on bit 2 of the same byte: right shift first so no bit crosses a byte
            var high = Vector512.ShiftLeft(Vector512.ShiftRightLogical(hi, j), 2).AsByte() & Vector512.Create((byte)4);
            return (Vector512.ShiftRightLogical(lo, 2 * (j & 3)).AsByte() & Vector512.Create((byte)3)) | high;
        }
        var v = Vector512.Load(p).AsUInt16();
        byte mask = (byte)((1 << TWidth.Bits) - 1);
        return Vector512.ShiftRightLogical(v, j * TWidth.Bits).AsByte() & Vector512.Create(mask);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Broadcast(sbyte* x) => Avx512F.BroadcastVector128ToVector512((int*)x).AsSByte();

    private static Vector512<int> Dot1(byte* p, sbyte* x, int units)
    {
        int planes = CodeUnits.Planes(TWidth.Bits), unitBytes = CodeUnits.UnitChunks(TWidth.Bits) * ChunkStride;
        var ones = Vector512.Create((short)1);
        var acc = Vector512<int>.Zero;
        for (int u = 0; u < units; u++, p += unitBytes, x += planes * 16)
        {
            if (TWidth.Bits == 8)
            {
                var v = Vector512.Load(p);
                var xv = Broadcast(x);
                var lo = Avx512BW.MultiplyAddAdjacent(v & Vector512.Create((byte)15), xv);
                var hi = Avx512BW.MultiplyAddAdjacent(Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & Vector512.Create((byte)15), xv);
                acc += Avx512BW.MultiplyAddAdjacent(lo, ones) + Avx512BW.MultiplyAddAdjacent(hi, Vector512.Create((short)16));
                continue;
            }
            var s16 = Vector512<short>.Zero;
            for (int j = 0; j < planes; j++) s16 += Avx512BW.MultiplyAddAdjacent(Plane(p, j), Broadcast(x + j * 16));
            acc += Avx512BW.MultiplyAddAdjacent(s16, ones);
        }
        return acc;
    }

    // Four tokens share each decoded plane: the decode is paid once per 4 dot products.
    private static void Dot4(byte* p, sbyte* x, int stride, int units, int* sums)
    {
        int planes = CodeUnits.Planes(TWidth.Bits), unitBytes = CodeUnits.UnitChunks(TWidth.Bits) * ChunkStride;
        var ones = Vector512.Create((short)1);
        Vector512<int> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int u = 0; u < units; u++, p += unitBytes, x += planes * 16)
        {
            if (TWidth.Bits == 8)
            {
                var v = Vector512.Load(p);
                var lo = v & Vector512.Create((byte)15);
                var hi = Vector512.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & Vector512.Create((byte)15);
                var sixteen = Vector512.Create((short)16);
                a0 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(lo, Broadcast(x)), ones) + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(hi, Broadcast(x)), sixteen);
                a1 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(lo, Broadcast(x + stride)), ones) + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(hi, Broadcast(x + stride)), sixteen);
                a2 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(lo, Broadcast(x + 2 * stride)), ones) + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(hi, Broadcast(x + 2 * stride)), sixteen);
                a3 += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(lo, Broadcast(x + 3 * stride)), ones) + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(hi, Broadcast(x + 3 * stride)), sixteen);
                continue;
            }
            Vector512<short> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int j = 0; j < planes; j++)
            {
                var c = Plane(p, j);
                sbyte* xj = x + j * 16;
                s0 += Avx512BW.MultiplyAddAdjacent(c, Broadcast(xj));
                s1 += Avx512BW.MultiplyAddAdjacent(c, Broadcast(xj + stride));
                s2 += Avx512BW.MultiplyAddAdjacent(c, Broadcast(xj + 2 * stride));
                s3 += Avx512BW.MultiplyAddAdjacent(c, Broadcast(xj + 3 * stride));
            }
            a0 += Avx512BW.MultiplyAddAdjacent(s0, ones);
            a1 += Avx512BW.MultiplyAddAdjacent(s1, ones);
            a2 += Avx512BW.MultiplyAddAdjacent(s2, ones);
            a3 += Avx512BW.MultiplyAddAdjacent(s3, ones);
        }
        Store(a0, sums);
        Store(a1, sums + 4);
        Store(a2, sums + 8);
        Store(a3, sums + 12);
    }

    // Sums each 128-bit lane (one row) and writes the 4 row sums.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector512<int> acc, int* dst)
    {
        var t = acc + Avx512F.Shuffle(acc, 0b10_11_00_01);
        t += Avx512F.Shuffle(t, 0b01_00_11_10);
        Avx512F.PermuteVar16x32(t, Vector512.Create(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12)).GetLower().GetLower().Store(dst);
    }
}
