using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Model;

/// <summary>A weight matrix as a backend holds it: (Rows, Cols) in the file's format. 1-D tensors are (1, n).</summary>
public abstract class BackendWeight(PqTensor tensor, int rows, int cols)
{
    public PqTensor Tensor { get; } = tensor;
    public WeightFormat Format => Tensor.Format;
    public int Rows { get; } = rows;
    public int Cols { get; } = cols;
}

/// <summary>One product of a fused <see cref="IComputeBackend.MatMul"/>: the weight and the buffer that receives x · Wᵀ.</summary>
public readonly record struct MatMulOutput(BackendWeight Weight, BackendBuffer Output);

/// <summary>An fp32 activation buffer that lives on the backend (host memory for the CPU, device memory for accelerators).</summary>
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

/// <summary>One effective layer's KV cache. <see cref="Capacity"/> positions; a ring buffer when <see cref="Ring"/> (local layers).</summary>
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

/// <summary>Everything attention needs to know about one layer; built once from the config.</summary>
public sealed record LayerAttention(
    AttentionKind Kind,
    int Window,
    int Heads,
    int KvHeads,
    int HeadDim,
    bool UseRope,
    RopeLayout RopeLayout,
    float[] RopeInvFreq,
    bool QkNorm,
    float QkNormEps,
    AttentionTemperatureTuning? TemperatureTuning);

/// <summary>
/// The coarse operations of the forward pass. Buffers, weights and KV caches are backend handles, so an accelerator can
/// keep all of them resident: only token ids go in (<see cref="Embed"/>) and logits come out (<see cref="CopyToHost"/>).
/// Activation shapes are (tokens, width) row-major.
/// </summary>
public interface IComputeBackend : IDisposable
{
    string Name { get; }

    /// <summary>Makes a tensor usable by this backend. The CPU backend keeps the memory-mapped view; nothing is copied.</summary>
    BackendWeight Upload(PqTensor tensor, int rows, int cols);
    BackendBuffer Allocate(int length);
    BackendKvCache CreateKvCache(int capacity, int kvHeads, int headDim, KvCacheType type, bool ring);

    /// <summary>x (tokens, dim) = rows of the embedding table.</summary>
    void Embed(BackendWeight table, ReadOnlySpan<int> tokens, BackendBuffer x);

    /// <summary>y (tokens, dim) = RMSNorm of x rows [firstToken, firstToken + tokens), scaled by weight (1, dim).</summary>
    void RmsNorm(BackendBuffer x, int firstToken, int tokens, BackendWeight weight, float eps, BackendBuffer y);

    /// <summary>
    /// For each output: y (tokens, w.Rows) = x (tokens, w.Cols) · Wᵀ. Matmuls that read the same input go in one call
    /// (q, k, v; gate, up), so the input is quantized once and one parallel pass covers them all.
    /// </summary>
    void MatMul(BackendBuffer x, int tokens, params ReadOnlySpan<MatMulOutput> outputs);

    /// <summary>In place on q (tokens, heads·hd) and k (tokens, kvHeads·hd): RoPE, QK-norm and NoPE temperature tuning as the layer asks.</summary>
    void PositionEncode(BackendBuffer q, BackendBuffer k, int tokens, int startPos, LayerAttention layer);

    /// <summary>
    /// Appends k, v (tokens, kvHeads·hd) at positions startPos.. to the cache and writes attention of q over the cache to
    /// output (tokens, heads·hd). Causal; local layers see their window. A position's own K/V are used at full precision.
    /// </summary>
    void Attention(BackendKvCache cache, BackendBuffer q, BackendBuffer k, BackendBuffer v, BackendBuffer output, int tokens, int startPos, LayerAttention layer);

    /// <summary>gate = silu(gate) · up over the first count elements.</summary>
    void SwiGlu(BackendBuffer gate, BackendBuffer up, int count);

    /// <summary>x += y over the first count elements.</summary>
    void Add(BackendBuffer x, BackendBuffer y, int count);

    void CopyToHost(BackendBuffer x, int offset, Span<float> destination);

    /// <summary>Writes host values into x from <paramref name="offset"/> on (tests and tools; the forward pass needs only <see cref="Embed"/>).</summary>
    void CopyFromHost(ReadOnlySpan<float> source, BackendBuffer x, int offset);
}
