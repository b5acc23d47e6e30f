using System.Numerics;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Accelerators;

/// <summary>
/// The compute backend on an ILGPU accelerator (CUDA, OpenCL, or ILGPU's CPU simulator for tests). Weights are uploaded
/// once in the .pq file's own layout; activations, KV caches and the position tables stay on the device. Per forward
/// step only the token ids go in (<see cref="Embed"/>) and only the requested logits come out
/// (<see cref="CopyToHost"/>). Activations stay fp32 (no int8 activation quantization), so results track the CPU's
/// exact mode.
/// </summary>
public sealed class IlgpuBackend : IComputeBackend
{
    private readonly Context _context;
    private readonly Accelerator _accelerator;
    private readonly int _lanes;
    private readonly List<IDisposable> _owned = [];
    private readonly Dictionary<object, PositionTable> _positionTables = new(ReferenceEqualityComparer.Instance);

    private readonly Action<KernelConfig, ArrayView<int>, DeviceMatrix, ArrayView<float>,
        ArrayView<float>> _packedMatMul, _floatMatMul;
    private readonly Action<Index2D, ArrayView<int>, DeviceMatrix, ArrayView<int>, ArrayView<float>> _embed;
    private readonly Action<KernelConfig, ArrayView<float>, int, int, ArrayView<int>, float, ArrayView<float>> _rmsNorm;
    private readonly Action<Index2D, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        PositionShape> _positionEncode;
    private readonly Action<Index2D, ArrayView<float>, ArrayView<float>, ArrayView<sbyte>, ArrayView<float>,
        ArrayView<sbyte>, ArrayView<float>, AttentionShape> _kvWrite;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<sbyte>, ArrayView<float>, ArrayView<sbyte>, ArrayView<float>, ArrayView<float>,
        AttentionShape> _attention;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _swiGlu, _add;
    private readonly Action<Index1D, ArrayView<int>, ArrayView<int>> _readWords;

    public string Name { get; }
    public AcceleratorType AcceleratorType => _accelerator.AcceleratorType;
    /// <summary>Lanes per group of the matmul, norm and attention kernels.</summary>
    public int LanesPerGroup => _lanes;
    /// <summary>Device memory held by uploaded weights.</summary>
    public long WeightBytes { get; private set; }

    /// <summary>Takes ownership of <paramref name="context"/> and creates an accelerator on <paramref name="device"/>;
    /// the kernels are compiled here. Groups have <paramref name="lanesPerGroup"/> lanes, by default the device's
    /// warp.</summary>
    public IlgpuBackend(Context context, Device device, int lanesPerGroup = 0)
    {
        _context = context;
        try
        {
            _accelerator = device.CreateAccelerator(context);
            _lanes = lanesPerGroup > 0 ? lanesPerGroup : DefaultLanes(_accelerator);
            int most = Math.Min(DeviceKernels.MaxLanes, _accelerator.MaxNumThreadsPerGroup);
            if (_lanes < 4 || _lanes > most || !BitOperations.IsPow2(_lanes))
                throw new NotSupportedException($"{device.Name}: {_lanes} lanes per group is not a power of two from 4 to {most}");
            Name = $"ilgpu-{_accelerator.AcceleratorType.ToString().ToLowerInvariant()} ({device.Name})";
            _packedMatMul = _accelerator.LoadStreamKernel<ArrayView<int>, DeviceMatrix, ArrayView<float>,
                ArrayView<float>>(DeviceKernels.PackedMatMul);
            _floatMatMul = _accelerator.LoadStreamKernel<ArrayView<int>, DeviceMatrix, ArrayView<float>,
                ArrayView<float>>(DeviceKernels.FloatMatMul);
            _embed = _accelerator.LoadAutoGroupedStreamKernel<Index2D, ArrayView<int>, DeviceMatrix, ArrayView<int>,
                ArrayView<float>>(DeviceKernels.Embed);
            _rmsNorm = _accelerator.LoadStreamKernel<ArrayView<float>, int, int, ArrayView<int>, float,
                ArrayView<float>>(DeviceKernels.RmsNorm);
            _positionEncode = _accelerator.LoadAutoGroupedStreamKernel<Index2D, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, PositionShape>(DeviceKernels.PositionEncode);
            _kvWrite = _accelerator.LoadAutoGroupedStreamKernel<Index2D, ArrayView<float>, ArrayView<float>,
                ArrayView<sbyte>, ArrayView<float>, ArrayView<sbyte>, ArrayView<float>,
                AttentionShape>(DeviceKernels.KvWrite);
            _attention = _accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<sbyte>, ArrayView<float>, ArrayView<sbyte>, ArrayView<float>,
                ArrayView<float>, AttentionShape>(DeviceKernels.Attention);
            _swiGlu = _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>,
                ArrayView<float>>(DeviceKernels.SwiGlu);
            _add = _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>,
                ArrayView<float>>(DeviceKernels.Add);
            _readWords = _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>,
                ArrayView<int>>(DeviceKernels.ReadWords);
        }
        catch
        {
            _accelerator?.Dispose();
            context.Dispose();
            throw;
        }
    }

