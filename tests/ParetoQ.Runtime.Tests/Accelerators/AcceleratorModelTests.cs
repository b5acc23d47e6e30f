using ParetoQ.Accelerators;
using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Backends.Reference;
using ParetoQ.Runtime.Generation;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;
using ParetoQ.TestModels;
using Xunit.Abstractions;

namespace ParetoQ.Runtime.Tests;

/// <summary>Whole generated models on the ILGPU backend (its CPU accelerator) against the CPU exact mode.</summary>
public sealed class AcceleratorModelTests(ITestOutputHelper output)
{
    private static readonly int[] Prompt = ModelForwardTests.Prompt; // wraps the Pro model's ring caches several times

    public static TheoryData<string, WeightFormat, WeightFormat, KvCacheType> Models() => new()
    {
        { "mobilellm", WeightFormat.Q2Seq, WeightFormat.I8Row, KvCacheType.Int8 },
        { "mobilellm-pro", WeightFormat.Ternary, WeightFormat.BF16, KvCacheType.Int8 },
        { "mobilellm-pro", WeightFormat.Q4G32, WeightFormat.Q4G32, KvCacheType.F32 },
        { "mobilellm-untied", WeightFormat.Q3Row, WeightFormat.F16, KvCacheType.Int8 },
        { "mobilellm-layer-share", WeightFormat.Binary, WeightFormat.F32, KvCacheType.F32 },
    };

    [Theory]
    [MemberData(nameof(Models))]
    public void Logits_and_greedy_tokens_match_the_CPU(string variant, WeightFormat projections, WeightFormat embedding,
        KvCacheType kv) => CheckModel(() => IlgpuDevices.CreateCpu(), variant, projections, embedding, kv, 1e-4,
            output);

    /// <summary>Logits of the prompt within <paramref name="tolerance"/> (relative to the largest) of the CPU exact
    /// mode, and the same greedy tokens.</summary>
    internal static void CheckModel(Func<IlgpuBackend> open, string variant, WeightFormat projections,
        WeightFormat embedding, KvCacheType kv, double tolerance, ITestOutputHelper output)
    {
        using var dir = new TempDir();
        var gen = TestModelGenerator.Write(dir.File("m.pq"), ModelForwardTests.ConfigFor(variant), projections,
            embedding, seed: 7);
        int vocab = gen.Config.VocabSize;
        // MaxBatch 5: the prompt goes in uneven chunks, so chunked prefill over the ring caches is compared too.
        var options = new SessionOptions { KvCache = kv, MaxBatch = 5, AllLogits = true };
        // Greedy with a strong repetition penalty: random models otherwise settle on one token, which proves little.
        var greedy = new GenerationOptions { MaxTokens = 12,
            Sampler = SamplerOptions.Greedy with { RepeatPenalty = 3 } };
        var logits = new List<float[]>();
        var tokens = new List<IReadOnlyList<int>>();
        foreach (var backend in new IComputeBackend[] { new ReferenceBackend(), open() })
        {
            using var model = LanguageModel.Load(gen.Path, backend);
            var tokenizer = Tokenizers.FromFile(model.File, vocab);
            using (var session = new Session(model, options))
            {
                var all = new float[Prompt.Length * vocab];
                session.Forward(Prompt, all);
                logits.Add(all);
            }
            using (var session = new Session(model, options))
                tokens.Add(new Generator(session, tokenizer).Generate(Prompt, greedy).Tokens);
            backend.Dispose();
        }
        double scale = logits[0].Max(MathF.Abs),
            error = logits[0].Zip(logits[1], (a, b) => Math.Abs(a - b)).Max() / scale;
        output.WriteLine($"{variant} {WeightFormats.Name(projections)}/{WeightFormats.Name(embedding)} {kv}: ILGPU vs CPU exact relative error {error:E2}; tokens {string.Join(' ', tokens[1])}");
        Assert.True(error < tolerance,
            $"ILGPU logits differ from the CPU exact mode by {error:E2} (relative), more than {tolerance:E0}");
        Assert.Equal(12, tokens[0].Count);
        Assert.True(tokens[0].Distinct().Count() >= 6,
            $"greedy decoding repeated itself: {string.Join(' ', tokens[0])}");
        Assert.Equal(tokens[0], tokens[1]);
    }

    [Fact]
    public void Devices_are_chosen_by_name_and_a_missing_one_is_named()
    {
        using (var backend = ComputeDevice.Create("ilgpu-cpu", new CpuBackendOptions(), IlgpuDevices.TryCreate))
            Assert.StartsWith("ilgpu-cpu", backend.Name);
        using (var backend = ComputeDevice.Create("cpu", new CpuBackendOptions(), IlgpuDevices.TryCreate))
            Assert.IsType<CpuBackend>(backend);
        // No GPU on the test machines: auto falls back to the CPU backend, and an explicit cuda says none was found.
        using (var backend = ComputeDevice.Create("auto", new CpuBackendOptions(), IlgpuDevices.TryCreate))
            Assert.True(backend is CpuBackend || backend.Name.StartsWith("ilgpu-cuda")
                || backend.Name.StartsWith("ilgpu-opencl"), backend.Name);
        if (IlgpuDevices.TryCreate("cuda") is { } cuda) cuda.Dispose();
        else Assert.Contains("found no such device",
            Assert.Throws<NotSupportedException>(()
            => ComputeDevice.Create("cuda", new CpuBackendOptions(), IlgpuDevices.TryCreate)).Message);
        Assert.Contains("NativeAOT",
            Assert.Throws<NotSupportedException>(()
            => ComputeDevice.Create("cuda", new CpuBackendOptions(), null)).Message);
        Assert.Contains("choose one of",
            Assert.Throws<ArgumentException>(() => ComputeDevice.Create("tpu", new CpuBackendOptions(), null)).Message);
        Assert.Contains("--exact",
            Assert.Throws<ArgumentException>(()
            => ComputeDevice.Create("ilgpu-cpu", CpuBackendOptions.ExactMode, IlgpuDevices.TryCreate)).Message);
        Assert.Contains(IlgpuDevices.Describe(), line => line.StartsWith("ilgpu-cpu"));
    }
}
