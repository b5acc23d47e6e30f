using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// An int8 KV cache as the attention kernels read it: (kvHeads, capacity, headDim) int8 keys and values with one scale
/// and zero point per (head, slot). Head-major: one KV head's positions are consecutive rows, so a pass over them
/// streams sequential memory (slot-major interleaved the heads, and each pass read a fifth of every line it
/// fetched). Position p lives in slot p, or p mod capacity in a ring (local layers).
/// </summary>
public readonly unsafe struct Int8KvView(sbyte* keys, sbyte* values, float* keyScales, sbyte* keyZeros,
    float* valueScales, sbyte* valueZeros, int capacity, int kvHeads, int headDim, bool ring)
{
    public readonly sbyte* Keys = keys, Values = values;
    public readonly float* KeyScales = keyScales, ValueScales = valueScales;
    public readonly sbyte* KeyZeros = keyZeros, ValueZeros = valueZeros;
    public readonly int Capacity = capacity, KvHeads = kvHeads, HeadDim = headDim;
    public readonly bool Ring = ring;

    public int Slot(int pos) => Ring ? pos % Capacity : pos;

    /// <summary>How many of positions [pos, end) sit in consecutive slots from pos's slot on (a ring wraps at most once
    /// per window).</summary>
    public int ContiguousRun(int pos, int end) => Math.Min(end - pos, Capacity - Slot(pos));

    /// <summary>Index of (position, head) among the cached vectors: its int8 data starts at index · HeadDim.</summary>
    public int Row(int pos, int head) => head * Capacity + Slot(pos);
}

/// <summary>
/// Attention of one token's query heads over an int8 KV cache, four heads (sharing one KV head) at a time: q is
/// quantized to int8 per head so q·k is an integer dot product, fixed up with the key's zero point and scales; the
/// softmax is taken with vector exp; a second pass accumulates the int8 values weighted by it. The token's own K/V are
/// used at full precision. The inner loops come from the kernel path (<see cref="IAttentionKernel"/>), picked once per
/// call from a table; <see cref="Reference"/> is the same algorithm in plain loops, one head at a time.
/// </summary>
public static unsafe class Int8Attention
{
    public const int Heads = 4;

    /// <summary>
    /// Cached positions per segment. A longer span is scored segment by segment and the partial softmaxes are merged
    /// (<see cref="Merge"/>), so one token's KV head can be split across threads at long context. The length is fixed,
    /// not taken from the thread count, so a result does not depend on how many threads computed it. Each segment
    /// re-quantizes q and restarts the K/V streams: 256 made decode at context 2048 slower in the model, 1024 breaks
    /// even there (docs/BENCHMARKS.md).
    /// </summary>
    public const int SegmentPositions = 1024;

    /// <summary>Segments of a span of <paramref name="count"/> cached positions.</summary>
    public static int Segments(int count, int segmentPositions = SegmentPositions) =>
        Math.Max(1, (count + segmentPositions - 1) / segmentPositions);

    /// <summary>Floats of one segment's partial result for <paramref name="group"/> heads: the unnormalized outputs
    /// (group, hd), then each head's running maximum, then each head's softmax denominator.</summary>
    public static int PartialFloats(int group, int hd) => group * (hd + 2);

    /// <summary>
    /// Attention output (group heads, hd) for the query heads q (group, hd) that share KV head <paramref name="g"/>, at
    /// position <paramref name="pos"/> over cached positions [first, pos) plus its own kOwn, vOwn (hd).
    /// <paramref name="weights"/> and <paramref name="dots"/> hold (min(pos − first, segmentPositions), 4) each;
    /// <paramref name="partials"/> holds <see cref="Segments"/> × <see cref="PartialFloats"/>.
    /// </summary>
    public static void HeadGroup(KernelPath path, float* q, float* kOwn, float* vOwn, in Int8KvView cache, int g,
        int group, int first, int pos, float* weights, int* dots, float* partials, float* output,
        int segmentPositions = SegmentPositions)
    {
        int segments = Segments(pos - first, segmentPositions);
        if (segments == 1)
        {
            Kernel(path, cache)(q, kOwn, vOwn, cache, g, group, first, pos, true, weights, dots, output, false);
            return;
        }
        int partialFloats = PartialFloats(group, cache.HeadDim);
        for (int s = 0; s < segments; s++)
            Segment(path, q, kOwn, vOwn, cache, g, group, first, pos, s, segments, weights, dots,
                partials + s * partialFloats);
        Merge(segments, group, cache.HeadDim, partials, output);
    }