    // One warp per group where the warp is a usable size. An OpenCL device without sub-groups reports the preferred
    // work-group multiple as its warp, which may be 1 or not a power of two; 32 lanes then.
    private static int DefaultLanes(Accelerator accelerator)
    {
        int warp = accelerator.WarpSize;
        int lanes = warp >= 4 && warp <= DeviceKernels.MaxLanes && BitOperations.IsPow2(warp) ? warp : 32;
        return Math.Min(lanes, 1 << BitOperations.Log2((uint)accelerator.MaxNumThreadsPerGroup));
    }

    public BackendWeight Upload(PqTensor tensor, int rows, int cols)
    {
        var format = tensor.Format;
        var m = new DeviceMatrix { Format = (int)format, Rows = rows, Cols = cols };
        long bytes;
        if (WeightFormats.IsFloat(format))
        {
            bytes = (long)rows * cols * FloatCodec.ElementBytes(format);
        }
        else
        {
            var layout = new PackedLayout(format, rows, cols);
            bytes = layout.TotalBytes;
            m.CodeBits = layout.CodeBits;
            m.ChunksPerRow = layout.ChunksPerRow;
            m.GroupsPerRow = layout.GroupsPerRow;
            m.ScaleWord = checked((int)(layout.CodeBytes / 4));
            m.ClampScale = WeightFormats.IsParetoQ(format) ? 1 : 0;
            var affine = WeightFormats.Affine(format);
            // value = scale · (C1 · code + C0), as the CPU kernels' multiplier · (A · code − B)
            (m.C1, m.C0) = affine.Line;
            (m.A, m.B, m.Divisor) = (affine.A, affine.B, affine.Divisor);
        }
        var data = tensor.Data;
        if (data.Length != bytes) throw new ArgumentException($"{tensor.Name} holds {data.Length} bytes; a [{rows}, {cols}] {WeightFormats.Name(format)} matrix needs {bytes}");
        if (bytes / 4 >= int.MaxValue) throw new NotSupportedException($"{tensor.Name}: {bytes} bytes is more than one device buffer of this backend holds (8 GiB)");
        var words = Own(_accelerator.Allocate1D<int>((bytes + 3) / 4));
        ReadOnlySpan<int> source;
        if (bytes % 4 == 0) source = MemoryMarshal.Cast<byte, int>(data);
        else
        {
            var padded = new int[(bytes + 3) / 4];
            data.CopyTo(MemoryMarshal.AsBytes(padded.AsSpan()));
            source = padded;
        }
        words.View.AsContiguous().CopyFromCPU(source);
        WeightBytes += words.LengthInBytes;
        return new DeviceWeight(tensor, rows, cols, words, m);
    }

    public BackendBuffer Allocate(int length)
        => new DeviceBuffer(_accelerator.Allocate1D<float>(Math.Max(1, length)), length);

    public BackendKvCache CreateKvCache(int capacity, int kvHeads, int headDim, KvCacheType type, bool ring) =>
        new DeviceKvCache(_accelerator, capacity, kvHeads, headDim, type, ring);

    public BackendScratch CreateScratch(ScratchShape shape) => new DeviceScratch(_accelerator, shape);

