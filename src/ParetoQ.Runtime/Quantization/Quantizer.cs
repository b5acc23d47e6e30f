using System.Runtime.Intrinsics;

namespace ParetoQ.Runtime.Quantization;

/// <summary>
/// The quantizer math, one source of truth for the runtime, the converter and the trainer (REFERENCE.md §1).
/// ParetoQ grids take a learnable per-row α; the symmetric PTQ formats (int8 per row, int4 group-32) take a scale s.
/// Every format maps a weight to an unsigned code, and <see cref="Dequantize"/> of that code equals
/// <see cref="FakeQuantize"/> of the weight bit for bit (binary's sign(0) = 0 is the one value with no code; see
/// <see cref="Quantize"/>).
/// </summary>
public static class Quantizer
{
    /// <summary>ParetoQ clamps α from below before use.</summary>
    public const float MinAlpha = 1e-5f;

    /// <summary>SEQ (ternary, 2-bit) clips t = W/α to this range before rounding.</summary>
    public const float SeqClip = 0.99f;

    /// <summary>Per-row scale initialisation: ParetoQ's rules for its grids, absmax rules for the PTQ
    /// formats.</summary>
    public static float InitialScale(WeightFormat format, ReadOnlySpan<float> values)
    {
        float maxAbs = 0, sumAbs = 0;
        foreach (float v in values)
        {
            float a = MathF.Abs(v);
            maxAbs = MathF.Max(maxAbs, a);
            sumAbs += a;
        }
        return format switch
        {
            WeightFormat.Binary => values.Length == 0 ? 0 : sumAbs / values.Length,
            WeightFormat.Ternary or WeightFormat.Q2Seq => maxAbs,
            WeightFormat.Q3Row => maxAbs / 3,
            WeightFormat.Q4Row => maxAbs / 7,
            WeightFormat.Q4G32 => maxAbs / 7.5f,
            WeightFormat.I8Row => maxAbs / 127,
            _ => throw new ArgumentException($"{format} has no scale", nameof(format)),
        };
    }

    /// <summary>The scale actually used: ParetoQ grids clamp α ≥ 1e-5; PTQ scales are used as computed (0 for an
    /// all-zero group).</summary>
    public static float EffectiveScale(WeightFormat format, float scale) =>
        WeightFormats.IsParetoQ(format) ? MathF.Max(scale, MinAlpha) : scale;

    /// <summary>
    /// <see cref="EffectiveScale(WeightFormat, float)"/> of four scales (the rows of a kernel tile), given whether the
    /// format clamps (<see cref="WeightFormatInfo.IsParetoQ"/>), which the kernels read once per matrix.
    /// </summary>
    public static Vector128<float> EffectiveScale(bool clamp, Vector128<float> scales) =>
        clamp ? Vector128.Max(scales, Vector128.Create(MinAlpha)) : scales;

    /// <summary>The forward quantizer Q(w) of REFERENCE.md §1, written exactly as the formulas read.</summary>
    public static float FakeQuantize(WeightFormat format, float w, float scale)
    {
        float a = EffectiveScale(format, scale);
        switch (format)
        {
            case WeightFormat.Binary:
                return w > 0 ? a : w < 0 ? -a : 0f;
            case WeightFormat.Ternary:
            {
                float tc = Math.Clamp(w / a, -SeqClip, SeqClip);
                return a * (MathF.Round(1.5f * tc) / 1.5f);
            }
            case WeightFormat.Q2Seq:
            {
                float tc = Math.Clamp(w / a, -SeqClip, SeqClip);
                return a * ((MathF.Round(2f * tc - 0.5f) + 0.5f) / 2f);
            }
            case WeightFormat.Q3Row:
                return a * Math.Clamp(MathF.Round(w / a), -4f, 3f);
            case WeightFormat.Q4Row:
                return a * Math.Clamp(MathF.Round(w / a), -8f, 7f);
            case WeightFormat.Q4G32:
                return a == 0 ? 0 : a * Math.Clamp(MathF.Round(w / a), -8f, 7f);
            case WeightFormat.I8Row:
                return a == 0 ? 0 : a * Math.Clamp(MathF.Round(w / a), -127f, 127f);
            default:
                throw new ArgumentException($"{format} is not a quantized format", nameof(format));
        }
    }

