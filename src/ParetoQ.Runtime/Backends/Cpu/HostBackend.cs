using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Kernels;

namespace ParetoQ.Runtime.Backends.Cpu;

/// <summary>
/// What the two CPU backends (<see cref="CpuBackend"/>, the fast one, and <see cref="Reference.ReferenceBackend"/>, the
/// fp32 oracle) do the same way: weights read in place from the memory map, pinned host buffers and KV caches, one
/// worker pool, and the operations whose reference loop is also the fast one. Each backend supplies its matmul tiles,
/// attention and SwiGLU.
/// </summary>
public abstract class HostBackend : IComputeBackend
{
    /// <summary>The worker pool every parallel operation runs on.</summary>
    internal WorkerPool Pool { get; }

    /// <summary>Decode matmuls over fewer weight bytes than this, and decode attention over fewer K/V bytes, run on the
    /// calling thread alone.</summary>
    internal const long InlineBytes = 48 * 1024;

    public abstract string Name { get; }
    public int Threads => Pool.Threads;

    private protected HostBackend(int threads)
    {
        Pool = new WorkerPool(threads);
    }

    public virtual BackendWeight Upload(PqTensor tensor, int rows, int cols) => new CpuWeight(tensor, rows, cols);

    public BackendBuffer Allocate(int length) => new CpuBuffer(length);

    public BackendKvCache CreateKvCache(int capacity, int kvHeads, int headDim, KvCacheType type, bool ring) =>
        new CpuKvCache(capacity, kvHeads, headDim, type, ring);

    public BackendScratch CreateScratch(ScratchShape shape) => new CpuScratch(shape, Pool.Threads);

    public void Embed(BackendScratch scratch, BackendWeight table, ReadOnlySpan<int> tokens, BackendBuffer x)
    {
        var dst = Data(x);
        var codes = ((CpuScratch)scratch).Workers[0].Codes;
        int dim = table.Cols;
        for (int t = 0; t < tokens.Length; t++)
            ScalarKernels.DequantizeRow(table.Format, table.Rows, dim, table.Tensor.Data, tokens[t], codes,
                dst.AsSpan(t * dim, dim));
    }

    public void RmsNorm(BackendBuffer x, BackendWeight weight, int firstToken, int tokens, float eps, BackendBuffer y)
    {
        if (tokens >= ParallelTokens)
        {
            Pool.Run(ElementwiseJob.Norm(this, Data(x), weight, firstToken, eps, Data(y)), tokens, balance: true);
            return;
        }
        RmsNormRows(Data(x), weight, firstToken, eps, Data(y), 0, tokens);
    }

    private void RmsNormRows(float[] src, BackendWeight weight, int firstToken, float eps, float[] dst, int begin,
        int end)
    {
        int dim = weight.Cols;
        var w = weight.Tensor.AsFloats();
        for (int t = begin; t < end; t++)
            NormRow(src.AsSpan((firstToken + t) * dim, dim), w, eps, dst.AsSpan(t * dim, dim));
    }

    /// <summary>One row of RmsNorm: the scalar reference here, a vector sum on the fast backend.</summary>
    private protected virtual void NormRow(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps,
        Span<float> y) => ScalarKernels.RmsNorm(x, weight, eps, y);

    /// <summary>
    /// Norms over at least this many tokens, and SwiGLU and residual adds over at least this many blocks of
    /// <see cref="ElementwiseJob.Block"/> values (13 tokens of a 1280-wide model), run over the pool: on the caller
    /// alone they were a tenth of a 512-token prefill while the other threads waited.
    /// </summary>
    private protected const int ParallelTokens = 16;

    /// <summary>op(a, b) over values [0, count): over the pool in blocks from <see cref="ParallelTokens"/> blocks on,
    /// otherwise on the caller (decode).</summary>
    private protected void ForValues(float[] a, float[] b, int count, Action<float[], float[], int, int> op)
    {
        if (count >= ParallelTokens * ElementwiseJob.Block)
            Pool.Run(ElementwiseJob.Values(a, b, count, op), ElementwiseJob.Items(count), balance: true);
        else op(a, b, 0, count);
    }

