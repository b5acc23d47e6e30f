using ParetoQ.Runtime.Kernels;

namespace ParetoQ.KernelCheck;

/// <summary>
/// The fast path's per-token vector work against its scalar references, on lengths around every vector width: the
/// RmsNorm sum of squares (bit for bit with its reference) and norm (to rounding), the rotary encoding in both layouts
/// (bit for bit), the int8 activation quantization with rounding ties in the vector body (bit for bit), and the
/// attention softmax's exp against <see cref="MathF.Exp"/>.
/// </summary>
public static class ActivationSuite
{
    private static readonly int[] Lengths = [1, 3, 7, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 100, 1280, 1283, 3584];

    public static IEnumerable<(string Name, Func<string?> Run)> Cases() =>
    [
        ("rms norm", RmsNorm),
        ("rope", Rope),
        ("activation quantization", Quantization),
        ("softmax exp", SoftmaxExp),
    ];

    /// <summary>Int8Attention.SoftmaxExp over x ≤ 0: within 2 ulp of MathF.Exp where that is a normal float, 0 (or
    /// the smallest normals) below, exactly 1 at 0.</summary>
    public static string? SoftmaxExp()
    {
        var xs = new List<float> { 0f, -0f, float.NegativeInfinity, -87.3f, -87.29f, -87.31f, -88f, -1e-30f, -1e-7f };
        for (int i = 0; i <= 400_000; i++) xs.Add(-100f * i / 400_000);
        while (xs.Count % 8 != 0) xs.Add(-1f);
        var x = xs.ToArray();
        const float MinNormal = 1.17549435e-38f;
        for (int i = 0; i < x.Length; i += 8)
        {
            var actual = Int8Attention.SoftmaxExp(System.Runtime.Intrinsics.Vector256.Create(x.AsSpan(i, 8)));
            for (int k = 0; k < 8; k++)
            {
                float e = MathF.Exp(x[i + k]), a = actual[k];
                bool normal = e >= MinNormal * 2;
                float ulp = MathF.BitIncrement(e) - e;
                if (normal ? !(MathF.Abs(a - e) <= 2 * ulp) : !(a >= 0 && a <= MinNormal * 2))
                    return $"exp({x[i + k]:R}) = {a:R}, MathF.Exp {e:R}";
            }
        }
        return Int8Attention.SoftmaxExp(System.Runtime.Intrinsics.Vector256<float>.Zero)[0] == 1f ? null
            : "exp(0) is not 1";
    }

    public static string? RmsNorm()
    {
        var rng = new Random(11);
        foreach (int n in Lengths)
        {
            var x = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 8 - 4)).ToArray();
            var weight = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2)).ToArray();
            float sum = ActivationKernels.SumOfSquares(x), reference = ActivationKernels.SumOfSquaresReference(x);
            if (sum != reference) return $"n {n}: sum of squares {sum:R}, reference {reference:R}";
            foreach (var w in new[] { weight, [] })
            {
                var expected = new float[n];
                var actual = new float[n];
                ScalarKernels.RmsNorm(x, w, 1e-5f, expected);
                ActivationKernels.RmsNorm(x, w, 1e-5f, actual);
                for (int i = 0; i < n; i++)
                    if (Math.Abs(actual[i] - expected[i]) > 2e-6f * Math.Abs(expected[i]) + 1e-30f)
                        return $"n {n}, element {i}: {actual[i]:R}, scalar {expected[i]:R}";
            }
        }
        return null;
    }

    public static string? Rope()
    {
        var rng = new Random(5);
        foreach (int hd in new[] { 2, 6, 8, 10, 14, 64, 66, 128 })
            foreach (bool interleaved in new[] { false, true })
            {
                var angles = Enumerable.Range(0, hd / 2).Select(_ => rng.NextDouble() * 100).ToArray();
                var cos = angles.Select(a => (float)Math.Cos(a)).ToArray();
                var sin = angles.Select(a => (float)Math.Sin(a)).ToArray();
                var head = Enumerable.Range(0, hd).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
                var expected = (float[])head.Clone();
                ScalarKernels.Rope(cos, sin, interleaved, expected);
                ActivationKernels.Rope(cos, sin, interleaved, head);
                for (int i = 0; i < hd; i++)
                    if (BitConverter.SingleToUInt32Bits(head[i]) != BitConverter.SingleToUInt32Bits(expected[i]))
                        return $"head {hd}, interleaved {interleaved}, element {i}: {head[i]:R}, " +
                            $"scalar {expected[i]:R}";
            }
        return null;
    }

    public static string? Quantization()
    {
        var rng = new Random(3);
        foreach (int n in Lengths)
        {
            // Halves scaled by 1 (the maximum is 127) put rounding ties in the vector body as well as the tail.
            var x = Enumerable.Range(0, n).Select(_ => rng.Next(-254, 255) / 2f).ToArray();
            x[rng.Next(n)] = -127f;
            float absMax = x.Max(MathF.Abs), inv = 127f / absMax;
            var dst = new sbyte[n + 5];
            float scale = QuantizedActivations.QuantizeRow(x, dst);
            if (scale != absMax / 127f) return $"n {n}: scale {scale:R}, expected {absMax / 127f:R}";
            for (int i = 0; i < n; i++)
                if (dst[i] != (sbyte)(int)MathF.Round(x[i] * inv))
                    return $"n {n}, element {i} ({x[i]}): {dst[i]}, scalar {(sbyte)(int)MathF.Round(x[i] * inv)}";
            for (int i = n; i < dst.Length; i++)
                if (dst[i] != 0) return $"n {n}: padding byte {i} is {dst[i]}, not 0";
        }
        return null;
    }
}
