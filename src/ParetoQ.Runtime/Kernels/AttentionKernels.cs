using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// One kernel path's inner loops of attention over an int8 KV cache, four query heads at a time (the heads that share
/// one KV head under GQA), so each cached key and value row is loaded and widened once for all four. Rows are
/// <c>count</c> cached positions <c>stride</c> bytes apart; a head vector is <c>hd</c> values. Every path gives the
/// <see cref="ScalarAttentionKernel"/> result bit for bit. The vector paths take head sizes that are multiples of 16;
/// <see cref="Int8Attention"/> sends any other size to the scalar loops.
/// </summary>
internal unsafe interface IAttentionKernel
{
    /// <summary>dots[j·4 + h] = Σ_i q[h·hd + i] · k[j·stride + i] for j &lt; count, h &lt; 4: exact int32
    /// q·k.</summary>
    static abstract void DotInt8x4(sbyte* q, sbyte* k, long stride, int count, int hd, int* dots);

    /// <summary>acc[h·hd + i] = fma(w[j·4 + h], v[j·stride + i], acc[h·hd + i]) over j = 0..count−1 in order, for h
    /// &lt; 4.</summary>
    static abstract void AccumulateInt8x4(float* acc, sbyte* v, long stride, int count, int hd, float* w);
}

/// <summary>The reference inner loops: plain loops, the result every other path must give.</summary>
internal unsafe struct ScalarAttentionKernel : IAttentionKernel
{
    public const int Heads = Int8Attention.Heads;

    public static void DotInt8x4(sbyte* q, sbyte* k, long stride, int count, int hd, int* dots)
    {
        for (int j = 0; j < count; j++)
        {
            sbyte* row = k + j * stride;
            for (int h = 0; h < Heads; h++)
            {
                int sum = 0;
                for (int i = 0; i < hd; i++) sum += q[h * hd + i] * row[i];
                dots[j * Heads + h] = sum;
            }
        }
    }

    public static void AccumulateInt8x4(float* acc, sbyte* v, long stride, int count, int hd, float* w)
    {
        for (int h = 0; h < Heads; h++)
            for (int i = 0; i < hd; i++)
            {
                float a = acc[h * hd + i];
                for (int j = 0; j < count; j++) a = MathF.FusedMultiplyAdd(w[j * Heads + h], v[j * stride + i], a);
                acc[h * hd + i] = a;
            }
    }
}

/// <summary>x86 AVX2 (the AVX-VNNI path takes it too): int16 multiply-adds, 256-bit FMA.</summary>
internal unsafe struct Avx2AttentionKernel : IAttentionKernel
{
    private const int Heads = Int8Attention.Heads;

    public static void AccumulateInt8x4(float* acc, sbyte* v, long stride, int count, int hd, float* w)
    {
        if (Fma.IsSupported) Accumulate(acc, v, stride, count, hd, w);
        else ScalarAttentionKernel.AccumulateInt8x4(acc, v, stride, count, hd, w);
    }

