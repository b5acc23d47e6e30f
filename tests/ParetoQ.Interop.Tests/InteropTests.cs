using ParetoQ.Abi;
using ParetoQ.Runtime.Quantization;
using ParetoQ.TestModels;

namespace ParetoQ.Interop.Tests;

/// <summary>
/// The .NET binding over the real NativeAOT libparetoq.so (published by this project's build): loading, tokens,
/// decoding, sampling and streaming generation, errors as exceptions with the library's message, and threads.
/// </summary>
public sealed class InteropTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("paretoq-interop-").FullName;
    private readonly string _model;

    public InteropTests()
    {
        _model = Path.Combine(_dir, "m.pq");
        TestModelGenerator.Write(_model, TestModelGenerator.MobileLlmPro(), WeightFormat.Q2Seq, WeightFormat.I8Row,
            seed: 1);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void The_binding_loads_the_build_this_cpu_runs_best()
    {
        // The library names its kernel path; avx512* exists only in the x86-64-v4 build from glibc-hwcaps/.
        bool avx512 = LibraryVariant.WantsAvx512();
        Assert.True(avx512 == ParetoQModel.LibraryVersion.Contains("kernels avx512"),
            $"expected the {(avx512 ? "x86-64-v4" : "baseline")} build, loaded '{ParetoQModel.LibraryVersion}'");
    }

    [Fact]
    public void The_binding_loads_the_native_library_and_generates_text()
    {
        Assert.Contains("abi 1", ParetoQModel.LibraryVersion);
        using var model = ParetoQModel.Load(_model);
        Assert.Equal("mobilellm-pro", model.Info.Architecture);
        Assert.Equal("2", model.Info.Bits);
        Assert.True(model.Info.Parameters > 0 && model.Info.FileBytes == new FileInfo(_model).Length);

        int[] tokens = model.Tokenize("Hello, wörld");
        Assert.Equal(model.Info.BosId, tokens[0]);
        Assert.Equal("Hello, wörld", model.Detokenize(tokens));
        Assert.Empty(model.Tokenize("", addBos: false));

        using var context = model.CreateContext(threads: 1, contextLength: 128);
        Assert.Equal(128, context.Length);
        context.Decode(tokens);
        Assert.Equal(tokens.Length, context.Position);
        float[] logits = context.Logits();
        Assert.Equal(model.Info.VocabSize, logits.Length);
        var greedy = ParetoQContext.DefaultSampler with { Temperature = 0, RepeatPenalty = 1 };
        Assert.Equal(Array.IndexOf(logits, logits.Max()), context.Sample(greedy));

        context.Reset();
        var pieces = new List<string>();
        var stats = context.Generate("Hello", 12, piece => { pieces.Add(piece); return true; }, greedy);
        Assert.Equal(6, stats.PromptTokens);
        Assert.InRange(stats.GeneratedTokens, 1, 12);
        Assert.True(stats.DecodeTokensPerSecond > 0);
        Assert.NotEmpty(pieces);

        // The same greedy generation through a fresh context gives the same text; stopping after one piece cancels.
        using var again = model.CreateContext(threads: 1, contextLength: 128);
        var text = new List<string>();
        again.Generate("Hello", 12, piece => { text.Add(piece); return true; }, greedy);
        Assert.Equal(string.Concat(pieces), string.Concat(text));
        again.Reset();
        Assert.Equal(PqStopReason.Cancelled, again.Generate("Hello", 12, _ => false, greedy).StopReason);
    }

    [Fact]
    public async Task Async_generation_streams_the_same_text_and_cancels()
    {
        using var model = await ParetoQModel.LoadAsync(_model);
        var greedy = ParetoQContext.DefaultSampler with { Temperature = 0, RepeatPenalty = 1 };
        using var context = model.CreateContext(threads: 1, contextLength: 128);
        var pieces = new List<string>();
        var stats = await context.GenerateAsync("Hello", 12, pieces.Add, greedy);
        Assert.InRange(stats.GeneratedTokens, 1, 12);

        context.Reset();
        var streamed = new List<string>();
        await foreach (var piece in context.StreamAsync("Hello", 12, greedy)) streamed.Add(piece);
        Assert.Equal(string.Concat(pieces), string.Concat(streamed));

        // Cancelled after the first piece: an OperationCanceledException, and the context is usable again.
        context.Reset();
        using var cancel = new CancellationTokenSource();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(()
            => context.GenerateAsync("Hello", 100, _ => cancel.Cancel(), greedy, cancel.Token));
        Assert.InRange(context.Position, 7, 60);
        context.Reset();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            using var streamCancel = new CancellationTokenSource();
            await foreach (var piece in context.StreamAsync("Hello", 100, greedy, streamCancel.Token))
                streamCancel.Cancel();
        });
        context.Reset();
        Assert.Equal(string.Concat(pieces), string.Concat(await Collect(context.StreamAsync("Hello", 12, greedy))));
    }

    private static async Task<List<string>> Collect(IAsyncEnumerable<string> pieces)
    {
        var list = new List<string>();
        await foreach (var piece in pieces) list.Add(piece);
        return list;
    }

    [Fact]
    public void Errors_arrive_as_exceptions_with_the_library_message()
    {
        var missing = Assert.Throws<ParetoQException>(() => ParetoQModel.Load(Path.Combine(_dir, "absent.pq")));
        Assert.Equal(PqStatus.IO, missing.Status);
        Assert.Contains("absent.pq", missing.Message);

        byte[] bytes = File.ReadAllBytes(_model);
        bytes[^100] ^= 0x10;
        File.WriteAllBytes(Path.Combine(_dir, "bad.pq"), bytes);
        Assert.Equal(PqStatus.ModelFormat,
            Assert.Throws<ParetoQException>(() => ParetoQModel.Load(Path.Combine(_dir, "bad.pq"))).Status);

        using var model = ParetoQModel.Load(_model);
        using var context = model.CreateContext(threads: 1, contextLength: 16);
        Assert.Equal(PqStatus.InvalidArgument, Assert.Throws<ParetoQException>(() => context.Logits()).Status);
        var full = Assert.Throws<ParetoQException>(() => context.Decode(new int[17]));
        Assert.Equal(PqStatus.ContextFull, full.Status);
        Assert.Contains("context length 16", full.Message);
        Assert.Equal(PqStatus.Tokenizer,
            Assert.Throws<ParetoQException>(() => context.Decode([model.Info.VocabSize])).Status);
        Assert.Equal(PqStatus.InvalidArgument,
            Assert.Throws<ParetoQException>(() => model.CreateContext(threads: -1)).Status);
        var badSampler = ParetoQContext.DefaultSampler with { TopP = 2 };
        context.Decode([1]);
        Assert.Contains("top-p 2", Assert.Throws<ParetoQException>(() => context.Sample(badSampler)).Message);

        // An exception thrown by the app's callback stops generation and reaches the caller, not the native side.
        context.Reset();
        var thrown = Assert.Throws<InvalidOperationException>(()
            => context.Generate("Hi", 8, _ => throw new InvalidOperationException("from the app")));
        Assert.Equal("from the app", thrown.Message);
        context.Dispose();
        Assert.Throws<ObjectDisposedException>(() => context.Position);
    }

    [Fact]
    public void Contexts_on_several_threads_share_one_model()
    {
        using var model = ParetoQModel.Load(_model);
        var greedy = ParetoQContext.DefaultSampler with { Temperature = 0 };
        string Complete()
        {
            using var context = model.CreateContext(threads: 1, contextLength: 64);
            var text = new System.Text.StringBuilder();
            context.Generate("Once", 20, piece => { text.Append(piece); return true; }, greedy);
            return text.ToString();
        }
        string expected = Complete();
        var results = new string[4][];
        Parallel.For(0, 4, i => results[i] = Enumerable.Range(0, 5).Select(_ => Complete()).ToArray());
        Assert.All(results.SelectMany(r => r), r => Assert.Equal(expected, r));
    }
}
