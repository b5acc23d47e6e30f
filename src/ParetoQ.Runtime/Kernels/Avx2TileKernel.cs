using System.Diagnostics.CodeAnalysis;
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
/// row, against a 16-byte activation block in both lanes (read from QuantizedActivations.Wide) shared by both halves.
/// <para>
/// Every plane of a unit is written out with a constant shift (a loop over planes compiles to a variable shift and
/// scalar bookkeeping per plane), and the sums run in independent chains: vpdpbusd's latency (4–5 cycles) is longer
/// than its issue interval, so one chain per half ran at half the VNNI ceiling. The VNNI variant keeps four int32
/// chains per half; the maddubs variant sums planes in two int16 chains over a batch of units, widening once per
/// batch, as the AVX-512 kernel does.
/// </para>
/// </summary>
internal unsafe struct Avx2TileKernel<TWidth, TMultiply> : ITileKernel
    where TWidth : struct, ICodeWidth where TMultiply : struct, IMultiply256
{
    private const int ChunkStride = 64;
    private const int Half = 32; // bytes from rows 0–1 to rows 2–3 of a chunk group

    public static void GroupedDot(in PackedMatrix w, int tile, QuantizedActivations x, int token0, int count,
        float* acc)
    {
        var layout = w.Layout;
        if (TWidth.Bits != 4 || !LowBitMatMul.IsNibbleGroup32(w))
        {
            LowBitMatMul.GroupedDotFromSums<Avx2TileKernel<TWidth, TMultiply>>(w, tile, x, token0, count, acc);
            return;
        }
        // 4-bit, one group per 32-weight unit, two groups at a time: three horizontal adds leave both groups' four
        // row sums, which are offset-corrected and scaled as vectors. Through the per-group Sums and a scalar epilogue
        // this ran at 5-6 GB/s, a seventh of the AVX-512 path (docs/BENCHMARKS.md).
        int groups = layout.GroupsPerRow;
        for (int t = 0; t < count; t++)
        {
            byte* p = w.Tile(tile);
            float* scales = w.Scales + (long)tile * groups * 4;
            sbyte* xt = x.Wide + (long)(token0 + t) * x.Stride * Wide;
            int* xg = x.GroupSums + (long)(token0 + t) * x.GroupsPerToken;
            var sum = Vector128<float>.Zero;
            for (int g = 0; g < groups; g += 2, p += 2 * ChunkStride, xt += 64 * Wide)
            {
                int second = g + 1 < groups ? 1 : 0; // an odd last group is taken twice, its copy unused
                GroupLanes(p, xt, out var a, out var b);
                GroupLanes(p + second * ChunkStride, xt + second * 32 * Wide, out var c, out var d);
                var h = Avx2.HorizontalAdd(Avx2.HorizontalAdd(a, b), Avx2.HorizontalAdd(c, d));
                // h: lane 0 (row 0, row 2) of groups g, g + 1; lane 1 (row 1, row 3)
                var rows = Sse2.UnpackLow(h.GetLower(), h.GetUpper());
                sum += Vector128.Load(scales + g * 4) * Vector128.ConvertToSingle(rows - Vector128.Create(xg[g] << 3));
                if (g + 1 == groups) break;
                rows = Sse2.UnpackHigh(h.GetLower(), h.GetUpper());
                sum += Vector128.Load(scales + g * 4 + 4) * Vector128.ConvertToSingle(rows
                    - Vector128.Create(xg[g + 1] << 3));
            }
            sum.Store(acc + t * 4);
        }
    }

    // One 32-weight group of 4 rows: int32 lanes, four partial sums per row (rows 0-1, rows 2-3). Written out without
    // the Unit helpers: with them the inliner ran out of budget in GroupedDot and called Plane and Dp per group.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GroupLanes(byte* p, sbyte* x, out Vector256<int> rows01, out Vector256<int> rows23)
    {
        var x0 = Broadcast(x);
        var x1 = Broadcast(x + 16 * Wide);
        var low = Vector256.Create((byte)15);
        var v01 = Vector256.Load(p);
        var v23 = Vector256.Load(p + Half);
        var lo01 = v01 & low;
        var hi01 = Vector256.ShiftRightLogical(v01.AsUInt16(), 4).AsByte() & low;
        var lo23 = v23 & low;
        var hi23 = Vector256.ShiftRightLogical(v23.AsUInt16(), 4).AsByte() & low;
        if (TMultiply.Vnni)
        {
            rows01 = AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, lo01, x0),
                hi01, x1);
            rows23 = AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, lo23, x0),
                hi23, x1);
            return;
        }
        rows01 = Widen(Avx2.MultiplyAddAdjacent(lo01, x0), Avx2.MultiplyAddAdjacent(hi01, x1));
        rows23 = Widen(Avx2.MultiplyAddAdjacent(lo23, x0), Avx2.MultiplyAddAdjacent(hi23, x1));
    }

    public static void DecodeSums(in PackedMatrix w, int tile0, int tiles, QuantizedActivations x, int token,
        int* sums) =>
        LowBitMatMul.DecodeSumsPerTile<Avx2TileKernel<TWidth, TMultiply>>(w, tile0, tiles, x, token, sums);

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
                sbyte* xt = x.Wide + ((long)(token0 + t) * x.Stride + u0 * unitCols) * Wide;
                if (t + 1 < count) Dot2(p, xt, x.Stride * Wide, unitsPerGroup, s + t * 4);
                else Dot1(p, xt, unitsPerGroup, s + t * 4);
            }
        }
    }

    // j is a literal at every call, so after inlining each shift below is an immediate (CA1857 cannot see through it).