    // 16 values a step: the key row widens to int16 once; vpmaddwd against each head's q (widened once per call), then
    // one horizontal-add tree turns the four accumulators into the four dots.
    public static void DotInt8x4(sbyte* q, sbyte* k, long stride, int count, int hd, int* dots)
    {
        short* q16 = stackalloc short[Heads * hd]; // (4, hd): q as int16
        for (int i = 0; i < Heads * hd; i += 16) Avx2.ConvertToVector256Int16(q + i).Store(q16 + i);
        short* q1 = q16 + hd, q2 = q16 + 2 * hd, q3 = q16 + 3 * hd;
        for (int j = 0; j < count; j++)
        {
            sbyte* row = k + j * stride;
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int i = 0; i < hd; i += 16)
            {
                var x = Avx2.ConvertToVector256Int16(row + i);
                a0 += Avx2.MultiplyAddAdjacent(x, Vector256.Load(q16 + i));
                a1 += Avx2.MultiplyAddAdjacent(x, Vector256.Load(q1 + i));
                a2 += Avx2.MultiplyAddAdjacent(x, Vector256.Load(q2 + i));
                a3 += Avx2.MultiplyAddAdjacent(x, Vector256.Load(q3 + i));
            }
            var s = Avx2.HorizontalAdd(Avx2.HorizontalAdd(a0, a1), Avx2.HorizontalAdd(a2, a3));
            (s.GetLower() + s.GetUpper()).Store(dots + j * Heads);
        }
    }

    // 8 values a step, the four heads' accumulators in registers across all positions: a value row is widened once.
    private static void Accumulate(float* acc, sbyte* v, long stride, int count, int hd, float* w)
    {
        for (int i = 0; i < hd; i += 8)
        {
            var a0 = Vector256.Load(acc + i);
            var a1 = Vector256.Load(acc + hd + i);
            var a2 = Vector256.Load(acc + 2 * hd + i);
            var a3 = Vector256.Load(acc + 3 * hd + i);
            for (int j = 0; j < count; j++)
            {
                var x = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(v + j * stride + i));
                float* wj = w + j * Heads;
                a0 = Fma.MultiplyAdd(Vector256.Create(wj[0]), x, a0);
                a1 = Fma.MultiplyAdd(Vector256.Create(wj[1]), x, a1);
                a2 = Fma.MultiplyAdd(Vector256.Create(wj[2]), x, a2);
                a3 = Fma.MultiplyAdd(Vector256.Create(wj[3]), x, a3);
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
/// by s8 and sums four products into each int32 lane, so a 64-value row leaves 8 lanes per head to reduce where
/// vpmaddwd leaves 16 (or 32 at 512 bits), and the keys need no widening. The keys are taken as u8 by flipping their
/// sign bit (k + 128); 128·Σq is taken off again, so the dots are exact. The value pass is the AVX2 one.
/// </summary>
internal unsafe struct VnniAttentionKernel : IAttentionKernel
{
    private const int Heads = Int8Attention.Heads;

    public static void AccumulateInt8x4(float* acc, sbyte* v, long stride, int count, int hd, float* w) =>
        Avx2AttentionKernel.AccumulateInt8x4(acc, v, stride, count, hd, w);

    public static void DotInt8x4(sbyte* q, sbyte* k, long stride, int count, int hd, int* dots)
    {
        if (hd % 32 != 0)
        {
            Avx2AttentionKernel.DotInt8x4(q, k, stride, count, hd, dots);
            return;
        }
        var offset = Vector128<int>.Zero; // 128·Σq per head
        for (int h = 0; h < Heads; h++)
        {
            int sum = 0;
            for (int i = 0; i < hd; i++) sum += q[h * hd + i];
            offset = offset.WithElement(h, 128 * sum);
        }
        var offset2 = Vector256.Create(offset, offset);
        var flip = Vector256.Create((byte)0x80);
        sbyte* q1 = q + hd, q2 = q + 2 * hd, q3 = q + 3 * hd;
        int j = 0;
        // Two positions a step: their lane sums finish in one 256-bit add and store.
        for (; j + 2 <= count; j += 2)
        {
            byte* r0 = (byte*)(k + j * stride), r1 = (byte*)(k + (j + 1) * stride);
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector256<int> b0 = default, b1 = default, b2 = default, b3 = default;
            for (int i = 0; i < hd; i += 32)
            {
                var k0 = Vector256.Load(r0 + i) ^ flip;
                var k1 = Vector256.Load(r1 + i) ^ flip;
                var x0 = Vector256.Load(q + i);
                var x1 = Vector256.Load(q1 + i);
                var x2 = Vector256.Load(q2 + i);
                var x3 = Vector256.Load(q3 + i);
                a0 = AvxVnni.MultiplyWideningAndAdd(a0, k0, x0);
                a1 = AvxVnni.MultiplyWideningAndAdd(a1, k0, x1);
                a2 = AvxVnni.MultiplyWideningAndAdd(a2, k0, x2);
                a3 = AvxVnni.MultiplyWideningAndAdd(a3, k0, x3);
                b0 = AvxVnni.MultiplyWideningAndAdd(b0, k1, x0);
                b1 = AvxVnni.MultiplyWideningAndAdd(b1, k1, x1);
                b2 = AvxVnni.MultiplyWideningAndAdd(b2, k1, x2);
                b3 = AvxVnni.MultiplyWideningAndAdd(b3, k1, x3);
            }
            var a = HeadLanes(a0, a1, a2, a3);
            var b = HeadLanes(b0, b1, b2, b3);
            (Avx2.Permute2x128(a, b, 0x20) + Avx2.Permute2x128(a, b, 0x31) - offset2).Store(dots + j * Heads);
        }
        if (j < count)
        {
            byte* r0 = (byte*)(k + j * stride);
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int i = 0; i < hd; i += 32)
            {
                var k0 = Vector256.Load(r0 + i) ^ flip;
                a0 = AvxVnni.MultiplyWideningAndAdd(a0, k0, Vector256.Load(q + i));
                a1 = AvxVnni.MultiplyWideningAndAdd(a1, k0, Vector256.Load(q1 + i));
                a2 = AvxVnni.MultiplyWideningAndAdd(a2, k0, Vector256.Load(q2 + i));
                a3 = AvxVnni.MultiplyWideningAndAdd(a3, k0, Vector256.Load(q3 + i));
            }
            var a = HeadLanes(a0, a1, a2, a3);
            (a.GetLower() + a.GetUpper() - offset).Store(dots + j * Heads);
        }
    }

    // Each 128-bit lane of the result: (head 0, 1, 2, 3), the sum of that lane of a0..a3.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> HeadLanes(Vector256<int> a0, Vector256<int> a1, Vector256<int> a2,
        Vector256<int> a3)
    {
        var t01 = Avx2.UnpackLow(a0, a1) + Avx2.UnpackHigh(a0, a1);
        var t23 = Avx2.UnpackLow(a2, a3) + Avx2.UnpackHigh(a2, a3);
        return Avx2.UnpackLow(t01.AsInt64(), t23.AsInt64()).AsInt32()
            + Avx2.UnpackHigh(t01.AsInt64(), t23.AsInt64()).AsInt32(); // added as int32: no carry across
    }
}

