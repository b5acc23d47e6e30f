using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Kernels;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.TestModels;
using Xunit.Abstractions;

namespace ParetoQ.Runtime.Tests;

public sealed class ModelForwardTests(ITestOutputHelper output)
{
    // Longer than the Pro test model's sliding window (8) several times over, so the ring buffer wraps.
    internal static readonly int[] Prompt = Enumerable.Range(0, 29).Select(i => (i * 37 + 11) % 250).ToArray();

    public static TheoryData<string, WeightFormat, WeightFormat> Variants()
    {
        var data = new TheoryData<string, WeightFormat, WeightFormat>();
        foreach (var f in new[] { WeightFormat.Binary, WeightFormat.Ternary, WeightFormat.Q2Seq, WeightFormat.Q3Row,
            WeightFormat.Q4Row, WeightFormat.Q4G32, WeightFormat.I8Row, WeightFormat.F32 })
        {
            data.Add("mobilellm", f, WeightFormat.F32);
            data.Add("mobilellm-pro", f, WeightFormat.F32);
        }
        data.Add("mobilellm", WeightFormat.Q2Seq, WeightFormat.I8Row);
        data.Add("mobilellm-pro", WeightFormat.Ternary, WeightFormat.BF16);
        data.Add("mobilellm-pro", WeightFormat.Q4G32, WeightFormat.Q4G32);
        data.Add("mobilellm-untied", WeightFormat.Q2Seq, WeightFormat.F16);
        data.Add("mobilellm-layer-share", WeightFormat.Binary, WeightFormat.F32);
        return data;
    }

