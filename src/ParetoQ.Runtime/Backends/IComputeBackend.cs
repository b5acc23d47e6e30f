using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Backends;

/// <summary>A weight matrix as a backend holds it: (Rows, Cols) in the file's format. 1-D tensors are (1, n).</summary>
public abstract class BackendWeight(PqTensor tensor, int rows, int cols)
{
    public PqTensor Tensor { get; } = tensor;
    public WeightFormat Format => Tensor.Format;
    public int Rows { get; } = rows;
    public int Cols { get; } = cols;
}

/// <summary>One product of a fused <see cref="IComputeBackend.MatMul"/>: the weight and the buffer that receives x ·
/// Wᵀ.</summary>
public readonly record struct MatMulOutput(BackendWeight Weight, BackendBuffer Output);

/// <summary>An fp32 activation buffer that lives on the backend (host memory for the CPU, device memory for
/// accelerators).</summary>
public abstract class BackendBuffer(int length) : IDisposable
{
    public int Length { get; } = length;
    /// <summary>Frees device memory; host buffers leave it to the GC.</summary>
    public virtual void Dispose() { }
}

public enum KvCacheType
{
    /// <summary>int8 asymmetric, one scale and zero point per token per head (the default).</summary>
    Int8,
    /// <summary>fp32, for accuracy checks.</summary>
    F32,
}

/// <summary>One effective layer's KV cache. <see cref="Capacity"/> positions; a ring buffer when <see cref="Ring"/>
/// (local layers).</summary>
public abstract class BackendKvCache(int capacity, int kvHeads, int headDim, KvCacheType type, bool ring) : IDisposable
{
    public int Capacity { get; } = capacity;
    public int KvHeads { get; } = kvHeads;
    public int HeadDim { get; } = headDim;
    public KvCacheType Type { get; } = type;
    public bool Ring { get; } = ring;
    /// <summary>Bytes held by the cache.</summary>
    public abstract long Bytes { get; }
    /// <summary>Frees device memory; host caches leave it to the GC.</summary>
    public virtual void Dispose() { }
}

/// <summary>
/// The largest operands one session's forward pass hands a backend: what <see cref="IComputeBackend.CreateScratch"/>
/// sizes the session's working memory for, once.
/// </summary>
/// <param name="Tokens">Tokens per forward step (the session's MaxBatch).</param>
/// <param name="Width">Widest matmul input (hidden size, query width or FFN width) and widest weight row.</param>
/// <param name="KvPositions">Positions of the largest KV cache (the context, or a window for ring caches).</param>
/// <param name="Heads">Query heads of attention.</param>
public readonly record struct ScratchShape(int Tokens, int Width, int KvPositions, int Heads);

/// <summary>
/// A session's working memory on a backend, beyond its activation buffers (int8 activations, attention scores, the
/// per-worker rows of the CPU kernels). Created once per session by <see cref="IComputeBackend.CreateScratch"/>.
/// </summary>
public abstract class BackendScratch(ScratchShape shape) : IDisposable
{
    public ScratchShape Shape { get; } = shape;
    /// <summary>Frees device memory; host scratch leaves it to the GC.</summary>
    public virtual void Dispose() { }
}

/// <summary>Everything attention needs to know about one layer; built once from the config.</summary>
/// <param name="Window">The sliding window of a local layer; 0 for a global layer (see
/// <see cref="AttentionWindow"/>).</param>
public sealed record LayerAttention(
    int Window,
    int Heads,
    int KvHeads,
    int HeadDim,
    bool UseRope,
    RopeLayout RopeLayout,
    float[] RopeInvFreq,
    bool QkNorm,
    float QkNormEps,
    AttentionTemperatureTuning? TemperatureTuning)
{
    public AttentionKind Kind => Window > 0 ? AttentionKind.Local : AttentionKind.Global;

    /// <summary>The first position a query at <paramref name="pos"/> attends to.</summary>
    public int FirstVisible(int pos) => AttentionWindow.FirstVisible(pos, Window);
}

/// <summary>
/// The coarse operations of the forward pass. Buffers, weights and KV caches are backend handles, so an accelerator can
/// keep all of them resident: only token ids go in (<see cref="Embed"/>) and logits come out
/// (<see cref="CopyToHost"/>). Activation shapes are (tokens, width) row-major.
/// <para>
/// Parameters run sources, then arguments, then the destination (an operand updated in place is the destination). An
/// operation that needs working memory takes the session's <see cref="BackendScratch"/> first, as the context it runs
/// in.
/// </para>
/// </summary>
public interface IComputeBackend : IDisposable
{
    string Name { get; }

    /// <summary>Makes a tensor usable by this backend. The CPU backends keep the memory-mapped view; nothing is
    /// copied.</summary>
    BackendWeight Upload(PqTensor tensor, int rows, int cols);
    BackendBuffer Allocate(int length);
    BackendKvCache CreateKvCache(int capacity, int kvHeads, int headDim, KvCacheType type, bool ring);
    /// <summary>One session's working memory, for operands up to <paramref name="shape"/>.</summary>
    BackendScratch CreateScratch(ScratchShape shape);

    /// <summary>x (tokens, dim) = rows of the embedding table.</summary>
    void Embed(BackendScratch scratch, BackendWeight table, ReadOnlySpan<int> tokens, BackendBuffer x);

    /// <summary>y (tokens, dim) = RMSNorm of x rows [firstToken, firstToken + tokens), scaled by weight (1,
    /// dim).</summary>
    void RmsNorm(BackendBuffer x, BackendWeight weight, int firstToken, int tokens, float eps, BackendBuffer y);

    /// <summary>
    /// For each output: y (tokens, w.Rows) = x (tokens, w.Cols) · Wᵀ. Matmuls that read the same input go in one call
    /// (q, k, v; gate, up), so the input is quantized once and one parallel pass covers them all.
    /// </summary>
    void MatMul(BackendScratch scratch, BackendBuffer x, int tokens, params ReadOnlySpan<MatMulOutput> outputs);

    /// <summary>In place on q (tokens, heads·hd) and k (tokens, kvHeads·hd): RoPE, QK-norm and NoPE temperature tuning
    /// as the layer asks.</summary>
    void PositionEncode(int tokens, int startPos, LayerAttention layer, BackendBuffer q, BackendBuffer k);

    /// <summary>
    /// Appends k, v (tokens, kvHeads·hd) at positions startPos.. to the cache and writes attention of q over the cache
    /// to output (tokens, heads·hd). Causal; local layers see their window. A position's own K/V are used at full
    /// precision.
    /// </summary>
    void Attention(BackendScratch scratch, BackendBuffer q, BackendBuffer k, BackendBuffer v, int tokens, int startPos,
        LayerAttention layer, BackendKvCache cache, BackendBuffer output);

    /// <summary>gate = silu(gate) · up over the first count elements.</summary>
    void SwiGlu(BackendBuffer up, int count, BackendBuffer gate);

    /// <summary>x += y over the first count elements.</summary>
    void Add(BackendBuffer y, int count, BackendBuffer x);

    void CopyToHost(BackendBuffer x, int offset, Span<float> destination);

    /// <summary>Writes host values into x from <paramref name="offset"/> on (tests and tools; the forward pass needs
    /// only <see cref="Embed"/>).</summary>
    void CopyFromHost(ReadOnlySpan<float> source, int offset, BackendBuffer x);
}
