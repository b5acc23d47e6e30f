using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Backends.Cpu;

/// <summary>
/// One session's working memory on a CPU backend, allocated once when the session opens (see <see cref="RunState"/>).
/// What a parallel job's items need is held once per worker thread of the backend's pool, indexed by the worker number
/// the pool passes to <see cref="IParallelJob.Execute"/>; the calling thread is worker 0.
/// </summary>
internal sealed class CpuScratch : BackendScratch
{
    // (tokens, width) int8 matmul input, with per-token scales and sums
    public readonly QuantizedActivations Activations;
    // (KV positions) one head's attention weights, reference attention
    public readonly float[] Scores;
    public readonly WorkerScratch[] Workers;           // (pool threads)
    // The parallel jobs' per-call state, so a call allocates nothing.
    public readonly MatMulJob MatMul = new();
    public readonly AttentionJob Attention = new();
    public readonly QuantizeJob Quantize = new();
    // (segments of the longest span, KV heads' partial results) one token's attention segments, for the merge
    public readonly float[] AttentionPartials;

    public CpuScratch(ScratchShape shape, int threads) : base(shape)
    {
        Activations = new QuantizedActivations(shape.Tokens, shape.Width);
        Scores = new float[shape.KvPositions];
        AttentionPartials = GC.AllocateArray<float>(WorkerScratch.PartialFloats(shape), pinned: true);
        Workers = new WorkerScratch[threads];
        for (int i = 0; i < threads; i++) Workers[i] = new WorkerScratch(shape);
    }

    public override void Dispose() => Activations.Dispose();
}

/// <summary>What one worker thread's share of a job needs.</summary>
internal sealed class WorkerScratch(ScratchShape shape)
{
    private static int SegmentPositions(ScratchShape shape) =>
        Math.Max(1, Math.Min(shape.KvPositions, Int8Attention.SegmentPositions));

    /// <summary>Partial results of every segment of the longest span, for all query heads (heads · head size is at
    /// most the widest input).</summary>
    public static int PartialFloats(ScratchShape shape) =>
        Int8Attention.Segments(shape.KvPositions) * (shape.Width + 2 * shape.Heads);

    // (4, positions of a segment)
    public readonly float[] AttentionWeights = GC.AllocateArray<float>(SegmentPositions(shape) * Int8Attention.Heads,
        pinned: true);
    // (4, key slots of a dot chunk)
    public readonly int[] AttentionDots = GC.AllocateArray<int>(Int8Attention.DotInts, pinned: true);
    // (segments of the longest span, one KV head's partial results) a token's segments, merged by the same worker
    public readonly float[] AttentionPartials = GC.AllocateArray<float>(PartialFloats(shape), pinned: true);
    // (width) one weight row as fp32
    public readonly float[] Row = new float[shape.Width];
    // (padded width) one row's codes
    public readonly byte[] Codes = new byte[PackedLayout.MaxPaddedCols(shape.Width)];
}
