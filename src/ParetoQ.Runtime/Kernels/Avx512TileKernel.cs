using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// AVX-512BW: one 64-byte load is the same chunk of all 4 rows of a tile (one 128-bit lane per row), and each 16-byte
/// activation block is read already broadcast to the 4 lanes (QuantizedActivations.Wide). Codes (u8) × activations
/// (s8) go through vpmaddubsw into int16, summed over a batch of units in two chains (sized so int16 cannot overflow),
/// then vpmaddwd into int32.
/// 8-bit codes are split into nibbles so vpmaddubsw cannot saturate.
/// <typeparamref name="TUnpack"/> says whether bit fields come out with GFNI's affine transform or with shift and mask.
/// It is a type, not a run-time <c>Gfni.IsSupported</c> test, because NativeAOT builds check GFNI at run time: the
/// test then stays in every unpack, the inliner gives up on the 4-token loop, and its GEMM ran 2–4× slower.
/// </summary>
internal unsafe struct Avx512TileKernel<TWidth, TUnpack> : ITileKernel
    where TWidth : struct, ICodeWidth where TUnpack : struct, IBitUnpack
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
                sbyte* x0 = x.Wide + ((long)token0 * x.Stride + u0 * unitCols) * Wide;
                Dot4(p, x0, x.Stride * Wide, unitsPerGroup, s);
            }
            else
            {
                for (int t = 0; t < count; t++)
                    Store(Dot1(p, x.Wide + ((long)(token0 + t) * x.Stride + u0 * unitCols) * Wide, unitsPerGroup),
                        s + t * 4);
            }
        }
    }

    /// <summary>
    /// Four tiles in turn, their row sums reduced together: the per-tile shuffles, the call and the loop constants were
    /// a third of a 1280-column GEMV's time in L1 (docs/BENCHMARKS.md). One copy of the loop runs every tile: with a
    /// copy per tile (four load instructions, each seeing every fourth tile) cold GEMV ran at half the rate, as the
    /// core's per-instruction stride prefetcher lost the stream at every tile.
    /// </summary>
    public static void DecodeSums(in PackedMatrix w, int tile0, int tiles, QuantizedActivations x, int token,
        int* sums)
    {
        int units = w.Layout.PaddedCols / CodeUnits.UnitCols(TWidth.Bits);
        sbyte* xt = x.Wide + (long)token * x.Stride * Wide;
        byte* p = w.Tile(tile0);
        long tileBytes = w.TileBytes;
        Vector512<int> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int t = 0; t < tiles; t++, p += tileBytes)
        {
            var lanes = Dot1(p, xt, units);
            if (t == 0) a0 = lanes;
            else if (t == 1) a1 = lanes;
            else if (t == 2) a2 = lanes;
            else a3 = lanes;
        }
        if (tiles == LowBitMatMul.DecodeTiles) LaneSumsOfFour(a0, a1, a2, a3).Store(sums);
        else for (int t = 0; t < tiles; t++) Store(t == 0 ? a0 : t == 1 ? a1 : a2, sums + t * 4);
    }

    private const int Wide = QuantizedActivations.WideCopies; // x points into QuantizedActivations.Wide

    /// <summary>Activation block <paramref name="k"/> (values 16k..16k+15 from x) in all four 128-bit lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Block(sbyte* x, int k) => Vector512.Load(x + 64 * k);

    public static void GroupedDot(in PackedMatrix w, int tile, QuantizedActivations x, int token0, int count,
        float* acc)
    {
        var layout = w.Layout;
        if (TWidth.Bits != 4 || !LowBitMatMul.IsNibbleGroup32(w))
        {
            LowBitMatMul.GroupedDotFromSums<Avx512TileKernel<TWidth, TUnpack>>(w, tile, x, token0, count, acc);
            return;
        }
        // 4-bit, one group per 32-weight unit. Four groups at a time: their lane sums are transposed into one
        // (group, row) vector, offset-corrected and scaled in a few instructions instead of 16 scalar epilogues.
        int groups = layout.GroupsPerRow;
        var ones = Vector512.Create((short)1);
        var expand = Vector512.Create(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        int* tail = stackalloc int[4];
        for (int t = 0; t < count; t++)
        {
            byte* p = w.Tile(tile);
            float* scales = w.Scales + (long)tile * groups * 4;
            sbyte* xt = x.Wide + (long)(token0 + t) * x.Stride * Wide;
            int* xg = x.GroupSums + (long)(token0 + t) * x.GroupsPerToken;
            var sum = Vector128<float>.Zero;
            int g = 0;
            for (; g + 4 <= groups; g += 4, p += 4 * ChunkStride, xt += 128 * Wide)
            {
                var a0 = GroupLanes(p, xt, ones);
                var a1 = GroupLanes(p + ChunkStride, xt + 32 * Wide, ones);
                var a2 = GroupLanes(p + 2 * ChunkStride, xt + 64 * Wide, ones);
                var a3 = GroupLanes(p + 3 * ChunkStride, xt + 96 * Wide, ones);
                var s = LaneSumsOfFour(a0, a1, a2, a3);
                var xs = Avx512F.PermuteVar16x32(Avx512F.BroadcastVector128ToVector512(xg + g), expand);
                var terms = Vector512.Load(scales + g * 4) * Vector512.ConvertToSingle(s - (xs << 3));
                sum += terms.GetLower().GetLower();
                sum += terms.GetLower().GetUpper();
                sum += terms.GetUpper().GetLower();
                sum += terms.GetUpper().GetUpper();
            }
            for (; g < groups; g++, p += ChunkStride, xt += 32 * Wide)
            {
                Store(GroupLanes(p, xt, ones), tail);
                var d = Vector128.Load(tail) - Vector128.Create(xg[g] << 3);
                sum += Vector128.Load(scales + g * 4) * Vector128.ConvertToSingle(d);
            }
            sum.Store(acc + t * 4);
        }
    }

    // One 32-weight group of 4 rows: int32 lanes, four partial sums per row.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> GroupLanes(byte* p, sbyte* x, Vector512<short> ones)
    {
        var v = Vector512.Load(p);
        var s16 = Avx512BW.MultiplyAddAdjacent(Plane(v, 0), Block(x, 0)) + Avx512BW.MultiplyAddAdjacent(Plane(v, 4),
            Block(x, 1));
        return Avx512BW.MultiplyAddAdjacent(s16, ones);
    }

    // Units whose int16 partial sums may be added before widening: each of the two chains gains at most
    // (planes / 2) · 2 · maxCode · 127 per unit, which must stay below 32767.
    // (A conditional rather than a switch: NativeAOT inlines it, as the JIT does, instead of calling it per batch.)
    private static int BatchUnits
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => TWidth.Bits <= 2 ? 16 : TWidth.Bits == 3 ? 4 : TWidth.Bits == 4 ? 8 : 1;
    }

    // s0, s1 += this unit's code·x products (two chains for instruction-level parallelism), shifts as constants.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Unit(byte* p, sbyte* x, ref Vector512<short> s0, ref Vector512<short> s1)
    {
        if (TWidth.Bits == 3)
        {
            var lo0 = Vector512.Load(p);
            var lo1 = Vector512.Load(p + ChunkStride);
            var hi = Vector512.Load(p + 2 * ChunkStride);
            // low two bits from lo0/lo1, high bit j of hi moved to bit 2 of the same byte
            s0 += Avx512BW.MultiplyAddAdjacent(Field(lo0, 0, 2, 0) | Field(hi, 0, 1, 2), Block(x, 0));
            s1 += Avx512BW.MultiplyAddAdjacent(Field(lo0, 2, 2, 0) | Field(hi, 1, 1, 2), Block(x, 1));
            s0 += Avx512BW.MultiplyAddAdjacent(Field(lo0, 4, 2, 0) | Field(hi, 2, 1, 2), Block(x, 2));
            s1 += Avx512BW.MultiplyAddAdjacent(Field(lo0, 6, 2, 0) | Field(hi, 3, 1, 2), Block(x, 3));
            s0 += Avx512BW.MultiplyAddAdjacent(Field(lo1, 0, 2, 0) | Field(hi, 4, 1, 2), Block(x, 4));
            s1 += Avx512BW.MultiplyAddAdjacent(Field(lo1, 2, 2, 0) | Field(hi, 5, 1, 2), Block(x, 5));
            s0 += Avx512BW.MultiplyAddAdjacent(Field(lo1, 4, 2, 0) | Field(hi, 6, 1, 2), Block(x, 6));
            s1 += Avx512BW.MultiplyAddAdjacent(Field(lo1, 6, 2, 0) | Field(hi, 7, 1, 2), Block(x, 7));
            return;
        }
        var v = Vector512.Load(p);
        if (TWidth.Bits == 2)
        {
            s0 += Avx512BW.MultiplyAddAdjacent(Plane(v, 0), Block(x, 0));
            s1 += Avx512BW.MultiplyAddAdjacent(Plane(v, 2), Block(x, 1));
            s0 += Avx512BW.MultiplyAddAdjacent(Plane(v, 4), Block(x, 2));
            s1 += Avx512BW.MultiplyAddAdjacent(Plane(v, 6), Block(x, 3));
        }
        else if (TWidth.Bits == 4)
        {
            s0 += Avx512BW.MultiplyAddAdjacent(Plane(v, 0), Block(x, 0));
            s1 += Avx512BW.MultiplyAddAdjacent(Plane(v, 4), Block(x, 1));
        }
        else if (TWidth.Bits == 1)
        {
            s0 += Avx512BW.MultiplyAddAdjacent(Plane(v, 0), Block(x, 0));
            s1 += Avx512BW.MultiplyAddAdjacent(Plane(v, 1), Block(x, 1));
            s0 += Avx512BW.MultiplyAddAdjacent(Plane(v, 2), Block(x, 2));
            s1 += Avx512BW.MultiplyAddAdjacent(Plane(v, 3), Block(x, 3));
            s0 += Avx512BW.MultiplyAddAdjacent(Plane(v, 4), Block(x, 4));
            s1 += Avx512BW.MultiplyAddAdjacent(Plane(v, 5), Block(x, 5));
            s0 += Avx512BW.MultiplyAddAdjacent(Plane(v, 6), Block(x, 6));
            s1 += Avx512BW.MultiplyAddAdjacent(Plane(v, 7), Block(x, 7));
        }
    }

    /// <summary>The code of width Bits starting at bit <paramref name="shift"/> of every byte.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Plane(Vector512<byte> v, [ConstantExpected] int shift)
        => Field(v, shift, TWidth.Bits, 0);

    /// <summary>
    /// Bits [from, from + count) of every byte moved to [to, to + count), the other bits zero. With GFNI, one affine
    /// transform does the shift and the mask: result bit i is the parity of matrix byte (7 − i) ANDed with the input,
    /// so byte (7 − i) holds the one source bit. Otherwise a 16-bit shift, then a byte mask (no bit crosses a byte once
    /// masked).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Field(Vector512<byte> v, [ConstantExpected] int from, int count,
        [ConstantExpected] int to)
    {
        var mask = Vector512.Create((byte)(((1 << count) - 1) << to));
        if (from == to) return v & mask;
        if (typeof(TUnpack) == typeof(UseGfni))
        {
            // Source bit from + i goes to matrix bit 8·(7 − to − i) + from + i = lowest + 7·(count − 1 − i): a run of
            // bits 7 apart, written without a loop so the inliner sees a few constant operations.
            int lowest = 56 + from - 8 * to - 7 * (count - 1);
            ulong matrix = (1UL << lowest) * (((1UL << (7 * count)) - 1) / 127);
            return Gfni.V512.GaloisFieldAffineTransform(v, Vector512.Create(matrix).AsByte(), 0);
        }
        var w = v.AsUInt16();
        return (from > to ? w >> (from - to) : w << (to - from)).AsByte() & mask;
    }

    // 8-bit codes: acc += Σ low nibble·x + 16 · Σ high nibble·x, widened per unit.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Unit8(Vector512<int> acc, Vector512<byte> v, sbyte* x)
    {
        var xv = Block(x, 0);
        var lo = Avx512BW.MultiplyAddAdjacent(Field(v, 0, 4, 0), xv);
        var hi = Avx512BW.MultiplyAddAdjacent(Field(v, 4, 4, 0), xv);
        return acc + Avx512BW.MultiplyAddAdjacent(lo, Vector512.Create((short)1)) + Avx512BW.MultiplyAddAdjacent(hi,
            Vector512.Create((short)16));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Dot1(byte* p, sbyte* x, int units)
    {
        int unitBytes = CodeUnits.UnitChunks(TWidth.Bits) * ChunkStride, unitCols = CodeUnits.UnitCols(TWidth.Bits);
        var ones = Vector512.Create((short)1);
        var acc = Vector512<int>.Zero;
        if (TWidth.Bits == 8)
        {
            for (int u = 0; u < units; u++, p += unitBytes, x += unitCols * Wide)
            {
                LowBitMatMul.PrefetchUnit(p, TWidth.Bits);
                acc = Unit8(acc, Vector512.Load(p), x);
            }
            return acc;
        }
        for (int u = 0; u < units;)
        {
            int end = Math.Min(units, u + BatchUnits);
            Vector512<short> s0 = default, s1 = default;
            for (; u < end; u++, p += unitBytes, x += unitCols * Wide)
            {
                LowBitMatMul.PrefetchUnit(p, TWidth.Bits);
                Unit(p, x, ref s0, ref s1);
            }
            acc += Avx512BW.MultiplyAddAdjacent(s0, ones) + Avx512BW.MultiplyAddAdjacent(s1, ones);
        }
        return acc;
    }

    // Four tokens share each load of the codes: the weights are read once per 4 dot products.
    private static void Dot4(byte* p, sbyte* x, int stride, int units, int* sums)
    {
        int unitBytes = CodeUnits.UnitChunks(TWidth.Bits) * ChunkStride, unitCols = CodeUnits.UnitCols(TWidth.Bits);
        var ones = Vector512.Create((short)1);
        Vector512<int> a0 = default, a1 = default, a2 = default, a3 = default;
        if (TWidth.Bits == 8)
        {
            for (int u = 0; u < units; u++, p += unitBytes, x += unitCols * Wide)
            {
                var v = Vector512.Load(p);
                a0 = Unit8(a0, v, x);
                a1 = Unit8(a1, v, x + stride);
                a2 = Unit8(a2, v, x + 2 * stride);
                a3 = Unit8(a3, v, x + 3 * stride);
            }
        }
        else
        {
            for (int u = 0; u < units;)
            {
                int end = Math.Min(units, u + BatchUnits);
                Vector512<short> s00 = default, s01 = default, s10 = default, s11 = default, s20 = default,
                    s21 = default, s30 = default, s31 = default;
                for (; u < end; u++, p += unitBytes, x += unitCols * Wide)
                {
                    Unit(p, x, ref s00, ref s01);
                    Unit(p, x + stride, ref s10, ref s11);
                    Unit(p, x + 2 * stride, ref s20, ref s21);
                    Unit(p, x + 3 * stride, ref s30, ref s31);
                }
                a0 += Avx512BW.MultiplyAddAdjacent(s00, ones) + Avx512BW.MultiplyAddAdjacent(s01, ones);
                a1 += Avx512BW.MultiplyAddAdjacent(s10, ones) + Avx512BW.MultiplyAddAdjacent(s11, ones);
                a2 += Avx512BW.MultiplyAddAdjacent(s20, ones) + Avx512BW.MultiplyAddAdjacent(s21, ones);
                a3 += Avx512BW.MultiplyAddAdjacent(s30, ones) + Avx512BW.MultiplyAddAdjacent(s31, ones);
            }
        }
        Store(a0, sums);
        Store(a1, sums + 4);
        Store(a2, sums + 8);
        Store(a3, sums + 12);
    }

    // Lane sums of four vectors: element 4k + r = Σ 128-bit lane r of a_k. The unpacks leave lane r holding
    // (a0, a1, a2, a3) lane r; the permute orders them by vector.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> LaneSumsOfFour(Vector512<int> a0, Vector512<int> a1, Vector512<int> a2,
        Vector512<int> a3)
    {
        var ab = Avx512F.UnpackLow(a0, a1) + Avx512F.UnpackHigh(a0, a1);
        var cd = Avx512F.UnpackLow(a2, a3) + Avx512F.UnpackHigh(a2, a3);
        var laneVector = Avx512F.UnpackLow(ab.AsInt64(), cd.AsInt64()).AsInt32()
            + Avx512F.UnpackHigh(ab.AsInt64(), cd.AsInt64()).AsInt32();
        return Avx512F.PermuteVar16x32(laneVector,
            Vector512.Create(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
    }

    // Sums each 128-bit lane (one row) and writes the 4 row sums.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector512<int> acc, int* dst)
    {
        var t = acc + Avx512F.Shuffle(acc, 0b10_11_00_01);
        t += Avx512F.Shuffle(t, 0b01_00_11_10);
        Avx512F.PermuteVar16x32(t,
            Vector512.Create(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12)).GetLower().GetLower().Store(dst);
    }
}

/// <summary>How the AVX-512 kernel extracts bit fields: a type, tested with <c>typeof</c>, so each choice is compiled
/// with the test folded away before inlining.</summary>
internal interface IBitUnpack;
/// <summary>One <c>vgf2p8affineqb</c> per field (Ice Lake, Zen 4 and later).</summary>
internal struct UseGfni : IBitUnpack;
/// <summary>A 16-bit shift and a byte mask per field (Skylake-X and Cascade Lake have AVX-512 without GFNI).</summary>
internal struct UseShifts : IBitUnpack;
