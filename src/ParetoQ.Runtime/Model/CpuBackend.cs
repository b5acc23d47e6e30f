using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Model;

public sealed record CpuBackendOptions
{
    /// <summary>Exact mode: fp32 activations through the scalar reference kernels, for accuracy checks. Off: int8 activations through the SIMD kernels.</summary>
    public bool Exact { get; init; }
    /// <summary>Worker threads, the caller included; 0 means <see cref="WorkerPool.DefaultThreads"/>.</summary>
    public int Threads { get; init; }
    /// <summary>The kernel path; null means <see cref="KernelDispatch.Default"/> (the best one, or PARETOQ_KERNELS).</summary>
    public KernelPath? Kernels { get; init; }

    public static CpuBackendOptions ExactMode { get; } = new() { Exact = true, Threads = 1 };
}

/// <summary>
/// The CPU backend. Weights stay in the memory map and the kernels read them in place. Matmuls are split by row tiles over
/// a persistent <see cref="WorkerPool"/>; the fast mode quantizes each matmul input to int8 once per call.
/// </summary>
public sealed unsafe class CpuBackend : IComputeBackend
{
    [ThreadStatic] private static float[]? t_scores;
    [ThreadStatic] private static float[]? t_rope;
    // Per calling thread, so sessions on different threads never share a job (the pool runs a busy caller's job inline).
    [ThreadStatic] private static MatMulJob? t_matmul;
    [ThreadStatic] private static AttentionJob? t_attention;

    private readonly WorkerPool _pool;

    public bool Exact { get; }
    public KernelPath Kernels { get; }
    public int Threads => _pool.Threads;
    public string Name => Exact ? "cpu-exact" : $"cpu-{KernelDispatch.Name(Kernels)}";

    public CpuBackend(CpuBackendOptions? options = null)
    {
        options ??= new CpuBackendOptions();
        Exact = options.Exact;
        Kernels = options.Kernels ?? (Exact ? KernelPath.Scalar : KernelDispatch.Default);
        if (!KernelDispatch.IsSupported(Kernels))
            throw new NotSupportedException($"kernel path '{KernelDispatch.Name(Kernels)}' is not supported by this CPU");
        if (options.Threads < 0) throw new ArgumentOutOfRangeException(nameof(options), options.Threads, "thread count must be positive (0 = default)");
        _pool = new WorkerPool(options.Threads == 0 ? WorkerPool.DefaultThreads : options.Threads);
    }

    public BackendWeight Upload(PqTensor tensor, int rows, int cols)
    {
        var w = new CpuWeight(tensor, rows, cols);
        if (!Exact && w.IsPacked) LowBitMatMul.CheckShape(w.Packed.Layout);
        return w;
    }

    public BackendBuffer Allocate(int length) => new CpuBuffer(length);

    public BackendKvCache CreateKvCache(int capacity, int kvHeads, int headDim, KvCacheType type, bool ring) =>
        new CpuKvCache(capacity, kvHeads, headDim, type, ring);

    public void Embed(BackendWeight table, ReadOnlySpan<int> tokens, BackendBuffer x)
    {
        var dst = Data(x);
        int dim = table.Cols;
        for (int t = 0; t < tokens.Length; t++)
            ScalarKernels.DequantizeRow(table.Format, table.Rows, dim, table.Tensor.Data, tokens[t], dst.AsSpan(t * dim, dim));
    }

    public void RmsNorm(BackendBuffer x, int firstToken, int tokens, BackendWeight weight, float eps, BackendBuffer y)
    {
        var src = Data(x);
        var dst = Data(y);
        int dim = weight.Cols;
        var w = weight.Tensor.AsFloats();
        for (int t = 0; t < tokens; t++)
            ScalarKernels.RmsNorm(src.AsSpan((firstToken + t) * dim, dim), w, dst.AsSpan(t * dim, dim), eps);
    }