    /// <summary>
    /// An elementwise operation of a prefill chunk over the pool. Items are token rows (a norm) or blocks of
    /// <see cref="Block"/> values (SwiGLU, add), whose boundaries fall on the 8-value vector groups of one serial call,
    /// so every value comes out as the serial call gives it. Built only for chunks of
    /// <see cref="ParallelTokens"/> tokens and more: decode allocates nothing.
    /// </summary>
    private protected sealed class ElementwiseJob : IParallelJob
    {
        public const int Block = 1024;
        private readonly Action<int, int> _run;

        private ElementwiseJob(Action<int, int> run) => _run = run;

        public static ElementwiseJob Norm(HostBackend backend, float[] src, BackendWeight weight, int firstToken,
            float eps, float[] dst) => new((begin, end) => backend.RmsNormRows(src, weight, firstToken, eps, dst,
            begin, end));

        /// <summary>op(a, b) over values [begin, end) of a count-long operation, Block values per item.</summary>
        public static ElementwiseJob Values(float[] a, float[] b, int count, Action<float[], float[], int, int> op)
            => new((begin, end) => op(a, b, begin * Block, Math.Min(count, end * Block)));

        /// <summary>Rotary encoding of q and k, token rows per item.</summary>
        public static ElementwiseJob Positions(float[] q, float[] k, int startPos, LayerAttention layer)
            => new((begin, end) => PositionEncodeRows(q, k, startPos, layer, begin, end));

        public static int Items(int count) => (count + Block - 1) / Block;

        public void Execute(int begin, int end, int worker) => _run(begin, end);
    }

    public void MatMul(BackendScratch scratch, BackendBuffer x, int tokens, params ReadOnlySpan<MatMulOutput> outputs)
    {
        if (outputs.IsEmpty) return;
        int cols = outputs[0].Weight.Cols;
        foreach (var o in outputs)
        {
            if (o.Weight.Cols != cols) throw new ArgumentException($"fused matmuls must share an input width: {o.Weight.Tensor.Name} has {o.Weight.Cols} columns, not {cols}", nameof(outputs));
            if ((long)tokens * o.Weight.Rows > o.Output.Length) throw new ArgumentException($"output of {o.Weight.Tensor.Name} holds {o.Output.Length} floats, fewer than {tokens}x{o.Weight.Rows}", nameof(outputs));
        }
        if ((long)tokens * cols > x.Length) throw new ArgumentException($"input holds {x.Length} floats, fewer than {tokens}x{cols}", nameof(x));
        var s = (CpuScratch)scratch;
        int tiles = s.MatMul.Prepare(this, s, (CpuBuffer)x, tokens, outputs);
        // A decode matmul of a few KiB takes less time than handing half of it to another thread (stories260K decoded
        // slower on 2 threads than on 1); it runs on the caller alone.
        if (tokens == 1 && s.MatMul.WeightBytes < InlineBytes) s.MatMul.Execute(0, tiles, 0);
        else Pool.Run(s.MatMul, tiles, balance: tokens > 1); // prefill is compute-bound; decode streams memory
    }

    /// <summary>Readies the matmul input x (tokens, cols) once per call, before the tiles run (the fast path quantizes
    /// it).</summary>
    internal abstract void PrepareMatMulInput(CpuScratch scratch, CpuBuffer x, int tokens, int cols,
        bool packedWeights);

    /// <summary>Rows of tiles [tileBegin, tileEnd) of y (tokens, w.Rows) = x · Wᵀ, on one worker thread.</summary>
    internal abstract void MatMulTiles(CpuScratch scratch, WorkerScratch worker, CpuWeight w, CpuBuffer x, int tokens,
        int tileBegin, int tileEnd, CpuBuffer y);

    public void PositionEncode(int tokens, int startPos, LayerAttention layer, BackendBuffer qBuf, BackendBuffer kBuf)
    {
        var (q, k) = (Data(qBuf), Data(kBuf));
        if (tokens >= ParallelTokens)
            Pool.Run(ElementwiseJob.Positions(q, k, startPos, layer), tokens, balance: true);
        else PositionEncodeRows(q, k, startPos, layer, 0, tokens);
    }