    /// <summary>
    /// Segment <paramref name="segment"/> of <paramref name="segments"/> of <see cref="HeadGroup"/>'s span: its partial
    /// result (<see cref="PartialFloats"/>) into <paramref name="partial"/>. The last segment takes the token's own
    /// K/V.
    /// </summary>
    public static void Segment(KernelPath path, float* q, float* kOwn, float* vOwn, in Int8KvView cache, int g,
        int group, int first, int pos, int segment, int segments, float* weights, int* dots, float* partial)
    {
        var (begin, end) = WorkerPool.Share(pos - first, segments, segment);
        Kernel(path, cache)(q, kOwn, vOwn, cache, g, group, first + begin, first + end, segment == segments - 1,
            weights, dots, partial, true);
    }

    /// <summary>
    /// Output (group, hd) from <paramref name="segments"/> consecutive partial results: each segment's numerators and
    /// denominator rescaled from its own maximum to the overall one, summed in segment order.
    /// </summary>
    public static void Merge(int segments, int group, int hd, float* partials, float* output)
    {
        int stride = PartialFloats(group, hd), maxAt = group * hd, denomAt = maxAt + group;
        float* factor = stackalloc float[segments];
        for (int h = 0; h < group; h++)
        {
            float max = float.NegativeInfinity, denom = 0;
            for (int s = 0; s < segments; s++) max = MathF.Max(max, partials[s * stride + maxAt + h]);
            for (int s = 0; s < segments; s++)
            {
                factor[s] = MathF.Exp(partials[s * stride + maxAt + h] - max);
                denom += factor[s] * partials[s * stride + denomAt + h];
            }
            float inv = 1f / denom;
            float* oh = output + h * hd;
            int i = 0;
            if (Vector128.IsHardwareAccelerated)
                for (; i + 4 <= hd; i += 4)
                {
                    var sum = Vector128<float>.Zero;
                    for (int s = 0; s < segments; s++)
                        sum += Vector128.Create(factor[s]) * Vector128.Load(partials + s * stride + h * hd + i);
                    (sum * inv).Store(oh + i);
                }
            for (; i < hd; i++)
            {
                float sum = 0;
                for (int s = 0; s < segments; s++) sum += factor[s] * partials[s * stride + h * hd + i];
                oh[i] = sum * inv;
            }
        }
    }

    /// <summary>The vector paths' head-size step: 16 int8 lanes per load.</summary>
    private const int VectorHeadDim = 16;

    private static delegate*<float*, float*, float*, in Int8KvView, int, int, int, int, bool, float*, int*, float*,
        bool, void> Kernel(KernelPath path, in Int8KvView cache) =>
        cache.HeadDim % VectorHeadDim == 0 || path == KernelPath.Scalar ? s_headGroup[(int)path]
        : cache.HeadDim % 8 == 0 && Vector128.IsHardwareAccelerated ? &HeadGroup<Narrow8AttentionKernel>
        : s_headGroup[(int)KernelPath.Scalar];

    // The path → kernel table, built once.
    private static readonly delegate*<float*, float*, float*, in Int8KvView, int, int, int, int, bool, float*, int*,
        float*, bool, void>[] s_headGroup = Table();

    private static delegate*<float*, float*, float*, in Int8KvView, int, int, int, int, bool, float*, int*, float*,
        bool, void>[] Table()
    {
        var paths = Enum.GetValues<KernelPath>();
        var table = new delegate*<float*, float*, float*, in Int8KvView, int, int, int, int, bool, float*, int*,
            float*, bool, void>[paths.Length];
        foreach (var path in paths)
            table[(int)path] = path switch
            {
                KernelPath.Avx2 => &HeadGroup<Avx2AttentionKernel>,
                KernelPath.AvxVnni => &HeadGroup<VnniAttentionKernel>,
                KernelPath.Avx512 or KernelPath.Avx512Gfni => &HeadGroup<Avx512AttentionKernel>,
                KernelPath.Neon => &HeadGroup<NeonAttentionKernel>,
                _ => &HeadGroup<ScalarAttentionKernel>,
            };
        return table;
    }