    public void MatMul(BackendBuffer x, int tokens, params ReadOnlySpan<MatMulOutput> outputs)
    {
        if (outputs.IsEmpty) return;
        int cols = outputs[0].Weight.Cols;
        foreach (var o in outputs)
        {
            if (o.Weight.Cols != cols) throw new ArgumentException($"fused matmuls must share an input width: {o.Weight.Tensor.Name} has {o.Weight.Cols} columns, not {cols}", nameof(outputs));
            if ((long)tokens * o.Weight.Rows > o.Output.Length) throw new ArgumentException($"output of {o.Weight.Tensor.Name} holds {o.Output.Length} floats, fewer than {tokens}x{o.Weight.Rows}", nameof(outputs));
        }
        if ((long)tokens * cols > x.Length) throw new ArgumentException($"input holds {x.Length} floats, fewer than {tokens}x{cols}", nameof(x));
        var job = t_matmul ??= new MatMulJob();
        int tiles = job.Prepare(this, (CpuBuffer)x, tokens, outputs);
        _pool.Run(job, tiles);
    }

    public void PositionEncode(BackendBuffer qBuf, BackendBuffer kBuf, int tokens, int startPos, LayerAttention layer)
    {
        var q = Data(qBuf);
        var k = Data(kBuf);
        int hd = layer.HeadDim, half = hd / 2;
        int qWidth = layer.Heads * hd, kWidth = layer.KvHeads * hd;
        if (t_rope is null || t_rope.Length < hd) t_rope = new float[hd];
        var cos = t_rope.AsSpan(0, half);
        var sin = t_rope.AsSpan(half, half);
        for (int t = 0; t < tokens; t++)
        {
            int pos = startPos + t;
            var qt = q.AsSpan(t * qWidth, qWidth);
            var kt = k.AsSpan(t * kWidth, kWidth);
            if (layer.UseRope)
            {
                for (int i = 0; i < half; i++)
                {
                    float angle = pos * layer.RopeInvFreq[i];
                    cos[i] = MathF.Cos(angle);
                    sin[i] = MathF.Sin(angle);
                }
                bool interleaved = layer.RopeLayout == RopeLayout.Interleaved;
                for (int h = 0; h < layer.Heads; h++) ScalarKernels.Rope(qt.Slice(h * hd, hd), cos, sin, interleaved);
                for (int h = 0; h < layer.KvHeads; h++) ScalarKernels.Rope(kt.Slice(h * hd, hd), cos, sin, interleaved);
                if (layer.QkNorm)
                {
                    for (int h = 0; h < layer.Heads; h++) ScalarKernels.RmsNorm(qt.Slice(h * hd, hd), default, qt.Slice(h * hd, hd), layer.QkNormEps);
                    for (int h = 0; h < layer.KvHeads; h++) ScalarKernels.RmsNorm(kt.Slice(h * hd, hd), default, kt.Slice(h * hd, hd), layer.QkNormEps);
                }
            }
            else if (layer.TemperatureTuning is { } tune)
            {
                float s = tune.Factor(pos);
                foreach (ref float v in qt) v *= s;
            }
        }
    }

    public void Attention(BackendKvCache cacheHandle, BackendBuffer qBuf, BackendBuffer kBuf, BackendBuffer vBuf, BackendBuffer output, int tokens, int startPos, LayerAttention layer)
    {
        var cache = (CpuKvCache)cacheHandle;
        if (!Exact && cache.Type == KvCacheType.Int8)
        {
            FastAttention(cache, (CpuBuffer)qBuf, (CpuBuffer)kBuf, (CpuBuffer)vBuf, (CpuBuffer)output, tokens, startPos, layer);
            return;
        }
        var q = Data(qBuf);
        var k = Data(kBuf);
        var v = Data(vBuf);
        var o = Data(output);
        int hd = layer.HeadDim, qWidth = layer.Heads * hd, kvWidth = layer.KvHeads * hd;
        int group = layer.Heads / layer.KvHeads;
        float scale = 1f / MathF.Sqrt(hd);
        if (t_scores is null || t_scores.Length < cache.Capacity) t_scores = new float[cache.Capacity];

        for (int t = 0; t < tokens; t++)
        {
            int pos = startPos + t;
            var kt = k.AsSpan(t * kvWidth, kvWidth);
            var vt = v.AsSpan(t * kvWidth, kvWidth);
            cache.Write(pos, kt, vt);
            int first = layer.Kind == AttentionKind.Local ? Math.Max(0, pos - layer.Window + 1) : 0;
            var scores = t_scores.AsSpan(0, pos - first + 1);
            for (int h = 0; h < layer.Heads; h++)
            {
                int g = h / group;
                var qh = q.AsSpan(t * qWidth + h * hd, hd);
                var kOwn = kt.Slice(g * hd, hd);
                for (int j = first; j < pos; j++) scores[j - first] = cache.DotKey(j, g, qh) * scale;
                scores[pos - first] = ScalarKernels.Dot(qh, kOwn) * scale;
                ScalarKernels.Softmax(scores);

                var oh = o.AsSpan(t * qWidth + h * hd, hd);
                oh.Clear();
                for (int j = first; j < pos; j++) cache.AccumulateValue(j, g, scores[j - first], oh);
                var vOwn = vt.Slice(g * hd, hd);
                float p = scores[pos - first];
                for (int i = 0; i < hd; i++) oh[i] += p * vOwn[i];
            }
        }
    }

