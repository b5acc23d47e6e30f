using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// One kernel path's inner loops of attention over an int8 KV cache, four query heads at a time (the heads that share
/// one KV head under GQA), so each cached key and value is loaded once for all four. Keys come in
/// <see cref="Int8KvView"/>'s blocks of 8 positions; value rows are <c>count</c> cached positions <c>stride</c> bytes
/// apart, a head vector <c>hd</c> values. Every path gives the <see cref="ScalarAttentionKernel"/> result bit for bit.
/// The dot products take any head size; the vector value passes take multiples of 16, and <see cref="Int8Attention"/>
/// sends other sizes elsewhere.
/// </summary>
internal unsafe interface IAttentionKernel
{
    /// <summary>dots[h·dotStride + 8b + s] = Σ_i q[h·qStride + i] · key(block b, slot s, value i) over the 4·quads
    /// values, for blocks b &lt; <paramref name="blocks"/>, slots s &lt; 8, heads h &lt; 4: exact int32 q·k. q is
    /// zero past 4·quads up to qStride, a multiple of 16.</summary>
    static abstract void BlockDots(sbyte* q, int qStride, sbyte* keyBlocks, int blocks, int quads, int* dots,
        int dotStride);

    /// <summary>acc[h·hd + i] = fma(w[h·wStride + j], v[j·stride + i], acc[h·hd + i]) over j = 0..count−1 in
    /// order, for h &lt; 4.</summary>
    static abstract void AccumulateInt8x4(float* acc, sbyte* v, long stride, int count, int hd, float* w,
        int wStride);
}

/// <summary>The reference inner loops: plain loops, the result every other path must give.</summary>
internal unsafe struct ScalarAttentionKernel : IAttentionKernel
{
    public const int Heads = Int8Attention.Heads;

    public static void BlockDots(sbyte* q, int qStride, sbyte* keyBlocks, int blocks, int quads, int* dots,
        int dotStride)
    {
        const int B = Int8KvView.KeyBlock;
        for (int b = 0; b < blocks; b++)
        {
            sbyte* block = keyBlocks + b * B * 4 * quads;
            for (int h = 0; h < Heads; h++)
                for (int slot = 0; slot < B; slot++)
                {
                    int sum = 0;
                    for (int r = 0; r < quads; r++)
                        for (int e = 0; e < 4; e++) sum += q[h * qStride + 4 * r + e] * block[r * B * 4 + slot * 4 + e];
                    dots[h * dotStride + b * B + slot] = sum;
                }
        }
    }

    public static void AccumulateInt8x4(float* acc, sbyte* v, long stride, int count, int hd, float* w, int wStride)
    {
        for (int h = 0; h < Heads; h++)
            for (int i = 0; i < hd; i++)
            {
                float a = acc[h * hd + i];
                for (int j = 0; j < count; j++) a = MathF.FusedMultiplyAdd(w[h * wStride + j], v[j * stride + i], a);
                acc[h * hd + i] = a;
            }
    }
}

/// <summary>x86 AVX2 (the AVX-VNNI path takes it too): int16 multiply-adds, 256-bit FMA.</summary>
internal unsafe struct Avx2AttentionKernel : IAttentionKernel
{
    private const int Heads = Int8Attention.Heads;

    public static void AccumulateInt8x4(float* acc, sbyte* v, long stride, int count, int hd, float* w, int wStride)
    {
        if (Fma.IsSupported) Accumulate(acc, v, stride, count, hd, w, wStride);
        else ScalarAttentionKernel.AccumulateInt8x4(acc, v, stride, count, hd, w, wStride);
    }