    // Positions [first, pos) of the cache, plus the token's own K/V when withOwn is set. Normalized: output (group,
    // hd) is the attention result. Partial: output is a PartialFloats block (unnormalized outputs, maxima,
    // denominators) for Merge.
    private static void HeadGroup<TKernel>(float* q, float* kOwn, float* vOwn, in Int8KvView cache, int g, int group,
        int first, int pos, bool withOwn, float* weights, int* dots, float* output, bool partial)
        where TKernel : IAttentionKernel
    {
        const int H = Heads;
        int hd = cache.HeadDim;
        long stride = hd; // bytes between consecutive positions of one head
        float invSqrt = 1f / MathF.Sqrt(hd);
        sbyte* q8 = stackalloc sbyte[H * hd];
        float* acc = stackalloc float[H * hd];
        for (int h0 = 0; h0 < group; h0 += H)
        {
            int heads = Math.Min(H, group - h0);
            // Quantize the block's query heads; missing heads of a short block are zero and their results unused.
            new Span<sbyte>(q8, H * hd).Clear();
            Vector128<float> qScale = default, qSum = default, own = default;
            for (int h = 0; h < heads; h++)
            {
                float* qh = q + (h0 + h) * hd;
                qScale = qScale.WithElement(h,
                    QuantizedActivations.QuantizeRow(new ReadOnlySpan<float>(qh, hd),
                    new Span<sbyte>(q8 + h * hd, hd)) * invSqrt);
                qSum = qSum.WithElement(h, Sum(q8 + h * hd, hd));
                if (withOwn)
                    own = own.WithElement(h, ScalarKernels.Dot(new ReadOnlySpan<float>(qh, hd),
                        new ReadOnlySpan<float>(kOwn, hd)) * invSqrt);
            }

            // Pass 1: scores of the cached positions, a run of contiguous slots at a time (a ring wraps at most once);
            // within a run the rows' scales and zero points are consecutive too.
            var max = withOwn ? own : Vector128.Create(float.NegativeInfinity);
            for (int j = first, run; j < pos; j += run)
            {
                run = cache.ContiguousRun(j, pos);
                int row = cache.Row(j, g);
                int* d = dots + (j - first) * H;
                float* wr = weights + (j - first) * H, keyScales = cache.KeyScales + row;
                sbyte* keyZeros = cache.KeyZeros + row;
                TKernel.DotInt8x4(q8, cache.Keys + (long)row * hd, stride, run, hd, d);
                // Two positions a step with two running maxima: max is exact in any order, and one chain of
                // Vector128.Max (three dependent instructions) per position was the loop's bound.
                int i = 0;
                Vector256<float> qSum2 = Vector256.Create(qSum, qSum), qScale2 = Vector256.Create(qScale, qScale);
                Vector256<float> maxA = Vector256.Create(max, max), maxB = maxA;
                for (; i + 4 <= run; i += 4)
                {
                    var a = Scores(d + i * H, keyZeros + i, keyScales + i, qSum2, qScale2);
                    var b = Scores(d + (i + 2) * H, keyZeros + i + 2, keyScales + i + 2, qSum2, qScale2);
                    a.Store(wr + i * H);
                    b.Store(wr + (i + 2) * H);
                    maxA = Vector256.Max(maxA, a);
                    maxB = Vector256.Max(maxB, b);
                }
                maxA = Vector256.Max(maxA, maxB);
                max = Vector128.Max(maxA.GetLower(), maxA.GetUpper());
                for (; i < run; i++)
                {
                    var dot = Vector128.ConvertToSingle(Vector128.Load(d + i * H)) - keyZeros[i] * qSum;
                    var score = dot * qScale * keyScales[i];
                    score.Store(wr + i * H);
                    max = Vector128.Max(max, score);
                }
            }

            // Softmax numerators; the weights fold in each value row's scale, and its zero point goes in zeroTerm. exp
            // runs on two positions at once (the same per-lane result as one at a time); the sums stay in order.
            Vector128<float> denom = withOwn ? Vector128.Exp(own - max) : default, pOwn = denom, zeroTerm = default;
            var max2 = Vector256.Create(max, max);
            for (int j = first, run; j < pos; j += run)
            {
                run = cache.ContiguousRun(j, pos);
                int row = cache.Row(j, g);
                float* wr = weights + (j - first) * H, valueScales = cache.ValueScales + row;
                sbyte* valueZeros = cache.ValueZeros + row;
                int i = 0;
                for (; i + 2 <= run; i += 2)
                {
                    var p2 = Vector256.Exp(Vector256.Load(wr + i * H) - max2);
                    var p = p2.GetLower();
                    denom += p;
                    var w = p * valueScales[i];
                    zeroTerm += w * valueZeros[i];
                    w.Store(wr + i * H);
                    p = p2.GetUpper();
                    denom += p;
                    w = p * valueScales[i + 1];
                    zeroTerm += w * valueZeros[i + 1];
                    w.Store(wr + (i + 1) * H);
                }
                if (i < run)
                {
                    var p = Vector128.Exp(Vector128.Load(wr + i * H) - max);
                    denom += p;
                    var w = p * valueScales[i];
                    zeroTerm += w * valueZeros[i];
                    w.Store(wr + i * H);
                }
            }

            // Pass 2: Σ weight · int8 value.
            new Span<float>(acc, H * hd).Clear();
            for (int j = first, run; j < pos; j += run)
            {
                run = cache.ContiguousRun(j, pos);
                TKernel.AccumulateInt8x4(acc, cache.Values + (long)cache.Row(j, g) * hd, stride, run, hd,
                    weights + (j - first) * H);
            }
            for (int h = 0; h < heads; h++)
            {
                float* oh = output + (h0 + h) * hd;
                float zero = zeroTerm[h], po = pOwn[h];
                // Partial results stay unnormalized (a scale of 1 is exact).
                float inv = partial ? 1f : 1f / denom[h];
                Finish(acc + h * hd, vOwn, zero, po, inv, oh, hd);
                if (!partial) continue;
                output[group * hd + h0 + h] = max[h];
                output[group * hd + group + h0 + h] = denom[h];
            }
        }
    }