/// <summary>
/// x86 AVX-512BW (the avx512 and avx512gfni paths): the four heads' q widened to int16 once per call instead of once
/// per position, 512-bit multiply-adds for the scores, and all four heads' accumulators for 64 values of a head held in
/// registers while the value rows stream past, so each row is loaded and converted once and each weight broadcast
/// once per 64 values (the AVX2 loops redo both per 8). On CPUs with AVX-VNNI the scores take the VNNI loop instead:
/// attention in L2 ran 1.1-1.15x faster with it on a Zen 5 core (docs/BENCHMARKS.md).
/// </summary>
internal unsafe struct Avx512AttentionKernel : IAttentionKernel
{
    private const int Heads = Int8Attention.Heads;

    public static void DotInt8x4(sbyte* q, sbyte* k, long stride, int count, int hd, int* dots)
    {
        if (AvxVnni.IsSupported && hd % 32 == 0)
        {
            VnniAttentionKernel.DotInt8x4(q, k, stride, count, hd, dots);
            return;
        }
        short* q16 = stackalloc short[Heads * hd]; // (4, hd): q as int16
        for (int i = 0; i < Heads * hd; i += 16) Avx2.ConvertToVector256Int16(q + i).Store(q16 + i);
        short* q1 = q16 + hd, q2 = q16 + 2 * hd, q3 = q16 + 3 * hd;
        for (int j = 0; j < count; j++)
        {
            sbyte* row = k + j * stride;
            Vector512<int> a0 = default, a1 = default, a2 = default, a3 = default;
            int i = 0;
            for (; i + 32 <= hd; i += 32)
            {
                var x = Avx512BW.ConvertToVector512Int16(Vector256.Load(row + i));
                a0 += Avx512BW.MultiplyAddAdjacent(x, Vector512.Load(q16 + i));
                a1 += Avx512BW.MultiplyAddAdjacent(x, Vector512.Load(q1 + i));
                a2 += Avx512BW.MultiplyAddAdjacent(x, Vector512.Load(q2 + i));
                a3 += Avx512BW.MultiplyAddAdjacent(x, Vector512.Load(q3 + i));
            }
            if (i < hd)
            {
                // A 16-value tail, in the lower half (integer sums: the order of the additions does not matter).
                var x = Avx2.ConvertToVector256Int16(row + i);
                a0 += Avx2.MultiplyAddAdjacent(x, Vector256.Load(q16 + i)).ToVector512();
                a1 += Avx2.MultiplyAddAdjacent(x, Vector256.Load(q1 + i)).ToVector512();
                a2 += Avx2.MultiplyAddAdjacent(x, Vector256.Load(q2 + i)).ToVector512();
                a3 += Avx2.MultiplyAddAdjacent(x, Vector256.Load(q3 + i)).ToVector512();
            }
            // Transpose-and-add: after two unpack levels each 128-bit lane holds (head 0, 1, 2, 3) partial sums, so
            // folding the four lanes gives the four dots (single-uop steps; vphaddd costs three).
            var a01 = Avx512F.UnpackLow(a0, a1) + Avx512F.UnpackHigh(a0, a1);
            var a23 = Avx512F.UnpackLow(a2, a3) + Avx512F.UnpackHigh(a2, a3);
            var heads = Avx512F.UnpackLow(a01.AsInt64(), a23.AsInt64()).AsInt32()
                + Avx512F.UnpackHigh(a01.AsInt64(), a23.AsInt64()).AsInt32(); // added as int32: no carry across
            var half = heads.GetLower() + heads.GetUpper();
            (half.GetLower() + half.GetUpper()).Store(dots + j * Heads);
        }
    }

