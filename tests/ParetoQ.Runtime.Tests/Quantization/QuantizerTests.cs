using ParetoQ.Runtime.Quantization;
using ParetoQ.TestModels;

namespace ParetoQ.Runtime.Tests;

public sealed class QuantizerTests
{
    // Hand-computed vectors, one per format: (format, α or s, weights, expected integer levels q, expected codes).
    // Values are then α·q for LSQ / PTQ grids, α·(q + 0.5)/2 for 2-bit, α·q/1.5 for ternary, α·q for binary.
    public static TheoryData<WeightFormat, float, float[], float[], byte[]> Vectors() => new()
    {
        // binary: sign(w); sign(0) = 0 has no code and is stored as +α (code 1).
        { WeightFormat.Binary, 0.5f, [0.3f, -0.2f, 0f, -7f], [1, -1, 0, -1], [1, 0, 1, 0] },
        // ternary: tc = clamp(w/α, ±0.99), q = round(1.5·tc): 1.35→1, 0.3→0, −0.51→−1, −0.495→0, 5→0.99→1.485→1
        { WeightFormat.Ternary, 1f, [0.9f, 0.2f, -0.34f, -0.33f, 5f], [1, 0, -1, 0, 1], [2, 1, 0, 1, 2] },
        // 2-bit: r = round(2·tc − 0.5); t = 0.5 gives round(0.5) = 0 (half to even), t = −1.5 clips to −0.99
        { WeightFormat.Q2Seq, 2f, [1.9f, 0.6f, -0.1f, -3f, 1f], [1, 0, -1, -2, 0], [3, 2, 1, 0, 2] },
        // 3-bit: round(2.5) = 2 and round(−0.5) = 0 (half to even), 3.6→4 clamps to 3, −10 clamps to −4
        { WeightFormat.Q3Row, 0.1f, [0.25f, -0.05f, 0.36f, -1f], [2, 0, 3, -4], [6, 4, 7, 0] },
        // 4-bit: 7.6→8 clamps to 7, −8.8→−9 clamps to −8, round(0.5) = 0, round(1.5) = 2
        { WeightFormat.Q4Row, 0.25f, [1.9f, -2.2f, 0.125f, 0.375f], [7, -8, 0, 2], [15, 0, 8, 10] },
        // int4 group-32 with s = 1: round(7.5) = 8 clamps to 7, −7.5 → −8, 2.5 → 2
        { WeightFormat.Q4G32, 1f, [7.5f, -7.5f, 2.5f, -0.4f], [7, -8, 2, 0], [15, 0, 10, 8] },
        // int8 per row with s = 1
        { WeightFormat.I8Row, 1f, [127f, -127f, 0.5f, 1.5f, -300f], [127, -127, 0, 2, -127], [255, 1, 128, 130, 1] },
    };

    [Theory]
    [MemberData(nameof(Vectors))]
    public void Hand_computed_vectors(WeightFormat format, float scale, float[] weights, float[] levels, byte[] codes)
    {
        for (int i = 0; i < weights.Length; i++)
        {
            float expected = format switch
            {
                WeightFormat.Q2Seq => scale * ((levels[i] + 0.5f) / 2f),
                WeightFormat.Ternary => scale * (levels[i] / 1.5f),
                _ => scale * levels[i],
            };
            Assert.Equal(expected, Quantizer.FakeQuantize(format, weights[i], scale));
            Assert.Equal(codes[i], Quantizer.Quantize(format, weights[i], scale));
            if (!(format == WeightFormat.Binary && weights[i] == 0))
                Assert.Equal(expected, Quantizer.Dequantize(format, codes[i], scale));
        }
    }

    [Fact]
    public void Two_bit_levels_are_plus_minus_quarter_and_three_quarters_alpha()
    {
        Assert.Equal([-0.75f, -0.25f, 0.25f, 0.75f],
            Enumerable.Range(0, 4).Select(c => Quantizer.Dequantize(WeightFormat.Q2Seq, c, 1f)));
        Assert.Equal([-2f / 3, 0f, 2f / 3],
            Enumerable.Range(0, 3).Select(c => Quantizer.Dequantize(WeightFormat.Ternary, c, 1f)),
            new ToleranceComparer(1e-7f));
    }

