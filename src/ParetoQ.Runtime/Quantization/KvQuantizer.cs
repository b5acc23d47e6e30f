using System.Runtime.Intrinsics;
namespace ParetoQ.Runtime.Quantization;

/// <summary>
/// int8 asymmetric quantization of one KV vector (one token, one head), as ExecuTorch's int8 KV cache does it:
/// scale = (max − min) / 255 over a range that includes 0, zero = −128 − round(min / scale), q = clamp(round(x / scale)
/// + zero).
/// </summary>
public static class KvQuantizer
{
    public static (float Scale, sbyte Zero) Quantize(ReadOnlySpan<float> x, Span<sbyte> q)
    {
        float min = 0, max = 0;
        int i = 0;
        if (Vector128.IsHardwareAccelerated && x.Length >= 4)
        {
            // Vector Min/Max propagate NaN as MathF.Min/Max do, so a NaN still reaches the scale check below.
            Vector128<float> vmin = default, vmax = default;
            for (; i + 4 <= x.Length; i += 4)
            {
                var v = Vector128.Create(x.Slice(i, 4));
                vmin = Vector128.Min(vmin, v);
                vmax = Vector128.Max(vmax, v);
            }
            min = MathF.Min(MathF.Min(vmin[0], vmin[1]), MathF.Min(vmin[2], vmin[3]));
            max = MathF.Max(MathF.Max(vmax[0], vmax[1]), MathF.Max(vmax[2], vmax[3]));
        }
        for (; i < x.Length; i++)
        {
            min = MathF.Min(min, x[i]);
            max = MathF.Max(max, x[i]);
        }
        float scale = (max - min) / 255f;
        if (scale == 0 || !float.IsFinite(scale))
        {
            q.Clear();
            return (scale == 0 ? 1f : float.NaN, 0);
        }
        int zero = Math.Clamp(-128 - (int)MathF.Round(min / scale), -128, 127);
        i = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            // The same operations as the scalar loop (IEEE division, round half to even), four at a time.
            var s = Vector128.Create(scale);
            var z = Vector128.Create(zero);
            var lo = Vector128.Create(-128);
            var hi = Vector128.Create(127);
            for (; i + 4 <= x.Length; i += 4)
            {
                var r = Vector128.ConvertToInt32(Vector128.Round(Vector128.Create(x.Slice(i, 4)) / s)) + z;
                r = Vector128.Min(Vector128.Max(r, lo), hi);
                q[i] = (sbyte)r[0];
                q[i + 1] = (sbyte)r[1];
                q[i + 2] = (sbyte)r[2];
                q[i + 3] = (sbyte)r[3];
            }
        }
        for (; i < x.Length; i++)
            q[i] = (sbyte)Math.Clamp((int)MathF.Round(x[i] / scale) + zero, -128, 127);
        return (scale, (sbyte)zero);
    }

    public static float Dequantize(sbyte q, float scale, sbyte zero) => scale * (q - zero);
}