    // Int8 KV: work items are (token, KV head) pairs. A global cache takes the whole chunk's K/V first (each token still
    // sees only positions up to its own); a ring cache is written token by token, since a later token's slot may be one
    // an earlier token of the chunk still needs.
    private void FastAttention(CpuKvCache cache, CpuBuffer q, CpuBuffer k, CpuBuffer v, CpuBuffer o, int tokens, int startPos, LayerAttention layer)
    {
        var job = t_attention ??= new AttentionJob();
        job.Set(cache, q, k, v, o, startPos, layer, Kernels);
        int kvWidth = layer.KvHeads * layer.HeadDim;
        if (!cache.Ring)
        {
            for (int t = 0; t < tokens; t++) cache.Write(startPos + t, k.Data.AsSpan(t * kvWidth, kvWidth), v.Data.AsSpan(t * kvWidth, kvWidth));
            job.Token = -1;
            _pool.Run(job, tokens * layer.KvHeads);
            return;
        }
        for (int t = 0; t < tokens; t++)
        {
            cache.Write(startPos + t, k.Data.AsSpan(t * kvWidth, kvWidth), v.Data.AsSpan(t * kvWidth, kvWidth));
            job.Token = t;
            _pool.Run(job, layer.KvHeads);
        }
    }

    /// <summary>
    /// Attention of the query heads sharing one KV head, for one token, over the int8 cache, four heads at a time: q is
    /// quantized to int8 per head so q·k is an integer dot product; a first pass gives every cached position's score, the
    /// softmax is taken with vector exp, and a second pass accumulates the int8 values weighted by it.
    /// </summary>
    private sealed class AttentionJob : IParallelJob
    {
        private const int H = AttentionKernels.Heads;
        // Per worker thread: scores and weights of one head block over the cache, (positions, 4).
        [ThreadStatic] private static float[]? t_weights;
        [ThreadStatic] private static int[]? t_dots;

        private CpuKvCache _cache = null!;
        private CpuBuffer _q = null!, _k = null!, _v = null!, _o = null!;
        private int _startPos;
        private LayerAttention _layer = null!;
        private KernelPath _path;
        /// <summary>The token when items are KV heads of one token; −1 when items are (token, KV head) pairs.</summary>
        public int Token;

        public void Set(CpuKvCache cache, CpuBuffer q, CpuBuffer k, CpuBuffer v, CpuBuffer o, int startPos, LayerAttention layer, KernelPath path)
        {
            (_cache, _q, _k, _v, _o, _startPos, _layer, _path) = (cache, q, k, v, o, startPos, layer, path);
        }

        public void Execute(int begin, int end)
        {
            int kvHeads = _layer.KvHeads;
            if (t_weights is null || t_weights.Length < _cache.Capacity * H)
            {
                t_weights = GC.AllocateArray<float>(_cache.Capacity * H, pinned: true);
                t_dots = GC.AllocateArray<int>(_cache.Capacity * H, pinned: true);
            }
            fixed (float* weights = t_weights)
            fixed (int* dots = t_dots)
                for (int item = begin; item < end; item++)
                {
                    if (Token >= 0) HeadGroup(Token, item, weights, dots);
                    else HeadGroup(item / kvHeads, item % kvHeads, weights, dots);
                }
        }