    // A quad row of a block (8 positions × 4 values) widens to int16 in two halves; vpmaddwd against the head's quad,
    // broadcast, leaves two lanes per position, added pairwise at the end of the block.
    public static void BlockDots(sbyte* q, int qStride, sbyte* keyBlocks, int blocks, int quads, int* dots,
        int dotStride)
    {
        const int B = Int8KvView.KeyBlock;
        long* q16 = stackalloc long[Heads * quads]; // each head's quads as 4 int16 values
        for (int h = 0; h < Heads; h++)
            for (int r = 0; r < quads; r++)
                q16[h * quads + r] = Vector128.WidenLower(Vector128.CreateScalar(*(int*)(q + h * qStride + 4 * r))
                    .AsSByte()).AsInt64().ToScalar();
        long* q1 = q16 + quads, q2 = q1 + quads, q3 = q2 + quads;
        for (int b = 0; b < blocks; b++)
        {
            sbyte* block = keyBlocks + b * B * 4 * quads;
            Vector256<int> l0 = default, l1 = default, l2 = default, l3 = default;
            Vector256<int> h0 = default, h1 = default, h2 = default, h3 = default;
            for (int r = 0; r < quads; r++)
            {
                var lo = Avx2.ConvertToVector256Int16(block + r * B * 4);      // positions 0-3
                var hi = Avx2.ConvertToVector256Int16(block + r * B * 4 + 16); // positions 4-7
                var x0 = Vector256.Create(q16[r]).AsInt16();
                var x1 = Vector256.Create(q1[r]).AsInt16();
                var x2 = Vector256.Create(q2[r]).AsInt16();
                var x3 = Vector256.Create(q3[r]).AsInt16();
                l0 += Avx2.MultiplyAddAdjacent(lo, x0);
                h0 += Avx2.MultiplyAddAdjacent(hi, x0);
                l1 += Avx2.MultiplyAddAdjacent(lo, x1);
                h1 += Avx2.MultiplyAddAdjacent(hi, x1);
                l2 += Avx2.MultiplyAddAdjacent(lo, x2);
                h2 += Avx2.MultiplyAddAdjacent(hi, x2);
                l3 += Avx2.MultiplyAddAdjacent(lo, x3);
                h3 += Avx2.MultiplyAddAdjacent(hi, x3);
            }
            int* d = dots + b * B;
            PositionOrder(l0, h0).Store(d);
            PositionOrder(l1, h1).Store(d + dotStride);
            PositionOrder(l2, h2).Store(d + 2 * dotStride);
            PositionOrder(l3, h3).Store(d + 3 * dotStride);
        }
    }

    // Lanes (position, pair) of positions 0-3 and 4-7 → one sum per position, in order: vphaddd works within 128-bit
    // lanes and leaves positions 0 1 4 5 | 2 3 6 7.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> PositionOrder(Vector256<int> lo, Vector256<int> hi) =>
        Avx2.Permute4x64(Avx2.HorizontalAdd(lo, hi).AsInt64(), 0b11_01_10_00).AsInt32();

    // 8 values a step, the four heads' accumulators in registers across all positions: a value row is widened once.
    private static void Accumulate(float* acc, sbyte* v, long stride, int count, int hd, float* w, int wStride)
    {
        float* w1 = w + wStride, w2 = w1 + wStride, w3 = w2 + wStride;
        for (int i = 0; i < hd; i += 8)
        {
            var a0 = Vector256.Load(acc + i);
            var a1 = Vector256.Load(acc + hd + i);
            var a2 = Vector256.Load(acc + 2 * hd + i);
            var a3 = Vector256.Load(acc + 3 * hd + i);
            for (int j = 0; j < count; j++)
            {
                var x = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(v + j * stride + i));
                a0 = Fma.MultiplyAdd(Vector256.Create(w[j]), x, a0);
                a1 = Fma.MultiplyAdd(Vector256.Create(w1[j]), x, a1);
                a2 = Fma.MultiplyAdd(Vector256.Create(w2[j]), x, a2);
                a3 = Fma.MultiplyAdd(Vector256.Create(w3[j]), x, a3);
            }
            a0.Store(acc + i);
            a1.Store(acc + hd + i);
            a2.Store(acc + 2 * hd + i);
            a3.Store(acc + 3 * hd + i);
        }
    }
}

/// <summary>
/// x86 AVX-VNNI (the avxvnni path, and the AVX-512 paths on CPUs that have it): q·k with vpdpbusd, which multiplies u8
/// by s8 and sums four products into each int32 lane: one quad row of a key block against the head's quad, broadcast,
/// gives 8 positions' partial dots with nothing to reduce. The keys are taken as u8 by flipping their sign bit
/// (k + 128); 128·Σq is taken off again, so the dots are exact. The value pass is the AVX2 one.
/// </summary>
internal unsafe struct VnniAttentionKernel : IAttentionKernel
{
    private const int Heads = Int8Attention.Heads;