    [Fact]
    public void Initial_scales_follow_paretoq()
    {
        float[] row = [0.5f, -2f, 1f, 0.5f];
        Assert.Equal(1f, Quantizer.InitialScale(WeightFormat.Binary, row));       // mean |W|
        Assert.Equal(2f, Quantizer.InitialScale(WeightFormat.Ternary, row));      // max |W|
        Assert.Equal(2f, Quantizer.InitialScale(WeightFormat.Q2Seq, row));        // max |W|
        Assert.Equal(2f / 3, Quantizer.InitialScale(WeightFormat.Q3Row, row));    // max |W| / 3
        Assert.Equal(2f / 7, Quantizer.InitialScale(WeightFormat.Q4Row, row));    // max |W| / 7
        Assert.Equal(2f / 7.5f, Quantizer.InitialScale(WeightFormat.Q4G32, row)); // absmax / 7.5
        Assert.Equal(2f / 127, Quantizer.InitialScale(WeightFormat.I8Row, row));  // absmax / 127
    }

    [Fact]
    public void Alpha_is_clamped_to_1e_minus_5()
    {
        Assert.Equal(1e-5f * 0.75f, Quantizer.FakeQuantize(WeightFormat.Q2Seq, 1f, 0f));
        Assert.Equal(1e-5f * 3, Quantizer.FakeQuantize(WeightFormat.Q3Row, 1f, -4f));
        var m = Quantizer.QuantizeMatrix(WeightFormat.Q4Row, new float[8], 2, 4);
        Assert.All(m.Scales, s => Assert.Equal(Quantizer.MinAlpha, s));
        // PTQ scales are not ParetoQ α: an all-zero group keeps scale 0 and decodes to 0.
        var z = Quantizer.QuantizeMatrix(WeightFormat.Q4G32, new float[32], 1, 32);
        Assert.Equal(0f, z.Scales[0]);
        Assert.Equal(0f, z.Value(0, 5));
    }

    [Fact]
    public void Binary_exact_zeros_are_counted_as_unrepresentable()
    {
        Assert.Equal(2, Quantizer.CountUnrepresentable(WeightFormat.Binary, [0f, 1f, -0f, -1f]));
        Assert.Equal(0, Quantizer.CountUnrepresentable(WeightFormat.Q2Seq, [0f, 0f]));
    }

    public static TheoryData<WeightFormat, int, int> PackShapes()
    {
        var data = new TheoryData<WeightFormat, int, int>();
        foreach (var f in new[] { WeightFormat.Binary, WeightFormat.Ternary, WeightFormat.Q2Seq, WeightFormat.Q3Row,
            WeightFormat.Q4Row, WeightFormat.Q4G32, WeightFormat.I8Row })
            foreach (var (rows, cols) in new[] { (1, 1), (3, 31), (4, 64), (5, 65), (7, 129), (9, 200), (13, 257) })
                data.Add(f, rows, cols);
        return data;
    }

    [Theory]
    [MemberData(nameof(PackShapes))]
    public void Quantize_pack_unpack_dequantize_equals_fake_quant_exactly(WeightFormat format, int rows, int cols)
    {
        var rng = new Random(rows * 1000 + cols);
        var w = TestModelGenerator.Gaussian(rng, rows * cols, 0.05f);
        foreach (bool learned in new[] { false, true })
        {
            // Learned α (as a QAT trainer would give) differs from the initial rule, so clipping paths get exercised.
            float[] alphas = learned && WeightFormats.IsParetoQ(format)
                ? Enumerable.Range(0, rows).Select(r => 0.01f + 0.02f * r).ToArray() : [];
            var q = Quantizer.QuantizeMatrix(format, w, rows, cols, alphas);
            byte[] packed = WeightPacker.Pack(q);
            var layout = new PackedLayout(format, rows, cols);
            Assert.Equal(layout.TotalBytes, packed.Length);
            Assert.Equal(0, layout.CodeBytes % 64);

            var codes = new byte[layout.PaddedCols];
            var values = new float[cols];
            for (int r = 0; r < rows; r++)
            {
                WeightPacker.UnpackRow(layout, packed, r, codes);
                Assert.Equal(q.Codes.AsSpan(r * cols, cols).ToArray(), codes.AsSpan(0, cols).ToArray());
                Assert.All(codes.AsSpan(cols).ToArray(), c => Assert.Equal(0, c));
                WeightPacker.DequantizeRow(layout, packed, r, codes, values);
                for (int c = 0; c < cols; c++)
                {
                    float scale = q.Scales[r * q.Groups + c / q.GroupSize];
                    float fake = Quantizer.FakeQuantize(format, w[r * cols + c], scale);
                    // Exact float equality (−0 and +0 compare equal: the sign of a zero weight is irrelevant).
                    Assert.True(fake == values[c],
                        $"row {r} col {c}: dequantized {values[c]:R} != fake-quant {fake:R}");
                }
            }
        }
    }