        private void HeadGroup(int t, int g, float* weights, int* dots)
        {
            var layer = _layer;
            var cache = _cache;
            int hd = layer.HeadDim, group = layer.Heads / layer.KvHeads, kvHeads = layer.KvHeads;
            int qWidth = layer.Heads * hd, kvWidth = kvHeads * hd;
            int pos = _startPos + t;
            int first = layer.Kind == AttentionKind.Local ? Math.Max(0, pos - layer.Window + 1) : 0;
            int count = pos - first;
            long stride = (long)kvHeads * hd;
            float invSqrt = 1f / MathF.Sqrt(hd);
            float* kOwn = _k.Pointer + t * kvWidth + g * hd;
            float* vOwn = _v.Pointer + t * kvWidth + g * hd;
            float[] kScale = cache.KeyScales, vScale = cache.ValueScales;
            sbyte[] kZero = cache.KeyZeros, vZero = cache.ValueZeros;
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
                    float* qh = _q.Pointer + t * qWidth + (g * group + h0 + h) * hd;
                    qScale = qScale.WithElement(h, QuantizedActivations.QuantizeRow(new ReadOnlySpan<float>(qh, hd), new Span<sbyte>(q8 + h * hd, hd)) * invSqrt);
                    int sum = 0;
                    for (int i = 0; i < hd; i++) sum += q8[h * hd + i];
                    qSum = qSum.WithElement(h, sum);
                    // The token's own K/V are used at full precision.
                    own = own.WithElement(h, ScalarKernels.Dot(new ReadOnlySpan<float>(qh, hd), new ReadOnlySpan<float>(kOwn, hd)) * invSqrt);
                }

                // Pass 1: scores of the cached positions (runs of contiguous slots; a ring wraps at most once).
                for (int j = first, run; j < pos; j += run)
                {
                    run = cache.ContiguousRun(j, pos);
                    AttentionKernels.DotInt8x4(_path, q8, cache.Keys + (long)cache.Row(j, g) * hd, stride, run, hd, dots + (j - first) * H);
                }
                var max = own;
                for (int j = 0; j < count; j++)
                {
                    int row = cache.Row(first + j, g);
                    var dot = Vector128.ConvertToSingle(Vector128.Load(dots + j * H)) - kZero[row] * qSum;
                    var score = dot * qScale * kScale[row];
                    score.Store(weights + j * H);
                    max = Vector128.Max(max, score);
                }

                // Softmax numerators; the weights fold in each value row's scale, and its zero point goes in zeroTerm.
                Vector128<float> denom = Vector128.Exp(own - max), pOwn = denom, zeroTerm = default;
                for (int j = 0; j < count; j++)
                {
                    int row = cache.Row(first + j, g);
                    var p = Vector128.Exp(Vector128.Load(weights + j * H) - max);
                    denom += p;
                    var w = p * vScale[row];
                    zeroTerm += w * vZero[row];
                    w.Store(weights + j * H);
                }