    /// <summary>
    /// The stored code of w. Binary has no code for ParetoQ's sign(0) = 0: an exact zero becomes code 1 (+α),
    /// which <see cref="CountUnrepresentable"/> reports so converters can refuse or warn.
    /// </summary>
    public static byte Quantize(WeightFormat format, float w, float scale)
    {
        float a = EffectiveScale(format, scale);
        switch (format)
        {
            case WeightFormat.Binary:
                return w >= 0 ? (byte)1 : (byte)0;
            case WeightFormat.Ternary:
                return (byte)(MathF.Round(1.5f * Math.Clamp(w / a, -SeqClip, SeqClip)) + 1);
            case WeightFormat.Q2Seq:
                return (byte)(MathF.Round(2f * Math.Clamp(w / a, -SeqClip, SeqClip) - 0.5f) + 2);
            case WeightFormat.Q3Row:
                return (byte)(Math.Clamp(MathF.Round(w / a), -4f, 3f) + 4);
            case WeightFormat.Q4Row:
                return (byte)(Math.Clamp(MathF.Round(w / a), -8f, 7f) + 8);
            case WeightFormat.Q4G32:
                return a == 0 ? (byte)8 : (byte)(Math.Clamp(MathF.Round(w / a), -8f, 7f) + 8);
            case WeightFormat.I8Row:
                return a == 0 ? (byte)128 : (byte)(Math.Clamp(MathF.Round(w / a), -127f, 127f) + 128);
            default:
                throw new ArgumentException($"{format} is not a quantized format", nameof(format));
        }
    }

    /// <summary>
    /// Value of a code, by the format's affine map (<see cref="AffineCodes.Value"/>): its levels are small integers and
    /// its divisor 1, 1.5 or 4, so it rounds exactly as <see cref="FakeQuantize"/> does.
    /// </summary>
    public static float Dequantize(WeightFormat format, int code, float scale)
    {
        if (!WeightFormats.IsPacked(format)) throw new ArgumentException($"{format} is not a quantized format",
            nameof(format));
        return WeightFormats.Affine(format).Value(code, EffectiveScale(format, scale));
    }

    /// <summary>Weights whose fake-quantized value has no code (binary exact zeros).</summary>
    public static int CountUnrepresentable(WeightFormat format, ReadOnlySpan<float> values)
    {
        if (format != WeightFormat.Binary) return 0;
        int n = 0;
        foreach (float v in values) if (v == 0) n++;
        return n;
    }

    /// <summary>
    /// Quantizes a row-major [rows, cols] matrix. <paramref name="rowAlphas"/> gives learned per-row α (ParetoQ grids);
    /// when empty the initial scale of each row (or group) is used.
    /// </summary>
    public static QuantizedMatrix QuantizeMatrix(WeightFormat format, ReadOnlySpan<float> weights, int rows, int cols,
        ReadOnlySpan<float> rowAlphas = default)
    {
        if (!WeightFormats.IsPacked(format)) throw new ArgumentException($"{format} is not a quantized format",
            nameof(format));
        if ((long)rows * cols != weights.Length) throw new ArgumentException($"weights hold {weights.Length} values, not {rows}x{cols}", nameof(weights));
        if (!rowAlphas.IsEmpty
            && rowAlphas.Length != rows) throw new ArgumentException($"{rowAlphas.Length} row scales for {rows} rows",
            nameof(rowAlphas));
        int groupSize = WeightFormats.GroupSize(format) == 0 ? cols : WeightFormats.GroupSize(format);
        int groups = (cols + groupSize - 1) / groupSize;
        var codes = new byte[(long)rows * cols];
        var scales = new float[(long)rows * groups];
        for (int r = 0; r < rows; r++)
        {
            var row = weights.Slice(r * cols, cols);
            for (int g = 0; g < groups; g++)
            {
                int start = g * groupSize, len = Math.Min(groupSize, cols - start);
                var group = row.Slice(start, len);
                float s = EffectiveScale(format, rowAlphas.IsEmpty ? InitialScale(format, group) : rowAlphas[r]);
                scales[r * groups + g] = s;
                for (int c = 0; c < len; c++) codes[(long)r * cols + start + c] = Quantize(format, group[c], s);
            }
        }
        return new QuantizedMatrix(format, rows, cols, groupSize, codes, scales);
    }
}

/// <summary>
/// Unpacked integer codes and scales of a [rows, cols] matrix, the interchange form between quantizer and packer.
/// Codes are row-major; scales are [rows, groups] with group = col / GroupSize.
/// </summary>
public sealed record QuantizedMatrix(WeightFormat Format, int Rows, int Cols, int GroupSize, byte[] Codes,
    float[] Scales)
{
    public int Groups => (Cols + GroupSize - 1) / GroupSize;

    public float Value(int row, int col) =>
        Quantizer.Dequantize(Format, Codes[(long)row * Cols + col], Scales[(long)row * Groups + col / GroupSize]);
}
