using ILGPU;
using ILGPU.Runtime.CPU;
using ParetoQ.Accelerators;
using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Backends.Reference;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;
using ParetoQ.TestModels;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// Every ILGPU kernel against the CPU reference, on ILGPU's CPU accelerator: matmuls and embedding rows of every weight
/// format on shapes that are not multiples of the tiles, then norms, position encoding, int8/fp32 attention (global
/// and ring caches, chunked) and the elementwise ops through the backend interface, side by side with the CPU exact
/// mode.
/// </summary>
public sealed class AcceleratorKernelTests : IClassFixture<AcceleratorKernelTests.Matrices>
{
    internal static readonly WeightFormat[] AllFormats =
    [
        WeightFormat.Binary, WeightFormat.Ternary, WeightFormat.Q2Seq, WeightFormat.Q3Row, WeightFormat.Q4Row,
            WeightFormat.Q4G32,
        WeightFormat.I8Row, WeightFormat.F32, WeightFormat.F16, WeightFormat.BF16,
    ];

    // (rows, cols): tail rows of a 4-row tile, columns that pad to every block size, a row of one chunk or less.
    private static readonly (int Rows, int Cols)[] Shapes = [(13, 200), (6, 72), (3, 5), (9, 385)];

    /// <summary>One .pq file holding a random matrix of every format and shape.</summary>
    public sealed class Matrices : IDisposable
    {
        private readonly TempDir _dir = new();
        public PqFile File { get; }

        public Matrices()
        {
            var rng = new Random(5);
            var writer = new PqWriter(TestModelGenerator.MobileLlm().ToJson(),
                new PqProvenance("kernel test", "2", "test", new Dictionary<string, string>()));
            writer.SetTokenizer(ByteLevelVocabulary.Info(chatTokens: false), ByteLevelVocabulary.Ranks());
            foreach (var format in AllFormats)
                foreach (var (rows, cols) in Shapes)
                {
                    var w = TestModelGenerator.Gaussian(rng, rows * cols, 0.5f);
                    if (WeightFormats.IsFloat(format)) writer.AddFloatTensor(Name(format, rows, cols), format,
                        [rows, cols], w);
                    else writer.AddQuantizedTensor(Name(format, rows, cols),
                        Quantizer.QuantizeMatrix(format, w, rows, cols));
                }
            writer.Write(_dir.File("matrices.pq"));
            File = PqFile.Open(_dir.File("matrices.pq"));
        }

        public static string Name(WeightFormat f, int rows, int cols) => $"{WeightFormats.Name(f)}.{rows}x{cols}";

        public void Dispose()
        {
            File.Dispose();
            _dir.Dispose();
        }
    }

    private readonly Matrices _matrices;

    public AcceleratorKernelTests(Matrices matrices) => _matrices = matrices;

    public static TheoryData<WeightFormat> Formats() => new(AllFormats);

    [Theory]
    [MemberData(nameof(Formats))]
    public void Matmul_and_embedding_rows_match_the_scalar_reference(WeightFormat format)
    {
        using var backend = IlgpuDevices.CreateCpu();
        CheckMatMul(backend, _matrices.File, format);
    }

    [Theory]
    [InlineData(32, 32)] // NVIDIA's warp: eight lanes per row walk a row's chunks, which narrow test warps never do
    [InlineData(4, 32)]  // eight warps per group, as on an OpenCL device without sub-groups: reductions span warps
    public void Matmul_norm_and_attention_match_with_32_lanes_per_group(int warpSize, int lanes)
    {
        using var backend = IlgpuDevices.CreateCpu(warpSize, lanes);
        Assert.Equal(lanes, backend.LanesPerGroup);
        foreach (var format in new[] { WeightFormat.Q2Seq, WeightFormat.Q3Row, WeightFormat.Q4G32,
            WeightFormat.F16 }) CheckMatMul(backend, _matrices.File, format);
        CheckOps(backend, KvCacheType.Int8, local: true);
    }

