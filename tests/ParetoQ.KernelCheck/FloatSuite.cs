using System.Buffers.Binary;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.KernelCheck;

/// <summary>
/// The dense float fast path (<see cref="FloatMatMul"/>, portable vectors: AVX2/AVX-512 on x64, NEON on arm64) against
/// its scalar references: 16-bit widening on every bit pattern, then matmuls of each float format on widths around the
/// vector sizes.
/// </summary>
public static class FloatSuite
{
    public static readonly WeightFormat[] Formats = [WeightFormat.F32, WeightFormat.F16, WeightFormat.BF16];

    public static IEnumerable<(string Name, Func<string?> Run)> Cases() =>
        Formats.Where(f => f != WeightFormat.F32).Select(f
            => ($"widen {WeightFormats.Name(f)}", (Func<string?>)(() => Widening(f))))
            .Concat(Formats.Select(f => ($"dense matmul {WeightFormats.Name(f)}", (Func<string?>)(() => MatMul(f)))));

    /// <summary>Null when <see cref="FloatMatMul.WidenRow"/> gives <see cref="FloatCodec.Decode"/>'s values for all
    /// 65536 patterns.</summary>
    public static string? Widening(WeightFormat format)
    {
        // Zeros, subnormals, normals, the largest finite, infinities and NaNs of both signs.
        var all = new byte[65536 * 2];
        for (int i = 0; i < 65536; i++) BinaryPrimitives.WriteUInt16LittleEndian(all.AsSpan(2 * i), (ushort)i);
        // Starts and lengths that leave vector tails and misalign the source.
        foreach (var (start, length) in new[] { (0L, 65536), (1L, 65533), (37L, 5), (65530L, 6) })
        {
            var expected = new float[length];
            FloatCodec.Decode(format, all, start, expected);
            var actual = new float[length];
            FloatMatMul.WidenRow(format, all, start, actual);
            for (int i = 0; i < length; i++)
            {
                uint e = BitConverter.SingleToUInt32Bits(expected[i]), a = BitConverter.SingleToUInt32Bits(actual[i]);
                // A NaN's payload may differ; its sign and NaN-ness may not.
                bool same = float.IsNaN(expected[i]) ? float.IsNaN(actual[i]) && e >> 31 == a >> 31 : a == e;
                if (!same) return $"pattern 0x{start + i:X4}: {actual[i]:R}, scalar {expected[i]:R}";
            }
        }
        return null;
    }

    /// <summary>Null when <see cref="FloatMatMul.Rows"/> agrees with <see cref="ScalarKernels.MatMulRows"/> to
    /// rounding.</summary>
    public static string? MatMul(WeightFormat format)
    {
        var rng = new Random(17);
        // Every width up to 4 × 16 (each tail of every vector width), then one long row; a row range that starts and
        // ends inside the matrix.
        foreach (int cols in Enumerable.Range(1, 64).Append(257))
            foreach (int tokens in new[] { 1, 3 })
            {
                const int rows = 7;
                var values = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
                byte[] w = FloatCodec.Encode(format, values);
                var x = Enumerable.Range(0, tokens * cols).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
                var expected = new float[tokens * rows];
                ScalarKernels.MatMulRows(format, rows, cols, w, x, tokens, 1, rows - 1, [], new float[cols], expected);
                var actual = new float[tokens * rows];
                FloatMatMul.Rows(format, rows, cols, w, x, tokens, 1, rows - 1, new float[cols], actual);
                for (int t = 0; t < tokens; t++)
                    for (int r = 0; r < rows; r++)
                    {
                        int i = t * rows + r;
                        if (r == 0 || r == rows - 1)
                        {
                            if (actual[i] != 0) return $"cols {cols} token {t}: row {r} is outside the range but was written";
                            continue;
                        }
                        double magnitude = 0;
                        for (int k = 0; k < cols; k++) magnitude += Math.Abs(FloatCodec.RoundTrip(format,
                            values[r * cols + k]) * x[t * cols + k]);
                        if (Math.Abs(actual[i] - expected[i]) > 1e-6 * magnitude + 1e-30)
                            return $"cols {cols} token {t} row {r}: {actual[i]:R}, scalar {expected[i]:R}";
                    }
            }
        return null;
    }
}