    [Fact]
    public void Packed_layout_puts_each_code_where_the_spec_says()
    {
        // 2-bit [6, 64]: row 5 is row 1 of tile 1; weight 17 is in chunk 0, byte 17 % 16 = 1, bit plane 17 / 16 = 1.
        var codes = new byte[6 * 64];
        codes[5 * 64 + 17] = 3;
        var packed = WeightPacker.Pack(new QuantizedMatrix(WeightFormat.Q2Seq, 6, 64, 64, codes, new float[6]));
        int expectedByte = ((1 * 1 + 0) * 4 + 1) * 16 + 1;
        for (int i = 0; i < 8 * 16; i++) Assert.Equal(i == expectedByte ? 0b1100 : 0, packed[i]);

        // 3-bit [4, 128]: weight 70 of row 2 → low bits in chunk 1 (byte 6, plane 0), high bit in chunk 2 (byte 6,
        // plane 4).
        var c3 = new byte[4 * 128];
        c3[2 * 128 + 70] = 0b110;
        var p3 = WeightPacker.Pack(new QuantizedMatrix(WeightFormat.Q3Row, 4, 128, 128, c3, new float[4]));
        Assert.Equal(0b10, p3[(1 * 4 + 2) * 16 + 6]);
        Assert.Equal(1 << 4, p3[(2 * 4 + 2) * 16 + 6]);
        Assert.Equal(2, p3.Take(3 * 4 * 16).Count(b => b != 0));
    }

    [Fact]
    public void Kv_int8_quantization_is_asymmetric_per_vector_and_includes_zero()
    {
        float[] x = [0.5f, 1.5f, 2.5f, 3f];   // min is raised to 0, so the range is [0, 3]
        var q = new sbyte[4];
        var (scale, zero) = KvQuantizer.Quantize(x, q);
        Assert.Equal(3f / 255, scale);
        Assert.Equal(-128, zero);
        for (int i = 0; i < x.Length; i++) Assert.True(Math.Abs(KvQuantizer.Dequantize(q[i], scale,
            zero) - x[i]) <= scale / 2 + 1e-6f);
        var (zs, _) = KvQuantizer.Quantize(new float[4], q);
        Assert.Equal(1f, zs);
        Assert.All(q, v => Assert.Equal(0, v));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(64)]
    [InlineData(131)]
    public void Kv_int8_quantization_follows_the_formula_element_by_element(int length)
    {
        var rng = new Random(length);
        for (int trial = 0; trial < 50; trial++)
        {
            // Values on the rounding midpoints as well as random ones, so round-half-to-even is exercised.
            var x = Enumerable.Range(0, length).Select(i => trial % 2 == 0 ? (float)(rng.NextDouble() * 6 - 2)
                : (i - length / 2) * 0.5f).ToArray();
            var q = new sbyte[length];
            var (scale, zero) = KvQuantizer.Quantize(x, q);
            float min = Math.Min(0, x.Min()), max = Math.Max(0, x.Max());
            Assert.Equal(max == min ? 1f : (max - min) / 255f, scale);
            for (int i = 0; i < length; i++)
                Assert.Equal((sbyte)Math.Clamp((int)MathF.Round(x[i] / scale) + zero, -128, 127), q[i]);
        }
        var bad = new float[length];
        bad[length - 1] = float.NaN;
        Assert.True(float.IsNaN(KvQuantizer.Quantize(bad, new sbyte[length]).Scale));
    }

    [Fact]
    public void Bf16_rounds_to_nearest_even()
    {
        // exactly half: ties to even (1.0)
        Assert.Equal(1f, FloatCodec.RoundTrip(WeightFormat.BF16, 1f + 1f / 512));
        Assert.Equal(1f + 1f / 64, FloatCodec.RoundTrip(WeightFormat.BF16, 1f + 3f / 512 * 2.5f));
        Assert.True(float.IsNaN(FloatCodec.RoundTrip(WeightFormat.BF16, float.NaN)));
    }

    private sealed class ToleranceComparer(float tol) : IEqualityComparer<float>
    {
        public bool Equals(float a, float b) => Math.Abs(a - b) <= tol;
        public int GetHashCode(float v) => 0;
    }
}
