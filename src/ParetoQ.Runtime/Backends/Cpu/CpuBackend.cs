using ParetoQ.Runtime.Backends.Reference;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Backends.Cpu;

public sealed record CpuBackendOptions
{
    /// <summary>
    /// Exact mode: the <see cref="ReferenceBackend"/> (fp32 activations through the scalar reference kernels), for
    /// accuracy checks. Off: the <see cref="CpuBackend"/> (int8 activations through the SIMD kernels).
    /// </summary>
    public bool Exact { get; init; }
    /// <summary>Worker threads, the caller included; 0 means one per core (<see cref="ThreadCount"/>).</summary>
    public int Threads { get; init; }
    /// <summary>The kernel path of the fast backend; null means <see cref="KernelDispatch.Default"/> (the best one, or
    /// PARETOQ_KERNELS).</summary>
    public KernelPath? Kernels { get; init; }

    public static CpuBackendOptions ExactMode { get; } = new() { Exact = true, Threads = 1 };
}

/// <summary>
/// The fast CPU backend. Weights stay in the memory map and the kernels read them in place. Matmuls are split by row
/// tiles over a persistent <see cref="WorkerPool"/>; each matmul input is quantized to int8 once per call, and
/// attention over an int8 KV cache runs integer scores (<see cref="Int8Attention"/>) in parallel over (token, KV head)
/// pairs.
/// </summary>
public sealed unsafe class CpuBackend : HostBackend
{
    public KernelPath Kernels { get; }
    public override string Name => $"cpu-{KernelDispatch.Name(Kernels)}";

    public CpuBackend(CpuBackendOptions? options = null) : base((options ??= new()).Threads)
    {
        if (options.Exact) throw new ArgumentException("exact mode is the reference backend (ComputeDevice.Cpu picks it)", nameof(options));
        Kernels = options.Kernels ?? KernelDispatch.Default;
        if (!KernelDispatch.IsSupported(Kernels))
        {
            Dispose();
            throw new NotSupportedException($"kernel path '{KernelDispatch.Name(Kernels)}' is not supported by this CPU");
        }
    }

    public override BackendWeight Upload(PqTensor tensor, int rows, int cols)
    {
        var w = new CpuWeight(tensor, rows, cols);
        if (w.IsPacked) LowBitMatMul.CheckShape(w.Packed.Layout);
        return w;
    }

    // Prefill's int8 input is quantized by every thread, token rows each: on the caller alone, quantizing (and copying
    // into the wide layout) 512 tokens of 3584 values took a fifth of the down projection's time.
    internal override void PrepareMatMulInput(CpuScratch scratch, CpuBuffer x, int tokens, int cols, bool packedWeights)
    {
        if (!packedWeights) return;
        scratch.Activations.SetShape(x.Data.Length, tokens, cols);
        if (tokens < ParallelQuantizeTokens) scratch.Activations.QuantizeRows(x.Data, 0, tokens);
        else Pool.Run(scratch.Quantize.Set(x, scratch.Activations), tokens, balance: true);
    }

    private const int ParallelQuantizeTokens = 8;

    internal override void MatMulTiles(CpuScratch scratch, WorkerScratch worker, CpuWeight w, CpuBuffer x, int tokens,
        int tileBegin, int tileEnd, CpuBuffer y)
    {
        if (w.IsPacked)
        {
            LowBitMatMul.Run(Kernels, w.Packed, scratch.Activations, tileBegin, tileEnd, y.Pointer);
            return;
        }
        int rowEnd = Math.Min(w.Rows, tileEnd * PackedLayout.TileRows);
        FloatMatMul.Rows(w.Format, w.Rows, w.Cols, w.Tensor.Data, x.Data.AsSpan(0, tokens * w.Cols), tokens,
            tileBegin * PackedLayout.TileRows, rowEnd, worker.Row, y.Data.AsSpan(0, tokens * w.Rows));
    }

    // Int8 KV: work items are (token, KV head) pairs for a chunk, and (KV head, segment of positions) for a single
    // token, so decode splits over the threads however few KV heads there are. A global cache takes the whole chunk's
    // K/V first (each token still sees only positions up to its own); a ring cache is written and attended token by
    // token, since a later token's slot may be one an earlier token of the chunk still needs. An fp32 cache (an
    // accuracy option) takes the reference's attention.
    public override void Attention(BackendScratch scratch, BackendBuffer q, BackendBuffer k, BackendBuffer v,
        int tokens, int startPos, LayerAttention layer, BackendKvCache cacheHandle, BackendBuffer output)
    {
        var cache = (CpuKvCache)cacheHandle;
        var s = (CpuScratch)scratch;
        if (cache.Type == KvCacheType.F32)
        {
            ReferenceAttention.Run(s, (CpuBuffer)q, (CpuBuffer)k, (CpuBuffer)v, tokens, startPos, layer, cache,
                (CpuBuffer)output);
            return;
        }
        var job = s.Attention;
        job.Set(s, (CpuBuffer)q, (CpuBuffer)k, (CpuBuffer)v, startPos, layer, cache, Kernels, (CpuBuffer)output);
        var kData = Data(k);
        var vData = Data(v);
        int kvWidth = layer.KvHeads * layer.HeadDim;
        if (!cache.Ring)
        {
            for (int t = 0; t < tokens; t++) cache.Write(startPos + t, kData.AsSpan(t * kvWidth, kvWidth),
                vData.AsSpan(t * kvWidth, kvWidth));
            if (tokens == 1)
            {
                RunToken(job, 0);
                job.MergeSegments();
            }
            else Pool.Run(job, job.ForChunk(tokens), balance: true);
            return;
        }
        for (int t = 0; t < tokens; t++)
        {
            cache.Write(startPos + t, kData.AsSpan(t * kvWidth, kvWidth), vData.AsSpan(t * kvWidth, kvWidth));
            RunToken(job, t);
            job.MergeSegments();
        }
    }

    // One token's attention: on the caller alone while its K/V are a few KiB (as small matmuls are: handing half to
    // another thread took longer than the work, and 2 threads ran decode attention at context 16 slower than 1).
    private void RunToken(AttentionJob job, int token)
    {
        int items = job.ForToken(token);
        if (job.TokenKvBytes(token) < InlineBytes) job.Execute(0, items, 0);
        else Pool.Run(job, items);
    }

    private protected override void NormRow(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps,
        Span<float> y) => ActivationKernels.RmsNorm(x, weight, eps, y);

    public override void SwiGlu(BackendBuffer up, int count, BackendBuffer gate) =>
        ForValues(Data(up), Data(gate), count, SwiGluRange);

    private static void SwiGluRange(float[] up, float[] gate, int begin, int end) =>
        ActivationKernels.SwiGlu(up.AsSpan(begin, end - begin), gate.AsSpan(begin, end - begin));
}