    public static void AccumulateInt8x4(float* acc, sbyte* v, long stride, int count, int hd, float* w, int wStride) =>
        Avx2AttentionKernel.AccumulateInt8x4(acc, v, stride, count, hd, w, wStride);

    // Two blocks a step share the four broadcast quads of q.
    public static void BlockDots(sbyte* q, int qStride, sbyte* keyBlocks, int blocks, int quads, int* dots,
        int dotStride)
    {
        const int B = Int8KvView.KeyBlock, QuadRow = B * 4;
        int blockBytes = QuadRow * quads;
        Vector256<int> o0 = Offset(q, quads), o1 = Offset(q + qStride, quads), o2 = Offset(q + 2 * qStride, quads),
            o3 = Offset(q + 3 * qStride, quads);
        var flip = Vector256.Create((byte)0x80);
        sbyte* q1 = q + qStride, q2 = q1 + qStride, q3 = q2 + qStride;
        int b = 0;
        for (; b + 2 <= blocks; b += 2)
        {
            byte* k0 = (byte*)keyBlocks + b * blockBytes, k1 = k0 + blockBytes;
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector256<int> c0 = default, c1 = default, c2 = default, c3 = default;
            for (int r = 0; r < quads; r++)
            {
                Sse.Prefetch0(k0 + r * QuadRow + Int8Attention.PrefetchBytes);
                Sse.Prefetch0(k1 + r * QuadRow + Int8Attention.PrefetchBytes);
                var x = Vector256.Load(k0 + r * QuadRow) ^ flip;
                var y = Vector256.Load(k1 + r * QuadRow) ^ flip;
                var w0 = Vector256.Create(*(int*)(q + 4 * r)).AsSByte();
                var w1 = Vector256.Create(*(int*)(q1 + 4 * r)).AsSByte();
                var w2 = Vector256.Create(*(int*)(q2 + 4 * r)).AsSByte();
                var w3 = Vector256.Create(*(int*)(q3 + 4 * r)).AsSByte();
                a0 = AvxVnni.MultiplyWideningAndAdd(a0, x, w0);
                c0 = AvxVnni.MultiplyWideningAndAdd(c0, y, w0);
                a1 = AvxVnni.MultiplyWideningAndAdd(a1, x, w1);
                c1 = AvxVnni.MultiplyWideningAndAdd(c1, y, w1);
                a2 = AvxVnni.MultiplyWideningAndAdd(a2, x, w2);
                c2 = AvxVnni.MultiplyWideningAndAdd(c2, y, w2);
                a3 = AvxVnni.MultiplyWideningAndAdd(a3, x, w3);
                c3 = AvxVnni.MultiplyWideningAndAdd(c3, y, w3);
            }
            int* d = dots + b * B;
            (a0 - o0).Store(d);
            (c0 - o0).Store(d + B);
            (a1 - o1).Store(d + dotStride);
            (c1 - o1).Store(d + dotStride + B);
            (a2 - o2).Store(d + 2 * dotStride);
            (c2 - o2).Store(d + 2 * dotStride + B);
            (a3 - o3).Store(d + 3 * dotStride);
            (c3 - o3).Store(d + 3 * dotStride + B);
        }
        if (b < blocks)
        {
            byte* k0 = (byte*)keyBlocks + b * blockBytes;
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int r = 0; r < quads; r++)
            {
                var x = Vector256.Load(k0 + r * QuadRow) ^ flip;
                a0 = AvxVnni.MultiplyWideningAndAdd(a0, x, Vector256.Create(*(int*)(q + 4 * r)).AsSByte());
                a1 = AvxVnni.MultiplyWideningAndAdd(a1, x, Vector256.Create(*(int*)(q1 + 4 * r)).AsSByte());
                a2 = AvxVnni.MultiplyWideningAndAdd(a2, x, Vector256.Create(*(int*)(q2 + 4 * r)).AsSByte());
                a3 = AvxVnni.MultiplyWideningAndAdd(a3, x, Vector256.Create(*(int*)(q3 + 4 * r)).AsSByte());
            }
            int* d = dots + b * B;
            (a0 - o0).Store(d);
            (a1 - o1).Store(d + dotStride);
            (a2 - o2).Store(d + 2 * dotStride);
            (a3 - o3).Store(d + 3 * dotStride);
        }
    }

    // 128·Σq over one head's quads, in every lane: what the flipped sign bits of the keys added.
    private static Vector256<int> Offset(sbyte* qh, int quads) =>
        Vector256.Create(128 * Int8Attention.Sum(qh, 4 * quads));
}