    [Theory]
    [InlineData(24)] // not a power of two: the tree reductions halve the group
    [InlineData(2)]  // fewer lanes than the kernels' smallest reduction
    [InlineData(64)] // more than this device's groups hold (8 warps of 4)
    public void A_group_size_the_kernels_cannot_reduce_over_is_refused_by_name(int lanes)
    {
        var device = new CPUDevice(4, 8, 1);
        var context = Context.Create(builder => builder.CPU(device).EnableAlgorithms());
        var error = Assert.Throws<NotSupportedException>(() =>
        {
            using var backend = new IlgpuBackend(context, context.Devices.Single(), lanes);
        });
        Assert.Contains($"{lanes} lanes per group is not a power of two from 4 to 32", error.Message);
    }

    internal static void CheckMatMul(IlgpuBackend backend, PqFile matrices, WeightFormat format)
    {
        var rng = new Random(11);
        foreach (var (rows, cols) in Shapes)
        {
            var tensor = matrices[Matrices.Name(format, rows, cols)];
            var weight = backend.Upload(tensor, rows, cols);
            foreach (int tokens in new[] { 1, 3 })
            {
                var x = TestModelGenerator.Gaussian(rng, tokens * cols, 1f);
                var expected = new float[tokens * rows];
                ScalarKernels.MatMul(format, rows, cols, tensor.Data, x, tokens, expected);
                using var input = Upload(backend, x);
                using var output = backend.Allocate(tokens * rows);
                using var scratch = backend.CreateScratch(new ScratchShape(tokens, cols, 1, 1));
                backend.MatMul(scratch, input, tokens, new MatMulOutput(weight, output));
                AssertClose(expected, Download(backend, output, tokens * rows), 2e-5,
                    $"{WeightFormats.Name(format)} {rows}x{cols}, {tokens} tokens");
            }

            // Embedding rows, in an order with repeats: the same dequantization arithmetic as the CPU, so exactly
            // equal.
            int[] ids = [rows - 1, 0, rows / 2, rows - 1];
            using var embedded = backend.Allocate(ids.Length * cols);
            using (var scratch = backend.CreateScratch(new ScratchShape(ids.Length, cols, 1, 1))) backend.Embed(scratch,
                weight, ids, embedded);
            var rowsExpected = new float[ids.Length * cols];
            var codes = new byte[PackedLayout.MaxPaddedCols(cols)];
            for (int t = 0; t < ids.Length; t++) ScalarKernels.DequantizeRow(format, rows, cols, tensor.Data, ids[t],
                codes, rowsExpected.AsSpan(t * cols, cols));
            Assert.Equal(rowsExpected, Download(backend, embedded, ids.Length * cols));
        }
    }

    [Theory]
    [InlineData(KvCacheType.Int8, false)]
    [InlineData(KvCacheType.Int8, true)]
    [InlineData(KvCacheType.F32, false)]
    [InlineData(KvCacheType.F32, true)]
    public void Norm_position_encoding_attention_and_elementwise_ops_match_the_CPU_exact_mode(KvCacheType kvType,
        bool local)
    {
        using var gpu = IlgpuDevices.CreateCpu();
        CheckOps(gpu, kvType, local);
    }

