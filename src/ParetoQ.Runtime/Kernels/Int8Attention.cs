using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// An int8 KV cache as the attention kernels read it: int8 keys and values of kvHeads heads, capacity slots and headDim
/// values, with one scale and zero point per (head, slot). Head-major: one KV head's positions are consecutive, so a
/// pass over them streams sequential memory. Position p lives in slot p, or p mod capacity in a ring (local layers).
/// Values are rows, (kvHeads, capacity, headDim). Keys are stored position-major in blocks of <see cref="KeyBlock"/>
/// slots: a block holds, for each quad of 4 head values, the 8 slots' 4 bytes side by side (32 bytes). One vector of a
/// quad row is then 8 positions, and a 4-byte dot product instruction (vpdpbusd, sdot by element) against the query's
/// quad broadcast leaves one score per lane: no per-position reduction (row-major keys spent a third of decode
/// attention on one). Values past headDim in the last quad are zero.
/// </summary>
public readonly unsafe struct Int8KvView(sbyte* keys, sbyte* values, float* keyScales, sbyte* keyZeros,
    float* valueScales, sbyte* valueZeros, int capacity, int kvHeads, int headDim, bool ring)
{
    /// <summary>Slots per key block.</summary>
    public const int KeyBlock = 8;

    public readonly sbyte* Keys = keys, Values = values;
    public readonly float* KeyScales = keyScales, ValueScales = valueScales;
    public readonly sbyte* KeyZeros = keyZeros, ValueZeros = valueZeros;
    public readonly int Capacity = capacity, KvHeads = kvHeads, HeadDim = headDim;
    public readonly bool Ring = ring;

    /// <summary>Quads of 4 head values in a key (the last one padded with zeros).</summary>
    public int Quads => QuadsOf(HeadDim);

    public static int QuadsOf(int headDim) => (headDim + 3) / 4;

    /// <summary>Bytes of one key block: <see cref="KeyBlock"/> slots of every quad.</summary>
    public static int KeyBlockBytes(int headDim) => KeyBlock * 4 * QuadsOf(headDim);

    /// <summary>Bytes of one KV head's keys: whole blocks covering the capacity.</summary>
    public static long KeyHeadBytes(int capacity, int headDim) =>
        (long)(capacity + KeyBlock - 1) / KeyBlock * KeyBlockBytes(headDim);

    /// <summary>Bytes of the whole key store.</summary>
    public static long KeyBytes(int capacity, int kvHeads, int headDim) =>
        kvHeads * KeyHeadBytes(capacity, headDim);

    public int Slot(int pos) => Ring ? pos % Capacity : pos;

    /// <summary>How many of positions [pos, end) sit in consecutive slots from pos's slot on (a ring wraps at most once
    /// per window).</summary>
    public int ContiguousRun(int pos, int end) => Math.Min(end - pos, Capacity - Slot(pos));

    /// <summary>Index of (position, head) among the cached vectors: its value row starts at index · HeadDim, and its
    /// scales and zero points are at index.</summary>
    public int Row(int pos, int head) => head * Capacity + Slot(pos);

    /// <summary>The first byte of key block <paramref name="block"/> of KV head <paramref name="head"/>.</summary>
    public sbyte* KeyBlockAt(int head, int block) =>
        Keys + head * KeyHeadBytes(Capacity, HeadDim) + (long)block * KeyBlockBytes(HeadDim);

    /// <summary>Where value <paramref name="i"/> of the key in <paramref name="slot"/> of <paramref name="head"/> is
    /// stored.</summary>
    public sbyte* KeyAt(int head, int slot, int i) =>
        KeyBlockAt(head, slot / KeyBlock) + (i / 4) * (KeyBlock * 4) + slot % KeyBlock * 4 + i % 4;

    /// <summary>Stores one key (HeadDim int8 values) into its slot.</summary>
    public void StoreKey(int head, int slot, ReadOnlySpan<sbyte> key)
    {
        sbyte* quad = KeyAt(head, slot, 0);
        for (int i = 0; i < key.Length; i += 4, quad += KeyBlock * 4)
            for (int e = 0; e < 4 && i + e < key.Length; e++) quad[e] = key[i + e];
    }
}