/// <summary>
/// x86 AVX-512 (the avx512 and avx512gfni paths): all four heads' accumulators for 64 values of a head held in
/// registers while the value rows stream past, so each row is loaded and converted once and each weight broadcast
/// once per 64 values (the AVX2 loops redo both per 8). The dots are the VNNI loop's where the CPU has AVX-VNNI (Zen 4
/// and later, Sapphire Rapids), else the AVX2 loop's: .NET 10 has no 512-bit VNNI class.
/// </summary>
internal unsafe struct Avx512AttentionKernel : IAttentionKernel
{
    private const int Heads = Int8Attention.Heads;

    public static void BlockDots(sbyte* q, int qStride, sbyte* keyBlocks, int blocks, int quads, int* dots,
        int dotStride)
    {
        if (AvxVnni.IsSupported) VnniAttentionKernel.BlockDots(q, qStride, keyBlocks, blocks, quads, dots, dotStride);
        else Avx2AttentionKernel.BlockDots(q, qStride, keyBlocks, blocks, quads, dots, dotStride);
    }

    public static void AccumulateInt8x4(float* acc, sbyte* v, long stride, int count, int hd, float* w, int wStride)
    {
        int i = 0;
        for (; i + 64 <= hd; i += 64) Accumulate64(acc + i, v + i, stride, count, hd, w, wStride);
        for (; i < hd; i += 16) Accumulate16(acc + i, v + i, stride, count, hd, w, wStride);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Widen(sbyte* v) =>
        Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(v)));

    // Values [0, 64) of each head: 16 accumulators stay in registers over all positions.
    private static void Accumulate64(float* acc, sbyte* v, long stride, int count, int hd, float* w, int wStride)
    {
        float* w1 = w + wStride, w2 = w1 + wStride, w3 = w2 + wStride;
        float* c0 = acc, c1 = acc + hd, c2 = acc + 2 * hd, c3 = acc + 3 * hd;
        Vector512<float> a00 = Vector512.Load(c0), a01 = Vector512.Load(c0 + 16), a02 = Vector512.Load(c0 + 32),
            a03 = Vector512.Load(c0 + 48);
        Vector512<float> a10 = Vector512.Load(c1), a11 = Vector512.Load(c1 + 16), a12 = Vector512.Load(c1 + 32),
            a13 = Vector512.Load(c1 + 48);
        Vector512<float> a20 = Vector512.Load(c2), a21 = Vector512.Load(c2 + 16), a22 = Vector512.Load(c2 + 32),
            a23 = Vector512.Load(c2 + 48);
        Vector512<float> a30 = Vector512.Load(c3), a31 = Vector512.Load(c3 + 16), a32 = Vector512.Load(c3 + 32),
            a33 = Vector512.Load(c3 + 48);
        for (int j = 0; j < count; j++)
        {
            sbyte* row = v + j * stride;
            Sse.Prefetch0(row + Int8Attention.PrefetchBytes);
            Vector512<float> x0 = Widen(row), x1 = Widen(row + 16), x2 = Widen(row + 32), x3 = Widen(row + 48);
            var s0 = Vector512.Create(w[j]);
            a00 = Avx512F.FusedMultiplyAdd(s0, x0, a00);
            a01 = Avx512F.FusedMultiplyAdd(s0, x1, a01);
            a02 = Avx512F.FusedMultiplyAdd(s0, x2, a02);
            a03 = Avx512F.FusedMultiplyAdd(s0, x3, a03);
            var s1 = Vector512.Create(w1[j]);
            a10 = Avx512F.FusedMultiplyAdd(s1, x0, a10);
            a11 = Avx512F.FusedMultiplyAdd(s1, x1, a11);
            a12 = Avx512F.FusedMultiplyAdd(s1, x2, a12);
            a13 = Avx512F.FusedMultiplyAdd(s1, x3, a13);
            var s2 = Vector512.Create(w2[j]);
            a20 = Avx512F.FusedMultiplyAdd(s2, x0, a20);
            a21 = Avx512F.FusedMultiplyAdd(s2, x1, a21);
            a22 = Avx512F.FusedMultiplyAdd(s2, x2, a22);
            a23 = Avx512F.FusedMultiplyAdd(s2, x3, a23);
            var s3 = Vector512.Create(w3[j]);
            a30 = Avx512F.FusedMultiplyAdd(s3, x0, a30);
            a31 = Avx512F.FusedMultiplyAdd(s3, x1, a31);
            a32 = Avx512F.FusedMultiplyAdd(s3, x2, a32);
            a33 = Avx512F.FusedMultiplyAdd(s3, x3, a33);
        }
        a00.Store(c0); a01.Store(c0 + 16); a02.Store(c0 + 32); a03.Store(c0 + 48);
        a10.Store(c1); a11.Store(c1 + 16); a12.Store(c1 + 32); a13.Store(c1 + 48);
        a20.Store(c2); a21.Store(c2 + 16); a22.Store(c2 + 32); a23.Store(c2 + 48);
        a30.Store(c3); a31.Store(c3 + 16); a32.Store(c3 + 32); a33.Store(c3 + 48);
    }

    // Values [0, 16) of each head (head sizes that 64 does not divide).
    private static void Accumulate16(float* acc, sbyte* v, long stride, int count, int hd, float* w, int wStride)
    {
        float* w1 = w + wStride, w2 = w1 + wStride, w3 = w2 + wStride;
        Vector512<float> a0 = Vector512.Load(acc), a1 = Vector512.Load(acc + hd), a2 = Vector512.Load(acc + 2 * hd),
            a3 = Vector512.Load(acc + 3 * hd);
        for (int j = 0; j < count; j++)
        {
            var x = Widen(v + j * stride);
            a0 = Avx512F.FusedMultiplyAdd(Vector512.Create(w[j]), x, a0);
            a1 = Avx512F.FusedMultiplyAdd(Vector512.Create(w1[j]), x, a1);
            a2 = Avx512F.FusedMultiplyAdd(Vector512.Create(w2[j]), x, a2);
            a3 = Avx512F.FusedMultiplyAdd(Vector512.Create(w3[j]), x, a3);
        }
        a0.Store(acc);
        a1.Store(acc + hd);
        a2.Store(acc + 2 * hd);
        a3.Store(acc + 3 * hd);
    }
}

