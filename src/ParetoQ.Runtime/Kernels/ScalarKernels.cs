using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// The reference kernels: plain loops over fp32 activations, one per operation. Every SIMD path is tested against these,
/// and they are the engine's exact mode. Shapes are written (dim0, dim1) row-major.
/// </summary>
public static class ScalarKernels
{
    [ThreadStatic] private static byte[]? t_codes;
    [ThreadStatic] private static float[]? t_row;

    /// <summary>
    /// y = x · Wᵀ. W (rows, cols) in any format; x (tokens, cols); y (tokens, rows).
    /// Each weight row is decoded once and applied to every token.
    /// </summary>
    public static void MatMul(WeightFormat format, int rows, int cols, ReadOnlySpan<byte> w, ReadOnlySpan<float> x, Span<float> y, int tokens) =>
        MatMulRows(format, rows, cols, w, x, y, tokens, 0, rows);

    /// <summary><see cref="MatMul"/> restricted to weight rows [rowBegin, rowEnd): the other outputs are left untouched.</summary>
    public static void MatMulRows(WeightFormat format, int rows, int cols, ReadOnlySpan<byte> w, ReadOnlySpan<float> x, Span<float> y, int tokens, int rowBegin, int rowEnd)
    {
        var row = RowScratch(cols);
        // The layout and code scratch are set up once per matrix, not per row.
        PackedLayout layout = WeightFormats.IsPacked(format) ? new PackedLayout(format, rows, cols) : default;
        var codes = WeightFormats.IsPacked(format) ? CodeScratch(layout.PaddedCols) : null;
        for (int r = rowBegin; r < rowEnd; r++)
        {
            if (codes is null) FloatCodec.Decode(format, w, (long)r * cols, row.AsSpan(0, cols));
            else WeightPacker.DequantizeRow(layout, w, r, codes, row);
            for (int t = 0; t < tokens; t++)
            {
                var xt = x.Slice(t * cols, cols);
                float sum = 0;
                for (int k = 0; k < cols; k++) sum += row[k] * xt[k];
                y[t * rows + r] = sum;
            }
        }
    }

    /// <summary>Decodes row <paramref name="row"/> of a (rows, cols) weight matrix into fp32 (dst has at least cols elements).</summary>
    public static void DequantizeRow(WeightFormat format, int rows, int cols, ReadOnlySpan<byte> w, int row, Span<float> dst)
    {
        if (WeightFormats.IsFloat(format))
        {
            FloatCodec.Decode(format, w, (long)row * cols, dst[..cols]);
            return;
        }
        var layout = new PackedLayout(format, rows, cols);
        WeightPacker.DequantizeRow(layout, w, row, CodeScratch(layout.PaddedCols), dst);
    }

    /// <summary>y = x / sqrt(mean(x²) + eps) · weight; x, y (dim). A null weight is the weightless L2 norm of Llama-4's QK-norm.</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> y, float eps)
    {
        float ss = 0;
        for (int i = 0; i < x.Length; i++) ss += x[i] * x[i];
        float inv = 1f / MathF.Sqrt(ss / x.Length + eps);
        if (weight.IsEmpty)
            for (int i = 0; i < x.Length; i++) y[i] = x[i] * inv;
        else
            for (int i = 0; i < x.Length; i++) y[i] = x[i] * inv * weight[i];
    }

    /// <summary>Rotates one head vector (head_dim) by the angles whose cos/sin are given (head_dim / 2 each).</summary>
    public static void Rope(Span<float> head, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, bool interleaved)
    {
        int half = head.Length / 2;
        for (int i = 0; i < half; i++)
        {
            int a = interleaved ? 2 * i : i;
            int b = interleaved ? 2 * i + 1 : i + half;
            float x0 = head[a], x1 = head[b];
            head[a] = x0 * cos[i] - x1 * sin[i];
            head[b] = x1 * cos[i] + x0 * sin[i];
        }
    }

    /// <summary>In-place numerically stable softmax.</summary>
    public static void Softmax(Span<float> x)
    {
        float max = float.NegativeInfinity;
        foreach (float v in x) max = MathF.Max(max, v);
        float sum = 0;
        for (int i = 0; i < x.Length; i++)
        {
            x[i] = MathF.Exp(x[i] - max);
            sum += x[i];
        }
        float inv = 1f / sum;
        for (int i = 0; i < x.Length; i++) x[i] *= inv;
    }

    /// <summary>gate = silu(gate) · up, elementwise.</summary>
    public static void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
    {
        for (int i = 0; i < gate.Length; i++)
        {
            float g = gate[i];
            gate[i] = g / (1f + MathF.Exp(-g)) * up[i];
        }
    }

    /// <summary>x += y, elementwise.</summary>
    public static void Add(Span<float> x, ReadOnlySpan<float> y)
    {
        for (int i = 0; i < x.Length; i++) x[i] += y[i];
    }

    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float sum = 0;
        for (int i = 0; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }

    private static byte[] CodeScratch(int paddedCols)
    {
        if (t_codes is null || t_codes.Length < paddedCols) t_codes = new byte[paddedCols];
        return t_codes;
    }

    private static float[] RowScratch(int cols)
    {
        if (t_row is null || t_row.Length < cols) t_row = new float[cols];
        return t_row;
    }
}
