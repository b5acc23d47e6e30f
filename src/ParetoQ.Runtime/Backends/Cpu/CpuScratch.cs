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

    public CpuScratch(ScratchShape shape, int threads) : base(shape)
    {
        Activations = new QuantizedActivations(shape.Tokens, shape.Width);
        Scores = new float[shape.KvPositions];
        Workers = new WorkerScratch[threads];
        for (int i = 0; i < threads; i++) Workers[i] = new WorkerScratch(shape);
    }

    public override void Dispose() => Activations.Dispose();
}

/// <summary>What one worker thread's share of a job needs.</summary>
internal sealed class WorkerScratch(ScratchShape shape)
{
    // (KV positions, 4)
    public readonly float[] AttentionWeights = GC.AllocateArray<float>(shape.KvPositions * Int8Attention.Heads,
        pinned: true);
    // (KV positions, 4)
    public readonly int[] AttentionDots = GC.AllocateArray<int>(shape.KvPositions * Int8Attention.Heads, pinned: true);
    // (width) one weight row as fp32
    public readonly float[] Row = new float[shape.Width];
    // (padded width) one row's codes
    public readonly byte[] Codes = new byte[PackedLayout.MaxPaddedCols(shape.Width)];
}