    // Σ of n int8 values (exact in any order).
    private static int Sum(sbyte* x, int n)
    {
        int i = 0, sum = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            var acc = Vector128<int>.Zero;
            for (; i + 16 <= n; i += 16)
            {
                var (lo, hi) = Vector128.Widen(Vector128.Load(x + i));
                var (a, b) = Vector128.Widen(lo + hi);
                acc += a + b;
            }
            sum = Vector128.Sum(acc);
        }
        for (; i < n; i++) sum += x[i];
        return sum;
    }

    // out[i] = (acc[i] − zero + pOwn · vOwn[i]) · inv, element by element: the same operations vector or scalar.
    private static void Finish(float* acc, float* vOwn, float zero, float pOwn, float inv, float* output, int n)
    {
        int i = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            Vector128<float> z = Vector128.Create(zero), p = Vector128.Create(pOwn), s = Vector128.Create(inv);
            for (; i + 4 <= n; i += 4)
                ((Vector128.Load(acc + i) - z + p * Vector128.Load(vOwn + i)) * s).Store(output + i);
        }
        for (; i < n; i++) output[i] = (acc[i] - zero + pOwn * vOwn[i]) * inv;
    }

    // The scores of two consecutive positions: (dot − zero·Σq) · qScale · keyScale per lane, as the one-position loop
    // forms them.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Scores(int* dots, sbyte* zeros, float* scales, Vector256<float> qSum,
        Vector256<float> qScale)
    {
        var zero = Vector256.Create(Vector128.Create((float)zeros[0]), Vector128.Create((float)zeros[1]));
        var scale = Vector256.Create(Vector128.Create(scales[0]), Vector128.Create(scales[1]));
        return (Vector256.ConvertToSingle(Vector256.Load(dots)) - zero * qSum) * qScale * scale;
    }

    /// <summary>
    /// The reference: <see cref="HeadGroup"/>'s algorithm in plain loops, one head at a time, with scalar exp. Vector
    /// exp rounds differently, so the paths agree with it to rounding rather than bit for bit.
    /// </summary>
    public static void Reference(float* q, float* kOwn, float* vOwn, in Int8KvView cache, int g, int group, int first,
        int pos, float* output)
    {
        int hd = cache.HeadDim, count = pos - first;
        float invSqrt = 1f / MathF.Sqrt(hd);
        var q8 = new sbyte[hd];
        var scores = new float[count + 1];
        for (int h = 0; h < group; h++)
        {
            float* qh = q + h * hd;
            float qScale = QuantizedActivations.QuantizeRow(new ReadOnlySpan<float>(qh, hd), q8) * invSqrt;
            int qSum = 0;
            foreach (sbyte v in q8) qSum += v;
            float max = scores[count] = ScalarKernels.Dot(new ReadOnlySpan<float>(qh, hd),
                new ReadOnlySpan<float>(kOwn, hd)) * invSqrt;
            for (int j = 0; j < count; j++)
            {
                int row = cache.Row(first + j, g);
                int dot = 0;
                for (int i = 0; i < hd; i++) dot += q8[i] * cache.Keys[(long)row * hd + i];
                scores[j] = (dot - cache.KeyZeros[row] * (float)qSum) * qScale * cache.KeyScales[row];
                max = MathF.Max(max, scores[j]);
            }
            float denom = 0;
            for (int j = 0; j <= count; j++) denom += scores[j] = MathF.Exp(scores[j] - max);
            float* oh = output + h * hd;
            for (int i = 0; i < hd; i++)
            {
                float sum = scores[count] * vOwn[i];
                for (int j = 0; j < count; j++)
                {
                    int row = cache.Row(first + j, g);
                    sum += scores[j] * cache.ValueScales[row] * (cache.Values[(long)row * hd + i] - cache.ValueZeros[row]);
                }
                oh[i] = sum / denom;
            }
        }
    }
}
