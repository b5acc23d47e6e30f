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

/// <summary>x86 AVX2 (the AVX-VNNI and AVX-512 paths take it too): int16 multiply-adds, 256-bit FMA.</summary>
internal unsafe struct Avx2AttentionKernel : IAttentionKernel
{
    private const int Heads = Int8Attention.Heads;

    public static void AccumulateInt8x4(float* acc, sbyte* v, long stride, int count, int hd, float* w)
    {
        if (Fma.IsSupported) Accumulate(acc, v, stride, count, hd, w);
        else ScalarAttentionKernel.AccumulateInt8x4(acc, v, stride, count, hd, w);
    }

    // 16 values a step: the key row widens to int16 once; vpmaddwd against each head's q, then one horizontal-add tree
    // turns the four accumulators into the four dots.
    public static void DotInt8x4(sbyte* q, sbyte* k, long stride, int count, int hd, int* dots)
    {
        sbyte* q1 = q + hd, q2 = q + 2 * hd, q3 = q + 3 * hd;
        for (int j = 0; j < count; j++)
        {
            sbyte* row = k + j * stride;
            Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int i = 0; i < hd; i += 16)
            {
                var x = Avx2.ConvertToVector256Int16(row + i);
                a0 += Avx2.MultiplyAddAdjacent(x, Avx2.ConvertToVector256Int16(q + i));
                a1 += Avx2.MultiplyAddAdjacent(x, Avx2.ConvertToVector256Int16(q1 + i));
                a2 += Avx2.MultiplyAddAdjacent(x, Avx2.ConvertToVector256Int16(q2 + i));
                a3 += Avx2.MultiplyAddAdjacent(x, Avx2.ConvertToVector256Int16(q3 + i));
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