    // Tokens [begin, end) of a chunk that starts at startPos.
    private static void PositionEncodeRows(float[] q, float[] k, int startPos, LayerAttention layer, int begin, int end)
    {
        int hd = layer.HeadDim;
        int qWidth = layer.Heads * hd, kWidth = layer.KvHeads * hd;
        for (int t = begin; t < end; t++)
        {
            int pos = startPos + t;
            var qt = q.AsSpan(t * qWidth, qWidth);
            var kt = k.AsSpan(t * kWidth, kWidth);
            if (layer.UseRope)
            {
                var angles = RopeAngles.Of(layer.RopeInvFreq, pos);
                bool interleaved = layer.RopeLayout == Model.RopeLayout.Interleaved;
                for (int h = 0; h < layer.Heads; h++) ActivationKernels.Rope(angles.Cos, angles.Sin, interleaved,
                    qt.Slice(h * hd, hd));
                for (int h = 0; h < layer.KvHeads; h++) ActivationKernels.Rope(angles.Cos, angles.Sin, interleaved,
                    kt.Slice(h * hd, hd));
                if (layer.QkNorm)
                {
                    for (int h = 0; h < layer.Heads; h++) ScalarKernels.RmsNorm(qt.Slice(h * hd, hd), default,
                        layer.QkNormEps, qt.Slice(h * hd, hd));
                    for (int h = 0; h < layer.KvHeads; h++) ScalarKernels.RmsNorm(kt.Slice(h * hd, hd), default,
                        layer.QkNormEps, kt.Slice(h * hd, hd));
                }
            }
            else if (layer.TemperatureTuning is { } tune)
            {
                float s = tune.Factor(pos);
                foreach (ref float v in qt) v *= s;
            }
        }
    }

    /// <summary>
    /// cos and sin of one position's angles, kept per thread: every layer of a decode step encodes the same position
    /// with the same frequencies, and 64 MathF.Cos/Sin calls per layer were half of the encoding's time.
    /// </summary>
    private sealed class RopeAngles
    {
        [ThreadStatic] private static RopeAngles? t_last;
        private float[]? _invFreq;
        private int _pos = -1;
        public float[] Cos = [], Sin = [];

        public static RopeAngles Of(float[] invFreq, int pos)
        {
            var a = t_last ??= new RopeAngles();
            if (ReferenceEquals(a._invFreq, invFreq) && a._pos == pos) return a;
            if (a.Cos.Length != invFreq.Length) (a.Cos, a.Sin) = (new float[invFreq.Length], new float[invFreq.Length]);
            for (int i = 0; i < invFreq.Length; i++)
            {
                float angle = pos * invFreq[i];
                a.Cos[i] = MathF.Cos(angle);
                a.Sin[i] = MathF.Sin(angle);
            }
            (a._invFreq, a._pos) = (invFreq, pos);
            return a;
        }
    }

    public abstract void Attention(BackendScratch scratch, BackendBuffer q, BackendBuffer k, BackendBuffer v,
        int tokens, int startPos, LayerAttention layer, BackendKvCache cache, BackendBuffer output);

    public abstract void SwiGlu(BackendBuffer up, int count, BackendBuffer gate);

    public void Add(BackendBuffer y, int count, BackendBuffer x) => ForValues(Data(y), Data(x), count, AddRange);

    private static void AddRange(float[] y, float[] x, int begin, int end) =>
        ScalarKernels.Add(y.AsSpan(begin, end - begin), x.AsSpan(begin, end - begin));

    public void CopyToHost(BackendBuffer x, int offset, Span<float> destination) =>
        Data(x).AsSpan(offset, destination.Length).CopyTo(destination);

    public void CopyFromHost(ReadOnlySpan<float> source, int offset, BackendBuffer x) =>
        source.CopyTo(Data(x).AsSpan(offset, source.Length));

    public void Dispose() => Pool.Dispose();

    private protected static float[] Data(BackendBuffer b) => ((CpuBuffer)b).Data;
}