                // Pass 2: Σ weight · int8 value.
                new Span<float>(acc, H * hd).Clear();
                for (int j = first, run; j < pos; j += run)
                {
                    run = cache.ContiguousRun(j, pos);
                    AttentionKernels.AccumulateInt8x4(_path, acc, cache.Values + (long)cache.Row(j, g) * hd, stride, run, hd, weights + (j - first) * H);
                }
                for (int h = 0; h < heads; h++)
                {
                    float* oh = _o.Pointer + t * qWidth + (g * group + h0 + h) * hd;
                    float zero = zeroTerm[h], po = pOwn[h], inv = 1f / denom[h];
                    for (int i = 0; i < hd; i++) oh[i] = (acc[h * hd + i] - zero + po * vOwn[i]) * inv;
                }
            }
        }
    }

    public void SwiGlu(BackendBuffer gate, BackendBuffer up, int count)
    {
        if (Exact) ScalarKernels.SwiGlu(Data(gate).AsSpan(0, count), Data(up).AsSpan(0, count));
        else ActivationKernels.SwiGlu(Data(gate).AsSpan(0, count), Data(up).AsSpan(0, count));
    }

    public void Add(BackendBuffer x, BackendBuffer y, int count) =>
        ScalarKernels.Add(Data(x).AsSpan(0, count), Data(y).AsSpan(0, count));

    public void CopyToHost(BackendBuffer x, int offset, Span<float> destination) =>
        Data(x).AsSpan(offset, destination.Length).CopyTo(destination);

    public void CopyFromHost(ReadOnlySpan<float> source, BackendBuffer x, int offset) =>
        source.CopyTo(Data(x).AsSpan(offset, source.Length));

    public void Dispose() => _pool.Dispose();

    private static float[] Data(BackendBuffer b) => ((CpuBuffer)b).Data;

    private sealed class CpuWeight : BackendWeight
    {
        public readonly PackedMatrix Packed;   // valid when IsPacked
        public readonly bool IsPacked;

        public CpuWeight(PqTensor tensor, int rows, int cols) : base(tensor, rows, cols)
        {
            IsPacked = WeightFormats.IsPacked(tensor.Format);
            if (IsPacked) Packed = new PackedMatrix(new PackedLayout(tensor.Format, rows, cols), tensor.Pointer);
        }

        /// <summary>Units of parallel work: tiles of 4 rows, for packed and float formats alike.</summary>
        public int Tiles => (Rows + PackedLayout.TileRows - 1) / PackedLayout.TileRows;
    }

    private sealed class CpuBuffer(int length) : BackendBuffer(length)
    {
        // Pinned, so kernels can hold raw pointers to it.
        public readonly float[] Data = GC.AllocateArray<float>(length, pinned: true);
        public float* Pointer => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(Data));
    }

    // One fused matmul call: the outputs' tiles are numbered one after another and the pool splits that range.
    private sealed class MatMulJob : IParallelJob
    {
        private const int MaxOutputs = 4;
        private readonly CpuWeight[] _weights = new CpuWeight[MaxOutputs];
        private readonly CpuBuffer[] _outputs = new CpuBuffer[MaxOutputs];
        private readonly int[] _firstTile = new int[MaxOutputs + 1];
        private readonly QuantizedActivations _activations = new();
        private CpuBackend _backend = null!;
        private CpuBuffer _x = null!;
        private int _count, _tokens;

        public int Prepare(CpuBackend backend, CpuBuffer x, int tokens, ReadOnlySpan<MatMulOutput> outputs)
        {
            if (outputs.Length > MaxOutputs) throw new ArgumentException($"at most {MaxOutputs} fused matmuls", nameof(outputs));
            _backend = backend;
            _x = x;
            _tokens = tokens;
            _count = outputs.Length;
            bool quantize = false;
            for (int i = 0; i < outputs.Length; i++)
            {
                _weights[i] = (CpuWeight)outputs[i].Weight;
                _outputs[i] = (CpuBuffer)outputs[i].Output;
                _firstTile[i + 1] = _firstTile[i] + _weights[i].Tiles;
                quantize |= _weights[i].IsPacked;
            }
            if (quantize && !backend.Exact) _activations.Quantize(x.Data.AsSpan(0, tokens * _weights[0].Cols), tokens, _weights[0].Cols);
            return _firstTile[_count];
        }

        public void Execute(int begin, int end)
        {
            for (int i = 0; i < _count; i++)
            {
                int lo = Math.Max(begin, _firstTile[i]) - _firstTile[i], hi = Math.Min(end, _firstTile[i + 1]) - _firstTile[i];
                if (lo >= hi) continue;
                var w = _weights[i];
                if (w.IsPacked && !_backend.Exact)
                {
                    LowBitMatMul.Run(_backend.Kernels, w.Packed, _activations, _outputs[i].Pointer, lo, hi);
                    continue;
                }
                int rowEnd = Math.Min(w.Rows, hi * PackedLayout.TileRows);
                var x = _x.Data.AsSpan(0, _tokens * w.Cols);
                var y = _outputs[i].Data.AsSpan(0, _tokens * w.Rows);
                if (_backend.Exact) ScalarKernels.MatMulRows(w.Format, w.Rows, w.Cols, w.Tensor.Data, x, y, _tokens, lo * PackedLayout.TileRows, rowEnd);
                else FloatMatMul.Rows(w.Format, w.Rows, w.Cols, w.Tensor.Data, x, y, _tokens, lo * PackedLayout.TileRows, rowEnd);
            }
        }
    }
}

/// <summary>
/// KV cache in host memory: (capacity, kvHeads, headDim) keys and values, int8 with a scale and zero point per
/// (position, head), or fp32. Position p lives in slot p for global layers and p mod capacity for ring (local) layers.
/// </summary>
public sealed class CpuKvCache : BackendKvCache
{
    private readonly sbyte[] _k8 = [], _v8 = [];
    private readonly float[] _kScale = [], _vScale = [];
    private readonly sbyte[] _kZero = [], _vZero = [];
    private readonly float[] _k32 = [], _v32 = [];

