using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.KernelCheck;

/// <summary>One kernel comparison: a format, a shape, a token count and a path against the Scalar reference.</summary>
public sealed record KernelCase(WeightFormat Format, int Rows, int Cols, int Tokens, KernelPath Path, string Data)
{
    public override string ToString()
        => $"{WeightFormats.Name(Format)} [{Rows}x{Cols}] n={Tokens} {KernelDispatch.Name(Path)} ({Data})";
}

/// <summary>
/// The kernel suite: every packed format, odd shapes (rows not a multiple of the tile, columns with tails), token
/// counts around the 4-token blocks, random and extreme codes. Each SIMD path must equal Scalar bit for bit, and Scalar
/// must stay within the activation-quantization error bound of the fp32 exact kernel.
/// </summary>
public static unsafe class KernelSuite
{
    public static readonly WeightFormat[] Formats =
        [WeightFormat.Binary, WeightFormat.Ternary, WeightFormat.Q2Seq, WeightFormat.Q3Row, WeightFormat.Q4Row,
            WeightFormat.Q4G32, WeightFormat.I8Row];

    // The last two split into halves of 6, 8 and 9 tiles: a decode GEMV takes tiles 4 at a time, then a tail.
    public static readonly (int Rows, int Cols)[] Shapes =
        [(1, 1), (3, 17), (5, 64), (7, 100), (4, 128), (13, 129), (9, 300), (6, 513), (17, 1000), (2, 2049),
            (45, 300), (67, 129)];

    public static readonly int[] TokenCounts = [1, 2, 3, 4, 5, 7, 9];

    /// <summary>Widths swept one by one, beside the named shapes: two 128-column blocks.</summary>
    public const int SweepCols = 256;

    public static IEnumerable<KernelCase> Cases(IEnumerable<KernelPath> paths)
    {
        foreach (var path in paths)
            foreach (var f in Formats)
                foreach (var (rows, cols) in Shapes)
                    foreach (int n in TokenCounts)
                        yield return new KernelCase(f, rows, cols, n, path, "random");
        // Every width up to two of the widest blocks (TensorPrimitives style), so each tail length of each format is
        // met.
        foreach (var path in paths)
            foreach (var f in Formats)
                for (int cols = 1; cols <= SweepCols; cols++)
                    yield return new KernelCase(f, 5, cols, 3, path, "random");
        // Every code at its maximum against activations at ±127: the saturation and overflow corner of each format.
        foreach (var path in paths)
            foreach (var f in Formats)
                foreach (string data in new[] { "max-codes-positive", "max-codes-alternating", "zero-activations" })
                    yield return new KernelCase(f, 8, 1024, 5, path, data);
    }

    /// <summary>Runs one case; returns null when it passes, else what differed.</summary>
    public static string? Run(KernelCase c)
    {
        var rng = new Random(HashCode.Combine(c.Format, c.Rows, c.Cols, c.Tokens, c.Data.Length));
        var m = MakeMatrix(c.Format, c.Rows, c.Cols, rng, c.Data);
        var packed = WeightPacker.Pack(m);
        var x = MakeActivations(c.Tokens, c.Cols, rng, c.Data);

        var layout = new PackedLayout(c.Format, c.Rows, c.Cols);
        using var q = new QuantizedActivations(c.Tokens, c.Cols);
        q.Quantize(x, c.Tokens, c.Cols);
        var expected = new float[c.Tokens * c.Rows];
        var actual = new float[c.Tokens * c.Rows];
        fixed (byte* w = packed)
        fixed (float* e = expected, a = actual)
        {
            var pm = new PackedMatrix(layout, w);
            LowBitMatMul.Run(KernelPath.Scalar, pm, q, 0, pm.Tiles, e);
            // Split the tiles in two calls, as the worker pool does.
            int half = pm.Tiles / 2;
            LowBitMatMul.Run(c.Path, pm, q, 0, half, a);
            LowBitMatMul.Run(c.Path, pm, q, half, pm.Tiles, a);
        }
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                return $"y[{i / c.Rows}, {i % c.Rows}] = {actual[i]:R}, scalar {expected[i]:R}";

        // Scalar integer result against fp32 exact mode: the only difference is rounding x to int8, at most half a step
        // of the token's scale per element, so |Δy| ≤ ½·scale·Σ|w| (plus fp32 summation slack).
        var exact = new float[c.Tokens * c.Rows];
        ScalarKernels.MatMul(c.Format, c.Rows, c.Cols, packed, x, c.Tokens, exact);
        var row = new float[c.Cols];
        var codes = new byte[layout.PaddedCols];
        for (int r = 0; r < c.Rows; r++)
        {
            ScalarKernels.DequantizeRow(c.Format, c.Rows, c.Cols, packed, r, codes, row);
            double absW = row.Sum(v => (double)Math.Abs(v));
            for (int t = 0; t < c.Tokens; t++)
            {
                double absWx = 0;
                for (int k = 0; k < c.Cols; k++) absWx += Math.Abs(row[k] * x[t * c.Cols + k]);
                double bound = 0.5 * q.Scales[t] * absW * 1.0001 + 1e-5 * absWx + 1e-30;
                double diff = Math.Abs(expected[t * c.Rows + r] - exact[t * c.Rows + r]);
                if (!(diff <= bound)) return $"scalar int8 y[{t}, {r}] = {expected[t * c.Rows + r]:R} is {diff:G3} from exact {exact[t * c.Rows + r]:R} (bound {bound:G3})";
            }
        }
        return null;
    }

    private static QuantizedMatrix MakeMatrix(WeightFormat format, int rows, int cols, Random rng, string data)
    {
        int groupSize = WeightFormats.GroupSize(format) == 0 ? cols : WeightFormats.GroupSize(format);
        int groups = (cols + groupSize - 1) / groupSize;
        int maxCode = WeightFormats.MaxCode(format);
        var codes = new byte[rows * cols];
        for (int i = 0; i < codes.Length; i++)
            codes[i] = data.StartsWith("max-codes", StringComparison.Ordinal) ? (byte)maxCode
                : (byte)rng.Next(maxCode + 1);
        var scales = new float[rows * groups];
        for (int i = 0; i < scales.Length; i++) scales[i] = (float)(0.01 + rng.NextDouble());
        return new QuantizedMatrix(format, rows, cols, groupSize, codes, scales);
    }

    private static float[] MakeActivations(int tokens, int cols, Random rng, string data)
    {
        var x = new float[tokens * cols];
        for (int i = 0; i < x.Length; i++)
        {
            x[i] = data switch
            {
                "max-codes-positive" => 3f,
                "max-codes-alternating" => i % 2 == 0 ? 2.5f : -2.5f,
                "zero-activations" => 0f,
                _ => (float)(rng.NextDouble() * 2 - 1) * (i % 7 == 0 ? 10 : 1),
            };
        }
        return x;
    }
}