/// <summary>
/// Attention of one token's query heads over an int8 KV cache, four heads (sharing one KV head) at a time: q is
/// quantized to int8 per head so q·k is an integer dot product, fixed up with the key's zero point and scales; the
/// scores and the softmax run with positions in the vector lanes (8 at a time, the same on every path, with
/// <see cref="SoftmaxExp"/>); a second pass accumulates the int8 values weighted by it. The token's own K/V are used at
/// full precision. The inner loops come from the kernel path (<see cref="IAttentionKernel"/>), picked once per call
/// from a table; <see cref="Reference"/> is the same algorithm in plain loops, one head at a time, with MathF.Exp.
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
    /// <paramref name="weights"/> holds (4, min(pos − first, segmentPositions)), <paramref name="dots"/>
    /// <see cref="DotInts"/>;
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

    /// <summary>The vector value passes' head-size step: 16 values per load (the dots take any head size).</summary>
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
    // denominators) for Merge. weights holds (4, pos − first): the scores, then the value weights, head by head.
    private static void HeadGroup<TKernel>(float* q, float* kOwn, float* vOwn, in Int8KvView cache, int g, int group,
        int first, int pos, bool withOwn, float* weights, int* dots, float* output, bool partial)
        where TKernel : IAttentionKernel
    {
        const int H = Heads, B = Int8KvView.KeyBlock;
        int hd = cache.HeadDim, quads = cache.Quads, qStride = (4 * quads + 15) & ~15, count = pos - first;
        long stride = hd; // bytes between consecutive value rows of one head
        float invSqrt = 1f / MathF.Sqrt(hd);
        sbyte* q8 = stackalloc sbyte[H * qStride];
        float* acc = stackalloc float[H * hd];
        for (int h0 = 0; h0 < group; h0 += H)
        {
            int heads = Math.Min(H, group - h0);
            // Quantize the block's query heads; missing heads of a short block are zero and their results unused.
            new Span<sbyte>(q8, H * qStride).Clear();
            Vector128<float> qScale = default, qSum = default, own = default;
            for (int h = 0; h < heads; h++)
            {
                float* qh = q + (h0 + h) * hd;
                qScale = qScale.WithElement(h,
                    QuantizedActivations.QuantizeRow(new ReadOnlySpan<float>(qh, hd),
                    new Span<sbyte>(q8 + h * qStride, hd)) * invSqrt);
                qSum = qSum.WithElement(h, Sum(q8 + h * qStride, hd));
                if (withOwn)
                    own = own.WithElement(h, ScalarKernels.Dot(new ReadOnlySpan<float>(qh, hd),
                        new ReadOnlySpan<float>(kOwn, hd)) * invSqrt);
            }

            // Pass 1: scores of the cached positions, a run of contiguous slots at a time (a ring wraps at most once),
            // from the dots of up to DotChunk slots' key blocks at a time. Within a run the rows' scales and zero
            // points are consecutive too.
            var max = withOwn ? own : Vector128.Create(float.NegativeInfinity);
            for (int j = first, run; j < pos; j += run)
            {
                run = cache.ContiguousRun(j, pos);
                int slot = cache.Slot(j), row = cache.Row(j, g);
                for (int done = 0, n; done < run; done += n)
                {
                    int lead = (slot + done) % B;
                    n = Math.Min(run - done, DotChunk - lead);
                    TKernel.BlockDots(q8, qStride, cache.KeyBlockAt(g, (slot + done) / B), (lead + n + B - 1) / B,
                        quads, dots, DotChunk);
                    max = Vector128.Max(max, Scores(dots + lead, n, cache.KeyZeros + row + done,
                        cache.KeyScales + row + done, qSum, qScale, weights + (j - first) + done, count));
                }
            }

            // Softmax numerators; the weights fold in each value row's scale, and its zero point goes in zeroTerm.
            Vector128<float> denom = default, zeroTerm = default;
            var pOwn = withOwn ? SoftmaxExp((own - max).ToVector256()).GetLower() : default;
            for (int h = 0; h < heads; h++)
            {
                Vector256<float> numerators = default, zeros = default;
                for (int j = first, run; j < pos; j += run)
                {
                    run = cache.ContiguousRun(j, pos);
                    int row = cache.Row(j, g);
                    Numerators(weights + h * count + (j - first), run, cache.ValueScales + row,
                        cache.ValueZeros + row, max[h], ref numerators, ref zeros);
                }
                denom = denom.WithElement(h, Vector256.Sum(numerators) + pOwn[h]);
                zeroTerm = zeroTerm.WithElement(h, Vector256.Sum(zeros));
            }

            // Pass 2: Σ weight · int8 value.
            new Span<float>(acc, H * hd).Clear();
            for (int j = first, run; j < pos; j += run)
            {
                run = cache.ContiguousRun(j, pos);
                TKernel.AccumulateInt8x4(acc, cache.Values + (long)cache.Row(j, g) * hd, stride, run, hd,
                    weights + (j - first), count);
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

    /// <summary>How far ahead the x86 loops prefetch keys and values: the hardware prefetchers alone left a cold
    /// pass at half its in-cache rate.</summary>
    internal const int PrefetchBytes = 4096;

    /// <summary>Key slots whose dots one <see cref="IAttentionKernel.BlockDots"/> call gives: a multiple of the key
    /// block, small enough that the dots stay in L1.</summary>
    public const int DotChunk = 256;

    /// <summary>Ints of the dot scratch that <see cref="HeadGroup"/> takes.</summary>
    public const int DotInts = Heads * DotChunk;

    // The scores of n consecutive positions for the four heads, (dot − zero·Σq) · qScale · keyScale, to
    // scores[h·stride + i] from dots[h·DotChunk + i]; returns each head's maximum. Eight positions a step; the tail
    // takes the same operations per element.
    private static Vector128<float> Scores(int* dots, int n, sbyte* zeros, float* scales, Vector128<float> qSum,
        Vector128<float> qScale, float* scores, int stride)
    {
        const int D = DotChunk;
        Vector256<float> sum0 = Vector256.Create(qSum[0]), sum1 = Vector256.Create(qSum[1]),
            sum2 = Vector256.Create(qSum[2]), sum3 = Vector256.Create(qSum[3]);
        Vector256<float> scale0 = Vector256.Create(qScale[0]), scale1 = Vector256.Create(qScale[1]),
            scale2 = Vector256.Create(qScale[2]), scale3 = Vector256.Create(qScale[3]);
        Vector256<float> m0 = Vector256.Create(float.NegativeInfinity), m1 = m0, m2 = m0, m3 = m0;
        float* s1 = scores + stride, s2 = s1 + stride, s3 = s2 + stride;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var zero = Widen8(zeros + i);
            var keyScale = Vector256.Load(scales + i);
            var a = (Vector256.ConvertToSingle(Vector256.Load(dots + i)) - zero * sum0) * scale0 * keyScale;
            var b = (Vector256.ConvertToSingle(Vector256.Load(dots + D + i)) - zero * sum1) * scale1 * keyScale;
            var c = (Vector256.ConvertToSingle(Vector256.Load(dots + 2 * D + i)) - zero * sum2) * scale2 * keyScale;
            var d = (Vector256.ConvertToSingle(Vector256.Load(dots + 3 * D + i)) - zero * sum3) * scale3 * keyScale;
            a.Store(scores + i);
            b.Store(s1 + i);
            c.Store(s2 + i);
            d.Store(s3 + i);
            m0 = Vector256.Max(m0, a);
            m1 = Vector256.Max(m1, b);
            m2 = Vector256.Max(m2, c);
            m3 = Vector256.Max(m3, d);
        }
        var max = Vector128.Create(Max(m0), Max(m1), Max(m2), Max(m3));
        for (; i < n; i++)
        {
            var dot = Vector128.Create(dots[i], dots[D + i], dots[2 * D + i], dots[3 * D + i]);
            var score = (Vector128.ConvertToSingle(dot) - Vector128.Create((float)zeros[i]) * qSum) * qScale
                * Vector128.Create(scales[i]);
            (scores[i], s1[i], s2[i], s3[i]) = (score[0], score[1], score[2], score[3]);
            max = Vector128.Max(max, score);
        }
        return max;
    }

    // Softmax numerators of n positions of one head, in place: w = exp(score − max) · valueScale; numerators and
    // zeros gain exp(score − max) and w · valueZero in 8 running partial sums. The tail goes through one padded
    // vector, its missing lanes scored −∞ (so they add 0): the same exp everywhere.
    private static void Numerators(float* w, int n, float* valueScales, sbyte* valueZeros, float max,
        ref Vector256<float> numerators, ref Vector256<float> zeros)
    {
        var m = Vector256.Create(max);
        Vector256<float> sum = numerators, zeroSum = zeros; // in registers: the refs would chain through memory
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            var p = SoftmaxExp(Vector256.Load(w + i) - m);
            sum += p;
            var x = p * Vector256.Load(valueScales + i);
            zeroSum += x * Widen8(valueZeros + i);
            x.Store(w + i);
        }
        numerators = sum;
        zeros = zeroSum;
        if (i == n) return;
        float* tail = stackalloc float[3 * 8];
        float* scale = tail + 8, zero = tail + 16;
        for (int k = 0; k < 8; k++)
        {
            bool inside = i + k < n;
            tail[k] = inside ? w[i + k] : float.NegativeInfinity;
            scale[k] = inside ? valueScales[i + k] : 0;
            zero[k] = inside ? valueZeros[i + k] : 0;
        }
        var pt = SoftmaxExp(Vector256.Load(tail) - m);
        numerators += pt;
        var xt = pt * Vector256.Load(scale);
        zeros += xt * Vector256.Load(zero);
        xt.Store(tail);
        for (int k = 0; i + k < n; k++) w[i + k] = tail[k];
    }

    /// <summary>
    /// e^x for x ≤ 0, in float arithmetic: x = n·ln 2 + r with ln 2 in two parts, Cephes' degree-5 polynomial for
    /// e^r, and 2^n from the exponent bits; 0 below −87.3 (and at −∞). Within 2 ulp of <see cref="MathF.Exp"/>;
    /// <see cref="Vector256.Exp(Vector256{float})"/> widens to double and was a quarter of decode attention.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> SoftmaxExp(Vector256<float> x)
    {
        var low = Vector256.Create(-87.3f);
        var underflow = Vector256.LessThan(x, low);
        x = Vector256.Max(x, low);
        var n = Vector256.Round(x * Vector256.Create(1.44269504f));
        var r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-0.693359375f), x);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(2.12194440e-4f), r);
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(1.9875691500e-4f), r, Vector256.Create(1.3981999507e-3f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(8.3334519073e-3f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(4.1665795894e-2f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1.6666665459e-1f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(5.0000001201e-1f));
        var y = Vector256.FusedMultiplyAdd(p, r * r, r) + Vector256<float>.One;
        var twoToN = ((Vector256.ConvertToInt32Native(n) + Vector256.Create(127)) << 23).AsSingle();
        return Vector256.AndNot(y * twoToN, underflow);
    }

    // Eight int8 values as floats.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Widen8(sbyte* p)
    {
        if (Avx2.IsSupported) return Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(p));
        var (lo, hi) = Vector128.Widen(Vector128.WidenLower(Vector128.CreateScalar(*(long*)p).AsSByte()));
        return Vector256.ConvertToSingle(Vector256.Create(lo, hi));
    }

    // The largest lane (exact in any order).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Max(Vector256<float> v)
    {
        var m = Vector128.Max(v.GetLower(), v.GetUpper());
        m = Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
        return MathF.Max(m[0], m[1]);
    }

    // Σ of n int8 values (exact in any order).
    internal static int Sum(sbyte* x, int n)
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
                for (int i = 0; i < hd; i++) dot += q8[i] * *cache.KeyAt(g, cache.Slot(first + j), i);
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
