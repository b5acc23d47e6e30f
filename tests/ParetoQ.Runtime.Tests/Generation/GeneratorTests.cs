using ParetoQ.Runtime.Backends;
using ParetoQ.Runtime.Generation;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;
using ParetoQ.TestModels;

namespace ParetoQ.Runtime.Tests;

public sealed class GeneratorTests : IDisposable
{
    private static readonly int[] Prompt = [256, 72, 101, 108, 108, 111]; // <|begin_of_text|> "Hello" as byte tokens
    // The random test model is very peaked; a high temperature without filters makes sampling really choose.
    private static readonly SamplerOptions Flat = new() { Temperature = 25f, TopK = 0, TopP = 1, MinP = 0,
        RepeatPenalty = 1 };
    private readonly TempDir _dir = new();
    private readonly GeneratedModel _gen;
    private readonly LanguageModel _model;
    private readonly ITokenizer _tokenizer;

    public GeneratorTests()
    {
        _gen = TestModelGenerator.Write(_dir.File("m.pq"), TestModelGenerator.MobileLlmPro(), WeightFormat.Q2Seq,
            WeightFormat.F32, seed: 21);
        _model = LanguageModel.Load(_gen.Path);
        _tokenizer = Tokenizers.FromFile(_model.File, _model.Config.VocabSize);
    }

    public void Dispose()
    {
        _model.Dispose();
        _dir.Dispose();
    }

    private GenerationResult Run(GenerationOptions options, List<string>? pieces = null, int contextLength = 0,
        CancellationToken ct = default)
    {
        using var session = new Session(_model,
            new SessionOptions { KvCache = KvCacheType.F32, ContextLength = contextLength });
        return new Generator(session, _tokenizer).Generate(Prompt, options, p => pieces?.Add(p), ct);
    }

    [Fact]
    public void Greedy_decoding_follows_the_argmax_of_the_reference_forward_pass()
    {
        var options = new GenerationOptions { MaxTokens = 10, Sampler = SamplerOptions.Greedy };
        using var session = new Session(_model, new SessionOptions { KvCache = KvCacheType.F32 });
        var ids = new List<int>(Prompt);
        var result = new Generator(session, new RecordingTokenizer(_tokenizer, ids)).Generate(Prompt, options);
        Assert.Equal(10, result.GeneratedTokens);
        for (int i = Prompt.Length; i < ids.Count; i++)
        {
            var logits = ReferenceTransformer.Forward(_gen.Config, _gen.DenseWeights, ids.Take(i).ToArray());
            int argmax = 0;
            for (int v = 1; v < _gen.Config.VocabSize; v++) if (logits[i - 1, v] > logits[i - 1, argmax]) argmax = v;
            Assert.Equal(argmax, ids[i]);
        }
    }

    [Fact]
    public void A_fixed_seed_gives_the_same_text_twice()
    {
        var options = new GenerationOptions { MaxTokens = 24, Sampler = Flat with { Seed = 42 } };
        var a = Run(options);
        Assert.Equal(a.Text, Run(options).Text);
        Assert.NotEqual(a.Text, Run(options with { Sampler = options.Sampler with { Seed = 43 } }).Text);
    }

    [Fact]
    public void Stop_strings_cut_the_output_and_are_never_streamed()
    {
        var free = Run(new GenerationOptions { MaxTokens = 30, Sampler = Flat with { Seed = 5 } });
        // A 2-char stop string whose first occurrence is inside the text, not at its start.
        int at = Enumerable.Range(1, free.Text.Length - 3).First(i
            => free.Text.IndexOf(free.Text.Substring(i, 2), StringComparison.Ordinal) == i);
        string stop = free.Text.Substring(at, 2);
        var pieces = new List<string>();
        var stopped = Run(new GenerationOptions { MaxTokens = 30, Sampler = Flat with { Seed = 5 },
            StopStrings = [stop] }, pieces);
        Assert.Equal(StopReason.StopString, stopped.Reason);
        Assert.Equal(free.Text[..at], stopped.Text);
        Assert.Equal(stopped.Text, string.Concat(pieces));
    }