    public CpuKvCache(int capacity, int kvHeads, int headDim, KvCacheType type, bool ring) : base(capacity, kvHeads, headDim, type, ring)
    {
        long n = (long)capacity * kvHeads * headDim;
        if (type == KvCacheType.Int8)
        {
            _k8 = GC.AllocateArray<sbyte>(checked((int)n), pinned: true);
            _v8 = GC.AllocateArray<sbyte>(checked((int)n), pinned: true);
            _kScale = new float[capacity * kvHeads];
            _vScale = new float[capacity * kvHeads];
            _kZero = new sbyte[capacity * kvHeads];
            _vZero = new sbyte[capacity * kvHeads];
        }
        else
        {
            _k32 = new float[n];
            _v32 = new float[n];
        }
    }

    public override long Bytes => Type == KvCacheType.Int8
        ? 2L * (_k8.Length + _kScale.Length * sizeof(float) + _kZero.Length)
        : 2L * _k32.Length * sizeof(float);

    private int Slot(int pos) => Ring ? pos % Capacity : pos;

    /// <summary>How many of positions [pos, end) sit in consecutive slots from pos's slot on (a ring wraps at most once per window).</summary>
    internal int ContiguousRun(int pos, int end) => Math.Min(end - pos, Capacity - Slot(pos));

    /// <summary>Index of (position, head) among the cached vectors: its int8 data starts at index · HeadDim.</summary>
    internal int Row(int pos, int head) => Slot(pos) * KvHeads + head;
    internal unsafe sbyte* Keys => (sbyte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_k8));
    internal unsafe sbyte* Values => (sbyte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_v8));
    internal float[] KeyScales => _kScale;
    internal sbyte[] KeyZeros => _kZero;
    internal float[] ValueScales => _vScale;
    internal sbyte[] ValueZeros => _vZero;

    /// <summary>Stores k, v (kvHeads·hd) of one position.</summary>
    public void Write(int pos, ReadOnlySpan<float> k, ReadOnlySpan<float> v)
    {
        if (!Ring && pos >= Capacity) throw new InvalidOperationException($"position {pos} is past the KV cache capacity {Capacity}");
        int slot = Slot(pos), hd = HeadDim;
        for (int h = 0; h < KvHeads; h++)
        {
            int row = slot * KvHeads + h;
            if (Type == KvCacheType.Int8)
            {
                (_kScale[row], _kZero[row]) = KvQuantizer.Quantize(k.Slice(h * hd, hd), _k8.AsSpan(row * hd, hd));
                (_vScale[row], _vZero[row]) = KvQuantizer.Quantize(v.Slice(h * hd, hd), _v8.AsSpan(row * hd, hd));
            }
            else
            {
                k.Slice(h * hd, hd).CopyTo(_k32.AsSpan(row * hd, hd));
                v.Slice(h * hd, hd).CopyTo(_v32.AsSpan(row * hd, hd));
            }
        }
    }

    /// <summary>q · k[pos, head].</summary>
    public float DotKey(int pos, int head, ReadOnlySpan<float> q)
    {
        int row = Slot(pos) * KvHeads + head, hd = HeadDim;
        if (Type == KvCacheType.F32) return ScalarKernels.Dot(q, _k32.AsSpan(row * hd, hd));
        var k8 = _k8.AsSpan(row * hd, hd);
        float scale = _kScale[row];
        sbyte zero = _kZero[row];
        float sum = 0;
        for (int i = 0; i < hd; i++) sum += q[i] * KvQuantizer.Dequantize(k8[i], scale, zero);
        return sum;
    }

    /// <summary>acc += p · v[pos, head].</summary>
    public void AccumulateValue(int pos, int head, float p, Span<float> acc)
    {
        int row = Slot(pos) * KvHeads + head, hd = HeadDim;
        if (Type == KvCacheType.F32)
        {
            var v = _v32.AsSpan(row * hd, hd);
            for (int i = 0; i < hd; i++) acc[i] += p * v[i];
            return;
        }
        var v8 = _v8.AsSpan(row * hd, hd);
        float scale = _vScale[row];
        sbyte zero = _vZero[row];
        for (int i = 0; i < hd; i++) acc[i] += p * KvQuantizer.Dequantize(v8[i], scale, zero);
    }
}