    public static void AccumulateInt8x4(float* acc, sbyte* v, long stride, int count, int hd, float* w)
    {
        int i = 0;
        for (; i + 64 <= hd; i += 64) Accumulate64(acc + i, v + i, stride, count, hd, w);
        for (; i < hd; i += 16) Accumulate16(acc + i, v + i, stride, count, hd, w);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Widen(sbyte* v) =>
        Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(v)));

    // Values [0, 64) of each head: 16 accumulators stay in registers over all positions.
    private static void Accumulate64(float* acc, sbyte* v, long stride, int count, int hd, float* w)
    {
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
            Vector512<float> x0 = Widen(row), x1 = Widen(row + 16), x2 = Widen(row + 32), x3 = Widen(row + 48);
            float* wj = w + j * Heads;
            var w0 = Vector512.Create(wj[0]);
            a00 = Avx512F.FusedMultiplyAdd(w0, x0, a00);
            a01 = Avx512F.FusedMultiplyAdd(w0, x1, a01);
            a02 = Avx512F.FusedMultiplyAdd(w0, x2, a02);
            a03 = Avx512F.FusedMultiplyAdd(w0, x3, a03);
            var w1 = Vector512.Create(wj[1]);
            a10 = Avx512F.FusedMultiplyAdd(w1, x0, a10);
            a11 = Avx512F.FusedMultiplyAdd(w1, x1, a11);
            a12 = Avx512F.FusedMultiplyAdd(w1, x2, a12);
            a13 = Avx512F.FusedMultiplyAdd(w1, x3, a13);
            var w2 = Vector512.Create(wj[2]);
            a20 = Avx512F.FusedMultiplyAdd(w2, x0, a20);
            a21 = Avx512F.FusedMultiplyAdd(w2, x1, a21);
            a22 = Avx512F.FusedMultiplyAdd(w2, x2, a22);
            a23 = Avx512F.FusedMultiplyAdd(w2, x3, a23);
            var w3 = Vector512.Create(wj[3]);
            a30 = Avx512F.FusedMultiplyAdd(w3, x0, a30);
            a31 = Avx512F.FusedMultiplyAdd(w3, x1, a31);
            a32 = Avx512F.FusedMultiplyAdd(w3, x2, a32);
            a33 = Avx512F.FusedMultiplyAdd(w3, x3, a33);
        }
        a00.Store(c0); a01.Store(c0 + 16); a02.Store(c0 + 32); a03.Store(c0 + 48);
        a10.Store(c1); a11.Store(c1 + 16); a12.Store(c1 + 32); a13.Store(c1 + 48);
        a20.Store(c2); a21.Store(c2 + 16); a22.Store(c2 + 32); a23.Store(c2 + 48);
        a30.Store(c3); a31.Store(c3 + 16); a32.Store(c3 + 32); a33.Store(c3 + 48);
    }

    // Values [0, 16) of each head (head sizes that 64 does not divide).
    private static void Accumulate16(float* acc, sbyte* v, long stride, int count, int hd, float* w)
    {
        Vector512<float> a0 = Vector512.Load(acc), a1 = Vector512.Load(acc + hd), a2 = Vector512.Load(acc + 2 * hd),
            a3 = Vector512.Load(acc + 3 * hd);
        for (int j = 0; j < count; j++)
        {
            var x = Widen(v + j * stride);
            float* wj = w + j * Heads;
            a0 = Avx512F.FusedMultiplyAdd(Vector512.Create(wj[0]), x, a0);
            a1 = Avx512F.FusedMultiplyAdd(Vector512.Create(wj[1]), x, a1);
            a2 = Avx512F.FusedMultiplyAdd(Vector512.Create(wj[2]), x, a2);
            a3 = Avx512F.FusedMultiplyAdd(Vector512.Create(wj[3]), x, a3);
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

    public static void DotInt8x4(sbyte* q, sbyte* k, long stride, int count, int hd, int* dots)
    {
        sbyte* q1 = q + hd, q2 = q + 2 * hd, q3 = q + 3 * hd;
        for (int j = 0; j < count; j++)
        {
            sbyte* row = k + j * stride;
            Vector128<int> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int i = 0; i < hd; i += 16)
            {
                var x = Vector128.Load(row + i);
                a0 = Dp.DotProduct(a0, x, Vector128.Load(q + i));
                a1 = Dp.DotProduct(a1, x, Vector128.Load(q1 + i));
                a2 = Dp.DotProduct(a2, x, Vector128.Load(q2 + i));
                a3 = Dp.DotProduct(a3, x, Vector128.Load(q3 + i));
            }
            AdvSimd.Arm64.AddPairwise(AdvSimd.Arm64.AddPairwise(a0, a1),
                AdvSimd.Arm64.AddPairwise(a2, a3)).Store(dots + j * Heads);
        }
    }

    public static void AccumulateInt8x4(float* acc, sbyte* v, long stride, int count, int hd, float* w)
    {
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
                float* wj = w + j * Heads;
                lo0 = Fma128(lo0, wj[0], xl); hi0 = Fma128(hi0, wj[0], xh);
                lo1 = Fma128(lo1, wj[1], xl); hi1 = Fma128(hi1, wj[1], xh);
                lo2 = Fma128(lo2, wj[2], xl); hi2 = Fma128(hi2, wj[2], xh);
                lo3 = Fma128(lo3, wj[3], xl); hi3 = Fma128(hi3, wj[3], xh);
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
/// Head sizes that are a multiple of 8 but not of 16 (stories260K's 8), on any vector hardware: 8 values a step in
/// portable 128-bit vectors. Before it they took the scalar loops, and attention was 84% of stories260K's decode step.
/// Integer dots are exact; each output element gets the same fused multiply-adds in the same order as the scalar
/// kernel, so the results are equal bit for bit.
/// </summary>
internal unsafe struct Narrow8AttentionKernel : IAttentionKernel
{
    private const int Heads = Int8Attention.Heads;

    // Eight int8 values, sign-extended to int16.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<short> Load8(sbyte* p) =>
        Vector128.WidenLower(Vector128.CreateScalar(*(long*)p).AsSByte());

    // Σ of the 8 products (|q| ≤ 127 and |k| ≤ 128, so each product fits int16; the sum is taken in int32).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Dot8(Vector128<short> a, Vector128<short> b)
    {
        var (lo, hi) = Vector128.Widen(a * b);
        return Vector128.Sum(lo + hi);
    }

    public static void DotInt8x4(sbyte* q, sbyte* k, long stride, int count, int hd, int* dots)
    {
        for (int j = 0; j < count; j++)
        {
            sbyte* row = k + j * stride;
            int d0 = 0, d1 = 0, d2 = 0, d3 = 0;
            for (int i = 0; i < hd; i += 8)
            {
                var kv = Load8(row + i);
                d0 += Dot8(kv, Load8(q + i));
                d1 += Dot8(kv, Load8(q + hd + i));
                d2 += Dot8(kv, Load8(q + 2 * hd + i));
                d3 += Dot8(kv, Load8(q + 3 * hd + i));
            }
            int* d = dots + j * Heads;
            (d[0], d[1], d[2], d[3]) = (d0, d1, d2, d3);
        }
    }

    public static void AccumulateInt8x4(float* acc, sbyte* v, long stride, int count, int hd, float* w)
    {
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
                float* wj = w + j * Heads;
                a0 = Vector128.FusedMultiplyAdd(Vector128.Create(wj[0]), lo, a0);
                b0 = Vector128.FusedMultiplyAdd(Vector128.Create(wj[0]), hi, b0);
                a1 = Vector128.FusedMultiplyAdd(Vector128.Create(wj[1]), lo, a1);
                b1 = Vector128.FusedMultiplyAdd(Vector128.Create(wj[1]), hi, b1);
                a2 = Vector128.FusedMultiplyAdd(Vector128.Create(wj[2]), lo, a2);
                b2 = Vector128.FusedMultiplyAdd(Vector128.Create(wj[2]), hi, b2);
                a3 = Vector128.FusedMultiplyAdd(Vector128.Create(wj[3]), lo, a3);
                b3 = Vector128.FusedMultiplyAdd(Vector128.Create(wj[3]), hi, b3);
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
