using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// The reference kernels: plain loops over fp32 activations, one per operation. Every SIMD path is tested against
/// these, and they are the engine's exact mode. Shapes are written (dim0, dim1) row-major.
/// </summary>
public static class ScalarKernels
{
    /// <summary>
    /// y = x · Wᵀ. W (rows, cols) in any format; x (tokens, cols); y (tokens, rows).
    /// Each weight row is decoded once and applied to every token.
    /// </summary>
    public static void MatMul(WeightFormat format, int rows, int cols, ReadOnlySpan<byte> w, ReadOnlySpan<float> x,
        int tokens, Span<float> y)
    {
        int paddedCols = WeightFormats.IsPacked(format) ? new PackedLayout(format, rows, cols).PaddedCols : 0;
        MatMulRows(format, rows, cols, w, x, tokens, 0, rows, new byte[paddedCols], new float[cols], y);
    }

    /// <summary>
    /// <see cref="MatMul"/> restricted to weight rows [rowBegin, rowEnd): the other outputs are left untouched.
    /// <paramref name="codeScratch"/> holds a packed row's padded codes and <paramref name="rowScratch"/> its cols
    /// values.
    /// </summary>
    public static void MatMulRows(WeightFormat format, int rows, int cols, ReadOnlySpan<byte> w, ReadOnlySpan<float> x,
        int tokens, int rowBegin, int rowEnd, Span<byte> codeScratch, Span<float> rowScratch, Span<float> y)
    {
        var row = rowScratch[..cols];
        // The layout is set up once per matrix, not per row.
        bool packed = WeightFormats.IsPacked(format);
        PackedLayout layout = packed ? new PackedLayout(format, rows, cols) : default;
        for (int r = rowBegin; r < rowEnd; r++)
        {
            if (!packed) FloatCodec.Decode(format, w, (long)r * cols, row);
            else WeightPacker.DequantizeRow(layout, w, r, codeScratch, row);
            for (int t = 0; t < tokens; t++)
            {
                var xt = x.Slice(t * cols, cols);
                float sum = 0;
                for (int k = 0; k < cols; k++) sum += row[k] * xt[k];
                y[t * rows + r] = sum;
            }
        }
    }

    /// <summary>
    /// Decodes row <paramref name="row"/> of a (rows, cols) weight matrix into fp32 (dst has at least cols elements);
    /// <paramref name="codeScratch"/> holds the padded codes of a packed row.
    /// </summary>
    public static void DequantizeRow(WeightFormat format, int rows, int cols, ReadOnlySpan<byte> w, int row,
        Span<byte> codeScratch, Span<float> dst)
    {
        if (WeightFormats.IsFloat(format))
        {
            FloatCodec.Decode(format, w, (long)row * cols, dst[..cols]);
            return;
        }
        WeightPacker.DequantizeRow(new PackedLayout(format, rows, cols), w, row, codeScratch, dst);
    }

    /// <summary>y = x / sqrt(mean(x²) + eps) · weight; x, y (dim). A null weight is the weightless L2 norm of Llama-4's
    /// QK-norm.</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        float ss = 0;
        for (int i = 0; i < x.Length; i++) ss += x[i] * x[i];
        float inv = 1f / MathF.Sqrt(ss / x.Length + eps);
        if (weight.IsEmpty)
            for (int i = 0; i < x.Length; i++) y[i] = x[i] * inv;
        else
            for (int i = 0; i < x.Length; i++) y[i] = x[i] * inv * weight[i];
    }

    /// <summary>Rotates one head vector (head_dim) by the angles whose cos/sin are given (head_dim / 2 each), from
    /// pair <paramref name="firstPair"/> on (cos[0] is that pair's).</summary>
    public static void Rope(ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, bool interleaved, Span<float> head,
        int firstPair = 0)
    {
        int half = head.Length / 2;
        for (int i = firstPair; i < half; i++)
        {
            int a = interleaved ? 2 * i : i;
            int b = interleaved ? 2 * i + 1 : i + half;
            float x0 = head[a], x1 = head[b];
            head[a] = x0 * cos[i - firstPair] - x1 * sin[i - firstPair];
            head[b] = x1 * cos[i - firstPair] + x0 * sin[i - firstPair];
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
    public static void SwiGlu(ReadOnlySpan<float> up, Span<float> gate)
    {
        for (int i = 0; i < gate.Length; i++)
        {
            float g = gate[i];
            gate[i] = g / (1f + MathF.Exp(-g)) * up[i];
        }
    }

    /// <summary>x += y, elementwise.</summary>
    public static void Add(ReadOnlySpan<float> y, Span<float> x)
    {
        for (int i = 0; i < x.Length; i++) x[i] += y[i];
    }

    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float sum = 0;
        for (int i = 0; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }
}
