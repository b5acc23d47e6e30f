using ParetoQ.Runtime.Kernels;

namespace ParetoQ.KernelCheck;

public sealed record AttentionCase(KernelPath Path, int HeadDim, int Group, int Positions, bool Ring,
    int SegmentPositions = Int8Attention.SegmentPositions)
{
    public override string ToString() =>
        $"attention {KernelDispatch.Name(Path)} hd={HeadDim} group={Group} positions={Positions}" +
        (Ring ? " ring" : "") +
        (SegmentPositions == Int8Attention.SegmentPositions ? "" : $" segments of {SegmentPositions}");
}

/// <summary>
/// Int8 attention (<see cref="Int8Attention.HeadGroup"/>) on a path against the Scalar path bit for bit, and the Scalar
/// path against the plain-loop <see cref="Int8Attention.Reference"/> to rounding: head sizes with and without vector
/// tails, groups that fill four-head blocks or leave them short, position counts from none to many, a ring cache that
/// wraps, and extreme int8 values. Spans longer than a segment are scored in segments whose partial softmaxes are
/// merged: the default segment length, and short ones that give many segments and uneven splits.
/// </summary>
public static unsafe class AttentionSuite
{
    public static readonly int[] HeadDims = [8, 16, 24, 64, 80];
    public static readonly int[] Groups = [1, 3, 4, 5];
    public static readonly int[] PositionCounts = [0, 1, 3, 17, 130, Int8Attention.SegmentPositions + 100];
    public static readonly int[] ShortSegments = [1, 7, 64];

    /// <summary>Head sizes swept one by one, beside the named ones.</summary>
    public const int SweepHeadDim = 136;

    public static IEnumerable<AttentionCase> Cases(IEnumerable<KernelPath> paths) =>
        (from p in paths from hd in HeadDims from g in Groups from n in PositionCounts from ring in (bool[])[false,
            true]
         select new AttentionCase(p, hd, g, n, ring))
        .Concat(from p in paths from hd in Enumerable.Range(1, SweepHeadDim) select new AttentionCase(p, hd, 5, 9,
            true))
        .Concat(from p in paths from hd in (int[])[16, 24] from g in Groups from segment in ShortSegments
                from ring in (bool[])[false, true]
                select new AttentionCase(p, hd, g, 130, ring, segment));

    /// <summary>Null when the path equals Scalar exactly and Scalar agrees with the reference; otherwise what
    /// differs.</summary>
    public static string? Run(AttentionCase c)
    {
        const int KvHeads = 2, G = 1; // the cache holds two KV heads; the case reads the second (rows from the middle)
        int hd = c.HeadDim, n = c.Positions, pos = n + (c.Ring ? 7 : 0), first = pos - n;
        int capacity = c.Ring ? Math.Max(1, n) + 2 : pos + 1;
        var rng = new Random(c.GetHashCode());
        bool extreme = (hd + n) % 2 == 0;
        var keys = new sbyte[capacity * KvHeads * hd];
        var values = new sbyte[keys.Length];
        for (int i = 0; i < keys.Length; i++)
        {
            keys[i] = extreme ? (sbyte)(i % 3 == 0 ? -128 : 127) : (sbyte)rng.Next(-128, 128);
            values[i] = extreme ? (sbyte)(i % 2 == 0 ? 127 : -128) : (sbyte)rng.Next(-128, 128);
        }
        var scales = Enumerable.Range(0, 2 * capacity * KvHeads).Select(_
            => (float)(rng.NextDouble() * 0.02 + 1e-3)).ToArray();
        var zeros = Enumerable.Range(0, 2 * capacity * KvHeads).Select(_ => (sbyte)rng.Next(-128, 128)).ToArray();
        float[] Floats(int count, double range)
            => Enumerable.Range(0, count).Select(_ => (float)((rng.NextDouble() * 2 - 1) * range)).ToArray();
        var q = Floats(c.Group * hd, 3);
        var kOwn = Floats(hd, 1);
        var vOwn = Floats(hd, 1);
        var actual = new float[c.Group * hd];
        var scalar = new float[actual.Length];
        var reference = new float[actual.Length];
        int segments = Int8Attention.Segments(n, c.SegmentPositions);
        var weights = new float[Math.Max(1, Math.Min(n, c.SegmentPositions)) * Int8Attention.Heads];
        var dots = new int[Int8Attention.DotInts];
        var keyStore = new sbyte[Int8KvView.KeyBytes(capacity, KvHeads, hd)];
        var partials = new float[segments * Int8Attention.PartialFloats(c.Group, hd)];
        fixed (sbyte* k = keyStore, v = values, z = zeros)
        fixed (float* s = scales, qp = q, ko = kOwn, vo = vOwn, a = actual, sc = scalar, r = reference, w = weights,
            p = partials)
        fixed (int* d = dots)
        {
            int rows = capacity * KvHeads;
            var cache = new Int8KvView(k, v, s, z, s + rows, z + rows, capacity, KvHeads, hd, c.Ring);
            for (int head = 0; head < KvHeads; head++)
                for (int slot = 0; slot < capacity; slot++)
                    cache.StoreKey(head, slot, keys.AsSpan((head * capacity + slot) * hd, hd));
            Int8Attention.HeadGroup(c.Path, qp, ko, vo, cache, G, c.Group, first, pos, w, d, p, a,
                c.SegmentPositions);
            Int8Attention.HeadGroup(KernelPath.Scalar, qp, ko, vo, cache, G, c.Group, first, pos, w, d, p, sc,
                c.SegmentPositions);
            Int8Attention.Reference(qp, ko, vo, cache, G, c.Group, first, pos, r);
        }
        for (int i = 0; i < actual.Length; i++)
            if (BitConverter.SingleToInt32Bits(actual[i]) != BitConverter.SingleToInt32Bits(scalar[i]))
                return $"output {i}: {actual[i]:R}, scalar {scalar[i]:R}";
        float maxRef = reference.Max(MathF.Abs);
        for (int i = 0; i < scalar.Length; i++)
            if (!(MathF.Abs(scalar[i] - reference[i]) <= 1e-5f * maxRef + 1e-7f))
                return $"output {i}: scalar {scalar[i]:R}, reference {reference[i]:R}";
        return null;
    }
}