/// <summary>Arm64 NEON: <c>sdot</c> for the scores, 128-bit FMA for the values.</summary>
internal unsafe struct NeonAttentionKernel : IAttentionKernel
{
    private const int Heads = Int8Attention.Heads;

    // sdot by element: the key quad row (4 positions × 4 values per register) against one 4-byte quad of q, selected
    // from a register that holds four.
    public static void BlockDots(sbyte* q, int qStride, sbyte* keyBlocks, int blocks, int quads, int* dots,
        int dotStride)
    {
        const int B = Int8KvView.KeyBlock, QuadRow = B * 4;
        for (int b = 0; b < blocks; b++)
        {
            sbyte* block = keyBlocks + b * QuadRow * quads;
            Vector128<int> l0 = default, l1 = default, l2 = default, l3 = default;
            Vector128<int> h0 = default, h1 = default, h2 = default, h3 = default;
            for (int r = 0; r < quads; r += 4)
            {
                var x0 = Vector128.Load(q + r * 4);
                var x1 = Vector128.Load(q + qStride + r * 4);
                var x2 = Vector128.Load(q + 2 * qStride + r * 4);
                var x3 = Vector128.Load(q + 3 * qStride + r * 4);
                sbyte* row = block + r * QuadRow;
                Quad(row, x0, x1, x2, x3, 0, ref l0, ref h0, ref l1, ref h1, ref l2, ref h2, ref l3, ref h3);
                if (r + 1 < quads)
                    Quad(row + QuadRow, x0, x1, x2, x3, 1, ref l0, ref h0, ref l1, ref h1, ref l2, ref h2, ref l3,
                        ref h3);
                if (r + 2 < quads)
                    Quad(row + 2 * QuadRow, x0, x1, x2, x3, 2, ref l0, ref h0, ref l1, ref h1, ref l2, ref h2, ref l3,
                        ref h3);
                if (r + 3 < quads)
                    Quad(row + 3 * QuadRow, x0, x1, x2, x3, 3, ref l0, ref h0, ref l1, ref h1, ref l2, ref h2, ref l3,
                        ref h3);
            }
            int* d = dots + b * B;
            l0.Store(d); h0.Store(d + 4);
            l1.Store(d + dotStride); h1.Store(d + dotStride + 4);
            l2.Store(d + 2 * dotStride); h2.Store(d + 2 * dotStride + 4);
            l3.Store(d + 3 * dotStride); h3.Store(d + 3 * dotStride + 4);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quad(sbyte* row, Vector128<sbyte> x0, Vector128<sbyte> x1, Vector128<sbyte> x2,
        Vector128<sbyte> x3, [ConstantExpected(Max = 3)] byte lane, ref Vector128<int> l0, ref Vector128<int> h0,
        ref Vector128<int> l1, ref Vector128<int> h1, ref Vector128<int> l2, ref Vector128<int> h2,
        ref Vector128<int> l3, ref Vector128<int> h3)
    {
        var lo = Vector128.Load(row);      // positions 0-3
        var hi = Vector128.Load(row + 16); // positions 4-7
        l0 = Dp.DotProductBySelectedQuadruplet(l0, lo, x0, lane);
        h0 = Dp.DotProductBySelectedQuadruplet(h0, hi, x0, lane);
        l1 = Dp.DotProductBySelectedQuadruplet(l1, lo, x1, lane);
        h1 = Dp.DotProductBySelectedQuadruplet(h1, hi, x1, lane);
        l2 = Dp.DotProductBySelectedQuadruplet(l2, lo, x2, lane);
        h2 = Dp.DotProductBySelectedQuadruplet(h2, hi, x2, lane);
        l3 = Dp.DotProductBySelectedQuadruplet(l3, lo, x3, lane);
        h3 = Dp.DotProductBySelectedQuadruplet(h3, hi, x3, lane);
    }

    public static void AccumulateInt8x4(float* acc, sbyte* v, long stride, int count, int hd, float* w, int wStride)
    {
        float* w1 = w + wStride, w2 = w1 + wStride, w3 = w2 + wStride;
        for (int i = 0; i < hd; i += 8)
        {
            var lo0 = Vector128.Load(acc + i); var hi0 = Vector128.Load(acc + i + 4);
            var lo1 = Vector128.Load(acc + hd + i); var hi1 = Vector128.Load(acc + hd + i + 4);
            var lo2 = Vector128.Load(acc + 2 * hd + i); var hi2 = Vector128.Load(acc + 2 * hd + i + 4);
            var lo3 = Vector128.Load(acc + 3 * hd + i); var hi3 = Vector128.Load(acc + 3 * hd + i + 4);
            for (int j = 0; j < count; j++)
            {
                var x16 = AdvSimd.SignExtendWideningLower(Vector64.Load(v + j * stride + i));
                var xl = AdvSimd.ConvertToSingle(AdvSimd.SignExtendWideningLower(x16.GetLower()));
                var xh = AdvSimd.ConvertToSingle(AdvSimd.SignExtendWideningUpper(x16));
                lo0 = Fma128(lo0, w[j], xl); hi0 = Fma128(hi0, w[j], xh);
                lo1 = Fma128(lo1, w1[j], xl); hi1 = Fma128(hi1, w1[j], xh);
                lo2 = Fma128(lo2, w2[j], xl); hi2 = Fma128(hi2, w2[j], xh);
                lo3 = Fma128(lo3, w3[j], xl); hi3 = Fma128(hi3, w3[j], xh);
            }
            lo0.Store(acc + i); hi0.Store(acc + i + 4);
            lo1.Store(acc + hd + i); hi1.Store(acc + hd + i + 4);
            lo2.Store(acc + 2 * hd + i); hi2.Store(acc + 2 * hd + i + 4);
            lo3.Store(acc + 3 * hd + i); hi3.Store(acc + 3 * hd + i + 4);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Fma128(Vector128<float> acc, float w, Vector128<float> x) =>
        AdvSimd.FusedMultiplyAdd(acc, Vector128.Create(w), x);
}

/// <summary>
/// Head sizes that are a multiple of 8 but not of 16 (stories260K's 8), on any vector hardware: the value pass 8 values
/// a step in portable 128-bit vectors, the dots from the machine's best loop. Before it they took the scalar loops,
/// and attention was 84% of stories260K's decode step. Integer dots are exact; each output element gets the same
/// fused multiply-adds in the same order as the scalar kernel, so the results are equal bit for bit.
/// </summary>
internal unsafe struct Narrow8AttentionKernel : IAttentionKernel
{
    private const int Heads = Int8Attention.Heads;

    // The dot products of every path are exact, so any of them gives the same dots: the machine's best.
    public static void BlockDots(sbyte* q, int qStride, sbyte* keyBlocks, int blocks, int quads, int* dots,
        int dotStride)
    {
        if (AvxVnni.IsSupported) VnniAttentionKernel.BlockDots(q, qStride, keyBlocks, blocks, quads, dots, dotStride);
        else if (Avx2.IsSupported)
            Avx2AttentionKernel.BlockDots(q, qStride, keyBlocks, blocks, quads, dots, dotStride);
        else if (Dp.IsSupported)
            NeonAttentionKernel.BlockDots(q, qStride, keyBlocks, blocks, quads, dots, dotStride);
        else ScalarAttentionKernel.BlockDots(q, qStride, keyBlocks, blocks, quads, dots, dotStride);
    }

    public static void AccumulateInt8x4(float* acc, sbyte* v, long stride, int count, int hd, float* w, int wStride)
    {
        float* w1 = w + wStride, w2 = w1 + wStride, w3 = w2 + wStride;
        for (int i = 0; i < hd; i += 8)
        {
            Vector128<float> a0 = Vector128.Load(acc + i), b0 = Vector128.Load(acc + i + 4);
            Vector128<float> a1 = Vector128.Load(acc + hd + i), b1 = Vector128.Load(acc + hd + i + 4);
            Vector128<float> a2 = Vector128.Load(acc + 2 * hd + i), b2 = Vector128.Load(acc + 2 * hd + i + 4);
            Vector128<float> a3 = Vector128.Load(acc + 3 * hd + i), b3 = Vector128.Load(acc + 3 * hd + i + 4);
            for (int j = 0; j < count; j++)
            {
                var (lo16, _) = Vector128.Widen(Vector128.CreateScalar(*(long*)(v + j * stride + i)).AsSByte());
                var (lo32, hi32) = Vector128.Widen(lo16);
                Vector128<float> lo = Vector128.ConvertToSingle(lo32), hi = Vector128.ConvertToSingle(hi32);
                a0 = Vector128.FusedMultiplyAdd(Vector128.Create(w[j]), lo, a0);
                b0 = Vector128.FusedMultiplyAdd(Vector128.Create(w[j]), hi, b0);
                a1 = Vector128.FusedMultiplyAdd(Vector128.Create(w1[j]), lo, a1);
                b1 = Vector128.FusedMultiplyAdd(Vector128.Create(w1[j]), hi, b1);
                a2 = Vector128.FusedMultiplyAdd(Vector128.Create(w2[j]), lo, a2);
                b2 = Vector128.FusedMultiplyAdd(Vector128.Create(w2[j]), hi, b2);
                a3 = Vector128.FusedMultiplyAdd(Vector128.Create(w3[j]), lo, a3);
                b3 = Vector128.FusedMultiplyAdd(Vector128.Create(w3[j]), hi, b3);
            }
            a0.Store(acc + i);
            b0.Store(acc + i + 4);
            a1.Store(acc + hd + i);
            b1.Store(acc + hd + i + 4);
            a2.Store(acc + 2 * hd + i);
            b2.Store(acc + 2 * hd + i + 4);
            a3.Store(acc + 3 * hd + i);
            b3.Store(acc + 3 * hd + i + 4);
        }
    }
}
