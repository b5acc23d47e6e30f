using System.Runtime.Intrinsics;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// Element-wise activations of the fast path, with vector exp. <see cref="ScalarKernels"/> holds the references, which
/// exact mode uses; these agree with them to a few ulp.
/// </summary>
public static class ActivationKernels
{
    /// <summary>
    /// y = x / sqrt(mean(x²) + eps) · weight (no weight when empty). The squares are summed in 16 interleaved partial
    /// sums, then added in a fixed tree (<see cref="SumOfSquaresReference"/>): the scalar reference's one chain of
    /// dependent adds took 2.5 µs for 1280 values, 3% of a 1B decode step. Every CPU forms the same partial sums, so
    /// the result never depends on the CPU.
    /// </summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        if (y.Length < x.Length || (!weight.IsEmpty && weight.Length < x.Length))
            throw new ArgumentException("y or weight is shorter than x", nameof(y));
        float ss = SumOfSquares(x);
        float inv = 1f / MathF.Sqrt(ss / x.Length + eps);
        int i = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            var vInv = Vector128.Create(inv);
            if (weight.IsEmpty)
                for (; i + 4 <= x.Length; i += 4) (Vector128.Create(x.Slice(i, 4)) * vInv).CopyTo(y.Slice(i, 4));
            else
                for (; i + 4 <= x.Length; i += 4)
                    (Vector128.Create(x.Slice(i, 4)) * vInv * Vector128.Create(weight.Slice(i, 4))).CopyTo(
                        y.Slice(i, 4));
        }
        if (weight.IsEmpty)
            for (; i < x.Length; i++) y[i] = x[i] * inv;
        else
            for (; i < x.Length; i++) y[i] = x[i] * inv * weight[i];
    }

    /// <summary>Σ x² as <see cref="SumOfSquaresReference"/> forms it, four 4-wide vectors at a time.</summary>
    public static float SumOfSquares(ReadOnlySpan<float> x)
    {
        if (!Vector128.IsHardwareAccelerated) return SumOfSquaresReference(x);
        int i = 0;
        Vector128<float> s0 = default, s1 = default, s2 = default, s3 = default;
        for (; i + 16 <= x.Length; i += 16)
        {
            var a = Vector128.Create(x.Slice(i, 4));
            var b = Vector128.Create(x.Slice(i + 4, 4));
            var c = Vector128.Create(x.Slice(i + 8, 4));
            var d = Vector128.Create(x.Slice(i + 12, 4));
            s0 += a * a;
            s1 += b * b;
            s2 += c * c;
            s3 += d * d;
        }
        var s = s0 + s1 + (s2 + s3);
        float sum = s[0] + s[1] + (s[2] + s[3]);
        for (; i < x.Length; i++) sum += x[i] * x[i];
        return sum;
    }

    /// <summary>Σ x² in plain loops: partial sum j holds the values at 16k + j; they are added as four groups of four
    /// lanes, ((g0 + g1) + (g2 + g3)), then the group's lanes (0 + 1) + (2 + 3); the tail past the last 16 follows in
    /// order.</summary>
    public static float SumOfSquaresReference(ReadOnlySpan<float> x)
    {
        Span<float> lanes = stackalloc float[16];
        lanes.Clear();
        int i = 0;
        for (; i + 16 <= x.Length; i += 16)
            for (int j = 0; j < 16; j++) lanes[j] += x[i + j] * x[i + j];
        Span<float> group = stackalloc float[4];
        for (int j = 0; j < 4; j++) group[j] = lanes[j] + lanes[4 + j] + (lanes[8 + j] + lanes[12 + j]);
        float sum = group[0] + group[1] + (group[2] + group[3]);
        for (; i < x.Length; i++) sum += x[i] * x[i];
        return sum;
    }

    /// <summary>
    /// <see cref="ScalarKernels.Rope"/>, with vectors for the rotate-half layout: the same products and differences in
    /// the same order, so the same result.
    /// </summary>
    public static void Rope(ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, bool interleaved, Span<float> head)
    {
        int half = head.Length / 2, i = 0;
        if (!interleaved && Vector128.IsHardwareAccelerated)
        {
            if (cos.Length < half || sin.Length < half) throw new ArgumentException("fewer angles than head_dim / 2",
                nameof(cos));
            var lo = head[..half];
            var hi = head.Slice(half, half);
            for (; i + 4 <= half; i += 4)
            {
                var (x0, x1) = (Vector128.Create(lo.Slice(i, 4)), Vector128.Create(hi.Slice(i, 4)));
                var (c, s) = (Vector128.Create(cos.Slice(i, 4)), Vector128.Create(sin.Slice(i, 4)));
                (x0 * c - x1 * s).CopyTo(lo.Slice(i, 4));
                (x1 * c + x0 * s).CopyTo(hi.Slice(i, 4));
            }
        }
        ScalarKernels.Rope(cos[i..], sin[i..], interleaved, head, i);
    }

    /// <summary>gate[i] = silu(gate[i]) · up[i], silu(g) = g / (1 + e^−g).</summary>
    public static void SwiGlu(ReadOnlySpan<float> up, Span<float> gate)
    {
        if (up.Length < gate.Length) throw new ArgumentException("up is shorter than gate", nameof(up));
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= gate.Length; i += 8)
            {
                var g = Vector256.Create(gate.Slice(i, 8));
                (g / (Vector256<float>.One + Vector256.Exp(-g)) * Vector256.Create(up.Slice(i, 8))).CopyTo(gate.Slice(i,
                    8));
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            for (; i + 4 <= gate.Length; i += 4)
            {
                var g = Vector128.Create(gate.Slice(i, 4));
                (g / (Vector128<float>.One + Vector128.Exp(-g)) * Vector128.Create(up.Slice(i, 4))).CopyTo(gate.Slice(i,
                    4));
            }
        }
        ScalarKernels.SwiGlu(up[i..gate.Length], gate[i..]);
    }
}