    public void Embed(BackendScratch scratch, BackendWeight table, ReadOnlySpan<int> tokens, BackendBuffer x)
    {
        var w = (DeviceWeight)table;
        var s = (DeviceScratch)scratch;
        CheckLength(x, (long)tokens.Length * w.Cols, "embedding output");
        if (tokens.Length > s.Tokens.Length) throw new ArgumentException($"{tokens.Length} tokens are more than the {s.Tokens.Length} the scratch holds");
        s.Tokens.View.AsContiguous().SubView(0, tokens.Length).CopyFromCPU(tokens);
        _embed(new Index2D(w.Cols, tokens.Length), w.Words.View, w.Matrix, s.Tokens.View, View(x));
    }

    public void RmsNorm(BackendBuffer x, BackendWeight weight, int firstToken, int tokens, float eps, BackendBuffer y)
    {
        var w = (DeviceWeight)weight;
        if (w.Format != WeightFormat.F32) throw new ArgumentException($"{w.Tensor.Name} is {WeightFormats.Name(w.Format)}; norm weights must be f32");
        int dim = w.Cols;
        CheckLength(x, (long)(firstToken + tokens) * dim, "norm input");
        CheckLength(y, (long)tokens * dim, "norm output");
        _rmsNorm(new KernelConfig(tokens, _lanes), View(x), firstToken, dim, w.Words.View, eps, View(y));
    }

    public void MatMul(BackendScratch scratch, BackendBuffer x, int tokens, params ReadOnlySpan<MatMulOutput> outputs)
    {
        foreach (var o in outputs)
        {
            var w = (DeviceWeight)o.Weight;
            CheckLength(x, (long)tokens * w.Cols, $"input of {w.Tensor.Name}");
            CheckLength(o.Output, (long)tokens * w.Rows, $"output of {w.Tensor.Name}");
            if (w.Matrix.CodeBits == 0)
                _floatMatMul(new KernelConfig(new Index2D(w.Rows, tokens), new Index2D(_lanes, 1)), w.Words.View,
                    w.Matrix, View(x), View(o.Output));
            else
                _packedMatMul(new KernelConfig(new Index2D((w.Rows + 3) / 4, tokens), new Index2D(_lanes, 1)),
                    w.Words.View, w.Matrix, View(x), View(o.Output));
        }
    }

    public void PositionEncode(int tokens, int startPos, LayerAttention layer, BackendBuffer q, BackendBuffer k)
    {
        var shape = new PositionShape
        {
            Heads = layer.Heads, KvHeads = layer.KvHeads, HeadDim = layer.HeadDim, StartPos = startPos,
            Rope = layer.UseRope ? 1 : 0, Interleaved = layer.RopeLayout == RopeLayout.Interleaved ? 1 : 0,
            QkNorm = layer.QkNorm ? 1 : 0, QkNormEps = layer.QkNormEps, Temperature = layer.TemperatureTuning is null
                ? 0 : 1,
        };
        if (!layer.UseRope && layer.TemperatureTuning is null) return;
        var table = PositionTableFor(layer, startPos + tokens);
        _positionEncode(new Index2D(layer.Heads + layer.KvHeads, tokens), View(q), View(k), table.View, shape);
    }

