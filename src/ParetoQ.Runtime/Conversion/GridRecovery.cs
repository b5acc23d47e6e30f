using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Conversion;

/// <summary>
/// Recovers per-row α and integer codes from weights already snapped to a ParetoQ grid (the released
/// MobileLLM-ParetoQ checkpoints store α·level rounded to BF16). A row is recovered only when every weight is
/// reproduced exactly: the runtime's own dequantization <see cref="Quantizer.Dequantize"/> of (code, α), rounded to the
/// source dtype, must give back the stored value bit for bit. Otherwise the row is not on the grid.
/// </summary>
public static class GridRecovery
{
    /// <summary>The ParetoQ grids, in the order auto-detection tries them: fewest levels first.</summary>
    public static readonly WeightFormat[] Grids = [WeightFormat.Binary, WeightFormat.Ternary, WeightFormat.Q2Seq,
        WeightFormat.Q3Row, WeightFormat.Q4Row];

    // Per format: its nonzero levels (the value of each code at α = 1), largest magnitude first.
    private static readonly float[][] LevelsByMagnitude = Enumerable.Range(0, (int)WeightFormat.Q4G32 + 1).Select(f =>
        Grids.Contains((WeightFormat)f) || (WeightFormat)f == WeightFormat.I8Row
            ? Enumerable.Range(0, WeightFormats.MaxCode((WeightFormat)f) + 1).Select(c
                => Quantizer.Dequantize((WeightFormat)f, c, 1f))
                .Where(l => l != 0).OrderByDescending(MathF.Abs).ToArray()
            : []).ToArray();

    /// <summary>
    /// Tries to write row's codes and α. <paramref name="maxError"/> is max |dequantized − stored| in fp32: zero when
    /// α·level is exactly representable in the source dtype, otherwise below half a unit in its last place.
    /// </summary>
    /// <remarks><paramref name="format"/> must be one of <see cref="Grids"/> or int8 rows; for int8 only the two
    /// largest levels of each sign are tried, where ggml's Q8_0 puts a block's largest weight (±127), so a row with
    /// mixed block scales fails in a few passes instead of 255.</remarks>
    public static bool TryRecoverRow(WeightFormat format, ReadOnlySpan<float> row, SourceDType dtype, Span<byte> codes,
        out float alpha, out float maxError)
    {
        alpha = 0;
        maxError = 0;
        float max = 0;
        int maxAt = 0;
        for (int i = 0; i < row.Length; i++)
        {
            if (!float.IsFinite(row[i])) return false;
            if (MathF.Abs(row[i]) > max) { max = MathF.Abs(row[i]); maxAt = i; }
        }
        if (max == 0)
        {
            // All zeros: representable where zero is a level, with any α.
            if (format is WeightFormat.Binary or WeightFormat.Q2Seq) return false;
            codes[..row.Length].Fill((byte)Quantizer.Quantize(format, 0, 1));
            return true;
        }
        // The largest weight sits on some level; try each level it could be, largest first (smallest α: the finest
        // grid).
        var levels = LevelsByMagnitude[(int)format];
        foreach (float level in format == WeightFormat.I8Row ? levels.AsSpan(0, 4) : levels.AsSpan())
        {
            if (MathF.Sign(level) != MathF.Sign(row[maxAt])) continue;
            float guess = row[maxAt] / level;
            if (!(guess > 0) || !float.IsFinite(guess)) continue;
            for (int i = 0; i < row.Length; i++) codes[i] = Quantizer.Quantize(format, row[i], guess);
            if (Fit(format, row, dtype, codes, out alpha, out maxError)) return true;
        }
        return false;
    }

    // With codes fixed, every nonzero level confines α to the interval whose products round to the stored value;
    // α is the middle of their intersection, confirmed element by element.
    private static bool Fit(WeightFormat format, ReadOnlySpan<float> row, SourceDType dtype, ReadOnlySpan<byte> codes,
        out float alpha, out float maxError)
    {
        alpha = 0;
        maxError = 0;
        double lo = 0, hi = double.MaxValue;
        for (int i = 0; i < row.Length; i++)
        {
            double level = Quantizer.Dequantize(format, codes[i], 1f);
            if (level == 0)
            {
                if (row[i] != 0) return false;
                continue;
            }
            if (row[i] == 0) return false; // binary's sign(0) = 0 has no code
            var (below, above) = RoundingInterval(row[i], dtype);
            double a = below / level, b = above / level;
            if (a > b) (a, b) = (b, a);
            lo = Math.Max(lo, a);
            hi = Math.Min(hi, b);
            if (lo > hi) return false;
        }
        float mid = (float)((lo + hi) / 2);
        ReadOnlySpan<float> candidates = [mid, MathF.BitIncrement(mid), MathF.BitDecrement(mid), (float)lo, (float)hi];
        foreach (float candidate in candidates)
        {
            if (!(candidate > 0) || !Reproduces(format, row, dtype, codes, candidate, out maxError)) continue;
            alpha = candidate;
            return true;
        }
        return false;
    }

    private static bool Reproduces(WeightFormat format, ReadOnlySpan<float> row, SourceDType dtype,
        ReadOnlySpan<byte> codes, float alpha, out float maxError)
    {
        maxError = 0;
        for (int i = 0; i < row.Length; i++)
        {
            float value = Quantizer.Dequantize(format, codes[i], alpha);
            if (ToSource(value, dtype) != row[i]) return false;
            maxError = MathF.Max(maxError, MathF.Abs(value - row[i]));
        }
        return true;
    }

    /// <summary>A value rounded to the source dtype (round to nearest even), back in fp32.</summary>
    public static float ToSource(float value, SourceDType dtype) => dtype switch
    {
        SourceDType.BF16 => FloatCodec.Bf16ToSingle(FloatCodec.SingleToBf16(value)),
        SourceDType.F16 => (float)(Half)value,
        _ => value,
    };

    // The open interval of fp32 values that round to v in the source dtype (midpoints to its neighbours).
    private static (double Below, double Above) RoundingInterval(float v, SourceDType dtype)
    {
        double down, up;
        switch (dtype)
        {
            case SourceDType.BF16:
                down = FloatCodec.Bf16ToSingle((ushort)(FloatCodec.SingleToBf16(v) - (v > 0 ? 1 : -1)));
                up = FloatCodec.Bf16ToSingle((ushort)(FloatCodec.SingleToBf16(v) + (v > 0 ? 1 : -1)));
                break;
            case SourceDType.F16:
                down = (double)Half.BitDecrement((Half)v);
                up = (double)Half.BitIncrement((Half)v);
                break;
            default:
                down = MathF.BitDecrement(v);
                up = MathF.BitIncrement(v);
                break;
        }
        return ((down + v) / 2, (up + v) / 2);
    }
}