    internal static ModelConfig ConfigFor(string variant) => variant switch
    {
        "mobilellm" => TestModelGenerator.MobileLlm(),
        "mobilellm-untied" => TestModelGenerator.MobileLlm(tieEmbeddings: false),
        "mobilellm-layer-share" => TestModelGenerator.MobileLlm(layerRepeat: 2),
        "mobilellm-pro" => TestModelGenerator.MobileLlmPro(),
        _ => throw new ArgumentException(variant),
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public void Exact_mode_logits_match_the_dense_reference(string variant, WeightFormat projections,
        WeightFormat embedding)
    {
        using var dir = new TempDir();
        var gen = TestModelGenerator.Write(dir.File("m.pq"), ConfigFor(variant), projections, embedding, seed: 7);
        var expected = ReferenceTransformer.Forward(gen.Config, gen.DenseWeights, Prompt);

        using var model = LanguageModel.Load(gen.Path, CpuBackendOptions.ExactMode);
        // MaxBatch 5 feeds the prompt in uneven chunks, so chunked prefill is covered by the same comparison.
        using var session = new Session(model,
            new SessionOptions { AllLogits = true, KvCache = KvCacheType.F32, MaxBatch = 5 });
        int vocab = gen.Config.VocabSize;
        var logits = new float[Prompt.Length * vocab];
        session.Forward(Prompt, logits);

        double err = RelativeError(logits, expected);
        output.WriteLine($"{variant} {WeightFormats.Name(projections)}/{WeightFormats.Name(embedding)}: max |Δ| / max |ref| = {err:E2}");
        Assert.True(err < 1e-4, $"relative error {err:E2} exceeds 1e-4");
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void Fast_kernels_stay_within_tolerance_of_exact_mode(string variant, WeightFormat projections,
        WeightFormat embedding)
    {
        using var dir = new TempDir();
        var gen = TestModelGenerator.Write(dir.File("m.pq"), ConfigFor(variant), projections, embedding, seed: 7);
        int vocab = gen.Config.VocabSize;
        var exact = new float[Prompt.Length * vocab];
        var fast = new float[Prompt.Length * vocab];
        using (var model = LanguageModel.Load(gen.Path, CpuBackendOptions.ExactMode))
        using (var s = new Session(model,
            new SessionOptions { AllLogits = true, KvCache = KvCacheType.F32, MaxBatch = 5 }))
            s.Forward(Prompt, exact);
        using (var model = LanguageModel.Load(gen.Path, new CpuBackendOptions { Threads = 2 }))
        using (var s = new Session(model,
            new SessionOptions { AllLogits = true, KvCache = KvCacheType.F32, MaxBatch = 5 }))
        {
            Assert.IsType<CpuBackend>(model.Backend);
            s.Forward(Prompt, fast);
        }
        double err = MaxAbsDiff(fast, exact) / MaxAbs(exact);
        output.WriteLine($"{variant} {WeightFormats.Name(projections)}/{WeightFormats.Name(embedding)}: fast vs exact relative error {err:E2}");
        // int8 activations cost about 1/254 of each input's range per matmul; 29 tokens through 3–5 layers stay well
        // under 5%.
        Assert.True(err < 5e-2, $"fast kernels differ from exact mode by {err:E2} (relative)");
        if (WeightFormats.IsPacked(projections)) Assert.True(err > 0,
            "fast mode gave exact-mode logits: the integer kernels are not in use");
    }

    [Theory]
    [InlineData("mobilellm", WeightFormat.Q2Seq)]
    [InlineData("mobilellm-pro", WeightFormat.Ternary)]
    [InlineData("mobilellm-pro", WeightFormat.Q4G32)]
    public void Decode_after_prefill_equals_full_recompute(string variant, WeightFormat projections)
    {
        using var dir = new TempDir();
        var gen = TestModelGenerator.Write(dir.File("m.pq"), ConfigFor(variant), projections, WeightFormat.F32,
            seed: 3);
        using var model = LanguageModel.Load(gen.Path);
        foreach (var kv in new[] { KvCacheType.F32, KvCacheType.Int8 })
        {
            using var incremental = new Session(model, new SessionOptions { KvCache = kv });
            incremental.Forward(Prompt.AsSpan(0, 12));
            float[] last = [];
            for (int i = 12; i < Prompt.Length; i++) last = incremental.Forward(Prompt.AsSpan(i, 1)).ToArray();

            using var full = new Session(model, new SessionOptions { KvCache = kv, MaxBatch = Prompt.Length });
            var recomputed = full.Forward(Prompt).ToArray();
            double err = MaxAbsDiff(last, recomputed) / MaxAbs(recomputed);
            output.WriteLine($"{variant} {kv}: decode vs recompute relative error {err:E2}");
            Assert.True(err < 1e-5, $"{kv}: decode after prefill differs from full recompute by {err:E2}");
            Assert.Equal(Prompt.Length, incremental.Position);
        }
    }

    [Theory]
    [InlineData("mobilellm")]
    [InlineData("mobilellm-pro")]
    public void Int8_kv_cache_changes_logits_by_a_small_bounded_amount(string variant)
    {
        using var dir = new TempDir();
        var gen = TestModelGenerator.Write(dir.File("m.pq"), ConfigFor(variant), WeightFormat.Q2Seq, WeightFormat.F32,
            seed: 11);
        using var model = LanguageModel.Load(gen.Path);
        int vocab = gen.Config.VocabSize;
        var exact = new float[Prompt.Length * vocab];
        var int8 = new float[Prompt.Length * vocab];
        using (var s = new Session(model,
            new SessionOptions { AllLogits = true, KvCache = KvCacheType.F32 })) s.Forward(Prompt, exact);
        using (var s = new Session(model,
            new SessionOptions { AllLogits = true, KvCache = KvCacheType.Int8 })) s.Forward(Prompt, int8);
        double err = MaxAbsDiff(int8, exact) / MaxAbs(exact);
        output.WriteLine($"{variant}: int8 KV relative logit change {err:E2}");
        Assert.True(err > 0, "int8 KV cache gave bit-identical logits: it is not being used");
        Assert.True(err < 2e-2, $"int8 KV cache changed logits by {err:E2} (relative), more than 2e-2");
    }

    [Fact]
    public void A_prompt_longer_than_one_batch_gives_the_last_tokens_logits()
    {
        using var dir = new TempDir();
        var gen = TestModelGenerator.Write(dir.File("m.pq"), TestModelGenerator.MobileLlmPro(), WeightFormat.Q2Seq,
            WeightFormat.F32, seed: 4);
        using var model = LanguageModel.Load(gen.Path, CpuBackendOptions.ExactMode);
        using var chunked = new Session(model,
            new SessionOptions { AllLogits = true, KvCache = KvCacheType.F32, MaxBatch = 4 });
        var last = chunked.Forward(Prompt).ToArray();
        var expected = ReferenceTransformer.Forward(gen.Config, gen.DenseWeights, Prompt);
        var expectedLast = new double[1, gen.Config.VocabSize];
        for (int i = 0; i < gen.Config.VocabSize; i++) expectedLast[0, i] = expected[Prompt.Length - 1, i];
        Assert.True(RelativeError(last, expectedLast) < 1e-4);
    }

    [Fact]
    public void Local_layers_keep_only_a_window_sized_ring_buffer()
    {
        using var dir = new TempDir();
        var gen = TestModelGenerator.Write(dir.File("m.pq"), TestModelGenerator.MobileLlmPro(slidingWindow: 8),
            WeightFormat.Q2Seq, WeightFormat.F32, seed: 1);
        using var model = LanguageModel.Load(gen.Path);
        using var s = new Session(model, new SessionOptions { ContextLength = 64, KvCache = KvCacheType.F32 });
        // 2 global layers × 64 positions + 3 local layers × 8 positions, K and V, 1 head of 16 floats.
        Assert.Equal((2 * 64 + 3 * 8) * 2 * 16 * 4L, s.KvCacheBytes);
    }

    // Longer than Int8Attention.SegmentPositions, so a decode step splits each KV head's positions into segments and
    // merges them; the Pro config's local window is longer too, so its ring buffers wrap and split.
    private const int LongPrefill = Int8Attention.SegmentPositions + 80;
    private static readonly int[] LongPrompt =
        Enumerable.Range(0, LongPrefill + 20).Select(i => (i * 37 + 11) % 250).ToArray();

    private static ModelConfig LongContextConfig(string variant) => variant == "mobilellm-pro"
        ? TestModelGenerator.MobileLlmPro(slidingWindow: LongPrefill - 40, maxPositions: 2 * LongPrefill)
        : TestModelGenerator.MobileLlm(maxPositions: 2 * LongPrefill);

    [Theory]
    [InlineData("mobilellm")]
    [InlineData("mobilellm-pro")]
    public void Long_context_decode_is_thread_count_independent_and_equals_full_recompute(string variant)
    {
        using var dir = new TempDir();
        var gen = TestModelGenerator.Write(dir.File("m.pq"), LongContextConfig(variant), WeightFormat.Q2Seq,
            WeightFormat.F32, seed: 9);
        const int prefill = LongPrefill;
        var decoded = new List<float[]>();
        var prefilled = new List<float[]>();
        foreach (int threads in new[] { 1, 2 })
        {
            using var model = LanguageModel.Load(gen.Path, new CpuBackendOptions { Threads = threads });
            using var s = new Session(model, new SessionOptions { KvCache = KvCacheType.Int8, MaxBatch = 256 });
            // Chunks of 256 tokens: the prefill's quantization, norms, SwiGLU and adds run over the pool too.
            prefilled.Add(s.Forward(LongPrompt.AsSpan(0, prefill)).ToArray());
            float[] last = [];
            for (int i = prefill; i < LongPrompt.Length; i++) last = s.Forward(LongPrompt.AsSpan(i, 1)).ToArray();
            decoded.Add(last);
        }
        Assert.Equal(prefilled[0], prefilled[1]);
        Assert.Equal(decoded[0], decoded[1]);

        using var fullModel = LanguageModel.Load(gen.Path);
        using var full = new Session(fullModel, new SessionOptions { KvCache = KvCacheType.Int8, MaxBatch = 64 });
        var recomputed = full.Forward(LongPrompt).ToArray();
        double err = MaxAbsDiff(decoded[0], recomputed) / MaxAbs(recomputed);
        using var f32 = new Session(fullModel, new SessionOptions { KvCache = KvCacheType.F32, MaxBatch = 64 });
        double int8Err = MaxAbsDiff(decoded[0], f32.Forward(LongPrompt).ToArray()) / MaxAbs(recomputed);
        output.WriteLine($"{variant}: segmented decode vs chunked recompute {err:E2}, vs fp32 KV {int8Err:E2}");
        Assert.True(err < 1e-5, $"segmented decode differs from the chunked recompute by {err:E2}");
        Assert.True(int8Err < 2e-2, $"int8 KV decode differs from fp32 KV by {int8Err:E2}");
    }

    [Theory]
    [InlineData(10)]
    [InlineData(LongPrefill)] // the global layers' decode attention splits into segments
    public void Decode_steps_allocate_nothing(int prefill)
    {
        using var dir = new TempDir();
        var config = TestModelGenerator.MobileLlmPro(maxPositions: 2 * LongPrefill);
        var gen = TestModelGenerator.Write(dir.File("m.pq"), config, WeightFormat.Q2Seq, WeightFormat.I8Row, seed: 5);
        using var model = LanguageModel.Load(gen.Path, new CpuBackendOptions { Threads = 2 });
        var pool = ((HostBackend)model.Backend).Pool;
        Assert.Equal(2, pool.Threads);
        using var s = new Session(model);
        s.Forward(LongPrompt.AsSpan(0, prefill));
        s.Forward(LongPrompt.AsSpan(prefill, 1)); // warm-up
        // Counted on every thread that runs the decode: the caller and each pool worker.
        var probe = new AllocationProbe();
        long[] before = new long[pool.Threads], after = new long[pool.Threads];
        probe.Read(pool, before);
        for (int i = prefill + 1; i < prefill + 20; i++) s.Forward(LongPrompt.AsSpan(i, 1));
        probe.Read(pool, after);
        for (int t = 0; t < pool.Threads; t++) Assert.True(after[t] == before[t],
            $"thread {t} of the pool allocated {after[t] - before[t]} bytes");
    }

    /// <summary>Reads each pool thread's allocated-bytes counter on that thread (item t runs on worker t); allocates
    /// nothing.</summary>
    private sealed class AllocationProbe : IParallelJob
    {
        private long[] _into = [];

        public void Read(WorkerPool pool, long[] into)
        {
            _into = into;
            pool.Run(this, into.Length);
        }

        public void Execute(int begin, int end, int worker) => _into[worker] = GC.GetAllocatedBytesForCurrentThread();
    }

    [Fact]
    public void Input_errors_are_clear()
    {
        using var dir = new TempDir();
        var gen = TestModelGenerator.Write(dir.File("m.pq"), TestModelGenerator.MobileLlm(), WeightFormat.Q2Seq,
            WeightFormat.F32, seed: 2);
        using var model = LanguageModel.Load(gen.Path);
        using var s = new Session(model, new SessionOptions { ContextLength = 16 });
        var oov = Assert.Throws<ArgumentOutOfRangeException>(() => s.Forward([1, 301]));
        Assert.Contains("token id 301", oov.Message);
        Assert.Throws<ArgumentException>(() => s.Forward(ReadOnlySpan<int>.Empty));
        var over = Assert.Throws<ContextLengthExceededException>(() => s.Forward(new int[17]));
        Assert.Contains("context length 16", over.Message);
        Assert.Equal(0, s.Position);
        Assert.Contains("context length 100000 is outside", Assert.Throws<ArgumentException>(()
            => new Session(model, new SessionOptions { ContextLength = 100_000 })).Message);
    }

    internal static double RelativeError(float[] actual, double[,] expected)
    {
        double maxDiff = 0, maxRef = 0;
        int n = expected.GetLength(0), v = expected.GetLength(1);
        for (int t = 0; t < n; t++)
            for (int i = 0; i < v; i++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(actual[t * v + i] - expected[t, i]));
                maxRef = Math.Max(maxRef, Math.Abs(expected[t, i]));
            }
        return maxDiff / maxRef;
    }

    private static double MaxAbsDiff(float[] a, float[] b) => a.Zip(b, (x, y) => (double)Math.Abs(x - y)).Max();

    private static double MaxAbs(float[] a) => a.Max(x => (double)Math.Abs(x));
}