    internal static void CheckOps(IlgpuBackend gpu, KvCacheType kvType, bool local)
    {
        var config = TestModelGenerator.MobileLlmPro(slidingWindow: 6);
        using var dir = new TempDir();
        var gen = TestModelGenerator.Write(dir.File("pro.pq"), config, WeightFormat.Q2Seq, WeightFormat.F32, seed: 3);
        using var file = PqFile.Open(gen.Path);
        using var cpu = new ReferenceBackend();
        var rng = new Random(23);

        int hd = config.HeadDim, heads = config.NumHeads, kvHeads = config.NumKvHeads, dim = config.HiddenSize;
        // Layer 1 is local RoPE with QK-norm; layer 0 is global NoPE with temperature tuning.
        int layerIndex = local ? 1 : 0;
        using var model = LanguageModel.Load(gen.Path, CpuBackendOptions.ExactMode);
        var layer = model.Attention[layerIndex];
        var norm = file[$"model.layers.{layerIndex}.input_layernorm.weight"];
        var gpuNorm = gpu.Upload(norm, 1, dim);
        var cpuNorm = cpu.Upload(norm, 1, dim);
        // The ring holds fewer slots than positions, so it wraps more than once over the chunks.
        int capacity = local ? layer.Window : 40;
        using var gpuCache = gpu.CreateKvCache(capacity, kvHeads, hd, kvType, ring: local);
        using var cpuCache = cpu.CreateKvCache(capacity, kvHeads, hd, kvType, ring: local);
        var shape = new ScratchShape(9, Math.Max(dim, heads * hd), capacity, heads);
        using BackendScratch gpuScratch = gpu.CreateScratch(shape), cpuScratch = cpu.CreateScratch(shape);

        int position = 0;
        foreach (int tokens in new[] { 5, 1, 7, 1, 1, 9 })
        {
            var x = TestModelGenerator.Gaussian(rng, (tokens + 1) * dim, 1f);
            var q = TestModelGenerator.Gaussian(rng, tokens * heads * hd, 1f);
            var k = TestModelGenerator.Gaussian(rng, tokens * kvHeads * hd, 1f);
            var v = TestModelGenerator.Gaussian(rng, tokens * kvHeads * hd, 1f);
            var results = new List<float[]>();
            foreach (var be in new IComputeBackend[] { cpu, gpu })
            {
                using BackendBuffer bx = Upload(be, x), bq = Upload(be, q), bk = Upload(be, k), bv = Upload(be, v);
                using BackendBuffer normed = be.Allocate(tokens * dim), attended = be.Allocate(tokens * heads * hd);
                be.RmsNorm(bx, be == gpu ? gpuNorm : cpuNorm, 1, tokens, config.RmsNormEps, normed);
                be.PositionEncode(tokens, position, layer, bq, bk);
                be.Attention(be == gpu ? gpuScratch : cpuScratch, bq, bk, bv, tokens, position, layer, be == gpu
                    ? gpuCache : cpuCache, attended);
                be.SwiGlu(bx, tokens * dim, bq);
                be.Add(bv, tokens * kvHeads * hd, bk);
                results.Add([.. Download(be, normed, tokens * dim), .. Download(be, bq, tokens * heads * hd),
                    .. Download(be, bk, tokens * kvHeads * hd), .. Download(be, attended, tokens * heads * hd)]);
            }
            AssertClose(results[0], results[1], 2e-5,
                $"{kvType} {(local ? "local" : "global")} chunk of {tokens} at {position}");
            position += tokens;
        }
    }

    [Fact]
    public void Host_copies_survive_the_garbage_collector_moving_the_arrays()
    {
        // A copy that captured an unpinned array's address would, after a compacting GC, read or write the array's old
        // place: the round trip would come back as stale memory. Another thread keeps compacting gen 0 meanwhile.
        using var backend = IlgpuDevices.CreateCpu();
        using var device = backend.Allocate(1024);
        bool stop = false;
        var collector = new Thread(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                GC.Collect(0, GCCollectionMode.Forced, blocking: true, compacting: true);
                Thread.Sleep(1); // lets the copies run between collections; without the pinning fix ~0.2% of them break
            }
        });
        collector.Start();
        int corrupted = 0;
        try
        {
            for (int round = 0; round < 3000; round++)
            {
                int length = 1 + round % 1024;
                var source = new float[length];
                for (int i = 0; i < length; i++) source[i] = round + i;
                backend.CopyFromHost(source, 0, device);
                var back = new float[length];
                backend.CopyToHost(device, 0, back);
                if (!back.AsSpan().SequenceEqual(source)) corrupted++;
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            collector.Join();
        }
        Assert.Equal(0, corrupted);
    }

    internal static BackendBuffer Upload(IComputeBackend backend, float[] values)
    {
        var buffer = backend.Allocate(values.Length);
        backend.CopyFromHost(values, 0, buffer);
        return buffer;
    }

    internal static float[] Download(IComputeBackend backend, BackendBuffer buffer, int count)
    {
        var host = new float[count];
        backend.CopyToHost(buffer, 0, host);
        return host;
    }

    internal static void AssertClose(float[] expected, float[] actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = Math.Max(1e-6, expected.Max(MathF.Abs));
        for (int i = 0; i < expected.Length; i++)
        {
            double error = Math.Abs(expected[i] - actual[i]) / scale;
            Assert.True(error <= tolerance,
                $"{what}: element {i}: {actual[i]} vs {expected[i]} (relative to max {scale:G4}: {error:E2})");
        }
    }
}