#pragma warning disable CA1857
    /// <summary>Plane <paramref name="j"/> (a constant) of the unit at p: 16 codes per row lane, for activations
    /// x[16j, 16j + 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Plane(byte* p, [ConstantExpected] int j)
    {
        if (TWidth.Bits == 3)
        {
            // low two bits from chunk j / 4, bit 2 from bit j of the third chunk
            var lo = Vector256.Load(p + (j >> 2) * ChunkStride).AsUInt16();
            var hi = Vector256.Load(p + 2 * ChunkStride).AsUInt16();
            var high = (j <= 2 ? Vector256.ShiftLeft(hi, 2 - j) : Vector256.ShiftRightLogical(hi, j - 2)).AsByte();
            return Shifted(lo, 2 * (j & 3)) & Vector256.Create((byte)3) | high & Vector256.Create((byte)4);
        }
        var v = Vector256.Load(p).AsUInt16();
        return Shifted(v, j * TWidth.Bits) & Vector256.Create((byte)((1 << TWidth.Bits) - 1));
    }
#pragma warning restore CA1857

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Shifted(Vector256<ushort> v, [ConstantExpected] int shift) =>
        (shift == 0 ? v : Vector256.ShiftRightLogical(v, shift)).AsByte();

    private const int Wide = QuantizedActivations.WideCopies; // x points into QuantizedActivations.Wide

    /// <summary>The activation block at x in both 128-bit lanes: the first two of its four copies.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Broadcast(sbyte* x) => Vector256.Load(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Dp(Vector256<int> acc, Vector256<byte> codes, sbyte* x) =>
        AvxVnni.MultiplyWideningAndAdd(acc, codes, Broadcast(x));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Madd(Vector256<byte> codes, sbyte* x) =>
        Avx2.MultiplyAddAdjacent(codes, Broadcast(x));

    /// <summary>VNNI: one half-tile's unit into four int32 chains (plane j into chain j mod 4).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void UnitVnni(byte* p, sbyte* x, ref Vector256<int> a0, ref Vector256<int> a1,
        ref Vector256<int> a2, ref Vector256<int> a3)
    {
        if (TWidth.Bits == 8)
        {
            a0 = Dp(a0, Vector256.Load(p), x);
            return;
        }
        int planes = CodeUnits.Planes(TWidth.Bits); // 8, 4 or 2: a constant per width
        a0 = Dp(a0, Plane(p, 0), x);
        a1 = Dp(a1, Plane(p, 1), x + 16 * Wide);
        if (planes == 2) return;
        a2 = Dp(a2, Plane(p, 2), x + 32 * Wide);
        a3 = Dp(a3, Plane(p, 3), x + 48 * Wide);
        if (planes == 4) return;
        a0 = Dp(a0, Plane(p, 4), x + 64 * Wide);
        a1 = Dp(a1, Plane(p, 5), x + 80 * Wide);
        a2 = Dp(a2, Plane(p, 6), x + 96 * Wide);
        a3 = Dp(a3, Plane(p, 7), x + 112 * Wide);
    }

    /// <summary>maddubs (widths up to 4): one half-tile's unit into two int16 chains (plane j into chain j mod
    /// 2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void UnitMaddubs(byte* p, sbyte* x, ref Vector256<short> s0, ref Vector256<short> s1)
    {
        int planes = CodeUnits.Planes(TWidth.Bits);
        s0 += Madd(Plane(p, 0), x);
        s1 += Madd(Plane(p, 1), x + 16 * Wide);
        if (planes == 2) return;
        s0 += Madd(Plane(p, 2), x + 32 * Wide);
        s1 += Madd(Plane(p, 3), x + 48 * Wide);
        if (planes == 4) return;
        s0 += Madd(Plane(p, 4), x + 64 * Wide);
        s1 += Madd(Plane(p, 5), x + 80 * Wide);
        s0 += Madd(Plane(p, 6), x + 96 * Wide);
        s1 += Madd(Plane(p, 7), x + 112 * Wide);
    }

    // 8-bit codes without VNNI: acc += Σ low nibble·x + 16 · Σ high nibble·x, widened per unit (maddubs would
    // saturate on whole bytes).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Unit8(Vector256<int> acc, byte* p, sbyte* x)
    {
        var v = Vector256.Load(p);
        var lo = Madd(v & Vector256.Create((byte)15), x);
        var hi = Madd(Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & Vector256.Create((byte)15), x);
        return acc + Avx2.MultiplyAddAdjacent(lo, Vector256.Create((short)1))
            + Avx2.MultiplyAddAdjacent(hi, Vector256.Create((short)16));
    }

    // Units whose int16 sums may be added before widening: each chain gains at most (planes / 2) · 2 · maxCode · 127
    // per unit, which must stay below 32767.
    private static int BatchUnits
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => TWidth.Bits <= 2 ? 16 : TWidth.Bits == 3 ? 4 : 8;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Widen(Vector256<short> s0, Vector256<short> s1) =>
        Avx2.MultiplyAddAdjacent(s0, Vector256.Create((short)1)) + Avx2.MultiplyAddAdjacent(s1,
            Vector256.Create((short)1));

    // Each variant of a loop is its own method: in one method with all three, RyuJIT ran out of inlining budget and
    // called UnitMaddubs, Widen and Store per unit, which made the maddubs 4-token GEMM 3x slower than it is now
    // (and slower than four GEMVs). The branches fold per type, so these calls cost nothing.
    private static void Dot1(byte* p, sbyte* x, int units, int* sums)
    {
        if (TMultiply.Vnni) Dot1Vnni(p, x, units, sums);
        else if (TWidth.Bits == 8) Dot1Bytes(p, x, units, sums);
        else Dot1Maddubs(p, x, units, sums);
    }

    private static void Dot2(byte* p, sbyte* x, int stride, int units, int* sums)
    {
        if (TMultiply.Vnni) Dot2Vnni(p, x, stride, units, sums);
        else if (TWidth.Bits == 8) Dot2Bytes(p, x, stride, units, sums);
        else Dot2Maddubs(p, x, stride, units, sums);
    }

    private static void Dot1Vnni(byte* p, sbyte* x, int units, int* sums)
    {
        int unitBytes = CodeUnits.UnitChunks(TWidth.Bits) * ChunkStride, unitCols = CodeUnits.UnitCols(TWidth.Bits);
        Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<int> b0 = default, b1 = default, b2 = default, b3 = default;
        for (int u = 0; u < units; u++, p += unitBytes, x += unitCols * Wide)
        {
            LowBitMatMul.PrefetchUnit(p, TWidth.Bits);
            UnitVnni(p, x, ref a0, ref a1, ref a2, ref a3);
            UnitVnni(p + Half, x, ref b0, ref b1, ref b2, ref b3);
        }
        Store(a0 + a1 + (a2 + a3), sums);
        Store(b0 + b1 + (b2 + b3), sums + 2);
    }

    private static void Dot1Bytes(byte* p, sbyte* x, int units, int* sums)
    {
        int unitBytes = CodeUnits.UnitChunks(TWidth.Bits) * ChunkStride, unitCols = CodeUnits.UnitCols(TWidth.Bits);
        Vector256<int> rows01 = default, rows23 = default;
        for (int u = 0; u < units; u++, p += unitBytes, x += unitCols * Wide)
        {
            LowBitMatMul.PrefetchUnit(p, TWidth.Bits);
            rows01 = Unit8(rows01, p, x);
            rows23 = Unit8(rows23, p + Half, x);
        }
        Store(rows01, sums);
        Store(rows23, sums + 2);
    }

    private static void Dot1Maddubs(byte* p, sbyte* x, int units, int* sums)
    {
        int unitBytes = CodeUnits.UnitChunks(TWidth.Bits) * ChunkStride, unitCols = CodeUnits.UnitCols(TWidth.Bits);
        Vector256<int> rows01 = default, rows23 = default;
        for (int u = 0; u < units;)
        {
            int end = Math.Min(units, u + BatchUnits);
            Vector256<short> s0 = default, s1 = default, t0 = default, t1 = default;
            for (; u < end; u++, p += unitBytes, x += unitCols * Wide)
            {
                LowBitMatMul.PrefetchUnit(p, TWidth.Bits);
                UnitMaddubs(p, x, ref s0, ref s1);
                UnitMaddubs(p + Half, x, ref t0, ref t1);
            }
            rows01 += Widen(s0, s1);
            rows23 += Widen(t0, t1);
        }
        Store(rows01, sums);
        Store(rows23, sums + 2);
    }

    // Two tokens per pass: each half-tile load serves both.
    private static void Dot2Vnni(byte* p, sbyte* x, int stride, int units, int* sums)
    {
        int unitBytes = CodeUnits.UnitChunks(TWidth.Bits) * ChunkStride, unitCols = CodeUnits.UnitCols(TWidth.Bits);
        // Two chains per (token, half): eight in all, within the 16 ymm registers of an AVX2 build.
        Vector256<int> a01 = default, a23 = default, b01 = default, b23 = default;
        Vector256<int> a01b = default, a23b = default, b01b = default, b23b = default;
        for (int u = 0; u < units; u++, p += unitBytes, x += unitCols * Wide)
        {
            UnitVnni(p, x, ref a01, ref a01b, ref a01, ref a01b);
            UnitVnni(p + Half, x, ref a23, ref a23b, ref a23, ref a23b);
            UnitVnni(p, x + stride, ref b01, ref b01b, ref b01, ref b01b);
            UnitVnni(p + Half, x + stride, ref b23, ref b23b, ref b23, ref b23b);
        }
        Store(a01 + a01b, sums);
        Store(a23 + a23b, sums + 2);
        Store(b01 + b01b, sums + 4);
        Store(b23 + b23b, sums + 6);
    }

    private static void Dot2Bytes(byte* p, sbyte* x, int stride, int units, int* sums)
    {
        int unitBytes = CodeUnits.UnitChunks(TWidth.Bits) * ChunkStride, unitCols = CodeUnits.UnitCols(TWidth.Bits);
        Vector256<int> a01 = default, a23 = default, b01 = default, b23 = default;
        for (int u = 0; u < units; u++, p += unitBytes, x += unitCols * Wide)
        {
            a01 = Unit8(a01, p, x);
            a23 = Unit8(a23, p + Half, x);
            b01 = Unit8(b01, p, x + stride);
            b23 = Unit8(b23, p + Half, x + stride);
        }
        Store(a01, sums);
        Store(a23, sums + 2);
        Store(b01, sums + 4);
        Store(b23, sums + 6);
    }

    private static void Dot2Maddubs(byte* p, sbyte* x, int stride, int units, int* sums)
    {
        int unitBytes = CodeUnits.UnitChunks(TWidth.Bits) * ChunkStride, unitCols = CodeUnits.UnitCols(TWidth.Bits);
        Vector256<int> a01 = default, a23 = default, b01 = default, b23 = default;
        for (int u = 0; u < units;)
        {
            int end = Math.Min(units, u + BatchUnits);
            Vector256<short> a0 = default, a1 = default, c0 = default, c1 = default;
            Vector256<short> b0 = default, b1 = default, d0 = default, d1 = default;
            for (; u < end; u++, p += unitBytes, x += unitCols * Wide)
            {
                UnitMaddubs(p, x, ref a0, ref a1);
                UnitMaddubs(p + Half, x, ref c0, ref c1);
                UnitMaddubs(p, x + stride, ref b0, ref b1);
                UnitMaddubs(p + Half, x + stride, ref d0, ref d1);
            }
            a01 += Widen(a0, a1);
            a23 += Widen(c0, c1);
            b01 += Widen(b0, b1);
            b23 += Widen(d0, d1);
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