    [Fact]
    public void Eos_max_tokens_context_and_cancellation_end_generation()
    {
        var greedy = Run(new GenerationOptions { MaxTokens = 3, Sampler = SamplerOptions.Greedy });
        Assert.Equal(StopReason.MaxTokens, greedy.Reason);
        Assert.Equal(3, greedy.GeneratedTokens);

        int first = _tokenizer.Encode(greedy.Text, addBos: false)[0];
        var eos = Run(new GenerationOptions { MaxTokens = 3, Sampler = SamplerOptions.Greedy, EosIds = [first] });
        Assert.Equal((StopReason.EndOfSequence, 0, ""), (eos.Reason, eos.GeneratedTokens, eos.Text));

        var full = Run(new GenerationOptions { MaxTokens = 100, Sampler = SamplerOptions.Greedy }, contextLength: 10);
        // Positions 6..9 take 4 fed tokens; the 5th is sampled from the last position's logits and emitted.
        Assert.Equal((StopReason.ContextFull, 5), (full.Reason, full.GeneratedTokens));
        // The largest limit a caller can ask for (paretoq-run --max-tokens 2147483647, pq_generate) runs to the
        // context.
        var unbounded = Run(new GenerationOptions { MaxTokens = int.MaxValue, Sampler = SamplerOptions.Greedy },
            contextLength: 10);
        Assert.Equal((StopReason.ContextFull, 5), (unbounded.Reason, unbounded.GeneratedTokens));

        using var cts = new CancellationTokenSource();
        var pieces = new List<string>();
        using var session = new Session(_model);
        var cancelled = new Generator(session, _tokenizer).Generate(Prompt, new GenerationOptions { MaxTokens = 50 }, p
            => { if (pieces.Count == 2) cts.Cancel(); pieces.Add(p); }, cts.Token);
        Assert.Equal(StopReason.Cancelled, cancelled.Reason);
        Assert.InRange(cancelled.GeneratedTokens, 3, 49);
    }

    [Fact]
    public async Task The_async_stream_gives_the_same_text()
    {
        var options = new GenerationOptions { MaxTokens = 12, Sampler = SamplerOptions.Greedy };
        using var session = new Session(_model, new SessionOptions { KvCache = KvCacheType.F32 });
        var pieces = new List<string>();
        GenerationResult? result = null;
        await foreach (var u in new Generator(session, _tokenizer).StreamAsync(Prompt, options))
        {
            Assert.Null(result); // the result comes last
            pieces.Add(u.Text);
            result = u.Result;
        }
        var expected = Run(options);
        Assert.Equal(expected.Text, string.Concat(pieces));
        Assert.Equal(expected.Tokens, result!.Tokens);
        Assert.Equal(StopReason.MaxTokens, result.Reason);
    }

    [Fact]
    public async Task A_consumer_that_stops_reading_stops_the_generation()
    {
        var options = new GenerationOptions { MaxTokens = 200, Sampler = SamplerOptions.Greedy };
        using var session = new Session(_model, new SessionOptions { KvCache = KvCacheType.F32 });
        await foreach (var u in new Generator(session, _tokenizer).StreamAsync(Prompt, options))
            break; // leaving the loop disposes the enumeration, which waits for the generator to stop
        // The generator stopped about StreamAhead pieces past the first (tokens that end mid-character add none),
        // far short of its 200.
        Assert.InRange(session.Position, Prompt.Length + 1, Prompt.Length + 100);
    }

    [Fact]
    public void Bad_prompts_fail_clearly()
    {
        using var session = new Session(_model, new SessionOptions { ContextLength = 4 });
        var g = new Generator(session, _tokenizer);
        var e = Assert.Throws<ContextLengthExceededException>(() => g.Generate(Prompt, new GenerationOptions()));
        Assert.Contains("the prompt has 6 tokens", e.Message);
        Assert.Contains("context length 4", e.Message);
        Assert.Throws<ArgumentException>(() => g.Generate([], new GenerationOptions()));
    }

    /// <summary>Passes everything through and records the ids that were streamed, i.e. the generated tokens.</summary>
    private sealed class RecordingTokenizer(ITokenizer inner, List<int> ids) : ITokenizer
    {
        public int VocabSize => inner.VocabSize;
        public int BosId => inner.BosId;
        public int[] Encode(string text, bool addBos) => inner.Encode(text, addBos);
        public string Decode(ReadOnlySpan<int> tokens) => inner.Decode(tokens);
        public int TokenBytes(int id, Span<byte> destination)
        {
            ids.Add(id);
            return inner.TokenBytes(id, destination);
        }
    }
}