    public void Attention(BackendScratch scratch, BackendBuffer q, BackendBuffer k, BackendBuffer v, int tokens,
        int startPos, LayerAttention layer, BackendKvCache cacheHandle, BackendBuffer output)
    {
        var cache = (DeviceKvCache)cacheHandle;
        if (!cache.Ring
            && startPos + tokens > cache.Capacity) throw new InvalidOperationException($"positions up to {startPos + tokens - 1} are past the KV cache capacity {cache.Capacity}");
        var shape = new AttentionShape
        {
            Heads = layer.Heads, KvHeads = layer.KvHeads, HeadDim = layer.HeadDim, Capacity = cache.Capacity,
                Ring = cache.Ring ? 1 : 0,
            Window = layer.Window, StartPos = startPos, Int8 = cache.Type == KvCacheType.Int8 ? 1 : 0,
            Scale = 1f / MathF.Sqrt(layer.HeadDim), ValueOffset = cache.ValueOffset,
                ValueRowOffset = cache.ValueRowOffset,
        };
        // A global cache takes the chunk's K/V at once (each token still sees only positions up to its own); in a ring
        // a later token's slot may hold a position an earlier token still needs, so ring caches go token by token.
        int perLaunch = cache.Ring ? 1 : tokens;
        var scores = ((DeviceScratch)scratch).Scores.View;
        if (scores.Length < (long)layer.Heads * perLaunch * cache.Capacity)
            throw new ArgumentException($"the scratch holds {scores.Length} scores, fewer than {layer.Heads}x{perLaunch}x{cache.Capacity}");
        for (int t = 0; t < tokens; t += perLaunch)
        {
            shape.FirstToken = t;
            _kvWrite(new Index2D(layer.KvHeads, perLaunch), View(k), View(v), cache.Codes.View, cache.Scales.View,
                cache.Zeros.View, cache.Full.View, shape);
            _attention(new KernelConfig(new Index2D(layer.Heads, perLaunch), new Index2D(_lanes, 1)), View(q), View(k),
                View(v), View(output), cache.Codes.View, cache.Scales.View, cache.Zeros.View, cache.Full.View, scores,
                    shape);
        }
    }

    public void SwiGlu(BackendBuffer up, int count, BackendBuffer gate)
    {
        if (count == 0) return;
        _swiGlu(count, View(gate).SubView(0, count), View(up).SubView(0, count));
    }

    public void Add(BackendBuffer y, int count, BackendBuffer x)
    {
        if (count == 0) return;
        _add(count, View(x).SubView(0, count), View(y).SubView(0, count));
    }

    // Host copies go through ILGPU's span overloads, which pin: its ref-taking overloads expect an already pinned
    // buffer, and a GC between taking the address and copying would write through a stale pointer into the managed
    // heap.
    public void CopyToHost(BackendBuffer x, int offset, Span<float> destination)
    {
        CheckLength(x, (long)offset + destination.Length, "copy source");
        if (destination.IsEmpty) return;
        View(x).SubView(offset, destination.Length).CopyToCPU(destination);
    }

    public void CopyFromHost(ReadOnlySpan<float> source, int offset, BackendBuffer x)
    {
        CheckLength(x, (long)offset + source.Length, "copy destination");
        if (source.IsEmpty) return;
        View(x).SubView(offset, source.Length).CopyFromCPU(source);
    }

