using ParetoQ.Runtime.Kernels;

namespace ParetoQ.KernelCheck;

public sealed record AttentionCase(KernelPath Path, int HeadDim, int Positions, int Stride)
{
    public override string ToString() => $"attention {KernelDispatch.Name(Path)} hd={HeadDim} positions={Positions} stride={Stride}";
}

/// <summary>
/// The attention inner loops (<see cref="AttentionKernels"/>) on a path against Scalar, bit for bit: head sizes with and
/// without vector tails, position counts from none to many, rows strided as in a multi-head cache, extreme int8 values.
/// </summary>
public static unsafe class AttentionSuite
{
    public static readonly int[] HeadDims = [8, 16, 24, 64, 80, 128];
    public static readonly int[] PositionCounts = [0, 1, 3, 17, 130];

    public static IEnumerable<AttentionCase> Cases(IEnumerable<KernelPath> paths) =>
        from p in paths from hd in HeadDims from n in PositionCounts from extra in (int[])[0, 3 * hd + 8]
        select new AttentionCase(p, hd, n, hd + extra);

    /// <summary>Null when the path equals Scalar exactly; otherwise what differs.</summary>
    public static string? Run(AttentionCase c)
    {
        const int H = AttentionKernels.Heads;
        int hd = c.HeadDim, n = c.Positions;
        var rng = new Random(c.GetHashCode());
        var q = new sbyte[H * hd];
        var rows = new sbyte[Math.Max(1, n * c.Stride)];
        // Half the cases at the int8 extremes, where a widening or saturation slip would show.
        bool extreme = (hd + n) % 2 == 0;
        for (int i = 0; i < q.Length; i++) q[i] = extreme ? (sbyte)(i % 2 == 0 ? 127 : -127) : (sbyte)rng.Next(-127, 128);
        for (int i = 0; i < rows.Length; i++) rows[i] = extreme ? (sbyte)(i % 3 == 0 ? -128 : 127) : (sbyte)rng.Next(-128, 128);
        var weights = new float[Math.Max(1, n * H)];
        for (int i = 0; i < weights.Length; i++) weights[i] = (float)(rng.NextDouble() * 2 - 1);
        var accStart = new float[H * hd];
        for (int i = 0; i < accStart.Length; i++) accStart[i] = (float)rng.NextDouble();

        var dots = new int[Math.Max(1, n * H)];
        var dotsRef = new int[dots.Length];
        var acc = (float[])accStart.Clone();
        var accRef = (float[])accStart.Clone();
        fixed (sbyte* qp = q, rp = rows)
        fixed (int* d = dots, dr = dotsRef)
        fixed (float* w = weights, a = acc, ar = accRef)
        {
            AttentionKernels.DotInt8x4(c.Path, qp, rp, c.Stride, n, hd, d);
            AttentionKernels.DotInt8x4(KernelPath.Scalar, qp, rp, c.Stride, n, hd, dr);
            AttentionKernels.AccumulateInt8x4(c.Path, a, rp, c.Stride, n, hd, w);
            AttentionKernels.AccumulateInt8x4(KernelPath.Scalar, ar, rp, c.Stride, n, hd, w);
        }
        for (int i = 0; i < n * H; i++)
            if (dots[i] != dotsRef[i]) return $"dot of position {i / H} head {i % H}: {dots[i]}, scalar {dotsRef[i]}";
        // The scalar dot itself, from the definition.
        for (int j = 0; j < n; j++)
            for (int h = 0; h < H; h++)
            {
                long s = 0;
                for (int i = 0; i < hd; i++) s += q[h * hd + i] * rows[j * c.Stride + i];
                if (s != dotsRef[j * H + h]) return $"scalar dot of position {j} head {h} is {dotsRef[j * H + h]}, not {s}";
            }
        for (int i = 0; i < acc.Length; i++)
            if (BitConverter.SingleToInt32Bits(acc[i]) != BitConverter.SingleToInt32Bits(accRef[i]))
                return $"accumulator {i}: {acc[i]:R}, scalar {accRef[i]:R}";
        return null;
    }
}
