namespace ParetoQ.Runtime.Quantization;

/// <summary>
/// int8 asymmetric quantization of one KV vector (one token, one head), as ExecuTorch's int8 KV cache does it:
/// scale = (max − min) / 255 over a range that includes 0, zero = −128 − round(min / scale), q = clamp(round(x / scale) + zero).
/// </summary>
public static class KvQuantizer
{
    public static (float Scale, sbyte Zero) Quantize(ReadOnlySpan<float> x, Span<sbyte> q)
    {
        float min = 0, max = 0;
        foreach (float v in x)
        {
            min = MathF.Min(min, v);
            max = MathF.Max(max, v);
        }
        float scale = (max - min) / 255f;
        if (scale == 0 || !float.IsFinite(scale))
        {
            q.Clear();
            return (scale == 0 ? 1f : float.NaN, 0);
        }
        int zero = Math.Clamp(-128 - (int)MathF.Round(min / scale), -128, 127);
        for (int i = 0; i < x.Length; i++)
            q[i] = (sbyte)Math.Clamp((int)MathF.Round(x[i] / scale) + zero, -128, 127);
        return (scale, (sbyte)zero);
    }

    public static float Dequantize(sbyte q, float scale, sbyte zero) => scale * (q - zero);
}