    /// <summary>Device-memory read bandwidth in GB/s: the best of several passes over a buffer of
    /// <paramref name="bytes"/> (the decode roofline).</summary>
    public double MeasureReadBandwidth(long bytes)
    {
        using var data = _accelerator.Allocate1D<int>(bytes / 4);
        data.MemSetToZero();
        using var sink = _accelerator.Allocate1D<int>(Math.Max(1024, _accelerator.MaxNumThreads * 4L));
        double best = double.MaxValue;
        for (int pass = 0; pass < 6; pass++)
        {
            _accelerator.Synchronize();
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            _readWords((int)sink.Length, data.View, sink.View);
            _accelerator.Synchronize();
            // pass 0 compiles and warms up
            if (pass > 0) best = Math.Min(best, System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        return data.LengthInBytes / best / 1e9;
    }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        foreach (var t in _positionTables.Values) t.Memory.Dispose();
        _accelerator.Dispose();
        _context.Dispose();
    }

    private T Own<T>(T disposable) where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    private static ArrayView<float> View(BackendBuffer b) => ((DeviceBuffer)b).Memory.View;

    private static void CheckLength(BackendBuffer b, long needed, string what)
    {
        if (needed > b.Length) throw new ArgumentException($"{what} holds {b.Length} floats, fewer than the {needed} needed");
    }

    // RoPE layers: cos and sin of position · inverse frequency, (positions, hd) as (cos hd/2, sin hd/2), computed on
    // the host exactly as the CPU backend does. NoPE layers with temperature tuning: the per-position factor. Grown by
    // doubling.
    private sealed record PositionTable(MemoryBuffer1D<float, Stride1D.Dense> Memory, int Positions)
    {
        public ArrayView<float> View => Memory.View;
    }

    private PositionTable PositionTableFor(LayerAttention layer, int positions)
    {
        object key = layer.UseRope ? layer.RopeInvFreq : layer.TemperatureTuning!;
        if (_positionTables.TryGetValue(key, out var table) && table.Positions >= positions) return table;
        int count = Math.Max(positions, Math.Max(256, (table?.Positions ?? 0) * 2));
        float[] host;
        if (layer.UseRope)
        {
            int hd = layer.HeadDim, half = hd / 2;
            host = new float[(long)count * hd];
            for (int pos = 0; pos < count; pos++)
                for (int i = 0; i < half; i++)
                {
                    float angle = pos * layer.RopeInvFreq[i];
                    host[(long)pos * hd + i] = MathF.Cos(angle);
                    host[(long)pos * hd + half + i] = MathF.Sin(angle);
                }
        }
        else
        {
            host = new float[count];
            for (int pos = 0; pos < count; pos++) host[pos] = layer.TemperatureTuning!.Factor(pos);
        }
        table?.Memory.Dispose();
        var memory = _accelerator.Allocate1D(host);
        return _positionTables[key] = new PositionTable(memory, count);
    }

    private sealed class DeviceWeight(PqTensor tensor, int rows, int cols, MemoryBuffer1D<int, Stride1D.Dense> words,
        DeviceMatrix matrix)
        : BackendWeight(tensor, rows, cols)
    {
        public MemoryBuffer1D<int, Stride1D.Dense> Words { get; } = words;
        public DeviceMatrix Matrix { get; } = matrix;
    }

    // One session's device scratch: its step's token ids, and the attention scores of every head of a step's tokens
    // over the largest cache.
    private sealed class DeviceScratch(Accelerator accelerator, ScratchShape shape) : BackendScratch(shape)
    {
        // (tokens)
        public MemoryBuffer1D<int, Stride1D.Dense> Tokens { get; } = accelerator.Allocate1D<int>(shape.Tokens);
        // (heads, tokens, KV positions)
        public MemoryBuffer1D<float, Stride1D.Dense> Scores { get; } =
            accelerator.Allocate1D<float>((long)shape.Heads * shape.Tokens * shape.KvPositions);

        public override void Dispose()
        {
            Tokens.Dispose();
            Scores.Dispose();
        }
    }

    private sealed class DeviceBuffer(MemoryBuffer1D<float, Stride1D.Dense> memory, int length) : BackendBuffer(length)
    {
        public MemoryBuffer1D<float, Stride1D.Dense> Memory { get; } = memory;
        public override void Dispose() => Memory.Dispose();
    }

    // Keys then values in each array: int8 codes with a scale and zero point per (slot, head), or fp32. The arrays of
    // the unused type hold one element (kernels take both).
    private sealed class DeviceKvCache : BackendKvCache
    {
        public MemoryBuffer1D<sbyte, Stride1D.Dense> Codes { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> Scales { get; }
        public MemoryBuffer1D<sbyte, Stride1D.Dense> Zeros { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> Full { get; }
        public long ValueOffset { get; }
        public int ValueRowOffset { get; }

        public DeviceKvCache(Accelerator accelerator, int capacity, int kvHeads, int headDim, KvCacheType type,
            bool ring)
            : base(capacity, kvHeads, headDim, type, ring)
        {
            long elements = (long)capacity * kvHeads * headDim;
            int rows = checked(capacity * kvHeads);
            bool int8 = type == KvCacheType.Int8;
            ValueOffset = elements;
            ValueRowOffset = rows;
            Codes = accelerator.Allocate1D<sbyte>(int8 ? 2 * elements : 1);
            Scales = accelerator.Allocate1D<float>(int8 ? 2 * rows : 1);
            Zeros = accelerator.Allocate1D<sbyte>(int8 ? 2 * rows : 1);
            Full = accelerator.Allocate1D<float>(int8 ? 1 : 2 * elements);
        }

        public override long Bytes
            => Codes.LengthInBytes + Scales.LengthInBytes + Zeros.LengthInBytes + Full.LengthInBytes;

        public override void Dispose()
        {
            Codes.Dispose();
            Scales.Dispose();
            Zeros.Dispose();
            Full.Dispose();
        }
    }
}
